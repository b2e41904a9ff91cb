"""Map builders: self-contained HTML (draws offline) and text from data escaped."""

from __future__ import annotations

import re

import geopandas as gpd
import pytest
import shapely

from essmap import maps, store

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def layers(demo_db):
    con = store.connect(demo_db)
    out = {t: store.read_layer(con, t, departements=["13"]) for t in ("communes", "qpv", "etablissements", "tiers_lieux")}
    con.close()
    return out


def _page(layers) -> str:
    m = maps.base_map(tuple(layers["communes"].total_bounds))
    maps.add_boundaries_layer(m, layers["communes"], name="Communes")
    maps.add_qpv_layer(m, layers["qpv"])
    maps.add_points_layer(m, layers["tiers_lieux"], name="Tiers-lieux", popup=maps.tiers_lieu_popup, color="#1b7837")
    maps.add_points_layer(m, layers["etablissements"], name="Établissements ESS", popup=maps.establishment_popup, color="#2166ac")
    maps.add_synthetic_notice(m)
    return maps.render_html(maps.finish(m))


def test_map_page_needs_no_network(layers):
    page = _page(layers)
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', page)
    assert external == []
    assert "data:text/javascript;base64," in page  # Leaflet inlined
    assert "L.markerClusterGroup" in page
    assert "données simulées" in page
    assert len(page) < 3_000_000


def test_text_from_data_is_escaped_in_popups_and_tooltips():
    points = gpd.GeoDataFrame(
        {"nom": [HOSTILE, "Escale & CO"], "types": ["coworking", None], "labels": [None, "Fabrique de territoire"],
         "adresse": ["1 rue <b>x</b>", None], "is_synthetic": [False, True]},
        geometry=[shapely.Point(5.37, 43.30), shapely.Point(5.38, 43.31)], crs=4326,
    )
    qpv = gpd.GeoDataFrame(
        {"code_qp": ["QN01301M"], "lib_qp": [HOSTILE], "generation": ["2024"]},
        geometry=[shapely.box(5.36, 43.29, 5.37, 43.30)], crs=4326,
    )
    m = maps.base_map((5.3, 43.2, 5.4, 43.4))
    maps.add_qpv_layer(m, qpv)
    maps.add_points_layer(m, points, name="Tiers-lieux", popup=maps.tiers_lieu_popup, color="#1b7837")
    page = maps.render_html(maps.finish(m))
    assert HOSTILE not in page
    assert "alert(1)" in page  # still there, as text
    assert "&lt;script&gt;" in page or "\\u0026lt;script\\u0026gt;" in page
    assert "Escale \\u0026amp; CO" in page or "Escale &amp; CO" in page


def test_popups_label_synthetic_rows():
    assert "données simulées" in maps.tiers_lieu_popup({"nom": "X", "is_synthetic": True})
    assert "données simulées" not in maps.tiers_lieu_popup({"nom": "X", "is_synthetic": False})
    assert maps.escape(None) == "" and maps.escape(float("nan")) == ""
