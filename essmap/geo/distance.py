"""Pairs within a radius and nearest features, in geodesic metres on the WGS84 ellipsoid.

How a distance is measured, for each territory apart (features of different territories are
never paired):

1. Candidates, with an STRtree in the territory's metric CRS: the pairs whose bounding boxes
   come within the radius times the projection's largest scale factor over the territory (a
   geodesic distance d is at most d x that factor in the plane, see :func:`scale_range`); for
   the nearest feature, every target within the planar nearest distance times the ratio of the
   largest to the smallest factor.
2. A pair that intersects in WGS84 (inside or on the boundary) is at distance 0.
3. Otherwise the nearest points of the two outlines (a polygon's boundary, other geometries
   themselves) are found in the metric CRS (``shapely.shortest_line``), taken back to lon/lat,
   and measured with ``pyproj.Geod.inv``. A conformal projection keeps the nearest points where
   they are to well under a metre, and the distance varies only to second order around them:
   the result is within millimetres of the exact geodesic distance to the polygon.

Polygon edges are the straight lines between their lon/lat vertices, as for the topology; they
are densified every :data:`DENSIFY_DEGREES` before reprojection so that their metric copies
follow those lines (in Lambert-93 around Lille, a 1 km diagonal edge would otherwise bow by
2 cm, a 10 km one by 2.4 m).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Geod, Proj

from essmap.domain.territories import TERRITORIES, Territory
from essmap.geo.base import (
    WGS84_EPSG,
    geometries,
    key_rank,
    positions_by_territory,
    require_column,
    require_wgs84,
    take_or_na,
    territory_codes,
    to_metric,
    transformer,
)
from essmap.geo.contains import first_by_key, pairs_intersect

#: The WGS84 ellipsoid, for geodesic distances (pure computation: shared by every thread).
GEOD = Geod(ellps="WGS84")
#: Longest edge (degrees, ~100 m) kept before reprojection: see the module docstring.
DENSIFY_DEGREES = 0.001
#: Added to every metric search distance (metres): covers the densified edges' bowing and rounding.
SLACK_M = 1.0

_POLYGONAL = (3, 6)  # shapely type ids of Polygon and MultiPolygon


@functools.cache
def scale_range(territory: Territory) -> tuple[float, float]:
    """(smallest, largest) scale factor of the territory's metric CRS over its bounding box, with
    a 0.1 % margin: a geodesic distance d is between d x smallest and d x largest in the plane."""
    lon0, lat0, lon1, lat1 = territory.bbox
    lon, lat = np.meshgrid(np.linspace(lon0, lon1, 41), np.linspace(lat0, lat1, 41))
    factors = Proj(territory.epsg).get_factors(lon.ravel(), lat.ravel())
    scales = np.concatenate([factors.meridional_scale, factors.parallel_scale])
    return float(scales.min()) * 0.999, float(scales.max()) * 1.001


@dataclass(frozen=True)
class _Part:
    """The features of one input in one territory: their rows in the input, WGS84 geometries,
    metric geometries, the bounds of both, and the mean number of vertices."""

    rows: np.ndarray
    wgs84: np.ndarray
    metric: np.ndarray
    bounds: np.ndarray
    metric_bounds: np.ndarray
    vertices: float

    def take(self, positions: np.ndarray) -> _Part:
        return _Part(self.rows[positions], self.wgs84[positions], self.metric[positions], self.bounds[positions],
                     self.metric_bounds[positions], self.vertices)


def _part(geoms: np.ndarray, rows: np.ndarray, territory: Territory) -> _Part:
    """The part of ``geoms`` at ``rows`` in the territory's metric CRS. The caller's geometries
    are read as few times as possible: taken from a large frame, they lie all over the memory."""
    wgs84 = geoms[rows]
    bounds = shapely.bounds(wgs84)
    points = (bounds[:, 0] == bounds[:, 2]) & (bounds[:, 1] == bounds[:, 3])  # NaN (no geometry) is not
    others = np.flatnonzero(~points & ~np.isnan(bounds[:, 0]))
    metric = np.full(len(wgs84), None, dtype=object)
    forward = transformer(WGS84_EPSG, territory.epsg)
    metric[points] = shapely.points(*forward.transform(bounds[points, 0], bounds[points, 1]))
    metric[others] = to_metric(shapely.segmentize(wgs84[others], DENSIFY_DEGREES), territory)
    return _Part(rows, wgs84, metric, bounds, shapely.bounds(metric),
                 float(shapely.get_num_coordinates(metric).mean()))


def _territory_parts(sources: gpd.GeoDataFrame, targets: gpd.GeoDataFrame) -> list[tuple[Territory, _Part, _Part]]:
    """Each territory that both inputs have, with both parts in its metric CRS."""
    require_wgs84(sources, "sources")
    require_wgs84(targets, "targets")
    a, b = geometries(sources), geometries(targets)
    b_rows = positions_by_territory(territory_codes(targets))
    return [
        (TERRITORIES[code], _part(a, rows, TERRITORIES[code]), _part(b, b_rows[code], TERRITORIES[code]))
        for code, rows in positions_by_territory(territory_codes(sources)).items()
        if code in b_rows
    ]


def _geodesic(a: _Part, b: _Part, ia: np.ndarray, ib: np.ndarray, territory: Territory) -> np.ndarray:
    """Geodesic distance in metres of each pair (``a`` row ``ia``, ``b`` row ``ib``), 0 where the
    two intersect in WGS84 (see the module docstring)."""
    if a.vertices > b.vertices:
        return _geodesic(b, a, ib, ia, territory)  # the side with more vertices is prepared: ``b``
    distance = np.zeros(len(ia))
    box_a, box_b = a.bounds[ia], b.bounds[ib]
    meet = np.flatnonzero((box_a[:, 0] <= box_b[:, 2]) & (box_b[:, 0] <= box_a[:, 2])
                          & (box_a[:, 1] <= box_b[:, 3]) & (box_b[:, 1] <= box_a[:, 3]))
    inside = np.zeros(len(ia), dtype=bool)  # only geometries whose boxes meet can intersect
    inside[meet] = pairs_intersect(a.wgs84, a.bounds, b.wgs84, ia[meet], ib[meet])
    apart = np.flatnonzero(~inside)
    if len(apart) == 0:
        return distance
    ia, ib = ia[apart], ib[apart]
    line = shapely.shortest_line(_outlines(b.metric, ib, prepare=True)[ib], _outlines(a.metric, ia)[ia])
    ends = shapely.get_coordinates(line)  # two points per line: on b, then on a
    lon, lat = transformer(territory.epsg, WGS84_EPSG).transform(ends[:, 0], ends[:, 1])
    _, _, distance[apart] = GEOD.inv(lon[0::2], lat[0::2], lon[1::2], lat[1::2])
    return distance


def _outlines(metric: np.ndarray, rows: np.ndarray, prepare: bool = False) -> np.ndarray:
    """The outline of ``metric``'s geometries at ``rows`` (None elsewhere): a polygon's boundary
    (the nearest point of a polygon to anything outside it is on its boundary), other geometries
    themselves; prepared if asked (an index of the edges, for the nearest points)."""
    rows = np.unique(rows)
    outlines = np.full(len(metric), None, dtype=object)
    outlines[rows] = metric[rows]
    polygonal = rows[np.isin(shapely.get_type_id(metric[rows]), _POLYGONAL)]
    outlines[polygonal] = shapely.boundary(metric[polygonal])
    if prepare:
        shapely.prepare(outlines[rows])  # geometries of this call only: reprojected or new boundaries
    return outlines


def _within(a: _Part, b: _Part, reach_m: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (in ``a``, in ``b``) of every pair whose metric bounding boxes are at most ``reach_m``
    apart (one value, or one per row of ``a``): a superset of the pairs at most that far apart.
    An STRtree of the larger side (of ``b`` for one reach per row) is queried with the widened
    boxes of the other."""
    if np.ndim(reach_m) == 0 and len(a.metric) > len(b.metric):
        ib, ia = _within(b, a, reach_m)
        return ia, ib
    bounds_a, bounds_b = a.metric_bounds, b.metric_bounds
    reach = np.broadcast_to(reach_m, len(a.metric))
    present = np.flatnonzero(~np.isnan(bounds_a[:, 0]) & ~np.isnan(reach))  # a geometry, a reach
    widened = bounds_a[present] + np.outer(reach[present], [-1.0, -1.0, 1.0, 1.0])
    ia, ib = shapely.STRtree(b.metric).query(shapely.box(*widened.T))
    ia = present[ia]
    # boxes that meet only by their widened corners are farther apart than the reach
    box_a, box_b = bounds_a[ia], bounds_b[ib]
    gap_x = np.maximum(np.maximum(box_a[:, 0] - box_b[:, 2], box_b[:, 0] - box_a[:, 2]), 0.0)
    gap_y = np.maximum(np.maximum(box_a[:, 1] - box_b[:, 3], box_b[:, 1] - box_a[:, 3]), 0.0)
    near = np.hypot(gap_x, gap_y) <= reach[ia]
    return ia[near], ib[near]


