"""Folium map builders: data in, ``folium.Map`` out. No file or database access here.

Every text that comes from data (names, addresses) is HTML-escaped before it reaches Leaflet,
which renders popups and tooltips as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely
from branca.element import Element, Figure, MacroElement
from folium.map import FitBounds, Layer
from folium.plugins import MarkerCluster
from folium.template import Template
from jinja2.utils import htmlsafe_json_dumps

from essmap.domain.formatting import format_number, location_label
from essmap.domain.nomenclature import FAMILY_LABELS, SECTOR_LABELS, SIZE_BAND_LABELS
from essmap.geo.simplify import geojson_texts
from essmap.present.basemaps import TILES
from essmap.present.classify import NO_DATA_COLOUR, NO_DATA_HATCH_COLOUR, NO_DATA_LABEL, Classification
from essmap.present.view import POINT_GROUPS_BY_SCOPE, scope_of

if TYPE_CHECKING:
    from essmap.present.viewdata import ViewData

SYNTHETIC_NOTICE = "données simulées"

#: Layers of the dashboard map (:func:`view_map`), in drawing order.
MAP_LAYERS: tuple[str, ...] = ("choropleth", "qpv", "tiers_lieux", "etablissements")

#: Metropolitan France, when a view has nothing to fit the map to.
FRANCE_BOUNDS = (-5.2, 41.3, 9.6, 51.1)

# Symbology of the dashboard map and of the snapshots (README, "Symbology"). The choropleth takes the
# sequential palette of :mod:`essmap.present.classify` (yellow-green-blue); nothing drawn over it
# borrows those hues: points are neutral dark grey or orange, QPVs red. Checked for deuteranopia,
# protanopia and tritanopia in tests/test_maps.py.

#: Establishments: near-black dots with a white halo, legible on the lightest and darkest classes.
ESTABLISHMENT_COLOUR = "#252525"
#: Clusters of establishments: one neutral dark grey disc, its size growing with the log of the count.
CLUSTER_COLOUR = "#404040"
#: Tiers-lieux: orange diamonds (ColorBrewer PuOr's orange) outlined in near-black: a hue and a shape
#: of their own, readable on the filled and on the dashed QPVs.
TIERS_LIEU_COLOUR = "#e66101"
TIERS_LIEU_OUTLINE = "#252525"
#: QPV outlines (ColorBrewer RdBu's dark red): still apart from the blues for colour-blind readers.
QPV_COLOUR = "#b2182b"
HALO_COLOUR = "#ffffff"
#: The unit selected in the dashboard (``selection`` in the URL): a black outline over a white halo.
SELECTION_STYLE: dict[str, Any] = {"color": "#000000", "weight": 3.5, "halo": HALO_COLOUR, "halo_weight": 7}

#: What :func:`escape` and :func:`_escaped` write for each character (``&`` first): html.escape's
#: entities, and "{" as a character reference too: folium's own elements render their script a second
#: time as a Jinja template (the map's own do not: :class:`OnePass`), where "{{ ... }}" or "{% ... %}"
#: in a name would run (or break the map) should a text from data ever reach one.
_HTML_ENTITIES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;"), ("{", "&#123;"))


def escape(value: object) -> str:
    """Text from data, safe to place in HTML (``<script>`` shows as text, template syntax too)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    text = str(value)
    for char, entity in _HTML_ENTITIES:
        text = text.replace(char, entity)
    return text


def script_string(value: str) -> str:
    """Text from data as a JavaScript string literal in a map's script (not HTML): Jinja's own
    ``tojson`` (characters that could end a ``<script>`` escaped), with "{" written ``\\u007b`` so
    that folium's second Jinja pass (see :data:`_HTML_ENTITIES`) reads no template syntax."""
    return str(htmlsafe_json_dumps(str(value))).replace("{", "\\u007b")


def base_map(bounds: tuple[float, float, float, float], *, tiles: str | None = None) -> folium.Map:
    """An empty map fitted to ``bounds`` (lon_min, lat_min, lon_max, lat_max, WGS84).

    Without ``tiles`` the background is plain, so the map draws offline.
    """
    m = folium.Map(tiles=None, prefer_canvas=True)
    MetricScale().add_to(m)
    # without a tile layer Leaflet knows no zoom range, which marker clustering needs
    m.options.update(maxZoom=19, minZoom=4)
    if tiles:
        spec = TILES[tiles]
        folium.TileLayer(spec["tiles"], attr=spec["attr"], name=tiles).add_to(m)
    lon_min, lat_min, lon_max, lat_max = bounds
    m.fit_bounds([[lat_min, lon_min], [lat_max, lon_max]])
    return m


class Verbatim(Element):
    """Text placed in the page as it is. branca compiles the text of an ``Element(text)`` as a Jinja
    template and renders it again; for the map's long scripts, styles and legend that second pass
    cost more CPU than drawing up the rest of the map (22 templates compiled per view)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._name = "Verbatim"
        self.text = text

    def render(self, **kwargs) -> str:
        return self.text


class OnePass(MacroElement):
    """An element whose macros (``header``, ``html``, ``script``) are rendered once: their output goes
    into the page as :class:`Verbatim` text, where ``MacroElement`` compiles and renders it a second
    time. The base of the map's own elements; folium's keep their second pass."""

    def render(self, **kwargs) -> None:  # type: ignore[override]  # as MacroElement.render
        figure = self.get_root()
        if not isinstance(figure, Figure):
            raise TypeError("an element is rendered inside a Figure")
        macros = self._template.module.__dict__
        for part, target in (("header", figure.header), ("html", figure.html), ("script", figure.script)):
            if part in macros:
                target.add_child(Verbatim(str(macros[part](self, kwargs))), name=self.get_name())
        for child in self._children.values():
            child.render(**kwargs)


class MetricScale(OnePass):
    """Leaflet's scale bar in metres and kilometres only (French users; folium's default adds
    miles and feet)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        L.control.scale({imperial: false, position: "bottomleft"}).addTo({{ this._parent.get_name() }});
        {% endmacro %}
    """)


#: Styles of the QPV radius layers (README, "Symbology"): one red outline, strong enough to read over
#: every class of the choropleth; a QPV without a tiers-lieu within the radius (a "white zone", what
#: the map is for) is filled, a covered one is dashed and empty, so the two differ by pattern as well
#: as by fill, for colour-blind readers and in black and white. ``marker`` is the dot that stands for
#: a QPV too small to see (under ``QPV_MARKER_BELOW_PX`` pixels).
QPV_NOT_COVERED_STYLE: dict[str, Any] = {
    "color": QPV_COLOUR, "fill": QPV_COLOUR, "weight": 2.5, "fill_opacity": 0.35, "dash": None,
    "marker": {"radius": 4.5, "color": HALO_COLOUR, "weight": 1.5, "fillColor": QPV_COLOUR, "fillOpacity": 1},
}
QPV_COVERED_STYLE: dict[str, Any] = {
    "color": QPV_COLOUR, "fill": QPV_COLOUR, "weight": 2, "fill_opacity": 0.0, "dash": "5 3",
    "marker": {"radius": 4, "color": QPV_COLOUR, "weight": 2, "fillColor": HALO_COLOUR, "fillOpacity": 1},
}
#: A QPV whose polygon spans fewer pixels than this (at département zoom most do) also shows its dot.
QPV_MARKER_BELOW_PX = 10


def symbol_svg(shape: str, *, fill: str = "none", stroke: str = "none", fill_opacity: float = 1.0,
               stroke_width: float = 1.5, dash: str | None = None, bands: tuple[str, ...] = ()) -> str:
    """A 14-pixel symbol for the layer list (``rect``, ``diamond``, ``circle`` or ``bands`` of
    colours), hidden from screen readers: the layer's name says what it is."""
    paint = (f'fill="{escape(fill)}" fill-opacity="{fill_opacity}" stroke="{escape(stroke)}" '
             f'stroke-width="{stroke_width}"' + (f' stroke-dasharray="{escape(dash)}"' if dash else ""))
    if shape == "diamond":
        body = f'<path d="M7 1L13 7L7 13L1 7Z" {paint}/>'
    elif shape == "circle":
        body = f'<circle cx="7" cy="7" r="4.5" {paint}/>'
    elif shape == "bands":
        width = 12 / max(len(bands), 1)
        body = "".join(f'<rect x="{1 + i * width:.2f}" y="2" width="{width:.2f}" height="10" fill="{escape(c)}"/>'
                       for i, c in enumerate(bands)) + '<rect x="1" y="2" width="12" height="10" fill="none" ' \
                                                     'stroke="#525252" stroke-width="0.8"/>'
    else:
        body = f'<rect x="2" y="2" width="10" height="10" {paint}/>'
    return (f'<svg class="essmap-symbol" width="14" height="14" viewBox="0 0 14 14" aria-hidden="true" '
            f'focusable="false">{body}</svg>')


