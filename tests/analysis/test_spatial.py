"""essmap.geo against independent references: pyproj.Geod distances, a Shapely loop."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod

from essmap import geo
from essmap.domain.errors import SpatialInputError

GEOD = Geod(ellps="WGS84")
QPV_PACA = Path(__file__).resolve().parents[2] / "data" / "geo" / "qpv2024_paca.geojson"

#: (territoire, lon, lat, metric EPSG) at a real place of each territory.
PLACES = {
    "marseille": ("metropole", 5.3698, 43.2965, 2154),
    "ajaccio": ("metropole", 8.7369, 41.9192, 2154),
    "pointe_a_pitre": ("guadeloupe", -61.5331, 16.2411, 5490),
    "fort_de_france": ("martinique", -61.0588, 14.6161, 5490),
    "cayenne": ("guyane", -52.3135, 4.9224, 2972),
    "saint_denis": ("reunion", 55.4504, -20.8823, 2975),
    "mamoudzou": ("mayotte", 45.2279, -12.7806, 4471),
}


def _irregular_polygon(lon: float, lat: float, radius_m: float, seed: int) -> shapely.Polygon:
    """A star-shaped lon/lat polygon of ~``radius_m`` around (lon, lat), 9 vertices."""
    rng = np.random.default_rng(seed)
    azimuths = np.sort(rng.uniform(0, 360, 9))
    radii = radius_m * rng.uniform(0.6, 1.0, 9)
    x, y, _ = GEOD.fwd(np.full(9, lon), np.full(9, lat), azimuths, radii)
    return shapely.Polygon(np.column_stack([x, y]))


def _geodesic_distance(point: tuple[float, float], geometry: shapely.Geometry, step_m: float = 1.0) -> float:
    """Reference: geodesic distance from ``point`` to the boundary of ``geometry`` densified
    every ``step_m`` metres along geodesics (0 when the point is covered)."""
    if geometry.covers(shapely.Point(point)):
        return 0.0
    lons: list[float] = []
    lats: list[float] = []
    for ring in shapely.get_rings(shapely.get_parts(geometry)):
        coords = np.asarray(ring.coords)
        for (x1, y1), (x2, y2) in zip(coords[:-1], coords[1:]):
            _, _, length = GEOD.inv(x1, y1, x2, y2)
            lons.append(x1)
            lats.append(y1)
            n = int(length // step_m)
            if n > 0:
                inner = GEOD.npts(x1, y1, x2, y2, n)
                lons.extend(p[0] for p in inner)
                lats.extend(p[1] for p in inner)
    lons_a, lats_a = np.asarray(lons), np.asarray(lats)
    _, _, d = GEOD.inv(np.full(len(lons_a), point[0]), np.full(len(lats_a), point[1]), lons_a, lats_a)
    return float(d.min())


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("distance_m", [300.0, 1000.0, 5000.0])
def test_distances_match_geodesic_reference(build, place: str, distance_m: float) -> None:
    territoire, lon, lat, _ = PLACES[place]
    main = _irregular_polygon(lon, lat, 400.0, seed=len(place))
    # second part of the MultiPolygon, on the other side: the distance is to the nearest part
    far_lon, far_lat = build.offset(lon, lat, 200.0, 3000.0)
    other = _irregular_polygon(far_lon, far_lat, 300.0, seed=len(place) + 1)
    qpv = build.qpv_frame([shapely.MultiPolygon([main, other])], ["QN00001M"], territoire=territoire)
    # points placed outward from three vertices of the main part, plus one between the parts
    vertices = np.asarray(main.exterior.coords)[:-1]
    starts = [vertices[0], vertices[3], vertices[6]]
    lonlat = []
    for vx, vy in starts:
        azimuth, _, _ = GEOD.inv(lon, lat, vx, vy)
        lonlat.append(build.offset(vx, vy, azimuth, distance_m))
    lonlat.append(build.offset(lon, lat, 200.0, 1500.0))
    points = build.points_frame(lonlat, territoire=territoire)
    reference = np.array([_geodesic_distance(p, qpv.geometry.iloc[0]) for p in lonlat])

    pairs = geo.distances_to_polygons(points, qpv, 6000.0, "code_qp")
    measured = pairs.set_index("point_index")["distance_m"].reindex(points.index).to_numpy()
    tolerance = np.maximum(2.0, 0.005 * reference)
    assert np.all(np.abs(measured - reference) <= tolerance), (place, measured, reference)

    found = geo.nearest(points, qpv, "code_qp")
    assert np.allclose(found["distance_m"].to_numpy(dtype=float), measured)
    assert (found["code_qp"] == "QN00001M").all()


@pytest.mark.parametrize("place", sorted(PLACES))
def test_metric_groups_use_the_territory_crs(build, place: str) -> None:
    territoire, lon, lat, epsg = PLACES[place]
    frame = build.points_frame([(lon, lat)], territoire=None)  # located by bounding box
    groups = list(geo.metric_groups(frame))
    assert [(t.code, g.crs.to_epsg()) for t, g in groups] == [(territoire, epsg)]
    assert groups[0][1].index.tolist() == [0]


def test_metric_groups_split_by_territoire_column(build) -> None:
    frame = pd.concat(
        [
            build.points_frame([PLACES["marseille"][1:3]], territoire="metropole"),
            build.points_frame([PLACES["cayenne"][1:3]], territoire="guyane"),
            build.points_frame([PLACES["ajaccio"][1:3]], territoire="metropole"),
        ],
        ignore_index=True,
    )
    groups = {t.code: g for t, g in geo.metric_groups(frame)}
    assert sorted(groups) == ["guyane", "metropole"]
    assert groups["metropole"].index.tolist() == [0, 2]
    assert groups["metropole"].crs.to_epsg() == 2154
    assert groups["guyane"].crs.to_epsg() == 2972
    # Lambert-93 coordinates of Marseille: x ~ 893 km, y ~ 6 245 km
    x, y = groups["metropole"].geometry.iloc[0].coords[0]
    assert 880_000 < x < 905_000 and 6_235_000 < y < 6_255_000


def test_missing_territoire_values_are_located_by_bounding_box(build) -> None:
    frame = build.points_frame([PLACES["marseille"][1:3], PLACES["saint_denis"][1:3]], territoire="metropole")
    frame["territoire"] = pd.array(["metropole", None], dtype="string")
    assert geo.territory_codes(frame).tolist() == ["metropole", "reunion"]
    assert [(t.code, g.crs.to_epsg()) for t, g in geo.metric_groups(frame)] == [
        ("metropole", 2154), ("reunion", 2975),
    ]


def test_non_wgs84_frame_is_refused_naming_both_crs(build) -> None:
    frame = build.points_frame([PLACES["marseille"][1:3]]).to_crs(2154)
    with pytest.raises(SpatialInputError) as error:
        list(geo.metric_groups(frame))
    assert "EPSG:2154" in str(error.value) and "EPSG:4326" in str(error.value)
    with pytest.raises(SpatialInputError, match="EPSG:4326"):
        geo.points_in_polygons(frame, frame, "territoire")
    without = build.points_frame([PLACES["marseille"][1:3]]).set_crs(None, allow_override=True)
    with pytest.raises(SpatialInputError, match="pas de système"):
        geo.nearest(without, without, "territoire")


def test_features_outside_every_territory_are_refused(build) -> None:
    lat, lon = PLACES["marseille"][2], PLACES["marseille"][1]
    swapped = build.points_frame([(lat, lon)], territoire=None)  # lat/lon swapped: in Africa
    polygons = build.qpv_frame([build.square(lon, lat, 200)], ["QN01301M"])
    with pytest.raises(SpatialInputError, match="longitude/latitude"):
        geo.distances_to_polygons(swapped, polygons, 100.0, "code_qp")


# --- Edge cases --------------------------------------------------------------------------------


@pytest.fixture
def marseille_square(build) -> gpd.GeoDataFrame:
    """A 1 km square QPV in Marseille, with exactly representable edges (constant lon/lat)."""
    polygon = shapely.box(5.36, 43.29, 5.37, 43.30)
    return build.qpv_frame([polygon], ["QN01301M"])


def test_point_on_boundary_is_inside_at_distance_zero(build, marseille_square) -> None:
    on_edge = (5.365, 43.29)  # on the southern edge
    on_vertex = (5.36, 43.30)
    outside = (5.365, 43.2899)  # ~11 m south
    points = build.points_frame([on_edge, on_vertex, outside])
    inside = geo.points_in_polygons(points, marseille_square, "code_qp")
    assert inside.tolist()[:2] == ["QN01301M", "QN01301M"] and pd.isna(inside.iloc[2])
    zero = geo.distances_to_polygons(points, marseille_square, 0.0, "code_qp")
    assert zero["point_index"].tolist() == [0, 1]
    assert (zero["distance_m"] == 0.0).all()
    found = geo.nearest(points, marseille_square, "code_qp")
    assert found["distance_m"].tolist()[:2] == [0.0, 0.0]
    assert found["distance_m"].iloc[2] == pytest.approx(_geodesic_distance(outside, marseille_square.geometry.iloc[0]), abs=2.0)


def test_radius_zero_keeps_only_inside_points(build, marseille_square) -> None:
    points = build.points_frame([(5.365, 43.295), build.offset(5.37, 43.295, 90, 1.0)])
    pairs = geo.distances_to_polygons(points, marseille_square, 0.0, "code_qp")
    assert pairs["point_index"].tolist() == [0]
    wider = geo.distances_to_polygons(points, marseille_square, 5.0, "code_qp")
    assert wider["point_index"].tolist() == [0, 1]
    assert wider["distance_m"].iloc[1] == pytest.approx(1.0, abs=0.05)


def test_overlapping_polygons_first_key_wins(build) -> None:
    big = shapely.box(5.36, 43.29, 5.38, 43.31)
    small = shapely.box(5.365, 43.295, 5.37, 43.30)
    qpv = build.qpv_frame([big, small], ["QN01399Z", "QN01301A"])
    points = build.points_frame([(5.367, 43.297), (5.375, 43.305)])
    assert geo.points_in_polygons(points, qpv, "code_qp").tolist() == ["QN01301A", "QN01399Z"]
    assert geo.nearest(points, qpv, "code_qp")["code_qp"].tolist() == ["QN01301A", "QN01399Z"]
    pairs = geo.distances_to_polygons(points, qpv, 0.0, "code_qp")
    assert pairs["code_qp"].tolist() == ["QN01301A", "QN01399Z", "QN01399Z"]


def test_territories_are_never_paired(build) -> None:
    guadeloupe = build.qpv_frame(
        [build.square(-61.53, 16.24, 300)], ["QN97101M"], territoire="guadeloupe", insee_dep="971"
    )
    martinique_point = build.points_frame([(-61.06, 14.62)], territoire="martinique")
    assert geo.distances_to_polygons(martinique_point, guadeloupe, 1e6, "code_qp").empty
    found = geo.nearest(martinique_point, guadeloupe, "code_qp")
    assert found["code_qp"].isna().all() and found["distance_m"].isna().all()


def test_empty_and_missing_inputs(build, marseille_square) -> None:
    no_polygon = marseille_square.iloc[0:0]
    points = build.points_frame([(5.365, 43.295)])
    assert geo.points_in_polygons(points, no_polygon, "code_qp").isna().all()
    empty_pairs = geo.distances_to_polygons(points, no_polygon, 1000.0, "code_qp")
    assert empty_pairs.empty
    assert list(empty_pairs.columns) == ["point_index", "polygon_index", "code_qp", "distance_m"]
    assert geo.nearest(points, no_polygon, "code_qp")["code_qp"].isna().all()
    with_null = points.copy()
    with_null.loc[0, "geometry"] = None
    assert geo.points_in_polygons(with_null, marseille_square, "code_qp").isna().all()
    assert geo.nearest(with_null, marseille_square, "code_qp")["distance_m"].isna().all()
    no_point = points.iloc[0:0]
    assert len(geo.points_in_polygons(no_point, marseille_square, "code_qp")) == 0
    assert len(geo.nearest(marseille_square, no_point, "territoire")) == 1


def test_nearest_for_each_polygon_the_nearest_point(build, marseille_square) -> None:
    lonlat = [build.offset(5.37, 43.295, 90, 250.0), build.offset(5.37, 43.295, 90, 900.0), (5.365, 43.295)]
    points = build.points_frame(lonlat, nom=["a", "b", "c"])
    far = build.points_frame(lonlat[:2], nom=["a", "b"])
    found = geo.nearest(marseille_square, far, "nom")
    assert found["nom"].tolist() == ["a"]
    assert found["distance_m"].iloc[0] == pytest.approx(250.0, abs=2.0)
    assert geo.nearest(marseille_square, points, "nom")["distance_m"].tolist() == [0.0]
    bounded = geo.nearest(marseille_square, far, "nom", max_distance_m=100.0)
    assert bounded["nom"].isna().all()
    bounded = geo.nearest(marseille_square, far, "nom", max_distance_m=300.0)
    assert bounded["nom"].tolist() == ["a"]


def test_negative_radius_is_refused(build, marseille_square) -> None:
    with pytest.raises(ValueError, match="rayon"):
        geo.distances_to_polygons(build.points_frame([(5.3, 43.3)]), marseille_square, -1, "code_qp")


# --- Point in polygon against a plain Shapely loop on the real PACA QPVs ------------------------


@pytest.fixture(scope="module")
def paca_qpv() -> gpd.GeoDataFrame:
    raw = gpd.read_file(QPV_PACA)
    assert raw.crs.to_epsg() == 4326 and len(raw) == 135
    return gpd.GeoDataFrame(
        {
            "code_qp": raw["q"].astype("string"),
            "lib_qp": raw["n"].astype("string"),
            "generation": "2024",
            "insee_dep": raw["d"].astype("string"),
            "insee_com": raw["com"].map(lambda c: ",".join(c) if isinstance(c, (list, np.ndarray)) else str(c)).astype("string"),
            "territoire": "metropole",
            "epsg_metrique": 2154,
        },
        geometry=raw.geometry.to_numpy(),
        crs=4326,
    )


def test_points_in_polygons_equals_shapely_loop_on_real_qpv(paca_qpv) -> None:
    rng = np.random.default_rng(20240101)
    bounds = shapely.bounds(paca_qpv.geometry.to_numpy())
    # 25 random points in each QPV's bounding box (slightly widened): hits and misses
    lon = np.concatenate([rng.uniform(b[0] - 0.002, b[2] + 0.002, 25) for b in bounds])
    lat = np.concatenate([rng.uniform(b[1] - 0.002, b[3] + 0.002, 25) for b in bounds])
    vertices = np.concatenate(
        [shapely.get_coordinates(g)[:: max(1, len(shapely.get_coordinates(g)) // 8)] for g in paca_qpv.geometry]
    )
    lon = np.concatenate([lon, vertices[:, 0], rng.uniform(4.2, 7.7, 500)])
    lat = np.concatenate([lat, vertices[:, 1], rng.uniform(43.0, 45.1, 500)])
    points = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs=4326)  # no territoire: bbox
    result = geo.points_in_polygons(points, paca_qpv, "code_qp")

    ordered = sorted(zip(paca_qpv["code_qp"], paca_qpv.geometry))
    boxes = [(code, g, g.bounds) for code, g in ordered]
    expected = []
    for x, y in zip(lon, lat):
        point = shapely.Point(x, y)
        hit = next(
            (code for code, g, (x0, y0, x1, y1) in boxes
             if x0 <= x <= x1 and y0 <= y <= y1 and g.covers(point)),
            None,
        )
        expected.append(hit)
    expected_series = pd.Series(expected, dtype="string")
    assert result.notna().sum() > 1000  # the vertices alone
    assert result.fillna("-").tolist() == expected_series.fillna("-").tolist()


def test_qpv_extract_is_the_documented_file() -> None:
    meta = json.loads(QPV_PACA.read_text(encoding="utf-8"))
    assert meta.get("millesime") == "2025"
    assert math.isclose(len(meta["features"]), 135)


# --- The point-in-polygon grid against every candidate tested by Shapely ---------------------

COMMUNES = Path(__file__).resolve().parents[2] / "data" / "geo" / "communes_france.parquet"


def _reference_pairs(points: np.ndarray, polygons: np.ndarray) -> set[tuple[int, int]]:
    """Every (point, polygon) pair that intersects, from Shapely's own predicate query."""
    ip, ig = shapely.STRtree(polygons).query(points, predicate="intersects")
    return set(zip(ip.tolist(), ig.tolist()))


