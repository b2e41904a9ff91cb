"""within_and_nearest (the one-pass radius and nearest query) against the two separate queries,
on several territories at once, and the cache of metric layers behind it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod

from essmap import geo
from essmap.domain.territories import TERRITORIES
from essmap.geo import base, distance
from essmap.geo.base import _key_rank

GEOD = Geod(ellps="WGS84")
QPV_PACA = Path(__file__).resolve().parents[2] / "data" / "geo" / "qpv2024_paca.geojson"

#: (territoire, lon, lat) of a real place in each territory.
PLACES = {
    "marseille": ("metropole", 5.3698, 43.2965),
    "pointe_a_pitre": ("guadeloupe", -61.5331, 16.2411),
    "fort_de_france": ("martinique", -61.0588, 14.6161),
    "cayenne": ("guyane", -52.3135, 4.9224),
    "saint_denis": ("reunion", 55.4504, -20.8823),
    "mamoudzou": ("mayotte", 45.2279, -12.7806),
}


def _star(lon: float, lat: float, radius_m: float, rng: np.random.Generator) -> shapely.Polygon:
    """A star-shaped lon/lat polygon of ~``radius_m`` around (lon, lat), 12 vertices."""
    azimuths = np.sort(rng.uniform(0, 360, 12))
    x, y, _ = GEOD.fwd(np.full(12, lon), np.full(12, lat), azimuths, radius_m * rng.uniform(0.5, 1.0, 12))
    return shapely.Polygon(np.column_stack([x, y]))


@pytest.fixture(scope="module")
def layers() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Polygons: the real PACA QPVs and star polygons around a place of each territory.
    Points: scattered around each place but Mayotte's (its polygons have no target), in Corsica
    (far from every polygon), on QPV vertices, twice on some (equal distances), and one
    without geometry."""
    rng = np.random.default_rng(3)
    raw = gpd.read_file(QPV_PACA)
    geoms = list(raw.geometry)
    territoire = ["metropole"] * len(geoms)
    lon_pts: list[float] = []
    lat_pts: list[float] = []
    ter_pts: list[str] = []
    for name, (ter, lon, lat) in PLACES.items():
        for _ in range(6):
            c_lon, c_lat = lon + rng.normal(0, 0.03), lat + rng.normal(0, 0.03)
            geoms.append(_star(c_lon, c_lat, rng.uniform(150, 600), rng))
            territoire.append(ter)
        if name != "mamoudzou":
            n = 150
            lon_pts += list(lon + rng.normal(0, 0.05, n))
            lat_pts += list(lat + rng.normal(0, 0.05, n))
            ter_pts += [ter] * n
    # Corsica: points only
    lon_pts += list(rng.uniform(8.7, 9.3, 20))
    lat_pts += list(rng.uniform(41.6, 42.6, 20))
    ter_pts += ["metropole"] * 20
    vertices = shapely.get_coordinates(np.asarray(geoms[: len(raw)], dtype=object))[::60]
    lon_pts += list(vertices[:, 0]) + list(vertices[:12, 0])
    lat_pts += list(vertices[:, 1]) + list(vertices[:12, 1])
    ter_pts += ["metropole"] * (len(vertices) + 12)
    polygons = gpd.GeoDataFrame(
        {"code_qp": pd.array([f"Q{k:04d}" for k in rng.permutation(len(geoms))], dtype="string"),
         "territoire": pd.array(territoire, dtype="string")},
        geometry=geoms, crs=4326,
    )
    point_geoms = shapely.points(lon_pts, lat_pts)
    point_geoms[7] = None
    points = gpd.GeoDataFrame(
        {"nom": pd.array([f"TL{k:05d}" for k in rng.permutation(len(lon_pts))], dtype="string"),
         "territoire": pd.array(ter_pts, dtype="string")},
        geometry=point_geoms, crs=4326, index=np.arange(len(lon_pts)) * 2 + 1,
    )
    return polygons, points


def _assert_as_the_two_queries(sources, targets, radius_m: float, key: str) -> geo.RadiusAndNearest:
    found = geo.within_and_nearest(sources, targets, radius_m, key)
    pairs = geo.within_distance(sources, targets, radius_m)
    assert sources.index[found.source].tolist() == pairs["source_index"].tolist()
    assert targets.index[found.target].tolist() == pairs["target_index"].tolist()
    assert found.distance_m.tolist() == pairs["distance_m"].tolist()
    expected = geo.nearest(sources, targets, key)
    got = pd.Series(geo.take_or_na(targets.index, found.nearest), dtype="Int64")
    assert got.tolist() == expected["nearest_index"].astype("Int64").tolist()
    assert pd.array(found.nearest_distance_m, dtype="Float64").tolist() == expected["distance_m"].tolist()
    return found


@pytest.mark.parametrize("radius_m", [0.0, 1000.0, 5000.0])
def test_one_pass_equals_the_two_queries_in_every_territory(layers, radius_m: float) -> None:
    polygons, points = layers
    distance._METRIC_CACHE.clear()
    for _ in range(2):  # the second call reuses the cached metric layers
        found = _assert_as_the_two_queries(polygons, points, radius_m, "nom")
        mayotte = (polygons["territoire"] == "mayotte").to_numpy()
        assert (found.nearest[mayotte] == -1).all() and np.isnan(found.nearest_distance_m[mayotte]).all()
        assert (found.nearest[~mayotte] >= 0).all()
        assert (found.nearest_distance_m == 0).sum() > 10  # points on vertices, in polygons
        _assert_as_the_two_queries(points, polygons, radius_m, "code_qp")