def add_boundaries_layer(m: folium.Map, areas: gpd.GeoDataFrame, *, name: str, label_column: str = "nom",
                         publish: Publisher | None = None) -> folium.Map:
    """Outlines (communes, départements) as context on the plain offline background."""
    if areas.empty:
        return m
    data = _wgs84(areas)
    keys = pd.Series(np.arange(len(data)).astype(str))
    PolygonLayer(feature_collection(_geojson(data), keys), name=name, publish=publish,
                 info=dict(zip(keys, _escaped(data[label_column]), strict=True)),
                 style={"color": "#636363", "weight": 0.8, "fillColor": "#f7f7f7", "fillOpacity": 0.6},
                 symbol=symbol_svg("rect", fill="#f7f7f7", stroke="#636363", stroke_width=1)).add_to(m)
    return m


def add_qpv_layer(m: folium.Map, qpv: gpd.GeoDataFrame, *, name: str = "QPV",
                  style: dict[str, Any] = QPV_NOT_COVERED_STYLE, show: bool = True,
                  publish: Publisher | None = None) -> folium.Map:
    """QPV polygons with an escaped tooltip (name, code, generation; radius results when present),
    drawn in ``style`` (:data:`QPV_NOT_COVERED_STYLE` or :data:`QPV_COVERED_STYLE`); a QPV too small
    to see at the current zoom also shows as a dot.

    Each feature carries its ``code`` (a click on the map selects the QPV).
    """
    if qpv.empty:
        return m
    data = qpv if "geojson" in qpv else _wgs84(qpv)
    info = [f"<b>{n}</b><br>{c}" for n, c in zip(_escaped(data["lib_qp"]), _escaped(data["code_qp"]), strict=True)]
    if "generation" in data:
        info = [f"{i} · QPV {g}" if g else i for i, g in zip(info, _escaped(data["generation"]), strict=True)]
    if "n_tiers_lieux" in data:
        distances = [format_number(d) if pd.notna(d) else "–" for d in data["nearest_distance_m"]]
        info = [f"{i}<br>Tiers-lieux dans le rayon : {n}<br>Le plus proche : {nearest} ({d} m)"
                for i, n, nearest, d in zip(info, data["n_tiers_lieux"].astype(str), _escaped(data["nearest_nom"]),
                                            distances, strict=True)]
    codes = data["code_qp"].astype(str).tolist()
    leaflet_style = {"color": style["color"], "weight": style["weight"], "fillColor": style["fill"],
                     "fillOpacity": style["fill_opacity"], "dashArray": style["dash"]}
    symbol = symbol_svg("rect", fill=style["fill"], fill_opacity=style["fill_opacity"], stroke=style["color"],
                        stroke_width=2, dash="3 2" if style["dash"] else None)
    # a small QPV's dot sits inside it (the centre of its bounds can fall outside a crescent or two parts)
    x, y = _anchors(data)
    anchors = {code: (round(float(lat), 6), round(float(lon), 6))
               for code, lon, lat in zip(codes, x, y, strict=True) if np.isfinite(lon)}
    PolygonLayer(feature_collection(_geojson(data), codes), name=name, show=show, publish=publish,
                 info=dict(zip(codes, info, strict=True)), style=leaflet_style,
                 highlight={"weight": style["weight"] + 1.5}, symbol=symbol,
                 small_marker={**style["marker"], "below_px": QPV_MARKER_BELOW_PX}, anchors=anchors).add_to(m)
    return m


def qpv_radius_layer_names(radius_m: float) -> tuple[str, str]:
    """Names of the two QPV layers (covered, not covered) for a radius."""
    radius = format_number(radius_m)
    return (f"QPV avec tiers-lieu à moins de {radius} m", f"QPV sans tiers-lieu à moins de {radius} m")


def add_qpv_radius_layers(m: folium.Map, result: gpd.GeoDataFrame, *, radius_m: float,
                          publish: Publisher | None = None) -> folium.Map:
    """QPVs of a :func:`~essmap.analysis.proximity.qpv_tiers_lieux` result in two styles."""
    covered = result["covered"].fillna(False).to_numpy(dtype=bool)
    names = qpv_radius_layer_names(radius_m)
    add_qpv_layer(m, result[covered], name=names[0], publish=publish, style=QPV_COVERED_STYLE)
    add_qpv_layer(m, result[~covered], name=names[1], publish=publish, style=QPV_NOT_COVERED_STYLE)
    return m


def choropleth_layer_name(indicator_label: str) -> str:
    """The layer list's name of the choropleth, apart from a point layer of the same subject."""
    return f"Choroplèthe : {indicator_label}"


