"""Point in polygon and intersecting pairs, on WGS84 coordinates.

Points against polygons use an adaptive grid (:func:`_points_in_polygon_pairs`): whole cells
inside or outside a polygon are decided by one test at their centre, and only points in cells
that a polygon edge crosses are tested one by one, with prepared polygons, in key order until
the first hit (and not at all in the last candidate of a cell that only shared borders cross).
What the grid needs of a polygon layer (oriented prepared copies, vertices, shared borders) is
built once and cached (:class:`_PolygonLayer`), as a database builds an index. Millions of
points are split in a west and an east half assigned on two threads, and
:func:`points_in_polygon_layers` reads the points once for several layers. Other geometry pairs
use an STRtree for candidate boxes, then a prepared test on the candidate pairs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap.geo.base import (
    _CORES,
    LayerCache,
    _geoms,
    _key_rank,
    _require_column,
    _side_by_side,
    require_wgs84,
    take_or_na,
)

# --- Intersecting pairs (WGS84) ------------------------------------------------------------------


def _intersecting_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with ``a[i]`` intersecting ``b[j]`` on their WGS84 coordinates.

    Points against polygons (the point-in-polygon of millions of establishments) take the
    grid of :func:`_points_in_polygon_pairs` when there are more points than polygon vertices. Otherwise candidates come from an STRtree of
    ``b`` queried with ``a`` (bounding boxes only); the
    predicate then runs on the candidate pairs with the more complex side prepared. Preparing
    works on copies, so the caller's geometries are never mutated (shared frames stay safe to
    use from several threads). Pairs are sorted by that side, so each prepared index stays in
    cache: on 2 million points this is several times faster than ``query(predicate=...)``,
    which prepares each point instead of each polygon.
    """
    empty = np.empty(0, dtype=np.int64)
    if len(a) == 0 or len(b) == 0:
        return empty, empty
    points = _point_coordinates(a) if _grid_pays(len(a), b) else None
    if points is not None:
        positions, x, y = points
        ia, ib = _points_in_polygon_pairs(x, y, _polygon_layer(b))
        return (ia if positions is None else positions[ia]), ib
    ia, ib = shapely.STRtree(b).query(a)
    if len(ia) == 0:
        return empty, empty
    hit = _pair_intersects(a, b, ia, ib)
    return ia[hit], ib[hit]


def _grid_pays(n_points: int, polygons: np.ndarray) -> bool:
    """Whether the grid suits these polygons: it pays for its set-up (every polygon edge) only
    with more points than edges."""
    return n_points > _polygon_vertices(polygons) and _polygonal(polygons)


def _polygon_vertices(geoms: np.ndarray) -> int:
    return int(shapely.get_num_coordinates(geoms).sum())


def _polygonal(geoms: np.ndarray) -> bool:
    """True when every present geometry is a Polygon or MultiPolygon."""
    types = shapely.get_type_id(geoms)
    return bool(np.isin(types[types >= 0], _POLYGONAL_TYPE_IDS).all())


