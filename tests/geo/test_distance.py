"""essmap.geo distances against an independent geodesic reference (pyproj.Geod, edges sampled
every metre and searched to a micrometre), in metropolitan France and every overseas département."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from geo_helpers import (
    GEOD,
    PLACES,
    QPV_PACA,
    blob,
    geodesic_distance,
    offset,
    points_frame,
    polygon_frame,
    square,
)
from pyproj import Proj, Transformer

from essmap import geo
from essmap.domain.territories import TERRITORIES
from essmap.geo.distance import scale_range

#: Largest error allowed on a reported distance (metres).
TOLERANCE_M = 0.1
#: The places where every territory's verdicts are checked.
VERDICT_PLACES = ["bonifacio", "lille", "saint_laurent_du_maroni", "mamoudzou", "saint_denis", "fort_de_france",
                  "pointe_a_pitre"]


def _planar_distance(a: shapely.Geometry, b: shapely.Geometry, epsg: int) -> float:
    """The distance in a projected CRS, as essmap measured it before (to show what a test catches)."""
    project = Transformer.from_crs(4326, epsg, always_xy=True)
    moved = shapely.transform(np.array([a, b], dtype=object), lambda xy: np.column_stack(project.transform(*xy.T)))
    return float(shapely.distance(moved[0], moved[1]))


def _scale(place: str) -> float:
    _, lon, lat, epsg = PLACES[place]
    return float(Proj(epsg).get_factors(lon, lat).meridional_scale)


# --- Every distance within a decimetre of the reference --------------------------------------------


@pytest.mark.parametrize("place", sorted(PLACES))
def test_every_distance_is_within_a_decimetre_of_the_geodesic_reference(place: str) -> None:
    """Two QPV-like polygons (one a MultiPolygon with a part 3 km away) and points all around,
    from inside to 6 km: every pair of distances_to_polygons, every nearest distance and every
    distance of within_and_nearest is within 0.1 m of the reference."""
    territoire, lon, lat, _ = PLACES[place]
    rng = np.random.default_rng(sum(map(ord, place)))
    main = blob(lon, lat, 400.0, rng)
    far = blob(*offset(lon, lat, 200.0, 3000.0), 300.0, rng)
    other = blob(*offset(lon, lat, 60.0, 1200.0), 250.0, rng)
    polygons = polygon_frame([shapely.MultiPolygon([main, far]), other], ["QN00002M", "QN00001M"],
                             territoire=territoire)
    azimuths, distances = rng.uniform(0, 360, 40), np.concatenate([rng.uniform(0, 600, 20), rng.uniform(600, 6000, 20)])
    lonlat = [offset(lon, lat, a, d) for a, d in zip(azimuths, distances, strict=True)]
    points = points_frame(lonlat, territoire=territoire, nom=[f"P{k:02d}" for k in range(len(lonlat))])

    pairs = geo.distances_to_polygons(points, polygons, 6000.0, "code_qp")
    # the reference of every (point, polygon), computed once (the slow part of this test)
    between = {(p, g): geodesic_distance(*lonlat[p], geometry)
               for p in range(len(lonlat)) for g, geometry in zip(polygons.index, polygons.geometry, strict=True)}
    reference = np.array([between[p, g] for p, g in zip(pairs["point_index"], pairs["polygon_index"], strict=True)])
    assert len(pairs) > 60 and (reference == 0).sum() >= 3 and reference.max() > 4000
    assert np.abs(pairs["distance_m"].to_numpy() - reference).max() <= TOLERANCE_M

    expected = np.array([min(between[p, g] for g in polygons.index) for p in range(len(lonlat))])
    found = geo.nearest(points, polygons, "code_qp")
    assert np.abs(found["distance_m"].to_numpy(dtype=float) - expected).max() <= TOLERANCE_M
    both = geo.within_and_nearest(points, polygons, 1000.0, "code_qp")
    assert np.abs(both.nearest_distance_m - expected).max() <= TOLERANCE_M
    assert sorted(set(both.source.tolist())) == np.flatnonzero(expected <= 1000.0).tolist()


def test_real_qpv_distances_are_within_a_decimetre_of_the_reference(paca_qpv) -> None:
    """Real QPVs of Marseille (hundreds of vertices, holes and parts as published), and points
    scattered over the city."""
    centres = shapely.point_on_surface(paca_qpv.geometry.to_numpy())
    qpv = paca_qpv[shapely.distance(centres, shapely.Point(5.40, 43.35)) < 0.03]
    x0, y0, x1, y1 = qpv.total_bounds
    rng = np.random.default_rng(5)
    lonlat = list(zip(rng.uniform(x0, x1, 25), rng.uniform(y0, y1, 25), strict=True))
    points = points_frame(lonlat)
    pairs = geo.distances_to_polygons(points, qpv, 1500.0, "code_qp")
    geometry = dict(zip(qpv.index, qpv.geometry, strict=True))
    reference = np.array([geodesic_distance(lonlat[p][0], lonlat[p][1], geometry[g])
                          for p, g in zip(pairs["point_index"], pairs["polygon_index"], strict=True)])
    assert len(qpv) >= 8 and len(pairs) > 60 and (reference == 0).any()
    assert np.abs(pairs["distance_m"].to_numpy() - reference).max() <= TOLERANCE_M


def test_a_long_edge_is_the_straight_line_between_its_lonlat_vertices() -> None:
    """A 20 km diagonal edge (a large rural commune): the point 50 m from its middle, along the
    normal, is 50 m away, as Shapely's topology draws the edge (straight in lon/lat). The
    geodesic between the same vertices, and the straight line in Lambert-93, pass metres away."""
    territoire, lon, lat, epsg = PLACES["lille"]
    corner = offset(lon, lat, 225.0, 14_000.0)
    far_corner = offset(lon, lat, 45.0, 14_000.0)
    triangle = shapely.Polygon([corner, far_corner, (corner[0], far_corner[1])])  # the diagonal is an edge
    middle = ((corner[0] + far_corner[0]) / 2, (corner[1] + far_corner[1]) / 2)
    azimuth = GEOD.inv(*middle, *far_corner)[0]
    outside = offset(*middle, azimuth + 90.0, 50.0)
    assert not triangle.intersects(shapely.Point(outside))
    reference = geodesic_distance(*outside, triangle, edges="lonlat")
    assert reference == pytest.approx(50.0, abs=0.01)
    assert abs(geodesic_distance(*outside, triangle) - reference) > 1.0  # the geodesic edge is elsewhere
    assert abs(_planar_distance(shapely.Point(outside), triangle, epsg) - 50.0) > 5.0  # so is the planar one
    commune = polygon_frame([triangle], ["C1"], territoire=territoire)
    found = geo.nearest(points_frame([outside], territoire=territoire), commune, "code_qp")
    assert found["distance_m"].iloc[0] == pytest.approx(reference, abs=TOLERANCE_M)


# --- In or out of the radius: exact verdicts 0.3 m either side -------------------------------------


def _placed_around(polygon: shapely.Polygon, distance_m: float) -> list[tuple[float, float]]:
    """Points exactly ``distance_m`` from the polygon: along the outward normal from the middle
    of hull edges that are polygon edges, and along the outward bisector at hull vertices (the
    nearest point of the polygon is then that middle or that vertex)."""
    ring = np.asarray(polygon.exterior.coords)[:-1]
    hull = shapely.get_coordinates(polygon.convex_hull)[:-1]
    index = {tuple(v): k for k, v in enumerate(ring)}
    placed = []
    for k in range(0, len(hull), 2):
        here, after, before = hull[k], hull[(k + 1) % len(hull)], hull[k - 1]
        if (index[tuple(after)] - index[tuple(here)]) % len(ring) == 1:  # a polygon edge on the hull
            middle = (here + after) / 2
            along = GEOD.inv(*middle, *after)[0]
            candidates = [offset(middle[0], middle[1], along + side, distance_m) for side in (90.0, -90.0)]
            placed.append(max(candidates, key=lambda p: polygon.centroid.distance(shapely.Point(p))))
        to_before, to_after = GEOD.inv(*here, *before)[0], GEOD.inv(*here, *after)[0]
        inward = np.degrees(np.arctan2(np.sin(np.radians(to_before)) + np.sin(np.radians(to_after)),
                                       np.cos(np.radians(to_before)) + np.cos(np.radians(to_after))))
        placed.append(offset(here[0], here[1], inward + 180.0, distance_m))
    return placed


@pytest.mark.parametrize("place", VERDICT_PLACES)
@pytest.mark.parametrize("radius_m", [300.0, 1000.0, 2500.0])
def test_verdicts_are_exact_0_3_m_inside_and_outside_the_radius(place: str, radius_m: float) -> None:
    territoire, lon, lat, epsg = PLACES[place]
    polygon = blob(lon, lat, 350.0, np.random.default_rng(len(place)))
    inside = _placed_around(polygon, radius_m - 0.3)
    outside = _placed_around(polygon, radius_m + 0.3)
    for p, expected in [*((p, radius_m - 0.3) for p in inside), *((p, radius_m + 0.3) for p in outside)]:
        assert geodesic_distance(*p, polygon) == pytest.approx(expected, abs=0.005)  # placed as meant
    points = points_frame(inside + outside, territoire=territoire, nom=[f"P{k}" for k in range(len(inside) * 2)])
    qpv = polygon_frame([polygon], ["QN00001M"], territoire=territoire)
    expected_rows = list(range(len(inside)))

    pairs = geo.distances_to_polygons(points, qpv, radius_m, "code_qp")
    assert pairs["point_index"].tolist() == expected_rows
    assert np.abs(pairs["distance_m"].to_numpy() - (radius_m - 0.3)).max() <= TOLERANCE_M
    assert sorted(geo.within_distance(qpv, points, radius_m)["target_index"]) == expected_rows
    assert sorted(geo.within_and_nearest(qpv, points, radius_m, "nom").target) == expected_rows
    bounded = geo.nearest(points, qpv, "code_qp", max_distance_m=radius_m)
    assert bounded["code_qp"].notna().tolist() == [True] * len(inside) + [False] * len(outside)
    scale = _scale(place)
    if abs(scale - 1.0) * radius_m > 0.35:  # here planar distances would give wrong verdicts: show it
        planar = [_planar_distance(shapely.Point(p), polygon, epsg) for p in (inside if scale > 1 else outside)]
        assert all(d > radius_m for d in planar) if scale > 1 else all(d <= radius_m for d in planar)


def test_a_tiers_lieu_999_m_from_a_qpv_in_bonifacio_is_within_1_km() -> None:
    """Lambert-93 stretches southern Corsica by almost 3 m per km: planar distance 1,001.9 m."""
    territoire, lon, lat, epsg = PLACES["bonifacio"]
    qpv = polygon_frame([square(lon, lat, 150.0)], ["QN02A01M"], territoire=territoire)
    x0, y0, x1, _ = qpv.geometry.iloc[0].bounds
    tiers_lieu = offset((x0 + x1) / 2, y0, 180.0, 999.0)
    assert geodesic_distance(*tiers_lieu, qpv.geometry.iloc[0], edges="lonlat") == pytest.approx(999.0, abs=0.001)
    assert _planar_distance(shapely.Point(tiers_lieu), qpv.geometry.iloc[0], epsg) == pytest.approx(1001.9, abs=0.1)
    points = points_frame([tiers_lieu], territoire=territoire, nom="Fabrique")
    found = geo.within_and_nearest(qpv, points, 1000.0, "nom")
    assert found.target.tolist() == [0] and found.distance_m[0] == pytest.approx(999.0, abs=TOLERANCE_M)


# --- Radius 0, nearest, territories, ties ------------------------------------------------------------


@pytest.mark.parametrize("place", ["marseille", "mamoudzou"])
def test_radius_zero_is_inside_or_on_the_boundary(place: str) -> None:
    territoire, lon, lat, _ = PLACES[place]
    polygon = square(lon, lat, 500.0)
    x0, y0, x1, y1 = polygon.bounds
    lonlat = [(lon, lat), ((x0 + x1) / 2, y0), (x1, y1), offset((x0 + x1) / 2, y0, 180.0, 0.01),
              offset(x1, (y0 + y1) / 2, 90.0, 1.0)]
    points = points_frame(lonlat, territoire=territoire)
    qpv = polygon_frame([polygon], ["QN00001M"], territoire=territoire)
    zero = geo.distances_to_polygons(points, qpv, 0.0, "code_qp")
    assert zero["point_index"].tolist() == [0, 1, 2] and (zero["distance_m"] == 0.0).all()
    assert geo.points_in_polygons(points, qpv, "code_qp").notna().tolist() == [True, True, True, False, False]
    found = geo.nearest(points, qpv, "code_qp")["distance_m"].to_numpy(dtype=float)
    assert found[:3].tolist() == [0.0, 0.0, 0.0]
    assert found[3:] == pytest.approx([0.01, 1.0], abs=0.002)
    assert geo.distances_to_polygons(points, qpv, 0.005, "code_qp")["point_index"].tolist() == [0, 1, 2]


def test_nearest_is_the_geodesic_nearest_where_the_planar_nearest_differs() -> None:
    """From a point in southern Corsica, a target 19,999 m due south and one 20,000 m due north:
    Lambert-93 stretches the south more, so the planar nearest is the northern one."""
    lon, lat = 9.10, 41.62
    south, north = offset(lon, lat, 180.0, 19_999.0), offset(lon, lat, 0.0, 20_000.0)
    targets = points_frame([north, south], nom=["nord", "sud"])
    assert _planar_distance(shapely.Point(lon, lat), shapely.Point(south), 2154) > _planar_distance(
        shapely.Point(lon, lat), shapely.Point(north), 2154)
    source = points_frame([(lon, lat)])
    found = geo.nearest(source, targets, "nom")
    assert found["nom"].tolist() == ["sud"] and found["distance_m"].iloc[0] == pytest.approx(19_999.0, abs=0.01)
    both = geo.within_and_nearest(source, targets, 100.0, "nom")
    assert both.nearest.tolist() == [1] and both.nearest_distance_m[0] == pytest.approx(19_999.0, abs=0.01)
    squares = polygon_frame([square(*north, 50.0), square(*south, 50.0)], ["QN2A002M", "QN2A001M"])
    assert geo.nearest(source, squares, "code_qp")["code_qp"].tolist() == ["QN2A001M"]


def test_nearest_for_each_polygon_the_nearest_point() -> None:
    qpv = polygon_frame([shapely.box(5.36, 43.29, 5.37, 43.30)], ["QN01301M"])
    lonlat = [offset(5.37, 43.295, 90, 250.0), offset(5.37, 43.295, 90, 900.0), (5.365, 43.295)]
    far = points_frame(lonlat[:2], nom=["a", "b"])
    found = geo.nearest(qpv, far, "nom")
    assert found["nom"].tolist() == ["a"] and found["nearest_index"].tolist() == [0]
    assert found["distance_m"].iloc[0] == pytest.approx(geodesic_distance(*lonlat[0], qpv.geometry.iloc[0]),
                                                        abs=TOLERANCE_M)
    assert geo.nearest(qpv, points_frame(lonlat, nom=["a", "b", "c"]), "nom")["distance_m"].tolist() == [0.0]
    assert geo.nearest(qpv, far, "nom", max_distance_m=100.0)["nom"].isna().all()
    assert geo.nearest(qpv, far, "nom", max_distance_m=300.0)["nom"].tolist() == ["a"]


def test_territories_are_never_paired() -> None:
    """Features are paired only within one territory: by their ``territoire`` column, or where
    it is missing, by the box that holds them."""
    guadeloupe = polygon_frame([square(-61.53, 16.24, 300)], ["QN97101M"], territoire="guadeloupe")
    martinique_point = points_frame([(-61.06, 14.62)], territoire="martinique")
    assert geo.distances_to_polygons(martinique_point, guadeloupe, 1e6, "code_qp").empty
    found = geo.nearest(martinique_point, guadeloupe, "code_qp")
    assert found["code_qp"].isna().all() and found["distance_m"].isna().all()

    lon, lat = PLACES["fort_de_france"][1:3]
    martinique = polygon_frame([square(lon, lat, 300)], ["QN97201M"], territoire="martinique")
    next_door = offset(lon, lat, 90.0, 310.0)
    claimed = points_frame([next_door, next_door], territoire="guadeloupe")
    claimed["territoire"] = pd.array(["guadeloupe", None], dtype="string")  # the second is located: Martinique
    assert geo.distances_to_polygons(claimed, martinique, 1000.0, "code_qp")["point_index"].tolist() == [1]
    assert geo.nearest(claimed, martinique, "code_qp")["code_qp"].isna().tolist() == [True, False]
    both = geo.within_and_nearest(martinique, claimed, 1000.0, "territoire")
    assert both.target.tolist() == [1] and both.nearest.tolist() == [1]
    assert geo.within_distance(claimed, martinique, 1000.0)["source_index"].tolist() == [1]


@pytest.mark.parametrize("keys", [
    pd.array(["QN2", "QN1", "QN3"], dtype="string"),
    pd.array(["QN2", "QN1", "QN3"], dtype=object),
    pd.array([20, 10, 30], dtype="Int64"),
])
def test_ties_go_to_the_first_key(keys) -> None:
    """A point inside three overlapping polygons is at distance 0 from each: the first key wins
    (and a polygon without key comes last)."""
    polygons = polygon_frame([square(5.37, 43.30, 300), square(5.37, 43.30, 200), square(5.37, 43.30, 100)],
                             ["a", "b", "c"])
    polygons["key"] = keys
    points = points_frame([(5.37, 43.30), offset(5.37, 43.30, 90, 250)])
    first = keys[1]
    assert geo.nearest(points, polygons, "key")["key"].tolist() == [first, keys[0]]
    assert geo.points_in_polygons(points, polygons, "key").tolist() == [first, keys[0]]
    both = geo.within_and_nearest(points, polygons, 0.0, "key")
    assert both.nearest.tolist() == [1, 0] and both.nearest_distance_m.tolist() == [0.0, 0.0]
    assert geo.distances_to_polygons(points, polygons, 0.0, "key")["key"].tolist()[:3] == sorted(keys)
    polygons["key"] = pd.array([None, None, keys[2]], dtype=keys.dtype)
    assert geo.nearest(points.iloc[:1], polygons, "key")["key"].tolist() == [keys[2]]


def test_empty_and_missing_inputs() -> None:
    qpv = polygon_frame([shapely.box(5.36, 43.29, 5.37, 43.30)], ["QN01301M"])
    points = points_frame([(5.365, 43.295)])
    empty_pairs = geo.distances_to_polygons(points, qpv.iloc[0:0], 1000.0, "code_qp")
    assert empty_pairs.empty
    assert list(empty_pairs.columns) == ["point_index", "polygon_index", "code_qp", "distance_m"]
    assert geo.nearest(points, qpv.iloc[0:0], "code_qp")["code_qp"].isna().all()
    with_null = points_frame([(5.365, 43.295), (5.365, 43.296)])
    with_null.loc[0, "geometry"] = None
    found = geo.nearest(with_null, qpv, "code_qp")
    assert found["distance_m"].isna().tolist() == [True, False]
    assert len(geo.nearest(qpv, points.iloc[0:0], "territoire")) == 1
    both = geo.within_and_nearest(with_null, qpv, 10.0, "code_qp")
    assert both.source.tolist() == [1] and both.nearest.tolist() == [-1, 0]
    assert np.isnan(both.nearest_distance_m[0])
    no_targets = geo.within_and_nearest(qpv, points.iloc[0:0], 10.0, "territoire")
    assert no_targets.nearest.tolist() == [-1] and len(no_targets.source) == 0


@pytest.mark.parametrize("radius", [-1, float("nan"), float("inf")])
def test_invalid_radius_is_refused(radius: float) -> None:
    qpv = polygon_frame([shapely.box(5.36, 43.29, 5.37, 43.30)], ["QN01301M"])
    with pytest.raises(ValueError, match="rayon"):
        geo.distances_to_polygons(points_frame([(5.3, 43.3)]), qpv, radius, "code_qp")


@pytest.mark.parametrize("code", sorted(TERRITORIES))
def test_the_search_widening_covers_the_projection_scale(code: str) -> None:
    """The candidates' planar search distance is the radius times the largest scale factor of
    the territory's projection: check it against the factor anywhere in the territory."""
    territory = TERRITORIES[code]
    rng = np.random.default_rng(1)
    lon0, lat0, lon1, lat1 = territory.bbox
    factors = Proj(territory.epsg).get_factors(rng.uniform(lon0, lon1, 2000), rng.uniform(lat0, lat1, 2000))
    scales = np.concatenate([factors.meridional_scale, factors.parallel_scale])
    smallest, largest = scale_range(territory)
    assert smallest <= scales.min() and scales.max() <= largest
    assert 0.995 < smallest and largest < 1.005