def add_choropleth_layer(m: folium.Map, areas: gpd.GeoDataFrame, classification: Classification, *,
                         name: str, value_label: str, decimals: int = 1,
                         publish: Publisher | None = None) -> folium.Map:
    """Units coloured by class (``classe_couleur``), tooltip with name, code and value.

    ``areas`` has ``code``, ``nom``, ``valeur``, ``classe_couleur`` (see
    :class:`essmap.present.viewdata.ViewData`); each feature carries its ``code`` (click to select).
    """
    if areas.empty:
        return m
    values = [escape(format_number(float(v), decimals, unit=classification.unit) if pd.notna(v) else NO_DATA_LABEL)
              for v in areas["valeur"]]
    label = escape(value_label)
    info = [f"<b>{n}</b> ({c})<br>{label} : {v}"
            for n, c, v in zip(_escaped(areas["nom"]), _escaped(areas["code"]), values, strict=True)]
    codes = areas["code"].astype(str).tolist()
    colours = classification.colours or (NO_DATA_COLOUR,)
    PolygonLayer(feature_collection(_geojson(areas), codes), name=name, publish=publish,
                 info=dict(zip(codes, info, strict=True)),
                 fill=dict(zip(codes, areas["classe_couleur"].astype(str), strict=True)),
                 style={"color": "#525252", "weight": 0.6, "fillOpacity": 0.75},
                 highlight={"weight": 2.5, "color": "#000000"}, hatched=NO_DATA_COLOUR,
                 symbol=symbol_svg("bands", bands=(colours[0], colours[len(colours) // 2], colours[-1]))).add_to(m)
    return m


def legend_html(title: str, classification: Classification, source: str) -> str:
    """The legend block: title, one line per class, "Pas de données", "Source : ...", escaped.

    Shown inside the map's panel (:class:`MapPanel`), which moves it there."""
    def line(colour: str, label: str) -> str:
        return (f'<div class="essmap-legend-row"><span class="essmap-swatch" style="background:{escape(colour)}">'
                f"</span>{escape(label)}</div>")

    hatch = f"repeating-linear-gradient(-45deg,{NO_DATA_HATCH_COLOUR} 0 1px,{NO_DATA_COLOUR} 1px 4px)"
    no_data = (f'<div class="essmap-legend-row"><span class="essmap-swatch" style="background:{hatch}"></span>'
               f"{escape(NO_DATA_LABEL)}</div>")

    rows = [line(c, label) for c, label in zip(classification.colours, classification.labels, strict=True)]
    rows.append(no_data)
    return (
        '<div class="essmap-legend">'
        f'<div class="essmap-legend-title">{escape(title)}</div>{"".join(rows)}'
        f'<div class="essmap-legend-source">Source : {escape(source)}</div></div>'
    )


def _figure(m: folium.Map) -> Figure:
    """The page holding the map (folium types ``get_root`` as a plain Element)."""
    return cast(Figure, m.get_root())


def add_legend(m: folium.Map, title: str, classification: Classification, source: str) -> folium.Map:
    _figure(m).html.add_child(Verbatim(legend_html(title, classification, source)))
    return m


def view_map(data: ViewData, *, layers: tuple[str, ...] = MAP_LAYERS, publish: Publisher | None = None,
             asset_urls: Mapping[str, str] | None = None) -> folium.Map:
    """The dashboard map of a :class:`~essmap.present.viewdata.ViewData`, ready to render.

    ``layers`` picks among :data:`MAP_LAYERS` (choropleth, QPV, establishments, tiers-lieux);
    ``publish`` serves the layers' geometry and points as files (see :data:`Publisher`), ``asset_urls``
    Leaflet's scripts and styles (:func:`publish_assets`: see :func:`finish`). The view's
    selected unit, if any, is outlined (the dashboard outlines it without redrawing the map: see
    :func:`selection_script`).
    """
    unknown = set(layers) - set(MAP_LAYERS)
    if unknown:
        raise ValueError(f"couches inconnues {sorted(unknown)} ; couches possibles : {', '.join(MAP_LAYERS)}")
    view = data.view
    bounds = _bounds([f for f in (data.areas, data.qpv) if not f.empty])
    m = base_map(bounds, tiles=view.tiles)
    if "choropleth" in layers:
        add_choropleth_layer(m, data.areas, data.classification, name=choropleth_layer_name(data.indicator.label_fr),
                             value_label=data.indicator.label_fr, publish=publish)
        add_legend(m, data.legend_title, data.classification, data.indicator.source_fr)
    if "qpv" in layers and not data.qpv.empty:
        add_qpv_radius_layers(m, data.qpv, radius_m=view.radius_m, publish=publish)
    if "tiers_lieux" in layers:
        add_points_layer(m, data.tiers_lieux, name="Tiers-lieux (points)", popup=tiers_lieu_popup,
                         color=TIERS_LIEU_COLOUR, shape="diamond", cluster=False, publish=publish)
    if "etablissements" in layers and data.groupes_etablissements is not None:
        by = POINT_GROUPS_BY_SCOPE[scope_of(view.selection)] or "commune"
        add_point_groups_layer(m, data.groupes_etablissements,
                               name=f"Établissements ESS (regroupés par {by_fr(by)})", publish=publish)
    elif "etablissements" in layers:
        add_points_layer(m, data.etablissements, name="Établissements ESS (points regroupés)",
                         popup=establishment_popup, color=ESTABLISHMENT_COLOUR, publish=publish)
    if data.synthetic:
        add_synthetic_notice(m)
    return finish(m, selected=view.selected, asset_urls=asset_urls)


def by_fr(level: str) -> str:
    """"commune", "EPCI", "département": the unit establishments are grouped by, in a sentence."""
    return {"epci": "EPCI", "departement": "département"}.get(level, level)


def add_point_groups_layer(m: folium.Map, groups: pd.DataFrame, *, name: str,
                           publish: Publisher | None = None) -> folium.Map:
    """Establishments counted per unit (:func:`~essmap.store.queries.point_groups`): one circle at
    their mean position, its area proportional to the count, tooltip "Nom : N établissements"."""
    if groups.empty:
        return m
    codes = groups["code"].astype(str).tolist()
    counts = groups["n"].to_numpy(dtype=float)
    radius = 3 + 22 * np.sqrt(counts / counts.max())  # area ~ count; the largest 25 px
    info = [f"<b>{n}</b><br>{format_number(c)} {'établissements' if c > 1 else 'établissement'}"
            for n, c in zip(_escaped(groups["nom"]), counts, strict=True)]
    points = shapely.points(groups["longitude"].to_numpy(dtype=float), groups["latitude"].to_numpy(dtype=float))
    PolygonLayer(feature_collection(geojson_texts(points).tolist(), codes), name=name, publish=publish,
                 info=dict(zip(codes, info, strict=True)), radius=dict(zip(codes, radius.round(1), strict=True)),
                 style={"color": "#ffffff", "weight": 1, "fillColor": ESTABLISHMENT_COLOUR, "fillOpacity": 0.7},
                 symbol=symbol_svg("circle", fill=ESTABLISHMENT_COLOUR, stroke="#ffffff", fill_opacity=0.7)).add_to(m)
    return m


def _bounds(frames: list[gpd.GeoDataFrame]) -> tuple[float, float, float, float]:
    if not frames:
        return FRANCE_BOUNDS
    boxes = np.array([_wgs84(f).total_bounds for f in frames])
    return (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))


#: One line of a point popup: style ("b" bold, "i" italic, "" plain), a prefix, and one plain-text
#: value per point ("" leaves the line out). The browser escapes the text when the popup opens, so
#: text from data never becomes HTML, and the map carries no markup per point. Values are Arrow
#: arrays: labels and packing run in Arrow's compute kernels, not once per point in Python.
PopupLine = tuple[str, str, pa.Array]


def establishment_popup(points: pd.DataFrame) -> list[PopupLine]:
    """Popup of ESS establishments: name, family, sector, employer status, address, SIRET, and the
    synthetic notice for simulated rows."""
    employer = _flags(points, "employeur")
    band = pc.if_else(employer, _text(points["tranche_effectifs"]), "-")  # "-": no size band is coded so
    employment = {**{code: "Employeur : " + label for code, label in SIZE_BAND_LABELS.items()}, "-": "Non employeur"}
    address = pc.utf8_trim_whitespace(pc.binary_join_element_wise(
        _text(points["adresse"]), _text(points["code_postal"]), _text(points["libelle_commune"]), " "))
    return [
        ("b", "", _text(points["denomination"])),
        ("", "", _labelled(_text(points["famille"]), FAMILY_LABELS)),
        ("", "", _labelled(_text(points["secteur"]), SECTOR_LABELS)),
        ("", "", _labelled(band, employment, default="Employeur : oui")),
        ("", "", address),
        ("", "SIRET ", _text(points["siret"])),
        ("i", "", _synthetic_line(points)),
    ]


def tiers_lieu_popup(points: pd.DataFrame) -> list[PopupLine]:
    """Popup of tiers-lieux: name, types, ANCT labels, address, synthetic notice."""
    lines: list[PopupLine] = [("b", "", _text(points["nom"]))]
    for prefix, column in (("Types : ", "types"), ("Labels ANCT : ", "labels"), ("", "adresse")):
        values = _text(points[column]) if column in points else pa.array([""] * len(points), pa.string())
        lines.append(("", prefix, values))
    if "precision_localisation" in points:
        precision = _text(points["precision_localisation"])
        labels = {p: location_label(p) for p in precision.unique().to_pylist()}
        lines.append(("i", "Localisation : ", _labelled(precision, labels)))
    lines.append(("i", "", _synthetic_line(points)))
    return lines


def _flags(points: pd.DataFrame, column: str) -> pa.Array:
    if column not in points:
        return pa.array(np.zeros(len(points), dtype=bool))
    return pa.array(points[column].fillna(False).to_numpy(dtype=bool))


def _synthetic_line(points: pd.DataFrame) -> pa.Array:
    return pc.if_else(_flags(points, "is_synthetic"), SYNTHETIC_NOTICE, "")


def _text(values: pd.Series) -> pa.Array:
    """A column as plain Arrow text, missing values as "" (zero-copy for DuckDB's Arrow strings)."""
    array = pa.array(values if isinstance(values.dtype, pd.StringDtype) else values.astype("string"))
    return pc.fill_null(array.cast(pa.string()), "")


def _labelled(codes: pa.Array, labels: dict[str, str], *, default: str | None = None) -> pa.DictionaryArray:
    """The French label of each code (``default``, or else the code itself, when it has none),
    dictionary-encoded: the labels are looked up once per distinct code."""
    encoded = codes.dictionary_encode()
    dictionary = [labels.get(c, c if default is None else default) for c in encoded.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(dictionary, pa.string()))


def _escaped(values: pd.Series) -> list[str]:
    """:func:`escape` over a column, in Arrow's kernels (missing values become ""): tooltips are HTML.
    A list: tooltips are put together in plain Python, where pandas' string operations on a few hundred
    units cost milliseconds each."""
    text = _text(values)
    for char, entity in _HTML_ENTITIES:
        text = pc.replace_substring(text, char, entity)
    return text.to_pylist()


_WGS84 = pyproj.CRS.from_epsg(4326)


def _wgs84(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """``frame`` in WGS84 (it mostly is already: a same-CRS ``to_crs`` still copies and transforms)."""
    return frame if frame.crs is not None and frame.crs.equals(_WGS84) else frame.to_crs(4326)


def feature_collection(geometries: Sequence[str | None], codes: Sequence[str]) -> str:
    """GeoJSON text of a FeatureCollection of WGS84 geometries given as GeoJSON texts
    (:func:`~essmap.geo.simplify.geojson_texts`; None: no geometry), each with its ``code`` property.

    The text depends on the geometry alone (tooltips and colours travel apart, per view), so the
    same units give the same file, which browsers cache. Feature ``id`` is the row position.
    """
    features = ",".join(
        f'{{"type":"Feature","id":"{i}","properties":{{"code":{json.dumps(str(code), ensure_ascii=False)}}},'
        f'"geometry":{"null" if shape is None else shape}}}'
        for i, (code, shape) in enumerate(zip(codes, geometries, strict=True))
    )
    return '{"type":"FeatureCollection","features":[' + features + "]}"


def _geojson(frame: gpd.GeoDataFrame) -> list[str | None]:
    """The GeoJSON text of each row's geometry (WGS84): a view's units carry the text stored with their
    display geometry at ingest (``geojson``); other shapes are written here."""
    if "geojson" in frame:
        return frame["geojson"].astype("string").to_numpy(dtype=object, na_value=None).tolist()
    return geojson_texts(_wgs84(frame).geometry.to_numpy()).tolist()


def _anchors(frame: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of a point inside each row's geometry (NaN where none): stored with a view's
    units (``anchor_lon``, ``anchor_lat``), else computed."""
    if "anchor_lon" in frame:
        return (frame["anchor_lon"].to_numpy(dtype=float, na_value=np.nan),
                frame["anchor_lat"].to_numpy(dtype=float, na_value=np.nan))
    inside = shapely.point_on_surface(frame.geometry.to_numpy())
    return shapely.get_x(inside), shapely.get_y(inside)


#: Publishes the compressed bytes of a layer (points, or polygons' GeoJSON) where the browser can
#: fetch them; returns their URL, or None to keep them in the map (see :func:`publish_payload`).
Publisher = Callable[[bytes], "str | None"]


class _Packed:
    """A layer's JSON, gzip-compressed: a URL the page fetches (``publish``), else inlined in base64
    (exported maps stay self-contained). Read in the page by :data:`_UNPACK_JS`."""

    def __init__(self, text: str | Sequence[bytes | pa.Buffer], publish: Publisher | None) -> None:
        # one gzip stream (level 1: level 5 was 2x slower for -14 %), the same bytes as gzip.compress(text,
        # 1, mtime=0); given in parts, they go to zlib as they are: megabytes never joined first
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        parts: Sequence[bytes | pa.Buffer] = (text.encode("utf-8"),) if isinstance(text, str) else text
        packed = b"".join([*(compressor.compress(part) for part in parts), compressor.flush()])
        self.url = publish(packed) if publish is not None else None
        self.inline = None if self.url else base64.b64encode(packed).decode("ascii")


#: ``unpack(url, inline, add)``: calls ``add`` with the JSON of a :class:`_Packed` payload. Payloads
#: load in parallel but are added in the order the script asked for them: the canvas draws (and
#: hit-tests) layers in the order they were added, so QPVs stay above the choropleth. The counter
#: ``window.essmapLoading`` says how many are not added yet (0: the map shows all its data); in the
#: dashboard's frame, a map replaced meanwhile (another ``window.essmapShown``) no longer counts.
_UNPACK_JS = """function (url, inline, add) {
    var shown = window.essmapShown;
    window.essmapLoading = (window.essmapLoading || 0) + 1;
    var bytes = url ? fetch(url).then(function (r) {
        if (!r.ok) { throw new Error(url + " " + r.status); }
        return r.blob();
    }) : Promise.resolve(new Blob([Uint8Array.from(atob(inline), function (c) { return c.charCodeAt(0); })]));
    var json = bytes.then(function (blob) {
        return new Response(blob.stream().pipeThrough(new DecompressionStream("gzip"))).json();
    });
    var previous = window.essmapAdded || Promise.resolve();
    window.essmapAdded = previous.catch(function () {}).then(function () { return json; }).then(add)
        .finally(function () { if (window.essmapShown === shown) { window.essmapLoading -= 1; } });
    return window.essmapAdded;
}"""


def add_points_layer(m: folium.Map, points: pd.DataFrame, *, name: str, popup, color: str,
                     shape: str = "circle", cluster: bool = True, publish: Publisher | None = None) -> folium.Map:
    """Point markers (``longitude``/``latitude`` columns, WGS84) with popups whose lines come from
    ``popup(points)`` (:data:`PopupLine`): ``circle`` (canvas dots in ``color`` with a white halo,
    clustered in neutral discs when ``cluster``) or ``diamond`` (outlined diamonds, for the few
    tiers-lieux: a shape of their own).

    The points travel as one compressed JSON payload (:class:`_Packed`), unpacked by the browser and
    drawn as canvas circle markers; popups are built on click. Points are ordered along a Morton
    curve and their positions sent as differences from the previous one, which compresses to about
    half; repeated texts are dictionary-encoded, unique ones joined in one string.
    """
    if points.empty:
        return m
    lon = points["longitude"].to_numpy(dtype=float)
    lat = points["latitude"].to_numpy(dtype=float)
    lon0, lat0 = float(np.floor(lon.min() * 100) / 100), float(np.floor(lat.min() * 100) / 100)
    qx, qy = np.round((lon - lon0) * 1e5).astype(np.int64), np.round((lat - lat0) * 1e5).astype(np.int64)
    order = np.argsort(_morton(qx, qy), kind="stable")
    qx, qy = qx[order], qy[order]
    taken = pa.array(order)
    # the JSON of {"lat0", "lon0", "dxy", "lines": [{"s", "p", "c"}...]} written piece by piece: the
    # columns' texts (megabytes for a large département) go from Arrow buffers to the compressor, without
    # Python strings nor copies (base64 needs no JSON escape)
    dxy = _packed_ints(np.column_stack([np.diff(qy, prepend=0), np.diff(qx, prepend=0)]).ravel(), "<i4")
    parts: list[bytes | pa.Buffer] = [b'{"lat0":', _json(lat0), b',"lon0":', _json(lon0), b',"dxy":"',
                                      dxy.encode("ascii"), b'","lines":[']
    for k, (style, prefix, values) in enumerate(popup(points)):
        parts += [b',{"s":' if k else b'{"s":', _json(style), b',"p":', _json(prefix), b',"c":',
                  *_column_json(values.take(taken)), b"}"]
    parts.append(b"]}")
    packed = _Packed(parts, publish)
    PackedPoints(packed, name=name, color=color, shape=shape, cluster=cluster).add_to(m)
    return m


def _morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Interleaved bits of two non-negative integer coordinates (Z-order): near points, near keys."""
    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
        for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                            (2, 0x3333333333333333), (1, 0x5555555555555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v
    return spread(x) | (spread(y) << np.uint64(1))


def publish_payload(folder: Path, url_base: str, content: bytes, *, keep: int = 256) -> str:
    """Write a packed layer into ``folder`` (a static folder the web server serves at ``url_base``)
    under the name of its hash, and return its URL.

    Written under a temporary name and renamed, so several servers may publish into one folder; at
    most ``keep`` files stay, the newest (a view's file is rewritten, hence renewed, when it is drawn):
    past ``keep``, the oldest go down to three quarters of ``keep`` (see :func:`_prune`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{hashlib.sha256(content).hexdigest()[:24]}.json.gz"
    if target.exists():
        os.utime(target)
    else:
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_bytes(content)
        partial.replace(target)
    _prune(folder, keep)
    return f"{url_base.rstrip('/')}/{target.name}"


def _prune(folder: Path, keep: int) -> None:
    """Past ``keep`` payloads in ``folder``, delete the oldest down to three quarters of ``keep``.

    Reading the ages of all the files for each new one cost 15 µs a file, 30 ms of CPU for the eight
    payloads of a view in a folder of 256; pruning a quarter at once reads them once every ``keep / 4``
    new files. Names are counted without reading ages."""
    with os.scandir(folder) as entries:
        payloads = [e for e in entries if e.name.endswith(".json.gz") and not e.name.startswith(".")]
    if len(payloads) <= keep:
        return
    ages = []
    for entry in payloads:
        try:
            ages.append((entry.stat().st_mtime, entry.path))
        except FileNotFoundError:  # pruned meanwhile by another server
            continue
    ages.sort(reverse=True)
    for _mtime, path in ages[max(keep - keep // 4, 1):]:
        Path(path).unlink(missing_ok=True)


#: Separates the texts of a column sent as one string (removed from the texts themselves).
_UNIT_SEPARATOR = "\x1f"


def _json(value: object) -> bytes:
    """``value`` as the payload's JSON writes it (UTF-8, no spaces)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


#: How ``json.dumps`` writes the characters it escapes in a string (backslash first: the others add some).
_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), *((chr(c), {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
                                                       .get(c, f"\\u{c:04x}")) for c in range(0x20)))
#: The bytes of the characters a JSON string escapes (the separator among them): control characters, then
#: the quote and the backslash. Most columns (SIRET, addresses) have none.
_CONTROL_BYTES, _QUOTE_BYTES = 0x20, (ord('"'), ord("\\"))


def _has_bytes_to_escape(text: pa.StringArray, *, quotes: bool = True) -> bool:
    """Whether a text of ``text`` has a control character (or, with ``quotes``, a quote or a backslash).

    One NumPy pass over Arrow's UTF-8 data (the bytes of a multi-byte character are never below 0x80):
    a regular expression per text cost 5 to 15 ms a column of a large département."""
    if text.null_count:  # the bytes of a missing text are not defined
        text = pc.fill_null(text, "")
    _validity, offsets, data = text.buffers()
    if data is None:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[[text.offset, text.offset + len(text)]]
    found = np.frombuffer(data, dtype=np.uint8)[bounds[0]:bounds[1]]
    mask = found < _CONTROL_BYTES
    if quotes:
        mask |= (found == _QUOTE_BYTES[0]) | (found == _QUOTE_BYTES[1])
    return bool(mask.any())


def _column_json(line: pa.Array) -> list[bytes | pa.Buffer]:
    """The JSON of a column of popup lines, in parts: dictionary-encoded when values repeat (the codes
    as packed little-endian integers: one or two bytes a point, no JSON number per point), else the
    texts joined in one string (``j``, split on :data:`_UNIT_SEPARATOR` in the page), escaped and
    joined by Arrow's kernels: the same bytes as ``json.dumps``, without a Python string per column
    (the joined texts stay an Arrow buffer)."""
    if isinstance(line, pa.DictionaryArray):
        encoded: pa.DictionaryArray | None = line
        uniques = len(line.dictionary)
    else:  # counted first: most columns of texts are unique (names, addresses), never dictionary-encoded
        encoded, uniques = None, len(pc.unique(line)) - (1 if line.null_count else 0)
    if uniques * 2 < len(line):
        encoded = encoded if encoded is not None else line.dictionary_encode()
        width = "<u1" if uniques <= 0xFF else "<u2" if uniques <= 0xFFFF else "<u4"
        return [_json({"v": encoded.dictionary.to_pylist(), "i": _packed_ints(encoded.indices.to_numpy(), width),
                       "w": int(width[-1])})]
    text = line.cast(pa.string())
    if _has_bytes_to_escape(text):  # one pass when nothing is to escape
        text = pc.replace_substring(text, _UNIT_SEPARATOR, " ")
        text = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
        if _has_bytes_to_escape(text, quotes=False):
            for char, escaped in _JSON_ESCAPES[2:]:
                text = pc.replace_substring(text, char, escaped)
    separator = _JSON_ESCAPES[2 + ord(_UNIT_SEPARATOR)][1]
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text), separator)[0]
    return [b'{"j":"', joined.as_buffer(), b'"}'] if joined.is_valid else [b'{"j":null}']


def _packed_ints(values: np.ndarray, dtype: str) -> str:
    """Integers as base64 of their little-endian bytes (read in the page as a typed array)."""
    return base64.b64encode(np.asarray(values).astype(dtype).tobytes()).decode("ascii")


class PolygonLayer(Layer, OnePass):
    """Polygons (or points drawn as circles of ``radius`` pixels) from GeoJSON text
    (:func:`feature_collection`), each styled and labelled by its ``code``: ``fill`` colours (else
    ``style``'s), an HTML ``info`` tooltip (escaped by the caller), a ``highlight`` style under the
    pointer. The geometry travels as a :class:`_Packed` payload
    (a file the browser caches, with ``publish``); colours and tooltips, which change with the
    view, travel in the map itself. A click reports the feature (its ``code``) to streamlit-folium,
    which listens on the layer.

    With ``small_marker`` (a circle-marker style plus ``below_px``), a polygon smaller than
    ``below_px`` pixels at the current zoom also shows as a dot (at its ``anchors`` position, a point
    inside it, else at the centre of its bounds), with the same code and tooltip. A feature whose fill
    is the colour ``hatched`` is hatched (a canvas pattern): the "no data" of a choropleth.
    Tooltips, fills, radii and anchors travel as a second packed payload (``styles``), fetched before
    the geometry is added: the map message stays small (4,000 communes' tooltips of a région weighed
    most of its megabyte).
    ``symbol`` is the SVG shown before the name in the layer list.
    The layer registers in ``window.essmapPolygons``, where the selection outline looks for units."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = (function (map) {
            var info = {}, fill = {}, radius = {}, anchors = {};  // from the styles payload
            var base = {{ this.style|tojson }}, highlight = {{ this.highlight|tojson }};
            var small = {{ this.small_marker|tojson }}, pairs = [];
            var hatched = {{ this.hatched|tojson }}, hatch = null;
            if (hatched) {  // the canvas fills with a pattern given as fillColor: "no data" hatched
                var tile = document.createElement("canvas");
                tile.width = tile.height = 6;
                var t = tile.getContext("2d");
                t.fillStyle = hatched; t.fillRect(0, 0, 6, 6);
                t.strokeStyle = {{ this.hatch_colour|tojson }}; t.lineWidth = 1;
                t.beginPath(); t.moveTo(0, 6); t.lineTo(6, 0); t.moveTo(-1, 1); t.lineTo(1, -1);
                t.moveTo(5, 7); t.lineTo(7, 5); t.stroke();
                hatch = t.createPattern(tile, "repeat");
            }
            var layer = L.geoJSON(null, {
                pointToLayer: function (f, latlng) {
                    return L.circleMarker(latlng, {radius: radius[f.properties.code] || 4});
                },
                style: function (f) {
                    var s = Object.assign({}, base), c = fill[f.properties.code];
                    if (c) { s.fillColor = (hatch && c === hatched) ? hatch : c; }
                    return s;
                },
                onEachFeature: function (f, l) {
                    var text = info[f.properties.code];
                    if (text) { l.bindTooltip(text, {sticky: true}); }
                    if (highlight) {
                        l.on("mouseover", function () { l.setStyle(highlight); });
                        l.on("mouseout", function () { layer.resetStyle(l); });
                    }
                }
            });
            var showSmall = function () {  // a dot for each polygon too small to see at this zoom
                if (!small || !map.hasLayer(layer)) { return; }
                var z = map.getZoom();
                pairs.forEach(function (p) {
                    var a = map.project(p[2].getNorthEast(), z), b = map.project(p[2].getSouthWest(), z);
                    var tiny = Math.max(Math.abs(a.x - b.x), Math.abs(a.y - b.y)) < small.below_px;
                    if (tiny && !layer.hasLayer(p[1])) { layer.addLayer(p[1]); }
                    else if (!tiny && layer.hasLayer(p[1])) { layer.removeLayer(p[1]); }
                });
            };
            ({{ this.unpack }})({{ this.styles.url|tojson }}, {{ this.styles.inline|tojson }}, function (s) {
                info = s.info; fill = s.fill; radius = s.radius; anchors = s.anchors;
            });
            ({{ this.unpack }})({{ this.packed.url|tojson }}, {{ this.packed.inline|tojson }}, function (g) {
                layer.addData(g);
                if (!small) { return; }
                layer.eachLayer(function (l) {
                    if (!l.getBounds) { return; }
                    var at = anchors[l.feature.properties.code], bounds = l.getBounds();
                    var dot = L.circleMarker(at ? L.latLng(at[0], at[1]) : bounds.getCenter(), small);
                    dot.feature = {type: "Feature", properties: {code: l.feature.properties.code}};
                    dot.essmapDot = true;
                    var text = info[l.feature.properties.code];
                    if (text) { dot.bindTooltip(text); }
                    pairs.push([l, dot, bounds]);
                });
                showSmall();
            });
            if (small) { map.on("zoomend", showSmall); layer.on("add", showSmall); }
            window.essmapPolygons = (window.essmapPolygons || []).concat([layer]);
            return layer;
        })({{ this._parent.get_name() }});
        {% if this.show %}{{ this.get_name() }}.addTo({{ this._parent.get_name() }});{% endif %}
        {% endmacro %}""")

    def __init__(self, geojson: str, *, name: str, info: dict[str, str], style: dict[str, Any],
                 fill: dict[str, str] | None = None, highlight: dict[str, Any] | None = None, show: bool = True,
                 radius: dict[str, float] | None = None, small_marker: dict[str, Any] | None = None,
                 symbol: str = "", publish: Publisher | None = None, hatched: str | None = None,
                 anchors: dict[str, tuple[float, float]] | None = None) -> None:
        super().__init__(name=name, overlay=True, show=show)  # a checkbox in the layer switcher
        self._name = "PolygonLayer"
        self.packed = _Packed(geojson, publish)
        self.unpack = _UNPACK_JS
        self.styles = _Packed(json.dumps({
            "info": {k: str(v) for k, v in info.items()},
            "fill": fill or {},
            "radius": {k: float(v) for k, v in (radius or {}).items()},  # points: circle radius in pixels
            "anchors": anchors or {},  # code -> (lat, lon) of its dot, else the centre of its bounds
        }, ensure_ascii=False, separators=(",", ":")), publish)
        self.style = style
        self.highlight = highlight
        self.small_marker = small_marker
        self.symbol = symbol
        self.hatched = hatched  # features of this fill colour are hatched (the "no data" of a choropleth)
        self.hatch_colour = NO_DATA_HATCH_COLOUR


#: The size of a cluster disc in pixels for ``n`` points, in the page (README, "Symbology"): 22 px for
#: two points, 32 for a hundred, 45 for 13,000; the count is written in it (French digit grouping).
CLUSTER_SIZE_JS = "function (n) { return Math.round(20 + 6 * Math.log10(n)); }"


class PackedPoints(MarkerCluster, OnePass):
    """A marker layer filled from a compressed payload (see :func:`add_points_layer`).

    Cluster discs, like the diamonds, are no keyboard tab stops: a département showed dozens before the
    page's next control, each announcing a bare number, and all they do on Enter is zoom in, which the
    focused map does with "+" (its arrows pan); the tables under the map and in the tabs hold what they
    count (RGAA 4.1: the map's information without the map).
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        {% if this.cluster %}L.MarkerCluster.mergeOptions({keyboard: false});{% endif %}  // discs: no tab stops
        var {{ this.get_name() }} = {% if this.cluster %}L.markerClusterGroup(Object.assign(
            {{ this.options|tojson }}, {iconCreateFunction: function (cluster) {
                var n = cluster.getChildCount(), size = ({{ this.cluster_size }})(n);
                return L.divIcon({html: "<span>" + n.toLocaleString("fr-FR") + "</span>", className: "essmap-cluster",
                                  iconSize: L.point(size, size)});
            }}))
            {% else %}L.featureGroup(){% endif %};
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        (function (group) {
            ({{ this.unpack }})({{ this.packed.url|tojson }}, {{ this.packed.inline|tojson }}, function (d) {
                var ints = function (s, T) {  // base64 of little-endian integers
                    return new T(Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer);
                };
                var widths = {1: Uint8Array, 2: Uint16Array, 4: Uint32Array};
                d.lines.forEach(function (line) {
                    if (line.c.j !== undefined) { line.c.t = line.c.j.split("\\x1f"); }
                    else { line.c.i = ints(line.c.i, widths[line.c.w]); }
                });
                d.dxy = ints(d.dxy, Int32Array);
                var n = d.dxy.length / 2, markers = new Array(n);
                {% if this.shape == "diamond" %}
                var icon = L.divIcon({className: "essmap-diamond", iconSize: [13, 13], iconAnchor: [6.5, 6.5],
                                      html: {{ this.diamond|tojson }}});
                // under the cluster discs (their counts stay readable), above the polygons
                var map = {{ this._parent.get_name() }};
                if (!map.getPane("essmapDiamonds")) { map.createPane("essmapDiamonds").style.zIndex = 550; }
                var marker = function (ll) {
                    return L.marker(ll, {icon: icon, keyboard: false, pane: "essmapDiamonds"});
                };
                {% else %}
                var style = {radius: 4, color: {{ this.halo|tojson }}, weight: 1, fillColor: {{ this.color|tojson }},
                             fillOpacity: 0.9};
                var marker = function (ll) { return L.circleMarker(ll, style); };
                {% endif %}
                var y = 0, x = 0;
                for (var i = 0; i < n; i++) {  // positions are differences from the previous point
                    y += d.dxy[2 * i]; x += d.dxy[2 * i + 1];
                    markers[i] = marker([d.lat0 + y / 1e5, d.lon0 + x / 1e5]);
                    markers[i].essmapRow = i;
                }
                var entities = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"};
                var esc = function (t) { return String(t).replace(/[&<>"']/g, function (c) { return entities[c]; }); };
                group.on("click", function (e) {  // one listener for the layer, the popup built on click
                    var k = e.layer.essmapRow;
                    if (k === undefined) { return; }
                    var text = d.lines.map(function (line) {
                        var col = line.c, value = col.t ? col.t[k] : col.v[col.i[k]];
                        if (!value) { return ""; }
                        var html = esc(line.p + value);  // text from data is never markup
                        return line.s ? "<" + line.s + ">" + html + "</" + line.s + ">" : html;
                    }).filter(function (t) { return t; }).join("<br>");
                    L.popup({maxWidth: 320}).setLatLng(e.layer.getLatLng()).setContent(text)
                        .openOn({{ this._parent.get_name() }});
                });
                if (group.addLayers) { group.addLayers(markers); }
                else { markers.forEach(function (mk) { group.addLayer(mk); }); }
            });
        })({{ this.get_name() }});
        {% endmacro %}""")

    def __init__(self, packed: _Packed, *, name: str, color: str, cluster: bool, shape: str = "circle") -> None:
        if shape not in ("circle", "diamond"):
            raise ValueError(f"forme de point inconnue « {shape} » (circle, diamond)")
        # street level and closer (zoom >= 15): every point shown, so clustering computes 11 zoom levels, not 16
        super().__init__(name=name, options={"disableClusteringAtZoom": 15, "showCoverageOnHover": False})
        self._name = "PackedPoints"
        self.packed = packed
        self.unpack = _UNPACK_JS
        self.color = color
        self.halo = HALO_COLOUR
        self.shape = shape
        self.cluster = cluster
        self.cluster_size = CLUSTER_SIZE_JS
        self.diamond = (f'<svg width="13" height="13" viewBox="0 0 14 14" aria-hidden="true" focusable="false">'
                        f'<path d="M7 1L13 7L7 13L1 7Z" fill="{escape(color)}" stroke="{TIERS_LIEU_OUTLINE}" '
                        f'stroke-width="1.3"/></svg>')
        if shape == "diamond":
            self.symbol = symbol_svg("diamond", fill=color, stroke=TIERS_LIEU_OUTLINE, stroke_width=1.2)
        else:
            self.symbol = symbol_svg("circle", fill=color, stroke=HALO_COLOUR, stroke_width=1)


def add_synthetic_notice(m: folium.Map) -> folium.Map:
    """A visible caption on the map itself: synthetic rows are shown. :class:`MapPanel` places it
    in the bottom-left corner, above the scale bar (Leaflet stacks controls, they never overlap)."""
    caption = f'<div class="essmap-notice">Carte contenant des {SYNTHETIC_NOTICE} (démonstration)</div>'
    _figure(m).html.add_child(Verbatim(caption))
    return m


#: Text of the button that opens and closes the map panel (legend and layers).
PANEL_LABEL = "Légende et couches"
#: A map narrower than this (a phone) opens with its panel closed.
PANEL_OPEN_MIN_WIDTH_PX = 641


class MapPanel(OnePass):
    """The map's one control panel, top right: a button (``aria-expanded``) that opens and closes
    the legend (``.essmap-legend``, moved in from the page) and the layer list, where every layer
    of the map has a checkbox, its symbol and its name. Open on a wide map, closed on a phone.

    Once placed, the map is fitted to ``bounds`` again, padded by the panel and the other controls,
    so that no control covers the territory of the first view. The synthetic-data notice
    (``.essmap-notice``) becomes a bottom-left control. Layer names must be unique: the layer list
    is keyed by name, so a repeated name would hide a layer from it.
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = (function (map) {
            var base = {
                {%- for key, val in this.base_layers.items() %}
                {{ key|tojson }} : {{ val }},
                {%- endfor %}
            };
            var overlays = {
                {%- for key, val in this.overlays.items() %}
                {{ key|tojson }} : {{ val }},
                {%- endfor %}
            };
            var layers = L.control.layers(base, overlays, {collapsed: false, autoZIndex: true}).addTo(map);
            var notice = document.querySelector(".essmap-notice");
            if (notice) {
                var Notice = L.Control.extend({onAdd: function () { return notice; }});
                new Notice({position: "bottomleft"}).addTo(map);
            }
            var Panel = L.Control.extend({
                onAdd: function () {
                    var box = L.DomUtil.create("div", "essmap-panel");
                    var button = L.DomUtil.create("button", "essmap-panel-toggle", box);
                    var body = L.DomUtil.create("div", "essmap-panel-body", box);
                    body.id = "essmap-panel-body";
                    button.type = "button";
                    button.textContent = {{ this.label|tojson }};
                    button.setAttribute("aria-controls", body.id);
                    var legend = document.querySelector(".essmap-legend");
                    if (legend) { body.appendChild(legend); }
                    body.appendChild(layers.getContainer());
                    var set = function (open) {
                        button.setAttribute("aria-expanded", open ? "true" : "false");
                        body.hidden = !open;
                        // never down to the bottom corners (scale bar, notice): the body scrolls instead
                        var bottom = map.getContainer().querySelector(".leaflet-bottom.leaflet-left");
                        var reserved = (bottom ? bottom.offsetHeight : 0) + 20 + button.offsetHeight;
                        body.style.maxHeight = Math.max(map.getSize().y - reserved - 10, 80) + "px";
                    };
                    L.DomEvent.on(button, "click", function () {
                        set(button.getAttribute("aria-expanded") !== "true");
                    });
                    L.DomEvent.disableClickPropagation(box);
                    L.DomEvent.disableScrollPropagation(box);
                    this.setOpen = set;
                    set(map.getSize().x >= {{ this.open_min_width }});
                    return box;
                }
            });
            var panel = new Panel({position: "topright"}).addTo(map);
            var corner = function (c) { return map.getContainer().querySelector(c); };
            var layout = function () {
                var topLeft = corner(".leaflet-top.leaflet-left"), bottomLeft = corner(".leaflet-bottom.leaflet-left");
                var box = panel.getContainer();
                var open = box.querySelector("button").getAttribute("aria-expanded") === "true";
                panel.setOpen(open);  // its height, now that the corners have their size
                {% if this.bounds %}
                // fit the territory to the part of the map no control covers: an open panel takes a strip
                // on the right, a closed one (a button) and the zoom buttons a band at the top
                map.fitBounds({{ this.bounds|tojson }}, open ? {
                    paddingTopLeft: [topLeft.offsetWidth + 10, 10],
                    paddingBottomRight: [box.offsetWidth + 20, bottomLeft.offsetHeight + 10], animate: false
                } : {
                    paddingTopLeft: [10, Math.max(topLeft.offsetHeight, box.offsetHeight) + 10],
                    paddingBottomRight: [10, bottomLeft.offsetHeight + 10], animate: false
                });
                {% endif %}
            };
            // measure the corners once Leaflet's stylesheet applies (streamlit-folium loads it with the map)
            (function whenStyled(tries) {
                var styled = getComputedStyle(corner(".leaflet-top.leaflet-left")).position === "absolute";
                if (styled || tries > 250) { layout(); return; }
                setTimeout(function () { whenStyled(tries + 1); }, 20);
            })(0);
            return panel;
        })({{ this._parent.get_name() }});
        {% endmacro %}""")

    def __init__(self, bounds: Sequence[Sequence[float]] | None = None) -> None:
        super().__init__()
        self._name = "MapPanel"
        self.bounds = bounds
        self.label = PANEL_LABEL
        self.open_min_width = PANEL_OPEN_MIN_WIDTH_PX
        self.base_layers: dict[str, str] = {}
        self.overlays: dict[str, str] = {}

    def render(self, **kwargs) -> None:  # type: ignore[override]  # as folium's LayerControl.render
        self.base_layers, self.overlays = {}, {}
        names: set[str] = set()
        parent = cast(Element, self._parent)
        for item in parent._children.values():
            if not isinstance(item, Layer) or not item.control:
                continue
            if item.layer_name in names:
                raise ValueError(f"deux couches de la carte portent le nom « {item.layer_name} »")
            names.add(item.layer_name)
            symbol = getattr(item, "symbol", "")
            label = f"{symbol}{escape(item.layer_name)}"
            (self.overlays if item.overlay else self.base_layers)[label] = item.get_name()
        super().render(**kwargs)


