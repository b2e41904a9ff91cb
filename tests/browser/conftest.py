"""Browser tests of the dashboard: one Streamlit server and one chromium per session.

The server runs on a copy of the small demo store (``demo_db``) into which the test ingests,
with ``essmap ingest tiers-lieux``, a list of tiers-lieux whose names hold HTML, placed inside
two QPV of Marseille (Bouches-du-Rhône, the département shown by default).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from appdriver import (
    ARTIFACTS,
    ChromiumMissing,
    StreamlitServer,
    launch_chromium,
    new_page,
)

ESSMAP = Path(sys.executable).parent / "essmap"

#: Names as the store must hold them. The tiers-lieux reader decodes HTML entities once
#: (``essmap.io.readers.common.clean_text``: "&amp;" in a source file is an encoding artefact), so
#: the CSV carries ``&amp;amp;`` to store the literal text ``Escale &amp; CO``.
SCRIPT_NAME = "<script>alert(1)</script>"
ENTITY_NAME = "Escale &amp; CO"
#: An address that runs code if a popup inserts it as HTML (an <img> with onerror).
SCRIPT_ADDRESS = '<img src="x" onerror="alert(2)"> 1 rue du Test'


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so the ``page`` fixture knows a test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass(frozen=True)
class HtmlPlace:
    """A tiers-lieu of the test store with a name holding HTML, inside a QPV."""

    name: str
    latitude: float
    longitude: float
    code_qp: str
    lib_qp: str


@dataclass(frozen=True)
class BrowserStore:
    db_path: Path
    script_place: HtmlPlace
    entity_place: HtmlPlace
    qpv_count: int  # QPV of Bouches-du-Rhône, the département shown by default


@pytest.fixture(scope="session")
def browser_store(demo_db, tmp_path_factory) -> BrowserStore:
    """A copy of the demo store plus the HTML-named tiers-lieux, ingested by the CLI."""
    from essmap import store

    folder = tmp_path_factory.mktemp("browser")
    db_path = folder / "essmap.duckdb"
    shutil.copyfile(demo_db, db_path)
    con = store.connect(db_path)
    try:
        qpv = store.read_layer(con, "qpv", departements=["13"])
        tiers_lieux = store.read_layer(con, "tiers_lieux", departements=["13"], columns=["nom"])
    finally:
        con.close()
    # two QPV of Marseille with no tiers-lieu inside: the new places are their only nearest ones
    empty = ~qpv.geometry.apply(lambda shape: bool(tiers_lieux.geometry.within(shape).any()))
    marseille = qpv[empty & qpv["insee_com"].fillna("").str.contains(r"^(?:13055|132\d\d)", regex=True)]
    marseille = marseille.sort_values("code_qp").head(2)
    assert len(marseille) == 2, "the demo store should hold QPV of Marseille without tiers-lieux"
    points = marseille.geometry.representative_point()
    places = [
        HtmlPlace(name, float(p.y), float(p.x), code, lib)
        for name, p, code, lib in zip((SCRIPT_NAME, ENTITY_NAME), points, marseille["code_qp"], marseille["lib_qp"],
                                      strict=True)
    ]
    csv_path = folder / "tiers_lieux_html.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "nom", "adresse", "code_postal", "latitude", "longitude", "types"])
        writer.writerow(["test-html-1", SCRIPT_NAME, SCRIPT_ADDRESS, "13003", places[0].latitude,
                         places[0].longitude, "Coworking"])
        writer.writerow(["test-html-2", "Escale &amp;amp; CO", "2 rue du Test", "13003", places[1].latitude,
                         places[1].longitude, "Coworking"])
    result = subprocess.run([str(ESSMAP), "ingest", "tiers-lieux", str(csv_path), "--db", str(db_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    con = store.connect(db_path)
    try:
        stored = store.read_layer(con, "tiers_lieux", departements=["13"], columns=["id_tiers_lieu", "nom", "adresse"])
    finally:
        con.close()
    names = dict(zip(stored["id_tiers_lieu"], stored["nom"], strict=True))
    assert names.get("test-html-1") == SCRIPT_NAME, names.get("test-html-1")
    assert names.get("test-html-2") == ENTITY_NAME, names.get("test-html-2")
    return BrowserStore(db_path, places[0], places[1], len(qpv))


@pytest.fixture(scope="session")
def app_url(browser_store) -> str:
    """URL of the dashboard served on a free local port for the whole session."""
    with StreamlitServer(browser_store.db_path, ARTIFACTS / "streamlit.log") as server:
        yield server.url


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import expect, sync_playwright

    # the machine may be busy (2 cores shared): waits are generous, they end as soon as the page is ready
    expect.set_options(timeout=30_000)

    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            yield browser
            browser.close()
    except ChromiumMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def page(chromium, request):
    """A fresh browser tab; fails the test if the page opens any dialog (alert, confirm...)."""
    tab = new_page(chromium)
    context = tab.context
    context.set_default_timeout(90_000)
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    yield tab
    try:
        report = getattr(request.node, "report_call", None)
        if report is None or report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failed.png"), full_page=True)
    finally:
        context.close()
    assert not dialogs, f"the page opened dialogs (code from data was executed): {dialogs}"
