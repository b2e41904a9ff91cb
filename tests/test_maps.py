"""Map builders: self-contained HTML (draws offline), text from data escaped, legend, size."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import html
import json
import os
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from folium.template import Template

from essmap.domain.selection import Selection
from essmap.geo.simplify import geojson_texts
from essmap.present import viewdata
from essmap.present.classify import NO_DATA_COLOUR, NO_DATA_HATCH_COLOUR, classify
from essmap.present.view import MapView
from essmap.render import accessibility, maps, st_folium

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def data(demo_con):
    return viewdata.view_data(demo_con, MapView(Selection(departements=("13",))))


def _decoded(payload: dict) -> dict:
    """A packed point layer with its packed integers and joined texts read, as the browser reads them."""
    def ints(text: str, dtype: str) -> list[int]:
        return np.frombuffer(base64.b64decode(text), dtype=dtype).tolist()

    for line in payload["lines"]:
        if "j" in line["c"]:
            line["c"] = line["c"]["j"].split("\x1f")
        else:
            line["c"]["i"] = ints(line["c"]["i"], f"<u{line['c']['w']}")
    payload["dxy"] = ints(payload["dxy"], "<i4")
    return payload


def _inlined(page: str) -> list[dict]:
    """Every layer payload inlined in a page (``unpack(null, "base64", add)``), as JSON."""
    found = re.findall(r'\(null, "([A-Za-z0-9+/=]+)",', page)
    return [json.loads(gzip.decompress(base64.b64decode(p))) for p in found]


def _payloads(page: str) -> list[dict]:
    """The packed point layers of a page, decoded as the browser does."""
    return [_decoded(p) for p in _inlined(page) if "dxy" in p]


def _styles(page: str) -> dict[str, dict]:
    """The tooltips, fills, radii and anchors of a page's polygon layers (their styles payloads), merged."""
    merged: dict[str, dict] = {"info": {}, "fill": {}, "radius": {}, "anchors": {}}
    for payload in _inlined(page):
        if "info" in payload:
            for key in merged:
                merged[key].update(payload[key])
    return merged


def _polygons(page: str) -> list[dict]:
    """The GeoJSON FeatureCollections of a page's polygon layers."""
    return [p for p in _inlined(page) if p.get("type") == "FeatureCollection"]


