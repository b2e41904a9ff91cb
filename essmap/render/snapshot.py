"""Map snapshots for reports: the current view as PNG (300 dpi), PDF or SVG on an A4 page.

The snapshot draws from the same :class:`~essmap.present.viewdata.ViewData` as the interactive map, so it
shows the same units, classes and colours (``classe_couleur``, :mod:`essmap.present.classify`). It is
drawn in the metric CRS of the territory (Lambert-93 in metropolitan France, see
:mod:`essmap.domain.territories`): one map unit is one metre, so the scale bar is true; the north arrow
points to true north (grid north differs by the meridian convergence, up to a few degrees).

Every text comes out as plain text: ``$x$`` is not mathtext and ``<script>`` is just characters
(matplotlib never interprets HTML). PDF fonts are embedded as TrueType and SVG keeps text as
``<text>`` elements, so titles can be searched, copied and checked by ``pdftotext``.

A base map is drawn only when the view asks for one (``MapView.tiles``) and its tiles can be
fetched within a few seconds; otherwise the snapshot says so and keeps its plain background.
Snapshots never need the network.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Any, Literal, cast

import geopandas as gpd
import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrow, Patch, Rectangle
from PIL import Image
from pyproj import Transformer

from essmap.analysis.indicators import LEVEL_LABELS
from essmap.domain.formatting import format_date, format_number
from essmap.domain.territories import TERRITORIES
from essmap.geo import territory_codes
from essmap.present.basemaps import TILES
from essmap.present.classify import NO_DATA_COLOUR, NO_DATA_HATCH_COLOUR, NO_DATA_LABEL
from essmap.render.maps import (
    ESTABLISHMENT_COLOUR,
    QPV_COVERED_STYLE,
    QPV_NOT_COVERED_STYLE,
    SYNTHETIC_NOTICE,
    TIERS_LIEU_COLOUR,
    TIERS_LIEU_OUTLINE,
    qpv_radius_layer_names,
)

if TYPE_CHECKING:
    from essmap.present.viewdata import ViewData

SnapshotFormat = Literal["png", "pdf", "svg"]
SNAPSHOT_FORMATS: tuple[str, ...] = ("png", "pdf", "svg")
Orientation = Literal["paysage", "portrait"]
#: A4 at 300 dpi, in pixels (297 x 210 mm).
A4_PIXELS: dict[str, tuple[int, int]] = {"paysage": (3508, 2480), "portrait": (2480, 3508)}
DPI = 300

#: Producers of the store's sources (``sources.source``), for the source line.
SOURCE_LABELS: dict[str, str] = {
    "sirene": "INSEE, base SIRENE (établissements de l'ESS)",
    "qpv": "ANCT, quartiers prioritaires (QPV)",
    "communes": "INSEE et IGN, communes et populations légales",
    "tiers_lieux": "France Tiers-Lieux et Commune Mesure, tiers-lieux",
}

#: Matplotlib settings of every export: plain text, text kept as text in PDF and SVG.
TEXT_STYLE: dict[str, Any] = {
    "text.parse_math": False,
    "text.usetex": False,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "axes.unicode_minus": True,
}

# Points and QPVs take the interactive map's symbology (essmap.render.maps; README, "Symbology").
BOUNDARY_COLOUR = "#636363"
#: Matplotlib hatch of "no data" units and of their legend entry.
NO_DATA_HATCH = "////"
#: Above this many points a layer is rasterised inside PDF/SVG (files stay small).
RASTERISE_ABOVE = 5000
#: Base map: at most this many 256-pixel tiles, each fetched within this many seconds.
MAX_TILES = 48
TILE_TIMEOUT_S = 4.0
_MERCATOR_HALF = 20037508.342789244


@contextmanager
def text_style() -> Iterator[None]:
    """Create *and* save figures inside this context (parse_math is read at creation)."""
    with mpl.rc_context(TEXT_STYLE):  # type: ignore[arg-type]  # matplotlib types the keys as literals
        yield


# --- Texts -------------------------------------------------------------------------------------


def default_title(data: ViewData) -> str:
    """``Établissements employeurs de l'ESS pour 10 000 habitants – Bouches-du-Rhône (13)``."""
    return f"{data.indicator.label_fr} – {data.territory_label}"


