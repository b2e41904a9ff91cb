"""QPV x tiers-lieux / establishments proximity, statuses, supplier search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS, Geod

from essmap.analysis import coverage, proximity
from essmap.domain.errors import SpatialInputError
from essmap.domain.nomenclature import SCOP_CODES
from essmap.domain.selection import Selection

GEOD = Geod(ellps="WGS84")
LON, LAT = 5.3698, 43.2965  # Marseille


@pytest.fixture
def qpv(build):
    """Three QPVs in Marseille: A (500 m square), B (two parts, spanning two communes, its west
    edge 1,900 m east of A's east edge), C (400 m square, 19.8 km north of A's centre)."""
    a = build.square(LON, LAT, 250)
    b_lon, b_lat = build.offset(LON, LAT, 90, 2300)
    b = shapely.MultiPolygon([build.square(b_lon, b_lat, 150), build.square(*build.offset(b_lon, b_lat, 0, 1500), 150)])
    c = build.square(*build.offset(LON, LAT, 0, 20_000), 200)
    return build.qpv_frame(
        [a, b, c], ["QN01301M", "QN01302M", "QN01303M"],
        insee_com=["13201", "13204,13205", "13001"],
    )


def east_of_a(build, metres: float) -> tuple[float, float]:
    """A point ``metres`` east of QPV A's eastern edge."""
    edge = build.offset(LON, LAT, 90, 250)
    return build.offset(*edge, 90, metres)


@pytest.fixture
def tiers_lieux(build):
    lonlat = [
        (LON, LAT),  # TL1 inside A
        east_of_a(build, 800),  # TL2 800 m from A
        east_of_a(build, 1500),  # TL3 1.5 km from A, 400 m from B
    ]
    return build.tiers_lieux_frame(lonlat, synthetic=[False, True, False])


def test_qpv_tiers_lieux_counts_and_nearest(qpv, tiers_lieux) -> None:
    result = proximity.qpv_tiers_lieux(qpv, tiers_lieux, radius_m=1000)
    assert result.crs.to_epsg() == 4326
    assert list(result.columns) == [
        "code_qp", "lib_qp", "insee_com", "lib_com", "n_tiers_lieux", "nearest_id", "nearest_nom",
        "nearest_distance_m", "covered", "is_synthetic_involved", "radius_m", "geometry",
    ]
    assert result["n_tiers_lieux"].tolist() == [2, 1, 0]
    assert result["covered"].tolist() == [True, True, False]
    assert result["nearest_id"].tolist() == ["TL1", "TL3", "TL1"]
    assert result["nearest_nom"].tolist()[0] == "Tiers-lieu TL1"
    distances = result["nearest_distance_m"].to_numpy(dtype=float)
    assert distances[0] == 0.0
    # C is 20 km north of A's centre, 200 m half-side: nearest tiers-lieu TL1, ~19.8 km, beyond the radius
    assert distances[2] == pytest.approx(19_800, rel=0.005)
    # TL2 (synthetic) counts for A only
    assert result["is_synthetic_involved"].tolist() == [True, False, False]
    assert proximity.white_zones(result)["code_qp"].tolist() == ["QN01303M"]
    assert coverage.coverage_share(result) == pytest.approx(2 / 3)


def test_radius_changes_coverage(qpv, tiers_lieux) -> None:
    within_500 = proximity.qpv_tiers_lieux(qpv, tiers_lieux, radius_m=500)
    assert within_500["n_tiers_lieux"].tolist() == [1, 1, 0]
    zero = proximity.qpv_tiers_lieux(qpv, tiers_lieux, radius_m=0)
    assert zero["n_tiers_lieux"].tolist() == [1, 0, 0]
    assert zero["radius_m"].iloc[0] == 0.0


def test_tiers_lieu_on_the_boundary_counts_at_radius_zero(build) -> None:
    qpv = build.qpv_frame([shapely.box(5.36, 43.29, 5.37, 43.30)], ["QN01301M"])
    tl = build.tiers_lieux_frame([(5.37, 43.295)])
    result = proximity.qpv_tiers_lieux(qpv, tl, radius_m=0)
    assert result["n_tiers_lieux"].tolist() == [1] and result["nearest_distance_m"].tolist() == [0.0]
    status = proximity.tiers_lieux_qpv_status(tl, qpv, radius_m=0)
    assert status["status"].tolist() == ["dans un QPV"]


