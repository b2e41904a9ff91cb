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
from shapely.geometry import MultiPolygon, Polygon

from essmap.domain.errors import InputFileError
from essmap.domain.territories import (
    TERRITORIES,
    territory_codes_of_departements,
    territory_of_lonlat,
)
from essmap.io.readers.common import WGS84, check_is_file
from essmap.io.text import printable

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


#: Suffixes of tables without geometry: refused by the GIS readers before GDAL guesses.
TABLE_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xls", ".ods")


def vector_layers(path: Path) -> list[str]:
    """Layer names of a vector file (one for GeoJSON/shapefile, several for a GeoPackage)."""
    check_not_empty(path)
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        return [path.stem]  # one table; GDAL's Parquet driver may be missing
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # GDAL errors, and UnicodeDecodeError for names that are not UTF-8
        raise _unreadable(path, exc) from exc


def require_geographic_file(path: Path, command: str) -> None:
    """Refuse a folder, a missing file or a table without geometry (CSV, spreadsheet) given to
    ``command`` ("qpv", "communes"): when the table's header looks like another source, the
    message names the command that loads it."""
    check_not_empty(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        return
    header = ""
    try:
        with open(path, "rb") as fh:
            header = fh.readline(4096).decode("utf-8", errors="replace")
    except OSError:
        pass
    kind = kind_of_columns(re.split(r"[,;\t|]", header.strip().strip("\ufeff")))
    other = ""
    if kind and kind != command:
        other = f" Il ressemble à {KINDS[kind][0]} : chargez-le avec `{KINDS[kind][1]}`."
    label, expected = KINDS[command]
    raise InputFileError(
        path.name, f"un fichier {path.suffix.lower().lstrip('.').upper()} ne contient pas de contours : "
        f"`{expected}` demande un fichier géographique (GeoJSON, GeoPackage, shapefile ou GeoParquet).{other}",
        hint=f"fournissez {label} tel que publié (GeoJSON, GeoPackage ou shapefile).",
    )


# --- Kinds of files ----------------------------------------------------------------------------

#: What each source's files are called in messages, and the command that loads them.
KINDS: dict[str, tuple[str, str]] = {
    "qpv": ("un fichier de QPV (quartiers prioritaires)", "essmap ingest qpv"),
    "communes": ("un fichier de communes", "essmap ingest communes"),
    "tiers-lieux": ("une liste de tiers-lieux", "essmap ingest tiers-lieux"),
    "sirene": ("un fichier SIRENE de l'INSEE", "essmap ingest sirene"),
}

_QPV_CODE = re.compile(r"Q[NP][0-9A-Z]{6}")


def kind_of_columns(columns: Iterable[object], frame: pd.DataFrame | None = None) -> str | None:
    """Which source a table looks like from its column names (and, given ``frame``, its QPV codes).

    Used to say "this looks like a QPV file: use `essmap ingest qpv`" rather than quarantining
    every row of a file given to the wrong command.
    """
    names = {str(c).strip().strip('"').lower(): c for c in columns}
    for candidate in ("code_qp", "code_quartier", "q"):
        if candidate not in names:
            continue
        if frame is None:
            if candidate != "q":
                return "qpv"
            continue
        codes = as_text(frame[names[candidate]]).dropna().str.strip().str.upper()
        if len(codes) and codes.str.fullmatch(_QPV_CODE).mean() >= 0.5:
            return "qpv"
    if {"siret", "siren"} & names.keys():
        return "sirene"
    if {"insee_com", "code_insee", "codgeo", "insee_arm"} & names.keys() and \
            {"population", "pmun", "type_commune", "statut", "insee_dep", "code_departement"} & names.keys():
        return "communes"
    if {"latitude", "lat", "longitude", "lon", "id_unique"} & names.keys():
        return "tiers-lieux"
    return None


def wrong_kind_error(path: Path, kind: str, expected: str, evidence: str) -> InputFileError:
    """A file of another source given to ``expected``'s reader: say which, and the right command."""
    label, command = KINDS[kind]
    return InputFileError(
        path.name, f"ce fichier ressemble à {label} ({evidence}), pas à {KINDS[expected][0]}.",
        hint=f"chargez-le avec `{command} {printable(path.name)}`, ou indiquez {KINDS[expected][0]} à "
        f"`{KINDS[expected][1]}`.",
    )


def columns_evidence(columns: Sequence[object], limit: int = 8) -> str:
    """"colonnes q, n, d, com" for a message (escaped, shortened)."""
    shown = [printable(c, limit=40) for c in list(columns)[:limit]]
    return "colonnes " + ", ".join(shown) + ("…" if len(columns) > limit else "")


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


def read_vector(path: Path, *, layer: str | None = None, where: str | None = None,
                keep_fids: bool = False) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read one layer of a GeoJSON/GeoPackage/shapefile and reproject it to WGS84 (lon, lat).

    The file's own CRS is trusted. A file without CRS whose coordinates look like degrees is
    read as WGS84 with a warning; one whose coordinates look projected is refused (the user must
    say which projection). Raises :class:`InputFileError` for empty or unreadable files.

    ``where`` is an attribute filter applied by GDAL while reading (see :func:`where_in`): only
    the matching features are decoded, and a filter that matches nothing gives an empty frame
    rather than an error. ``keep_fids``: the frame's index holds the features' ids (GDAL FIDs).
    """
    name = path.name
    check_not_empty(path)
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            frame = gpd.read_parquet(path)
        else:
            frame = gpd.read_file(path, layer=layer, engine="pyogrio", where=where, fid_as_index=keep_fids)
    except Exception as exc:  # GDAL, pyarrow (damaged Parquet) and UnicodeDecodeError raise many types
        raise _unreadable(path, exc) from exc
    if len(frame) == 0 and where is not None and isinstance(frame, gpd.GeoDataFrame):
        return (frame if keep_fids else frame.reset_index(drop=True)), []
    if len(frame) == 0:
        raise InputFileError(
            name, "le fichier ne contient aucune entité (collection vide).",
            hint="vérifiez l'export ou le filtre qui a produit ce fichier.",
        )
    if not isinstance(frame, gpd.GeoDataFrame):
        raise InputFileError(
            name, "le fichier n'a pas de colonne de géométrie (ni contour, ni point) : c'est une table, pas une "
            "couche géographique.",
            hint="fournissez le fichier géographique tel que publié (GeoJSON, GeoPackage, shapefile).",
        )
    frame, warnings = ensure_wgs84(frame, name)
    return (frame if keep_fids else frame.reset_index(drop=True)), warnings


def layer_fields(path: Path, layer: str | None = None) -> list[str]:
    """Attribute columns of one layer, without reading its features."""
    check_not_empty(path)
    try:
        return [str(f) for f in pyogrio.read_info(path, layer=layer)["fields"]]
    except Exception as exc:  # GDAL errors, as in vector_layers
        raise _unreadable(path, exc) from exc


def where_in(column: str, values: Iterable[str], *, or_null: bool = True) -> str:
    """An OGR attribute filter ``"column" IN ('a', 'b')`` (``OR "column" IS NULL`` by default, so
    that rows whose value is missing still reach the reader's own checks)."""
    quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
    name = '"' + column.replace('"', '""') + '"'
    return f"({name} IN ({quoted})" + (f" OR {name} IS NULL)" if or_null else ")")


def read_vector_where(path: Path, layer: str | None, where: str
                      ) -> tuple[gpd.GeoDataFrame, list[str], np.ndarray, int]:
    """:func:`read_vector` of the features ``where`` keeps, with the row number (1-based position
    in the whole layer, as a whole read numbers them) of each, and the layer's feature count.

    Readers number rows by position in the layer (quarantine row numbers): the positions come from
    the feature ids, read alone (no attribute, no geometry: a fraction of a whole read).
    """
    frame, warnings = read_vector(path, layer=layer, where=where, keep_fids=True)
    try:
        ids = pyogrio.read_dataframe(path, layer=layer, columns=[], read_geometry=False, fid_as_index=True).index
    except Exception as exc:  # GDAL errors, as in vector_layers
        raise _unreadable(path, exc) from exc
    positions = np.flatnonzero(np.isin(ids.to_numpy(), frame.index.to_numpy()))
    if len(positions) != len(frame) or len(np.unique(ids.to_numpy())) != len(ids):
        # ids that do not identify features (a driver without stable FIDs): read the whole layer
        frame, warnings = read_vector(path, layer=layer)
        return frame, warnings, np.arange(1, len(frame) + 1, dtype="int64"), len(frame)
    in_file_order = pd.Index(ids.to_numpy()[positions])
    if not frame.index.equals(in_file_order):
        frame = frame.loc[in_file_order]
    return frame.reset_index(drop=True), warnings, positions.astype("int64") + 1, len(ids)


def ensure_wgs84(frame: gpd.GeoDataFrame, name: str) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Reproject to WGS84 using the file's CRS; a CRS-less file in degrees is taken as WGS84.

    A file read as geographic (no CRS, or a GeoJSON without ``crs`` member, which GDAL reads as
    WGS84) whose coordinates are not degrees is refused, saying which projection they look like
    (:func:`guess_projections`): every feature would otherwise land outside France and be
    quarantined.
    """
    warnings: list[str] = []
    xmin, ymin, xmax, ymax = _finite_bounds(frame.geometry)
    in_degrees = -180 <= xmin <= xmax <= 180 and -90 <= ymin <= ymax <= 90
    if frame.crs is None or (frame.crs.is_geographic and not in_degrees):
        if in_degrees:
            warnings.append(
                f"Fichier « {name} » : aucun système de coordonnées déclaré ; les coordonnées "
                "ressemblent à des degrés et ont été lues comme longitude/latitude WGS84 (EPSG:4326)."
            )
            frame = frame.set_crs(WGS84)
        else:
            guesses = guess_projections(frame.geometry)
            looks = (f" Elles ressemblent à la projection {guesses[0][1]}"
                     + (f" (ou, moins probable : {', '.join(label for _, label in guesses[1:])})"
                        if len(guesses) > 1 else "") + "."
                     if guesses else " Elles ne ressemblent à aucune projection française connue.")
            declared = ("aucun système de coordonnées déclaré" if frame.crs is None else
                        "aucun système de coordonnées projeté déclaré (un GeoJSON sans membre « crs » est lu en "
                        "WGS84, en degrés)")
            source = f"-s_srs EPSG:{guesses[0][0]} " if guesses else ""
            raise InputFileError(
                name, f"{declared}, mais les coordonnées sont en mètres, pas en degrés (étendue {xmin:.0f}, "
                f"{ymin:.0f}, {xmax:.0f}, {ymax:.0f}).{looks}",
                hint=f"reprojetez le fichier en WGS84, par exemple `ogr2ogr {source}-t_srs EPSG:4326 "
                "sortie.geojson entree.geojson`, ou joignez le fichier .prj du shapefile.",
            )
    elif not frame.crs.equals(WGS84):
        try:
            frame = frame.to_crs(WGS84)
        except Exception as exc:  # pyproj raises several types for unusable CRS
            raise InputFileError(
                name, f"reprojection impossible depuis {printable(frame.crs.to_string(), limit=80)} vers WGS84 "
                f"(détail technique : {printable(str(exc).splitlines()[0] if str(exc) else exc, limit=200)}).",
                hint="vérifiez le système de coordonnées déclaré par le fichier (.prj).",
            ) from exc
    return frame, warnings


#: Projections a French file without CRS may be in, most likely first: (EPSG, label).
CANDIDATE_PROJECTIONS: tuple[tuple[int, str], ...] = (
    (2154, "Lambert-93 (EPSG:2154)"),
    (5490, "UTM zone 20 Nord des Antilles (EPSG:5490)"),
    (2972, "UTM zone 22 Nord de Guyane (EPSG:2972)"),
    (2975, "UTM zone 40 Sud de La Réunion (EPSG:2975)"),
    (4471, "UTM zone 38 Sud de Mayotte (EPSG:4471)"),
    (4467, "UTM zone 21 Nord de Saint-Pierre-et-Miquelon (EPSG:4467)"),
    (27572, "Lambert II étendu (EPSG:27572)"),
    (3857, "Web Mercator (EPSG:3857)"),
)


def guess_projections(geoms: gpd.GeoSeries, *, sample: int = 500) -> list[tuple[int, str]]:
    """The candidate projections under which (nearly) every feature falls in a French territory.

    Each feature's bounding-box centre is reprojected from each candidate with pyproj and
    located in the territories' boxes; a candidate fits when 95 % of them land in one.
    """
    from pyproj import Transformer

    bounds = shapely.bounds(np.asarray(geoms.values, dtype=object))
    bounds = bounds[np.isfinite(bounds).all(axis=1)][:sample]
    if len(bounds) == 0:
        return []
    x, y = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2
    fits = []
    for epsg, label in CANDIDATE_PROJECTIONS:
        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y, errcheck=False)
        located = territory_of_lonlat(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)) != ""
        if located.mean() >= 0.95:
            fits.append((epsg, label))
    return fits


def check_not_empty(path: Path) -> None:
    """Raise a clear error for a missing path, a folder or a zero-byte file (GDAL's are obscure)."""
    check_is_file(path)
    if path.stat().st_size == 0:
        raise InputFileError(path.name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")


def _unreadable(path: Path, exc: Exception) -> InputFileError:
    detail = printable(str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__, limit=300)
    return InputFileError(
        path.name, f"fichier géographique illisible : format non reconnu, fichier incomplet ou endommagé "
        f"(détail technique : {detail}).",
        hint="fournissez un GeoJSON, un GeoPackage, un GeoParquet ou un shapefile complet (.shp, .shx, .dbf, .prj).",
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
