"""Shared fixtures: a small embedded-demo store built once per session by the package itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tricky import ESCALE, TRICKY_NAME

from essmap.domain.config import Settings

DATA_DIR = Path(__file__).parent / "data"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"

#: Scale of the synthetic establishments in the test store (1 = realistic volumes).
TEST_SCALE = 0.05

# The CLI's rich consoles are created when essmap.cli is imported and keep the COLUMNS found then;
# the tests choose the width of each invocation (CliRunner(env={"COLUMNS": ...})). An inherited
# COLUMNS would freeze them at its width instead. GNU readline, which pytest imports, sets
# COLUMNS=80 and LINES=24 in the C environment of the process (not in os.environ): the processes it
# starts inherit them, pytest-xdist's workers among them, whose longer temporary paths were then
# folded mid-name in the CLI's messages (18 failures under `-n 2`).
for _variable in ("COLUMNS", "LINES"):
    os.environ.pop(_variable, None)


def _run_folder(tmp_path_factory) -> Path:
    """The temporary folder of the whole run: shared by its pytest-xdist workers (each has its own
    folder inside it), the session's own folder without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="module")
def sessions():
    """bench/sessions.py (the protocol client of the benchmarks and of the serving tests), imported as
    bench/run.py imports it."""
    bench = Path(__file__).resolve().parent.parent / "bench"
    sys.path.insert(0, str(bench))
    try:
        import sessions as module

        yield module
    finally:
        sys.path.remove(str(bench))


@pytest.fixture(scope="session")
def demo_settings(tmp_path_factory) -> Settings:
    folder = _run_folder(tmp_path_factory) / "demo"
    folder.mkdir(exist_ok=True)
    return Settings(data_dir=PROJECT_DATA, db_path=folder / "essmap.duckdb", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def demo_db(demo_settings) -> Path:
    """The embedded demo (PACA) at a small synthetic scale, built through the real pipeline.

    Built once per run (4 to 7 s): the first pytest-xdist worker to need it builds it, the others wait
    for it. Read only: a test that writes works on a copy."""
    import fcntl

    from essmap.demo.build import build_demo

    folder = demo_settings.db_path.parent
    with open(folder / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "built").exists():
            build_demo(demo_settings, scale=TEST_SCALE)
            (folder / "built").touch()
    return demo_settings.db_path


@pytest.fixture(scope="session")
def shared_qpv2015_lyon() -> Path:
    """The real 2015-generation QPV file of the Lyon metropolis (ANCT), copied in tests/data."""
    return DATA_DIR / "qpv" / "qpv2015_lyon.geojson"


@pytest.fixture(scope="session")
def demo_con(demo_db):
    """A read-only connection to the demo store (the tests of one session share it; do not close)."""
    from essmap import store

    con = store.connect(demo_db)
    yield con
    con.close()


@pytest.fixture(scope="session")
def bdr_layers(demo_con) -> dict:
    """The exact layers of the Bouches-du-Rhône (13) in the demo store, for checks (read-only)."""
    from essmap import store

    return {table: store.read_layer(demo_con, table, departements=["13"])
            for table in ("communes", "qpv", "etablissements", "tiers_lieux")}

@pytest.fixture(scope="session")
def tricky_db(demo_db, tmp_path_factory) -> Path:
    """A copy of the demo store where Aix-en-Provence (13001) and Marseille (13055) are named
    :data:`TRICKY_NAME` and Marseille's largest ESS employer :data:`ESCALE`."""
    import shutil

    import duckdb

    from essmap import store
    from essmap.domain.selection import Selection
    from essmap.render.portrait import largest_employers
    from essmap.store import queries

    path = tmp_path_factory.mktemp("tricky") / "essmap.duckdb"
    shutil.copyfile(demo_db, path)
    con = store.connect(path)
    try:
        marseille = queries.read_points(con, "etablissements", Selection(communes=("13055",)))
        siret = str(largest_employers(marseille)["siret"].iloc[0])
    finally:
        con.close()
    con = duckdb.connect(str(path))
    try:
        con.execute("UPDATE communes SET nom = ? WHERE code_insee IN ('13001', '13055')", [TRICKY_NAME])
        con.execute("UPDATE etablissements SET denomination = ? WHERE siret = ?", [ESCALE, siret])
    finally:
        con.close()
    return path


@pytest.hookimpl(tryfirst=True)  # pytest-xdist's own scheduler for loadgroup is never asked
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist with ``--dist loadgroup`` (``make test`` and ``make test-unit``) the tests
    are handed out by :func:`xdist_scope`, not by ``xdist_group`` markers: with pytest 9 the suffix
    pytest-xdist 3.8 writes into node ids to group them no longer takes, so the markers were
    silently ignored and every test was handed out alone."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ByScope(config, log)


def xdist_scope(nodeid: str) -> str:
    """The tests of one scope run on one worker, one after the other.

    A module is a scope: its module-scoped fixtures (a real layer read, a store built, synthetic
    files written) are built once, not on both workers and again each time a worker came back to the
    module (tests handed out one by one: 3 builds of one fixture in one run). The browser tests on the
    shared dashboard server form one scope, as in a serial run: one Streamlit server and one
    chromium, not one per worker writing the same log. The tests that start servers of their own
    (:data:`OWN_SERVER_MODULES`, the longest) form another, so that the two can run side by side
    while the other modules fill the gaps."""
    module = nodeid.split("::", 1)[0]
    folder, _, name = module.rpartition("/")
    if folder.endswith("tests/browser"):
        return "browser-own-servers" if name in OWN_SERVER_MODULES else "browser"
    return module


#: Browser test modules whose tests start their own Streamlit servers (see xdist_scope).
OWN_SERVER_MODULES = frozenset({"test_concurrency.py", "test_replicas.py"})
