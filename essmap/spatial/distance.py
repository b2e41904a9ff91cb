"""Pairs within a radius and nearest features, measured in metres in the metric CRS of each
territory; reprojections of repeated inputs are cached (the dashboard asks the same QPVs and
tiers-lieux again and again)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap.spatial.base import (
    _first_per_group,
    _geoms,
    _key_rank,
    _part,
    _require_column,
    _shared_territories,
    _usable,
    require_wgs84,
    take_or_na,
    to_metric,
)
from essmap.spatial.contains import _intersecting_pairs, _pair_intersects
from essmap.territories import Territory

# Conservative conversion of a metric radius into degrees (see _degree_margins): a degree of
# latitude is at least 110,574 m (at the equator), a degree of longitude at least
# 111,319 m x cos(latitude); the factor covers the scale error of the metric projections
# (well under 1 % over each territory) with a wide margin.
_M_PER_DEG_LAT_MIN = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_319.0
_RADIUS_SAFETY = 1.05
_RADIUS_SLACK_M = 1.0


# --- Pairs within a radius (metric CRS per territory) --------------------------------------------


def _degree_margins(territory: Territory, radius_m: float) -> tuple[float, float]:
    """(longitude, latitude) widening, in degrees, that surely covers ``radius_m`` metres anywhere
    in the territory: used only to find candidate pairs, never as a distance."""
    reach = radius_m * _RADIUS_SAFETY + _RADIUS_SLACK_M
    d_lat = reach / _M_PER_DEG_LAT_MIN
    lat_extreme = max(abs(territory.bbox[1]), abs(territory.bbox[3])) + d_lat
    d_lon = reach / (_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(min(lat_extreme, 89.0))))
    return d_lon, d_lat


def _candidate_pairs(
    a: np.ndarray, b: np.ndarray, territory: Territory, radius_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) whose WGS84 bounding boxes come within ``radius_m`` metres (a superset of the pairs
    within ``radius_m`` in the territory's metric CRS). The STRtree holds the widened boxes of
    the smaller side and is queried with the larger side."""
    empty = np.empty(0, dtype=np.int64)
    swap = len(a) > len(b)
    small, large = (b, a) if swap else (a, b)
    kept = np.flatnonzero(_usable(small))  # boxes of missing geometries would be NaN
    if len(kept) == 0 or len(large) == 0:
        return empty, empty
    d_lon, d_lat = _degree_margins(territory, radius_m)
    bounds = shapely.bounds(small[kept])
    boxes = shapely.box(
        bounds[:, 0] - d_lon, bounds[:, 1] - d_lat, bounds[:, 2] + d_lon, bounds[:, 3] + d_lat
    )
    i_large, i_small = shapely.STRtree(boxes).query(large)
    i_small = kept[i_small]
    return (i_large, i_small) if swap else (i_small, i_large)