# --- The one-pass query, both ways, every territory; threads -----------------------------------------


@pytest.fixture(scope="module")
def layers() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Polygons: the real PACA QPVs and QPV-like polygons around a place of each territory.
    Points: scattered around each place but Mayotte's (its polygons have no target), on QPV
    vertices, twice on some (equal distances), and one without geometry."""
    rng = np.random.default_rng(3)
    raw = gpd.read_file(QPV_PACA)
    geoms = list(raw.geometry)
    territoire = ["metropole"] * len(geoms)
    lon_pts: list[float] = []
    lat_pts: list[float] = []
    ter_pts: list[str] = []
    for name, (ter, lon, lat, _) in PLACES.items():
        for _ in range(6):
            geoms.append(blob(lon + rng.normal(0, 0.03), lat + rng.normal(0, 0.03), rng.uniform(150, 600), rng, 12))
            territoire.append(ter)
        if name != "mamoudzou":
            lon_pts += list(lon + rng.normal(0, 0.05, 100))
            lat_pts += list(lat + rng.normal(0, 0.05, 100))
            ter_pts += [ter] * 100
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
    found = _assert_as_the_two_queries(polygons, points, radius_m, "nom")
    mayotte = (polygons["territoire"] == "mayotte").to_numpy()
    assert (found.nearest[mayotte] == -1).all() and np.isnan(found.nearest_distance_m[mayotte]).all()
    assert (found.nearest[~mayotte] >= 0).all()
    assert (found.nearest_distance_m == 0).sum() > 10  # points on vertices, in polygons
    _assert_as_the_two_queries(points, polygons, radius_m, "code_qp")


def test_concurrent_queries_give_the_same_answer(layers) -> None:
    """Streamlit serves each session on its own thread: queries on the same frames at once all
    equal the query made alone."""
    polygons, points = layers
    alone = geo.within_and_nearest(polygons, points, 1000.0, "nom")
    alone_pairs = geo.distances_to_polygons(points, polygons, 500.0, "code_qp")
    alone_nearest = geo.nearest(points, polygons, "code_qp")
    start = threading.Barrier(4)

    def query(_: int) -> tuple[geo.RadiusAndNearest, pd.DataFrame, pd.DataFrame]:
        start.wait()
        return (geo.within_and_nearest(polygons, points, 1000.0, "nom"),
                geo.distances_to_polygons(points, polygons, 500.0, "code_qp"), geo.nearest(points, polygons, "code_qp"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(query, range(8)))
    for found, pairs, nearest in results:
        for field in ("source", "target", "distance_m", "nearest", "nearest_distance_m"):
            np.testing.assert_array_equal(getattr(found, field), getattr(alone, field))
        pd.testing.assert_frame_equal(pairs, alone_pairs)
        pd.testing.assert_frame_equal(nearest, alone_nearest)
    assert not shapely.is_prepared(polygons.geometry.to_numpy()).any()
