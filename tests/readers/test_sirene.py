"""SIRENE reader: real legal units, hand-made establishments in the official layout.

Fixtures are described in tests/data/README.md (section sirene/). Line numbers below are lines of
StockEtablissement_extrait.csv (header = line 1).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from essmap.domain import schema
from essmap.domain.errors import InputFileError
from essmap.io.readers.sirene import (
    ETABLISSEMENT_COLUMNS,
    GEOLOCALISATION_COLUMNS,
    REASON_NO_COORDINATES,
    UNITE_LEGALE_COLUMNS,
    read_sirene,
)
from essmap.io.readers.sirene import files as sirene_files
from essmap.io.readers.sirene.scan import physical_lines

DATA = Path(__file__).resolve().parent.parent / "data" / "sirene"
UL = DATA / "unites_legales_ess_extrait.csv"
UL_COMPLEMENT = DATA / "StockUniteLegale_complement.csv"
ETAB = DATA / "StockEtablissement_extrait.csv"
GEO = DATA / "GeolocalisationEtablissement_extrait.csv"

# siret -> (known lon, known lat, metric EPSG, territory) of the kept rows
KNOWN = {
    "10002917200010": (5.381000, 43.299000, 2154, "metropole"),  # Marseille 1er
    "10009465500014": (2.310000, 48.872000, 2154, "metropole"),  # Paris 8e
    "10007004400019": (7.262000, 43.710200, 2154, "metropole"),  # Nice
    "33473503200016": (8.736900, 41.919200, 2154, "metropole"),  # Ajaccio (2A)
    "49101169800017": (9.450000, 42.697000, 2154, "metropole"),  # Bastia (2B)
    "35397573300018": (55.448100, -20.882300, 2975, "reunion"),
    "31396794500012": (-61.533100, 16.241100, 5490, "guadeloupe"),
    "31023889400011": (-52.326000, 4.937200, 2972, "guyane"),
    "30926663300010": (45.227900, -12.780600, 4471, "mayotte"),
    "38822502100012": (-61.058800, 14.616100, 5490, "martinique"),
    "53378459100018": (5.225600, 46.205200, 2154, "metropole"),  # Bourg-en-Bresse (01)
    "32407950800010": (5.380000, 43.288000, 2154, "metropole"),  # Marseille 6e, NAFRev1
    "44860472800015": (5.380000, 43.312000, 2154, "metropole"),  # Marseille 3e, "Escale &amp; CO"
    "80873710000012": (5.365000, 43.310000, 2154, "metropole"),  # Marseille 2e, <script>
    "01234567400019": (7.262000, 43.710200, 2154, "metropole"),  # Nice, leading zero
    "10007004400035": (7.262000, 43.710200, 2154, "metropole"),  # Nice, swapped in the geoloc file
}
NOT_READ = {"10009465500022", "98765432400019", "77788899100018"}  # closed, not ESS, unknown unit
GEO_ONLY = "10002917200036"  # line 28: no stock coordinates, position in the geolocation file
SWAPPED = "10007004400035"  # line 29: lon/lat swapped in the geolocation file (line 4)


@pytest.fixture(scope="module")
def base():
    return read_sirene(UL, ETAB)


@pytest.fixture(scope="module")
def with_geo():
    return read_sirene(UL, ETAB, geolocalisation=GEO)


def by_siret(result) -> pd.DataFrame:
    return result.frame.set_index("siret")


def reason_at(result, line: int, file_name: str = ETAB.name) -> pd.Series:
    q = result.quarantine
    rows = q[(q["row_number"] == line) & (q["file_name"] == file_name)]
    assert len(rows) == 1, q
    return rows.iloc[0]


def rewrite_csv(path: Path, *, delimiter: str = ",", encoding: str = "utf-8", edit=None) -> Path:
    """Write the establishment fixture again, optionally edited (list of row dicts)."""
    with open(ETAB, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if edit:
        rows = edit(rows) or rows
    columns = list(rows[0].keys()) if rows else list(ETABLISSEMENT_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


# --- Layouts -------------------------------------------------------------------------------------


def test_official_layouts_are_complete_ordered_lists():
    assert ETABLISSEMENT_COLUMNS[:3] == ("siren", "nic", "siret")
    assert len(ETABLISSEMENT_COLUMNS) == len(set(ETABLISSEMENT_COLUMNS)) == 54
    assert ETABLISSEMENT_COLUMNS.index("coordonneeLambertOrdonneeEtablissement") == (
        ETABLISSEMENT_COLUMNS.index("coordonneeLambertAbscisseEtablissement") + 1
    )
    assert UNITE_LEGALE_COLUMNS[0] == "siren" and len(UNITE_LEGALE_COLUMNS) == len(set(UNITE_LEGALE_COLUMNS)) == 35
    assert "economieSocialeSolidaireUniteLegale" in UNITE_LEGALE_COLUMNS
    assert GEOLOCALISATION_COLUMNS[0] == "siret" and GEOLOCALISATION_COLUMNS[-2:] == ("x_longitude", "y_latitude")
    # the fixture really is in the official layout
    assert ETAB.read_text(encoding="utf-8").splitlines()[0] == ",".join(ETABLISSEMENT_COLUMNS)


# --- Filters, join, mapping ----------------------------------------------------------------------


def test_keeps_active_establishments_of_ess_units_only(base):
    sirets = set(base.frame["siret"])
    assert sirets == set(KNOWN)
    assert not sirets & NOT_READ
    assert (base.meta.rows_read, base.meta.rows_kept, base.meta.rows_quarantined) == (25, 16, 9)
    assert base.meta.rows_read == base.meta.rows_kept + base.meta.rows_quarantined
    assert set(base.quarantine["row_number"]) == set(range(20, 29))
    assert base.meta.source == "sirene"
    assert base.meta.generation == "2025-11"
    assert base.meta.file_name == f"{UL.name} + {ETAB.name}"
    assert len(base.meta.sha256) == 64 and base.meta.warnings == []
    assert base.meta.is_synthetic is False and not base.frame["is_synthetic"].any()


def test_output_has_exactly_the_canonical_columns(base):
    frame = base.frame
    assert list(frame.columns) == [*schema.ETABLISSEMENTS, "geometry"]
    assert frame.crs.to_epsg() == 4326
    assert set(base.quarantine.columns) == set(schema.QUARANTINE)


def test_join_brings_the_legal_unit(base):
    rows = by_siret(base)
    chief = rows.loc["10009465500014"]
    assert chief["siren"] == "100094655"
    assert chief["denomination"] == "ASSOCIATION NATIONALE DES CHIEF DATA & AI OFFICERS"
    assert chief["categorie_juridique"] == "9220"
    assert rows.loc["01234567400019", "denomination"] == "ASSOCIATION FICTIVE ZERO"


def test_family_and_sector(base):
    rows = by_siret(base)
    expected = {
        "10002917200010": ("association", "enseignement"),  # 9220, 85.59A
        "10009465500014": ("association", "non_classes"),  # 94.99Z
        "10007004400019": ("societe_commerciale_ess", "information_communication"),  # 5710 SAS
        "33473503200016": ("cooperative", "soutien_entreprises"),  # 5458 SCOP
        "49101169800017": ("cooperative", "information_communication"),  # 5558 SCOP
        "35397573300018": ("fondation", "action_sociale"),  # 9300, 88.99B
        "31396794500012": ("cooperative", "information_communication"),  # 6318
        "30926663300010": ("association", "soutien_entreprises"),  # 9260
        "38822502100012": ("association", "arts_spectacles"),  # 9230, 91.01Z
        "53378459100018": ("association", "action_sociale"),  # 9221, 88.10A
    }
    for siret, (famille, secteur) in expected.items():
        assert (rows.loc[siret, "famille"], rows.loc[siret, "secteur"]) == (famille, secteur), siret
    old = rows.loc["32407950800010"]  # kept, not mapped silently
    assert (old["activite_naf"], old["nomenclature_naf"]) == ("72.2Z", "NAFRev1")
    assert old["secteur"] == "nomenclature_ancienne"


def test_attributes(base):
    row = by_siret(base).loc["10002917200010"]
    assert row["adresse"] == "12B RUE DE LA REPUBLIQUE"
    assert row["enseigne"] == "Café des Possibles"
    assert bool(row["employeur"]) and bool(row["siege"])
    assert (row["tranche_effectifs"], row["date_creation"]) == ("01", "2021-03-01")
    assert (row["code_postal"], row["libelle_commune"], row["code_commune"]) == ("13001", "MARSEILLE", "13201")
    assert by_siret(base).loc["10009465500014", "adresse"] == "40 BD HAUSSMANN"
    second = by_siret(base).loc["10007004400035"]
    assert not bool(second["employeur"]) and not bool(second["siege"])


def test_codes_are_strings_with_leading_zeros_and_corsica(base):
    rows = by_siret(base)
    zero = rows.loc["01234567400019"]
    assert (zero["siren"], zero["code_commune"], zero["code_departement"], zero["code_postal"]) == (
        "012345674", "06088", "06", "06000"
    )
    assert rows.loc["53378459100018", ["code_commune", "code_departement"]].tolist() == ["01053", "01"]
    assert rows.loc["33473503200016", ["code_commune", "code_departement"]].tolist() == ["2A004", "2A"]
    assert rows.loc["49101169800017", ["code_commune", "code_departement"]].tolist() == ["2B033", "2B"]
    assert rows.loc["35397573300018", "code_departement"] == "974"
    for col in ("siret", "siren", "code_commune", "code_departement", "code_postal", "categorie_juridique"):
        assert base.frame[col].dtype == "string", col


def test_html_entities_decoded_and_markup_kept_literally(base):
    rows = by_siret(base)
    assert rows.loc["44860472800015", "enseigne"] == "Escale & CO"
    assert rows.loc["80873710000012", "enseigne"] == "<script>alert(1)</script>"


# --- Positions -----------------------------------------------------------------------------------


def test_lambert_and_utm_coordinates_transform_to_known_lon_lat(base):
    rows = by_siret(base)
    for siret, (lon, lat, epsg, territory) in KNOWN.items():
        row = rows.loc[siret]
        assert abs(row["longitude"] - lon) < 1e-6 and abs(row["latitude"] - lat) < 1e-6, siret
        assert abs(row.geometry.x - lon) < 1e-6 and abs(row.geometry.y - lat) < 1e-6, siret
        assert (row["epsg"], row["epsg_metrique"], row["territoire"]) == (epsg, epsg, territory), siret
        assert row["source_position"] == "stock_lambert"
    marseille = rows.loc["10002917200010"]
    assert (marseille["x"], marseille["y"]) == (893290.83, 6247340.40)  # as published


def test_geolocation_file_gives_positions(with_geo):
    rows = by_siret(with_geo)
    geo_only = rows.loc[GEO_ONLY]  # no stock coordinates: placed from the geolocation file
    assert geo_only["source_position"] == "geolocalisation"
    assert abs(geo_only["longitude"] - 5.381) < 1e-6 and abs(geo_only["latitude"] - 43.299) < 1e-6
    reunion = rows.loc["35397573300018"]
    assert reunion["source_position"] == "geolocalisation"
    assert (reunion["x"], reunion["y"], reunion["epsg"]) == (338571.95, 7690099.05, 2975)
    assert abs(reunion["longitude"] - 55.4481) < 1e-6 and abs(reunion["latitude"] + 20.8823) < 1e-6
    assert rows.loc["10009465500014", "source_position"] == "stock_lambert"
    assert "98765432400019" not in rows.index  # geolocated but not ESS
    assert with_geo.meta.file_name.endswith(" + " + GEO.name)
    assert (with_geo.meta.rows_read, with_geo.meta.rows_kept, with_geo.meta.rows_quarantined) == (25, 16, 9)


def test_geolocation_file_with_projected_coordinates_only(tmp_path):
    geo = tmp_path / "geoloc.csv"
    geo.write_text(
        "siret;x;y;epsg\n"
        f"{GEO_ONLY};893290.83;6247340.40;2154\n"
        "35397573300018;338571.95;7690099.05;EPSG:2975\n",
        encoding="utf-8",
    )
    rows = by_siret(read_sirene(UL, ETAB, geolocalisation=geo))
    expected = {GEO_ONLY: (5.381, 43.299, 2154), "35397573300018": (55.4481, -20.8823, 2975)}
    for siret, (lon, lat, epsg) in expected.items():
        row = rows.loc[siret]
        assert row["source_position"] == "geolocalisation" and row["epsg"] == epsg
        assert abs(row["longitude"] - lon) < 1e-6 and abs(row["latitude"] - lat) < 1e-6


def test_lat_lon_swapped_in_geolocation_file(base, with_geo):
    assert SWAPPED in set(base.frame["siret"])
    assert SWAPPED not in set(with_geo.frame["siret"])
    row = reason_at(with_geo, 4, GEO.name)
    assert row["column_name"] == "x_longitude"
    assert row["value"] == "x_longitude=43.710200 ; y_latitude=7.262000"
    assert row["reason"].startswith("latitude et longitude inversées")


def test_coordinates_outside_the_territory(base):
    row = reason_at(base, 25)
    assert row["column_name"] == "coordonneeLambertAbscisseEtablissement"
    assert row["value"] == "x=652000.00 ; y=6862000.00"
    assert "hors du territoire" in row["reason"] and "La Réunion" in row["reason"]


def test_missing_coordinates(base):
    assert reason_at(base, 23)["reason"] == REASON_NO_COORDINATES
    nd = reason_at(base, 24)
    assert nd["reason"].startswith(REASON_NO_COORDINATES) and "[ND]" in nd["value"]
    assert reason_at(base, 28)["reason"] == REASON_NO_COORDINATES  # no geolocation file given


# --- Row-level problems --------------------------------------------------------------------------


def test_invalid_siret(base):
    short = reason_at(base, 20)
    assert (short["column_name"], short["value"]) == ("siret", "1000291720002")
    assert "14 chiffres attendus (13 caractères)" in short["reason"]
    key = reason_at(base, 21)
    assert key["value"] == "10007004400028" and "clé de contrôle (Luhn)" in key["reason"]


def test_duplicate_siret_keeps_the_first(base):
    row = reason_at(base, 22)
    assert row["value"] == "33473503200016"
    assert "SIRET en double" in row["reason"] and "ligne 6" in row["reason"]
    assert (base.frame["siret"] == "33473503200016").sum() == 1


def test_invalid_commune_and_abroad(base):
    invalid = reason_at(base, 26)
    assert (invalid["column_name"], invalid["value"]) == ("codeCommuneEtablissement", "97X09")
    assert "code commune invalide" in invalid["reason"]
    abroad = reason_at(base, 27)
    assert abroad["value"] == "99131" and "étranger" in abroad["reason"]


def test_malformed_line_is_quarantined_and_line_numbers_stay_right(tmp_path):
    lines = ETAB.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(4, "1,2,3\n")  # becomes line 5; every later row moves down by one
    path = tmp_path / "StockEtablissement_utf8.csv"
    path.write_text("".join(lines), encoding="utf-8")
    result = read_sirene(UL, path)
    bad = reason_at(result, 5, path.name)
    assert bad["value"] == "1,2,3" and "ligne CSV mal formée" in bad["reason"]
    assert "ligne 7" in reason_at(result, 23, path.name)["reason"]  # duplicate, first copy moved
    assert reason_at(result, 21, path.name)["value"] == "1000291720002"
    assert result.meta.rows_read == result.meta.rows_kept + result.meta.rows_quarantined == 26


# --- Territory filter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("departements", "kept", "quarantined_lines"),
    [
        (["13"], {"10002917200010", "32407950800010", "44860472800015", "80873710000012"}, {20, 28}),
        (["2a"], {"33473503200016"}, {22}),
        (["2B"], {"49101169800017"}, {23}),
        (["974"], {"35397573300018"}, {25}),
        (["6", "971"], {"10007004400019", "01234567400019", "10007004400035", "31396794500012"}, {21, 24}),
        (["05"], set(), set()),
    ],
)
def test_departement_filter(departements, kept, quarantined_lines):
    result = read_sirene(UL, ETAB, departements=departements)
    assert set(result.frame["siret"]) == kept
    assert set(result.quarantine["row_number"]) == quarantined_lines
    assert result.meta.rows_read == len(kept) + len(quarantined_lines)


def test_unknown_departement_is_refused():
    with pytest.raises(ValueError, match="Département inconnu : « 99 »"):
        read_sirene(UL, ETAB, departements=["99"])


# --- Formats -------------------------------------------------------------------------------------


def _frames_equal(left, right) -> None:
    pd.testing.assert_frame_equal(
        pd.DataFrame(left.frame.drop(columns="geometry")), pd.DataFrame(right.frame.drop(columns="geometry"))
    )
    assert left.frame.geometry.geom_equals(right.frame.geometry).all()


def test_parquet_gives_the_same_result_as_csv(tmp_path, base):
    con = duckdb.connect()
    for src, name in ((UL, "StockUniteLegale_utf8.parquet"), (ETAB, "StockEtablissement_utf8.parquet")):
        con.execute(
            f"COPY (SELECT * FROM read_csv('{src}', header = true, all_varchar = true)) "
            f"TO '{tmp_path / name}' (FORMAT parquet)"
        )
    result = read_sirene(tmp_path / "StockUniteLegale_utf8.parquet", tmp_path / "StockEtablissement_utf8.parquet")
    _frames_equal(result, base)
    columns = ["row_number", "column_name", "value", "reason"]
    expected = base.quarantine[columns].assign(
        reason=base.quarantine["reason"].str.replace(ETAB.name, "StockEtablissement_utf8.parquet")
    )
    pd.testing.assert_frame_equal(result.quarantine[columns], expected)
    assert set(result.quarantine["file_name"]) == {"StockEtablissement_utf8.parquet"}
    assert result.meta.generation == "2025-11"


def test_typed_parquet_keeps_leading_zeros(tmp_path, base):
    """Parquet with typed columns (codes as integers, booleans, dates): codes get their zeros back."""
    con = duckdb.connect()
    ul, etab = tmp_path / "ul.parquet", tmp_path / "etab.parquet"
    con.execute(
        f"COPY (SELECT * REPLACE (CAST(siren AS BIGINT) AS siren, "
        f"CAST(categorieJuridiqueUniteLegale AS INTEGER) AS categorieJuridiqueUniteLegale) "
        f"FROM read_csv('{UL}', header = true, all_varchar = true)) TO '{ul}' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT * REPLACE (CAST(siren AS BIGINT) AS siren, TRY_CAST(siret AS BIGINT) AS siret, "
        "CAST(codePostalEtablissement AS INTEGER) AS codePostalEtablissement, "
        "CAST(etablissementSiege AS BOOLEAN) AS etablissementSiege, "
        "CAST(dateCreationEtablissement AS DATE) AS dateCreationEtablissement, "
        "CAST(dateDernierTraitementEtablissement AS TIMESTAMP) AS dateDernierTraitementEtablissement, "
        "TRY_CAST(coordonneeLambertAbscisseEtablissement AS DOUBLE) AS coordonneeLambertAbscisseEtablissement, "
        "TRY_CAST(coordonneeLambertOrdonneeEtablissement AS DOUBLE) AS coordonneeLambertOrdonneeEtablissement) "
        f"FROM read_csv('{ETAB}', header = true, all_varchar = true)) TO '{etab}' (FORMAT parquet)"
    )
    result = read_sirene(ul, etab)
    _frames_equal(result, base)
    assert result.meta.generation == "2025-11"
    assert set(result.quarantine["row_number"]) == set(base.quarantine["row_number"])


def test_gzip_csv(tmp_path, base):
    path = tmp_path / "StockEtablissement_utf8.csv.gz"
    path.write_bytes(gzip.compress(ETAB.read_bytes()))
    _frames_equal(read_sirene(UL, path), base)


def test_utf8_with_bom(tmp_path, base):
    path = tmp_path / "StockEtablissement_bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ETAB.read_bytes())
    result = read_sirene(UL, path)
    _frames_equal(result, base)
    assert result.meta.warnings == []


def test_semicolon_separated_stock_is_read_with_a_warning(tmp_path, base):
    path = rewrite_csv(tmp_path / "StockEtablissement_pointvirgule.csv", delimiter=";")
    result = read_sirene(UL, path)
    _frames_equal(result, base)
    assert any("séparateur « ; »" in w and path.name in w for w in result.meta.warnings)


def test_latin1_file_reads_accents_with_a_warning(tmp_path):
    def edit(rows):
        rows[13]["enseigne1Etablissement"] = "L’Escale à Marseille"  # Windows-1252 apostrophe

    path = rewrite_csv(tmp_path / "StockEtablissement_latin1.csv", encoding="cp1252", edit=edit)
    result = read_sirene(UL, path)
    rows = by_siret(result)
    assert rows.loc["10002917200010", "enseigne"] == "Café des Possibles"
    assert rows.loc["44860472800015", "enseigne"] == "L’Escale à Marseille"
    warning = " ".join(result.meta.warnings)
    assert path.name in warning and "ligne 2" in warning and "colonne « enseigne1Etablissement »" in warning
    assert "Latin-1" in warning


def test_non_utf8_byte_beyond_the_sampled_start(tmp_path, monkeypatch):
    """A Latin-1 byte past the sample makes DuckDB reject it: the file is read again as Latin-1."""
    def edit(rows):
        rows[13]["enseigne1Etablissement"] = "Crèche"

    path = tmp_path / "StockEtablissement_latin1_tardif.csv"
    rewrite_csv(path, edit=edit)
    content = path.read_bytes().replace("Café".encode(), b"Cafe")
    path.write_bytes(content.replace("Crèche".encode(), "Crèche".encode("latin-1")))
    monkeypatch.setattr(sirene_files, "SAMPLE_BYTES", 2000)  # the first rows are valid UTF-8
    result = read_sirene(UL, path)
    assert by_siret(result).loc["44860472800015", "enseigne"] == "Crèche"
    assert any("ligne 15" in w and "Latin-1" in w for w in result.meta.warnings)
    assert len(result.frame) == 16 and not result.quarantine["reason"].str.contains("mal formée").any()


# --- Whole-file problems -------------------------------------------------------------------------


def test_missing_required_column_names_file_column_and_fix(tmp_path):
    def edit(rows):
        for row in rows:
            row["etatAdministratif"] = row.pop("etatAdministratifEtablissement")

    path = rewrite_csv(tmp_path / "StockEtablissement_renomme.csv", edit=edit)
    steps = []
    with pytest.raises(InputFileError) as err:
        read_sirene(UL, path, progress=lambda label, fraction: steps.append(fraction))
    message = str(err.value)
    assert path.name in message and "ligne 1" in message and "colonne « etatAdministratifEtablissement »" in message
    assert "Solution" in message and "« etatAdministratif »" in message
    assert steps == [0.0]  # refused before any scan


def test_missing_column_in_legal_units_and_geolocation(tmp_path):
    ul = tmp_path / "ul.csv"
    pd.read_csv(UL, dtype=str).drop(columns="economieSocialeSolidaireUniteLegale").to_csv(ul, index=False)
    with pytest.raises(InputFileError, match="colonne « economieSocialeSolidaireUniteLegale »"):
        read_sirene(ul, ETAB)
    geo = tmp_path / "geo.csv"
    geo.write_text("siret;x;y\n10002917200036;893290.83;6247340.40\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"geo\.csv.*ligne 1.*colonne « x_longitude »"):
        read_sirene(UL, ETAB, geolocalisation=geo)


def test_without_lambert_columns_a_geolocation_file_is_needed(tmp_path):
    def edit(rows):
        for row in rows:
            del row["coordonneeLambertAbscisseEtablissement"], row["coordonneeLambertOrdonneeEtablissement"]

    path = rewrite_csv(tmp_path / "StockEtablissement_2022.csv", edit=edit)
    with pytest.raises(InputFileError, match="coordonneeLambertAbscisseEtablissement"):
        read_sirene(UL, path)
    result = read_sirene(UL, path, geolocalisation=GEO)
    assert set(result.frame["siret"]) == {"35397573300018", GEO_ONLY}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "le fichier est vide"),
        (b"\n  \n", "le fichier est vide"),
        (",".join(ETABLISSEMENT_COLUMNS).encode() + b"\n", "que la ligne d'en-tête"),
    ],
)
def test_empty_and_header_only_files(tmp_path, content, expected):
    path = tmp_path / "StockEtablissement_vide.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=expected) as err:
        read_sirene(UL, path)
    assert path.name in str(err.value)
    if "en-tête" in expected:
        assert "ligne 2" in str(err.value)


def test_header_only_parquet_and_empty_legal_units(tmp_path):
    path = tmp_path / "etab.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_csv('{ETAB}', header = true, all_varchar = true) LIMIT 0) "
        f"TO '{path}' (FORMAT parquet)"
    )
    with pytest.raises(InputFileError, match="aucune ligne de données"):
        read_sirene(UL, path)
    empty = tmp_path / "StockUniteLegale_utf8.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="StockUniteLegale_utf8.csv.*vide"):
        read_sirene(empty, ETAB)


def test_missing_file_and_zip(tmp_path):
    with pytest.raises(InputFileError, match="introuvable"):
        read_sirene(UL, tmp_path / "absent.csv")
    archive = tmp_path / "StockEtablissement_utf8.zip"
    archive.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputFileError, match="décompressez"):
        read_sirene(UL, archive)


# --- Several files, synthetic data, progress -----------------------------------------------------


def test_several_files_natural_person_denomination(tmp_path):
    row = dict.fromkeys(ETABLISSEMENT_COLUMNS, "")
    row.update(
        siren="555123454", nic="00012", siret="55512345400012", etatAdministratifEtablissement="A",
        codeCommuneEtablissement="13055", codePostalEtablissement="13001", libelleCommuneEtablissement="MARSEILLE",
        coordonneeLambertAbscisseEtablissement="893290.83", coordonneeLambertOrdonneeEtablissement="6247340.40",
        activitePrincipaleEtablissement="88.91A", nomenclatureActivitePrincipaleEtablissement="NAFRev2",
        caractereEmployeurEtablissement="N", etablissementSiege="true",
    )
    extra = tmp_path / "StockEtablissement_partie2.csv"
    with open(extra, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ETABLISSEMENT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)
        writer.writerow({**row, "siret": "5551234540001"})
    result = read_sirene([UL, UL_COMPLEMENT], [ETAB, extra])
    person = by_siret(result).loc["55512345400012"]
    assert person["denomination"] == "CLAIRE MARTIN" and person["famille"] == "societe_commerciale_ess"
    assert len(result.frame) == 17
    assert reason_at(result, 3, extra.name)["value"] == "5551234540001"
    assert reason_at(result, 20, ETAB.name)["value"] == "1000291720002"
    assert result.meta.file_name == " + ".join(p.name for p in (UL, UL_COMPLEMENT, ETAB, extra))


def test_synthetic_auto_detection(tmp_path):
    for f in (UL, ETAB):
        shutil.copy(f, tmp_path / f.name)
    etab = tmp_path / ETAB.name
    manifest = tmp_path / "essmap-synthetic.json"
    manifest.write_text(
        json.dumps({"generator": "essmap.demo.synthetic", "files": [UL.name, ETAB.name]}), encoding="utf-8"
    )
    result = read_sirene(tmp_path / UL.name, etab)
    assert result.meta.is_synthetic is True
    assert result.frame["is_synthetic"].all() and len(result.frame) == 16
    assert read_sirene(tmp_path / UL.name, etab, is_synthetic=False).meta.is_synthetic is False
    manifest.write_text(json.dumps({"files": ["autre.csv"]}), encoding="utf-8")
    assert read_sirene(tmp_path / UL.name, etab).meta.is_synthetic is False


def test_progress_is_reported_in_french_until_done():
    steps: list[tuple[str, float]] = []
    read_sirene(UL, ETAB, geolocalisation=GEO, progress=lambda label, fraction: steps.append((label, fraction)))
    fractions = [f for _, f in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any("Géolocalisation" in label for label, _ in steps)
    assert all(isinstance(label, str) and label for label, _ in steps)


def test_physical_line_numbers_account_for_rejected_lines():
    k = pd.Series([1, 2, 3, 4])
    assert physical_lines(k, np.array([], dtype="int64")).tolist() == [2, 3, 4, 5]
    # lines 3 and 5 rejected: data rows are on lines 2, 4, 6, 7
    assert physical_lines(k, np.array([3, 5])).tolist() == [2, 4, 6, 7]


# --- Damaged stocks are refused, not half read ---------------------------------------------------


def test_stock_cut_in_the_middle_of_a_record_is_refused(tmp_path):
    content = ETAB.read_bytes()
    last_line = content.rstrip(b"\n").rfind(b"\n") + 1
    path = tmp_path / "StockEtablissement_utf8.csv"
    path.write_bytes(content[: last_line + 40])  # the last record stops after 40 bytes
    with pytest.raises(InputFileError, match=r"ligne 29 : le fichier est tronqué .* sur 54") as err:
        read_sirene(UL, path)
    assert "retéléchargez" in str(err.value)
    # the same file without its final line break but complete is read
    path.write_bytes(content.rstrip(b"\n"))
    assert len(read_sirene(UL, path).frame) == 16


def test_cut_found_by_the_streaming_pass_past_the_sample(tmp_path, monkeypatch):
    content = ETAB.read_bytes()
    path = tmp_path / "StockEtablissement_utf8.csv"
    path.write_bytes(content[: len(content) - 30])
    monkeypatch.setattr(sirene_files, "SAMPLE_BYTES", 2000)  # the cut lies beyond the sample
    with pytest.raises(InputFileError, match="ligne 29 : le fichier est tronqué"):
        read_sirene(UL, path)


def test_truncated_gzip_is_refused(tmp_path):
    packed = gzip.compress(ETAB.read_bytes() * 40)
    path = tmp_path / "StockEtablissement_utf8.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputFileError, match="archive gzip tronquée"):
        read_sirene(UL, path)


def test_header_over_misaligned_data_is_refused(tmp_path):
    header, *rows = ETAB.read_text(encoding="utf-8").splitlines()
    shifted = tmp_path / "StockEtablissement_decale.csv"
    shifted.write_text("\n".join([header, *(f"{row},extra,values" for row in rows)]) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"ligne 2 : l'en-tête et les données sont décalés : 28 des 28 "
                                             r"premières lignes .* 56 valeurs pour 54 colonnes"):
        read_sirene(UL, shifted)
    other = tmp_path / "StockEtablissement_autre.csv"  # the header of another file: siret values as siren
    columns = header.split(",")
    swapped = [columns[2], columns[1], columns[0], *columns[3:]]
    other.write_text("\n".join([",".join(swapped), *rows]) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"colonne « siren » : les valeurs ne correspondent pas à l'en-tête"):
        read_sirene(UL, other)


def test_broken_headers_and_binary_content_are_refused(tmp_path):
    header, *rows = ETAB.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "StockEtablissement_utf8.csv"
    path.write_text("\n".join([header + ",", *(row + "," for row in rows)]) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="colonne n° 55 est sans nom"):
        read_sirene(UL, path)
    path.write_bytes(ETAB.read_bytes().replace(b"\n", b"\x00\n", 3))
    with pytest.raises(InputFileError, match="octets nuls"):
        read_sirene(UL, path)
    path.write_bytes(ETAB.read_text(encoding="utf-8").encode("utf-16"))
    with pytest.raises(InputFileError, match="encodage UTF-16"):
        read_sirene(UL, path)
    path.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(InputFileError, match="le fichier est vide"):
        read_sirene(UL, path)


def test_a_folder_and_an_unknown_departement_are_refused_in_french(tmp_path):
    from essmap.domain.errors import EssmapError

    with pytest.raises(InputFileError, match="c'est un dossier, pas un fichier"):
        read_sirene(UL, tmp_path)
    with pytest.raises(EssmapError, match="Département inconnu : « 99 »"):
        read_sirene(UL, ETAB, departements=["99"])


# --- A read in parts -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def awkward_geolocation(tmp_path_factory) -> Path:
    """A geolocation file that makes the parts depend on each other: a SIRET given twice (the
    first row wins), and INSEE QPV values of unexpected form spread over the file (one warning per
    generation, with the first three distinct values in file order)."""
    qp24 = ["1330M", "QN01330M", "", "ZZZZ9", "1330M", "QP013001", "", "ABCDEF1"]
    qp15 = ["", "Q1", "", "", "QP013001", "", "Q1", ""]
    rows = ["siret;x;y;epsg;plg_qp24;plg_qp15;qualite_xy;x_longitude;y_latitude"]
    metropole = [(s, v) for s, v in KNOWN.items() if v[3] == "metropole"]
    for (siret, (lon, lat, _epsg, _t)), a, b in zip(metropole, qp24, qp15, strict=False):
        rows.append(f"{siret};;;;{a};{b};11;{lon:.6f};{lat:.6f}")
    first_siret, (lon, lat, _e, _t) = metropole[0]
    rows.append(f"{first_siret};;;;QN01330M;;22;{lon + 0.01:.6f};{lat:.6f}")  # repeated: ignored
    path = tmp_path_factory.mktemp("geo") / "GeolocalisationEtablissement_parts.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def awkward_whole(awkward_geolocation):
    """The read of :func:`awkward_geolocation` in one part, which the reads in parts must give."""
    return read_sirene(UL, ETAB, geolocalisation=awkward_geolocation, part_rows=10_000)


def _same_read(left, right) -> None:
    _frames_equal(left, right)
    assert list(left.frame.columns) == list(right.frame.columns)
    pd.testing.assert_frame_equal(left.quarantine, right.quarantine)
    assert left.meta == right.meta


def test_the_awkward_file_is_read_with_its_warnings_and_quarantine(awkward_whole):
    assert any("SIRET présents plusieurs fois" in w for w in awkward_whole.meta.warnings)
    odd = [w for w in awkward_whole.meta.warnings if "forme inattendue" in w]
    assert len(odd) == 2 and "« 1330M », « ZZZZ9 », « QP013001 »" in odd[0] and "QPV 2015" in odd[1]
    assert "SIRET en double" in reason_at(awkward_whole, 22)["reason"]  # its first occurrence is line 6


# One row per part puts every two rows in different parts; parts of several rows with a shorter last
# one are read here (7) and by the next test (3).
@pytest.mark.parametrize("part_rows", [1, 7])
def test_a_read_in_parts_gives_the_same_rows_quarantine_and_warnings(awkward_geolocation, awkward_whole, part_rows):
    _same_read(read_sirene(UL, ETAB, geolocalisation=awkward_geolocation, part_rows=part_rows), awkward_whole)


def test_parts_are_handed_over_and_not_kept(awkward_geolocation, awkward_whole):
    given: list = []
    result = read_sirene(UL, ETAB, geolocalisation=awkward_geolocation, part_rows=3, parts=given.append)
    assert len(given) > 2 and result.frame.empty and list(result.frame.columns) == list(awkward_whole.frame.columns)
    assert result.meta.rows_kept == sum(len(p) for p in given) == len(awkward_whole.frame)
    _same_read(result.__class__(pd.concat(given, ignore_index=True), result.quarantine, result.meta), awkward_whole)
