"""Memberships (commune proper, EPCI, région, QPV) at ingest: an ingest of establishments locates
the rows it adds, staged before they join the layer; an ingest of QPVs or communes locates every
row again. Either way the store holds what a full recomputation gives: nothing stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import pytest

from essmap import store
from essmap.domain import schema
from essmap.domain.config import PROJECT_ROOT
from essmap.domain.errors import BuildError
from essmap.store.ingest import ingest_files
from essmap.store.memberships import fill_memberships

SIRENE = Path(__file__).resolve().parent / "data" / "sirene"
UNITES = SIRENE / "unites_legales_ess_extrait.csv"
ETABLISSEMENTS = SIRENE / "StockEtablissement_extrait.csv"
QPV_PACA = PROJECT_ROOT / "data" / "geo" / "qpv2024_paca.geojson"
KEYS = {"etablissements": "siret", "tiers_lieux": "id_tiers_lieu"}


def _memberships(con, table: str) -> list[tuple]:
    columns = ", ".join(f'"{c}"' for c in [KEYS[table], *schema.MEMBERSHIPS])
    return con.execute(f'SELECT {columns} FROM "{table}" ORDER BY ALL').fetchall()


def _stored_and_recomputed(db: Path) -> dict[str, tuple[list[tuple], list[tuple]]]:
    """Each point layer's memberships as stored, and as a full recomputation gives them (the
    recomputation is thrown away with the write)."""
    found = {}
    with pytest.raises(BuildError, match="rolled back"), store.atomic_update(db) as con:
        for table in schema.POINT_LAYERS:
            stored = _memberships(con, table)
            fill_memberships(con, table)
            found[table] = (stored, _memberships(con, table))
        raise RuntimeError("rolled back")
    return found


@pytest.fixture
def db(demo_db, tmp_path) -> Path:
    path = tmp_path / "store.duckdb"
    shutil.copyfile(demo_db, path)
    return path


def test_a_full_build_locates_its_points_once_and_right(db):
    """The build writes the points after the communes and QPVs and skips the second location."""
    for table, (stored, recomputed) in _stored_and_recomputed(db).items():
        assert stored == recomputed, table
        assert any(row[1:] != (None,) * len(schema.MEMBERSHIPS) for row in stored), table  # located at all


def test_rows_an_ingest_adds_carry_the_memberships_a_full_recomputation_gives(db, demo_settings):
    ingest_files(db, "sirene", [UNITES, ETABLISSEMENTS], settings=demo_settings)
    with store.connect(db) as con:
        added = con.execute(
            "SELECT count(*), count(code_com), count(siren_epci), count(code_region), count(code_qp_2024) "
            "FROM etablissements WHERE NOT is_synthetic").fetchone()
    # the demo store has the communes and QPVs of PACA only: the extract's rows there are located
    assert added[0] > added[1] > 0 and added[2] > 0 and added[3] > 0 and added[4] > 0
    for table, (stored, recomputed) in _stored_and_recomputed(db).items():
        assert stored == recomputed, table


def test_an_ingest_of_qpvs_locates_every_row_again(db, demo_settings, tmp_path):
    with store.connect(db) as con:
        code, held = con.execute(
            "SELECT code_qp_2024, count(*) FROM etablissements WHERE code_departement = '13' "
            "AND code_qp_2024 IS NOT NULL GROUP BY ALL ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
    assert held > 0
    qpv = gpd.read_file(QPV_PACA)
    qpv = qpv[(qpv["d"] == "13") & (qpv["q"] != code)]  # that QPV is no longer published
    path = tmp_path / "qpv2024_13.geojson"
    qpv.to_file(path, driver="GeoJSON")
    ingest_files(db, "qpv", [path], settings=demo_settings, departements=["13"])
    with store.connect(db) as con:
        left = con.execute("SELECT count(*) FROM etablissements WHERE code_qp_2024 = ?", [code]).fetchone()[0]
    assert left == 0
    for table, (stored, recomputed) in _stored_and_recomputed(db).items():
        assert stored == recomputed, table


def _stored_rows(con, table: str) -> list[tuple]:
    """Every column of every row, in the order stored (geometry as WKB)."""
    stored = [r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()]
    columns = ", ".join("ST_AsWKB(geometry)" if c == "geometry" else f'"{c}"' for c in stored)
    return con.execute(f'SELECT {columns} FROM "{table}" ORDER BY rowid').fetchall()


def test_rows_staged_part_by_part_are_stored_as_one_insert_stores_them(db, tmp_path):
    """StagedPoints (the official build's SIRENE parts) gives the layer of insert_rows: same rows,
    memberships, source file and order, whatever the parts."""
    other = tmp_path / "other.duckdb"
    shutil.copyfile(db, other)
    found = []
    for path, parts in ((db, 1), (other, 4)):
        with store.atomic_update(path) as con:
            # the rows in an order unlike the stored one: the insert orders them by place
            frame = store.read_layer(con, "etablissements", departements=["05", "84"]).iloc[::-1]
            frame = frame.reset_index(drop=True)
            assert len(frame) > 100 and frame["code_departement"].nunique() == 2
            store.delete_rows(con, "etablissements")
            if parts == 1:
                added = store.insert_rows(con, "etablissements", frame, source_file="stock.csv")
            else:
                staged = store.StagedPoints(con, "etablissements")
                for rows in (frame.iloc[:7], frame.iloc[7:7], frame.iloc[7:3000], frame.iloc[3000:]):
                    staged.add(rows)
                assert staged.departements() == ["05", "84"]
                added = staged.insert("stock.csv")
            assert added == len(frame)
            found.append(_stored_rows(con, "etablissements"))
            located = con.execute("SELECT count(code_com), count(code_qp_2024) FROM etablissements").fetchone()
            assert located[0] == len(frame) and located[1] > 0
    assert found[0] == found[1]
