"""The DuckDB store: round trips, atomic updates, read-only access from several processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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


def test_readers_in_other_processes_keep_working_during_a_rebuild(tmp_path):
    """Two read-only processes hold the store open while a rebuild swaps a new file in."""
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