def _popups(payload: dict) -> list[str]:
    """The popups as the browser builds them (PackedPoints' script): plain text escaped, then styled."""
    def line(spec, i):
        col = spec["c"]
        value = col[i] if isinstance(col, list) else col["v"][col["i"][i]]
        if not value:
            return ""
        text = maps.escape(spec["p"] + value)
        return f"<{spec['s']}>{text}</{spec['s']}>" if spec["s"] else text
    points = range(len(payload["dxy"]) // 2)
    return ["<br>".join(t for t in (line(s, i) for s in payload["lines"]) if t) for i in points]


def _layer_labels(page: str) -> list[str]:
    """The labels of the layer list (HTML: a symbol, then the escaped name), in order."""
    return [json.loads(n) for n in re.findall(r'^\s*("(?:[^"\\]|\\.)*") : \w+,$', page, re.M)]


def _layer_names(page: str) -> list[str]:
    """The names of the layer list as a reader sees them (the symbols are hidden images)."""
    return [html.unescape(re.sub(r"<svg.*?</svg>", "", label)) for label in _layer_labels(page)]


def _positions(payload: dict) -> np.ndarray:
    """(lon, lat) of each point, as the browser decodes them (differences from the previous point)."""
    dxy = np.asarray(payload["dxy"], dtype=np.int64).reshape(-1, 2).cumsum(axis=0)
    return np.column_stack([payload["lon0"] + dxy[:, 1] / 1e5, payload["lat0"] + dxy[:, 0] / 1e5])


def test_dashboard_map_needs_no_network_and_has_every_layer(data):
    page = maps.render_html(maps.view_map(data))
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', page)
    assert external == []
    assert "data:text/javascript;base64," in page  # Leaflet inlined
    assert "L.markerClusterGroup" in page
    assert "données simulées" in page
    assert _layer_names(page) == [f"Choroplèthe : {data.indicator.label_fr}",
                                  "QPV avec tiers-lieu à moins de 1\u202f000 m",
                                  "QPV sans tiers-lieu à moins de 1\u202f000 m", "Tiers-lieux (points)",
                                  "Établissements ESS (points regroupés)"]
    establishments, tiers_lieux = sorted(_payloads(page), key=lambda p: len(p["dxy"]))[::-1]
    assert len(establishments["dxy"]) // 2 == len(data.etablissements)
    assert len(tiers_lieux["dxy"]) // 2 == len(data.tiers_lieux)
    # every point where it is, to the metre (positions rounded to 1e-5 degree)
    sent = np.sort(_positions(tiers_lieux).round(5), axis=0)
    expected = np.sort(data.tiers_lieux[["longitude", "latitude"]].to_numpy(dtype=float).round(5), axis=0)
    assert np.abs(sent - expected).max() < 2e-5


def test_legend_has_title_classes_no_data_and_source(data):
    page = maps.render_html(maps.view_map(data))
    legend = page[page.index('class="essmap-legend"'):]
    assert maps.escape(data.legend_title) in legend
    for label in data.classification.labels:
        assert label in legend
    assert "Pas de données" in legend
    assert "Source : " + maps.escape(data.indicator.source_fr) in legend


def test_tiles_are_optional(data):
    offline = maps.render_html(maps.view_map(data))
    assert "tile.openstreetmap.org" not in offline and "data.geopf.fr" not in offline
    online = maps.render_html(maps.view_map(data.with_view(data.view.replace(tiles="Plan IGN"))))
    assert "data.geopf.fr/wmts" in online


def test_layers_can_be_chosen(data):
    page = maps.render_html(maps.view_map(data, layers=("choropleth",)))
    assert _payloads(page) == [] and len(_polygons(page)) == 1 and "QPV avec tiers-lieu" not in page
    with pytest.raises(ValueError, match="couches inconnues"):
        maps.view_map(data, layers=("routes",))


def test_clickable_features_carry_their_code(data):
    page = maps.render_html(maps.view_map(data))
    codes = [{f["properties"]["code"] for f in layer["features"]} for layer in _polygons(page)]
    assert "13055" in codes[0] and codes[0] == set(data.areas["code"].astype(str))
    assert set().union(*codes[1:]) == set(data.qpv["code_qp"].astype(str))


def test_establishment_popups_show_every_field(data):
    page = maps.render_html(maps.view_map(data, layers=("etablissements",)))
    (payload,) = _payloads(page)
    row = data.etablissements.iloc[0]
    popup = next(p for p in _popups(payload) if "SIRET " + row["siret"] in p)
    assert popup.startswith(f"<b>{maps.escape(row['denomination'])}</b>")
    assert "SIRET " + row["siret"] in popup
    assert ("Employeur : " in popup) == bool(row["employeur"]) and ("Non employeur" in popup) != bool(row["employeur"])
    assert maps.escape(row["adresse"]) in popup
    assert popup.endswith("<i>données simulées</i>")


def test_text_from_data_is_escaped_in_popups_and_tooltips():
    points = pd.DataFrame(
        {"nom": [HOSTILE, "Escale &amp; CO"], "types": ["coworking", None], "labels": [None, "Fabrique de territoire"],
         "adresse": ["1 rue <b>x</b>", None], "is_synthetic": [False, True],
         "longitude": [5.37, 5.38], "latitude": [43.30, 43.31]},
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
    assert _styles(page)["info"]["QN01301M"].startswith("<b>&lt;script&gt;alert(1)&lt;/script&gt;</b>")
    (payload,) = _payloads(page)
    first, second = _popups(payload)
    assert first == "<b>&lt;script&gt;alert(1)&lt;/script&gt;</b><br>Types : coworking<br>1 rue &lt;b&gt;x&lt;/b&gt;"
    assert second == ("<b>Escale &amp;amp; CO</b><br>Labels ANCT : Fabrique de territoire"
                      "<br><i>données simulées</i>")


#: Jinja syntax in names, with what it would print if run: folium renders each element's script a second
#: time as a Jinja template, where such a name was evaluated (the last one ran Python on the server).
TEMPLATE_SYNTAX = {
    "{{ 'essmap' ~ 'injecté' }}": "essmapinjecté",
    "{% if true %}essmap-si{% endif %}": "essmap-si",
    "{{ cycler.__init__.__globals__.os.name ~ '-essmap' }}": f"{os.name}-essmap",
}


@pytest.mark.parametrize("name", TEMPLATE_SYNTAX)
def test_template_syntax_in_data_is_shown_as_typed_never_run(data, name):
    """Names of the choropleth's units and of QPVs (tooltips), of the territory (frame title), legend."""
    hostile = dataclasses.replace(data, areas=data.areas.assign(nom=name), qpv=data.qpv.assign(lib_qp=name))
    m = maps.view_map(hostile)
    accessibility.FrenchLeaflet(f"Carte : {name}").add_to(m)
    maps.add_legend(m, name, data.classification, name)
    page = maps.render_html(maps.finish(m))
    # as the browser reads them: JSON string escapes in the scripts, the tooltips of the styles payloads,
    # then HTML character references
    tooltips = " ".join(_styles(page)["info"].values())
    shown = html.unescape(re.sub(r"\\u([0-9a-f]{4})", lambda m: chr(int(m.group(1), 16)), page) + tooltips)
    assert shown.count(name) >= len(data.areas) + len(data.qpv) + 2  # tooltips, frame title, legend
    assert TEMPLATE_SYNTAX[name] not in shown.replace(name, "")  # never evaluated


def test_legend_escapes_its_text():
    classification = classify(pd.Series([1.0, 2.0, 3.0]), k=3)
    legend = maps.legend_html(HOSTILE, classification, "A & B")
    assert HOSTILE not in legend and "&lt;script&gt;" in legend and "Source : A &amp; B" in legend


def test_department_map_stays_small(data):
    """The map of a département stays under 3 MB; the establishments cost a few dozen bytes each,
    so the full-scale demo (25,000 establishments in the Bouches-du-Rhône) fits too."""
    page = maps.render_html(maps.view_map(data))
    assert len(page.encode()) < 3_000_000
    without_points = maps.render_html(maps.view_map(data, layers=("choropleth", "qpv", "tiers_lieux")))
    per_point = (len(page.encode()) - len(without_points.encode())) / len(data.etablissements)
    assert per_point < 60


def test_feature_collection_matches_geopandas_with_rounded_coordinates(data):
    """The direct GeoJSON builder gives geopandas' features (same code, geometry rounded to 1e-5°)."""
    areas = data.areas.to_crs(4326)
    built = json.loads(maps.feature_collection(geojson_texts(areas.geometry.to_numpy()), areas["code"].astype(str)))
    rounded = shapely.transform(areas.geometry.to_numpy(), lambda xy: xy.round(5))
    expected = json.loads(json.dumps(
        gpd.GeoDataFrame({"code": areas["code"].astype(str).to_numpy()}, geometry=rounded, crs=4326).__geo_interface__
    ))
    assert built["type"] == "FeatureCollection" and len(built["features"]) == len(areas) > 100
    for mine, theirs in zip(built["features"], expected["features"], strict=True):
        assert mine["properties"] == theirs["properties"]
        assert mine["geometry"]["type"] == theirs["geometry"]["type"]
        shape = shapely.geometry.shape
        assert shapely.equals_exact(shape(mine["geometry"]), shape(theirs["geometry"]), 0)
    coordinates = re.findall(r"-?\d+\.\d+", json.dumps([f["geometry"] for f in built["features"]]))
    assert coordinates and max(len(c.split(".")[1]) for c in coordinates) == 5
    assert len({f["id"] for f in built["features"]}) == len(areas)


def test_feature_collection_keeps_text_and_missing_geometry():
    built = json.loads(maps.feature_collection(
        geojson_texts(np.array([shapely.Point(5.123456789, 43.1), None], dtype=object)),
        pd.Series(["Escale « é »", HOSTILE])))
    first, second = built["features"]
    assert first["geometry"] == {"type": "Point", "coordinates": [5.12346, 43.1]}
    assert first["properties"] == {"code": "Escale « é »"}
    assert second["geometry"] is None and second["properties"] == {"code": HOSTILE}


def test_tooltips_and_colours_travel_with_the_map_geometry_as_a_file(data, demo_con, tmp_path):
    """Polygons' geometry is published like the points (the same units give the same file, which
    the browser caches); each unit's colour and escaped tooltip in a file of the view, keyed by code."""
    published = {}

    def publish(content: bytes) -> str:
        url = maps.publish_payload(tmp_path, "static", content)
        published[url] = content
        return url

    page = maps.render_html(maps.view_map(data, layers=("choropleth",), publish=publish))
    geometry, styles = [json.loads(gzip.decompress(c)) for c in published.values()]
    assert {f["properties"]["code"] for f in geometry["features"]} == set(data.areas["code"].astype(str))
    marseille = data.areas.loc[data.areas["code"] == "13055"].iloc[0]
    assert styles["fill"]["13055"] == marseille["classe_couleur"]
    assert styles["info"]["13055"].startswith("<b>Marseille</b> (13055)")
    assert "Marseille" not in page and all(f'("{url}", null,' in page for url in published)
    again = {}
    other = viewdata.view_data(demo_con, data.view.replace(indicator="n_tiers_lieux"))
    maps.view_map(other, layers=("choropleth",),
                  publish=lambda c: again.setdefault("url", maps.publish_payload(tmp_path, "static", c)))
    assert again["url"] in published  # another indicator, the same geometry file


def test_scale_bar_is_metric_only_and_clear_of_the_synthetic_notice(data):
    page = maps.render_html(maps.view_map(data))
    assert "L.control.scale({imperial: false" in page
    assert "control_scale" not in page and "L.control.scale()" not in page
    # the notice is a control of the bottom-left corner, where Leaflet stacks it above the scale bar
    assert '<div class="essmap-notice">Carte contenant des données simulées (démonstration)</div>' in page
    assert 'document.querySelector(".essmap-notice")' in page and 'position: "bottomleft"' in page


def test_dashboard_serves_the_map_scripts_as_files(data, tmp_path):
    """``view_map(asset_urls=...)`` (the dashboard) loads Leaflet from the published files, which hold
    exactly what a standalone map inlines, and never renders the inlined copies."""
    args = st_folium.component_args(maps.view_map(data), key="carte")
    assert all(link.startswith("data:") for link in args["js_links"] + args["css_links"])  # standalone map
    urls = maps.publish_assets(tmp_path / "static", "../../app/static")
    served = st_folium.component_args(maps.view_map(data, asset_urls=urls), key="carte")
    links = served["js_links"] + served["css_links"]
    assert len(links) == len(args["js_links"] + args["css_links"])
    assert not any(link.startswith("data:") for link in links)
    assert "data:text/javascript" not in served["header"] and len(served["header"]) == len(args["header"])
    for inlined, url in zip(args["js_links"], served["js_links"], strict=True):
        name = url.removeprefix("../../app/static/").split("?v=")[0]
        assert (tmp_path / "static" / name).read_bytes() == base64.b64decode(inlined.split(",", 1)[1])
    assert sum(len(u) for u in links) < 1000  # the map message no longer carries Leaflet (~240 kB inlined)
    assert maps.publish_assets(tmp_path / "static", "../../app/static") == urls  # idempotent


def test_point_layers_can_be_published_as_files(data, tmp_path):
    """The dashboard serves the packed points as a file (the map message stays small); the file is
    what the inlined payload would have been."""
    published = {}

    def publish(content: bytes) -> str:
        url = maps.publish_payload(tmp_path / "points", "../../app/static/points", content)
        published[url] = content
        return url

    page = maps.render_html(maps.view_map(data, publish=publish))
    assert _inlined(page) == []  # nothing inlined
    # 2 point layers, 3 polygon layers with their styles
    assert len(published) == 8 and all(f'("{url}", null,' in page for url in published)
    inline = maps.render_html(maps.view_map(data))
    files = [_decoded(p) for p in (json.loads(gzip.decompress(c)) for c in published.values()) if "dxy" in p]
    assert sorted(files, key=lambda p: len(p["dxy"])) == sorted(_payloads(inline), key=lambda p: len(p["dxy"]))
    inlined = sum(len(base64.b64encode(c)) for c in published.values())
    assert len(inline) - len(page) > 0.95 * inlined  # the points and the polygons left the map
    assert sorted(p.name for p in (tmp_path / "points").iterdir()) == sorted(u.rsplit("/", 1)[1] for u in published)


def test_point_payload_is_the_json_that_json_dumps_writes_for_any_text(data):
    """The payload's texts go from Arrow to JSON bytes without ``json.dumps``: the bytes are exactly
    what it writes (quotes, backslashes, control characters, the separator, non-ASCII), and read back
    to the very texts."""
    texts = ['a"b\\c', "x\x1fy", "tab\there\nnl\r\x00\x08\x0c\x1e", "é ✓ 𝄞 \u2028", None, HOSTILE, "{{ x }}"]
    points = data.etablissements.head(70).copy()
    points["denomination"] = pd.array([texts[i % len(texts)] for i in range(70)], dtype="string[pyarrow]")
    points["siret"] = pd.array([f"{texts[i % len(texts)] or ''}{i}" for i in range(70)], dtype="string[pyarrow]")
    published: list[bytes] = []
    m = maps.base_map(maps.FRANCE_BOUNDS)
    maps.add_points_layer(m, points, name="x", popup=maps.establishment_popup, color="#000000",
                          publish=lambda content: published.append(content) or "url")
    raw = gzip.decompress(published[0])
    payload = json.loads(raw)
    assert raw == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    lines = _decoded(payload)["lines"]
    shown = {line["p"]: line["c"] for line in lines}
    expected = [f"{texts[i % len(texts)] or ''}{i}".replace("\x1f", " ") for i in range(70)]
    assert sorted(shown["SIRET "]) == sorted(expected)
    names = next(line["c"] for line in lines if line["s"] == "b")  # 7 names repeated: dictionary-encoded
    assert sorted(names["v"][k] for k in names["i"]) == sorted(texts[i % len(texts)] or "" for i in range(70))


class _Probe(maps.OnePass):
    _template = Template("{% macro script(this, kwargs) %}var probe = {{ this.text|tojson }};{% endmacro %}")

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


def test_the_maps_own_elements_are_rendered_once():
    """The map's elements (:class:`maps.OnePass`) and texts (:class:`maps.Verbatim`) reach the page as
    their macros wrote them: no second Jinja pass, which would compute what looks like a template."""
    m = maps.base_map(maps.FRANCE_BOUNDS)
    _Probe("{{ 6 * 7 }}").add_to(m)
    maps.Verbatim("<p>{{ 6 * 7 }} {% if true %}</p>").add_to(m.get_root().html)  # type: ignore[attr-defined]
    page = maps.render_html(m)
    assert 'var probe = "{{ 6 * 7 }}";' in page
    assert "<p>{{ 6 * 7 }} {% if true %}</p>" in page
    assert 'var probe = "42"' not in page and "<p>42" not in page  # ids are random hex: "42" may be in one


def test_published_files_are_bounded(tmp_path):
    for k in range(5):
        maps.publish_payload(tmp_path, "static", f"payload {k}".encode(), keep=3)
    assert len(list(tmp_path.glob("*.json.gz"))) == 3


def test_pruning_keeps_the_newest_payloads(tmp_path):
    """Past ``keep`` files the oldest go, down to three quarters of ``keep``; a file published again is
    renewed, so it stays."""
    names = []
    for k in range(8):
        names.append(maps.publish_payload(tmp_path, "static", f"payload {k}".encode(), keep=8).rsplit("/", 1)[1])
        os.utime(tmp_path / names[-1], (1_000_000 + k, 1_000_000 + k))  # distinct ages, oldest first
    assert len(list(tmp_path.glob("*.json.gz"))) == 8
    maps.publish_payload(tmp_path, "static", b"payload 0", keep=8)  # the oldest, renewed
    os.utime(tmp_path / names[0], (2_000_000, 2_000_000))
    newest = maps.publish_payload(tmp_path, "static", b"payload 8", keep=8).rsplit("/", 1)[1]
    left = {f.name for f in tmp_path.glob("*.json.gz")}
    assert left == {newest, names[0], *names[4:8]}


# --- Panel, layer names, symbology, selection ----------------------------------------------------


def test_legend_and_layers_share_one_panel_with_a_french_toggle_button(data):
    page = maps.render_html(maps.view_map(data))
    assert page.count('<div class="essmap-legend">') == 1  # moved into the panel by its script
    script = page[page.index("var Panel = L.Control.extend"):]
    assert 'L.DomUtil.create("button", "essmap-panel-toggle", box)' in script
    assert 'button.type = "button"' in script and json.dumps(maps.PANEL_LABEL) in script
    assert maps.PANEL_LABEL == "Légende et couches"
    assert 'button.setAttribute("aria-expanded", open ? "true" : "false")' in script
    assert 'button.setAttribute("aria-controls", body.id)' in script
    assert "body.appendChild(legend)" in script and "body.appendChild(layers.getContainer())" in script
    # closed on a phone: open only on a map at least 641 px wide
    assert f"set(map.getSize().x >= {maps.PANEL_OPEN_MIN_WIDTH_PX})" in script and maps.PANEL_OPEN_MIN_WIDTH_PX == 641
    # one layer list (inside the panel), never folium's own, which would sit over the map
    assert page.count("L.control.layers(") == 1 and "{collapsed: false" in page
    # the territory is refitted clear of the controls
    assert "paddingBottomRight: [box.offsetWidth + 20" in script


def test_every_layer_has_a_unique_name_and_a_checkbox_also_with_the_tiers_lieux_indicator(demo_con, data):
    other = viewdata.view_data(demo_con, data.view.replace(indicator="n_tiers_lieux"))
    page = maps.render_html(maps.view_map(other))
    names = _layer_names(page)
    assert names[0] == "Choroplèthe : Tiers-lieux" and "Tiers-lieux (points)" in names
    assert len(names) == len(set(names)) == 5  # the choropleth, two QPV layers and two point layers
    m = maps.base_map((5.3, 43.2, 5.4, 43.4))
    points = pd.DataFrame({"nom": ["a"], "longitude": [5.35], "latitude": [43.3]})
    for _ in range(2):
        maps.add_points_layer(m, points, name="Tiers-lieux", popup=maps.tiers_lieu_popup, color="#000000")
    with pytest.raises(ValueError, match="deux couches de la carte portent le nom « Tiers-lieux »"):
        maps.render_html(maps.finish(m))


def test_layer_labels_escape_names_and_hide_their_symbols():
    m = maps.base_map((5.3, 43.2, 5.4, 43.4))
    points = pd.DataFrame({"nom": ["a"], "longitude": [5.35], "latitude": [43.3]})
    maps.add_points_layer(m, points, name=HOSTILE, popup=maps.tiers_lieu_popup, color="#000000", shape="diamond")
    page = maps.render_html(maps.finish(m))
    (label,) = _layer_labels(page)
    assert label.endswith("&lt;script&gt;alert(1)&lt;/script&gt;") and HOSTILE not in page
    assert label.startswith('<svg class="essmap-symbol"') and 'aria-hidden="true"' in label and "<path" in label
    with pytest.raises(ValueError, match="forme de point inconnue"):
        maps.add_points_layer(m, points, name="x", popup=maps.tiers_lieu_popup, color="#000000", shape="star")


def test_points_clusters_and_qpvs_take_the_documented_symbology(data):
    page = maps.render_html(maps.view_map(data))
    # clusters: one neutral style of ours, never markercluster's green/yellow/orange stylesheet
    assert "iconCreateFunction" in page and 'className: "essmap-cluster"' in page
    assert 'toLocaleString("fr-FR")' in page and maps.CLUSTER_SIZE_JS in page
    m = maps.view_map(data)
    css = [name for e in maps.walk(m) for name, _uri in getattr(e, "default_css", [])]
    assert "markerclustercss" in css and "markerclusterdefaultcss" not in css
    assert f"background:{maps.CLUSTER_COLOUR}" in page
    # establishments: dark dots with a white halo; tiers-lieux: outlined orange diamonds
    assert f'fillColor: "{maps.ESTABLISHMENT_COLOUR}"' in page and f'color: "{maps.HALO_COLOUR}"' in page
    assert 'className: "essmap-diamond"' in page
    assert json.dumps(f'fill="{maps.TIERS_LIEU_COLOUR}" stroke="{maps.TIERS_LIEU_OUTLINE}"')[1:-1] in page
    # QPVs: red, filled when not covered, dashed and empty when covered, with a dot when tiny
    covered, not_covered = maps.QPV_COVERED_STYLE, maps.QPV_NOT_COVERED_STYLE
    assert covered["color"] == not_covered["color"] == maps.QPV_COLOUR
    assert covered["dash"] and not not_covered["dash"] and covered["fill_opacity"] < not_covered["fill_opacity"]
    assert page.count(f'"below_px": {maps.QPV_MARKER_BELOW_PX}') == 2


def _cam02(colours: list[str], cvd: str | None):
    """Colours in CAM02-UCS as seen with a colour-vision deficiency (Machado et al. 2009, full
    severity, as implemented by colorspacious), or with normal vision."""
    from colorspacious import cspace_convert

    rgb = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in colours])
    if cvd is not None:
        rgb = np.clip(cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": cvd, "severity": 100}, "sRGB1"), 0, 1)
    return cspace_convert(rgb, "sRGB1", "CAM02-UCS")


VISIONS = (None, "deuteranomaly", "protanomaly", "tritanomaly")


@pytest.mark.parametrize("cvd", VISIONS)
def test_choropleth_classes_stay_ordered_and_apart_for_colour_blind_readers(cvd):
    from essmap.present.classify import PALETTE

    for k, colours in PALETTE.items():
        ucs = _cam02(list(colours), cvd)
        lightness = ucs[:, 0]
        assert np.all(np.diff(lightness) < -5), (k, cvd, lightness)  # light = low, dark = high
        steps = np.linalg.norm(np.diff(ucs, axis=0), axis=1)
        assert steps.min() > 5, (k, cvd, steps)  # neighbouring classes stay apart


def test_choropleth_classes_read_in_black_and_white():
    """A grey print (PIL's luma, as a greyscale conversion of a snapshot PNG gives it) keeps the
    class order: snapshots draw the same colours (``classe_couleur``)."""
    from PIL import Image

    from essmap.present.classify import PALETTE

    for k, colours in PALETTE.items():
        grey = [Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)) for c in colours]
        assert all(a > b + 8 for a, b in zip(grey, grey[1:], strict=False)), (k, grey)


