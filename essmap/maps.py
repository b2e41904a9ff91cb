"""Folium map builders: data in, ``folium.Map`` out. No file or database access here.

Every text that comes from data (names, addresses) is HTML-escaped before it reaches Leaflet,
which renders popups and tooltips as HTML.
"""

from __future__ import annotations

import base64
import html
import json
from functools import cache
from importlib import resources

import folium
import geopandas as gpd
import pandas as pd
from branca.element import Element
from folium.plugins import FastMarkerCluster

from essmap.nomenclature import FAMILY_LABELS, SECTOR_LABELS, SIZE_BAND_LABELS

SYNTHETIC_NOTICE = "données simulées"

#: Tile layers a user may add when online; the map never needs them.
TILES: dict[str, dict[str, str]] = {
    "OpenStreetMap": {
        "tiles": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        "attr": "© contributeurs OpenStreetMap",
    },
    "Plan IGN": {
        "tiles": "https://data.geopf.fr/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=GEOGRAPHICALGRIDSYSTEMS.PLANIGNV2&STYLE=normal&TILEMATRIXSET=PM&FORMAT=image/png&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}",
        "attr": "© IGN Plan IGN",
    },
}


def escape(value: object) -> str:
    """Text from data, safe to place in HTML (``<script>`` shows as text)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return html.escape(str(value), quote=True)


def _is_true(value: object) -> bool:
    """True for a set boolean flag; missing (<NA>) counts as false."""
    return bool(pd.notna(value) and value)


def base_map(bounds: tuple[float, float, float, float], *, tiles: str | None = None) -> folium.Map:
    """An empty map fitted to ``bounds`` (lon_min, lat_min, lon_max, lat_max, WGS84).

    Without ``tiles`` the background is plain, so the map draws offline.
    """
    m = folium.Map(tiles=None, control_scale=True, prefer_canvas=True)
    # without a tile layer Leaflet knows no zoom range, which marker clustering needs
    m.options.update(maxZoom=19, minZoom=4)
    if tiles:
        spec = TILES[tiles]
        folium.TileLayer(spec["tiles"], attr=spec["attr"], name=tiles).add_to(m)
    lon_min, lat_min, lon_max, lat_max = bounds
    m.fit_bounds([[lat_min, lon_min], [lat_max, lon_max]])
    return m


def add_boundaries_layer(m: folium.Map, areas: gpd.GeoDataFrame, *, name: str, label_column: str = "nom") -> folium.Map:
    """Outlines (communes, départements) as context on the plain offline background."""
    if areas.empty:
        return m
    data = areas.to_crs(4326)[[label_column, "geometry"]].copy()
    data["info"] = [escape(v) for v in data[label_column]]
    folium.GeoJson(
        data[["info", "geometry"]],
        name=name,
        style_function=lambda _f: {"color": "#636363", "weight": 0.8, "fillColor": "#f7f7f7", "fillOpacity": 0.6},
        tooltip=folium.GeoJsonTooltip(fields=["info"], labels=False),
    ).add_to(m)
    return m


def add_qpv_layer(m: folium.Map, qpv: gpd.GeoDataFrame, *, name: str = "QPV",
                  color: str = "#b2182b", fill: str = "#ef8a62") -> folium.Map:
    """QPV polygons with an escaped tooltip (name, code, and generation when known)."""
    if qpv.empty:
        return m
    data = qpv.to_crs(4326)
    generation = data["generation"] if "generation" in data else pd.Series(pd.NA, index=data.index)
    info = [
        f"<b>{escape(n)}</b><br>{escape(c)}" + (f" · QPV {escape(g)}" if escape(g) else "")
        for n, c, g in zip(data["lib_qp"], data["code_qp"], generation, strict=True)
    ]
    shapes = gpd.GeoDataFrame({"info": info}, geometry=data.geometry.to_numpy(), crs=4326)
    folium.GeoJson(
        shapes,
        name=name,
        style_function=lambda _f: {"color": color, "weight": 1.5, "fillColor": fill, "fillOpacity": 0.4},
        tooltip=folium.GeoJsonTooltip(fields=["info"], labels=False),
    ).add_to(m)
    return m


def establishment_popup(row: pd.Series) -> str:
    """Popup HTML of an ESS establishment (escaped), with the synthetic notice when relevant."""
    lines = [
        f"<b>{escape(row.get('denomination'))}</b>",
        escape(FAMILY_LABELS.get(str(row.get("famille")), row.get("famille"))),
        escape(SECTOR_LABELS.get(str(row.get("secteur")), row.get("secteur"))),
        "Employeur : " + escape(SIZE_BAND_LABELS.get(str(row.get("tranche_effectifs")), "oui"))
        if _is_true(row.get("employeur")) else "Non employeur",
        escape(row.get("adresse")) + " " + escape(row.get("code_postal")) + " " + escape(row.get("libelle_commune")),
        "SIRET " + escape(row.get("siret")),
    ]
    if _is_true(row.get("is_synthetic")):
        lines.append(f"<i>{SYNTHETIC_NOTICE}</i>")
    return "<br>".join(lines)


def tiers_lieu_popup(row: pd.Series) -> str:
    lines = [f"<b>{escape(row.get('nom'))}</b>"]
    for label, column in (("Types : ", "types"), ("Labels ANCT : ", "labels"), ("", "adresse")):
        if escape(row.get(column)):
            lines.append(label + escape(row.get(column)))
    if _is_true(row.get("is_synthetic")):
        lines.append(f"<i>{SYNTHETIC_NOTICE}</i>")
    return "<br>".join(lines)


def add_points_layer(m: folium.Map, points: gpd.GeoDataFrame, *, name: str, popup, color: str,
                     cluster: bool = True) -> folium.Map:
    """Point markers with popups built by ``popup(row)`` (escaped HTML).

    Points travel as one JSON array drawn by a small callback, not one JS object per marker:
    tens of thousands of establishments stay a few MB and render in a second.
    """
    if points.empty:
        return m
    points = points.to_crs(4326)
    data = [
        [round(geom.y, 6), round(geom.x, 6), popup(row)]
        for geom, (_, row) in zip(points.geometry, points.iterrows(), strict=True)
    ]
    callback = (
        "function (row) {"
        "var marker = L.circleMarker(new L.LatLng(row[0], row[1]), "
        f"{{radius: 5, color: {json.dumps(color)}, weight: 1, fillOpacity: 0.8}});"
        "marker.bindPopup(row[2], {maxWidth: 320}); return marker; }"
    )
    options = {} if cluster else {"disableClusteringAtZoom": 1}
    FastMarkerCluster(data, callback=callback, name=name, options=options).add_to(m)
    return m


def add_synthetic_notice(m: folium.Map) -> folium.Map:
    """A visible caption on the map itself: synthetic rows are shown."""
    caption = (
        '<div style="position:absolute;bottom:24px;left:10px;z-index:9999;background:#fff3cd;'
        'border:1px solid #b58900;padding:4px 8px;font:13px sans-serif;">'
        f"Établissements ESS : {SYNTHETIC_NOTICE}</div>"
    )
    m.get_root().html.add_child(folium.Element(caption))
    return m


def finish(m: folium.Map) -> folium.Map:
    """Add the layer switcher and make the map self-contained (call after the last layer).

    Leaflet and its marker-cluster plugin come from pinned PyPI packages and are inlined as
    data URIs, so the map draws without internet, in Streamlit and in exported HTML alike;
    folium's other CDN defaults (jQuery, Bootstrap, icon fonts) are not used and are dropped.
    """
    folium.LayerControl(collapsed=False).add_to(m)
    for element in _walk(m):
        if hasattr(element, "default_js"):
            element.default_js = [(n, _asset_uri(n)) for n, _url in element.default_js if n not in _UNUSED_ASSETS]
        if hasattr(element, "default_css"):
            element.default_css = [(n, _asset_uri(n)) for n, _url in element.default_css if n not in _UNUSED_ASSETS]
    return m


def render_html(m: folium.Map) -> str:
    """The whole map as a standalone HTML page (exports, tests)."""
    return m.get_root().render()


_UNUSED_ASSETS = frozenset({
    "jquery", "bootstrap", "awesome_markers", "bootstrap_css", "glyphicons_css",
    "awesome_markers_font_css", "awesome_markers_css", "awesome_rotate_css",
})
_ASSET_FILES: dict[str, tuple[str, str, str]] = {
    # name used by folium -> (package, file, MIME type)
    "leaflet": ("js_lib_leaflet", "static/js_lib_leaflet/leaflet.js", "text/javascript"),
    "leaflet_css": ("js_lib_leaflet", "static/js_lib_leaflet/leaflet.css", "text/css"),
    "markerclusterjs": ("xstatic.pkg.leaflet_markercluster", "data/leaflet.markercluster.js", "text/javascript"),
    "markerclustercss": ("xstatic.pkg.leaflet_markercluster", "data/MarkerCluster.css", "text/css"),
    "markerclusterdefaultcss": ("xstatic.pkg.leaflet_markercluster", "data/MarkerCluster.Default.css", "text/css"),
}


@cache
def _asset_uri(name: str) -> str:
    if name not in _ASSET_FILES:
        raise KeyError(f"map asset {name!r} has no offline copy; add it to _ASSET_FILES")
    package, path, mime = _ASSET_FILES[name]
    content = resources.files(package).joinpath(path).read_bytes()
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def _walk(element: Element):
    yield element
    for child in getattr(element, "_children", {}).values():
        yield from _walk(child)