def test_point_in_polygon_grid_equals_shapely_on_real_communes() -> None:
    """The grid decides whole cells by one centre test: check it on the real communes of the
    Bouches-du-Rhône and Var (shared boundaries, arrondissements overlapping Marseille),
    with a dense cluster (refined tiles), every 3rd vertex and edge midpoints (boundaries)."""
    communes = gpd.read_parquet(COMMUNES)
    communes = communes[communes["code_departement"].isin(["13", "83"])].reset_index(drop=True)
    polygons = communes.geometry.to_numpy()
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = shapely.total_bounds(polygons)
    coords = shapely.get_coordinates(polygons)
    midpoints = (coords[:-1] + coords[1:]) / 2
    lon = np.concatenate([
        rng.uniform(x0 - 0.05, x1 + 0.05, 20_000),
        rng.normal(5.38, 0.03, 40_000),  # dense around Marseille: refined tiles
        coords[::3, 0], midpoints[::5, 0],
    ])
    lat = np.concatenate([
        rng.uniform(y0 - 0.05, y1 + 0.05, 20_000),
        rng.normal(43.30, 0.03, 40_000),
        coords[::3, 1], midpoints[::5, 1],
    ])
    points = shapely.points(lon, lat)
    points[5] = None  # missing and empty points are in no polygon
    points[6] = shapely.Point()
    ip, ig = geo.contains._intersecting_pairs(points, polygons)
    assert len(ip) > 60_000
    assert set(zip(ip.tolist(), ig.tolist())) == _reference_pairs(points, polygons)


