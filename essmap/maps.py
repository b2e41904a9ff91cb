"""Folium map builders: data in, ``folium.Map`` out. No file or database access here.

Every text that comes from data (names, addresses) is HTML-escaped before it reaches Leaflet,
which renders popups and tooltips as HTML.
"""

from __future__ import annotations

import html

import folium
import geopandas as gpd
import pandas as pd
from folium.plugins import MarkerCluster

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
    if tiles:
        spec = TILES[tiles]
        folium.TileLayer(spec["tiles"], attr=spec["attr"], name=tiles).add_to(m)
    lon_min, lat_min, lon_max, lat_max = bounds
    m.fit_bounds([[lat_min, lon_min], [lat_max, lon_max]])
    return m


def add_qpv_layer(m: folium.Map, qpv: gpd.GeoDataFrame, *, name: str = "QPV") -> folium.Map:
    """QPV polygons with an escaped tooltip (name, code, generation)."""
    if qpv.empty:
        return m
    data = qpv.to_crs(4326)[["code_qp", "lib_qp", "generation", "geometry"]].copy()
    data["info"] = [
        f"<b>{escape(n)}</b><br>{escape(c)} · QPV {escape(g)}"
        for n, c, g in zip(data["lib_qp"], data["code_qp"], data["generation"], strict=True)
    ]
    data = data[["info", "geometry"]]
    folium.GeoJson(
        data,
        name=name,
        style_function=lambda _f: {"color": "#b2182b", "weight": 1.5, "fillColor": "#ef8a62", "fillOpacity": 0.35},
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
    """Point markers (clustered by default) with popups built by ``popup(row)``."""
    if points.empty:
        return m
    points = points.to_crs(4326)
    group = MarkerCluster(name=name) if cluster else folium.FeatureGroup(name=name)
    for _, row in points.iterrows():
        folium.CircleMarker(
            location=[row.geometry.y, row.geometry.x], radius=5, color=color, fill=True,
            fill_opacity=0.8, weight=1, popup=folium.Popup(popup(row), max_width=320),
        ).add_to(group)
    group.add_to(m)
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


def add_layer_control(m: folium.Map) -> folium.Map:
    """The layer switcher; call it after the last layer is added."""
    folium.LayerControl(collapsed=False).add_to(m)
    return m


def render_html(m: folium.Map) -> str:
    """The whole map as a standalone HTML page (exports, tests)."""
    return m.get_root().render()
