"""Shared fixtures: a small embedded-demo store built once per session by the package itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from essmap.domain.config import Settings

DATA_DIR = Path(__file__).parent / "data"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"

#: Scale of the synthetic establishments in the test store (1 = realistic volumes).
TEST_SCALE = 0.05


@pytest.fixture(scope="session")
def demo_settings(tmp_path_factory) -> Settings:
    folder = tmp_path_factory.mktemp("demo")
    return Settings(data_dir=PROJECT_DATA, db_path=folder / "essmap.duckdb", cache_dir=folder / "cache")


@pytest.fixture(scope="session")
def demo_db(demo_settings) -> Path:
    """The embedded demo (PACA) at a small synthetic scale, built through the real pipeline."""
    from essmap.demo.build import build_demo

    build_demo(demo_settings, scale=TEST_SCALE)
    return demo_settings.db_path


@pytest.fixture(scope="session")
def shared_qpv2015_lyon() -> Path:
    """The real 2015-generation QPV file of the Lyon metropolis (ANCT), copied in tests/data."""
    return DATA_DIR / "qpv" / "qpv2015_lyon.geojson"


@pytest.fixture(scope="session")
def bdr_layers(demo_db) -> dict:
    """The analysis layers of the Bouches-du-Rhône (13) in the demo store (read-only: do not modify)."""
    from essmap import store

    con = store.connect(demo_db)
    try:
        return store.read_analysis_layers(con, departements=["13"])
    finally:
        con.close()
