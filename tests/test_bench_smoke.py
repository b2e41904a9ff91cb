"""Smoke test of the benchmark harness (bench/) on tiny data, without the browser and without PostGIS.

No figure is checked here (`make bench` measures): only that the generators keep the canonical
schema and the official layouts, that the files written for the national store are read by
essmap's own readers, that a measured process reports its own peak memory (not its parent's), and
that the command-line and point-in-polygon cases run end to end, agree with their baselines, and
end up as verdicts in the report.
"""

from __future__ import annotations

import csv
import importlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely

from essmap.domain import schema
from essmap.io.readers.common import siret_problems
from essmap.io.readers.qpv import read_qpv
from essmap.io.readers.sirene import ETABLISSEMENT_COLUMNS, UNITE_LEGALE_COLUMNS
from essmap.io.readers.tiers_lieux import read_tiers_lieux

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench():
    """The harness modules, imported as bench/run.py imports them."""
    sys.path.insert(0, str(BENCH))
    try:
        names = ("national_data", "sirene_stock", "measure", "national_store", "cases", "pip_recipes", "report")
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def tiny(bench):
    nd = bench["national_data"]
    sizes = nd.Sizes(establishments=3_000, qpv_metropole=25, qpv_overseas=10, tiers_lieux=60)
    return nd.generate(sizes, seed=7)


def test_national_generator_shapes_and_columns(bench, tiny) -> None:
    nd = bench["national_data"]
    for frame in (tiny.communes, tiny.qpv, tiny.establishments, tiny.tiers_lieux):
        assert frame.crs.to_epsg() == 4326
    assert list(tiny.establishments.columns[:-1]) == list(schema.ETABLISSEMENTS)
    assert list(tiny.tiers_lieux.columns[:-1]) == list(schema.TIERS_LIEUX)
    assert set(schema.QPV) <= set(tiny.qpv.columns)
    assert set(schema.COMMUNES) <= set(tiny.communes.columns)
    assert len(tiny.communes) > 34_000  # the real boundaries shipped in data/geo

    qpv = tiny.qpv
    assert len(qpv) == 35
    assert set(qpv.loc[qpv["territoire"] != "metropole", "insee_dep"]) == {"971", "972", "973", "974", "976"}
    assert shapely.is_valid(qpv.geometry.values).all()
    left, right = shapely.STRtree(qpv.geometry.values).query(qpv.geometry.values, predicate="intersects")
    assert (left == right).all(), "QPVs must not overlap"
    assert qpv["code_qp"].is_unique and qpv["code_qp"].str.match(r"^QN\w{3}\d{2,3}M?$").all()

    est = tiny.establishments
    assert len(est) == 3_000 and est["siret"].is_unique
    assert siret_problems(est["siret"]).isna().all()
    assert (est["siret"].str[:9] == est["siren"]).all()
    assert est["is_synthetic"].all()
    communes = tiny.communes.set_index("code_insee")
    polygons = communes.loc[est["code_commune"].to_numpy()].geometry.values
    assert shapely.contains_xy(polygons, est["longitude"].to_numpy(), est["latitude"].to_numpy()).mean() > 0.999

    again = nd.generate(tiny.sizes, seed=7)
    assert np.array_equal(again.establishments["longitude"].to_numpy(), est["longitude"].to_numpy())


