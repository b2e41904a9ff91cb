"""Tools shared by the readers of GIS files (QPV, communes, tiers-lieux as GeoJSON).

Opening a vector file with clear French errors, finding columns whatever their case, and
checking polygons and points against the French territories. Row numbers are feature index + 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError
from shapely.geometry import MultiPolygon, Polygon

from essmap.domain.errors import InputFileError
from essmap.domain.territories import (
    TERRITORIES,
    territory_codes_of_departements,
    territory_of_lonlat,
)
from essmap.io.readers.common import WGS84

# --- Columns -----------------------------------------------------------------------------------


def find_column(columns: Iterable[object], candidates: Sequence[str]) -> str | None:
    """The first column whose name matches one of ``candidates`` (case-insensitive), or None.

    Candidates are tried in order, so the caller states which name wins when several exist.
    """
    by_lower: dict[str, str] = {}
    for c in columns:
        by_lower.setdefault(str(c).strip().lower(), str(c))
    for cand in candidates:
        if cand.lower() in by_lower:
            return by_lower[cand.lower()]
    return None


def as_text(values: pd.Series) -> pd.Series:
    """Any column (numbers, strings, None) as ``string`` with <NA> for missing values."""
    obj = values.astype(object)
    missing = obj.isna()
    return obj.where(missing, obj.map(str)).where(~missing, pd.NA).astype("string")


def map_text(values: pd.Series, func) -> pd.Series:
    """Apply ``func`` to each present value; missing values and "" results become <NA>.

    Plain Python loop on purpose: ``Series.map`` on all-missing string columns changes dtype.
    """
    out = []
    for v in values.astype(object):
        r = func(v) if isinstance(v, str) else None
        out.append(pd.NA if r is None or r is pd.NA or r == "" else r)
    return pd.Series(out, index=values.index, dtype="string")


# --- Opening files -----------------------------------------------------------------------------


def vector_layers(path: Path) -> list[str]:
    """Layer names of a vector file (one for GeoJSON/shapefile, several for a GeoPackage)."""
    check_not_empty(path)
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise _unreadable(path, exc) from exc


def pick_layer(path: Path, layers: list[str], wanted: Sequence[str], what: str) -> str:
    """The layer to read: the only one, else the first whose name contains one of ``wanted``."""
    if len(layers) == 1:
        return layers[0]
    for w in wanted:
        for layer in layers:
            if layer.lower() == w.lower():
                return layer
    for w in wanted:
        for layer in layers:
            if w.lower() in layer.lower():
                return layer
    raise InputFileError(
        path.name,
        f"le fichier contient plusieurs couches ({', '.join(layers)}) et aucune ne ressemble à {what}.",
        hint="exportez la couche voulue seule (GeoJSON, GeoPackage ou shapefile).",
    )


def read_vector(path: Path, *, layer: str | None = None) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read one layer of a GeoJSON/GeoPackage/shapefile and reproject it to WGS84 (lon, lat).

    The file's own CRS is trusted. A file without CRS whose coordinates look like degrees is
    read as WGS84 with a warning; one whose coordinates look projected is refused (the user must
    say which projection). Raises :class:`InputFileError` for empty or unreadable files.
    """
    name = path.name
    check_not_empty(path)
    try:
        frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    except (DataSourceError, DataLayerError, FieldError, GeometryError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc
    if len(frame) == 0:
        raise InputFileError(
            name, "le fichier ne contient aucune entité (collection vide).",
            hint="vérifiez l'export ou le filtre qui a produit ce fichier.",
        )
    frame, warnings = ensure_wgs84(frame, name)
    return frame.reset_index(drop=True), warnings


def ensure_wgs84(frame: gpd.GeoDataFrame, name: str) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Reproject to WGS84 using the file's CRS; a CRS-less file in degrees is taken as WGS84."""
    warnings: list[str] = []
    if frame.crs is None:
        xmin, ymin, xmax, ymax = _finite_bounds(frame.geometry)
        if -180 <= xmin <= xmax <= 180 and -90 <= ymin <= ymax <= 90:
            warnings.append(
                f"Fichier « {name} » : aucun système de coordonnées déclaré ; les coordonnées "
                "ressemblent à des degrés et ont été lues comme longitude/latitude WGS84 (EPSG:4326)."
            )
            frame = frame.set_crs(WGS84)
        else:
            raise InputFileError(
                name, "aucun système de coordonnées déclaré et les coordonnées ne sont pas des degrés "
                f"(étendue {xmin:.0f}, {ymin:.0f}, {xmax:.0f}, {ymax:.0f}).",
                hint="joignez le fichier .prj du shapefile, ou exportez le fichier en WGS84 (EPSG:4326).",
            )
    elif not frame.crs.equals(WGS84):
        try:
            frame = frame.to_crs(WGS84)
        except Exception as exc:  # pyproj raises several types for unusable CRS
            raise InputFileError(
                name, f"reprojection impossible depuis {frame.crs.to_string()} vers WGS84 ({exc}).",
                hint="vérifiez le système de coordonnées déclaré par le fichier (.prj).",
            ) from exc
    return frame, warnings


def check_not_empty(path: Path) -> None:
    """Raise a clear error for a missing or zero-byte file (GDAL's own message is obscure)."""
    if not path.exists():
        raise InputFileError(path.name, f"fichier introuvable ({path}).", hint="vérifiez le chemin.")
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(path.name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")


def _unreadable(path: Path, exc: Exception) -> InputFileError:
    return InputFileError(
        path.name, f"fichier géographique illisible ({str(exc).splitlines()[0][:300]}).",
        hint="fournissez un GeoJSON, un GeoPackage ou un shapefile complet (.shp, .shx, .dbf, .prj).",
    )


def _finite_bounds(geoms: gpd.GeoSeries) -> tuple[float, float, float, float]:
    bounds = shapely.bounds(geoms.values)
    bounds = bounds[np.isfinite(bounds).all(axis=1)]
    if len(bounds) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(bounds[:, 0].min()), float(bounds[:, 1].min()),
            float(bounds[:, 2].max()), float(bounds[:, 3].max()))


# --- Locating ----------------------------------------------------------------------------------

SWAPPED = "latitude et longitude inversées (ordre lat, lon au lieu de lon, lat)"
OUTSIDE = "coordonnées hors des territoires français"


def locate_lonlat(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Territory code of each point ("" when in none), and whether swapping axes would fix it.

    Uses the generous bounding boxes of :data:`essmap.domain.territories.TERRITORIES`.
    """
    lon = np.asarray(lon, dtype="float64")
    lat = np.asarray(lat, dtype="float64")
    territory = territory_of_lonlat(lon, lat)
    swapped = (territory == "") & (territory_of_lonlat(lat, lon) != "")
    return territory, swapped


def territory_mismatch(departements: pd.Series, found: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Rows whose position lies in another territory than their département's, with reasons.

    Such a row would be measured in the wrong metric CRS, so readers quarantine it.
    """
    expected = territory_codes_of_departements(departements.fillna("").astype(str)).to_numpy()
    found = np.asarray(found, dtype=object)
    mask = (expected != "") & (found != "") & (expected != found)
    reasons = [
        f"position incohérente avec le département {d} : la géométrie est en {TERRITORIES[t].name}"
        for d, t in zip(departements.to_numpy()[mask], found[mask], strict=True)
    ]
    return mask, reasons


# --- Polygons ----------------------------------------------------------------------------------

_GEOS_REASONS_FR = {
    "self-intersection": "auto-intersection",
    "ring self-intersection": "auto-intersection d'un anneau",
    "too few points": "trop peu de points",
    "hole lies outside shell": "trou hors du contour extérieur",
    "nested holes": "trous imbriqués",
    "interior is disconnected": "intérieur découpé en plusieurs morceaux",
    "nested shells": "contours imbriqués",
    "duplicate rings": "anneaux en double",
    "invalid coordinate": "coordonnée invalide",
    "ring is not closed": "anneau non fermé",
}


def validity_reason_fr(geometry) -> str:
    """Why a geometry is invalid, in French, with the location GEOS reports."""
    reason = str(shapely.is_valid_reason(geometry))
    match = re.fullmatch(r"\s*(.*?)\s*\[(.*)\]\s*", reason)
    label, where = (match.group(1), match.group(2)) if match else (reason, "")
    text = _GEOS_REASONS_FR.get(label.lower(), label)
    return f"{text} en ({where})" if where else text


def to_multipolygon(geometry) -> MultiPolygon | None:
    """The polygonal parts of a geometry as one MultiPolygon (None when it has none)."""
    if geometry is None or geometry.is_empty:
        return None
    if isinstance(geometry, MultiPolygon):
        return geometry
    if isinstance(geometry, Polygon):
        return MultiPolygon([geometry])
    polygons: list[Polygon] = []
    stack = [geometry]
    while stack:
        g = stack.pop()
        if isinstance(g, Polygon):
            if not g.is_empty:
                polygons.append(g)
        elif hasattr(g, "geoms"):
            stack.extend(g.geoms)
    return MultiPolygon(polygons) if polygons else None


@dataclass
class PolygonCheck:
    """Outcome of :func:`check_polygons`, aligned with the input.

    ``geometry`` holds the MultiPolygon to keep (repaired if needed) or None; ``problem`` the
    French reason to quarantine the row (<NA> when kept); ``repaired`` the positions repaired,
    with the French reason of the invalidity.
    """

    geometry: np.ndarray
    problem: pd.Series
    territory: np.ndarray
    repaired: list[tuple[int, str]] = field(default_factory=list)


def check_polygons(geoms: gpd.GeoSeries) -> PolygonCheck:
    """Check WGS84 polygons: present, polygonal, in a French territory, valid (else repaired).

    Invalid polygons (self-intersections, mostly from coordinate rounding) are repaired with
    ``shapely.make_valid(method="structure")``, which keeps the area and only polygonal parts:
    rejecting them would lose real features (a third of a real 2015 QPV extract is invalid).
    Only a repair that leaves no polygon sends the row to the quarantine.
    """
    values = np.asarray(geoms.values, dtype=object)
    n = len(values)
    problem = pd.Series(pd.NA, index=range(n), dtype="string")
    out = np.full(n, None, dtype=object)
    territory = np.full(n, "", dtype=object)
    repaired: list[tuple[int, str]] = []

    missing = shapely.is_missing(values) | shapely.is_empty(values)
    problem[missing] = "géométrie absente"
    types = shapely.get_type_id(values)
    polygonal = np.isin(types, (3, 6))  # Polygon, MultiPolygon
    wrong_type = ~missing & ~polygonal
    for i in np.flatnonzero(wrong_type):
        problem[i] = f"géométrie non surfacique ({values[i].geom_type}) : un polygone est attendu"

    candidates = ~missing & polygonal
    bounds = np.full((n, 4), np.nan)
    if candidates.any():
        bounds[candidates] = shapely.bounds(values[candidates])
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    found, swapped = locate_lonlat(cx, cy)
    territory[candidates] = found[candidates]
    problem[candidates & swapped] = SWAPPED
    problem[candidates & ~swapped & (found == "")] = OUTSIDE

    located = candidates & (found != "")
    valid = np.zeros(n, dtype=bool)
    valid[located] = shapely.is_valid(values[located])
    for i in np.flatnonzero(located & valid):
        out[i] = to_multipolygon(values[i])
    for i in np.flatnonzero(located & ~valid):
        reason = validity_reason_fr(values[i])
        fixed = to_multipolygon(shapely.make_valid(values[i], method="structure", keep_collapsed=False))
        if fixed is None or fixed.area == 0 or not fixed.is_valid:
            problem[i] = f"géométrie invalide irréparable : {reason}"
        else:
            out[i] = fixed
            repaired.append((int(i), reason))
    return PolygonCheck(out, problem, territory, repaired)


def repaired_warning(file_name: str, items: list[tuple[int, str, str]], what: str, *, limit: int = 20) -> str:
    """One warning listing repaired features: (row number, identifier, reason)."""
    shown = " ; ".join(f"entité {row} ({ident}) : {reason}" for row, ident, reason in items[:limit])
    more = f" ; et {len(items) - limit} autre(s)" if len(items) > limit else ""
    return (
        f"Fichier « {file_name} » : {len(items)} géométrie(s) invalide(s) réparée(s) et conservée(s) "
        f"({what}, parties surfaciques gardées) — {shown}{more}."
    )