@pytest.mark.parametrize("cvd", VISIONS)
def test_points_and_qpvs_stand_apart_from_the_choropleth_for_colour_blind_readers(cvd):
    from essmap.present.classify import PALETTE

    classes = sorted({c for colours in PALETTE.values() for c in colours})
    overlay = [maps.TIERS_LIEU_COLOUR, maps.QPV_COLOUR, maps.ESTABLISHMENT_COLOUR]
    ucs = _cam02(classes + overlay, cvd)
    palette, (tiers_lieu, qpv, establishment) = ucs[: len(classes)], ucs[len(classes):]
    for name, colour in (("tiers-lieux", tiers_lieu), ("QPV", qpv), ("établissements", establishment)):
        distance = np.linalg.norm(palette - colour, axis=1).min()
        assert distance > 12, (name, cvd, distance)
    assert np.linalg.norm(tiers_lieu - qpv) > 15  # a tiers-lieu on a filled QPV
    assert tiers_lieu[0] - qpv[0] > 10  # and lighter than the QPV red, also in grey
    # establishments and clusters are neutral: no colour to lose (CAM02-UCS a', b' near 0)
    for neutral in (maps.ESTABLISHMENT_COLOUR, maps.CLUSTER_COLOUR):
        assert np.hypot(*_cam02([neutral], None)[0, 1:]) < 2