def test_point_in_polygon_grid_with_holes_and_far_apart_parts(build) -> None:
    """Holes, multi-part polygons far apart (metropole and Réunion in one layer), a polygon
    inside another's hole, a missing polygon."""
    outer = shapely.box(5.30, 43.25, 5.40, 43.35)
    hole = shapely.box(5.33, 43.28, 5.37, 43.32)
    ring = shapely.Polygon(outer.exterior.coords, [hole.exterior.coords])
    island = shapely.box(5.34, 43.29, 5.36, 43.31)
    reunion = shapely.MultiPolygon([shapely.box(55.4, -21.0, 55.5, -20.9), shapely.box(55.6, -21.2, 55.7, -21.1)])
    polygons = np.array([ring, island, None, reunion], dtype=object)
    rng = np.random.default_rng(3)
    lon = np.concatenate([rng.uniform(5.28, 5.42, 30_000), rng.uniform(55.35, 55.75, 5_000), [5.33, 5.35, 55.4]])
    lat = np.concatenate([rng.uniform(43.23, 43.37, 30_000), rng.uniform(-21.25, -20.85, 5_000), [43.30, 43.29, -21.0]])
    points = shapely.points(lon, lat)
    ip, ig = geo.contains._intersecting_pairs(points, polygons)
    pairs = set(zip(ip.tolist(), ig.tolist()))
    assert pairs == _reference_pairs(points, polygons)
    n = len(points)
    assert {(n - 3, 0), (n - 2, 1), (n - 1, 3)} <= pairs  # on the hole's edge, the island's, a corner


