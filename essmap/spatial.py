"""Vectorised geometry primitives: point in polygon, pairs within a radius, nearest feature.

Every input is a GeoDataFrame in EPSG:4326 (longitude/latitude order), as
:func:`essmap.store.read_layer` returns them; anything else raises
:class:`~essmap.errors.SpatialInputError` naming both CRSs.

Two rules, from ``docs/domain.md``:

- **Topology on WGS84 coordinates.** "Is this point in that QPV?" is answered on the lon/lat
  coordinates themselves. Official polygons are *defined* by their lon/lat vertices, so testing
  against those vertices is the standard choice; reprojecting first would only move points that
  sit exactly on a boundary by floating-point noise. (Edges are straight in lon/lat here and
  straight in the metric CRS for distances: on QPV-sized edges the two differ by millimetres.)
- **Distances in the metric CRS of each feature's territory**, never in degrees and never in one
  projection for all of France: Lambert-93 (EPSG:2154) for metropolitan France and Corsica,
  RGAF09 / UTM 20N (EPSG:5490) for Guadeloupe and Martinique, RGFG95 / UTM 22N (EPSG:2972) for
  Guyane, RGR92 / UTM 40S (EPSG:2975) for La Réunion, RGM04 / UTM 38S (EPSG:4471) for Mayotte
  (see :data:`essmap.territories.TERRITORIES`). Features of different territories are never
  paired: they are hundreds of kilometres apart.

A feature's territory is its canonical ``territoire`` column; where that is missing or unknown,
the territory whose bounding box holds the feature's representative point.

The two rules meet at distance 0: a point that *intersects* a polygon in WGS84 (inside or exactly
on its boundary) is at distance 0, whatever floating-point noise the reprojection adds. So
"distance 0" and "in the polygon" always agree, and radius 0 means "inside or on the boundary".

Performance: radius queries find candidate pairs on WGS84 bounding boxes widened by a
conservative number of degrees, then reproject and measure only those pairs, so a query against
the ~1,600 QPVs costs little even for millions of points. Point-in-polygon queries of points
against polygons use an adaptive grid (:func:`_points_in_polygon_pairs`): whole cells inside
or outside a polygon are decided by one test at their centre, and only points in cells that a
polygon edge crosses are tested one by one, with prepared polygons. Other geometry pairs use an
STRtree for candidate boxes, then a prepared test on the candidate pairs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from essmap.errors import SpatialInputError
from essmap.territories import TERRITORIES, Territory, territory_of_lonlat

#: The only CRS accepted as input: WGS84, longitude/latitude order.
WGS84_EPSG = 4326

# Conservative conversion of a metric radius into degrees (see _degree_margins): a degree of
# latitude is at least 110,574 m (at the equator), a degree of longitude at least
# 111,319 m x cos(latitude); the factor covers the scale error of the metric projections
# (well under 1 % over each territory) with a wide margin.
_M_PER_DEG_LAT_MIN = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_319.0
_RADIUS_SAFETY = 1.05
_RADIUS_SLACK_M = 1.0

_POINT_TYPE_ID = 0


# --- Validation and territories ----------------------------------------------------------------


def require_wgs84(frame: gpd.GeoDataFrame, name: str) -> None:
    """Raise :class:`SpatialInputError` unless ``frame`` is a GeoDataFrame in EPSG:4326.

    ``name`` is the argument name, quoted in the (French) message with both CRSs.
    """
    if not isinstance(frame, gpd.GeoDataFrame):
        raise SpatialInputError(
            f"« {name} » doit être un GeoDataFrame (reçu : {type(frame).__name__})."
        )
    crs = frame.crs
    if crs is None:
        raise SpatialInputError(
            f"« {name} » n'a pas de système de coordonnées ; attendu EPSG:{WGS84_EPSG} "
            "(WGS84, longitude/latitude). Solution : déclarez-le avec .set_crs(4326) si les "
            "coordonnées sont bien des longitudes/latitudes."
        )
    if CRS.from_user_input(crs).to_epsg() != WGS84_EPSG:
        raise SpatialInputError(
            f"« {name} » est en {_crs_label(crs)} ; attendu EPSG:{WGS84_EPSG} (WGS84, "
            "longitude/latitude). Solution : reprojetez-le avec .to_crs(4326) : les distances "
            "sont ensuite calculées dans le système métrique de chaque territoire."
        )


def _crs_label(crs: object) -> str:
    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    return f"EPSG:{epsg} ({parsed.name})" if epsg else parsed.name


def territory_codes(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Territory code of each row (object array, "" for rows without geometry nor territory).

    The canonical ``territoire`` column wins; rows where it is absent, empty or unknown are
    located by the bounding box of their representative point
    (:func:`essmap.territories.territory_of_lonlat`). A row with a geometry that lies in no
    territory raises :class:`SpatialInputError`: distances there would have no metric CRS.
    """
    names = np.array([*TERRITORIES, ""], dtype=object)
    return names[_territory_labels(frame)]


