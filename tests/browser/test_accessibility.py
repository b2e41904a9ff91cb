"""Accessibility of the dashboard (RGAA 4.1, i.e. WCAG 2.1 AA) in Debian's chromium.

axe-core (npm, installed by the Makefile under .cache/, never fetched here) runs in the page and in the
map's frame on every tab and fails the test on any serious or critical violation; the page and every
frame are in French (``lang``, titles, Streamlit's and Leaflet's own strings); skip links lead to the
filters and to the map's data as a table; the server's terminal holds no stray English line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from appdriver import ARTIFACTS, MAP_IFRAME, REPO, map_frame, wait_for_script_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TABS = ["Carte", "Rayon autour des QPV", "Fiche", "Exports"]
#: Interface strings of Streamlit and Leaflet that must reach no user (seen, or heard from a screen reader).
ENGLISH = ["Skip to main content", "Select all", "empty", "Download as CSV", "Search", "Fullscreen", "Zoom in",
           "Zoom out", "Choose an option", "Choose options", "options available", "option available",
           "Show/hide columns", "Main menu", "Close popup", "A JavaScript library", "Layers", "Dismiss",
           "Clear all", "No results", "streamlit_folium", "Streamlit Folium Component", "X-axis", "Y-axis",
           "Show data", "Download as PNG", "mark container", "visualization", "Help for", "Print", "Record screen",
           "Made with"]
_ENGLISH = re.compile("|".join(rf"\b{re.escape(s)}\b" for s in ENGLISH))

#: Every text and every spoken attribute of a document (scripts, styles and <noscript> aside).
_TEXTS_JS = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const parent = walker.currentNode.parentElement;
    if (parent && ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(parent.tagName)) continue;
    out.push(walker.currentNode.textContent);
  }
  for (const e of document.querySelectorAll('[aria-label],[title],[placeholder],[alt]'))
    for (const a of ['aria-label', 'title', 'placeholder', 'alt']) if (e.getAttribute(a)) out.push(e.getAttribute(a));
  out.push(document.title);
  return out;
}"""

_AXE_RUN_JS = """async () => {
  const result = await axe.run(document, {iframes: false, resultTypes: ['violations']});
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v =>
    `${v.impact} ${v.id} (${v.help}): ` + v.nodes.slice(0, 3).map(n => n.target.join(' ')
      + ' — ' + (n.failureSummary || '').replace(/\\s+/g, ' ').slice(0, 160)).join(' | '));
}"""


@pytest.fixture(scope="module")
def axe_source() -> str:
    version = re.search(r"^AXE_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert version, "AXE_VERSION is missing from the Makefile"
    path = REPO / ".cache" / f"axe-{version.group(1)}" / "node_modules" / "axe-core" / "axe.min.js"
    if not path.exists():
        pytest.fail(f"{path} introuvable : installez axe-core avec `make axe` (npm, une fois ; les tests "
                    "n'utilisent pas le réseau).", pytrace=False)
    return path.read_text(encoding="utf-8")


def axe_violations(frame, source: str) -> list[str]:
    """Serious and critical axe-core violations of one document (a page or a frame)."""
    if not frame.evaluate("() => typeof window.axe !== 'undefined'"):
        frame.evaluate(source)
    return frame.evaluate(_AXE_RUN_JS)


def english_strings(frame) -> list[str]:
    return sorted({text.strip() for text in frame.evaluate(_TEXTS_JS) if _ENGLISH.search(text)})


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    wait_for_script_idle(page)
    expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
    page.wait_for_timeout(500)  # tables and charts draw after the run


def test_every_tab_passes_axe_and_speaks_french(page, app_url, axe_source):
    page.goto(app_url + "/?selection=13055")  # Marseille: the fiche has figures, charts and tables
    frame = map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    problems: dict[str, list[str]] = {}
    for tab in TABS:
        if tab != "Carte":
            open_tab(page, tab)
        frame = map_frame(page)
        for chart in page.locator('[data-testid="stVegaLiteChart"]').filter(visible=True).all():
            chart.hover()  # shows the chart's toolbar
            expect(page.locator('[data-testid="stElementToolbarButton"]').filter(visible=True).first).to_be_visible()
            assert english_strings(page.main_frame) == [], tab
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"a11y-{tab.split()[0].lower()}.png"), full_page=True)
        for where, document in (("page", page.main_frame), ("carte", frame)):
            found = axe_violations(document, axe_source)
            found += [f"lang={lang!r}" for lang in [document.evaluate("() => document.documentElement.lang")]
                      if lang != "fr"]
            found += [f"anglais : {text!r}" for text in english_strings(document)]
            if found:
                problems[f"{tab} / {where}"] = found
    assert not problems, "\n".join(f"{where}: {found}" for where, found in problems.items())
    # the map's frame is named in French, after what it shows
    title = page.locator(MAP_IFRAME).get_attribute("title")
    assert title.startswith("Carte : ") and "Bouches-du-Rhône" in title, title
    assert all(f.evaluate("() => document.documentElement.lang") == "fr" for f in page.frames)


