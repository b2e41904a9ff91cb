"""Several users at once on one dashboard process, and a store replaced while it serves.

Each session's script runs in its own thread; these tests check that every session gets its own,
correct answer when they all open cold views at the same time (a shared DuckDB connection once
gave one session the result of another), and that an ingest is seen by the next page load.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from appdriver import ARTIFACTS, StreamlitServer, map_frame, wait_for_script_idle
from test_dashboard_browser import metric_value

from essmap import store
from essmap.domain.formatting import format_number
from essmap.domain.selection import Selection
from essmap.store import queries

pytestmark = pytest.mark.browser

ESSMAP = Path(sys.executable).parent / "essmap"

#: Départements opened at once (the demo's six minus the 13 that other tests warm).
DEPARTEMENTS = ("04", "05", "06", "83", "84")
LABELS = ("Établissements ESS (données simulées)", "Tiers-lieux", "QPV", "Unités cartographiées (commune)")


def _answer(page) -> dict[str, str]:
    """What a session shows of its view: the key figures above the map and the territory caption."""
    figures = {label: metric_value(page, label) for label in LABELS}
    caption = page.locator('[data-testid="stCaptionContainer"]').filter(visible=True).first.inner_text()
    return {**figures, "caption": caption.split(" · ")[0]}


def _expected(db_path, departement: str) -> dict[str, str]:
    """The same figures read from the store directly."""
    con = store.connect(db_path)
    try:
        selection = Selection(departements=(departement,))
        name = queries.names(con, {"departement": [departement]})["departement"][departement]
        return {
            LABELS[0]: format_number(len(queries.read_points(con, "etablissements", selection, columns=["siret"]))),
            LABELS[1]: format_number(len(queries.read_points(con, "tiers_lieux", selection, columns=["nom"]))),
            LABELS[2]: format_number(len(queries.qpv_coverage(con, selection, radius_m=1000))),
            LABELS[3]: format_number(con.execute(
                "SELECT count(*) FROM communes WHERE code_departement = ? AND type_commune = 'COM'",
                [departement]).fetchone()[0]),
            "caption": f"{name} ({departement})",
        }
    finally:
        con.close()


def _open_at_once(chromium, url: str, departements) -> dict[str, dict[str, str]]:
    """Open one fresh tab per département, start all navigations before waiting for any."""
    pages = {}
    try:
        for dep in departements:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            page.goto(f"{url}/?departements={dep}", wait_until="commit")
            pages[dep] = page
        answers = {}
        for dep, page in pages.items():
            map_frame(page, timeout_ms=180_000)
            wait_for_script_idle(page, timeout_ms=180_000)
            answers[dep] = _answer(page)
        return answers
    finally:
        for page in pages.values():
            page.close()


def test_sessions_opened_at_once_each_get_their_own_answer(browser_store, chromium, tmp_path):
    log = ARTIFACTS / "streamlit_concurrency.log"
    with StreamlitServer(browser_store.db_path, log) as server:
        together = _open_at_once(chromium, server.url, DEPARTEMENTS)
        alone = {dep: _open_at_once(chromium, server.url, [dep])[dep] for dep in DEPARTEMENTS}
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if "Traceback" in line or "Exception" in line]
    for dep in DEPARTEMENTS:
        expected = _expected(browser_store.db_path, dep)
        assert together[dep] == expected, (dep, together[dep], expected)
        assert alone[dep] == together[dep], dep
    assert not errors, errors


def test_an_open_dashboard_reads_the_store_an_ingest_replaced(browser_store, chromium, tmp_path):
    """After an ingest, the next page load shows the new data (no restart), and the old file is
    released (no process keeps the replaced file open)."""
    db = tmp_path / "essmap.duckdb"
    shutil.copyfile(browser_store.db_path, db)
    csv = tmp_path / "un_tiers_lieu.csv"
    csv.write_text("id,nom,adresse,code_postal,latitude,longitude,types\n"
                   "test-new-1,Nouveau lieu,1 place du Test,04000,44.0925,6.2356,Coworking\n", encoding="utf-8")
    with StreamlitServer(db, ARTIFACTS / "streamlit_reload.log") as server:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        try:
            page.goto(f"{server.url}/?departements=04")
            map_frame(page, timeout_ms=120_000)
            wait_for_script_idle(page)
            before = int(metric_value(page, "Tiers-lieux").replace("\u202f", ""))
            result = subprocess.run([str(ESSMAP), "ingest", "tiers-lieux", str(csv), "--db", str(db)],
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stdout + result.stderr
            page.reload()
            map_frame(page, timeout_ms=120_000)
            wait_for_script_idle(page)
            after = int(metric_value(page, "Tiers-lieux").replace("\u202f", ""))
            held = subprocess.run(["ls", "-l", f"/proc/{server.process.pid}/fd"], capture_output=True, text=True)
        finally:
            page.close()
    assert after == before + 1
    assert "(deleted)" not in held.stdout, held.stdout