def test_the_selected_unit_is_outlined(data):
    plain = maps.render_html(maps.view_map(data))
    assert "window.essmapSelect = function (code)" in plain and "window.essmapSelect(" not in plain.replace(
        "window.essmapSelect = function", "")
    page = maps.render_html(maps.view_map(data.with_view(data.view.replace(selected="13055"))))
    assert 'window.essmapSelect("13055");' in page
    assert "13055" in {f["properties"]["code"] for f in _polygons(page)[0]["features"]}
    assert json.dumps(maps.SELECTION_STYLE, sort_keys=True) in page
    assert maps.selection_script("13055") == 'window.essmapSelect && window.essmapSelect("13055");\n'
    assert maps.selection_script(None) == "window.essmapSelect && window.essmapSelect(null);\n"
    hostile = maps.selection_script('"); alert(1); ("')  # a JavaScript string, never code
    assert hostile == 'window.essmapSelect && window.essmapSelect("\\"); alert(1); (\\"");\n'


def test_units_without_data_are_hatched_on_the_map_and_in_the_legend(demo_con):
    """docs/ux.md: "Pas de données" in a neutral hatched grey, never a plain grey that a grey print
    confuses with the lightest class."""
    data = viewdata.view_data(demo_con, MapView(Selection(departements=("13",)), indicator="part_qpv_avec_tiers_lieu"))
    missing = data.areas.loc[data.areas["valeur"].isna(), "code"].astype(str)
    assert len(missing) > 50  # communes without QPV have no share
    page = maps.render_html(maps.view_map(data))
    script = re.search(r"var hatched = (\"[^\"]*\"), hatch = null;", page)
    assert script and json.loads(script.group(1)) == NO_DATA_COLOUR
    assert "createPattern" in page and "fillColor = (hatch && c === hatched) ? hatch : c" in page
    fills = _styles(page)["fill"]
    assert {fills[code] for code in missing} == {NO_DATA_COLOUR}
    legend = page[page.index('class="essmap-legend"'):]
    row = legend[:legend.index("Pas de données")]
    assert f"repeating-linear-gradient(-45deg,{NO_DATA_HATCH_COLOUR}" in row[row.rindex("essmap-legend-row"):]


def test_a_small_qpv_dot_lies_inside_its_qpv(data):
    """A QPV too small to see shows as a dot placed inside it (not at the centre of its bounds, which
    can fall outside a QPV in two parts or a crescent)."""
    page = maps.render_html(maps.view_map(data))
    anchors = _styles(page)["anchors"]
    qpv = data.qpv.set_index(data.qpv["code_qp"].astype(str))
    assert set(anchors) == set(qpv.index)
    for code, (lat, lon) in anchors.items():
        assert qpv.geometry[code].buffer(1e-6).contains(shapely.Point(lon, lat)), code