def _metric_distances(
    a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, territory: Territory
) -> np.ndarray:
    """Distance in metres of each pair, in the territory's metric CRS; only the geometries
    involved are reprojected."""
    ua, inv_a = _distinct(ia)
    ub, inv_b = _distinct(ib)
    ma = to_metric(a[ua], territory)
    mb = to_metric(b[ub], territory)
    return shapely.distance(ma[inv_a], mb[inv_b])


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` by sorting (numpy's hash-based unique is
    several times slower on millions of integers)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    first = np.ones(len(values), dtype=bool)
    first[1:] = sorted_values[1:] != sorted_values[:-1]
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return sorted_values[first], inverse


def _pairs_within(
    a: gpd.GeoDataFrame, b: gpd.GeoDataFrame, radius_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (i in ``a``, j in ``b``) and distance in metres of every pair of the same
    territory at most ``radius_m`` apart, distance 0 when they intersect in WGS84."""
    radius_m = _check_radius(radius_m)
    ga, gb = _geoms(a), _geoms(b)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for territory, pa, pb in _shared_territories(a, b):
        ca, cb = _candidate_pairs(_part(ga, pa), _part(gb, pb), territory, radius_m)
        if len(ca) == 0:
            continue
        ca, cb = pa[ca], pb[cb]
        distance = _metric_distances(ga, gb, ca, cb, territory)
        inside = _pair_intersects(ga, gb, ca, cb)
        distance = np.where(inside, 0.0, distance)
        keep = distance <= radius_m
        parts.append((ca[keep], cb[keep], distance[keep]))
    return _concatenated(parts)


def _check_radius(radius_m: float) -> float:
    value = float(radius_m)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"rayon invalide : {radius_m!r} ; attendu un nombre de mètres >= 0.")
    return value


def within_distance(
    sources: gpd.GeoDataFrame, targets: gpd.GeoDataFrame, radius_m: float
) -> pd.DataFrame:
    """Every (source, target) pair of the same territory at most ``radius_m`` metres apart.

    The general form of :func:`distances_to_polygons`, for any geometry types (e.g. ESS
    suppliers around a site: points to a point). Distances are measured in the territory's
    metric CRS (EPSG:2154 in metropolitan France, UTM-based overseas), 0 when the features
    intersect in WGS84.

    Returns
    -------
    pandas.DataFrame
        Columns ``source_index``, ``target_index`` (labels) and ``distance_m``, sorted by
        source position then distance then target position.
    """
    require_wgs84(sources, "sources")
    require_wgs84(targets, "targets")
    i_s, i_t, distance = _pairs_within(sources, targets, radius_m)
    order = np.lexsort((i_t, distance, i_s))
    return pd.DataFrame(
        {
            "source_index": sources.index[i_s[order]],
            "target_index": targets.index[i_t[order]],
            "distance_m": distance[order],
        }
    )


def distances_to_polygons(
    points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, radius_m: float, key: str
) -> pd.DataFrame:
    """Every (point, polygon) pair at most ``radius_m`` metres apart, with the distance.

    Distances are measured in the metric CRS of the territory (EPSG:2154 in metropolitan
    France, UTM-based CRSs overseas; points and polygons of different territories are never
    paired), from the point to the nearest point of the polygon, 0 inside or on the boundary.
    ``radius_m = 0`` therefore returns exactly the pairs where the point is in the polygon.

    Returns
    -------
    pandas.DataFrame
        Columns ``point_index`` (label in ``points.index``), ``polygon_index`` (label in
        ``polygons.index``), ``key`` and ``distance_m``; sorted by point, then distance, then
        key. Empty (same columns) when no pair qualifies.
    """
    require_wgs84(points, "points")
    require_wgs84(polygons, "polygons")
    _require_column(polygons, key, "polygons")
    ip, ig, distance = _pairs_within(points, polygons, radius_m)
    rank = _key_rank(polygons[key])
    order = np.lexsort((rank[ig], distance, ip))
    ip, ig, distance = ip[order], ig[order], distance[order]
    return pd.DataFrame(
        {
            "point_index": points.index[ip],
            "polygon_index": polygons.index[ig],
            key: take_or_na(polygons[key], ig),
            "distance_m": distance,
        }
    )


# --- Nearest feature ---------------------------------------------------------------------------


def nearest(
    sources: gpd.GeoDataFrame,
    targets: gpd.GeoDataFrame,
    key: str,
    *,
    max_distance_m: float | None = None,
) -> pd.DataFrame:
    """For each source feature, the nearest target feature of its territory and the distance.

    Works in both directions and for any geometry types: "for each QPV, the nearest
    tiers-lieu" (polygons to points) as well as "for each establishment, the nearest QPV"
    (points to polygons). Distances are in metres in the territory's metric CRS (EPSG:2154 in
    metropolitan France, UTM-based overseas), 0 when the features intersect in WGS84. Ties
    (equal distances, e.g. a point inside two overlapping polygons) go to the first target in
    ascending ``key`` order.

    Parameters
    ----------
    sources, targets : GeoDataFrame
        EPSG:4326.
    key : str
        Column of ``targets`` identifying the nearest feature.
    max_distance_m : float, optional
        Ignore targets farther than this. Much faster on large inputs: only candidate pairs
        are reprojected, whereas the unbounded search reprojects every feature of each
        territory (count about 1 µs per point created, i.e. seconds for millions of points).

    Returns
    -------
    pandas.DataFrame
        Aligned on ``sources.index``: ``key`` (nullable), ``nearest_index`` (label in
        ``targets.index``) and ``distance_m`` (Float64); <NA> when the territory has no target
        (within ``max_distance_m``).
    """
    require_wgs84(sources, "sources")
    require_wgs84(targets, "targets")
    _require_column(targets, key, "targets")
    if max_distance_m is not None:
        isrc, itgt, distance = _pairs_within(sources, targets, max_distance_m)
    else:
        isrc, itgt, distance = _nearest_pairs(sources, targets)
    return _nearest_frame(sources, targets, key, isrc, itgt, distance)


def _nearest_frame(
    sources: gpd.GeoDataFrame,
    targets: gpd.GeoDataFrame,
    key: str,
    isrc: np.ndarray,
    itgt: np.ndarray,
    distance: np.ndarray,
) -> pd.DataFrame:
    """:func:`nearest`'s frame from candidate pairs: the first per source by (distance, key)."""
    position, best = _nearest_positions(len(sources), targets[key], isrc, itgt, distance)
    return pd.DataFrame(
        {
            key: take_or_na(targets[key], position),
            "nearest_index": take_or_na(targets.index, position),
            "distance_m": pd.array(best, dtype="Float64"),
        },
        index=sources.index,
    )


def _nearest_positions(
    n_sources: int, keys: pd.Series, isrc: np.ndarray, itgt: np.ndarray, distance: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Position of each source's nearest target (-1 when none) and its distance (NaN), from
    candidate pairs; equal distances go to the first target by ``keys`` (ranked only for the
    sources that have such ties: ranking every key is the slow part on small queries)."""
    position = np.full(n_sources, -1, dtype=np.int64)
    best = np.full(n_sources, np.nan)
    if len(isrc) == 0:
        return position, best
    order = np.lexsort((itgt, distance, isrc))
    isrc, itgt, distance = isrc[order], itgt[order], distance[order]
    head = np.ones(len(isrc), dtype=bool)
    head[1:] = isrc[1:] != isrc[:-1]
    group_start = np.flatnonzero(head)
    tied = distance == distance[group_start][np.cumsum(head) - 1]
    position[isrc[head]] = itgt[head]
    best[isrc[head]] = distance[head]
    several = np.bincount(isrc[tied], minlength=n_sources) > 1
    if several.any():
        pick = np.flatnonzero(tied & several[isrc])
        candidates = np.unique(itgt[pick])
        rank = np.empty(len(keys), dtype=np.int64)
        rank[candidates] = _key_rank(keys.iloc[candidates])
        first = _first_per_group(isrc[pick], rank[itgt[pick]])
        position[isrc[pick][first]] = itgt[pick][first]
    return position, best


def _nearest_pairs(
    sources: gpd.GeoDataFrame, targets: gpd.GeoDataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest candidates per source (all ties), per territory in its metric CRS, plus every
    WGS84-intersecting pair at distance 0."""
    gs, gt = _geoms(sources), _geoms(targets)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for territory, ps, pt in _shared_territories(sources, targets):
        tree = shapely.STRtree(to_metric(_part(gt, pt), territory))
        (i_s, i_t), distance = tree.query_nearest(
            to_metric(_part(gs, ps), territory), return_distance=True, all_matches=True
        )
        parts.append((ps[i_s], pt[i_t], distance))
        j_s, j_t = _intersecting_pairs(_part(gs, ps), _part(gt, pt))
        parts.append((ps[j_s], pt[j_t], np.zeros(len(j_s))))
    return _concatenated(parts)


# --- Radius query and nearest feature in one pass (cached metric geometries) --------------------

#: Metric reprojections kept for reuse, keyed by the identity of the WGS84 geometries (shapely
#: geometries are immutable and the cache holds them, so equal identities mean equal shapes).
_METRIC_CACHE_SIZE = 16
_METRIC_CACHE_MAX_GEOMETRIES = 100_000  # bounds the memory: ~16 x 100,000 geometries
_METRIC_CACHE: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
_METRIC_CACHE_LOCK = threading.Lock()


def _metric_with_centres(geoms: np.ndarray, territory: Territory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The geometries in the territory's metric CRS, their centroids and each centroid's distance
    to its geometry (0 inside): what a radius or nearest query needs, cached for repeated calls
    on the same geometries (the dashboard asks the same QPVs and tiers-lieux again and again)."""
    ids = np.fromiter(map(id, geoms), dtype=np.int64, count=len(geoms))
    key = (territory.epsg, ids.tobytes())
    with _METRIC_CACHE_LOCK:
        hit = _METRIC_CACHE.get(key)
    if hit is not None:
        return hit[1], hit[2], hit[3]
    metric = to_metric(geoms, territory)
    centres = shapely.centroid(metric)
    offsets = shapely.distance(centres, metric)
    if len(geoms) <= _METRIC_CACHE_MAX_GEOMETRIES:
        with _METRIC_CACHE_LOCK:
            while len(_METRIC_CACHE) >= _METRIC_CACHE_SIZE:
                del _METRIC_CACHE[next(iter(_METRIC_CACHE))]  # oldest first
            _METRIC_CACHE[key] = (geoms.copy(), metric, centres, offsets)
    return metric, centres, offsets


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
    """:func:`within_distance` and :func:`nearest` (ties by ``key``) in one pass, with the same
    pairs, distances and nearest targets, by position: "for each QPV, the tiers-lieux within
    1 km and the nearest one" at dashboard speed.

    One candidate search per territory: targets within the radius of a source's box; then,
    for the sources left without any, targets within U = d(c, t0) + d(c, S) of their box, where
    c is the source's centroid and t0 the target nearest to c (the triangle inequality bounds
    the nearest distance by U). Each distance is measured once, in the territory's metric CRS,
    and the metric reprojections are reused across calls on the same geometries.
    """
    require_wgs84(sources, "sources")
    require_wgs84(targets, "targets")
    _require_column(targets, key, "targets")
    radius_m = _check_radius(radius_m)
    gs, gt = _geoms(sources), _geoms(targets)
    within: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    near: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for territory, ps, pt in _shared_territories(sources, targets):
        ps = ps[_usable(_part(gs, ps))]
        pt = pt[_usable(_part(gt, pt))]
        if len(ps) and len(pt):
            found = _radius_and_nearest_part(gs, gt, ps, pt, territory, radius_m)
            within.append(found[0])
            near.append(found[1])
    i_s, i_t, distance = _concatenated(within)
    order = np.lexsort((i_t, distance, i_s))
    nearest_position, nearest_distance = _nearest_positions(len(sources), targets[key], *_concatenated(near))
    return RadiusAndNearest(i_s[order], i_t[order], distance[order], nearest_position, nearest_distance)


def _radius_and_nearest_part(
    gs: np.ndarray, gt: np.ndarray, ps: np.ndarray, pt: np.ndarray, territory: Territory, radius_m: float
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Within-radius pairs and nearest candidates of one territory (positions ``ps``, ``pt``)."""
    ms, centres, offsets = _metric_with_centres(_part(gs, ps), territory)
    mt = _metric_with_centres(_part(gt, pt), territory)[0]
    tree = shapely.STRtree(mt)
    bounds = shapely.bounds(ms)
    cs, ct, distance = _measured_candidates(gs, gt, ps, pt, ms, mt, tree, bounds, np.arange(len(ps)),
                                            np.full(len(ps), radius_m))
    keep = distance <= radius_m
    within = (ps[cs[keep]], pt[ct[keep]], distance[keep])
    # sources with a target within the radius have their nearest among those; the others
    # search again within their bound U
    covered = np.zeros(len(ps), dtype=bool)
    covered[cs[keep]] = True
    rest = np.flatnonzero(~covered)
    near_s, near_t, near_d = [cs[keep]], [ct[keep]], [distance[keep]]
    if len(rest):
        (i_c, i_t0), d0 = tree.query_nearest(centres[rest], return_distance=True)
        reach = np.zeros(len(rest))
        np.maximum.at(reach, i_c, d0)
        reach = np.maximum(reach + offsets[rest], radius_m)
        rs, rt, rd = _measured_candidates(gs, gt, ps, pt, ms, mt, tree, bounds, rest, reach)
        near_s.append(rs)
        near_t.append(rt)
        near_d.append(rd)
    nearest = (ps[np.concatenate(near_s)], pt[np.concatenate(near_t)], np.concatenate(near_d))
    return within, nearest


def _measured_candidates(
    gs: np.ndarray, gt: np.ndarray, ps: np.ndarray, pt: np.ndarray, ms: np.ndarray, mt: np.ndarray,
    tree: shapely.STRtree, bounds: np.ndarray, which: np.ndarray, reach: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, metric distance) of the targets whose box meets the box of each source
    ``which`` widened by ``reach`` metres (plus a metre of slack); distance 0 where they
    intersect in WGS84."""
    b = bounds[which]
    widen = reach + _RADIUS_SLACK_M
    boxes = shapely.box(b[:, 0] - widen, b[:, 1] - widen, b[:, 2] + widen, b[:, 3] + widen)
    i_box, ct = tree.query(boxes)
    cs = which[i_box]
    distance = shapely.distance(ms[cs], mt[ct])
    # only pairs whose WGS84 boxes meet can intersect in WGS84
    bs, bt = shapely.bounds(gs[ps[cs]]), shapely.bounds(gt[pt[ct]])
    meet = np.flatnonzero(
        (bs[:, 0] <= bt[:, 2]) & (bt[:, 0] <= bs[:, 2]) & (bs[:, 1] <= bt[:, 3]) & (bt[:, 1] <= bs[:, 3])
    )
    if len(meet):
        distance[meet[_pair_intersects(gs, gt, ps[cs[meet]], pt[ct[meet]])]] = 0.0
    return cs, ct, distance


def _concatenated(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (i, j, distance) parts of each territory joined, empty typed arrays when none."""
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=float)
    i, j, d = (np.concatenate(x) for x in zip(*parts))
    return i, j, d