# --- The first polygon by key, on the grid, against Shapely --------------------------------------


def _first_key_reference(points: np.ndarray, polygons: gpd.GeoDataFrame, key: str) -> list[object]:
    """For each point, the smallest key among the polygons Shapely finds intersecting it."""
    ip, ig = shapely.STRtree(polygons.geometry.to_numpy()).query(points, predicate="intersects")
    keys = polygons[key].to_numpy(dtype=object)
    best: dict[int, object] = {}
    for i, j in zip(ip.tolist(), ig.tolist()):
        if i not in best or keys[j] < best[i]:
            best[i] = keys[j]
    return [best.get(i) for i in range(len(points))]


@pytest.fixture(scope="module")
def communes_13_83() -> gpd.GeoDataFrame:
    """Real communes of the Bouches-du-Rhône and Var with Marseille's arrondissements (which
    overlap Marseille), rows shuffled so that key order is not row order."""
    communes = gpd.read_parquet(COMMUNES)
    communes = communes[communes["code_departement"].isin(["13", "83"])]
    communes = communes.sample(frac=1.0, random_state=5)
    communes.index = np.arange(len(communes)) * 7
    return communes[["code_insee", "type_commune", "geometry"]].astype({"code_insee": "string"})


def _points_around(polygons: gpd.GeoDataFrame, seed: int) -> np.ndarray:
    """Random points over the polygons' box and beyond (sea: in none), a dense cluster on
    Marseille, every 3rd vertex and edge midpoints (on boundaries shared by two polygons),
    a missing and an empty point."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = polygons.total_bounds
    coords = shapely.get_coordinates(polygons.geometry.to_numpy())
    midpoints = (coords[:-1] + coords[1:]) / 2
    lon = np.concatenate([rng.uniform(x0 - 0.05, x1 + 0.05, 20_000), rng.normal(5.38, 0.03, 30_000),
                          coords[::3, 0], midpoints[::5, 0]])
    lat = np.concatenate([rng.uniform(y0 - 0.05, y1 + 0.05, 20_000), rng.normal(43.30, 0.03, 30_000),
                          coords[::3, 1], midpoints[::5, 1]])
    points = shapely.points(lon, lat)
    points[5] = None
    points[6] = shapely.Point()
    return points


@pytest.mark.parametrize("split", [False, True])
def test_points_in_polygons_first_key_on_the_grid_equals_shapely(communes_13_83, monkeypatch, split: bool) -> None:
    """On the grid path (more points than vertices), candidates are tested in key order and the
    first hit wins: the same answer as the smallest key among all Shapely hits, for points on
    shared boundaries, in the arrondissements (Marseille 13055 before 13201...), at sea. Split:
    the points in a west and an east half on two threads (as for millions of points)."""
    monkeypatch.setattr(geo.contains, "_PARALLEL_MIN_POINTS", 1_000 if split else 10**9)
    points = _points_around(communes_13_83, seed=9)
    assert geo.contains._grid_pays(len(points), communes_13_83.geometry.to_numpy())
    frame = gpd.GeoDataFrame(geometry=points, crs=4326, index=np.arange(len(points))[::-1])
    result = geo.points_in_polygons(frame, communes_13_83, "code_insee")
    expected = _first_key_reference(points, communes_13_83, "code_insee")
    assert result.index.equals(frame.index) and result.dtype == "string"
    assert result.fillna("-").tolist() == [e or "-" for e in expected]
    assert result.isna().sum() > 1000 and (result == "13055").sum() > 10_000  # at sea; Marseille
    assert result.iloc[5:7].isna().all()  # missing, empty


def test_points_in_polygon_layers_equals_one_call_per_layer(communes_13_83, paca_qpv) -> None:
    """Several layers in one call (coordinates read once, layers on threads, or on one) give
    each layer's own answer, aligned on the points' index, with each key's dtype."""
    points = _points_around(communes_13_83, seed=10)
    frame = gpd.GeoDataFrame({"n": np.arange(len(points))}, geometry=points, crs=4326,
                             index=pd.Index(np.arange(len(points)) * 2 + 1))
    both = geo.points_in_polygon_layers(frame, {"code_qp": paca_qpv, "code_insee": communes_13_83})
    assert both.columns.tolist() == ["code_qp", "code_insee"] and both.index.equals(frame.index)
    one_thread = geo.points_in_polygon_layers(frame, {"code_qp": paca_qpv, "code_insee": communes_13_83}, threads=1)
    pd.testing.assert_frame_equal(one_thread, both)
    for key, layer in (("code_qp", paca_qpv), ("code_insee", communes_13_83)):
        alone = geo.points_in_polygons(frame, layer, key)
        assert both[key].dtype == alone.dtype
        assert both[key].fillna("-").tolist() == alone.fillna("-").tolist()
        assert both[key].fillna("-").tolist() == [e or "-" for e in _first_key_reference(points, layer, key)]
    assert both["code_qp"].notna().sum() > 500