def test_a_changed_geometry_or_territory_is_measured_again(layers) -> None:
    polygons, points = layers
    distance._METRIC_CACHE.clear()
    first = _assert_as_the_two_queries(polygons, points, 1000.0, "nom")
    assert len(distance._METRIC_CACHE) == 2
    assert distance._metric_layer(points) is distance._metric_layer(points)

    moved = points.copy()
    _assert_as_the_two_queries(polygons, moved, 1000.0, "nom")
    target = int(first.target[0])
    x, y, _ = GEOD.fwd(moved.geometry.iloc[target].x, moved.geometry.iloc[target].y, 45, 30_000)
    moved.geometry.array[target] = shapely.Point(x, y)  # the same frame, changed in place
    again = _assert_as_the_two_queries(polygons, moved, 1000.0, "nom")
    assert target not in again.target[again.source == first.source[0]]

    # the same geometries claimed by another territory are another layer (and get refused
    # pairs: features of different territories are never paired)
    elsewhere = points.copy()
    elsewhere["territoire"] = pd.array(["guyane"] * len(points), dtype="string")
    assert distance._metric_layer(elsewhere) is not distance._metric_layer(points)


def test_identities_are_the_ids(layers) -> None:
    _, points = layers
    geoms = points.geometry.to_numpy()
    for array in (geoms, geoms[::-3], geoms[:0]):
        assert base._identities(array).tolist() == [id(g) for g in array]


def test_the_cache_is_bounded(layers, monkeypatch) -> None:
    polygons, points = layers
    distance._METRIC_CACHE.clear()
    first_layer = distance._metric_layer(polygons)
    for k in range(distance._METRIC_CACHE.size + 3):
        geo.within_and_nearest(polygons, points.iloc[k:], 500.0, "nom")
    assert len(distance._METRIC_CACHE) == distance._METRIC_CACHE.size
    # the least recently used layers went first: the polygons, used by every query, stayed
    assert distance._metric_layer(polygons) is first_layer

    monkeypatch.setattr(distance._METRIC_CACHE, "max_geometries", len(points) - 1)
    distance._METRIC_CACHE.clear()
    _assert_as_the_two_queries(polygons, points, 500.0, "nom")
    assert len(distance._METRIC_CACHE) == 1  # the polygons only


def test_concurrent_queries_give_the_same_answer(layers) -> None:
    """Streamlit serves each session on its own thread: queries on the same frames at once,
    cache empty at the start, all equal the query made alone."""
    polygons, points = layers
    distance._METRIC_CACHE.clear()
    alone = geo.within_and_nearest(polygons, points, 1000.0, "nom")
    distance._METRIC_CACHE.clear()
    start = threading.Barrier(4)

    def query(_: int) -> geo.RadiusAndNearest:
        start.wait()
        return geo.within_and_nearest(polygons, points, 1000.0, "nom")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(query, range(8)))
    for found in results:
        for field in ("source", "target", "distance_m", "nearest", "nearest_distance_m"):
            np.testing.assert_array_equal(getattr(found, field), getattr(alone, field))


def test_two_threads_give_what_one_call_gives(layers, monkeypatch) -> None:
    """Distances and reprojections of long arrays are split over two threads."""
    polygons, points = layers
    monkeypatch.setattr(distance, "_CORES", 2)
    rng = np.random.default_rng(8)
    a = rng.choice(polygons.geometry.to_numpy(), 3 * distance._PARALLEL_MIN_ITEMS)
    b = rng.choice(points.geometry.dropna().to_numpy(), len(a))
    np.testing.assert_array_equal(distance._distances(a, b), shapely.distance(a, b))

    metropole = TERRITORIES["metropole"]
    reprojected = distance._in_two_halves(partial(geo.to_metric, territory=metropole), a)
    assert shapely.equals_exact(reprojected, geo.to_metric(a, metropole), tolerance=0).all()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.array(["b", "a", pd.NA, "a", "c"], dtype="string"), [2, 0, 4, 1, 3]),
        (pd.array(["b", "a", None, "a", "c"], dtype=object), [2, 0, 4, 1, 3]),
        (pd.array([3, 1, pd.NA, 1, 2], dtype="Int64"), [3, 0, 4, 1, 2]),
        (pd.array([3.0, np.nan, 1.0, 1.0, 2.0]), [3, 4, 0, 1, 2]),
        (pd.Categorical(["b", "a", None, "a", "c"]), [2, 0, 4, 1, 3]),
    ],
)
def test_ties_go_to_the_first_key_as_everywhere(values, expected) -> None:
    """The rank used for equal distances and overlapping polygons: ascending, missing last,
    equal keys by position, for a series or its array."""
    assert _key_rank(pd.Series(values)).tolist() == expected
    assert _key_rank(pd.Series(values).array).tolist() == expected