_TERRITORY_CODES: tuple[str, ...] = tuple(TERRITORIES)


def _territory_labels(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Index in :data:`TERRITORIES` of each row's territory, -1 when none (see
    :func:`territory_codes`). Works on the distinct values of ``territoire`` only."""
    n = len(frame)
    labels = np.full(n, -1, dtype=np.int64)
    if "territoire" in frame.columns:
        column_labels, uniques = pd.factorize(frame["territoire"], use_na_sentinel=True)
        lookup = np.array(
            [_TERRITORY_CODES.index(u) if u in TERRITORIES else -1 for u in uniques] + [-1],
            dtype=np.int64,
        )
        labels = lookup[column_labels]  # -1 (missing) picks the trailing -1
    unknown = np.flatnonzero(labels < 0)
    if len(unknown) == 0:
        return labels
    geoms = _geoms(frame)[unknown]
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    lon = np.full(len(geoms), np.nan)
    lat = np.full(len(geoms), np.nan)
    if present.any():
        rep = geoms[present]
        not_point = shapely.get_type_id(rep) != _POINT_TYPE_ID
        if not_point.any():
            rep = rep.copy()
            rep[not_point] = shapely.point_on_surface(rep[not_point])
        lon[present] = shapely.get_x(rep)
        lat[present] = shapely.get_y(rep)
    located = territory_of_lonlat(lon, lat)
    lost = present & (located == "")
    if lost.any():
        labels_lost = frame.index[unknown[lost]][:5].tolist()
        raise SpatialInputError(
            f"{int(lost.sum())} entité(s) hors de tout territoire couvert (index {labels_lost}) : "
            "aucun système métrique pour mesurer leurs distances. Solution : vérifiez l'ordre "
            "longitude/latitude des coordonnées, ou renseignez la colonne « territoire »."
        )
    lookup = {code: k for k, code in enumerate(_TERRITORY_CODES)}
    labels[unknown] = pd.Series(located, dtype=object).map(lookup).fillna(-1).to_numpy(dtype=np.int64)
    return labels


def _positions_by_territory(frame: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    """Row positions of each territory present, in :data:`TERRITORIES` order."""
    labels = _territory_labels(frame)
    counts = np.bincount(labels + 1, minlength=len(_TERRITORY_CODES) + 1)[1:]
    out: dict[str, np.ndarray] = {}
    for k in np.flatnonzero(counts):
        # the usual case, one territory for every row, needs no index array scan
        whole = counts[k] == len(labels)
        out[_TERRITORY_CODES[k]] = np.arange(len(labels)) if whole else np.flatnonzero(labels == k)
    return out


def _shared_territories(
    a: gpd.GeoDataFrame, b: gpd.GeoDataFrame
) -> Iterator[tuple[Territory, np.ndarray, np.ndarray]]:
    """(territory, positions in ``a``, positions in ``b``) for each territory both have:
    features of different territories are never paired."""
    by_b = _positions_by_territory(b)
    for code, pa in _positions_by_territory(a).items():
        pb = by_b.get(code)
        if pb is not None:
            yield TERRITORIES[code], pa, pb


def _geoms(frame: gpd.GeoDataFrame) -> np.ndarray:
    """The geometry column as an object array of shapely geometries (no copy of geometries)."""
    return np.asarray(frame.geometry.array, dtype=object)


_TRANSFORMERS = threading.local()


def _transformer(epsg: int) -> Transformer:
    """WGS84 -> ``epsg`` transformer (lon/lat order), cached per thread (pyproj objects are not
    meant to be shared between threads, and Streamlit serves each session on its own thread)."""
    cache = getattr(_TRANSFORMERS, "cache", None)
    if cache is None:
        cache = _TRANSFORMERS.cache = {}
    if epsg not in cache:
        cache[epsg] = Transformer.from_crs(WGS84_EPSG, epsg, always_xy=True)
    return cache[epsg]


def to_metric(geoms: np.ndarray, territory: Territory) -> np.ndarray:
    """New geometries reprojected from WGS84 to the territory's metric CRS (``territory.epsg``)."""
    transformer = _transformer(territory.epsg)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(np.asarray(geoms, dtype=object), project)


