"""Pairs within a radius and nearest features, measured in metres in the metric CRS of each
territory.

:func:`within_and_nearest`, the dashboard's query, keeps each input's reprojection, boxes and
STRtrees in a small cache (the dashboard asks the same QPVs and tiers-lieux again and again) and
measures long lists of pairs on two threads (Shapely and pyproj release the GIL)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap.domain.territories import TERRITORIES, Territory
from essmap.geo.base import (
    _CORES,
    _POINT_TYPE_ID,
    _TERRITORY_CODES,
    LayerCache,
    _first_per_group,
    _geoms,
    _key_rank,
    _part,
    _require_column,
    _shared_territories,
    _side_by_side,
    _territory_labels,
    _usable,
    require_wgs84,
    take_or_na,
    to_metric,
)
from essmap.geo.contains import _intersecting_pairs, _pair_intersects

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
    candidate pairs; equal distances go to the first target by ``keys``."""
    order = np.lexsort((itgt, distance, isrc))
    return _nearest_of_sorted(n_sources, keys, isrc[order], itgt[order], distance[order])


def _nearest_of_sorted(
    n_sources: int, keys: pd.Series, isrc: np.ndarray, itgt: np.ndarray, distance: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_nearest_positions` of pairs grouped by source and sorted by distance within
    each group; the keys are ranked only for the sources with equal distances (ranking every
    key is the slow part on small queries)."""
    position = np.full(n_sources, -1, dtype=np.int64)
    best = np.full(n_sources, np.nan)
    if len(isrc) == 0:
        return position, best
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
        rank[candidates] = _key_rank(keys.array.take(candidates))
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


# --- Radius query and nearest feature in one pass (cached metric layers) -------------------------


@dataclass(frozen=True)
class _MetricLayer:
    """A layer as :func:`within_and_nearest` needs it, built once per set of geometries and
    territories and then reused (the dashboard asks the same QPVs and tiers-lieux again and
    again): what the query would otherwise rebuild on every call."""

    #: The input geometries, held so that their ``id`` (the cache key) cannot be reused.
    wgs84: np.ndarray
    #: Index in :data:`~essmap.domain.territories.TERRITORIES` of each row, -1 without a geometry.
    territory: np.ndarray
    #: Each geometry in its territory's metric CRS (None without a geometry).
    metric: np.ndarray
    #: ``shapely.bounds`` of ``metric`` and of ``wgs84`` (NaN without a geometry).
    metric_bounds: np.ndarray
    wgs84_bounds: np.ndarray
    #: The centre of each metric box, as a point (None without a geometry).
    centres: np.ndarray
    #: Per territory: the row positions and an STRtree of their metric geometries.
    trees: dict[int, tuple[np.ndarray, shapely.STRtree]]
    #: Every geometry is a point (then ``wgs84_bounds`` holds the coordinates).
    points: bool


#: Metric layers kept for reuse (at most 16 x 100,000 geometries), keyed by the identity of the
#: WGS84 geometries and the territory of each.
_METRIC_CACHE: LayerCache[_MetricLayer] = LayerCache(size=16, max_geometries=100_000)

#: Arrays from this length on are processed on two threads (:func:`_in_two_halves`); one worker
#: thread serves every caller.
_PARALLEL_MIN_ITEMS = 512


def _metric_layer(frame: gpd.GeoDataFrame) -> _MetricLayer:
    """The frame's :class:`_MetricLayer`, from the cache when the same geometries (by identity)
    in the same territories were seen recently."""
    territory = _territory_labels(frame)
    return _METRIC_CACHE.get(_geoms(frame), partial(_build_metric_layer, territory=territory),
                             extra=territory.tobytes())


def _build_metric_layer(geoms: np.ndarray, territory: np.ndarray) -> _MetricLayer:
    """The :class:`_MetricLayer` of ``geoms`` (each in territory ``territory``, -1 for none)."""
    territory = np.where(_usable(geoms), territory, -1)
    metric = np.full(len(geoms), None, dtype=object)
    trees: dict[int, tuple[np.ndarray, shapely.STRtree]] = {}
    for k in np.unique(territory[territory >= 0]).tolist():
        positions = np.flatnonzero(territory == k)
        reproject = partial(to_metric, territory=TERRITORIES[_TERRITORY_CODES[k]])
        metric[positions] = _in_two_halves(reproject, geoms[positions])
        trees[k] = (positions, shapely.STRtree(metric[positions]))
    points = bool((shapely.get_type_id(geoms[territory >= 0]) == _POINT_TYPE_ID).all())
    metric_bounds = shapely.bounds(metric)
    if points:
        centres = metric
    else:
        centres = np.full(len(geoms), None, dtype=object)
        usable = territory >= 0
        b = metric_bounds[usable]
        centres[usable] = shapely.points((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
    return _MetricLayer(geoms, territory, metric, metric_bounds, shapely.bounds(geoms), centres, trees, points)


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

    Candidates come from the metric bounding boxes: first the targets within the radius of each
    source's box; then, for the sources left without any, the targets within U of their box,
    where U is the distance to the target t0 nearest to the box's centre (U bounds the nearest
    distance). Each distance is measured once, in the territory's metric CRS, for all
    territories at once; reprojections and indexes are reused across calls on the same
    geometries.
    """
    require_wgs84(sources, "sources")
    require_wgs84(targets, "targets")
    _require_column(targets, key, "targets")
    radius_m = _check_radius(radius_m)
    src, tgt = _metric_layer(sources), _metric_layer(targets)
    which = np.flatnonzero(src.territory >= 0)
    cs, ct = _box_candidates(src, tgt, which, np.full(len(which), radius_m))
    distance = _measured(src, tgt, cs, ct)
    keep = distance <= radius_m
    i_s, i_t, d_within = cs[keep], ct[keep], distance[keep]
    # sources with a target within the radius have their nearest among those; the others
    # search again within their bound U
    covered = np.zeros(len(sources), dtype=bool)
    covered[i_s] = True
    order = np.lexsort((i_t, d_within, i_s))
    i_s, i_t, d_within = i_s[order], i_t[order], d_within[order]
    # the sources without a target within the radius come after those with one, sorted alike
    rest_s, rest_t, rest_d = _nearest_candidates(src, tgt, which[~covered[which]])
    order = np.lexsort((rest_t, rest_d, rest_s))
    nearest_position, nearest_distance = _nearest_of_sorted(
        len(sources), targets[key], np.concatenate([i_s, rest_s[order]]),
        np.concatenate([i_t, rest_t[order]]), np.concatenate([d_within, rest_d[order]]),
    )
    return RadiusAndNearest(i_s, i_t, d_within, nearest_position, nearest_distance)


def _nearest_candidates(
    src: _MetricLayer, tgt: _MetricLayer, which: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, distance) of every target that may be nearest to the sources ``which``:
    those within U = d(source, t0) of the source's box, t0 being the target nearest to the
    box's centre (sources of a territory without targets get none)."""
    centres = src.centres[which]
    territory = src.territory[which]
    first = np.full(len(which), -1, dtype=np.int64)
    for k, (positions, tree) in tgt.trees.items():
        mine = np.flatnonzero(territory == k)
        if len(mine):
            first[mine] = positions[tree.nearest(centres[mine])]
    which, first = which[first >= 0], first[first >= 0]
    bound = _measured(src, tgt, which, first)
    cs, ct = _box_candidates(src, tgt, which, bound)
    cs_again = np.searchsorted(which, cs)  # ``which`` is sorted
    others = ct != first[cs_again]
    cs, ct = cs[others], ct[others]
    return (
        np.concatenate([which, cs]),
        np.concatenate([first, ct]),
        np.concatenate([bound, _measured(src, tgt, cs, ct)]),
    )


def _box_candidates(
    src: _MetricLayer, tgt: _MetricLayer, which: np.ndarray, reach: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) positions of the same territory whose metric boxes are at most
    ``reach`` metres apart (one value per source ``which``, plus a metre of slack): a superset
    of the pairs at most that far apart, since two geometries are never nearer than their boxes."""
    widen = reach + _RADIUS_SLACK_M
    b = src.metric_bounds[which]
    boxes = shapely.box(b[:, 0] - widen, b[:, 1] - widen, b[:, 2] + widen, b[:, 3] + widen)
    territory = src.territory[which]
    found_w: list[np.ndarray] = []
    found_t: list[np.ndarray] = []
    for k, (positions, tree) in tgt.trees.items():
        mine = np.flatnonzero(territory == k)
        if len(mine):
            i, j = tree.query(boxes[mine])
            found_w.append(mine[i])
            found_t.append(positions[j])
    if not found_w:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    iw, ct = np.concatenate(found_w), np.concatenate(found_t)
    # the boxes met only by their widened corners are farther apart than ``reach``
    bs, bt = b[iw], tgt.metric_bounds[ct]
    gap_x = np.maximum(np.maximum(bs[:, 0] - bt[:, 2], bt[:, 0] - bs[:, 2]), 0.0)
    gap_y = np.maximum(np.maximum(bs[:, 1] - bt[:, 3], bt[:, 1] - bs[:, 3]), 0.0)
    near = np.hypot(gap_x, gap_y) <= widen[iw]
    return which[iw[near]], ct[near]


def _measured(src: _MetricLayer, tgt: _MetricLayer, cs: np.ndarray, ct: np.ndarray) -> np.ndarray:
    """Metric distance of each (source, target) pair, 0 where they intersect in WGS84 (those
    are not measured)."""
    distance = np.zeros(len(cs))
    apart = np.ones(len(cs), dtype=bool)
    # only pairs whose WGS84 boxes meet can intersect in WGS84
    bs, bt = src.wgs84_bounds[cs], tgt.wgs84_bounds[ct]
    meet = np.flatnonzero(
        (bs[:, 0] <= bt[:, 2]) & (bt[:, 0] <= bs[:, 2]) & (bs[:, 1] <= bt[:, 3]) & (bt[:, 1] <= bs[:, 3])
    )
    if len(meet) and tgt.points:  # e.g. tiers-lieux around QPVs: a point in polygon test, nothing to build
        apart[meet] = ~shapely.intersects_xy(src.wgs84[cs[meet]], bt[meet, 0], bt[meet, 1])
    elif len(meet):
        apart[meet] = ~_pair_intersects(src.wgs84, tgt.wgs84, cs[meet], ct[meet])
    distance[apart] = _distances(src.metric[cs[apart]], tgt.metric[ct[apart]])
    return distance


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``shapely.distance(a, b)``, on two threads for long lists (see :func:`_in_two_halves`)."""
    return _in_two_halves(shapely.distance, a, b)


def _in_two_halves(function: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """``function(*arrays)`` for an elementwise ``function`` that releases the GIL (Shapely,
    pyproj), the second half of long arrays on the worker thread (:func:`_side_by_side`)."""
    if len(arrays[0]) < _PARALLEL_MIN_ITEMS or _CORES < 2:
        return function(*arrays)
    half = len(arrays[0]) // 2
    first, rest = _side_by_side(lambda: function(*(a[:half] for a in arrays)),
                                lambda: function(*(a[half:] for a in arrays)))
    return np.concatenate([first, rest])


def _concatenated(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (i, j, distance) parts of each territory joined, empty typed arrays when none."""
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=float)
    i, j, d = (np.concatenate(x) for x in zip(*parts))
    return i, j, d