def test_first_key_on_the_grid_with_holes_overlaps_and_overseas(build) -> None:
    """Grid path, first key: a polygon with a hole, an island in the hole, a polygon
    overlapping both with a key between theirs, a MultiPolygon in La Réunion, a missing one."""
    outer = shapely.box(5.30, 43.25, 5.40, 43.35)
    hole = shapely.box(5.33, 43.28, 5.37, 43.32)
    ring = shapely.Polygon(outer.exterior.coords, [hole.exterior.coords])
    island = shapely.box(5.34, 43.29, 5.36, 43.31)
    across = shapely.box(5.35, 43.26, 5.45, 43.30)
    reunion = shapely.MultiPolygon([shapely.box(55.4, -21.0, 55.5, -20.9), shapely.box(55.6, -21.2, 55.7, -21.1)])
    layer = build.qpv_frame([island, ring, None, across, reunion], ["QN013C", "QN013A", "QN013Z", "QN013B", "QN974A"],
                            territoire=None)
    rng = np.random.default_rng(4)
    lon = np.concatenate([rng.uniform(5.28, 5.47, 30_000), rng.uniform(55.35, 55.75, 5_000), [5.33, 5.345, 55.4, 5.40]])
    lat = np.concatenate([rng.uniform(43.23, 43.37, 30_000), rng.uniform(-21.25, -20.85, 5_000), [43.30, 43.31, -21.0, 43.28]])
    points = shapely.points(lon, lat)
    result = geo.points_in_polygons(gpd.GeoDataFrame(geometry=points, crs=4326), layer, "code_qp")
    assert result.fillna("-").tolist() == [e or "-" for e in _first_key_reference(points, layer, "code_qp")]
    # on the hole's edge (ring), the island's edge (island), a corner in La Réunion, the ring's
    # edge inside the overlapping box: QN013A before QN013B
    assert result.iloc[-4:].tolist() == ["QN013A", "QN013C", "QN974A", "QN013A"]
    assert {"QN013A", "QN013B", "QN013C", "QN974A"} <= set(result.dropna())