class SelectionOutline(OnePass):
    """Defines ``window.essmapSelect(code)``, which outlines the unit ``code`` (a commune, an EPCI,
    a QPV... any feature of the map's polygon layers) in :data:`SELECTION_STYLE`, above the other
    layers and never in the way of a click; ``null`` removes the outline. It waits until the layers
    are added. The dashboard calls it when the selection changes (:func:`selection_script`), without
    redrawing the map; ``selected`` is outlined from the start (exported maps)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function (map) {
            var pane = map.createPane("essmapSelection");
            pane.style.zIndex = 450;  // above the polygons and point canvases (400), below popups
            pane.style.pointerEvents = "none";
            var renderer = L.svg({pane: "essmapSelection"}), style = {{ this.style|tojson }}, outline = null;
            window.essmapSelect = function (code) {
                window.essmapSelectionWanted = code;
                return (window.essmapAdded || Promise.resolve()).catch(function () {}).then(function () {
                    if (window.essmapSelectionWanted !== code) { return; }  // a newer call wins
                    if (outline) { map.removeLayer(outline); outline = null; }
                    window.essmapSelected = null;
                    if (!code) { return; }
                    var features = [];
                    (window.essmapPolygons || []).forEach(function (g) {
                        g.eachLayer(function (l) {
                            if (!l.essmapDot && l.feature && l.feature.properties.code === code) {
                                features.push(l.feature);
                            }
                        });
                    });
                    if (!features.length) { return; }
                    var shapes = {type: "FeatureCollection", features: features};
                    var draw = function (color, weight) {
                        return L.geoJSON(shapes, {renderer: renderer, interactive: false,
                            style: {color: color, weight: weight, fill: false, opacity: 1}});
                    };
                    outline = L.featureGroup([draw(style.halo, style.halo_weight), draw(style.color, style.weight)])
                        .addTo(map);
                    window.essmapSelected = code;
                });
            };
            {% if this.selected %}window.essmapSelect({{ this.selected|tojson }});{% endif %}
        })({{ this._parent.get_name() }});
        {% endmacro %}""")

    def __init__(self, selected: str | None = None) -> None:
        super().__init__()
        self._name = "SelectionOutline"
        self.selected = selected
        self.style = SELECTION_STYLE