def test_lists_menus_and_their_announcements_are_in_french(page, app_url):
    page.goto(app_url + "/")
    map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    families = page.locator('[data-testid="stSidebar"] input[aria-label="Familles ESS"]')
    families.click()
    expect(page.get_by_role("option", name="Associations")).to_be_visible()
    page.wait_for_timeout(500)  # the live region announces the number of options
    text = page.locator("body").inner_text() + "\n".join(page.main_frame.evaluate(_TEXTS_JS))
    assert "Tout sélectionner" in text
    assert re.search(r"\d+ options disponibles\.", text), "the option count is not announced in French"
    assert english_strings(page.main_frame) == []
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Menu principal").click()
    expect(page.get_by_text("Imprimer", exact=True)).to_be_visible()
    assert english_strings(page.main_frame) == []


def test_skip_links_lead_to_the_filters_and_to_the_map_data(page, app_url):
    page.goto(app_url + "/")
    frame = map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    to_filters = page.get_by_role("link", name="Aller aux filtres")
    to_data = page.get_by_role("link", name="Aller aux données de la carte en tableau")
    # before the map in the page's order, hidden until a keyboard user reaches them
    before = "(a, b) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING)"
    map_element = frame.frame_element()
    assert to_filters.evaluate(before, map_element) and to_data.evaluate(before, map_element)
    assert to_filters.bounding_box()["width"] <= 1
    to_filters.focus()
    assert to_filters.bounding_box()["width"] > 20  # shown on focus
    page.keyboard.press("Enter")  # the focus moves to the first filter
    focused = page.evaluate("() => [document.activeElement.getAttribute('aria-label'),"
                            " !!document.activeElement.closest('[data-testid=\"stSidebar\"]')]")
    assert focused == ["Région", True], focused
    # the map's data as a table: every unit of the map, with its value
    page.get_by_role("link", name="Aller aux données de la carte en tableau").focus()
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name="Données de la carte en tableau")
    expect(heading).to_be_in_viewport()
    expander = page.locator('[data-testid="stExpander"]').filter(has_text="par commune")
    expander.locator("summary").click()
    table = expander.locator('[data-testid="stTable"] table')
    expect(table).to_be_visible()
    communes = int(re.sub(r"\D", "", page.locator('[data-testid="stMetric"]')
                          .filter(has_text="Unités cartographiées").locator('[data-testid="stMetricValue"]')
                          .inner_text()))
    assert table.locator("tbody tr").count() == communes


def test_the_filters_skip_link_opens_the_collapsed_sidebar_on_a_phone(page, app_url):
    page.set_viewport_size({"width": 400, "height": 850})
    page.goto(app_url + "/")
    map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(sidebar).to_have_attribute("data-collapsed", "true")
    page.get_by_role("link", name="Aller aux filtres").focus()
    page.keyboard.press("Enter")
    expect(sidebar).to_have_attribute("data-collapsed", "false")
    region = sidebar.locator('input[aria-label="Région"]')
    expect(region).to_be_focused()


def test_the_terminal_shows_only_streamlit_and_essmap_lines(page, app_url):
    page.goto(app_url + "/")
    map_frame(page, timeout_ms=120_000)
    log = Path(ARTIFACTS / "streamlit.log").read_text(errors="replace")
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    # Streamlit's own lines, and serve/launch.py's two French lines around the imports (make run's start)
    allowed = re.compile(r"You can now view your Streamlit app in your browser\.|URL: http://\S+"
                         r"|essmap : chargement des modules du tableau de bord avant d'ouvrir le port…"
                         r"|essmap : modules du tableau de bord chargés en [\d,]+ s \([\d\u202f ]+ modules\) ; "
                         r"ouverture du port\.")
    assert lines and all(allowed.fullmatch(line) for line in lines), lines
    assert any(line.startswith("You can now view") for line in lines), lines


def test_the_filters_come_first_in_the_tab_order_and_cluster_discs_are_no_tab_stops(page, app_url):
    """The keyboard meets the filters first, then the skip links, then the map; the map's cluster discs (a
    bare count each, Enter only zooms in, which "+" does on the focused map) stay out of the tab order:
    the tables hold what they count."""
    page.goto(app_url + "/")
    frame = map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    clusters = frame.locator(".essmap-cluster")
    expect(clusters.first).to_be_visible()
    assert clusters.count() > 5
    assert frame.locator(".essmap-cluster[tabindex], .essmap-cluster[role=button]").count() == 0
    stops = frame.evaluate("""() => [...document.querySelectorAll('a[href], button, input, select, [tabindex]')]
        .filter(e => e.tabIndex >= 0 && e.getClientRects().length).length""")
    assert stops <= 10, stops  # zoom buttons, layer switcher, the map itself, attribution links
    page.locator("body").focus()
    order = []
    while len(order) < 80 and "IFRAME" not in order:
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.getAttribute('aria-label') "
                                   "|| document.activeElement.textContent.trim() || document.activeElement.tagName"))
    assert order.index("Région") <= 2, order  # after Streamlit's "Aller au contenu principal"
    assert order.index("Région") < order.index("Aller aux filtres") < order.index("IFRAME"), order
