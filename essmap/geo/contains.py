"""Point in polygon on WGS84 coordinates, with Shapely's STRtree.

The recipe was chosen by measurement (``bench/pip_recipes.py``, 2 million points): candidate
pairs from the bounding boxes of an STRtree of the polygons, sorted by polygon, then
``shapely.intersects_xy`` of the points' coordinates (read once) against prepared copies of the
polygons. Copies, so the caller's geometries are never prepared (GEOS builds a prepared polygon's
index lazily: shared prepared geometries are not for several threads).
"""

from __future__ import annotations

from collections.abc import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap.geo.base import geometries, key_rank, require_column, require_wgs84, take_or_na


def intersecting_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j) of every pair with ``a[i]`` intersecting ``b[j]`` on their WGS84
    coordinates (a boundary counts); missing and empty geometries intersect nothing."""
    ia, ib = shapely.STRtree(b).query(a)  # bounding boxes only
    order = np.argsort(ib, kind="stable")  # each prepared polygon tested on all its candidates in a row
    ia, ib = ia[order], ib[order]
    hit = pairs_intersect(a, shapely.bounds(a), b, ia, ib)
    return ia[hit], ib[hit]


def pairs_intersect(a: np.ndarray, a_bounds: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray
                    ) -> np.ndarray:
    """Whether ``a[ia]`` intersects ``b[ib]``, pair by pair, on WGS84 coordinates. ``b`` is the side
    worth preparing (the polygons): its rows in ``ib`` are tested as prepared copies. A point of
    ``a`` (its ``shapely.bounds`` one place) is tested on its coordinates, without reading it again."""
    rows = np.unique(ib)
    prepared = np.full(len(b), None, dtype=object)
    prepared[rows] = shapely.transform(b[rows], lambda xy: xy)  # copies
    shapely.prepare(prepared[rows])
    # a point's bounds are its coordinates twice (missing and empty geometries: NaN, not points)
    is_point = (a_bounds[:, 0] == a_bounds[:, 2]) & (a_bounds[:, 1] == a_bounds[:, 3])
    if is_point.all():  # the ingest's case: every pair tested on its point's coordinates, no split
        return shapely.intersects_xy(prepared[ib], a_bounds[ia, 0], a_bounds[ia, 1])
    point = is_point[ia]
    other = ~point
    hit = np.empty(len(ia), dtype=bool)
    hit[point] = shapely.intersects_xy(prepared[ib[point]], a_bounds[ia[point], 0], a_bounds[ia[point], 1])
    hit[other] = shapely.intersects(prepared[ib[other]], a[ia[other]])
    return hit


def points_in_polygons(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, key: str) -> pd.Series:
    """For each point, the ``key`` of the polygon that contains it, <NA> when none.

    The boundary counts as inside (``intersects``): a point exactly on a QPV boundary is in that
    QPV, at distance 0. Where polygons overlap (a commune and its arrondissements municipaux,
    QPVs of two generations), the point gets the first polygon in ascending ``key`` order. The
    test runs on the WGS84 coordinates: official polygons are defined by their lon/lat vertices.

    Parameters
    ----------
    points : GeoDataFrame
        EPSG:4326; any geometry type works (a line is "in" every polygon it meets).
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


def points_in_polygon_layers(points: gpd.GeoDataFrame, layers: Mapping[str, gpd.GeoDataFrame]) -> pd.DataFrame:
    """:func:`points_in_polygons` for several polygon layers: ``{"code_qp": qpv, "code_insee":
    communes}`` gives the columns ``code_qp`` and ``code_insee``, aligned on ``points.index``, each
    with the dtype of its layer's key column (nullable)."""
    require_wgs84(points, "points")
    for key, polygons in layers.items():
        require_wgs84(polygons, f"layers['{key}']")
        require_column(polygons, key, f"layers['{key}']")
    geoms = geometries(points)
    columns = {}
    for key, polygons in layers.items():
        ip, ig = intersecting_pairs(geoms, geometries(polygons))
        columns[key] = take_or_na(polygons[key], first_by_key(len(geoms), ip, ig, polygons[key]))
    return pd.DataFrame(columns, index=points.index)


def first_by_key(n: int, ia: np.ndarray, ib: np.ndarray, keys: pd.Series) -> np.ndarray:
    """For each of ``n`` items, the position of its partner with the first key among the pairs
    (``ia[k]``, ``ib[k]``), -1 when it has none."""
    partners, partner = np.unique(ib, return_inverse=True)  # only the partners' keys are ranked
    order = np.lexsort((key_rank(keys.iloc[partners])[partner], ia))
    sorted_a = ia[order]
    _, first = np.unique(sorted_a, return_index=True)
    position = np.full(n, -1, dtype=np.int64)
    position[sorted_a[first]] = ib[order][first]
    return position
