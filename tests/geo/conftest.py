"""Real layers shipped in data/geo, read once per session."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from geo_helpers import COMMUNES, QPV_PACA


@pytest.fixture(scope="session")
def paca_qpv() -> gpd.GeoDataFrame:
    """The real QPVs (2024 generation) of Provence-Alpes-Côte d'Azur shipped in data/geo."""
    raw = gpd.read_file(QPV_PACA)
    assert raw.crs.to_epsg() == 4326 and len(raw) == 135
    return gpd.GeoDataFrame({"code_qp": raw["q"].astype("string"), "territoire": "metropole"},
                            geometry=raw.geometry.to_numpy(), crs=4326)


@pytest.fixture(scope="session")
def communes_13_83() -> gpd.GeoDataFrame:
    """Real communes of the Bouches-du-Rhône and Var with Marseille's arrondissements (which
    overlap Marseille), rows shuffled so that key order is not row order."""
    communes = gpd.read_parquet(COMMUNES)
    communes = communes[communes["code_departement"].isin(["13", "83"])]
    communes = communes.sample(frac=1.0, random_state=5)
    communes.index = np.arange(len(communes)) * 7
    return communes[["code_insee", "type_commune", "geometry"]].astype({"code_insee": "string"})