def selection_script(code: str | None) -> str:
    """Script that outlines the unit ``code`` on a map drawn by :func:`finish` (``None``: no
    outline), for streamlit-folium's ``feature_group`` argument, which the map's frame runs each
    time it changes, without redrawing the map."""
    return f"window.essmapSelect && window.essmapSelect({json.dumps(code or None)});\n"


#: The map's own styles: panel, legend, notice, symbols, cluster discs (README, "Symbology").
MAP_CSS = f"""
.essmap-panel{{background:#fff;border-radius:5px;box-shadow:0 1px 5px rgba(0,0,0,.4);color:#1a1a1a;
  font:12px/1.3 sans-serif;max-width:17rem;padding:0}}
.essmap-panel-toggle{{display:block;width:100%;border:0;border-radius:5px;background:#fff;color:#1a1a1a;
  font:bold 13px/1.2 sans-serif;padding:7px 10px;text-align:left;cursor:pointer}}
.essmap-panel-toggle::after{{content:" \\25BE"}}
.essmap-panel-toggle[aria-expanded="false"]::after{{content:" \\25B8"}}
.essmap-panel-toggle:focus-visible{{outline:3px solid #1d4ed8;outline-offset:1px}}
.essmap-panel-body{{padding:0 10px 8px;overflow-y:auto}}
.essmap-panel-body[hidden]{{display:none}}
.essmap-panel .leaflet-control-layers{{box-shadow:none;border:0;border-radius:0;background:none;
  margin:6px 0 0;padding:6px 0 0;border-top:1px solid #d0d0d0}}
.essmap-panel .leaflet-control-layers label{{white-space:normal;font-size:12px;line-height:1.25;margin:2px 0}}
.essmap-symbol{{vertical-align:-2px;margin:0 4px 0 2px}}
.essmap-legend-title{{font-weight:bold;margin:2px 0 4px}}
.essmap-legend-row{{margin:1px 0}}
.essmap-swatch{{display:inline-block;width:14px;height:12px;margin-right:6px;vertical-align:middle;
  border:1px solid #777}}
.essmap-legend-source{{margin-top:4px;color:#4d4d4d}}
.essmap-notice{{background:#fff3cd;border:1px solid #b58900;padding:4px 8px;font:13px/1.3 sans-serif;
  color:#1a1a1a;max-width:16rem}}
.leaflet-marker-icon.essmap-cluster{{display:flex;align-items:center;justify-content:center;border-radius:50%;
  background:{CLUSTER_COLOUR};opacity:.85;border:1.5px solid {HALO_COLOUR};box-shadow:0 0 0 1px rgba(0,0,0,.35);
  color:#fff;font:bold 11px/1 sans-serif;box-sizing:border-box}}
.leaflet-marker-icon.essmap-diamond{{background:none;border:0}}
.essmap-diamond svg{{display:block}}
"""