def test_sirene_stock_uses_official_layouts(bench, tiny, tmp_path) -> None:
    stock = bench["sirene_stock"]
    meta = stock.write_stock(tiny, stock.StockSizes(establishments=4_000, ess_active=1_000), out_dir=tmp_path,
                             log=lambda _msg: None)
    with open(meta["unites_legales"], newline="", encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == UNITE_LEGALE_COLUMNS
    with open(meta["etablissements"], newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert tuple(next(reader)) == ETABLISSEMENT_COLUMNS
        rows = list(reader)
    assert len(rows) == meta["etablissements_rows"] == 4_000
    assert meta["ess_active_establishments"] == 1_000


def test_national_store_files_are_read_by_essmap(bench, tiny, tmp_path) -> None:
    """The QPV GeoJSON (ANCT layout) and the tiers-lieux CSV (census columns) the store is loaded from."""
    store = bench["national_store"]
    store.write_qpv_geojson(tiny, tmp_path / store.QPV_FILE)
    store.write_tiers_lieux_csv(tiny, tmp_path / store.TIERS_LIEUX_FILE)
    qpv = read_qpv(tmp_path / store.QPV_FILE)
    assert qpv.meta.rows_kept == len(tiny.qpv) and qpv.meta.generation == "2024"
    assert sorted(qpv.frame["code_qp"]) == sorted(tiny.qpv["code_qp"])
    tiers_lieux = read_tiers_lieux(tmp_path / store.TIERS_LIEUX_FILE)
    assert tiers_lieux.meta.rows_kept == len(tiny.tiers_lieux)
    assert tiers_lieux.meta.is_synthetic  # flagged by the manifest written beside it


@pytest.mark.slow
def test_measured_process_reports_its_own_peak_memory(bench) -> None:
    """A child allocating ~200 MB, spawned by a parent holding ~400 MB, reports ~200 MB.

    Slow (left out by `make test-unit`): three processes, and 600 MB written, 2-5 s."""
    measure = bench["measure"]
    held = np.ones(400 * 2**20 // 8)  # the parent's memory, which a direct spawn would report
    run = measure.run_process([sys.executable, "-c", "import numpy; a = numpy.ones(200 * 2**20 // 8); a.sum()"])
    assert 200 <= run.peak_rss_mb < 350, run.peak_rss_mb
    assert run.returncode == 0 and 0 < run.wall_s < 60
    assert held.sum() > 0
    failed = measure.run_process([sys.executable, "-c", "import sys; sys.exit(3)"], check=False)
    assert failed.returncode == 3
    with pytest.raises(RuntimeError, match="status 3"):
        measure.run_process([sys.executable, "-c", "import sys; sys.exit(3)"])


#: Ten whole processes (five commands, each a warm-up and a measured run), each importing essmap's stack:
#: about 20 s on an idle 2-core machine, 40 s under load. `make test` runs it, `make test-unit` leaves it out.
@pytest.mark.slow
def test_cli_and_pip_cases_run_agree_and_reach_the_report(bench, tiny, demo_db, tmp_path) -> None:
    cases, pip_recipes, report = bench["cases"], bench["pip_recipes"], bench["report"]
    db = tmp_path / "store.duckdb"
    shutil.copyfile(demo_db, db)
    cli = cases.run(db, runs=1)
    cli["date"] = "today"
    assert cli["qpv_radius.essmap"]["wall"]["values"][0] > 0
    assert cli["qpv_radius.essmap"]["peak_mb"]["values"][0] > 20
    assert set(cli["agreement"]["indicators"]["same_share"].values()) == {1.0}
    assert cli["agreement"]["qpv_radius"]["rows_baseline"] == cli["agreement"]["qpv_radius"]["rows_essmap"] > 0
    assert cli["agreement"]["qpv_radius"]["same_covered"] > 0.95

    pip = pip_recipes.run(tiny, repeat=1, postgis=False, skip=("duckdb.spatial",))
    pip.update({"date": "today", "load_before": (0.0,) * 3, "load_after": (0.0,) * 3})
    for layer in pip["layers"].values():
        assert {r["same_share"] for r in layer["recipes"].values()} == {1.0}
        assert layer["best_library"] in layer["recipes"] and layer["essmap_vs_best"] > 0

    text = report.render({"cli": cli, "pip": pip, "machine": {"CPU": "test"}, "small": True})
    assert "`essmap query qpv-radius --radius 1000`, national store, whole process" in text
    assert "ingest-time point in polygon, 3,000 points → QPV" in text
    assert "**PASS**" in text or "**FAIL**" in text
    assert "not measured" in text  # the parts not run say so