def source_line(sources: pd.DataFrame, *, synthetic: bool) -> str:
    """Producers and millésimes of every loaded source (``essmap.store.sources``).

    Files that kept no row (all quarantined) are left out. A source whose files carry no
    millésime says so rather than inventing one.
    """
    parts: list[str] = []
    kept = sources[pd.to_numeric(sources["rows_kept"], errors="coerce").fillna(0) > 0]
    for source, files in kept.groupby("source", sort=True):
        label = SOURCE_LABELS.get(str(source), str(source))
        generations = sorted({str(g).strip() for g in files["generation"] if pd.notna(g) and str(g).strip()})
        text = f"{label} : {', '.join(generations)}" if generations else f"{label} : millésime non renseigné"
        if files["is_synthetic"].fillna(False).astype(bool).any():
            text += f" ({SYNTHETIC_NOTICE})"
        parts.append(text)
    line = "Sources : " + " ; ".join(parts) + "." if parts else "Sources : aucune source chargée."
    if synthetic:
        line += f" Cette carte inclut des {SYNTHETIC_NOTICE} (démonstration) : elles ne décrivent pas la réalité."
    return line


def export_date_line(day: date | None = None) -> str:
    return f"Export essmap du {format_date(day or date.today())}"


def wrap(text: str, width: int, *, hyphens: bool = False) -> str:
    """Wrap on spaces (and after hyphens with ``hyphens``, for long compound place names), never
    inside a number: "10 000" written with a plain space is kept whole (a no-break space), as French
    numbers with their narrow no-break spaces are."""
    text = re.sub(r"(?<=\d) (?=\d{3}(?!\d))", "\u00a0", text)
    lines = textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=hyphens)
    return "\n".join(lines) or text


# --- Map drawing -------------------------------------------------------------------------------


def metric_epsg(frame: gpd.GeoDataFrame) -> int:
    """EPSG of the metric CRS of the territory holding most of ``frame`` (WGS84 rows)."""
    frame = frame[~(frame.geometry.is_empty | frame.geometry.isna())]
    if frame.empty:
        return TERRITORIES["metropole"].epsg
    codes = pd.Series(territory_codes(frame.to_crs(4326)))
    codes = codes[codes != ""]
    return TERRITORIES[codes.mode().iloc[0]].epsg if len(codes) else TERRITORIES["metropole"].epsg


def draw_map(ax: Axes, data: ViewData, *, epsg: int | None = None,
             focus: gpd.GeoDataFrame | None = None, focus_margin_m: float = 0.0,
             tiles: Mapping[str, str] | None = None) -> int:
    """Draw the view (choropleth, QPV, points, scale bar, north arrow) in its metric CRS.

    Returns the EPSG code used. ``ax`` should already have its final position: the extent is
    widened to the shape of the axes so the map fills it at one scale. The extent is that of
    the units, or of ``focus`` widened by ``focus_margin_m`` metres (a QPV and its radius).
    ``tiles`` (``{"tiles": url template, "attr": attribution}``) defaults to the view's tile
    layer (:data:`essmap.present.basemaps.TILES`); none draws on a plain background.
    """
    epsg = epsg or metric_epsg(data.areas)
    areas = data.areas.to_crs(epsg)
    ax.set_axis_off()
    qpv = data.qpv.to_crs(epsg) if not data.qpv.empty else data.qpv
    bounds: np.ndarray | None
    if focus is not None and not focus.empty:
        x0, y0, x1, y1 = focus.to_crs(epsg).total_bounds
        bounds = np.array([x0 - focus_margin_m, y0 - focus_margin_m, x1 + focus_margin_m, y1 + focus_margin_m])
    else:
        bounds = areas.total_bounds if not areas.empty else (qpv.total_bounds if not qpv.empty else None)
    if bounds is not None and not bool(np.all(np.isfinite(bounds))):
        bounds = None
    if tiles is None and data.view.tiles:
        tiles = TILES.get(data.view.tiles)
    with_base_map = False
    if tiles and bounds is not None:
        _set_extent(ax, bounds)
        with_base_map = add_base_map(ax, epsg, tiles)
    if not areas.empty:
        areas.plot(ax=ax, color=areas["classe_couleur"].to_numpy(), edgecolor="white", linewidth=0.35,
                   alpha=0.7 if with_base_map else 1.0)
        no_data = (areas["classe_couleur"] == NO_DATA_COLOUR).to_numpy()
        if no_data.any():  # hatched, as in the legend: told apart from the lightest class in grey print
            areas[no_data].plot(ax=ax, facecolor="none", edgecolor=NO_DATA_HATCH_COLOUR, hatch=NO_DATA_HATCH,
                                linewidth=0)
        areas.boundary.plot(ax=ax, color=BOUNDARY_COLOUR, linewidth=0.25)
    if not qpv.empty:
        covered = _covered(qpv)
        for mask, style in ((covered, QPV_COVERED_STYLE), (~covered, QPV_NOT_COVERED_STYLE)):
            if mask.any():
                qpv[mask].plot(ax=ax, **_qpv_patch_style(style), linewidth=0.8, zorder=4.5)  # over the dots
    _scatter(ax, data.etablissements, epsg, colour=ESTABLISHMENT_COLOUR, size=1.5, alpha=0.7, zorder=4)
    _scatter(ax, data.tiers_lieux, epsg, colour=TIERS_LIEU_COLOUR, size=24, alpha=1.0, zorder=5, marker="D")
    if bounds is None:
        return epsg
    _set_extent(ax, bounds)
    add_scale_bar(ax)
    add_north_arrow(ax, epsg)
    return epsg