def _check_radius(radius_m: float) -> float:
    value = float(radius_m)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"rayon invalide : {radius_m!r} ; attendu un nombre de mètres >= 0.")
    return value


def _pairs_within(territory: Territory, a: _Part, b: _Part, radius_m: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (in ``a``, in ``b``) and geodesic distance of every pair at most ``radius_m`` apart."""
    ia, ib = _within(a, b, radius_m * scale_range(territory)[1] + SLACK_M)
    distance = _geodesic(a, b, ia, ib, territory)
    keep = distance <= radius_m
    return ia[keep], ib[keep], distance[keep]


def _nearest_candidates(territory: Territory, a: _Part, b: _Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows and geodesic distance of the pairs that may be nearest: for each feature of ``a``,
    every feature of ``b`` at most d x largest / smallest scale factor from it in the plane, d
    being the planar nearest distance. The geodesically nearest is among them: it is at most as
    far as the planar nearest, which is at most d / smallest away."""
    (ia, _), planar = shapely.STRtree(b.metric).query_nearest(a.metric, return_distance=True, all_matches=False)
    smallest, largest = scale_range(territory)
    reach = np.full(len(a.metric), np.nan)
    reach[ia] = planar * largest / smallest + SLACK_M
    ia, ib = _within(a, b, reach)
    return ia, ib, _geodesic(a, b, ia, ib, territory)


def _all_pairs_within(sources: gpd.GeoDataFrame, targets: gpd.GeoDataFrame, radius_m: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (in ``sources``, in ``targets``) and distance of every pair of the same territory
    at most ``radius_m`` metres apart."""
    found = []
    for territory, a, b in _territory_parts(sources, targets):
        ia, ib, distance = _pairs_within(territory, a, b, radius_m)
        found.append((a.rows[ia], b.rows[ib], distance))
    return _joined(found)


def _joined(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not found:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0)
    ia, ib, distance = (np.concatenate(arrays) for arrays in zip(*found, strict=True))
    return ia.astype(np.int64), ib.astype(np.int64), distance


def _nearest_of(n: int, ia: np.ndarray, ib: np.ndarray, distance: np.ndarray, keys: pd.Series
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``n`` sources' nearest target among the pairs (-1 when none), ties to the first
    key, and its distance (NaN when none)."""
    nearest_distance = np.full(n, np.inf)
    np.minimum.at(nearest_distance, ia, distance)
    at_minimum = distance == nearest_distance[ia]
    position = first_by_key(n, ia[at_minimum], ib[at_minimum], keys)
    return position, np.where(position >= 0, nearest_distance, np.nan)


# --- Public queries --------------------------------------------------------------------------------


def within_distance(sources: gpd.GeoDataFrame, targets: gpd.GeoDataFrame, radius_m: float) -> pd.DataFrame:
    """Every (source, target) pair of the same territory at most ``radius_m`` metres apart.

    Any geometry types (e.g. ESS suppliers around a site: points to a point). Geodesic
    distances on the WGS84 ellipsoid, 0 when the features intersect in WGS84.

    Returns
    -------
    pandas.DataFrame
        Columns ``source_index``, ``target_index`` (labels) and ``distance_m``, sorted by
        source position, then distance, then target position.
    """
    radius_m = _check_radius(radius_m)
    i_s, i_t, distance = _all_pairs_within(sources, targets, radius_m)
    order = np.lexsort((i_t, distance, i_s))
    return pd.DataFrame({"source_index": sources.index[i_s[order]], "target_index": targets.index[i_t[order]],
                         "distance_m": distance[order]})


def distances_to_polygons(
    points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, radius_m: float, key: str
) -> pd.DataFrame:
    """Every (point, polygon) pair at most ``radius_m`` metres apart, with the distance.

    Geodesic distance from the point to the nearest point of the polygon, 0 inside or on the
    boundary; points and polygons of different territories are never paired. ``radius_m = 0``
    therefore returns exactly the pairs where the point is in the polygon.

    Returns
    -------
    pandas.DataFrame
        Columns ``point_index`` (label in ``points.index``), ``polygon_index`` (label in
        ``polygons.index``), ``key`` and ``distance_m``; sorted by point, then distance, then
        key. Empty (same columns) when no pair qualifies.
    """
    require_wgs84(points, "points")
    require_wgs84(polygons, "polygons")
    require_column(polygons, key, "polygons")
    radius_m = _check_radius(radius_m)
    ip, ig, distance = _all_pairs_within(points, polygons, radius_m)
    order = np.lexsort((key_rank(polygons[key])[ig], distance, ip))
    ip, ig, distance = ip[order], ig[order], distance[order]
    return pd.DataFrame({"point_index": points.index[ip], "polygon_index": polygons.index[ig],
                         key: take_or_na(polygons[key], ig), "distance_m": distance})


def nearest(
    sources: gpd.GeoDataFrame, targets: gpd.GeoDataFrame, key: str, *, max_distance_m: float | None = None
) -> pd.DataFrame:
    """For each source feature, the nearest target feature of its territory and the distance.

    Any geometry types, both ways: "for each QPV, the nearest tiers-lieu" as well as "for each
    establishment, the nearest QPV". Geodesic distances, 0 when the features intersect in
    WGS84; equal distances (e.g. a point inside two overlapping polygons) go to the first
    target in ascending ``key`` order.

    Parameters
    ----------
    sources, targets : GeoDataFrame
        EPSG:4326.
    key : str
        Column of ``targets`` identifying the nearest feature.
    max_distance_m : float, optional
        Ignore targets farther than this (then only the pairs within it are measured).

    Returns
    -------
    pandas.DataFrame
        Aligned on ``sources.index``: ``key`` (nullable), ``nearest_index`` (label in
        ``targets.index``) and ``distance_m`` (Float64); <NA> when the territory has no target
        (within ``max_distance_m``).
    """
    require_column(targets, key, "targets")
    if max_distance_m is not None:
        pairs = _all_pairs_within(sources, targets, _check_radius(max_distance_m))
    else:
        found = []
        for territory, a, b in _territory_parts(sources, targets):
            ia, ib, distance = _nearest_candidates(territory, a, b)
            found.append((a.rows[ia], b.rows[ib], distance))
        pairs = _joined(found)
    position, distance = _nearest_of(len(sources), *pairs, targets[key])
    return pd.DataFrame({key: take_or_na(targets[key], position), "nearest_index": take_or_na(targets.index, position),
                         "distance_m": pd.array(distance, dtype="Float64")}, index=sources.index)


@dataclass(frozen=True)
class RadiusAndNearest:
    """Result of :func:`within_and_nearest`, by row *position* in the inputs.

    ``source``, ``target``, ``distance_m``: every pair within the radius, sorted by source, then
    distance, then target (as :func:`within_distance`). ``nearest`` (-1 when none) and
    ``nearest_distance_m`` (NaN when none): each source's nearest target (as :func:`nearest`).
    """

    source: np.ndarray
    target: np.ndarray
    distance_m: np.ndarray
    nearest: np.ndarray
    nearest_distance_m: np.ndarray


def within_and_nearest(
    sources: gpd.GeoDataFrame, targets: gpd.GeoDataFrame, radius_m: float, key: str
) -> RadiusAndNearest:
    """:func:`within_distance` and :func:`nearest` (ties by ``key``) in one call, by position:
    "for each QPV, the tiers-lieux within 1 km and the nearest one". A source with a target
    within the radius has its nearest among those; only the others search further."""
    require_column(targets, key, "targets")
    radius_m = _check_radius(radius_m)
    within, near = [], []
    for territory, a, b in _territory_parts(sources, targets):
        ia, ib, distance = _pairs_within(territory, a, b, radius_m)
        within.append((a.rows[ia], b.rows[ib], distance))
        rest = np.setdiff1d(np.arange(len(a.rows)), ia)
        if len(rest):
            ja, jb, distance = _nearest_candidates(territory, a.take(rest), b)
            near.append((a.rows[rest[ja]], b.rows[jb], distance))
    i_s, i_t, distance = _joined(within)
    order = np.lexsort((i_t, distance, i_s))
    i_s, i_t, distance = i_s[order], i_t[order], distance[order]
    j_s, j_t, j_distance = _joined(near)
    position, nearest_distance = _nearest_of(len(sources), np.concatenate([i_s, j_s]), np.concatenate([i_t, j_t]),
                                             np.concatenate([distance, j_distance]), targets[key])
    return RadiusAndNearest(i_s, i_t, distance, position, nearest_distance)