def test_no_tiers_lieu_at_all(qpv, tiers_lieux) -> None:
    result = proximity.qpv_tiers_lieux(qpv, tiers_lieux.iloc[0:0])
    assert len(result) == 3
    assert not result["covered"].any()
    assert result["nearest_id"].isna().all() and result["nearest_distance_m"].isna().all()
    assert coverage.coverage_share(result) == 0.0


def test_departement_without_qpv(qpv, tiers_lieux) -> None:
    result = proximity.qpv_tiers_lieux(qpv.iloc[0:0], tiers_lieux)
    assert result.empty
    assert "n_tiers_lieux" in result.columns and "covered" in result.columns
    assert np.isnan(coverage.coverage_share(result))
    status = proximity.tiers_lieux_qpv_status(tiers_lieux, qpv.iloc[0:0])
    assert status["nearest_qpv"].isna().all()
    assert status["status"].tolist() == ["plus loin"] * 3


def test_tiers_lieux_status(qpv, tiers_lieux) -> None:
    status = proximity.tiers_lieux_qpv_status(tiers_lieux, qpv, radius_m=1000)
    assert status["status"].tolist() == [
        "dans un QPV", "à moins de 1\u202f000 m d'un QPV", "à moins de 1\u202f000 m d'un QPV",
    ]
    assert status["nearest_qpv"].tolist() == ["QN01301M", "QN01301M", "QN01302M"]
    assert status["nearest_qpv_nom"].tolist()[0] == "Quartier QN01301M"
    d = status["distance_m"].to_numpy(dtype=float)
    assert d[0] == 0.0 and d[1] == pytest.approx(800, abs=3)
    far = proximity.tiers_lieux_qpv_status(tiers_lieux, qpv, radius_m=300)
    assert far["status"].tolist()[1] == "plus loin"


@pytest.fixture
def etab(build):
    near = east_of_a(build, 1500)
    return build.establishments_frame(
        [
            {"siret": "A1", "categorie_juridique": "9222", "lon": LON, "lat": LAT, "denomination": "AI du centre"},
            {"siret": "S1", "categorie_juridique": "5458", "famille": "cooperative",
             "lon": near[0], "lat": near[1], "denomination": "SCOP est"},
            {"siret": "X1", "categorie_juridique": "9220", "lon": LON + 0.001, "lat": LAT},
            {"siret": "F1", "categorie_juridique": "9220", "lon": LON, "lat": LAT + 0.25},
        ]
    )


def test_establishments_around_qpv_from_the_store(qpv, etab, store_of) -> None:
    """The radius tab's query: the selection's attribute filters, QPVs of its territory, on demand."""
    con = store_of(qpv=qpv, establishments=etab)
    iae_scop = Selection(departements=("13",), legal_categories=("9222", *SCOP_CODES))
    result = coverage.establishments_around_qpv(con, iae_scop, radius_m=2000)
    assert result["code_qp"].tolist() == ["QN01301M", "QN01302M", "QN01303M"]
    assert result["n_etablissements"].tolist() == [2, 1, 0]
    assert result["nearest_id"].tolist() == ["A1", "S1", "A1"]
    assert result["nearest_nom"].tolist()[:2] == ["AI du centre", "SCOP est"]
    everything = coverage.establishments_around_qpv(con, Selection(departements=("13",)), radius_m=2000)
    assert everything["n_etablissements"].tolist() == [3, 1, 0]
    assert everything["n_etablissements"].tolist() == proximity.qpv_establishments(
        qpv, etab, radius_m=2000)["n_etablissements"].tolist()


def test_establishments_qpv(qpv, etab) -> None:
    plain = proximity.establishments_qpv(etab, qpv)
    assert list(plain.columns) == ["code_qp", "in_qpv"]
    assert plain["code_qp"].fillna("-").tolist() == ["QN01301M", "-", "QN01301M", "-"]
    assert plain["in_qpv"].tolist() == [True, False, True, False]
    full = proximity.establishments_qpv(etab, qpv, near_radius_m=1600, with_nearest=True)
    assert full["near_qpv_codes"].tolist()[:2] == ["QN01301M", "QN01302M; QN01301M"]
    assert full["n_near_qpv"].tolist() == [1, 2, 1, 0]
    assert full["near_qpv"].tolist() == [True, True, True, False]
    assert full["nearest_qpv"].tolist() == ["QN01301M", "QN01302M", "QN01301M", "QN01303M"]
    assert full["nearest_qpv_distance_m"].iloc[0] == 0.0