def test_points_in_polygon_layers_checks_each_layer(build, marseille_square) -> None:
    points = build.points_frame([(5.37, 43.30)])
    with pytest.raises(SpatialInputError, match=r"layers\['code_qp'\]"):
        geo.points_in_polygon_layers(points, {"code_qp": marseille_square.to_crs(2154)})
    with pytest.raises(KeyError, match="code_insee"):
        geo.points_in_polygon_layers(points, {"code_insee": marseille_square})


@pytest.mark.parametrize("bound", [1, 300, 1 << 16, (1 << 16) + 1, 5_000_000, 1 << 40])
def test_argsort_small_ints_is_a_stable_argsort(bound: int) -> None:
    """The radix argsort (one or two 16-bit passes) orders like numpy's stable argsort, ties
    kept in input order, whatever the largest key."""
    keys = np.random.default_rng(bound % 1000).integers(0, bound, 50_000)
    keys[:100] = bound - 1
    assert np.array_equal(geo.contains._argsort_small_ints(keys), np.argsort(keys, kind="stable"))
    assert len(geo.contains._argsort_small_ints(keys[:0])) == 0


# --- Polygon layers built once: shared borders, covered cells, cache, threads -------------------


def test_shared_borders_are_edges_run_both_ways_by_two_valid_polygons() -> None:
    """Two squares side by side share their common edge (each runs it its own way once the
    rings are oriented, whatever the input orientation); a square lying over one of them
    (same direction), a bowtie (invalid) and an edge that only meets a neighbour's edge
    part-way are not shared borders."""
    left = shapely.box(0, 0, 1, 1)
    right = shapely.box(1, 0, 2, 1).reverse()  # clockwise: oriented when the layer is built
    layer = geo.contains._build_polygon_layer(np.array([left, right, None], dtype=object))
    edge_start = np.flatnonzero(layer.shared)
    starts = {(layer.x[i], layer.y[i], layer.x[i + 1], layer.y[i + 1]) for i in edge_start}
    assert starts == {(1.0, 0.0, 1.0, 1.0), (1.0, 1.0, 1.0, 0.0)}
    assert layer.edge.sum() == 8 and np.isnan(layer.bounds[2]).all() and layer.prepared[2] is None

    over = shapely.box(0, 0, 1, 1)  # the same square again: its edges run the same way as left's
    bowtie = shapely.Polygon([(2, 0), (1, 1), (1, 0), (2, 1)])  # invalid, shares x = 1 with right
    half = shapely.box(-1, 0, 0, 0.5)  # meets left's edge x = 0 only from y = 0 to 0.5
    layer = geo.contains._build_polygon_layer(np.array([left, right, over, bowtie, half], dtype=object))
    assert not layer.shared.any()


