"""The map's layout in a real browser (Debian chromium): at 1400×1000 and on a phone (400×850), the
legend and layer panel never cover the territory of the default view (Bouches-du-Rhône, Marseille and
its cluster), the phone shows the map in its first screen with the panel closed, the keyboard opens
it, and the selected unit of a link is outlined.
"""

from __future__ import annotations

import pytest
from appdriver import MAP_IFRAME, map_frame, wait_for_script_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PHONE = {"width": 400, "height": 850}
MARSEILLE = "13055"

#: Boxes in the map frame's viewport (x0, y0, x1, y1): the panel, the notice, the whole choropleth
#: (the territory), Marseille's commune, and the cluster discs whose centre lies in Marseille.
_BOXES_JS = """(code) => {
  const box = (r) => [r.left, r.top, r.right, r.bottom];
  const rect = (b) => {
    const m = window.map, r = m.getContainer().getBoundingClientRect();
    const nw = m.latLngToContainerPoint(b.getNorthWest()), se = m.latLngToContainerPoint(b.getSouthEast());
    return [nw.x + r.left, nw.y + r.top, se.x + r.left, se.y + r.top];
  };
  const choropleth = window.essmapPolygons[0];
  let commune = null;
  choropleth.eachLayer(l => { if (l.feature && l.feature.properties.code === code) commune = l; });
  const inside = rect(commune.getBounds());
  const clusters = [...document.querySelectorAll('.essmap-cluster')].map(e => box(e.getBoundingClientRect()))
    .filter(([x0, y0, x1, y1]) => {
      const x = (x0 + x1) / 2, y = (y0 + y1) / 2;
      return x >= inside[0] && x <= inside[2] && y >= inside[1] && y <= inside[3];
    });
  const notice = document.querySelector('.essmap-notice');
  return {panel: box(document.querySelector('.essmap-panel').getBoundingClientRect()),
          notice: notice ? box(notice.getBoundingClientRect()) : null,
          territory: rect(choropleth.getBounds()), commune: inside, clusters: clusters};
}"""


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def open_map(page, url: str, query: str = ""):
    page.goto(url + (f"/?{query}" if query else "/"))
    frame = map_frame(page, timeout_ms=120_000)
    wait_for_script_idle(page)
    return frame


def test_panel_and_notice_leave_the_default_territory_clear_on_a_laptop(page, app_url):
    frame = open_map(page, app_url)
    toggle = frame.get_by_role("button", name="Légende et couches")
    expect(toggle).to_have_attribute("aria-expanded", "true")  # open on a wide map
    expect(frame.locator(".essmap-panel .essmap-legend")).to_be_visible()
    boxes = frame.evaluate(_BOXES_JS, MARSEILLE)
    assert boxes["clusters"], "Marseille's establishments should form a cluster in the default view"
    for name in ("commune", "territory", *(f"cluster {i}" for i in range(len(boxes["clusters"])))):
        data = boxes["clusters"][int(name.split()[1])] if name.startswith("cluster") else boxes[name]
        assert not overlap(boxes["panel"], data), (name, boxes)
        assert not overlap(boxes["notice"], data), (name, boxes)
    # every layer has a checkbox, the choropleth's included, and unticking it hides the layer
    layers = frame.locator(".essmap-panel .leaflet-control-layers-overlays label")
    expect(layers).to_have_count(5)
    choropleth = layers.filter(has_text="Choroplèthe : ").locator("input")
    choropleth.uncheck()
    assert frame.evaluate("() => !window.map.hasLayer(window.essmapPolygons[0])")
    choropleth.check()
    assert frame.evaluate("() => window.map.hasLayer(window.essmapPolygons[0])")


def test_phone_shows_the_map_first_with_the_panel_closed_and_the_keyboard_opens_it(page, app_url):
    page.set_viewport_size(PHONE)
    frame = open_map(page, app_url)
    page.evaluate("() => window.scrollTo(0, 0)")
    top = page.locator(MAP_IFRAME).bounding_box()["y"]
    assert top < PHONE["height"] - 150, top  # the map, not only its edge, in the first screen
    toggle = frame.get_by_role("button", name="Légende et couches")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(frame.locator(".essmap-legend")).to_be_hidden()
    boxes = frame.evaluate(_BOXES_JS, MARSEILLE)
    assert not overlap(boxes["panel"], boxes["commune"]), boxes
    assert not overlap(boxes["panel"], boxes["territory"]), boxes

    assert toggle.evaluate("b => b.tabIndex") == 0  # in the tab order
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    source = frame.locator(".essmap-legend-source")
    expect(source).to_be_visible()
    source_box, notice_box = source.bounding_box(), frame.locator(".essmap-notice").bounding_box()
    assert source_box["y"] + source_box["height"] <= notice_box["y"], (source_box, notice_box)
    page.keyboard.press("Space")
    expect(toggle).to_have_attribute("aria-expanded", "false")


def test_the_selected_unit_of_a_link_is_outlined(page, app_url):
    frame = open_map(page, app_url, f"departements=13&selection={MARSEILLE}")
    frame.wait_for_function("(code) => window.essmapSelected === code", arg=MARSEILLE)
    assert frame.locator(".leaflet-essmapSelection-pane path").count() == 2  # halo and outline
