"""essmap.geo: input checks, territories, and point in polygon against a plain Shapely loop."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from geo_helpers import PLACES, QPV_PACA, offset, points_frame, polygon_frame, square

from essmap import geo
from essmap.domain.errors import SpatialInputError
from essmap.domain.territories import TERRITORIES

# --- Territories and input checks ----------------------------------------------------------------


@pytest.mark.parametrize("place", sorted(PLACES))
def test_metric_groups_use_the_territory_crs(place: str) -> None:
    territoire, lon, lat, epsg = PLACES[place]
    frame = points_frame([(lon, lat)], territoire=None)  # located by bounding box
    groups = list(geo.metric_groups(frame))
    assert [(t.code, g.crs.to_epsg()) for t, g in groups] == [(territoire, epsg)]
    assert groups[0][1].index.tolist() == [0]


def test_metric_groups_split_by_territoire_column() -> None:
    marseille, cayenne = PLACES["marseille"][1:3], (-52.3135, 4.9224)
    frame = pd.concat([points_frame([marseille]), points_frame([cayenne], territoire="guyane"),
                       points_frame([PLACES["bonifacio"][1:3]])], ignore_index=True)
    groups = {t.code: g for t, g in geo.metric_groups(frame)}
    assert sorted(groups) == ["guyane", "metropole"]
    assert groups["metropole"].index.tolist() == [0, 2]
    assert groups["metropole"].crs.to_epsg() == 2154 and groups["guyane"].crs.to_epsg() == 2972
    # Lambert-93 coordinates of Marseille: x ~ 893 km, y ~ 6 245 km
    x, y = groups["metropole"].geometry.iloc[0].coords[0]
    assert 880_000 < x < 905_000 and 6_235_000 < y < 6_255_000
    metric = geo.to_metric(frame.geometry.to_numpy()[:1], TERRITORIES["metropole"])
    assert shapely.equals_exact(metric[0], groups["metropole"].geometry.iloc[0], tolerance=1e-6)


def test_missing_territoire_values_are_located_by_bounding_box() -> None:
    frame = points_frame([PLACES["marseille"][1:3], PLACES["saint_denis"][1:3], PLACES["mamoudzou"][1:3]])
    frame["territoire"] = pd.array(["metropole", None, "inconnu"], dtype="string")
    frame.loc[3, "geometry"] = None  # neither geometry nor territory
    frame.loc[3, "territoire"] = pd.NA
    assert geo.territory_codes(frame).tolist() == ["metropole", "reunion", "mayotte", ""]
    assert [(t.code, g.crs.to_epsg()) for t, g in geo.metric_groups(frame)] == [
        ("metropole", 2154), ("reunion", 2975), ("mayotte", 4471),
    ]


def test_non_wgs84_frame_is_refused_naming_both_crs() -> None:
    frame = points_frame([PLACES["marseille"][1:3]]).to_crs(2154)
    with pytest.raises(SpatialInputError) as error:
        list(geo.metric_groups(frame))
    assert "EPSG:2154" in str(error.value) and "EPSG:4326" in str(error.value)
    with pytest.raises(SpatialInputError, match="EPSG:4326"):
        geo.points_in_polygons(frame, frame, "territoire")
    without = points_frame([PLACES["marseille"][1:3]]).set_crs(None, allow_override=True)
    with pytest.raises(SpatialInputError, match="pas de système"):
        geo.nearest(without, without, "territoire")
    with pytest.raises(SpatialInputError, match="GeoDataFrame"):
        geo.require_wgs84(pd.DataFrame(), "points")


def test_features_outside_every_territory_are_refused() -> None:
    lon, lat = PLACES["marseille"][1:3]
    swapped = points_frame([(lat, lon)], territoire=None)  # lat/lon swapped: in Africa
    polygons = polygon_frame([square(lon, lat, 200)], ["QN01301M"])
    with pytest.raises(SpatialInputError, match="longitude/latitude"):
        geo.distances_to_polygons(swapped, polygons, 100.0, "code_qp")


# --- Point in polygon: boundary, overlaps, missing -----------------------------------------------


@pytest.fixture
def marseille_square() -> gpd.GeoDataFrame:
    """A 1 km square QPV in Marseille, with exactly representable edges (constant lon/lat)."""
    return polygon_frame([shapely.box(5.36, 43.29, 5.37, 43.30)], ["QN01301M"])


def test_point_on_boundary_is_inside(marseille_square) -> None:
    points = points_frame([(5.365, 43.29), (5.36, 43.30), (5.365, 43.2899), (5.365, 43.295)])
    inside = geo.points_in_polygons(points, marseille_square, "code_qp")
    assert inside.index.equals(points.index) and inside.name == "code_qp" and inside.dtype == "string"
    assert inside.fillna("-").tolist() == ["QN01301M", "QN01301M", "-", "QN01301M"]  # edge, vertex, 11 m south, inside


def test_overlapping_polygons_first_key_wins() -> None:
    big = shapely.box(5.36, 43.29, 5.38, 43.31)
    small = shapely.box(5.365, 43.295, 5.37, 43.30)
    qpv = polygon_frame([big, small], ["QN01399Z", "QN01301A"])
    points = points_frame([(5.367, 43.297), (5.375, 43.305), (5.365, 43.297)])  # both, big only, both (edge)
    assert geo.points_in_polygons(points, qpv, "code_qp").tolist() == ["QN01301A", "QN01399Z", "QN01301A"]


def test_empty_and_missing_inputs(marseille_square) -> None:
    points = points_frame([(5.365, 43.295)])
    assert geo.points_in_polygons(points, marseille_square.iloc[0:0], "code_qp").isna().all()
    with_null = points_frame([(5.365, 43.295), (5.365, 43.296)])
    with_null.loc[0, "geometry"] = None
    with_null.loc[1, "geometry"] = shapely.Point()
    assert geo.points_in_polygons(with_null, marseille_square, "code_qp").isna().all()
    assert len(geo.points_in_polygons(points.iloc[0:0], marseille_square, "code_qp")) == 0
    layer = polygon_frame([None, shapely.box(5.36, 43.29, 5.37, 43.30)], ["QN01300A", "QN01301M"])
    assert geo.points_in_polygons(points, layer, "code_qp").tolist() == ["QN01301M"]


def test_holes_parts_far_apart_and_other_geometry_types() -> None:
    """A polygon with a hole, an island in the hole, a polygon overlapping both with a key
    between theirs, a MultiPolygon in La Réunion; points on the hole's edge, the island's edge,
    a corner in La Réunion; a line counts as in every polygon it meets."""
    outer = shapely.box(5.30, 43.25, 5.40, 43.35)
    hole = shapely.box(5.33, 43.28, 5.37, 43.32)
    ring = shapely.Polygon(outer.exterior.coords, [hole.exterior.coords])
    island = shapely.box(5.34, 43.29, 5.36, 43.31)
    across = shapely.box(5.35, 43.26, 5.45, 43.30)
    reunion = shapely.MultiPolygon([shapely.box(55.4, -21.0, 55.5, -20.9), shapely.box(55.6, -21.2, 55.7, -21.1)])
    layer = polygon_frame([island, ring, None, across, reunion], ["QN013C", "QN013A", "QN013Z", "QN013B", "QN974A"],
                          territoire=None)
    rng = np.random.default_rng(4)
    lon = np.concatenate([rng.uniform(5.28, 5.47, 20_000), rng.uniform(55.35, 55.75, 5_000),
                          [5.33, 5.345, 55.4, 5.40, 5.335]])
    lat = np.concatenate([rng.uniform(43.23, 43.37, 20_000), rng.uniform(-21.25, -20.85, 5_000),
                          [43.30, 43.31, -21.0, 43.28, 43.30]])
    points = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs=4326)
    result = geo.points_in_polygons(points, layer, "code_qp")
    assert result.fillna("-").tolist() == _first_key_reference(points.geometry.to_numpy(), layer, "code_qp")
    assert result.iloc[-5:].fillna("-").tolist() == ["QN013A", "QN013C", "QN974A", "QN013A", "-"]
    assert {"QN013A", "QN013B", "QN013C", "QN974A"} <= set(result.dropna())
    line = gpd.GeoDataFrame(geometry=[shapely.LineString([(5.31, 43.30), (5.345, 43.30)])], crs=4326)
    assert geo.points_in_polygons(line, layer, "code_qp").tolist() == ["QN013A"]  # meets the ring and the island


# --- Point in polygon against a plain Shapely loop on real layers --------------------------------


def _first_key_reference(points: np.ndarray, polygons: gpd.GeoDataFrame, key: str) -> list[str]:
    """For each point, the smallest key among the polygons that cover it, by a loop over every
    polygon whose box holds the point ("-" when none)."""
    ordered = sorted((k, g, g.bounds) for k, g in zip(polygons[key], polygons.geometry, strict=True) if g is not None)
    expected = []
    for point in points:
        if point is None or point.is_empty:
            expected.append("-")
            continue
        x, y = point.x, point.y
        expected.append(next((k for k, g, (x0, y0, x1, y1) in ordered
                              if x0 <= x <= x1 and y0 <= y <= y1 and g.covers(point)), "-"))
    return expected


def _points_around(polygons: gpd.GeoDataFrame, seed: int, n: int = 4_000) -> np.ndarray:
    """Random points over the polygons' box and beyond (sea: in none), a cluster on Marseille,
    some vertices and edge midpoints (on boundaries shared by two polygons), a missing and an
    empty point."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = polygons.total_bounds
    coords = shapely.get_coordinates(polygons.geometry.to_numpy())
    picked = rng.choice(len(coords) - 1, n // 4, replace=False)
    midpoints = (coords[picked] + coords[picked + 1]) / 2
    lon = np.concatenate([rng.uniform(x0 - 0.05, x1 + 0.05, n), rng.normal(5.38, 0.03, n),
                          coords[picked, 0], midpoints[:, 0]])
    lat = np.concatenate([rng.uniform(y0 - 0.05, y1 + 0.05, n), rng.normal(43.30, 0.03, n),
                          coords[picked, 1], midpoints[:, 1]])
    points = shapely.points(lon, lat)
    points[5] = None
    points[6] = shapely.Point()
    return points


def test_points_in_polygons_equals_shapely_loop_on_real_qpv(paca_qpv) -> None:
    rng = np.random.default_rng(20240101)
    bounds = shapely.bounds(paca_qpv.geometry.to_numpy())
    lon = np.concatenate([rng.uniform(b[0] - 0.002, b[2] + 0.002, 25) for b in bounds])
    lat = np.concatenate([rng.uniform(b[1] - 0.002, b[3] + 0.002, 25) for b in bounds])
    vertices = np.concatenate([shapely.get_coordinates(g)[:: max(1, len(shapely.get_coordinates(g)) // 8)]
                               for g in paca_qpv.geometry])
    lon = np.concatenate([lon, vertices[:, 0], rng.uniform(4.2, 7.7, 500)])
    lat = np.concatenate([lat, vertices[:, 1], rng.uniform(43.0, 45.1, 500)])
    points = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs=4326)  # no territoire
    result = geo.points_in_polygons(points, paca_qpv, "code_qp")
    assert result.notna().sum() > 1000  # the vertices alone
    assert result.fillna("-").tolist() == _first_key_reference(points.geometry.to_numpy(), paca_qpv, "code_qp")


def test_qpv_extract_is_the_documented_file() -> None:
    meta = json.loads(QPV_PACA.read_text(encoding="utf-8"))
    assert meta.get("millesime") == "2025" and len(meta["features"]) == 135


def test_first_key_equals_shapely_on_real_communes_with_arrondissements(communes_13_83) -> None:
    """Points on shared boundaries, in the arrondissements (Marseille 13055 before 13201...),
    at sea; index not in row order."""
    points = _points_around(communes_13_83, seed=9)
    frame = gpd.GeoDataFrame(geometry=points, crs=4326, index=np.arange(len(points))[::-1])
    result = geo.points_in_polygons(frame, communes_13_83, "code_insee")
    assert result.index.equals(frame.index) and result.dtype == "string"
    assert result.fillna("-").tolist() == _first_key_reference(points, communes_13_83, "code_insee")
    assert result.isna().sum() > 300 and (result == "13055").sum() > 1_000  # at sea; Marseille
    assert result.iloc[5:7].isna().all()  # missing, empty


def test_points_in_polygon_layers_equals_one_call_per_layer(communes_13_83, paca_qpv) -> None:
    points = _points_around(communes_13_83, seed=10)
    frame = gpd.GeoDataFrame({"n": np.arange(len(points))}, geometry=points, crs=4326,
                             index=pd.Index(np.arange(len(points)) * 2 + 1))
    both = geo.points_in_polygon_layers(frame, {"code_qp": paca_qpv, "code_insee": communes_13_83})
    assert both.columns.tolist() == ["code_qp", "code_insee"] and both.index.equals(frame.index)
    for key, layer in (("code_qp", paca_qpv), ("code_insee", communes_13_83)):
        alone = geo.points_in_polygons(frame, layer, key)
        assert both[key].dtype == alone.dtype
        assert both[key].fillna("-").tolist() == alone.fillna("-").tolist()
    assert both["code_qp"].notna().sum() > 50


def test_points_in_polygon_layers_checks_each_layer(marseille_square) -> None:
    points = points_frame([(5.37, 43.30)])
    with pytest.raises(SpatialInputError, match=r"layers\['code_qp'\]"):
        geo.points_in_polygon_layers(points, {"code_qp": marseille_square.to_crs(2154)})
    with pytest.raises(KeyError, match="code_insee"):
        geo.points_in_polygon_layers(points, {"code_insee": marseille_square})


# --- Threads and inputs ----------------------------------------------------------------------------


def test_concurrent_calls_on_the_same_layers_give_the_same_answer(communes_13_83, paca_qpv) -> None:
    """Streamlit serves each session on its own thread: calls on the same frames at once all equal
    the call made alone, and the caller's geometries are never prepared nor changed."""
    points = gpd.GeoDataFrame(geometry=_points_around(communes_13_83, seed=12), crs=4326)
    layers = {"code_qp": paca_qpv, "code_insee": communes_13_83}
    before = communes_13_83.geometry.to_numpy().copy()
    alone = geo.points_in_polygon_layers(points, layers)
    start = threading.Barrier(4)

    def query(_: int) -> pd.DataFrame:
        start.wait()
        return geo.points_in_polygon_layers(points, layers)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(query, range(8)))
    for answer in answers:
        pd.testing.assert_frame_equal(answer, alone)
    geoms = communes_13_83.geometry.to_numpy()
    assert not shapely.is_prepared(geoms).any() and not shapely.is_prepared(paca_qpv.geometry.to_numpy()).any()
    assert all(a is b for a, b in zip(geoms, before, strict=True))


def test_a_point_near_a_polygon_is_outside() -> None:
    """A few centimetres outside a real-looking edge: outside (no tolerance)."""
    lon, lat = PLACES["lille"][1:3]
    polygon = square(lon, lat, 150)
    x0, _, _, y1 = polygon.bounds
    near = offset(x0, (lat + y1) / 2, 270, 0.03)
    on = (x0, (lat + y1) / 2)
    result = geo.points_in_polygons(points_frame([near, on]), polygon_frame([polygon], ["QN05901M"]), "code_qp")
    assert result.fillna("-").tolist() == ["-", "QN05901M"]
