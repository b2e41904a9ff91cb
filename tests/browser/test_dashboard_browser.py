"""The dashboard in a real browser (Debian chromium): map, legend, filters, radius, fiche, links, escaping.

One Streamlit server serves the whole session (``app_url``) on a copy of the demo store with
HTML-named tiers-lieux (``browser_store``); every test opens a fresh tab that fails on any
dialog, so a name executed as code (``alert``) fails the test that shows it. Widgets are found
by their French labels, as a user finds them. Screenshots go to tests/artifacts/browser/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from appdriver import (
    ARTIFACTS,
    click_map_at,
    map_frame,
    mark_map_stale,
    wait_for_script_idle,
)
from playwright.sync_api import expect

from essmap.analysis.indicators import INDICATORS_BY_KEY
from essmap.present.view import DEFAULT_INDICATOR
from essmap.present.viewdata import legend_title

pytestmark = pytest.mark.browser

RADIUS_COLUMNS = ["QPV", "Code QPV", "Commune", "Tiers-lieux dans le rayon", "Tiers-lieu le plus proche",
                  "Distance (m)"]
PERCENT = re.compile(r"^\d{1,3}(,\d+)?\u202f%$")


# --- Helpers -----------------------------------------------------------------------------------


def open_app(page, url: str, query: str = ""):
    """Load the dashboard and return the frame of its complete map."""
    page.goto(url + (f"/?{query}" if query else "/"))
    frame = map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    return frame


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def metric(page, label: str):
    """The visible metric whose label is ``label`` (hidden tabs hold metrics too)."""
    return (page.locator('[data-testid="stMetric"]')
            .filter(has=page.locator('[data-testid="stMetricLabel"]').get_by_text(label, exact=True))
            .filter(visible=True))


def metric_value(page, label: str) -> str:
    found = metric(page, label)
    expect(found).to_have_count(1)
    return found.locator('[data-testid="stMetricValue"]').inner_text().strip()


def french_number(text: str) -> float:
    return float(text.replace("\u202f", "").replace("%", "").replace(",", ".").strip())


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    wait_for_script_idle(page)
    expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")


def sidebar_checkbox(page, label: str):
    return page.locator('[data-testid="stSidebar"] [data-testid="stCheckbox"]').filter(has_text=label)


def table_rows(table) -> list[list[str]]:
    """Cells of every row of a static table (``st.table``: a real HTML table, every row drawn)."""
    # one round trip for the whole table (a locator per cell made the radius test wait a minute)
    return table.evaluate("t => Array.from(t.querySelectorAll('tbody tr'), "
                          "r => Array.from(r.querySelectorAll('td'), c => c.textContent || ''))")


def table_row(table, cells: dict[int, str]) -> list[str]:
    """The row whose cells match ``{column index: text}``."""
    rows = table_rows(table)
    row = next((r for r in rows if all(len(r) > i and r[i] == text for i, text in cells.items())), None)
    assert row is not None, f"no row with {cells} in {rows[:5]}..."
    return row


def visible_table(page, index: int = 0):
    tables = page.locator('[data-testid="stTable"]').filter(visible=True)
    expect(tables.nth(index)).to_be_visible()
    return tables.nth(index)


def cut_texts(page) -> list[str]:
    """Visible texts of the main area cut by their box (ellipsis, "…"): card titles, labels, headings."""
    return page.evaluate("""() => {
      const cut = [];
      for (const e of document.querySelectorAll('[data-testid="stMain"] [role="tabpanel"] *')) {
        if (!e.offsetParent || getComputedStyle(e).textOverflow !== 'ellipsis') continue;
        if (e.scrollWidth > e.clientWidth + 1) cut.push(e.textContent);
      }
      return cut;
    }""")


def legend_text(frame) -> str:
    return frame.locator("body").inner_text()


def hide_point_layers(frame) -> None:
    """Untick the point layers in the layer switcher, as a user would to click a polygon."""
    for name in ("Établissements ESS (points regroupés)", "Tiers-lieux (points)"):
        box = frame.locator(".leaflet-control-layers-overlays label").filter(has_text=name).locator("input")
        if box.count() and box.first.is_checked():
            box.first.uncheck()


# --- Tests -------------------------------------------------------------------------------------


def test_map_legend_and_synthetic_notice(page, app_url):
    frame = open_app(page, app_url)
    shot(page, "map")
    expect(page.get_by_role("heading", name="essmap : l'économie sociale et solidaire, les QPV et les tiers-lieux"))\
        .to_be_visible()
    expect(page.locator('[data-testid="stAlert"]').filter(has_text="données simulées").first).to_be_visible()
    indicator = INDICATORS_BY_KEY[DEFAULT_INDICATOR]
    text = legend_text(frame)
    assert legend_title(indicator) == indicator.label_fr in text  # "... pour 10 000 habitants": the unit once
    assert "(pour 10 000 hab.)" not in text
    assert "Pas de données" in text
    assert f"Source : {indicator.source_fr}" in text
    assert "données simulées" in text  # on the map itself, not only in the page
    assert frame.locator(".leaflet-container").count() == 1
    # the layer switcher wraps the long indicator name instead of covering a third of the map
    switcher = frame.locator(".leaflet-control-layers").bounding_box()
    assert switcher["width"] <= 300, switcher


def test_filter_change_updates_figures_and_map(page, app_url, browser_store):
    frame = open_app(page, app_url)
    label = "Établissements ESS (données simulées)"
    before = french_number(metric_value(page, label))
    frame.evaluate("() => { window.essmapTestMark = 'same frame'; window.map.essmapTestFirst = true; }")
    mark_map_stale(frame)
    sidebar_checkbox(page, "Établissements employeurs uniquement").locator("label").click()
    wait_for_script_idle(page)
    frame = map_frame(page)  # a new map is drawn
    after = french_number(metric_value(page, label))
    shot(page, "filter-employeurs")
    assert 0 < after < before
    assert "employer_only=1" in page.url
    # in the frame already open (not a new one), one map with its own legend
    assert frame.evaluate("() => window.essmapTestMark") == "same frame"
    assert frame.locator(".leaflet-container").count() == 1
    assert frame.locator(".essmap-legend").count() == 1
    assert frame.evaluate("() => window.map.essmapTestFirst") is None
    # the filter off again: the first map, kept by the frame, is shown again, and answers clicks
    mark_map_stale(frame)
    sidebar_checkbox(page, "Établissements employeurs uniquement").locator("label").click()
    wait_for_script_idle(page)
    frame = map_frame(page)
    assert french_number(metric_value(page, label)) == before
    assert frame.evaluate("() => window.essmapTestMark") == "same frame"
    assert frame.evaluate("() => window.map.essmapTestFirst") is True
    assert frame.locator(".leaflet-container").count() == 1
    assert frame.locator(".essmap-legend").count() == 1
    assert frame.locator(".leaflet-container").bounding_box()["height"] > 500
    hide_point_layers(frame)
    place = browser_store.script_place
    click_map_at(page, frame, place.latitude, place.longitude, zoom=16)
    expect(page.get_by_role("heading", name=f"Fiche : {place.lib_qp}")).to_be_visible()


def test_a_drawn_map_sends_nothing_until_a_click(page, app_url, browser_store):
    """The map's frame reports to the server only on a click: a report reruns the whole script and
    redraws the page, which once followed every new map (the frame's first value differed from the
    component's default)."""
    reports: list[str] = []

    def watch(socket) -> None:
        def sent(payload) -> None:
            text = payload.decode("latin-1") if isinstance(payload, bytes) else str(payload)
            if "last_object_clicked_count" in text:
                reports.append(text)
        socket.on("framesent", sent)

    page.on("websocket", watch)
    frame = open_app(page, app_url)
    page.wait_for_timeout(1_000)  # the frame reports moves after 250 ms
    mark_map_stale(frame)
    sidebar_checkbox(page, "Établissements employeurs uniquement").locator("label").click()
    wait_for_script_idle(page)
    frame = map_frame(page)  # the new map
    page.wait_for_timeout(1_000)
    assert reports == []
    hide_point_layers(frame)
    place = browser_store.script_place
    click_map_at(page, frame, place.latitude, place.longitude, zoom=16)
    expect(page.get_by_role("heading", name=f"Fiche : {place.lib_qp}")).to_be_visible()
    assert len(reports) >= 1  # the click, and only it, reached the server


def test_radius_tab_table_and_coverage(page, app_url, browser_store):
    open_app(page, app_url, "rayon=100")
    open_tab(page, "Rayon autour des QPV")
    small = metric_value(page, "QPV couverts")
    assert PERCENT.match(small), small
    expect(page.get_by_role("heading", name="Tiers-lieux autour des QPV")).to_be_visible()
    table = visible_table(page)
    headers = table.locator("thead th").all_text_contents()
    assert headers[: len(RADIUS_COLUMNS)] == RADIUS_COLUMNS
    assert table.locator("tbody tr").count() == browser_store.qpv_count
    distances = [row[5] for row in table_rows(table)]
    assert all(re.fullmatch(r"\d{1,3}(\u202f\d{3})*|–", d) for d in distances), distances  # "14 310"

    for place in (browser_store.script_place, browser_store.entity_place):
        row = table_row(table, {1: place.code_qp})
        shot(page, f"radius-{place.code_qp}")
        assert row[0] == place.lib_qp
        assert row[4] == place.name  # HTML and entities shown as typed
        assert row[5] == "0"
        assert int(row[3]) >= 1

    slider = page.get_by_role("slider", name="Rayon (m)")
    expect(slider).to_have_attribute("aria-valuetext", "100")  # a select slider: what a screen reader reads
    wait_for_script_idle(page)
    for attempt in range(3):  # a key press that lands while a rerun redraws the slider is lost
        slider.focus()
        page.keyboard.press("End")
        try:
            expect(slider).to_have_attribute("aria-valuetext", "5\u202f000", timeout=10_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
            wait_for_script_idle(page)
    wait_for_script_idle(page)
    expect(metric(page, "QPV couverts").locator('[data-testid="stMetricValue"]')).not_to_have_text(small)
    large = metric_value(page, "QPV couverts")
    shot(page, "radius-5000")
    assert french_number(large) > french_number(small)
    assert "rayon=5000" in page.url


def test_click_on_a_qpv_opens_its_fiche(page, app_url, browser_store):
    frame = open_app(page, app_url)
    hide_point_layers(frame)
    place = browser_store.script_place
    click_map_at(page, frame, place.latitude, place.longitude, zoom=16)
    header = page.get_by_role("heading", name=f"Fiche : {place.lib_qp}")
    expect(header).to_be_visible()
    wait_for_script_idle(page)
    expect(page.get_by_role("tab", name="Fiche")).to_have_attribute("aria-selected", "true")
    shot(page, "fiche-qpv")
    figures = page.locator('[data-testid="stMetric"]').filter(visible=True)
    assert figures.count() >= 2
    assert all(f.locator('[data-testid="stMetricValue"]').inner_text().strip() for f in figures.all())
    fiche_text = page.locator('[data-testid="stMain"]').inner_text()
    assert "données simulées" in fiche_text
    assert f"selection={place.code_qp}" in page.url and "onglet=fiche" in page.url
    assert not cut_texts(page), cut_texts(page)  # card titles and labels whole, never cut with "…"
    sources = page.locator('[data-testid="stExpander"]').filter(has_text="Sources et méthode")
    sources.locator("summary").click()
    expect(sources.get_by_text("Source : ").first).to_be_visible()
    assert "France : " in sources.inner_text()
    tiers_lieux = page.locator('[data-testid="stTable"]').filter(visible=True).last
    tiers_lieux.scroll_into_view_if_needed()
    assert any(place.name in row for row in table_rows(tiers_lieux)), table_rows(tiers_lieux)


def test_clicking_the_same_unit_twice_reopens_its_fiche(page, app_url, browser_store):
    frame = open_app(page, app_url)
    hide_point_layers(frame)
    place = browser_store.entity_place
    header = page.get_by_role("heading", name=f"Fiche : {place.lib_qp}")
    for attempt in range(2):
        if attempt:  # back on the map, the same QPV clicked again (a little aside: another click event)
            open_tab(page, "Carte")
            expect(header).to_be_hidden()
        click_map_at(page, frame, place.latitude + 0.00005 * attempt, place.longitude, zoom=16)
        expect(header).to_be_visible()
        wait_for_script_idle(page)
        expect(page.get_by_role("tab", name="Fiche")).to_have_attribute("aria-selected", "true")
    # a shared link of this page reopens the fiche of this QPV, on its tab
    link = page.url
    assert "onglet=fiche" in link and f"selection={place.code_qp}" in link
    other = page.context.new_page()
    other.goto(link)
    expect(other.get_by_role("heading", name=f"Fiche : {place.lib_qp}")).to_be_visible(timeout=120_000)
    expect(other.get_by_role("tab", name="Fiche")).to_have_attribute("aria-selected", "true")
    other.close()


def test_url_restores_the_view(page, app_url, browser_store):
    place = browser_store.entity_place
    indicator = INDICATORS_BY_KEY["n_etablissements"]
    query = (f"departements=13&employer_only=1&indicateur={indicator.key}&niveau=departement&rayon=2500"
             f"&selection={place.code_qp}")
    frame = open_app(page, app_url, query)
    shot(page, "url-view")
    assert sidebar_checkbox(page, "Établissements employeurs uniquement").locator("input").is_checked()
    expect(page.get_by_role("combobox", name="Niveau")).to_have_value("Département")
    expect(page.get_by_role("combobox", name="Indicateur")).to_have_value(indicator.label_fr)
    expect(page.get_by_role("slider", name="Rayon (m)")).to_have_attribute("aria-valuetext", "2\u202f500")
    assert legend_title(indicator) in legend_text(frame)
    open_tab(page, "Fiche")
    expect(page.get_by_role("heading", name=f"Fiche : {place.lib_qp}")).to_be_visible()
    for key in ("employer_only=1", "niveau=departement", "rayon=2500", f"selection={place.code_qp}"):
        assert key in page.url


def open_popup(page, frame, place):
    """Click the place's marker, close up, and return its popup (a screenshot is saved)."""
    click_map_at(page, frame, place.latitude, place.longitude, zoom=18)
    popup = frame.locator(".leaflet-popup-content").filter(has_text=place.name)
    expect(popup).to_be_visible()
    shot(page, f"popup-{place.code_qp}")
    return popup


def test_html_names_show_as_text_in_popups(page, app_url, browser_store):
    frame = open_app(page, app_url)
    script, entity = browser_store.script_place, browser_store.entity_place
    assert (script.name, entity.name) == ("<script>alert(1)</script>", "Escale &amp; CO")

    popup = open_popup(page, frame, script)
    assert script.name in popup.inner_text().splitlines()
    assert '<img src="x" onerror="alert(2)">' in popup.inner_text()
    assert popup.locator("script, img").count() == 0

    popup = open_popup(page, frame, entity)
    assert entity.name in popup.inner_text().splitlines()


def test_downloads_clicked_in_quick_succession_all_arrive(page, app_url):
    """Each download button keeps its file until clicked, however fast the user clicks them."""
    open_app(page, app_url)
    open_tab(page, "Exports")
    labels = ["CSV", "CSV « ; »", "XLSX", "GeoJSON"]
    arrived = []
    page.on("download", lambda download: arrived.append(download))
    for label in labels:  # no wait between clicks
        page.get_by_role("button", name=label, exact=True).click(no_wait_after=True)
    for _ in range(600):
        if len(arrived) == len(labels):
            break
        page.wait_for_timeout(100)
    assert len(arrived) == len(labels), [d.suggested_filename for d in arrived]
    for download in arrived:
        assert download.failure() is None, (download.suggested_filename, download.failure())
        assert Path(download.path()).stat().st_size > 100, download.suggested_filename