def finish(m: folium.Map, *, selected: str | None = None, asset_urls: Mapping[str, str] | None = None) -> folium.Map:
    """Add the panel (legend and layer list, :class:`MapPanel`) and the selection outline
    (:class:`SelectionOutline`, ``selected`` outlined from the start), and make the map
    self-contained (call after the last layer).

    Leaflet and its marker-cluster plugin come from pinned PyPI packages and are inlined as
    data URIs, so the map draws without internet, in Streamlit and in exported HTML alike;
    folium's other CDN defaults (jQuery, Bootstrap, icon fonts) are not used and are dropped.
    With ``asset_urls`` (:func:`publish_assets`: inlined copy -> URL) they load from those URLs
    instead: the dashboard's map then never renders nor carries 300 kB of inlined Leaflet.
    """
    fits = [child for child in m._children.values() if isinstance(child, FitBounds)]
    MapPanel(bounds=fits[-1].bounds if fits else None).add_to(m)
    SelectionOutline(selected).add_to(m)
    _figure(m).header.add_child(Verbatim(f"<style>{MAP_CSS}</style>"))
    urls = asset_urls or {}
    for element in walk(m):
        if hasattr(element, "default_js"):
            element.default_js = [(n, urls.get(_asset_uri(n), _asset_uri(n))) for n, _url in element.default_js
                                  if n not in _UNUSED_ASSETS]
        if hasattr(element, "default_css"):
            element.default_css = [(n, urls.get(_asset_uri(n), _asset_uri(n))) for n, _url in element.default_css
                                   if n not in _UNUSED_ASSETS]
    return m


