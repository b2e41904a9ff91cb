"""The dashboard in a real browser (Debian chromium): map, legend, filters, radius, fiche, links, escaping.

One Streamlit server serves the whole session (``app_url``) on a copy of the demo store with
HTML-named tiers-lieux (``browser_store``); every test opens a fresh tab that fails on any
dialog, so a name executed as code (``alert``) fails the test that shows it. Screenshots go to
tests/artifacts/browser/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from appdriver import ARTIFACTS, click_map_at, map_frame, wait_for_script_idle

pytestmark = pytest.mark.browser


def open_app(page, url: str, query: str = ""):
    """Load the dashboard and return the frame of its complete map."""
    page.goto(url + (f"/?{query}" if query else "/"))
    frame = map_frame(page)
    wait_for_script_idle(page)
    return frame


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def popup_text(frame, containing: str) -> str:
    """Text of the open map popup that contains ``containing``."""
    popup = frame.locator(".leaflet-popup-content").filter(has_text=containing)
    expect(popup).to_be_visible()
    return popup.inner_text()


def test_map_draws_and_labels_synthetic_data(page, app_url):
    frame = open_app(page, app_url)
    expect(page.get_by_text("essmap : l'économie sociale et solidaire", exact=False).first).to_be_visible()
    expect(page.locator('[data-testid="stAlert"]').filter(has_text="données simulées").first).to_be_visible()
    assert "données simulées" in frame.locator("body").inner_text()
    assert frame.locator(".leaflet-container").count() == 1
    shot(page, "map")


def test_html_names_show_as_text_in_popups(page, app_url, browser_store):
    frame = open_app(page, app_url)
    place = browser_store.script_place
    click_map_at(page, frame, place.latitude, place.longitude, zoom=18)
    text = popup_text(frame, place.name)
    shot(page, "popup-script-name")
    assert place.name == "<script>alert(1)</script>"
    assert place.name in text
    assert '<img src="x" onerror="alert(2)">' in text
    assert frame.locator(".leaflet-popup-content script, .leaflet-popup-content img").count() == 0

    place = browser_store.entity_place
    click_map_at(page, frame, place.latitude, place.longitude, zoom=18)
    assert place.name == "Escale &amp; CO"
    text = popup_text(frame, place.name)
    shot(page, "popup-entity-name")
    assert re.search(r"(^|\n)" + re.escape(place.name) + r"($|\n)", text), text
