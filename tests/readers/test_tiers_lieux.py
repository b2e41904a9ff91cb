"""Tiers-lieux reader: the real census and Commune Mesure files, mappings, and dirty inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from essmap.domain import schema
from essmap.domain.errors import EssmapError, InputFileError
from essmap.io.readers.tiers_lieux import (
    CANONICAL_FIELDS,
    CENSUS_COLUMNS,
    NO_COORDINATES,
    ColumnMappingError,
    parse_column_mapping,
    read_tiers_lieux,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "tiers_lieux"
COMMUNE_MESURE = DATA / "tiers_lieux_commune_mesure.csv"
CENSUS = DATA / "france_tiers_lieux_2023_numerique_extrait.csv"


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, sep: str = ",",
              encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


#: A census-format file with the optional columns, and each kind of dirt (row = line number).
CENSUS_ROWS = [
    ["8.0", "Escale &amp; CO (L')", "2A004", "", "9 cours Napoléon", "20000.0", "AJACCIO",
     "https://escale.example", "41,9192", "8,7386", "Coworking|Fablab / atelier partagé",
     "Fabrique de territoire"],                                                        # 2
    ["9.0", "Le TiLT", "07319", "LEZ'ARTS", "2 rue Victor Hugo", "7400.0", "Le Teil", "",
     "44.5453", "4.6889", "Numérique; Culturel", "Fabrique de territoire; Manufacture de proximité"],  # 3
    ["10.0", "RUN FABLAB", "97411", "SOLIDARNUM", "18 Rue Albert Lougnon", "97400.0", "SAINT-DENIS",
     "", "-20.8823", "55.4504", "", ""],                                               # 4
    ["11.0", "Inversé", "13055", "", "", "13001", "MARSEILLE", "", "5.3760", "43.3016", "", ""],  # 5
    ["12.0", "Berlin", "13055", "", "", "13001", "MARSEILLE", "", "52.52", "13.40", "", ""],  # 6
    ["13.0", "Sans coordonnées", "13055", "", "", "13001", "MARSEILLE", "", "", "", "", ""],  # 7
    ["8.0", "Doublon", "13055", "", "", "13001", "MARSEILLE", "", "43.30", "5.37", "", ""],  # 8
    ["14.0", "Texte", "13055", "", "", "13001", "MARSEILLE", "", "nord", "5.37", "", ""],  # 9
    ["15.0", "Moitié", "13055", "", "", "13001", "MARSEILLE", "", "43.30", "", "", ""],  # 10
]


@pytest.fixture()
def census_file(tmp_path) -> Path:
    return write_csv(tmp_path / "recensement_2023.csv", list(CENSUS_COLUMNS), CENSUS_ROWS)


# --- Real files --------------------------------------------------------------------------------


def test_commune_mesure_list_loads_as_published():
    read = read_tiers_lieux(COMMUNE_MESURE)
    frame = read.frame
    assert list(frame.columns) == [*schema.TIERS_LIEUX, "geometry"]
    types = {"VARCHAR": "string", "INTEGER": "Int64", "DOUBLE": "float64", "BOOLEAN": "boolean"}
    for col, sql_type in schema.TIERS_LIEUX.items():
        assert str(frame[col].dtype) == types[sql_type], col
    assert (read.meta.rows_read, read.meta.rows_kept, read.meta.rows_quarantined) == (38, 38, 0)
    assert frame["id_tiers_lieu"].is_unique and frame["id_tiers_lieu"].str.startswith("tl-").all()
    coco = frame.set_index("nom").loc["Coco velten"]
    assert coco[["code_postal", "commune"]].tolist() == ["13001", "Marseille 1er Arrondissement"]
    assert coco["longitude"] == pytest.approx(5.37627) and coco["latitude"] == pytest.approx(43.301638)
    assert coco["geometry"].x == pytest.approx(5.37627)  # lon, lat order
    assert pd.isna(coco["code_commune"])  # not geocoded: the store places it by position
    assert frame.set_index("nom").loc["L'Ecole Buissonnière", "code_postal"] == "04110"
    assert frame["fabrique_territoire"].isna().all()  # the list says nothing about labels
    assert set(frame["territoire"]) == {"metropole"} and not frame["is_synthetic"].any()
    assert read.meta.generation == ""  # the file name says no year: none is invented
    assert read_tiers_lieux(COMMUNE_MESURE, millesime="2022").meta.generation == "2022"


def test_commune_mesure_ids_are_stable_across_row_order(tmp_path):
    lines = COMMUNE_MESURE.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    # the multi-line address (L'Assemblée) spans two physical lines: keep records whole
    records = list(csv.reader(io.StringIO("".join(body))))
    reordered = tmp_path / "inverse.csv"
    write_csv(reordered, header.strip().split(","), records[::-1])
    a = read_tiers_lieux(COMMUNE_MESURE).frame.set_index("nom")["id_tiers_lieu"]
    b = read_tiers_lieux(reordered).frame.set_index("nom")["id_tiers_lieu"]
    assert a.sort_index().equals(b.sort_index())


def test_real_census_extract_without_coordinates_is_quarantined_whole():
    read = read_tiers_lieux(CENSUS)
    assert read.frame.empty and list(read.frame.columns) == [*schema.TIERS_LIEUX, "geometry"]
    assert (read.meta.rows_read, read.meta.rows_kept, read.meta.rows_quarantined) == (47, 0, 47)
    assert read.meta.generation == "2023"
    reasons = read.quarantine.set_index("row_number")["reason"]
    assert (reasons.drop(48) == NO_COORDINATES).all()
    assert reasons[48] == "nom du tiers-lieu absent"  # the trailing empty record
    values = read.quarantine.set_index("row_number")["value"]
    assert values[11] == "Escale & CO (L')"  # HTML entity decoded
    assert any("aucune colonne de coordonnées" in w for w in read.meta.warnings)


def test_real_census_extract_filtered_on_paca():
    read = read_tiers_lieux(CENSUS, departements=["04", "05", "06", "13", "83", "84"])
    # rows of other départements, and the empty trailing record, are out of scope
    assert read.meta.rows_read == 7 and read.meta.rows_quarantined == 7
    assert (read.quarantine["reason"] == NO_COORDINATES).all()
    assert "Ste Marthe Tiers-Lieu pour la Transition Ecologique et Solidaire" in set(read.quarantine["value"])


def test_census_columns_constant_matches_the_real_census_header():
    header = CENSUS.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert list(CENSUS_COLUMNS[:8]) == header[:8]
    assert {"LATITUDE", "LONGITUDE", "TYPES", "LABELS"} <= set(CENSUS_COLUMNS)


# --- Census format with coordinates and dirt -----------------------------------------------------


def test_census_format_values_are_normalised(census_file):
    read = read_tiers_lieux(census_file)
    frame = read.frame.set_index("id_tiers_lieu")
    assert sorted(frame.index) == ["10", "8", "9"]
    escale = frame.loc["8"]
    assert escale["nom"] == "Escale & CO (L')"
    assert escale[["code_commune", "code_departement", "code_postal"]].tolist() == ["2A004", "2A", "20000"]
    assert escale["latitude"] == pytest.approx(41.9192) and escale["longitude"] == pytest.approx(8.7386)
    assert escale["types"] == "Coworking; Fablab / atelier partagé"
    assert escale[["labels", "fabrique_territoire", "manufacture_proximite"]].tolist() == [
        "Fabrique de territoire", True, False]
    tilt = frame.loc["9"]
    assert tilt[["code_commune", "code_departement", "code_postal"]].tolist() == ["07319", "07", "07400"]
    assert tilt["labels"] == "Fabrique de territoire; Manufacture de proximité"
    assert bool(tilt["manufacture_proximite"]) and tilt["types"] == "Numérique; Culturel"
    run = frame.loc["10"]
    assert run[["code_departement", "territoire", "epsg_metrique"]].tolist() == ["974", "reunion", 2975]
    assert read.meta.generation == "2023"


def test_census_format_bad_rows_are_quarantined_with_reasons(census_file):
    read = read_tiers_lieux(census_file)
    q = read.quarantine.set_index("row_number")
    assert q.loc[5, "reason"].startswith("latitude et longitude inversées")
    assert q.loc[6, "reason"] == "coordonnées hors des territoires français"
    assert q.loc[7, "reason"] == NO_COORDINATES
    assert q.loc[8, "reason"] == "identifiant en double : déjà présent ligne 2"
    assert q.loc[9, "reason"].startswith("coordonnées illisibles")
    assert q.loc[10, "reason"].startswith("coordonnées incomplètes")
    assert q.loc[5, "column_name"] == "LATITUDE, LONGITUDE"
    assert read.meta.rows_quarantined == 6 and read.meta.rows_kept == 3 and read.meta.rows_read == 9


def test_departements_filter(census_file):
    read = read_tiers_lieux(census_file, departements=["2A", "974"])
    assert sorted(read.frame["id_tiers_lieu"]) == ["10", "8"]
    assert read.quarantine.empty and read.meta.rows_read == 2
    read = read_tiers_lieux(COMMUNE_MESURE, departements=["13", "4"])  # postcode used for the filter
    assert len(read.frame) == 5 and set(read.frame["code_postal"].str[:2]) == {"13", "04"}


def test_label_flag_columns(tmp_path):
    path = write_csv(tmp_path / "labels.csv",
                     ["NOM", "LATITUDE", "LONGITUDE", "LABEL_FABRIQUE_TERRITOIRE", "LABEL_MANUFACTURE_PROXIMITE"],
                     [["A", "43.3", "5.37", "oui", "non"], ["B", "43.3", "5.38", "", "1"]])
    frame = read_tiers_lieux(path).frame
    assert frame["fabrique_territoire"].tolist() == [True, False]
    assert frame["manufacture_proximite"].tolist() == [False, True]
    assert frame["labels"].tolist() == ["Fabrique de territoire", "Manufacture de proximité"]


# --- Encodings, separators, headers --------------------------------------------------------------


def test_latin1_file_is_read_with_a_warning(tmp_path):
    path = write_csv(tmp_path / "latin1.csv", ["nom", "latitude", "longitude"],
                     [["Café Numérique", "43.3", "5.37"]], encoding="cp1252")
    read = read_tiers_lieux(path)
    assert read.frame["nom"].tolist() == ["Café Numérique"]
    assert any("Windows-1252" in w and "latin1.csv" in w for w in read.meta.warnings)


def test_utf8_bom_does_not_hide_the_first_column(tmp_path):
    path = write_csv(tmp_path / "bom.csv", ["nom", "latitude", "longitude"],
                     [["Hôtel Pasteur", "48.110458", "-1.673832"]], encoding="utf-8-sig")
    read = read_tiers_lieux(path)
    assert read.frame["nom"].tolist() == ["Hôtel Pasteur"] and read.meta.warnings == []


def test_semicolon_separator_and_decimal_commas(tmp_path):
    path = write_csv(tmp_path / "pv.csv", ["nom", "latitude", "longitude"],
                     [["Le Spot", "43,841028", "4,363058"]], sep=";")
    read = read_tiers_lieux(path)
    assert read.frame["latitude"].tolist() == [pytest.approx(43.841028)]
    assert any("séparateur « ; »" in w for w in read.meta.warnings)


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "vide.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"vide\.csv.*vide"):
        read_tiers_lieux(empty)
    header = write_csv(tmp_path / "entete.csv", list(CENSUS_COLUMNS), [])
    with pytest.raises(InputFileError, match="que la ligne d'en-tête"):
        read_tiers_lieux(header)


def test_missing_name_column_names_file_column_and_fix(tmp_path):
    path = write_csv(tmp_path / "sans_nom.csv", ["libelle", "latitude", "longitude"], [["A", "43.3", "5.37"]])
    with pytest.raises(InputFileError) as info:
        read_tiers_lieux(path)
    message = str(info.value)
    assert "sans_nom.csv" in message and "« nom »" in message and "Solution :" in message


# --- Column mapping ------------------------------------------------------------------------------


def test_parse_column_mapping():
    assert parse_column_mapping("nom=NOM, latitude = LAT,longitude=LON") == {
        "nom": "NOM", "latitude": "LAT", "longitude": "LON"}
    assert parse_column_mapping("NOM=Nom du lieu") == {"nom": "Nom du lieu"}
    for bad, expected in [("nom", "illisible"), ("nom=", "incomplète"), ("lieu=NOM", "Champ inconnu « lieu »"),
                          ("", "vide"), ("nom=A,nom=B", "deux fois")]:
        with pytest.raises(ColumnMappingError, match=expected) as info:
            parse_column_mapping(bad)
        assert isinstance(info.value, EssmapError) and isinstance(info.value, ValueError)
    assert "site_web" in CANONICAL_FIELDS and "labels" in CANONICAL_FIELDS


def test_regional_list_with_column_mapping(tmp_path):
    path = write_csv(tmp_path / "liste_region.csv", ["Nom du lieu", "Lat", "Long", "Code INSEE", "Réf"],
                     [["Le Wattignies", "47,20422", "-1,546397", "44109", "R1"],
                      ["Le Solilab", "47.201392", "-1.571388", "44109.0", "R2"]], sep=";")
    mapping = parse_column_mapping("nom=Nom du lieu,latitude=Lat,longitude=Long,code_commune=Code INSEE,id=Réf")
    frame = read_tiers_lieux(path, columns=mapping).frame
    assert frame["id_tiers_lieu"].tolist() == ["R1", "R2"]
    assert frame["code_commune"].tolist() == ["44109", "44109"]
    assert frame["code_departement"].tolist() == ["44", "44"]
    with pytest.raises(InputFileError) as info:
        read_tiers_lieux(path, columns={"nom": "Nom du lieu", "latitude": "Latitude"})
    assert "liste_region.csv" in str(info.value) and "Latitude" in str(info.value)
    with pytest.raises(ColumnMappingError):
        read_tiers_lieux(path, columns={"lieu": "Nom du lieu"})


# --- GeoJSON and provenance ----------------------------------------------------------------------


def test_geojson_points(tmp_path):
    path = tmp_path / "tiers_lieux.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"nom": "Coco Velten", "code_insee": 13055},
         "geometry": {"type": "Point", "coordinates": [5.37627, 43.301638]}},
        {"type": "Feature", "properties": {"nom": "Sans position"}, "geometry": None},
    ]}), encoding="utf-8")
    read = read_tiers_lieux(path)
    assert read.frame["longitude"].tolist() == [pytest.approx(5.37627)]
    assert read.frame["code_commune"].tolist() == ["13055"]
    assert read.quarantine["row_number"].tolist() == [2]
    assert read.quarantine["reason"].tolist() == [NO_COORDINATES]


def test_synthetic_marker_and_override(tmp_path, census_file):
    assert not read_tiers_lieux(census_file).meta.is_synthetic
    (tmp_path / "essmap-synthetic.json").write_text(json.dumps({"files": [census_file.name]}), encoding="utf-8")
    read = read_tiers_lieux(census_file)
    assert read.meta.is_synthetic and read.frame["is_synthetic"].all()
    assert not read_tiers_lieux(census_file, is_synthetic=False).meta.is_synthetic


def test_utf16_list_is_read_and_broken_files_are_refused_in_french(tmp_path):
    path = tmp_path / "liste_utf16.csv"
    path.write_bytes("nom,latitude,longitude\nLe Tiers-Lieu,43.30,5.37\n".encode("utf-16"))
    read = read_tiers_lieux(path)
    assert read.frame["nom"].tolist() == ["Le Tiers-Lieu"]
    assert "UTF-16" in read.meta.warnings[0]
    path.write_bytes(b"\xfe\xff")
    with pytest.raises(InputFileError, match="le fichier est vide"):
        read_tiers_lieux(path)
    path.write_text('nom,latitude,longitude\n"Lieu ouvert,43.30,5.37\n', encoding="utf-8")
    with pytest.raises(InputFileError, match="ligne 2 : le fichier n'est pas un CSV valide : guillemet ouvert"):
        read_tiers_lieux(path)
    path.write_text("nom,latitude,longitude\nLieu,43.30,5.37,en trop,encore\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="ligne 2 : le fichier n'est pas un CSV valide : 5 champs au lieu de 3"):
        read_tiers_lieux(path)
    with pytest.raises(InputFileError, match="c'est un dossier, pas un fichier"):
        read_tiers_lieux(tmp_path)


# --- the census's "activités" file: types -----------------------------------------------------------

ACTIVITIES = DATA / "bdftl-2023-04-activites_extrait.csv"
PLACEMENT_CENSUS = DATA.parent / "placement" / "recensement_tiers_lieux_2023_extrait.csv"


def test_activities_file_gives_the_types_of_census_places():
    from essmap.io.readers.placement import PlacementFiles

    read = read_tiers_lieux(PLACEMENT_CENSUS, placement=PlacementFiles.of(), activities=ACTIVITIES)
    types = dict(zip(read.frame["id_tiers_lieu"], read.frame["types"], strict=True))
    assert types["71"] == "Fablab / atelier partagé; Numérique"  # "71.0" in both files
    assert types["131"] == "Coworking; Tiers-lieu culturel; Numérique"
    assert types["1164"] == "Coworking; Tiers-lieu nourricier" and types["309"] == "Atelier artisanal partagé"
    assert types["90002"] == "Fablab / atelier partagé"
    assert types["90003"] is pd.NA  # no row in the activités file: unknown, and said
    warnings = " | ".join(read.meta.warnings)
    # 13 census rows, 7 in the activités file
    assert "« bdftl-2023-04-activites_extrait.csv » : 6 tiers-lieu(x) de " \
           "« recensement_tiers_lieux_2023_extrait.csv » sans ligne d'activités" in warnings
    # the activity columns that are not types (PROD_NUMER, OFFRE_NUM_FABR, EQPT_NUM) give none
    assert not any("Prod" in str(t) or "Eqpt" in str(t) for t in types.values())


def test_activities_values_unknown_types_and_missing_columns(tmp_path):
    from essmap.io.readers.tiers_lieux import read_census_activities

    path = tmp_path / "activites.csv"
    path.write_text("ID_UNIQUE;TYPE_ACT_CUISINE;type_act_fablab;TYPE_ACT_TELEPORT;TYPOLOGIE\n"
                    "8.0;oui;TRUE;0;Friche | Coworking\n9;non;?;1;\n10;;0;0;\n", encoding="utf-8")
    frame, warnings = read_census_activities(path)
    types = frame.set_index("id_tiers_lieu")["types"]
    assert types.dropna().to_dict() == {"8": "Cuisine partagée; Fablab / atelier partagé; Friche; Coworking",
                                        "9": "Teleport"}
    assert list(types.index) == ["8", "9", "10"] and pd.isna(types["10"])
    text = " | ".join(warnings)
    assert "TYPE_ACT_TELEPORT" in text and "1 valeur(s) de type ni vraie ni fausse" in text

    path.write_text("ID_UNIQUE;PROD_NUMER;EQPT_NUM\n8.0;1;1\n", encoding="utf-8")
    frame, warnings = read_census_activities(path)
    assert frame.empty and "colonne « TYPE_ACT_… (types du tiers-lieu) » absente" in warnings[-1]
    assert "le filtre par type du tableau de bord restera vide" in warnings[-1]
    path.write_text("NOM;TYPE_ACT_NUMER\nx;1\n", encoding="utf-8")
    assert "colonne « ID_UNIQUE » absente" in read_census_activities(path)[1][-1]


def test_types_of_the_file_itself_win_over_the_activities_file(tmp_path):
    census = tmp_path / "census.csv"
    census.write_text("ID_UNIQUE,NOM,LATITUDE,LONGITUDE,TYPES\n71.0,A,43.3,5.4,Coworking\n131.0,B,43.3,5.4,\n",
                      encoding="utf-8")
    read = read_tiers_lieux(census, activities=ACTIVITIES)
    assert read.frame.set_index("id_tiers_lieu")["types"].to_dict() == {
        "71": "Coworking", "131": "Coworking; Tiers-lieu culturel; Numérique"}