def render_html(m: folium.Map) -> str:
    """The whole map as a standalone HTML page (exports, tests)."""
    return m.get_root().render()


_UNUSED_ASSETS = frozenset({
    "jquery", "bootstrap", "awesome_markers", "bootstrap_css", "glyphicons_css",
    "awesome_markers_font_css", "awesome_markers_css", "awesome_rotate_css",
    "markerclusterdefaultcss",  # its green/yellow/orange clusters: ours are drawn by MAP_CSS
})
_ASSET_FILES: dict[str, tuple[str, str, str]] = {
    # name used by folium -> (package, file, MIME type)
    "leaflet": ("js_lib_leaflet", "static/js_lib_leaflet/leaflet.js", "text/javascript"),
    "leaflet_css": ("js_lib_leaflet", "static/js_lib_leaflet/leaflet.css", "text/css"),
    "markerclusterjs": ("xstatic.pkg.leaflet_markercluster", "data/leaflet.markercluster.js", "text/javascript"),
    "markerclustercss": ("xstatic.pkg.leaflet_markercluster", "data/MarkerCluster.css", "text/css"),
    "markerclusterdefaultcss": ("xstatic.pkg.leaflet_markercluster", "data/MarkerCluster.Default.css", "text/css"),
}


def _asset_content(name: str) -> bytes:
    if name not in _ASSET_FILES:
        raise KeyError(f"map asset {name!r} has no offline copy; add it to _ASSET_FILES")
    package, path, _mime = _ASSET_FILES[name]
    return resources.files(package).joinpath(path).read_bytes()