def metric_groups(gdf: gpd.GeoDataFrame) -> Iterator[tuple[Territory, gpd.GeoDataFrame]]:
    """Split a WGS84 frame by territory and yield each part in that territory's metric CRS.

    Parts come in :data:`~essmap.territories.TERRITORIES` order; each keeps the original index
    and columns, with its geometry reprojected (EPSG:2154 for metropolitan France and Corsica,
    5490 for Guadeloupe and Martinique, 2972 Guyane, 2975 La Réunion, 4471 Mayotte...). Rows
    with neither geometry nor territory are left out.

    Raises
    ------
    SpatialInputError
        If ``gdf`` is not in EPSG:4326, or has features outside every territory.
    """
    require_wgs84(gdf, "gdf")
    for code, positions in _positions_by_territory(gdf).items():
        territory = TERRITORIES[code]
        yield territory, gdf.iloc[positions].to_crs(territory.epsg)


# --- Small array helpers -----------------------------------------------------------------------


def _key_rank(keys: pd.Series) -> np.ndarray:
    """Rank of each row in ascending key order (missing keys last, ties by position)."""
    values = pd.Series(keys.to_numpy(), index=pd.RangeIndex(len(keys)))
    order = values.sort_values(kind="stable", na_position="last").index.to_numpy()
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys), dtype=np.int64)
    return rank


def take_or_na(values: pd.Series | pd.Index, positions: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[positions]`` with <NA> where a position is -1, keeping a nullable dtype (the
    columns of :func:`nearest` and :func:`points_in_polygons`)."""
    array = pd.Series(values).array
    if isinstance(array, pd.arrays.NumpyExtensionArray):
        array = pd.array(array.to_numpy())
    if isinstance(array.dtype, pd.StringDtype) and array.dtype.na_value is not pd.NA:
        array = array.astype(pd.StringDtype())  # pandas' default "str" misses as NaN, not <NA>
    return array.take(np.asarray(positions, dtype=np.int64), allow_fill=True)


def _first_per_group(group: np.ndarray, *sort_keys: np.ndarray) -> np.ndarray:
    """Positions (into the inputs) of the first element of each group by ``sort_keys``."""
    order = np.lexsort(tuple(reversed(sort_keys)) + (group,))
    sorted_group = group[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_group[1:] != sorted_group[:-1]
    return order[first]


def _part(geoms: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``geoms[positions]``, without a copy when the positions are all rows in order."""
    return geoms if len(positions) == len(geoms) else geoms[positions]


def _usable(geoms: np.ndarray) -> np.ndarray:
    return ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))


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
    # the grid pays for its set-up (every polygon edge) only with more points than edges
    points = _point_coordinates(a) if len(a) > _polygon_vertices(b) and _polygonal(b) else None
    if points is not None:
        positions, x, y = points
        ia, ib = _points_in_polygon_pairs(x, y, b)
        return positions[ia], ib
    ia, ib = shapely.STRtree(b).query(a)
    if len(ia) == 0:
        return empty, empty
    hit = _pair_intersects(a, b, ia, ib)
    return ia[hit], ib[hit]


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
    defined by their lon/lat vertices, and a topological predicate needs no metric CRS.

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
    require_wgs84(points, "points")
    require_wgs84(polygons, "polygons")
    _require_column(polygons, key, "polygons")
    position = _containing_positions(_geoms(points), polygons, key)
    return pd.Series(take_or_na(polygons[key], position), index=points.index, name=key)


def _containing_positions(points: np.ndarray, polygons: gpd.GeoDataFrame, key: str) -> np.ndarray:
    """Position in ``polygons`` of the first (by key) polygon intersecting each point, or -1."""
    position = np.full(len(points), -1, dtype=np.int64)
    ip, ig = _intersecting_pairs(points, _geoms(polygons))
    if len(ip) and np.bincount(ip, minlength=len(points)).max() == 1:
        position[ip] = ig  # no point in two polygons: no ranking needed
    elif len(ip):
        rank = _key_rank(polygons[key])
        best = np.full(len(points), len(polygons), dtype=np.int64)
        np.minimum.at(best, ip, rank[ig])  # overlaps: the first polygon by key
        hit = best < len(polygons)
        position[hit] = np.argsort(rank)[best[hit]]
    return position


def _require_column(frame: pd.DataFrame, column: str, name: str) -> None:
    if column not in frame.columns:
        raise KeyError(
            f"« {name} » n'a pas de colonne « {column} » (colonnes : {list(frame.columns)})."
        )


