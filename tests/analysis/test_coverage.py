"""QPV coverage asked of the store: the stored pairs (nearest tiers-lieu included, however far) give
the same answers as the pure functions on the layers, and a table query needs no geometry library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import shapely

from essmap.analysis import coverage, proximity
from essmap.domain.selection import Selection

LON, LAT = 5.3698, 43.2965  # Marseille


@pytest.fixture
def layers(build):
    """QPV A (500 m square) in Marseille, QPV C (400 m square) 20 km north; three tiers-lieux near A:
    C has none within the stored radius (5 km), its nearest is the "atelier" TL3 (closest to the north)."""
    a = build.square(LON, LAT, 250)
    c = build.square(*build.offset(LON, LAT, 0, 20_000), 200)
    qpv = build.qpv_frame([a, c], ["QN01301M", "QN01303M"], insee_com=["13201", "13001"])
    lonlat = [(LON, LAT), build.offset(LON, LAT, 90, 1000), build.offset(LON, LAT, 0, 3000)]
    tiers_lieux = build.tiers_lieux_frame(lonlat, types=["coworking", "coworking", "atelier"])
    return qpv, tiers_lieux


def _stored_pairs(con) -> pd.DataFrame:
    return con.execute("SELECT code_qp, id_tiers_lieu, distance_m FROM qpv_tiers_lieux ORDER BY ALL").df()


def test_a_qpv_without_tiers_lieu_within_the_stored_radius_keeps_its_nearest(layers, store_of) -> None:
    qpv, tiers_lieux = layers
    con = store_of(qpv=qpv, tiers_lieux=tiers_lieux)
    pairs = _stored_pairs(con)
    far = pairs[pairs["code_qp"] == "QN01303M"]
    reference = proximity.qpv_tiers_lieux(qpv, tiers_lieux, radius_m=0).set_index("code_qp")
    assert far["id_tiers_lieu"].tolist() == ["TL3"]  # one pair only: the nearest
    assert far["distance_m"].iloc[0] == pytest.approx(reference.loc["QN01303M", "nearest_distance_m"], abs=0.1)
    assert far["distance_m"].iloc[0] > 5_000
    assert sorted(pairs.loc[pairs["code_qp"] == "QN01301M", "id_tiers_lieu"]) == ["TL1", "TL2", "TL3"]


@pytest.mark.parametrize("radius_m", [0.0, 1000.0, 5000.0, 25_000.0])
def test_store_answers_like_the_layers(layers, store_of, radius_m) -> None:
    qpv, tiers_lieux = layers
    con = store_of(qpv=qpv, tiers_lieux=tiers_lieux)
    stored = coverage.qpv_coverage(con, Selection(), radius_m=radius_m, geometry=None)
    reference = proximity.qpv_tiers_lieux(qpv, tiers_lieux, radius_m=radius_m)
    assert not hasattr(stored, "geometry")
    assert stored["code_qp"].tolist() == reference["code_qp"].tolist()
    assert stored["n_tiers_lieux"].tolist() == reference["n_tiers_lieux"].tolist()
    assert stored["nearest_id"].tolist() == reference["nearest_id"].tolist()
    assert stored["nearest_distance_m"].astype(float).tolist() == pytest.approx(
        reference["nearest_distance_m"].astype(float).tolist(), abs=0.1)


def test_a_filter_that_leaves_out_the_stored_nearest_searches_on_demand(layers, store_of) -> None:
    qpv, tiers_lieux = layers
    con = store_of(qpv=qpv, tiers_lieux=tiers_lieux)
    result = coverage.qpv_coverage(con, Selection(tiers_lieu_types=("coworking",)), radius_m=1000,
                                   geometry="exact").set_index("code_qp")
    kept = tiers_lieux[tiers_lieux["types"] == "coworking"]
    reference = proximity.qpv_tiers_lieux(qpv, kept, radius_m=1000).set_index("code_qp")
    assert result.loc["QN01303M", "nearest_id"] == reference.loc["QN01303M", "nearest_id"] == "TL1"
    assert result.loc["QN01303M", "nearest_distance_m"] == pytest.approx(
        reference.loc["QN01303M", "nearest_distance_m"], abs=0.1)
    assert isinstance(result.geometry.iloc[0], shapely.Polygon)


@pytest.mark.slow
def test_table_queries_of_the_cli_import_no_geometry_library(layers, build, tmp_path) -> None:
    """`essmap query qpv-radius` (CSV) and `essmap query indicators` are answered by the stored joins:
    the process never imports geopandas, shapely or pyproj (about half a second of start-up).

    Slow (left out by `make test-unit`): only a fresh interpreter shows what a command imports, and
    two of them take 3-4 s."""
    qpv, tiers_lieux = layers
    db = build.make_store(tmp_path / "store.duckdb", qpv=qpv, tiers_lieux=tiers_lieux)
    script = (
        "import sys\n"
        "from essmap.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('geopandas', 'shapely', 'pyproj') if m in sys.modules))\n"
    )
    for command in (["query", "qpv-radius"], ["query", "indicators"]):
        out = tmp_path / f"{command[1]}.csv"
        done = subprocess.run([sys.executable, "-c", script, *command, "--db", str(db), "--out", str(out)],
                              capture_output=True, text=True, cwd=Path(__file__).parents[2], check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]", command
        assert out.stat().st_size > 0