def test_covered_cells_keep_first_key_answers_on_a_tiling_with_gaps_overlaps_and_an_invalid_tile(
        build, monkeypatch) -> None:
    """A tiling of 900 small squares, keys shuffled, some missing (gaps: points there are in no
    polygon, but for small islands), one duplicated under another key (overlap), one replaced
    by a bowtie (invalid), one holding another in a hole: points in their last candidate's
    covered cells skip that test, and the answers still equal Shapely's smallest key, on one
    thread and in two halves."""
    rng = np.random.default_rng(11)
    size = 0.002
    tiles = [shapely.segmentize(shapely.box(5.3 + i * size, 43.2 + j * size, 5.3 + (i + 1) * size,
                                            43.2 + (j + 1) * size), size / 16)  # short edges
             for i in range(30) for j in range(30)]
    geoms = np.array(tiles, dtype=object)
    gaps = rng.choice(900, 40, replace=False)
    geoms[gaps] = None
    # islands in the gaps, each well inside one grid cell: all their edges within it
    corners = shapely.bounds(np.array(tiles, dtype=object)[gaps[:10]])[:, :2] + 0.3 * size  # off cell sides
    islands = [shapely.box(x - size / 100, y - size / 100, x + size / 100, y + size / 100) for x, y in corners]
    x0, y0 = 5.3 + 10 * size, 43.2 + 10 * size
    geoms[10 * 30 + 10] = shapely.Polygon([(x0, y0), (x0 + size, y0 + size), (x0 + size, y0), (x0, y0 + size)])
    x0 = 5.3 + 20 * size
    geoms[20 * 30 + 20] = shapely.Polygon(tiles[20 * 30 + 20].exterior.coords,
                                          [shapely.box(x0 + size / 4, y0 + size / 4, x0 + 3 * size / 4,
                                                       y0 + 3 * size / 4).exterior.coords])
    geoms = np.append(geoms, [tiles[5 * 30 + 5], shapely.box(x0 + size / 4, y0 + size / 4, x0 + 3 * size / 4, y0 + 3 * size / 4),
                              *islands])
    keys = [f"Q{k:04d}" for k in rng.permutation(len(geoms))]
    layer = build.qpv_frame(list(geoms), keys, territoire=None)
    built = geo.contains._polygon_layer(layer.geometry.to_numpy())
    assert built.shared[built.edge].mean() > 0.85
    coords = shapely.get_coordinates(layer.geometry.to_numpy())
    lon = np.concatenate([rng.uniform(5.299, 5.361, 150_000), coords[:, 0], (coords[:-1, 0] + coords[1:, 0]) / 2])
    lat = np.concatenate([rng.uniform(43.199, 43.261, 150_000), coords[:, 1], (coords[:-1, 1] + coords[1:, 1]) / 2])
    points = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs=4326)
    expected = [e or "-" for e in _first_key_reference(points.geometry.to_numpy(), layer, "code_qp")]

    tested: list[int] = []
    intersects_xy = shapely.intersects_xy

    def counting(geometry, x, y):
        tested.append(len(np.atleast_1d(x)))
        return intersects_xy(geometry, x, y)

    monkeypatch.setattr(geo.contains.shapely, "intersects_xy", counting)
    for split in (False, True):
        monkeypatch.setattr(geo.contains, "_PARALLEL_MIN_POINTS", 1_000 if split else 10**9)
        tested.clear()
        result = geo.points_in_polygons(points, layer, "code_qp")
        assert result.fillna("-").tolist() == expected
        assert sum(tested) < 1.2 * len(points)  # without the covered cells: about 1.5 tests per point
    assert (result == "-").sum() == 0 and result.isna().sum() > 5_000  # in the gaps


