"""The DuckDB store: round trips, atomic updates, read-only access from several processes."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from essmap import store
from essmap.domain import schema
from essmap.domain.errors import BuildError, StoreError
from essmap.io.readers.common import SourceMeta, canonical_frame


def _qpv_frame(codes: list[str], generation: str = "2024") -> gpd.GeoDataFrame:
    n = len(codes)
    raw = pd.DataFrame({
        "code_qp": codes,
        "lib_qp": [f"Quartier <b>{i}</b> &amp; co" for i in range(n)],
        "generation": generation,
        "insee_dep": ["2A"] * n,
        "insee_com": ["2A004"] * n,
        "lib_com": ["Ajaccio"] * n,
        "siren_epci": ["200066793"] * n,
        "territoire": "metropole",
        "epsg_metrique": 2154,
    })
    geoms = gpd.GeoSeries([shapely.box(8.7 + i / 100, 41.9, 8.705 + i / 100, 41.905) for i in range(n)], crs=4326)
    return canonical_frame(raw, schema.QPV, geoms)


def _build(path: Path, codes: list[str]) -> None:
    with store.atomic_update(path, start_empty=True) as con:
        store.replace_rows(con, "qpv", _qpv_frame(codes))
        meta = SourceMeta("qpv", "qpv.geojson", "abc", generation="2024", rows_read=len(codes),
                          rows_kept=len(codes))
        quarantine = pd.DataFrame([{"source": "qpv", "file_name": "qpv.geojson", "row_number": 3,
                                    "column_name": "geometry", "value": "", "reason": "géométrie absente"}])
        store.record_source(con, meta, quarantine)


def test_round_trip_keeps_codes_text_and_geometry(tmp_path):
    db = tmp_path / "essmap.duckdb"
    _build(db, ["QN02A01M", "QN02A02M"])
    con = store.connect(db)
    qpv = store.read_layer(con, "qpv")
    assert list(qpv.columns) == [*schema.QPV, "geometry"]
    assert qpv.crs.to_epsg() == 4326
    assert qpv["insee_dep"].tolist() == ["2A", "2A"]
    assert qpv["lib_qp"].iloc[0] == "Quartier <b>0</b> &amp; co"  # stored as given, escaped at display
    assert qpv.geometry.iloc[0].equals(shapely.box(8.7, 41.9, 8.705, 41.905))
    assert store.read_layer(con, "qpv", departements=["13"]).empty
    assert len(store.read_layer(con, "qpv", departements=["2A"])) == 2
    assert store.quarantine_rows(con)["reason"].tolist() == ["géométrie absente"]
    counts = store.layer_counts(con).set_index("couche")
    assert counts.loc["qpv", "lignes"] == 2
    con.close()


def test_failed_update_leaves_previous_database_intact(tmp_path):
    db = tmp_path / "essmap.duckdb"
    _build(db, ["QN02A01M"])
    before = db.read_bytes()
    with pytest.raises(BuildError) as excinfo:
        with store.atomic_update(db) as con:
            store.replace_rows(con, "qpv", _qpv_frame(["QN02A07M", "QN02A08M", "QN02A09M"]))
            raise ValueError("lecture interrompue")
    assert "base précédente « essmap.duckdb » est intacte" in str(excinfo.value)
    assert "lecture interrompue" in str(excinfo.value)
    assert db.read_bytes() == before
    # no temporary left; the writer lock file stays (deleting it would let two writers lock two files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["essmap.duckdb", "essmap.duckdb.lock"]
    con = store.connect(db)
    assert store.read_layer(con, "qpv")["code_qp"].tolist() == ["QN02A01M"]
    con.close()


def test_update_starts_from_the_current_database(tmp_path):
    db = tmp_path / "essmap.duckdb"
    _build(db, ["QN02A01M"])
    with store.atomic_update(db) as con:
        store.replace_rows(con, "qpv", _qpv_frame(["QN02A05M"], generation="2015"), where="generation = '2015'")
    con = store.connect(db)
    assert sorted(store.read_layer(con, "qpv")["code_qp"]) == ["QN02A01M", "QN02A05M"]
    assert store.qpv_generations(con) == ["2024", "2015"]
    con.close()


def test_missing_or_foreign_database_gives_a_french_error(tmp_path):
    with pytest.raises(StoreError, match="Base de données introuvable.*essmap build"):
        store.connect(tmp_path / "absent.duckdb")
    import duckdb

    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (a INT)").close()
    with pytest.raises(StoreError, match="n'est pas une base essmap"):
        store.connect(other)


@pytest.mark.slow
def test_readers_in_other_processes_keep_working_during_a_rebuild(tmp_path):
    """Two read-only processes hold the store open while a rebuild swaps a new file in.

    Slow (left out by `make test-unit`): the two processes import essmap's store (3-5 s)."""
    db = tmp_path / "essmap.duckdb"
    _build(db, ["QN02A01M"])
    reader = textwrap.dedent(f"""
        import sys, time
        from essmap import store
        con = store.connect(__import__("pathlib").Path({str(db)!r}))
        print("open", flush=True)
        sys.stdin.readline()
        print(len(store.read_layer(con, "qpv")), flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", reader], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "open"
        _build(db, ["QN02A01M", "QN02A02M", "QN02A03M"])  # while both readers hold the old file
        outputs = [p.communicate("go\n", timeout=60)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert outputs == ["1", "1"]  # each reader kept a consistent view of the file it opened
    con = store.connect(db)
    assert len(store.read_layer(con, "qpv")) == 3
    con.close()


# --- One writer at a time, killed writers ---------------------------------------------------------

SLOW_WRITER = Path(__file__).parent / "fuzz" / "slow_writer.py"


def _tiers_lieux_csv(path: Path, places: list[tuple[str, str, str]]) -> Path:
    """A tiers-lieux list: (id, name, "lat,lon" or "" for a place without coordinates)."""
    lines = ["id,nom,latitude,longitude"]
    for ident, name, position in places:
        lat, lon = position.split(",") if position else ("", "")
        lines.append(f"{ident},{name},{lat},{lon}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _start_slow_writer(db: Path, source: str, file: Path, go: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(SLOW_WRITER), str(db), source, str(file), str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == "WRITING", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def _essmap(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "essmap.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "250"})


def _read_stderr_until(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    """Lines of ``proc``'s standard error up to the one holding ``marker`` (read in a thread)."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            seen.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), "".join(seen)
    return "".join(seen)


@pytest.mark.slow
def test_two_ingests_at_once_keep_both_and_the_second_says_it_waits(tmp_path, demo_db):
    """Real processes: the first ingest pauses inside its write, the second starts then and waits."""
    db = tmp_path / "essmap.duckdb"
    shutil.copyfile(demo_db, db)
    first = _tiers_lieux_csv(tmp_path / "liste_marseille.csv", [
        ("tl-m1", "Atelier du Panier", "43.2990,5.3690"), ("tl-m2", "Friche test", "43.3100,5.3900"),
        ("tl-m3", "Sans position", "")])
    second = _tiers_lieux_csv(tmp_path / "liste_avignon.csv", [
        ("tl-a1", "Tiers-lieu d'Avignon", "43.9490,4.8050"), ("tl-a2", "Sans position non plus", "")])
    go = tmp_path / "go"
    slow = _start_slow_writer(db, "tiers-lieux", first, go)
    try:
        waiting = subprocess.Popen([sys.executable, "-m", "essmap.cli", "ingest", "tiers-lieux", str(second),
                                    "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "COLUMNS": "250"})
        notice = _read_stderr_until(waiting, "Attente")
        assert f"processus {slow.pid}" in notice
        assert "« slow_writer.py essmap.duckdb tiers-lieux liste_marseille.csv go »" in notice
        assert "en cours de mise à jour" in notice and "reprendra ensuite" in notice
        go.touch()
        assert slow.wait(timeout=120) == 0, slow.stderr.read()
        out, err = waiting.communicate(timeout=300)
        assert waiting.returncode == 0, err
    finally:
        for proc in (slow, waiting):
            if proc.poll() is None:
                proc.kill()
    assert "Tiers-lieux : 1 ajouté(s)" in out
    con = store.connect(db)
    try:
        ids = set(store.read_layer(con, "tiers_lieux")["id_tiers_lieu"])
        assert {"tl-m1", "tl-m2", "tl-a1"} <= ids  # neither ingest lost the other's rows
        sources = store.sources(con).set_index("file_name")
        assert sources.loc["liste_marseille.csv", "rows_in_store"] == 2
        assert sources.loc["liste_avignon.csv", "rows_in_store"] == 1
        quarantine = store.quarantine_rows(con)
        assert set(quarantine.loc[quarantine["source"] == "tiers_lieux", "file_name"]) >= {
            "liste_marseille.csv", "liste_avignon.csv"}
    finally:
        con.close()


@pytest.mark.slow
def test_writer_killed_mid_write_leaves_the_store_intact_and_the_next_run_cleans_up(tmp_path, demo_db):
    db = tmp_path / "essmap.duckdb"
    shutil.copyfile(demo_db, db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    places = _tiers_lieux_csv(tmp_path / "liste.csv", [("tl-k1", "Lieu tué", "43.2990,5.3690")])
    slow = _start_slow_writer(db, "tiers-lieux", places, tmp_path / "never")
    os.kill(slow.pid, signal.SIGKILL)
    slow.wait(timeout=60)
    left = sorted(p.name for p in tmp_path.glob("essmap.duckdb.tmp-*"))
    # the full-size copy the killed writer was writing, and the journal of its uncommitted rows
    assert left == [f"essmap.duckdb.tmp-{slow.pid}", f"essmap.duckdb.tmp-{slow.pid}.wal"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    con = store.connect(db)  # still a readable store
    assert "tl-k1" not in set(store.read_layer(con, "tiers_lieux")["id_tiers_lieu"])
    con.close()

    done = _essmap("ingest", "tiers-lieux", str(places), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "Nettoyage" in done.stderr and f"essmap.duckdb.tmp-{slow.pid}" in done.stderr
    assert "interrompue" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.glob("essmap.duckdb.tmp-*")) == []  # the copy and its .wal
    con = store.connect(db)
    assert "tl-k1" in set(store.read_layer(con, "tiers_lieux")["id_tiers_lieu"])
    con.close()


def test_left_overs_and_their_wal_are_removed_under_the_lock_and_reported(tmp_path):
    db = tmp_path / "essmap.duckdb"
    _build(db, ["QN02A01M"])
    (tmp_path / "essmap.duckdb.tmp-999999").write_bytes(b"x" * 2_000_000)
    (tmp_path / "essmap.duckdb.tmp-999999.wal").write_bytes(b"y" * 500_000)
    (tmp_path / "other.duckdb.tmp-999999").write_bytes(b"z")  # another store's: not ours to remove
    notices: list[str] = []
    with store.atomic_update(db, notify=notices.append) as con:
        store.replace_rows(con, "qpv", _qpv_frame(["QN02A02M"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["essmap.duckdb", "essmap.duckdb.lock",
                                                          "other.duckdb.tmp-999999"]
    assert len(notices) == 1
    assert "essmap.duckdb.tmp-999999, essmap.duckdb.tmp-999999.wal" in notices[0]
    assert "2,5 Mo libérés" in notices[0] and "La base elle-même était intacte" in notices[0]


def test_duckdb_file_system_errors_are_told_in_french(tmp_path):
    import duckdb

    from essmap.store.write import failure_cause

    cause = failure_cause(duckdb.IOException('Could not write file "x.tmp-1.wal": No space left on device'), tmp_path)
    assert cause.startswith("plus d'espace disque dans") and "libérez de la place" in cause
    cause = failure_cause(duckdb.CatalogException("Table with name foo does not exist!\nLINE 1: ..."), tmp_path)
    assert cause == "erreur de la base DuckDB (détail technique : Table with name foo does not exist!)"