@cache
def _asset_uri(name: str) -> str:
    content = _asset_content(name)  # an unknown name raises there
    return f"data:{_ASSET_FILES[name][2]};base64,{base64.b64encode(content).decode('ascii')}"


def publish_assets(folder: Path, url_base: str) -> dict[str, str]:
    """Write the map's scripts and styles into ``folder``, served at ``url_base``; return the URL
    that replaces each inlined copy (``asset_urls`` of :func:`view_map` and :func:`finish`).

    The dashboard serves them as files: the browser then caches and compiles Leaflet once, instead of
    decoding and compiling it from every map message (each filter change rebuilds the map's frame).
    Files are replaced atomically, so several servers may publish into the same folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    urls = {}
    for name, (_package, path, _mime) in _ASSET_FILES.items():
        content = _asset_content(name)
        target = folder / Path(path).name
        if not target.exists() or target.read_bytes() != content:
            partial = target.with_name(f".{target.name}.{os.getpid()}")
            partial.write_bytes(content)
            partial.replace(target)
        version = hashlib.sha256(content).hexdigest()[:12]  # a new package version is a new URL
        urls[_asset_uri(name)] = f"{url_base.rstrip('/')}/{target.name}?v={version}"
    return urls


def walk(element: Element):
    """``element`` and all its descendants (depth first)."""
    yield element
    for child in getattr(element, "_children", {}).values():
        yield from walk(child)
