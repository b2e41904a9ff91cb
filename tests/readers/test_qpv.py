"""QPV reader: real 2015/2024 files, projections, and each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from essmap.domain import schema
from essmap.domain.errors import InputFileError
from essmap.io.readers.qpv import departement_of_qpv_code, read_qpv

DATA = Path(__file__).resolve().parents[1] / "data" / "qpv"
PACA = DATA / "qpv2024_paca_extrait.geojson"
OCCITANIE = DATA / "qpv2015_occitanie_extrait.geojson"
LYON = DATA / "qpv2015_lyon.geojson"
UPPERCASE = DATA / "qpv2015_majuscules.geojson"


def square(lon: float, lat: float, size: float = 0.004) -> list:
    return [[[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]]


def feature(props: dict, rings: list | None, kind: str = "Polygon") -> dict:
    geometry = None if rings is None else {"type": kind, "coordinates": rings}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def write_geojson(tmp_path: Path, features: list[dict], name: str = "qpv.geojson", **top) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", **top, "features": features}), encoding="utf-8")
    return path


def ok(code: str = "QN01354M", lon: float = 5.36, lat: float = 43.36, **props) -> dict:
    return feature({"code_qp": code, "lib_qp": f"Quartier {code}", **props}, square(lon, lat))


# --- Real formats ------------------------------------------------------------------------------


def test_2024_extract_gives_canonical_columns_and_types():
    read = read_qpv(PACA)
    frame = read.frame
    assert list(frame.columns) == [*schema.QPV, "geometry"]
    assert frame.crs.to_epsg() == 4326
    for col, sql_type in schema.QPV.items():
        expected = "Int64" if sql_type == "INTEGER" else "string"
        assert str(frame[col].dtype) == expected, col
    assert set(frame.geom_type) == {"MultiPolygon"}
    assert frame.is_valid.all()
    assert set(frame["generation"]) == {"2024"}
    assert read.meta.generation == "2024 (millésime 2025)"
    assert (read.meta.rows_read, read.meta.rows_kept, read.meta.rows_quarantined) == (7, 7, 0)
    assert read.quarantine.empty and read.meta.warnings == []
    assert set(frame["territoire"]) == {"metropole"} and set(frame["epsg_metrique"]) == {2154}


def test_2024_renamed_fields_and_multi_commune_qpv():
    frame = read_qpv(PACA).frame.set_index("code_qp")
    assert frame.loc["QN00612M", "insee_com"] == "06088,06114,06149"
    assert frame.loc["QN01341I", "insee_com"] == "13055,13070"
    assert frame.loc["QN01354M", "insee_com"] == "13055"
    assert frame.loc["QN01354M", "lib_qp"] == "La Castellane La Bricarde"
    assert frame.loc["QN00401M", "insee_dep"] == "04"  # leading zero kept


def test_2015_lyon_extract_with_commune_names_only():
    read = read_qpv(LYON)
    frame = read.frame.set_index("code_qp")
    assert len(frame) == 37 and read.meta.generation == "2015"
    assert set(frame["generation"]) == {"2015"}
    assert set(frame["insee_dep"]) == {"69"}  # derived from QP069xxx
    assert frame["insee_com"].isna().all()
    assert frame.loc["QP069011", "lib_com"] == "Bron,Vaulx-en-Velin"


def test_2015_occitanie_extract_keeps_codes_and_repairs_rounded_polygons():
    read = read_qpv(OCCITANIE)
    frame = read.frame.set_index("code_qp")
    assert len(frame) == 6 and read.quarantine.empty
    assert frame.loc["QP009001", "insee_dep"] == "09"
    assert frame.loc["QP009001", "insee_com"] == "09261"
    assert frame.loc["QP065003", "lib_com"] == "Séméac, Tarbes"
    assert frame.is_valid.all()
    # the real file has self-intersections from rounding to 4 decimals: repaired, listed
    (warning,) = read.meta.warnings
    assert "qpv2015_occitanie_extrait.geojson" in warning
    assert "entité 2 (QP011002) : auto-intersection en (2.3679 43.2188)" in warning
    assert "5 géométrie(s) invalide(s) réparée(s)" in warning


def test_2015_uppercase_field_names():
    upper = read_qpv(UPPERCASE).frame
    lower = read_qpv(OCCITANIE).frame.iloc[:3]
    assert upper["code_qp"].tolist() == lower["code_qp"].tolist()
    assert upper["lib_qp"].tolist() == lower["lib_qp"].tolist()
    assert upper["lib_com"].tolist() == ["Perpignan", "Carcassonne", "Nîmes"]
    assert set(upper["generation"]) == {"2015"}


@pytest.mark.parametrize(
    ("code", "dep"),
    [
        ("QN01354M", "13"), ("QP066007", "66"), ("QN00401M", "04"), ("QN02A01M", "2A"),
        ("QP02B001", "2B"), ("QN97101M", "971"), ("QP974001", "974"), ("QN2A001M", "2A"),
        ("QN0", ""), ("CV12345", ""),
    ],
)
def test_departement_of_qpv_code(code, dep):
    assert departement_of_qpv_code(code) == dep


def test_corsica_and_overseas_codes_give_departement_and_metric_crs(tmp_path):
    path = write_geojson(tmp_path, [
        ok("QN02A01M", 8.74, 41.93),          # Ajaccio
        ok("QN97401M", 55.45, -20.89),        # Saint-Denis de La Réunion
        ok("QN97601M", 45.22, -12.79),        # Mamoudzou
    ])
    frame = read_qpv(path).frame.set_index("code_qp")
    assert frame.loc["QN02A01M", ["insee_dep", "territoire", "epsg_metrique"]].tolist() == ["2A", "metropole", 2154]
    assert frame.loc["QN97401M", ["insee_dep", "territoire", "epsg_metrique"]].tolist() == ["974", "reunion", 2975]
    assert frame.loc["QN97601M", ["insee_dep", "territoire", "epsg_metrique"]].tolist() == ["976", "mayotte", 4471]


def test_generation_option_and_unknown_codes(tmp_path):
    path = write_geojson(tmp_path, [ok("AB000001")])
    with pytest.raises(InputFileError, match="--generation"):
        read_qpv(path)
    read = read_qpv(path, generation="2024")
    assert read.frame["generation"].tolist() == ["2024"] and read.meta.generation == "2024"
    with pytest.raises(InputFileError, match="génération de QPV « 2020 » inconnue"):
        read_qpv(path, generation="2020")
    forced = read_qpv(PACA, generation="2015")
    assert set(forced.frame["generation"]) == {"2015"}
    assert any("génération 2015 demandée" in w for w in forced.meta.warnings)


def test_lambert93_shapefile_gives_same_wgs84_coordinates(tmp_path):
    original = read_qpv(PACA).frame
    projected = original.to_crs(2154).rename(columns={"code_qp": "CODE_QP", "lib_qp": "LIB_QP",
                                                      "insee_com": "INSEE_COM", "insee_dep": "INSEE_DEP"})
    path = tmp_path / "QP2024_France_Hexagonale_LB93.shp"
    projected[["CODE_QP", "LIB_QP", "INSEE_COM", "INSEE_DEP", "geometry"]].to_file(path, engine="pyogrio")
    back = read_qpv(path).frame
    assert back["code_qp"].tolist() == original["code_qp"].tolist()
    assert back["insee_com"].tolist() == original["insee_com"].tolist()
    for a, b in zip(original.geometry, back.geometry, strict=True):
        np.testing.assert_allclose(shapely.get_coordinates(b), shapely.get_coordinates(a), atol=1e-6)


def test_overseas_projected_file_is_reprojected(tmp_path):
    wgs = gpd.GeoDataFrame({"code_qp": ["QN97401M"]}, geometry=[shapely.box(55.45, -20.89, 55.455, -20.885)], crs=4326)
    path = tmp_path / "qpv_reunion_rgr92.gpkg"
    wgs.to_crs(2975).to_file(path, engine="pyogrio")
    frame = read_qpv(path).frame
    np.testing.assert_allclose(frame.total_bounds, [55.45, -20.89, 55.455, -20.885], atol=1e-6)
    assert frame.loc[0, "territoire"] == "reunion"


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_file_without_crs(tmp_path):
    lonlat = gpd.GeoDataFrame({"code_qp": ["QN01354M"]}, geometry=[shapely.box(5.36, 43.36, 5.37, 43.37)])
    path = tmp_path / "sans_prj.shp"
    lonlat.to_file(path, engine="pyogrio")
    read = read_qpv(path)
    assert len(read.frame) == 1
    assert "aucun système de coordonnées déclaré" in read.meta.warnings[0]
    metric = gpd.GeoDataFrame({"code_qp": ["QN01354M"]}, geometry=[shapely.box(892000, 6250000, 893000, 6251000)])
    path = tmp_path / "l93_sans_prj.shp"
    metric.to_file(path, engine="pyogrio")
    with pytest.raises(InputFileError, match=r"l93_sans_prj\.shp.*\.prj"):
        read_qpv(path)


def test_departements_filter():
    read = read_qpv(PACA, departements=["13"])
    assert read.frame["code_qp"].tolist() == ["QN01341I", "QN01354M"]
    assert read.meta.rows_read == 2
    read = read_qpv(PACA, departements=["4", "84"])  # "4" means "04"
    assert sorted(read.frame["insee_dep"]) == ["04", "84"]
    empty = read_qpv(PACA, departements=["2A"])
    assert empty.frame.empty and list(empty.frame.columns) == [*schema.QPV, "geometry"]
    assert "aucun QPV" in empty.meta.warnings[0]


# --- Bad inputs --------------------------------------------------------------------------------


def test_self_intersecting_bowtie_is_repaired_and_kept(tmp_path):
    bowtie = [[[5.37, 43.30], [5.38, 43.31], [5.38, 43.30], [5.37, 43.31], [5.37, 43.30]]]
    path = write_geojson(tmp_path, [ok("QN01301M"), feature({"code_qp": "QN01302M"}, bowtie)])
    read = read_qpv(path)
    assert read.quarantine.empty
    kept = read.frame.set_index("code_qp").loc["QN01302M", "geometry"]
    assert kept.geom_type == "MultiPolygon" and kept.is_valid and len(kept.geoms) == 2
    assert kept.area == pytest.approx(0.00005)  # the two triangles, nothing lost
    (warning,) = read.meta.warnings
    assert "qpv.geojson" in warning
    assert "entité 2 (QN01302M) : auto-intersection en (5.375 43.305)" in warning


def test_irreparable_polygon_is_quarantined(tmp_path):
    flat = [[[5.36, 43.30], [5.37, 43.30], [5.38, 43.30], [5.36, 43.30]]]  # collinear: no area
    path = write_geojson(tmp_path, [ok(), feature({"code_qp": "QN01302M"}, flat)])
    read = read_qpv(path)
    assert read.frame["code_qp"].tolist() == ["QN01354M"]
    row = read.quarantine.iloc[0]
    assert row["row_number"] == 2 and row["value"] == "QN01302M"
    assert row["reason"].startswith("géométrie invalide irréparable")


def test_swapped_outside_missing_and_inconsistent_geometries_are_quarantined(tmp_path):
    path = write_geojson(tmp_path, [
        ok("QN01301M"),
        feature({"code_qp": "QN01302M"}, [[[lat, lon] for lon, lat in square(5.36, 43.36)[0]]]),
        ok("QN01303M", 13.40, 52.52),                    # Berlin
        feature({"code_qp": "QN01304M"}, None),
        ok("QN97401M", 5.36, 43.30),                    # Réunion code, Marseille position
        feature({"code_qp": "QN01306M"}, [[5.36, 43.36], [5.37, 43.37]], "LineString"),
    ])
    read = read_qpv(path)
    assert read.frame["code_qp"].tolist() == ["QN01301M"]
    reasons = dict(zip(read.quarantine["row_number"], read.quarantine["reason"], strict=True))
    assert reasons[2].startswith("latitude et longitude inversées")
    assert reasons[3] == "coordonnées hors des territoires français"
    assert reasons[4] == "géométrie absente"
    assert reasons[5].startswith("position incohérente avec le département 974")
    assert reasons[6].startswith("géométrie non surfacique (LineString)")
    assert read.meta.rows_quarantined == 5 and read.meta.rows_read == 6
    assert set(read.quarantine["file_name"]) == {"qpv.geojson"}
    assert set(read.quarantine["source"]) == {"qpv"}


def test_duplicate_code_and_missing_code_are_quarantined(tmp_path):
    path = write_geojson(tmp_path, [ok("QN01301M"), ok("QN01301M", 5.40), feature({"code_qp": ""}, square(5.3, 43.3))])
    read = read_qpv(path)
    assert read.frame["code_qp"].tolist() == ["QN01301M"]
    reasons = dict(zip(read.quarantine["row_number"], read.quarantine["reason"], strict=True))
    assert reasons == {2: "code_qp en double : déjà lu à l'entité 1", 3: "code du QPV absent"}


def test_missing_code_column_names_file_column_and_fix(tmp_path):
    path = write_geojson(tmp_path, [feature({"nom": "Quartier"}, square(5.36, 43.36))], "sans_code.geojson")
    with pytest.raises(InputFileError) as info:
        read_qpv(path)
    message = str(info.value)
    assert "sans_code.geojson" in message and "code_qp" in message and "Solution :" in message
    assert info.value.column == "code_qp"


def test_empty_feature_collection_and_empty_file(tmp_path):
    with pytest.raises(InputFileError, match="aucune entité"):
        read_qpv(write_geojson(tmp_path, []))
    empty = tmp_path / "vide.geojson"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match=r"vide\.geojson.*vide"):
        read_qpv(empty)
    broken = tmp_path / "casse.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    with pytest.raises(InputFileError, match="illisible"):
        read_qpv(broken)


def test_commune_lists_in_any_shape(tmp_path):
    path = write_geojson(tmp_path, [
        ok("QN01301M", insee_com="13001, 13002"),
        ok("QN01302M", 5.40, insee_com=["13055"]),
        ok("QN01303M", 5.44, insee_com=13055.0),
        ok("QN01304M", 5.48, insee_com="1004;2A004"),
    ])
    frame = read_qpv(path).frame
    assert frame["insee_com"].tolist() == ["13001,13002", "13055", "13055", "01004,2A004"]
    assert pd.api.types.is_string_dtype(frame["insee_com"])


# --- Files of the wrong kind, projected coordinates read as degrees --------------------------------


def test_projected_geojson_without_crs_member_is_refused_with_a_guess(tmp_path):
    frame = gpd.read_file(OCCITANIE).to_crs(2154)
    path = tmp_path / "qpv_l93.geojson"
    frame.to_file(path, driver="GeoJSON")
    content = json.loads(path.read_text(encoding="utf-8"))
    del content["crs"]  # GDAL then reads it as WGS84 degrees, as RFC 7946 says
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(InputFileError) as err:
        read_qpv(path)
    message = str(err.value)
    assert "un GeoJSON sans membre « crs » est lu en WGS84" in message
    assert "ressemblent à la projection Lambert-93 (EPSG:2154)" in message
    assert "ogr2ogr -s_srs EPSG:2154 -t_srs EPSG:4326" in message


def test_files_of_another_kind_name_the_command_that_loads_them(tmp_path):
    communes = Path(__file__).resolve().parents[1] / "data" / "communes"
    with pytest.raises(InputFileError, match="ressemble à un fichier de communes .*essmap ingest communes COMMUNE.shp"):
        read_qpv(communes / "COMMUNE.shp")
    with pytest.raises(InputFileError, match="ressemble à un fichier de communes"):
        read_qpv(communes / "communes_extrait.parquet")
    listing = tmp_path / "lieux.csv"
    listing.write_text("nom,latitude,longitude\nLieu,43.3,5.37\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="CSV ne contient pas de contours.*essmap ingest tiers-lieux"):
        read_qpv(listing)
    with pytest.raises(InputFileError, match="c'est un dossier"):
        read_qpv(tmp_path)


def test_non_utf8_layer_name_is_a_french_refusal(tmp_path):
    path = tmp_path / "qpv.geojson"
    path.write_bytes(OCCITANIE.read_bytes().replace(b'"name": "', b'"name": "\x80', 1))
    with pytest.raises(InputFileError, match="fichier géographique illisible.*détail technique"):
        read_qpv(path)