def _pair_intersects(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """WGS84 ``intersects(a[ia], b[ib])`` for each pair, the side with more vertices prepared
    (the polygons of a point-in-polygon query)."""
    if len(ia) == 0:
        return np.zeros(0, dtype=bool)
    step = max(1, len(ia) // 2048)  # a sample is enough to tell polygons from points
    a_vertices = shapely.get_num_coordinates(a[ia[::step]]).mean()
    b_vertices = shapely.get_num_coordinates(b[ib[::step]]).mean()
    if b_vertices >= a_vertices:
        return _prepared_predicate(b, ib, a, ia)
    return _prepared_predicate(a, ia, b, ib)


def _prepared_predicate(
    heavy: np.ndarray, ih: np.ndarray, light: np.ndarray, il: np.ndarray
) -> np.ndarray:
    """``intersects(heavy[ih], light[il])`` elementwise, with prepared copies of ``heavy``
    (when each is tested several times).

    Copies, so the caller's geometries are never mutated: shared frames stay safe to use from
    several threads (GEOS builds prepared indexes lazily). Pairs are processed sorted by the
    prepared geometry, so each prepared index stays in cache.
    """
    order = np.argsort(ih, kind="stable")
    sorted_h = ih[order]
    first = np.ones(len(sorted_h), dtype=bool)
    first[1:] = sorted_h[1:] != sorted_h[:-1]
    distinct = heavy[sorted_h[first]]
    # preparing pays off only when each geometry is tested several times
    prepared = _prepared_copies(distinct) if len(ih) >= 4 * len(distinct) else distinct
    lhs = prepared[np.cumsum(first) - 1]
    rhs = light[il[order]]
    coords, owner = shapely.get_coordinates(rhs, return_index=True)
    if len(owner) == len(rhs) and np.array_equal(owner, np.arange(len(rhs))):
        # one coordinate per geometry: points, tested without building anything
        hit_sorted = shapely.intersects_xy(lhs, coords[:, 0], coords[:, 1])
    else:
        hit_sorted = shapely.intersects(lhs, rhs)
    hit = np.empty(len(order), dtype=bool)
    hit[order] = hit_sorted
    return hit


def points_in_polygons(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, key: str) -> pd.Series:
    """For each point, the ``key`` of the polygon that contains it, <NA> when none.

    The boundary counts as inside (``intersects``/``covers`` semantics): a point exactly on a
    QPV boundary is in that QPV, at distance 0. Where polygons overlap (for example a commune
    and its arrondissements municipaux, or QPVs of two generations), the point gets the first
    polygon in ascending ``key`` order.

    The test runs on the WGS84 coordinates (see the module docstring): official polygons are
    defined by their lon/lat vertices, and a topological predicate needs no metric CRS. For
    several polygon layers and the same points, :func:`points_in_polygon_layers` is faster.

    Parameters
    ----------
    points : GeoDataFrame
        EPSG:4326. Any geometry type works; points take the fast path.
    polygons : GeoDataFrame
        EPSG:4326, with a ``key`` column.
    key : str
        Column of ``polygons`` to return (e.g. ``"code_qp"``, ``"code_insee"``).

    Returns
    -------
    pandas.Series
        Aligned on ``points.index``, named ``key``, with the dtype of ``polygons[key]`` (nullable).
    """
    return points_in_polygon_layers(points, {key: polygons})[key]


def points_in_polygon_layers(
    points: gpd.GeoDataFrame, layers: Mapping[str, gpd.GeoDataFrame], *, threads: int | None = None
) -> pd.DataFrame:
    """For each point, the key of the polygon that contains it in each layer, <NA> when none:
    ``{"code_qp": qpv, "code_insee": communes}`` gives the columns ``code_qp`` and ``code_insee``.

    Each column follows the rules of :func:`points_in_polygons` (boundary inside, first key
    where polygons overlap). One call for all the layers of the same points reads the points'
    coordinates once and uses parallel threads (shapely and numpy release the GIL): a few points
    have their layers assigned side by side; many points are split in two halves per layer, one
    layer after the other. The QPV and the commune of 2 million establishments at once.

    Parameters
    ----------
    points : GeoDataFrame
        EPSG:4326.
    layers : mapping of str to GeoDataFrame
        Key column -> polygons (EPSG:4326) holding that column.
    threads : int, optional
        Threads to use, by default the number of CPUs; 1 runs everything on the calling thread
        (e.g. to profile it).

    Returns
    -------
    pandas.DataFrame
        Aligned on ``points.index``, one column per key, each with the dtype of its layer's
        key column (nullable).
    """
    require_wgs84(points, "points")
    for key, polygons in layers.items():
        require_wgs84(polygons, f"layers['{key}']")
        _require_column(polygons, key, f"layers['{key}']")
    geoms = _geoms(points)
    any_grid = any(_grid_pays(len(geoms), _geoms(polygons)) for polygons in layers.values())
    threads = threads or _CORES
    coords = _point_coordinates(geoms, threads) if any_grid else None

    def assign(key: str) -> pd.api.extensions.ExtensionArray:
        polygons = layers[key]
        return take_or_na(polygons[key], _containing_positions(geoms, polygons, key, coords, threads))

    # many points: each layer already shares its points between two threads, and more threads than
    # cores only make the runs slower and erratic (measured: 0.9-3 s against a steady 1 s)
    if threads > 1 and len(layers) > 1 and len(geoms) < _PARALLEL_MIN_POINTS:
        with ThreadPoolExecutor(min(threads, len(layers))) as pool:
            columns = dict(zip(layers, pool.map(assign, layers)))
    else:
        columns = {key: assign(key) for key in layers}
    return pd.DataFrame(columns, index=points.index)


def _containing_positions(
    points: np.ndarray, polygons: gpd.GeoDataFrame, key: str, coords: _PointCoordinates | None, threads: int
) -> np.ndarray:
    """Position in ``polygons`` of the first (by key) polygon intersecting each point, or -1;
    ``coords`` are the points' :func:`_point_coordinates`, if read."""
    geoms = _geoms(polygons)
    rank = _key_rank(polygons[key])
    position = np.full(len(points), -1, dtype=np.int64)
    if coords is not None and _grid_pays(len(points), geoms):
        positions, x, y = coords
        first = _first_containing(x, y, _polygon_layer(geoms), rank, threads)
        if positions is None:
            return first
        position[positions] = first
        return position
    ip, ig = _intersecting_pairs(points, geoms)
    if len(ip) and np.bincount(ip, minlength=len(points)).max() == 1:
        position[ip] = ig  # no point in two polygons: no ranking needed
    elif len(ip):
        best = np.full(len(points), len(polygons), dtype=np.int64)
        np.minimum.at(best, ip, rank[ig])  # overlaps: the first polygon by key
        hit = best < len(polygons)
        position[hit] = np.argsort(rank)[best[hit]]
    return position


def _first_containing(
    x: np.ndarray, y: np.ndarray, layer: _PolygonLayer, rank: np.ndarray, threads: int
) -> np.ndarray:
    """Position of the first polygon by ``rank`` intersecting each point (x, y), or -1.

    Many points, with ``threads`` > 1, are split at their median longitude into a west and an
    east half assigned on two threads (numpy and shapely release the GIL): a point west of the
    line can only lie in a polygon whose box starts west of it, so each half keeps only those
    polygons (and the east half those whose box ends east of the line)."""
    position = np.full(len(x), -1, dtype=np.int64)
    if len(x) < _PARALLEL_MIN_POINTS or threads < 2:
        ip, ig = _points_in_polygon_pairs(x, y, layer, rank=rank)
        position[ip] = ig
        return position
    split = float(np.median(x[:: max(1, len(x) // 10_000)]))
    west = x < split
    halves = [(np.flatnonzero(west), np.flatnonzero(layer.bounds[:, 0] < split), (-math.inf, split)),
              (np.flatnonzero(~west), np.flatnonzero(layer.bounds[:, 2] >= split), (split, math.inf))]

    def assign(half: tuple[np.ndarray, np.ndarray, tuple[float, float]]) -> None:
        points, kept, x_range = half
        ip, ig = _points_in_polygon_pairs(x[points], y[points], layer, kept, rank, x_range)
        position[points[ip]] = ig

    _side_by_side(lambda: assign(halves[1]), lambda: assign(halves[0]))
    return position


# --- Points in polygons: adaptive grid ---------------------------------------------------------

#: Base cell: the median polygon bounding box side divided by this.
_GRID_CELLS_PER_POLYGON_SIDE = 2.0
#: Cells per tile side at the base resolution; each tile is refined (x2, x4... per side, up to
#: _GRID_MAX_REFINE) until its cells hold about _GRID_POINTS_PER_CELL points on average.
_GRID_TILE_CELLS = 8
_GRID_POINTS_PER_CELL = 16.0
_GRID_MAX_REFINE = 64
_GRID_MAX_TILES = 2_000_000
#: From this many points, the work is shared by two threads: x and y read side by side, the
#: points split in a west and an east half (:func:`_first_containing`).
_PARALLEL_MIN_POINTS = 200_000
#: Margin (degrees, ~0.1 mm) around each cell when finding the cells an edge crosses: far
#: larger than floating-point error, so no crossed cell is ever missed.
_GRID_EPS = 1e-9

_POLYGONAL_TYPE_IDS = (3, 6)  # Polygon, MultiPolygon


# --- Polygon layers, built once --------------------------------------------------------------


@dataclass(frozen=True)
class _PolygonLayer:
    """A polygon layer as the grid needs it, built once per set of geometries and then reused
    (:data:`_POLYGON_CACHE`): what a database builds as its spatial index before the queries.
    Rows that are missing, empty or not polygonal have NaN bounds, no vertices and no prepared
    copy; the grid skips them."""

    #: The input geometries, held so that their ``id`` (the cache key) cannot be reused.
    wgs84: np.ndarray
    #: ``shapely.bounds`` of each row.
    bounds: np.ndarray
    #: Copies with the outer rings counter-clockwise and the holes clockwise (the interior on
    #: the left of every edge), prepared and already queried twice: GEOS builds the index of a
    #: prepared polygon at its second query, which must not happen on two threads at once.
    prepared: np.ndarray
    #: The vertices of every ring of those copies, row after row: row i's are
    #: ``[vertex_start[i], vertex_start[i + 1])``.
    x: np.ndarray
    y: np.ndarray
    vertex_start: np.ndarray
    #: Whether an edge starts at the vertex (the next vertex is in the same ring).
    edge: np.ndarray
    #: Whether that edge is a shared border: exactly one edge of another valid polygon runs it
    #: the other way, and no other edge runs it. Its two sides are then in the layer's union.
    shared: np.ndarray


#: Polygon layers kept for reuse (the 35,000 communes of France: about 200 MB, prepared indexes
#: included).
_POLYGON_CACHE: LayerCache[_PolygonLayer] = LayerCache(size=4, max_geometries=100_000)


def _polygon_layer(polygons: np.ndarray) -> _PolygonLayer:
    """The :class:`_PolygonLayer` of these polygons, from the cache when they were seen recently."""
    return _POLYGON_CACHE.get(polygons, _build_polygon_layer)


def _build_polygon_layer(geoms: np.ndarray) -> _PolygonLayer:
    bounds = shapely.bounds(geoms)
    polygonal = np.isin(shapely.get_type_id(geoms), _POLYGONAL_TYPE_IDS)
    bounds[~polygonal] = np.nan
    usable = np.flatnonzero(np.isfinite(bounds).all(axis=1))
    prepared = np.full(len(geoms), None, dtype=object)
    oriented = shapely.orient_polygons(geoms[usable])  # new geometries: the input is never changed
    prepared[usable] = oriented
    parts, part_row = shapely.get_parts(oriented, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    counts = shapely.get_num_coordinates(rings)
    xy = shapely.get_coordinates(rings)
    x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    vertex_row = np.repeat(usable[part_row[ring_part]], counts)
    vertex_start = np.searchsorted(vertex_row, np.arange(len(geoms) + 1))
    edge = np.ones(len(x), dtype=bool)
    edge[np.cumsum(counts)[counts > 0] - 1] = False  # a ring's last vertex closes it
    # only a valid polygon has its interior on the left of its edges: GEOS checks validity
    # here while numpy matches the edges on the worker thread
    valid, (shared, partner) = _side_by_side(lambda: shapely.is_valid(prepared),
                                             lambda: _shared_edges(x, y, edge, vertex_row))
    shared &= valid[vertex_row] & valid[vertex_row[partner]]
    shapely.prepare(oriented)
    # GEOS (3.14) builds a prepared polygon's index at its second query within its box: both
    # here, before the layer is shared (each polygon on one thread)
    first = vertex_start[usable]
    halves = np.array_split(np.arange(len(usable)), 2)

    def build_indexes(rows: np.ndarray) -> None:
        twice = np.repeat(rows, 2)
        shapely.intersects_xy(oriented[twice], x[first[twice]], y[first[twice]])

    _side_by_side(lambda: build_indexes(halves[1]), lambda: build_indexes(halves[0]))
    return _PolygonLayer(geoms, bounds, prepared, x, y, vertex_start, edge, shared)


def _shared_edges(
    x: np.ndarray, y: np.ndarray, edge: np.ndarray, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each vertex, whether the edge that starts there (where ``edge``) is run the other
    way by exactly one edge of another owner, and by no other edge; and the vertex where that
    edge starts (0 when none). Equal coordinates, matched through a hash of the four of them
    (both lists sorted, so the look-ups run in order), then compared."""
    i = np.flatnonzero(edge)
    shared = np.zeros(len(x), dtype=bool)
    partner_vertex = np.zeros(len(x), dtype=np.int64)
    if len(i) == 0:
        return shared, partner_vertex
    x0, y0, x1, y1 = x[i], y[i], x[i + 1], y[i + 1]
    forward, backward = _edge_hash(x0, y0, x1, y1), _edge_hash(x1, y1, x0, y0)
    f_order, b_order = np.argsort(forward), np.argsort(backward)
    f_sorted, b_sorted = forward[f_order], backward[b_order]
    repeated = np.zeros(len(i) + 1, dtype=bool)
    repeated[1:-1] = f_sorted[1:] == f_sorted[:-1]
    alone = np.empty(len(i), dtype=bool)
    alone[f_order] = ~(repeated[:-1] | repeated[1:])  # no other edge runs it the same way
    at = np.searchsorted(f_sorted, b_sorted)
    found = np.minimum(at, len(i) - 1)
    matched = np.zeros(len(i), dtype=bool)
    partner = np.zeros(len(i), dtype=np.int64)
    matched[b_order] = (f_sorted[found] == b_sorted) & alone[f_order[found]]
    partner[b_order] = f_order[found]
    shared[i] = (alone & matched & (owner[i[partner]] != owner[i])
                 & (x0[partner] == x1) & (y0[partner] == y1) & (x1[partner] == x0) & (y1[partner] == y0))
    partner_vertex[i] = i[partner]
    return shared, partner_vertex


def _edge_hash(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each edge's four coordinates (their bits, mixed)."""
    h = np.zeros(len(x0), dtype=np.uint64)
    for v in (x0, y0, x1, y1):
        h = (h ^ np.ascontiguousarray(v, dtype=np.float64).view(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
    return h


#: (positions, x, y) of the points with coordinates; positions None when that is every row.
_PointCoordinates = tuple[np.ndarray | None, np.ndarray, np.ndarray]


def _point_coordinates(points: np.ndarray, threads: int = 1) -> _PointCoordinates | None:
    """(positions, x, y) of the points with finite coordinates, positions None when that is
    every row; None unless every geometry is a point or missing (a point-only type scan and
    two coordinate reads, x and y on two threads for many points: a quarter of the time of
    ``get_coordinates`` with its index)."""
    if len(points) and shapely.get_type_id(points).max() > 0:  # -1 missing, 0 Point
        return None
    try:
        x, y = _xy(points, threads)  # NaN for missing points
    except shapely.errors.GEOSException:  # an empty point has no x: read as missing
        points = np.where(shapely.is_empty(points), None, points)
        x, y = _xy(points, threads)
    present = np.isfinite(x) & np.isfinite(y)
    if present.all():
        return None, x, y
    positions = np.flatnonzero(present)
    return positions, x[positions], y[positions]


def _xy(points: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of points, on two threads for many points (shapely releases the GIL)."""
    if threads < 2 or len(points) < _PARALLEL_MIN_POINTS:
        return shapely.get_x(points), shapely.get_y(points)
    y, x = _side_by_side(lambda: shapely.get_y(points), lambda: shapely.get_x(points))
    return x, y


def _ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts`` [2, 3]: owners [0, 0, 1, 1, 1] and local positions [0, 1, 0, 1, 2]."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) - starts[owner]


def _argsort_small_ints(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integer keys: numpy sorts 16-bit keys by radix, in
    linear time, so keys below 2**32 take two such passes (low half, then high half); on
    millions of keys this is 2-4 times faster than a comparison sort."""
    bound = int(keys.max()) + 1 if len(keys) else 0
    if bound <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    if bound > 1 << 32:
        return np.argsort(keys, kind="stable")
    low = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = np.argsort((keys[low] >> 16).astype(np.uint16), kind="stable")
    return low[high]


def _cells_of_boxes(
    x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every integer cell (x, y) of the inclusive boxes [x0, x1] x [y0, y1], column by column.

    Returns (box of each cell, x, y, box heights, position of each box's first cell): cell (x, y)
    of box k is at ``start[k] + (x - x0[k]) * height[k] + (y - y0[k])``.
    """
    height = y1 - y0 + 1
    count = (x1 - x0 + 1) * height
    start = np.cumsum(count) - count
    box, local = _ranges(count)
    return box, x0[box] + local // height[box], y0[box] + local % height[box], height, start


def _points_in_polygon_pairs(
    x: np.ndarray, y: np.ndarray, layer: _PolygonLayer, polygons: np.ndarray | None = None,
    rank: np.ndarray | None = None, x_range: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with the point (x[i], y[i]) intersecting ``layer``'s polygon j (WGS84,
    boundary included), the same pairs as the predicate on every candidate, with far fewer
    predicates. ``polygons``: the positions in the layer to consider (default all).

    An adaptive grid over the polygons' bounding boxes: tiles of cells, refined where points
    are dense. For each polygon, the cells its edges pass through (in each column an edge
    spans, the rows its y-range there meets, widened by :data:`_GRID_EPS`) are *boundary*
    cells; any other cell of its box lies wholly inside or wholly outside it, so one test at
    the cell centre decides for every point of the cell. Why this is exact: if a point and its
    cell centre were on different sides, the segment between them would cross an edge inside
    the cell (cell indices are monotonic in each coordinate: points, vertices and boxes go
    through the same formula), and the cell would be a boundary cell. Only occupied cells are
    looked at. A point whose cell one polygon holds whole, and no edge crosses, is answered
    by a lookup (most points against communes, which tile the territory); the others are
    tested one by one against the polygons whose edges cross their cell, grouped by tile so
    that the tile's prepared polygons stay in cache.

    With ``rank`` (of each polygon of the layer), each point gets only its first polygon by
    rank: its cell's candidates are taken in rank order, a candidate holding the cell whole
    needs no test, and a point leaves at its first hit (about 1.8 tests per point instead of
    2.7 on communes). And a point that reaches the last candidate of a *covered* cell needs no
    test either: every edge that meets the cell is a shared border (run the other way by
    exactly one other polygon, :attr:`_PolygonLayer.shared`), and a vertex lies in it. Why
    this is exact: the union of the layer has no boundary in the cell, and the vertex (on a
    polygon's boundary, so in the union) is in the cell, so the whole cell is in the union
    (else the segment from the vertex to a point outside would cross the union's boundary, an
    unshared edge, in the cell); a point there is in some candidate, and if in no other, in
    the last. With ``x_range``, the points lie in it and ``polygons`` are all those whose box
    meets it (a half of :func:`_first_containing`): only cells strictly inside it can be
    covered, the others may meet edges of polygons left out.
    """
    empty = np.empty(0, dtype=np.int64)
    bounds = layer.bounds if polygons is None else layer.bounds[polygons]
    usable = np.isfinite(bounds).all(axis=1)
    poly_ids = np.flatnonzero(usable) if polygons is None else polygons[usable]
    if len(poly_ids) == 0 or len(x) == 0:
        return empty, empty
    b = bounds[usable]
    # base grid, grouped in tiles of K x K cells
    tile_cells = _GRID_TILE_CELLS
    sides = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    step = max(float(np.median(sides)) / _GRID_CELLS_PER_POLYGON_SIDE, 1e-7)
    x0, y0 = float(b[:, 0].min()), float(b[:, 1].min())
    while True:
        tile = step * tile_cells
        ntx = int(np.floor((b[:, 2].max() - x0) / tile)) + 1
        nty = int(np.floor((b[:, 3].max() - y0) / tile)) + 1
        if ntx * nty <= _GRID_MAX_TILES:
            break
        tile_cells *= 2

    def tile_x(v: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((v - x0) / tile), -1, ntx).astype(np.int64)

    def tile_y(v: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((v - y0) / tile), -1, nty).astype(np.int64)

    # (polygon, tile) pairs over each bounding box; the tiles used get a compact number
    ptx0, pty0, ptx1, pty1 = tile_x(b[:, 0]), tile_y(b[:, 1]), tile_x(b[:, 2]), tile_y(b[:, 3])
    pt_poly, pt_tx, pt_ty, pth, pt_start = _cells_of_boxes(ptx0, ptx1, pty0, pty1)
    tile_key = pt_tx * nty + pt_ty
    used_keys = np.unique(tile_key)
    pt_tile = np.searchsorted(used_keys, tile_key)
    tile_of_key = np.full(ntx * nty, -1, dtype=np.int64)
    tile_of_key[used_keys] = np.arange(len(used_keys))
    n_tiles = len(used_keys)
    tile_ox = x0 + (used_keys // nty) * tile
    tile_oy = y0 + (used_keys % nty) * tile

    # points: tile, then the tile's resolution from its number of points
    ptx, pty = tile_x(x), tile_y(y)
    in_range = (ptx >= 0) & (ptx < ntx) & (pty >= 0) & (pty < nty)
    point_ids = np.flatnonzero(in_range)
    point_tile = tile_of_key[ptx[point_ids] * nty + pty[point_ids]]
    on_tile = point_tile >= 0
    point_ids, point_tile = point_ids[on_tile], point_tile[on_tile]
    px, py = x[point_ids], y[point_ids]
    per_tile = np.bincount(point_tile, minlength=n_tiles)
    refine = np.sqrt(per_tile / _GRID_POINTS_PER_CELL) / tile_cells
    refine = 2 ** np.clip(np.ceil(np.log2(np.maximum(refine, 1.0))), 0, math.log2(_GRID_MAX_REFINE))
    side = (tile_cells * refine).astype(np.int64)  # cells per tile side
    cell_size = tile / side
    cell_start = np.cumsum(side * side) - side * side
    n_cells = int((side * side).sum())

    def scaled(v: np.ndarray, t: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Coordinate ``v`` in cell units from the origin of tile ``t``."""
        return (v - origin[t]) / cell_size[t]

    def cell_of(u: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Column (or row) of tile ``t`` holding scaled coordinate ``u``: one formula for points,
        vertices and boxes, monotonic, so they agree to the last bit."""
        return np.clip(u.astype(np.int64), 0, side[t] - 1)

    def local_range(lo: np.ndarray, hi: np.ndarray, t: np.ndarray, at_first: np.ndarray,
                    at_last: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells of tile ``t`` met by [lo, hi]: from the tile's first cell unless the range
        starts in this tile, to its last cell unless it ends in it."""
        first = np.where(at_first, cell_of(scaled(lo, t, origin), t), 0)
        last = np.where(at_last, cell_of(scaled(hi, t, origin), t), side[t] - 1)
        return first, last

    # (polygon, cell) pairs over each bounding box, per (polygon, tile)
    p = pt_poly
    cx0, cx1 = local_range(b[p, 0], b[p, 2], pt_tile, pt_tx == ptx0[p], pt_tx == ptx1[p], tile_ox)
    cy0, cy1 = local_range(b[p, 1], b[p, 3], pt_tile, pt_ty == pty0[p], pt_ty == pty1[p], tile_oy)
    pc_pt, pc_cx, pc_cy, ch, pc_start = _cells_of_boxes(cx0, cx1, cy0, cy1)
    pc_tile = pt_tile[pc_pt]
    pc_cell = cell_start[pc_tile] + pc_cx * side[pc_tile] + pc_cy

    def pair_of(poly: np.ndarray, tx: np.ndarray, ty: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """Position of (polygon, cell) among the (polygon, cell) pairs, the cell given by its
        tile (tx, ty) and its column and row in the tile."""
        pt = pt_start[poly] + (tx - ptx0[poly]) * pth[poly] + (ty - pty0[poly])
        return pc_start[pt] + (cx - cx0[pt]) * ch[pt] + (cy - cy0[pt])

    # boundary cells: those met by an edge of the polygon
    boundary = np.zeros(len(pc_pt), dtype=bool)
    starts = layer.vertex_start[poly_ids]
    vertex_poly, local = _ranges(layer.vertex_start[poly_ids + 1] - starts)
    v = starts[vertex_poly] + local
    vx, vy, has_edge = layer.x[v], layer.y[v], layer.edge[v]
    vtx, vty = tile_x(vx), tile_y(vy)
    vt = tile_of_key[vtx * nty + vty]  # every vertex lies in its polygon's box: a used tile
    ux, uy = scaled(vx, vt, tile_ox), scaled(vy, vt, tile_oy)
    vcx, vcy = cell_of(ux, vt), cell_of(uy, vt)
    margin = _GRID_EPS / cell_size[vt]
    clear = ((ux - vcx > margin) & (ux - vcx < 1 - margin)
             & (uy - vcy > margin) & (uy - vcy < 1 - margin))  # not within _GRID_EPS of a cell side
    has_edge = has_edge[:-1]  # an edge from each vertex to the next, within a ring
    e_poly = vertex_poly[:-1]
    # most edges start and end well inside one cell: that cell is the only one they meet
    short = (has_edge & clear[:-1] & clear[1:] & (vt[:-1] == vt[1:])
             & (vcx[:-1] == vcx[1:]) & (vcy[:-1] == vcy[1:]))
    s = np.flatnonzero(short)
    s_pairs = pair_of(e_poly[s], vtx[s], vty[s], vcx[s], vcy[s])
    boundary[s_pairs] = True
    # the others: the cells of each tile they cross, column by column
    long = np.flatnonzero(has_edge & ~short)
    vx0, vy0, vx1, vy1 = vx[long], vy[long], vx[long + 1], vy[long + 1]
    ex0, ex1 = np.minimum(vx0, vx1), np.maximum(vx0, vx1)
    ey0, ey1 = np.minimum(vy0, vy1), np.maximum(vy0, vy1)
    e_poly = e_poly[long]
    etx0, etx1, ety0, ety1 = tile_x(ex0), tile_x(ex1), tile_y(ey0), tile_y(ey1)
    # (edge, tile) pairs
    e, e_tx, e_ty, _height, _start = _cells_of_boxes(etx0, etx1, ety0, ety1)
    ep = e_poly[e]
    e_pt = pt_start[ep] + (e_tx - ptx0[ep]) * pth[ep] + (e_ty - pty0[ep])  # its (polygon, tile)
    e_tile = pt_tile[e_pt]
    ecx0, ecx1 = local_range(ex0[e], ex1[e], e_tile, e_tx == etx0[e], e_tx == etx1[e], tile_ox)
    # columns of the tile that the edge spans; in each, the rows its y-range there meets
    col_et, local = _ranges(ecx1 - ecx0 + 1)
    ec_cx = ecx0[col_et] + local
    ee = e[col_et]
    ct = e_tile[col_et]
    left = tile_ox[ct] + ec_cx * cell_size[ct] - _GRID_EPS
    right = left + cell_size[ct] + 2 * _GRID_EPS
    sx, sy, dx, dy = vx0[ee], vy0[ee], vx1[ee] - vx0[ee], vy1[ee] - vy0[ee]
    flat = dx == 0
    safe_dx = np.where(flat, 1.0, dx)
    ta = np.clip((left - sx) / safe_dx, 0.0, 1.0)
    tb = np.clip((right - sx) / safe_dx, 0.0, 1.0)
    ya, yb = sy + ta * dy, sy + tb * dy
    ylo = np.where(flat, ey0[ee], np.minimum(ya, yb)) - _GRID_EPS
    yhi = np.where(flat, ey1[ee], np.maximum(ya, yb)) + _GRID_EPS
    ty_lo, ty_hi = tile_y(ylo), tile_y(yhi)
    row_tile = e_ty[col_et]
    ecy0, ecy1 = local_range(ylo, yhi, ct, ty_lo == row_tile, ty_hi == row_tile, tile_oy)
    col_pt = e_pt[col_et]
    ecy0, ecy1 = np.maximum(ecy0, cy0[col_pt]), np.minimum(ecy1, cy1[col_pt])  # within the box
    rows = np.where((ty_lo > row_tile) | (ty_hi < row_tile), 0, np.maximum(ecy1 - ecy0 + 1, 0))
    ec_col, local = _ranges(rows)
    ec_cx = ec_cx[ec_col]
    ec_cy = ecy0[ec_col] + local
    ec_pt = col_pt[ec_col]
    ec_pairs = pc_start[ec_pt] + (ec_cx - cx0[ec_pt]) * ch[ec_pt] + (ec_cy - cy0[ec_pt])
    boundary[ec_pairs] = True

    # each point's cell; only occupied cells are looked at
    t = point_tile
    point_column = cell_of(scaled(px, t, tile_ox), t)
    point_cell = cell_start[t] + point_column * side[t] + cell_of(scaled(py, t, tile_oy), t)
    points_per_cell = np.bincount(point_cell, minlength=n_cells)
    keep = points_per_cell[pc_cell] > 0

    prepared = layer.prepared[poly_ids]

    # one predicate at the centre of each occupied cell that no edge meets
    centre = np.flatnonzero(keep & ~boundary)
    ct = pc_tile[centre]
    inside_centre = shapely.intersects_xy(
        prepared[pt_poly[pc_pt[centre]]],
        tile_ox[ct] + (pc_cx[centre] + 0.5) * cell_size[ct],
        tile_oy[ct] + (pc_cy[centre] + 0.5) * cell_size[ct],
    )
    inside = np.zeros(len(pc_pt), dtype=bool)
    inside[centre[inside_centre]] = True
    crossed = keep & boundary

    # candidates of each cell: the polygons holding it whole and those whose edges cross it,
    # in rank order (polygon order without ranks)
    relevant = np.flatnonzero(inside | crossed)
    if rank is not None:
        relevant_rank = rank[poly_ids[pt_poly[pc_pt[relevant]]]]
        relevant = relevant[_argsort_small_ints(relevant_rank)]
    relevant = relevant[_argsort_small_ints(pc_cell[relevant])]
    per_cell = np.bincount(pc_cell[relevant], minlength=n_cells)
    first = np.cumsum(per_cell) - per_cell
    # cells decided without a test: their first candidate holds them whole (and, for all
    # pairs, is their only candidate)
    leader = relevant[first[per_cell > 0]]
    decided = inside[leader] if rank is not None else inside[leader] & (per_cell[pc_cell[leader]] == 1)
    whole_cell = np.full(n_cells, -1, dtype=np.int64)
    whole_cell[pc_cell[leader[decided]]] = pt_poly[pc_pt[leader[decided]]]
    held = whole_cell[point_cell]
    direct = np.flatnonzero(held >= 0)
    # the other points of cells with candidates, grouped by tile: the prepared polygons of a
    # tile stay in cache while its points are tested
    others = np.flatnonzero((held < 0) & (per_cell[point_cell] > 0))
    others = others[_argsort_small_ints(point_tile[others])]
    start = first[point_cell[others]]
    end = start + per_cell[point_cell[others]]
    ox, oy = px[others], py[others]
    relevant_poly = pt_poly[pc_pt[relevant]]
    relevant_inside = inside[relevant]
    if rank is not None:  # the points whose last candidate needs no test: in covered cells
        covered = np.zeros(n_cells, dtype=bool)
        covered[cell_start[vt] + vcx * side[vt] + vcy] = True  # a vertex in the cell
        unshared = ~layer.shared[v]
        covered[pc_cell[s_pairs[unshared[s]]]] = False
        covered[pc_cell[ec_pairs[unshared[long][ee[ec_col]]]]] = False
        ot = point_tile[others]
        left = tile_ox[ot] + point_column[others] * cell_size[ot]
        within_half = (left - _GRID_EPS > x_range[0]) & (left + cell_size[ot] + _GRID_EPS < x_range[1])
        last = np.where(covered[point_cell[others]] & within_half, end - 1, -1)

    def hits(k: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Whether each point ``others[k]`` lies in its candidate ``relevant[c]``: held whole,
        the last of a covered cell, or tested."""
        hit = relevant_inside[c] if rank is None else relevant_inside[c] | (c == last[k])
        test = np.flatnonzero(~hit)
        kt = k[test]
        hit[test] = shapely.intersects_xy(prepared[relevant_poly[c[test]]], ox[kt], oy[kt])
        return hit

    if rank is None:  # every pair: each candidate tested
        k, local = _ranges(end - start)
        c = start[k] + local
        hit = hits(k, c)
        found_k, found_c = k[hit], c[hit]
    else:  # the first hit in rank order: candidates tested round by round, hits leave
        k, c = np.arange(len(others)), start
        found_ks, found_cs = [k[:0]], [c[:0]]
        while len(k):
            hit = hits(k, c)
            found_ks.append(k[hit])
            found_cs.append(c[hit])
            more = ~hit & (c + 1 < end[k])
            k, c = k[more], c[more] + 1
        found_k, found_c = np.concatenate(found_ks), np.concatenate(found_cs)
    ip = np.concatenate([point_ids[direct], point_ids[others[found_k]]])
    ig = np.concatenate([poly_ids[held[direct]], poly_ids[relevant_poly[found_c]]])
    return ip, ig


def _prepared_copies(geoms: np.ndarray) -> np.ndarray:
    """Prepared deep copies: the caller's geometries are never mutated, so shared frames stay
    safe to use from several threads (GEOS builds prepared indexes lazily)."""
    copies = shapely.transform(geoms, lambda xy: xy)
    shapely.prepare(copies)
    return copies