def test_covered_cells_ignore_the_borders_of_invalid_polygons(build) -> None:
    """A polygon whose 'hole' lies outside its shell (invalid) and a square on that hole: their
    edges run both ways, yet both lie on the same side of them, and above the square is
    outside every polygon. Only a valid polygon's edges can be shared borders, so the points
    above are tested, and found in none."""
    x0, y0, side = 5.3, 43.2, 0.01
    shell = shapely.box(x0, y0, x0 + side, y0 + side)
    square = shapely.segmentize(shapely.box(x0 + side, y0, x0 + 2 * side, y0 + side), side / 64)
    invalid = shapely.Polygon(shapely.segmentize(shell, side / 64).exterior.coords, [square.exterior.coords[::-1]])
    assert not shapely.is_valid(invalid)
    layer = build.qpv_frame([invalid, square], ["QN013A", "QN013B"], territoire=None)
    rng = np.random.default_rng(13)
    points = shapely.points(rng.uniform(x0 - side / 2, x0 + 2.5 * side, 100_000),
                            rng.uniform(y0 - side / 2, y0 + 1.5 * side, 100_000))
    result = geo.points_in_polygons(gpd.GeoDataFrame(geometry=points, crs=4326), layer, "code_qp")
    assert result.fillna("-").tolist() == [e or "-" for e in _first_key_reference(points, layer, "code_qp")]
    above = (shapely.get_y(points) > y0 + side + 1e-6) & (shapely.get_x(points) > x0 + side)
    assert above.sum() > 10_000 and result[above].isna().all()


def test_polygon_layers_are_built_once_and_never_change_the_input(communes_13_83) -> None:
    """The layer comes from the cache while the same geometries are asked again; a geometry
    replaced in the frame is another layer; the caller's geometries are never prepared."""
    geoms = communes_13_83.geometry.to_numpy()
    geo.contains._POLYGON_CACHE.clear()
    layer = geo.contains._polygon_layer(geoms)
    assert geo.contains._polygon_layer(geoms.copy()) is layer
    assert not shapely.is_prepared(geoms).any() and shapely.is_prepared(layer.prepared).all()
    changed = geoms.copy()
    changed[3] = shapely.box(5.0, 43.0, 5.1, 43.1)
    assert geo.contains._polygon_layer(changed) is not layer
    assert len(geo.contains._POLYGON_CACHE) == 2


def test_concurrent_assignments_on_a_fresh_layer_give_the_same_answer(communes_13_83, monkeypatch) -> None:
    """Streamlit sessions on their threads, each splitting its points in two halves, on the same
    communes with an empty cache: every answer equals the one computed alone (the layer's
    prepared polygons are shared, so their indexes must be built before they are)."""
    monkeypatch.setattr(geo.contains, "_PARALLEL_MIN_POINTS", 1_000)
    points = gpd.GeoDataFrame(geometry=_points_around(communes_13_83, seed=12), crs=4326)
    alone = geo.points_in_polygons(points, communes_13_83, "code_insee").fillna("-").tolist()
    for _ in range(3):
        geo.contains._POLYGON_CACHE.clear()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: geo.points_in_polygons(points, communes_13_83, "code_insee"), range(4)))
        assert all(a.fillna("-").tolist() == alone for a in answers)


def test_a_half_never_covers_cells_that_reach_polygons_it_left_out(build, monkeypatch) -> None:
    """Points split at their median longitude: the west half keeps only the polygons whose box
    starts west of the line. A thin square just east of the line shares its east border with a
    polygon that reaches west of the line further south: in the west half the square is left
    out, its west border unseen, and the cells along the shared border look covered. Only
    cells wholly inside a half may skip their last test: points between the line and the
    square are in no polygon."""
    monkeypatch.setattr(geo.contains, "_PARALLEL_MIN_POINTS", 1_000)
    rng = np.random.default_rng(14)
    y0, y1 = 43.2, 43.21
    x = np.concatenate([rng.uniform(5.349, 5.350, 60_000), rng.uniform(5.45, 5.46, 40_000)])
    y = rng.uniform(y0, y1, len(x))
    split = float(np.median(x[:: max(1, len(x) // 10_000)]))  # as _first_containing splits
    west, east = split + 1e-6, split + 2e-6
    ys = np.linspace(y0, y1, 201)  # a vertex every 5 m on the shared border
    square = shapely.Polygon([(west, y0), *[(east, v) for v in ys], (west, y1)])
    reaching = shapely.Polygon([(split - 0.01, y0 - 0.02), (split + 0.02, y0 - 0.02), (split + 0.02, y1),
                                *[(east, v) for v in ys[::-1]], (split - 0.01, y0)])
    layer = build.qpv_frame([reaching, square], ["QN013A", "QN013B"], territoire=None)
    assert geo.contains._polygon_layer(layer.geometry.to_numpy()).shared.sum() == 2 * 200
    points = shapely.points(x, y)
    result = geo.points_in_polygons(gpd.GeoDataFrame(geometry=points, crs=4326), layer, "code_qp")
    assert result.fillna("-").tolist() == [e or "-" for e in _first_key_reference(points, layer, "code_qp")]
    assert result[x < west].isna().all() and (x < split).sum() > 40_000 and (result == "QN013A").sum() > 1_000
