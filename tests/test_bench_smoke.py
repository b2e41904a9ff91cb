"""Smoke test of the benchmark data generators (bench/) at a tiny size: shapes and columns only.

No timing and no PostGIS here: `make bench` measures; this only guards the generators against
drifting from the canonical schema and the official SIRENE layouts.
"""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely

from essmap.domain import schema
from essmap.io.readers.common import siret_problems
from essmap.io.readers.sirene import ETABLISSEMENT_COLUMNS, UNITE_LEGALE_COLUMNS

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("national_data"), importlib.import_module("sirene_stock")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def tiny(bench_modules):
    nd, _ = bench_modules
    sizes = nd.Sizes(establishments=3_000, qpv_metropole=25, qpv_overseas=10, tiers_lieux=60)
    return nd.generate(sizes, seed=7)


def test_national_generator_shapes_and_columns(bench_modules, tiny) -> None:
    nd, _ = bench_modules
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
    assert ((qpv["area_ha"] >= 4.9) & (qpv["area_ha"] <= 200.1)).all()

    est = tiny.establishments
    assert len(est) == 3_000 and est["siret"].is_unique
    assert siret_problems(est["siret"]).isna().all()
    assert (est["siret"].str[:9] == est["siren"]).all()
    assert est["famille"].notna().all() and est["secteur"].notna().all()
    assert est["is_synthetic"].all()
    # each point lies in the commune it is coded in (arrondissements for Paris, Lyon, Marseille)
    communes = tiny.communes.set_index("code_insee")
    polygons = communes.loc[est["code_commune"].to_numpy()].geometry.values
    assert shapely.contains_xy(polygons, est["longitude"].to_numpy(), est["latitude"].to_numpy()).mean() > 0.999
    assert len(tiny.tiers_lieux) == 60

    again = nd.generate(tiny.sizes, seed=7)
    assert np.array_equal(again.establishments["longitude"].to_numpy(), est["longitude"].to_numpy())


def test_sirene_stock_uses_official_layouts(bench_modules, tiny, tmp_path) -> None:
    _, stock = bench_modules
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
    assert all(len(row) == len(ETABLISSEMENT_COLUMNS) for row in rows)
