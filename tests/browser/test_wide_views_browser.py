"""Région and France views in the browser: chosen in the sidebar or opened from a link."""

from __future__ import annotations

import pytest
from appdriver import map_frame, wait_for_script_idle

from essmap import store

pytestmark = pytest.mark.browser


def _metric(page, label: str) -> str:
    value = (page.locator('[data-testid="stMetric"]')
             .filter(has=page.locator('[data-testid="stMetricLabel"]').get_by_text(label))
             .filter(visible=True).locator('[data-testid="stMetricValue"]'))
    return value.first.inner_text()


def _number(text: str) -> int:
    return int("".join(ch for ch in text if ch.isdigit()))


def _layer_names(frame) -> list[str]:
    return [t.strip() for t in frame.locator(".leaflet-control-layers-overlays label").all_inner_texts()]


def _count(db, sql: str) -> int:
    con = store.connect(db)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def test_a_region_link_shows_the_whole_region(page, app_url, browser_store):
    page.goto(app_url + "/?region=93")
    frame = map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    expected = _count(browser_store.db_path, "SELECT count(*) FROM etablissements WHERE code_region = '93'")
    assert _number(_metric(page, "Établissements ESS")) == expected
    assert "Établissements ESS (regroupés par EPCI)" in _layer_names(frame)
    epci = _count(browser_store.db_path, "SELECT count(DISTINCT siren_epci) FROM communes "
                                         "WHERE code_region = '93' AND type_commune = 'COM'")
    assert _number(_metric(page, "Unités cartographiées (EPCI)")) == epci  # a région opens by EPCI
    assert "region=93" in page.url and "departements" not in page.url and "niveau" not in page.url
    page.get_by_label("Niveau").click()  # the commune level stays a choice
    page.get_by_role("option", name="Commune").click()
    wait_for_script_idle(page)
    map_frame(page, timeout_ms=120_000)
    communes = _count(browser_store.db_path,
                      "SELECT count(*) FROM communes WHERE code_region = '93' AND type_commune = 'COM'")
    assert _number(_metric(page, "Unités cartographiées (commune)")) == communes
    assert "niveau=commune" in page.url


def test_france_is_chosen_in_the_sidebar_and_kept_in_the_link(page, app_url, browser_store):
    page.goto(app_url + "/")
    map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    page.get_by_label("Région").click()  # the sidebar's select boxes, by their French labels
    page.get_by_role("option", name="France entière").click()
    wait_for_script_idle(page)
    page.get_by_label("Département").click()
    page.get_by_role("option", name="Tous les départements").click()
    wait_for_script_idle(page)
    frame = map_frame(page, timeout_ms=120_000)
    assert "Établissements ESS (regroupés par département)" in _layer_names(frame)
    assert "france=1" in page.url
    total = _count(browser_store.db_path, "SELECT count(*) FROM etablissements")
    assert _number(_metric(page, "Établissements ESS")) == total
    page.reload()
    frame = map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    assert "Établissements ESS (regroupés par département)" in _layer_names(frame)