def add_base_map(ax: Axes, epsg: int, tiles: Mapping[str, str]) -> bool:
    """Tiles under the map, reprojected to its CRS, with their attribution.

    Returns False, after writing a note on the map, when the tiles cannot be fetched.
    """
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    mercator = Transformer.from_crs(epsg, 3857, always_xy=True).transform_bounds(x0, y0, x1, y1)
    fetched = fetch_tiles(tiles["tiles"], mercator, width_px=1600)
    if fetched is None:
        ax.text(0.99, 0.01, "Fond de carte indisponible (hors ligne) : carte sans fond.", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=6.5, color="#555555", zorder=11)
        return False
    image, extent = fetched
    ax.imshow(warp_to_metric(image, extent, epsg, (x0, x1), (y0, y1)), extent=(x0, x1, y0, y1), origin="upper",
              zorder=0, interpolation="bilinear")
    ax.text(0.99, 0.01, f"Fond de carte : {tiles.get('attr', '')}", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=6.5, color="#333333", zorder=11,
            bbox={"boxstyle": "square,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    return True


def fetch_tiles(url_template: str, bounds_3857: tuple[float, float, float, float], *, width_px: int,
                timeout: float = TILE_TIMEOUT_S) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """A mosaic of XYZ tiles covering ``bounds_3857`` (Web Mercator) and its extent
    (left, right, bottom, top); None when any tile cannot be fetched or read.

    The zoom is the largest that keeps within :data:`MAX_TILES`, stopping once the mosaic is
    ``width_px`` wide.
    """
    x0, y0, x1, y1 = bounds_3857
    span = 2 * _MERCATOR_HALF

    def tile_range(zoom: int) -> tuple[int, int, int, int]:
        n = 2**zoom

        def clamp(v: float) -> int:
            return min(max(int(v), 0), n - 1)

        return (clamp((x0 + _MERCATOR_HALF) / span * n), clamp((x1 + _MERCATOR_HALF) / span * n),
                clamp((_MERCATOR_HALF - y1) / span * n), clamp((_MERCATOR_HALF - y0) / span * n))

    zoom = 0
    for candidate in range(19):
        tx0, tx1, ty0, ty1 = tile_range(candidate)
        if (tx1 - tx0 + 1) * (ty1 - ty0 + 1) > MAX_TILES:
            break
        zoom = candidate
        if (x1 - x0) / span * 2**candidate * 256 >= width_px:
            break
    tx0, tx1, ty0, ty1 = tile_range(zoom)
    mosaic = Image.new("RGB", ((tx1 - tx0 + 1) * 256, (ty1 - ty0 + 1) * 256), "white")
    try:
        for tx in range(tx0, tx1 + 1):
            for ty in range(ty0, ty1 + 1):
                request = urllib.request.Request(url_template.format(z=zoom, x=tx, y=ty),
                                                 headers={"User-Agent": "essmap (carte pour un rapport)"})
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https templates)
                    tile = Image.open(io.BytesIO(response.read())).convert("RGB").resize((256, 256))
                mosaic.paste(tile, ((tx - tx0) * 256, (ty - ty0) * 256))
    except (OSError, ValueError):
        return None
    n = 2**zoom
    extent = (tx0 / n * span - _MERCATOR_HALF, (tx1 + 1) / n * span - _MERCATOR_HALF,
              _MERCATOR_HALF - (ty1 + 1) / n * span, _MERCATOR_HALF - ty0 / n * span)
    return np.asarray(mosaic), extent


def warp_to_metric(image: np.ndarray, extent_3857: tuple[float, float, float, float], epsg: int,
                   xlim: tuple[float, float], ylim: tuple[float, float], width: int = 1400) -> np.ndarray:
    """Resample a Web Mercator image onto a grid of the metric CRS (nearest pixel; white outside)."""
    height = max(int(width * (ylim[1] - ylim[0]) / (xlim[1] - xlim[0])), 1)
    grid_x, grid_y = np.meshgrid(np.linspace(xlim[0], xlim[1], width), np.linspace(ylim[1], ylim[0], height))
    mx, my = Transformer.from_crs(epsg, 3857, always_xy=True).transform(grid_x, grid_y)
    left, right, bottom, top = extent_3857
    col = np.floor((mx - left) / (right - left) * image.shape[1]).astype(np.int64)
    row = np.floor((top - my) / (top - bottom) * image.shape[0]).astype(np.int64)
    inside = (col >= 0) & (col < image.shape[1]) & (row >= 0) & (row < image.shape[0])
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    out[inside] = image[row[inside], col[inside]]
    return out


def _covered(qpv: gpd.GeoDataFrame) -> np.ndarray:
    if "covered" not in qpv.columns:
        return np.zeros(len(qpv), dtype=bool)
    return qpv["covered"].fillna(False).to_numpy(dtype=bool)


def _qpv_patch_style(style: Mapping[str, Any]) -> dict[str, Any]:
    """Matplotlib face, edge and line style of a QPV style of the interactive map: the fill at its
    opacity, the outline opaque, dashed when the map dashes it."""
    return {"facecolor": mpl.colors.to_rgba(style["fill"], style["fill_opacity"]), "edgecolor": style["color"],
            "linestyle": "--" if style["dash"] else "-"}


def _scatter(ax: Axes, points: pd.DataFrame, epsg: int, *, colour: str, size: float, alpha: float,
             zorder: int, marker: str = "o") -> None:
    """Points with ``longitude``/``latitude`` (WGS84), drawn in the map's metric CRS ``epsg``."""
    if points is None or points.empty:
        return
    geoms = gpd.GeoSeries.from_xy(points["longitude"], points["latitude"], crs=4326).to_crs(epsg)
    geoms = geoms[~(geoms.is_empty | geoms.isna())]
    ax.scatter(geoms.x.to_numpy(), geoms.y.to_numpy(), s=size, c=colour, alpha=alpha, marker=marker,
               linewidths=0 if marker == "o" else 0.5, edgecolors="white" if marker == "o" else TIERS_LIEU_OUTLINE,
               zorder=zorder, rasterized=len(geoms) > RASTERISE_ABOVE)


def _set_extent(ax: Axes, bounds: np.ndarray, margin: float = 0.04) -> None:
    """Fit ``bounds`` (metres) in the axes box at one scale, with a margin."""
    x0, y0, x1, y1 = (float(b) for b in bounds)
    width, height = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    box = ax.get_position(original=True)
    fig_w, fig_h = cast(Figure, ax.figure).get_size_inches()
    box_ratio = (box.width * fig_w) / (box.height * fig_h)
    width, height = width * (1 + 2 * margin), height * (1 + 2 * margin)
    if width / height < box_ratio:
        width = height * box_ratio
    else:
        height = width / box_ratio
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax.set_xlim(cx - width / 2, cx + width / 2)
    ax.set_ylim(cy - height / 2, cy + height / 2)
    ax.set_aspect("equal", adjustable="box")


def nice_length(max_length_m: float) -> float:
    """Largest 1, 2 or 5 x 10^n metres not above ``max_length_m``."""
    if max_length_m <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(max_length_m))
    for step in (5, 2, 1):
        if step * power <= max_length_m:
            return float(step * power)
    return float(power)


