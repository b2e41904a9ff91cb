"""The write path under faults: damaged files through `essmap ingest`, writers killed at any
moment, several writers at once. The store is always either untouched (byte-identical) or the
complete result of an ingest, and the command always ends in French, without traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from essmap import store
from essmap.cli import app

from .checks import DATA
from .test_readers_fuzz import damaged

runner = CliRunner(env={"COLUMNS": "200"})


def fewer(divisor: int) -> int:
    """Examples for the tests that start real processes: a share of the profile's (at least 2)."""
    return max(2, settings.default.max_examples // divisor)

#: A damaged file of each source, and the arguments that ingest it.
SOURCES = {
    "tiers-lieux": [DATA / "tiers_lieux" / "tiers_lieux_commune_mesure.csv"],
    "qpv": [DATA / "qpv" / "qpv2024_paca_extrait.geojson"],
    "communes": [DATA / "communes" / "communes_extrait.parquet"],
    "sirene": [DATA / "sirene" / "unites_legales_ess_extrait.csv", DATA / "sirene" / "StockEtablissement_extrait.csv"],
}


def _no_raw_control_characters(text: str) -> None:
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) < 0xA0 for c in text), repr(text)


def _sources_account_for_the_store(db: Path) -> None:
    """``sources`` describes the store: each file's rows in store and quarantine as recorded."""
    con = store.connect(db)
    try:
        for source, table in (("tiers_lieux", "tiers_lieux"), ("qpv", "qpv"), ("communes", "communes"),
                              ("sirene", "etablissements")):
            recorded = dict(con.execute("SELECT file_name, rows_in_store FROM sources WHERE source = ?",
                                        [source]).fetchall())
            held = dict(con.execute(f'SELECT source_file, count(*) FROM "{table}" GROUP BY 1').fetchall())
            assert {f: n for f, n in recorded.items() if n} == held, (source, recorded, held)
        # (a SIRENE load is recorded under "UL + ETAB", its quarantine under each file's name)
        quarantined = dict(con.execute(
            "SELECT file_name, rows_quarantined FROM sources WHERE source <> 'sirene'").fetchall())
        lines = dict(con.execute("SELECT file_name, count(DISTINCT row_number) FROM quarantine "
                                 "WHERE source <> 'sirene' GROUP BY 1").fetchall())
        assert {f: n for f, n in quarantined.items() if n} == lines
    finally:
        con.close()


@given(data=st.data())
def test_damaged_files_through_essmap_ingest(store_copy, tmp_path_factory, data):
    source = data.draw(st.sampled_from(sorted(SOURCES)))
    folder = tmp_path_factory.mktemp("ingest")
    files = []
    victim = data.draw(st.integers(0, len(SOURCES[source]) - 1))
    for i, original in enumerate(SOURCES[source]):
        content = original.read_bytes()
        if i == victim:
            content = data.draw(damaged(content, text=original.suffix != ".parquet"))
        path = folder / original.name
        path.write_bytes(content)
        files.append(str(path))
    db = store_copy()
    before = db.read_bytes()
    result = runner.invoke(app, ["ingest", source, *files, "--db", str(db)])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    _no_raw_control_characters(result.output)
    if result.exit_code == 1:
        assert "Erreur :" in result.output and "n'a pas été modifiée" in " ".join(result.output.split())
        assert db.read_bytes() == before
    else:
        _sources_account_for_the_store(db)
    assert not list(db.parent.glob("*.tmp-*"))


# --- Killed writers, concurrent writers (real processes) -------------------------------------------


def _places(path: Path, prefix: str, positions: list[tuple[float, float]]) -> Path:
    rows = [f"{prefix}-{i},Lieu {prefix} {i},{lat},{lon}" for i, (lat, lon) in enumerate(positions)]
    path.write_text("id,nom,latitude,longitude\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


PACA = [(43.2990, 5.3690), (43.7000, 7.2600), (43.1250, 5.9300), (43.9490, 4.8050), (44.0930, 6.2350)]


def _essmap(*args: str, temp: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "essmap.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200", **({"TMPDIR": str(temp)} if temp else {})})


def _ids(db: Path) -> set[str]:
    con = store.connect(db)
    try:
        return set(store.read_layer(con, "tiers_lieux", columns=["id_tiers_lieu"])["id_tiers_lieu"])
    finally:
        con.close()


@pytest.mark.slow
@settings(max_examples=fewer(3))
@given(delay=st.floats(0.0, 6.0))
def test_an_ingest_killed_at_any_moment_leaves_a_usable_store(store_copy, tmp_path_factory, delay):
    db = store_copy()
    before = db.read_bytes()
    listing = _places(tmp_path_factory.mktemp("killed") / "liste.csv", "k", PACA)
    temp = tmp_path_factory.mktemp("temp")  # the ingests' temporary folder (TMPDIR)
    proc = _essmap("ingest", "tiers-lieux", str(listing), "--db", str(db), temp=temp)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    loaded = {f"k-{i}" for i in range(len(PACA))}
    # either untouched, or the whole ingest: never half of it
    assert db.read_bytes() == before or loaded <= _ids(db)
    if db.read_bytes() != before:
        _sources_account_for_the_store(db)
    left_overs = sorted(p.name for p in db.parent.glob("essmap.duckdb.tmp-*"))

    again = _essmap("ingest", "tiers-lieux", str(listing), "--db", str(db), temp=temp)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert not list(temp.iterdir())  # its own scratch folder, and the killed one's, are gone
    assert ("Nettoyage" in err) == bool(left_overs), (left_overs, err)
    assert not list(db.parent.glob("essmap.duckdb.tmp-*"))
    assert loaded <= _ids(db)
    _sources_account_for_the_store(db)


@pytest.mark.slow
@settings(max_examples=fewer(5))
@given(writers=st.integers(2, 3), offsets=st.lists(st.floats(0.0, 1.5), min_size=3, max_size=3))
def test_concurrent_ingests_all_succeed_and_lose_nothing(store_copy, tmp_path_factory, writers, offsets):
    db = store_copy()
    folder = tmp_path_factory.mktemp("concurrent")
    lists = [_places(folder / f"liste_{w}.csv", f"w{w}", PACA[w:w + 2]) for w in range(writers)]
    procs = []
    for listing, offset in zip(lists, offsets, strict=False):
        time.sleep(offset)
        procs.append(_essmap("ingest", "tiers-lieux", str(listing), "--db", str(db)))
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    assert {f"w{w}-{i}" for w in range(writers) for i in range(2)} <= _ids(db)
    con = store.connect(db)
    try:
        files = set(store.sources(con)["file_name"])
    finally:
        con.close()
    assert {f"liste_{w}.csv" for w in range(writers)} <= files
    _sources_account_for_the_store(db)