def test_establishments_near_point(build, etab) -> None:
    result = proximity.establishments_near_point(etab, LON + 0.0005, LAT, 1000)
    assert result["siret"].tolist() == ["A1", "X1"]  # nearest first
    _, _, expected = GEOD.inv(LON + 0.0005, LAT, LON, LAT)
    assert result["distance_m"].iloc[0] == pytest.approx(expected, abs=1)
    assert result["distance_m"].is_monotonic_increasing
    scop = etab[etab["categorie_juridique"].isin(SCOP_CODES).to_numpy()]
    selected = proximity.establishments_near_point(scop, LON, LAT, 5000)
    assert selected["siret"].tolist() == ["S1"]
    assert proximity.establishments_near_point(etab, LON, LAT, 0)["siret"].tolist() == ["A1"]


def test_establishments_near_point_refuses_swapped_coordinates(etab) -> None:
    with pytest.raises(SpatialInputError, match="inversées"):
        proximity.establishments_near_point(etab, LAT, LON, 1000)
    with pytest.raises(SpatialInputError, match="aucun territoire"):
        proximity.establishments_near_point(etab, 0.0, 0.0, 1000)


def test_inputs_are_not_modified(qpv, tiers_lieux) -> None:
    before_q, before_t = qpv.copy(), tiers_lieux.copy()
    crs_q = qpv.geometry.array.crs
    proximity.qpv_tiers_lieux(qpv, tiers_lieux)
    assert qpv.equals(before_q) and tiers_lieux.equals(before_t)
    assert not shapely.is_prepared(qpv.geometry.to_numpy()).any()
    assert qpv.geometry.array.crs is crs_q


def test_result_columns_keep_their_types(qpv, tiers_lieux) -> None:
    """The dashboard, the CLI, the exports and the notebook read these dtypes."""
    result = proximity.qpv_tiers_lieux(qpv, tiers_lieux, radius_m=1000)
    string = pd.StringDtype(na_value=pd.NA)
    assert result.dtypes.drop("geometry").to_dict() == {
        "code_qp": string, "lib_qp": string, "insee_com": string, "lib_com": string,
        "n_tiers_lieux": np.dtype("int64"), "nearest_id": string, "nearest_nom": string,
        "nearest_distance_m": pd.Float64Dtype(), "covered": np.dtype(bool),
        "is_synthetic_involved": np.dtype(bool), "radius_m": np.dtype("float64"),
    }
    assert result.geometry.name == "geometry" and result.crs == CRS.from_epsg(4326)
    assert result.index.equals(qpv.index)


def test_tiers_lieux_known_by_their_commune_only_never_count(qpv, tiers_lieux) -> None:
    from essmap.domain import schema

    placed = tiers_lieux.copy()
    # TL1 (inside A) placed at its commune only: its point must not be used
    placed["precision_localisation"] = [schema.LOCATION_COMMUNE, schema.LOCATION_BAN_NUMBER, schema.LOCATION_SIRET]
    result = proximity.qpv_tiers_lieux(qpv, placed, radius_m=1000)
    assert result["n_tiers_lieux"].tolist() == [1, 1, 0]
    assert result["nearest_id"].tolist() == ["TL2", "TL3", "TL2"]
    assert result["nearest_localisation"].tolist() == [schema.LOCATION_BAN_NUMBER, schema.LOCATION_SIRET,
                                                       schema.LOCATION_BAN_NUMBER]
    assert result.attrs["n_commune_seulement"] == 1
    status = proximity.tiers_lieux_qpv_status(placed, qpv, radius_m=1000)
    assert status["status"].tolist()[0] == "localisation approximative"
    assert pd.isna(status["distance_m"].iloc[0]) and pd.isna(status["nearest_qpv"].iloc[0])
    assert status["status"].tolist()[1] == "à moins de 1\u202f000 m d'un QPV"