# --- Points in polygons: adaptive grid ---------------------------------------------------------

#: Base cell: the median polygon bounding box side divided by this.
_GRID_CELLS_PER_POLYGON_SIDE = 2.0
#: Cells per tile side at the base resolution; each tile is refined (x2, x4... per side, up to
#: _GRID_MAX_REFINE) until its cells hold about _GRID_POINTS_PER_CELL points on average.
_GRID_TILE_CELLS = 8
_GRID_POINTS_PER_CELL = 16.0
_GRID_MAX_REFINE = 64
_GRID_MAX_TILES = 2_000_000
#: A polygon is prepared (a copy with an index of its edges) when it has this many points to test.
_GRID_PREPARE_MIN_TESTS = 16
#: Margin (degrees, ~0.1 mm) around each cell when finding the cells an edge crosses: far
#: larger than floating-point error, so no crossed cell is ever missed.
_GRID_EPS = 1e-9

_POLYGONAL_TYPE_IDS = (3, 6)  # Polygon, MultiPolygon


def _point_coordinates(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(positions, x, y) of the geometries that are points, if every geometry is a point or
    missing/empty; None otherwise (one coordinate extraction pass, no type scan)."""
    coords, owner = shapely.get_coordinates(points, return_index=True)
    if len(owner) > 1 and not (owner[1:] > owner[:-1]).all():
        return None  # some geometry has several coordinates
    return owner.astype(np.int64, copy=False), coords[:, 0].copy(), coords[:, 1].copy()


def _ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts`` [2, 3]: owners [0, 0, 1, 1, 1] and local positions [0, 1, 0, 1, 2]."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) - starts[owner]


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
    x: np.ndarray, y: np.ndarray, polygons: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with the point (x[i], y[i]) intersecting ``polygons[j]`` (WGS84, boundary
    included), the same pairs as the predicate on every candidate, with far fewer predicates.

    An adaptive grid over the polygons' bounding boxes: tiles of cells, refined where points
    are dense. For each polygon, the cells its edges pass through (in each column an edge
    spans, the rows its y-range there meets, widened by :data:`_GRID_EPS`) are *boundary*
    cells; any other cell of its box lies wholly inside or wholly outside it, so one test at
    the cell centre decides for every point of the cell. Only the points of boundary cells are
    tested one by one. Why this is exact: if a point and its cell centre were on different
    sides, the segment between them would cross an edge inside the cell (cell indices are
    monotonic in each coordinate), and the cell would be a boundary cell. Only occupied cells
    are looked at. Against the ~35,000 communes most of 2 million establishments still need a
    test (points are too sparse for most cells to be interior), but fewer than an STRtree's
    candidates and after a cheaper search; against the QPVs, far fewer tests are needed.
    """
    empty = np.empty(0, dtype=np.int64)
    bounds = shapely.bounds(polygons)
    usable = np.isfinite(bounds).all(axis=1)
    poly_ids = np.flatnonzero(usable)
    if len(poly_ids) == 0 or len(x) == 0:
        return empty, empty
    geoms = polygons[poly_ids]
    b = bounds[poly_ids]

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
    per_tile = np.bincount(point_tile, minlength=n_tiles)
    refine = np.sqrt(per_tile / _GRID_POINTS_PER_CELL) / tile_cells
    refine = 2 ** np.clip(np.ceil(np.log2(np.maximum(refine, 1.0))), 0, math.log2(_GRID_MAX_REFINE))
    side = (tile_cells * refine).astype(np.int64)  # cells per tile side
    cell_size = tile / side
    cell_start = np.cumsum(side * side) - side * side
    n_cells = int((side * side).sum())

    def local_range(lo: np.ndarray, hi: np.ndarray, t: np.ndarray, at_first: np.ndarray,
                    at_last: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells of tile ``t`` met by [lo, hi]: from the tile's first cell unless the range
        starts in this tile, to its last cell unless it ends in it."""
        n = side[t]
        first = np.where(at_first, np.clip(np.floor((lo - origin[t]) / cell_size[t]), 0, n - 1), 0)
        last = np.where(at_last, np.clip(np.floor((hi - origin[t]) / cell_size[t]), 0, n - 1), n - 1)
        return first.astype(np.int64), last.astype(np.int64)

    # (polygon, cell) pairs over each bounding box, per (polygon, tile)
    p = pt_poly
    cx0, cx1 = local_range(b[p, 0], b[p, 2], pt_tile, pt_tx == ptx0[p], pt_tx == ptx1[p], tile_ox)
    cy0, cy1 = local_range(b[p, 1], b[p, 3], pt_tile, pt_ty == pty0[p], pt_ty == pty1[p], tile_oy)
    pc_pt, pc_cx, pc_cy, ch, pc_start = _cells_of_boxes(cx0, cx1, cy0, cy1)
    pc_tile = pt_tile[pc_pt]
    pc_cell = cell_start[pc_tile] + pc_cx * side[pc_tile] + pc_cy

    # boundary cells: those met by the bounding box of an edge of the polygon
    parts, part_poly = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    same_ring = vertex_ring[1:] == vertex_ring[:-1]
    vx0, vy0 = coords[:-1, 0][same_ring], coords[:-1, 1][same_ring]
    vx1, vy1 = coords[1:, 0][same_ring], coords[1:, 1][same_ring]
    ex0 = np.minimum(coords[:-1, 0], coords[1:, 0])[same_ring]
    ex1 = np.maximum(coords[:-1, 0], coords[1:, 0])[same_ring]
    ey0 = np.minimum(coords[:-1, 1], coords[1:, 1])[same_ring]
    ey1 = np.maximum(coords[:-1, 1], coords[1:, 1])[same_ring]
    e_poly = part_poly[ring_part[vertex_ring[:-1][same_ring]]]
    etx0, etx1, ety0, ety1 = tile_x(ex0), tile_x(ex1), tile_y(ey0), tile_y(ey1)
    # (edge, tile) pairs, mostly one per edge
    et_edge, e_tx, e_ty, _height, _start = _cells_of_boxes(etx0, etx1, ety0, ety1)
    ep = e_poly[et_edge]
    e_pt = pt_start[ep] + (e_tx - ptx0[ep]) * pth[ep] + (e_ty - pty0[ep])  # its (polygon, tile)
    e_tile = pt_tile[e_pt]
    e = et_edge
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
    boundary = np.zeros(len(pc_pt), dtype=bool)
    boundary[pc_start[ec_pt] + (ec_cx - cx0[ec_pt]) * ch[ec_pt] + (ec_cy - cy0[ec_pt])] = True

    # each point's cell; only occupied cells are looked at
    t = point_tile
    lx, _ = local_range(x[point_ids], x[point_ids], t, np.ones(len(t), bool), np.ones(len(t), bool), tile_ox)
    ly, _ = local_range(y[point_ids], y[point_ids], t, np.ones(len(t), bool), np.ones(len(t), bool), tile_oy)
    point_cell = cell_start[t] + lx * side[t] + ly
    occupied = np.zeros(n_cells, dtype=bool)
    occupied[point_cell] = True
    keep = occupied[pc_cell]

    # prepared copies only of the polygons with many points to test (copying is not free)
    points_per_cell = np.bincount(point_cell, minlength=n_cells)
    kept = np.flatnonzero(keep)
    tests = np.bincount(pt_poly[pc_pt[kept]], weights=points_per_cell[pc_cell[kept]], minlength=len(geoms))
    busy = np.flatnonzero(tests >= _GRID_PREPARE_MIN_TESTS)
    prepared = geoms.copy()
    prepared[busy] = _prepared_copies(geoms[busy])

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
    relevant = np.flatnonzero(inside | (keep & boundary))

    # candidates of each point: the relevant (polygon, cell) pairs of its cell
    order = np.argsort(pc_cell[relevant], kind="stable")
    relevant = relevant[order]
    per_cell = np.bincount(pc_cell[relevant], minlength=n_cells)
    first = np.cumsum(per_cell) - per_cell
    count = per_cell[point_cell]
    cand_point, local = _ranges(count)
    cand = relevant[first[point_cell[cand_point]] + local]
    cand_poly = pt_poly[pc_pt[cand]]
    hit = inside[cand]
    exact = np.flatnonzero(~hit)
    if len(exact):
        exact = exact[np.argsort(cand_poly[exact])]  # one polygon at a time (any order within)
        pts = point_ids[cand_point[exact]]
        hit[exact] = shapely.intersects_xy(prepared[cand_poly[exact]], x[pts], y[pts])
    return point_ids[cand_point[hit]], poly_ids[cand_poly[hit]]


def _prepared_copies(geoms: np.ndarray) -> np.ndarray:
    """Prepared deep copies: the caller's geometries are never mutated, so shared frames stay
    safe to use from several threads (GEOS builds prepared indexes lazily)."""
    copies = shapely.transform(geoms, lambda xy: xy)
    shapely.prepare(copies)
    return copies


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