def distance_label(metres: float) -> str:
    """``500`` -> ``500 m``; ``20000`` -> ``20 km``; ``2500`` -> ``2,5 km``."""
    if metres < 1000:
        return format_number(metres, unit="m")
    km = metres / 1000
    return format_number(km, 0 if km == int(km) else 1, unit="km")


def add_scale_bar(ax: Axes) -> float:
    """A two-segment scale bar at the bottom left; returns its length in metres."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    length = nice_length((x1 - x0) * 0.22)
    left, bottom = x0 + (x1 - x0) * 0.03, y0 + (y1 - y0) * 0.04
    height = (y1 - y0) * 0.008
    ax.add_patch(Rectangle((left - (x1 - x0) * 0.01, bottom - height * 2.2), length + (x1 - x0) * 0.02,
                           height * 6.5, facecolor="white", edgecolor="none", alpha=0.8, zorder=9))
    for i, colour in enumerate(("black", "white")):
        ax.add_patch(Rectangle((left + i * length / 2, bottom), length / 2, height, facecolor=colour,
                               edgecolor="black", linewidth=0.6, zorder=10))
    half = format_number(length / 2000, 1 if length % 2000 else 0) if length >= 1000 else format_number(length / 2)
    for position, text in ((0, "0"), (length / 2, half), (length, distance_label(length))):
        ax.text(left + position, bottom + height * 1.6, text, ha="center", va="bottom", fontsize=7, zorder=10)
    return length


def true_north_angle(epsg: int, x: float, y: float) -> float:
    """Angle (degrees, clockwise from the grid's up) of true north at (x, y) in ``epsg``."""
    to_wgs = Transformer.from_crs(epsg, 4326, always_xy=True)
    to_metric = Transformer.from_crs(4326, epsg, always_xy=True)
    lon, lat = to_wgs.transform(x, y)
    nx, ny = to_metric.transform(lon, lat + 0.01)
    return math.degrees(math.atan2(nx - x, ny - y))


def add_north_arrow(ax: Axes, epsg: int) -> None:
    """A north arrow at the top right, turned to true north at the centre of the map."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    angle = math.radians(true_north_angle(epsg, (x0 + x1) / 2, (y0 + y1) / 2))
    length = (y1 - y0) * 0.07
    base_x, base_y = x1 - (x1 - x0) * 0.05, y1 - (y1 - y0) * 0.16
    dx, dy = length * math.sin(angle), length * math.cos(angle)
    ax.add_patch(FancyArrow(base_x, base_y, dx, dy, width=length * 0.12, head_width=length * 0.38,
                            head_length=length * 0.4, length_includes_head=True, color="black", zorder=10))
    ax.text(base_x + dx * 1.12, base_y + dy * 1.12, "N", ha="center", va="bottom", fontsize=11,
            fontweight="bold", zorder=10)


# --- Legend ------------------------------------------------------------------------------------


def legend_handles(data: ViewData) -> list[Patch | Line2D]:
    """Classes, "Pas de données", then the QPV and point layers present in the view."""
    classes = data.classification
    handles: list[Patch | Line2D] = [
        Patch(facecolor=colour, edgecolor=BOUNDARY_COLOUR, linewidth=0.4, label=label)
        for colour, label in zip(classes.colours, classes.labels, strict=True)
    ]
    handles.append(Patch(facecolor=NO_DATA_COLOUR, edgecolor=NO_DATA_HATCH_COLOUR, hatch=NO_DATA_HATCH, linewidth=0.4,
                         label=NO_DATA_LABEL))
    if not data.qpv.empty:
        for style, name in zip((QPV_COVERED_STYLE, QPV_NOT_COVERED_STYLE), qpv_radius_layer_names(data.view.radius_m),
                               strict=True):
            handles.append(Patch(**_qpv_patch_style(style), linewidth=0.8, label=name))
    if not data.tiers_lieux.empty:
        handles.append(Line2D([], [], marker="D", linestyle="none", color=TIERS_LIEU_COLOUR,
                              markeredgecolor=TIERS_LIEU_OUTLINE, markersize=6,
                              label=_with_synthetic("Tiers-lieux", data.tiers_lieux)))
    if not data.etablissements.empty:
        handles.append(Line2D([], [], marker="o", linestyle="none", color=ESTABLISHMENT_COLOUR, markersize=4,
                              label=_with_synthetic("Établissements de l'ESS", data.etablissements)))
    return handles


def _with_synthetic(label: str, frame: pd.DataFrame) -> str:
    if "is_synthetic" in frame.columns and frame["is_synthetic"].fillna(False).astype(bool).any():
        return f"{label} ({SYNTHETIC_NOTICE})"
    return label


# --- The page ----------------------------------------------------------------------------------


def snapshot_figure(data: ViewData, *, sources: pd.DataFrame, title: str | None = None,
                    orientation: Orientation = "paysage", day: date | None = None,
                    tiles: Mapping[str, str] | None = None) -> Figure:
    """The A4 page: title, subtitle, map, legend, source line, export date.

    Call inside :func:`text_style` (as :func:`render_snapshot` does).
    """
    if orientation not in A4_PIXELS:
        raise ValueError(f"orientation « {orientation} » inconnue ; possibles : {', '.join(A4_PIXELS)}")
    width_px, height_px = A4_PIXELS[orientation]
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")
    landscape = orientation == "paysage"
    chars = 95 if landscape else 68
    fig_height = height_px / DPI
    title = (title or "").strip() or default_title(data)
    top = text_block(fig, 0.975, wrap(title, chars - 25), fig_height, fontsize=17, fontweight="bold")
    subtitle = " · ".join((
        data.territory_label,
        f"niveau : {_level_label(data.view.level)}",
        f"rayon QPV – tiers-lieux : {distance_label(data.view.radius_m)}",
    ))
    top = text_block(fig, top - 0.008, wrap(subtitle, int(chars * 1.25)), fig_height, fontsize=9.5, color="#333333")
    top = text_block(fig, top, wrap(f"Filtres : {data.filters_label}", int(chars * 1.25)), fig_height,
                     fontsize=8.5, color="#555555")
    map_top = top - 0.015
    if landscape:
        map_ax = fig.add_axes((0.03, 0.11, 0.66, map_top - 0.11))
        legend_ax = fig.add_axes((0.71, 0.11, 0.27, map_top - 0.11))
    else:
        map_ax = fig.add_axes((0.04, 0.25, 0.92, map_top - 0.25))
        legend_ax = fig.add_axes((0.04, 0.085, 0.92, 0.15))
    draw_map(map_ax, data, tiles=tiles)
    map_ax.add_patch(Rectangle((0, 0), 1, 1, transform=map_ax.transAxes, fill=False, edgecolor="#999999",
                               linewidth=0.6, clip_on=False))
    if data.synthetic:
        map_ax.text(0.01, 0.99, f"Établissements ESS : {SYNTHETIC_NOTICE}", transform=map_ax.transAxes,
                    ha="left", va="top", fontsize=8, zorder=11,
                    bbox={"boxstyle": "square,pad=0.4", "facecolor": "#fff3cd", "edgecolor": "#b58900"})
    legend_ax.set_axis_off()
    legend_ax.legend(
        handles=legend_handles(data), loc="upper left", frameon=False, fontsize=8,
        title=wrap(data.legend_title, 40 if landscape else 90), title_fontsize=9, alignment="left",
        ncols=1 if landscape else 2, handlelength=2.2, handleheight=1.2,
    )
    legend_ax.text(0, 0, wrap(f"Source de l'indicateur : {data.indicator.source_fr}", 48 if landscape else 110),
                   transform=legend_ax.transAxes, ha="left", va="bottom", fontsize=7, color="#333333")
    fig.text(0.03, 0.045, wrap(source_line(sources, synthetic=data.synthetic), int(chars * 1.9)),
             ha="left", va="top", fontsize=6.5, color="#333333")
    fig.text(0.97, 0.075, export_date_line(day), ha="right", va="bottom", fontsize=7, color="#333333")
    return fig


def text_block(fig: Figure, top: float, text: str, fig_height_in: float, *, fontsize: float, x: float = 0.03,
               **style: Any) -> float:
    """Write ``text`` from ``top`` down (figure fraction); returns the fraction below it."""
    fig.text(x, top, text, ha="left", va="top", fontsize=fontsize, **style)
    lines = text.count("\n") + 1
    return top - lines * fontsize * 1.3 / 72 / fig_height_in


def _level_label(level: str) -> str:
    return LEVEL_LABELS.get(level, level).lower() if level != "epci" else "EPCI"


def render_snapshot(data: ViewData, *, sources: pd.DataFrame, fmt: SnapshotFormat = "png",
                    title: str | None = None, orientation: Orientation = "paysage",
                    day: date | None = None, tiles: Mapping[str, str] | None = None) -> bytes:
    """The snapshot as file content: PNG 300 dpi (exactly A4 in pixels), PDF or SVG (vector).

    ``tiles`` overrides the view's base map (see :func:`draw_map`)."""
    if fmt not in SNAPSHOT_FORMATS:
        raise ValueError(f"format « {fmt} » inconnu ; formats possibles : {', '.join(SNAPSHOT_FORMATS)}")
    with text_style():
        fig = snapshot_figure(data, sources=sources, title=title, orientation=orientation, day=day, tiles=tiles)
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_metadata(fmt, title or default_title(data)))
    return buffer.getvalue()


def _metadata(fmt: str, title: str) -> dict[str, str]:
    if fmt == "png":
        return {"Title": title, "Software": "essmap"}
    if fmt == "pdf":
        return {"Title": title, "Creator": "essmap"}
    return {"Title": title}
