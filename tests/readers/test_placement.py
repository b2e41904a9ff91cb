"""Positions for census rows without coordinates: SIRENE geolocation, then BAN addresses, then commune.

Fixtures (tests/data/placement/, see its README section): real census rows of the France
Tiers-Lieux 2023 extract plus two hand-made ones, BAN ``adresses-<DEP>.csv.gz`` files, an INSEE
geolocation file and a ``StockEtablissement``, all in the official layouts.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from essmap.domain import schema
from essmap.domain.errors import InputFileError
from essmap.io.readers.placement import AddressPart, PlacementFiles, address_parts, place_places, street_keys
from essmap.io.readers.tiers_lieux import NO_COORDINATES, read_tiers_lieux

DATA = Path(__file__).resolve().parent.parent / "data" / "placement"
CENSUS = DATA / "recensement_tiers_lieux_2023_extrait.csv"
GEOLOC = DATA / "GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_extrait.csv"
STOCK = DATA / "StockEtablissement_tiers_lieux_extrait.csv"
BAN = sorted(DATA.glob("adresses-*.csv.gz"))


def placed(files: PlacementFiles) -> pd.DataFrame:
    read = read_tiers_lieux(CENSUS, placement=files)
    assert read.quarantine.empty
    return read.frame.set_index("id_tiers_lieu")


def position(frame: pd.DataFrame, ident: str) -> tuple[str, float, float]:
    row = frame.loc[ident]
    return str(row["precision_localisation"]), round(float(row["longitude"]), 6), round(float(row["latitude"]), 6)


# --- Address readings and street keys --------------------------------------------------------------


def test_address_readings_of_real_census_addresses():
    assert address_parts("26, rue st père")[0] == AddressPart(26, "", "rue st père")
    assert address_parts("17-21 avenue Chiris")[0] == AddressPart(17, "", "avenue Chiris")
    assert address_parts("Le Kaléidoscope, 12 rue Ursin Scheid")[0] == AddressPart(12, "", "rue Ursin Scheid")
    assert address_parts("12B Av. de la Gare")[0] == AddressPart(12, "bis", "Av. de la Gare")
    assert address_parts("Avenue Gabriel Magnino") == [AddressPart(None, "", "Avenue Gabriel Magnino")]
    assert [p.street for p in address_parts("avenue de montpellier / route de lagamas")] == [
        "avenue de montpellier", "route de lagamas"]
    # no street at all: nothing to look up
    assert address_parts("Terrain Elisa") == [] and address_parts("") == [] and address_parts(None) == []


def test_street_keys_fold_accents_case_abbreviations_and_articles():
    keys = street_keys(["Bd Garibaldi", "BOULEVARD GARIBALDI", "r. St-Père", "Rue Saint Père",
                        "av. du Gal de Gaulle", "Avenue du Général de Gaulle", "Place Victor Schœlcher",
                        "place victor schoelcher", "pl. de l'Église", None])
    assert keys[0] == keys[1] == "boulevard garibaldi"
    assert keys[2] == keys[3] == "rue saint pere"
    assert keys[4] == keys[5] == "avenue general gaulle"
    assert keys[6] == keys[7] == "place victor schoelcher"
    assert keys[8] == "place eglise"
    assert keys[9] == ""


# --- Placing -----------------------------------------------------------------------------------------


def test_siren_gives_the_establishment_in_the_same_commune():
    frame = placed(PlacementFiles.of(geolocalisation=GEOLOC, ban=BAN))
    # La Fabulerie: one establishment in Marseille 1er (13201) for the census's 13055, one in Paris ignored
    assert position(frame, "131") == (schema.LOCATION_SIRET, 5.38162, 43.29708)
    # the geolocation row gives Lambert-93 x/y only: projected to WGS84 (fixture point 4.99405, 44.03302)
    precision, lon, lat = position(frame, "1482")
    assert precision == schema.LOCATION_SIRET
    assert lon == pytest.approx(4.99405, abs=1e-6) and lat == pytest.approx(44.03302, abs=1e-6)


def test_ambiguous_siren_falls_back_to_the_address_without_the_stock():
    files = PlacementFiles.of(geolocalisation=GEOLOC, ban=BAN)
    read = read_tiers_lieux(CENSUS, placement=files)
    frame = read.frame.set_index("id_tiers_lieu")
    # Carpentras: three establishments of 062201199 in 84031 -> the BAN's 136 rue du Vieil Hôpital
    assert position(frame, "1164") == (schema.LOCATION_BAN_NUMBER, 5.0473, 44.05565)
    assert any("plusieurs établissements dans la commune" in w for w in read.meta.warnings)


def test_the_stock_chooses_the_active_establishment_at_the_address():
    frame = placed(PlacementFiles.of(geolocalisation=GEOLOC, ban=BAN, etablissements=STOCK))
    # 0001 is active at 136 R DU VIEIL HOPITAL; 0003, at the same address, is closed; 0002 elsewhere
    assert position(frame, "1164") == (schema.LOCATION_SIRET, 5.04731, 44.05565)
    # establishments missing from a partial stock are still judged by the geolocation file's commune
    assert frame.loc["131", "precision_localisation"] == schema.LOCATION_SIRET


def test_siren_without_establishment_in_the_commune_uses_the_address():
    frame = placed(PlacementFiles.of(geolocalisation=GEOLOC, ban=BAN))
    # Sorgues: its SIREN's only establishment is in Monteux (84080): not used for Sorgues
    assert frame.loc["1165", "precision_localisation"] == schema.LOCATION_BAN_STREET


def test_homonymous_streets_are_matched_within_the_commune():
    frame = placed(PlacementFiles.of(ban=BAN))
    # "35 rue des remparts" in Sorgues: Sorgues's Rue des Remparts has numbers 1-9, Monteux's has a 35.
    # Never Monteux's number: Sorgues's street, at its middle number (5)
    assert position(frame, "1165") == (schema.LOCATION_BAN_STREET, 4.8732, 44.0081)


def test_same_street_in_two_arrondissements_is_decided_by_the_postcode():
    frame = placed(PlacementFiles.of(ban=BAN))
    # "5 r. de la République", 13055, postcode 13002: Marseille 1er and 2e both have a number 5
    assert position(frame, "90002") == (schema.LOCATION_BAN_NUMBER, 5.369, 43.302)
    # the census's 13055 matches the BAN's arrondissement codes (13201)
    assert position(frame, "131") == (schema.LOCATION_BAN_NUMBER, 5.3816, 43.29705)


def test_accents_abbreviations_and_repetition_indexes():
    frame = placed(PlacementFiles.of(ban=BAN))
    assert position(frame, "71") == (schema.LOCATION_BAN_NUMBER, 5.4305, 43.5182)  # Schoelcher = Schœlcher
    assert position(frame, "309") == (schema.LOCATION_BAN_NUMBER, 0.7741, 47.73655)  # "rue st père"
    assert position(frame, "1509") == (schema.LOCATION_BAN_NUMBER, 6.9246, 43.65655)  # "17-21": number 17
    # "12 bis av. de la Libération": 12 bis, not 12
    assert position(frame, "90001") == (schema.LOCATION_BAN_NUMBER, 6.3152, 43.3941)


def test_an_address_without_number_is_placed_on_its_street():
    frame = placed(PlacementFiles.of(ban=BAN))
    # "Avenue Gabriel Magnino": numbers 1, 5, 9 -> the middle one (5)
    assert position(frame, "1312") == (schema.LOCATION_BAN_STREET, 6.3123, 43.39215)


def test_unknown_address_or_none_stays_at_the_commune():
    read = read_tiers_lieux(CENSUS, placement=PlacementFiles.of(geolocalisation=GEOLOC, ban=BAN))
    frame = read.frame.set_index("id_tiers_lieu")
    for ident in ("1120", "1499", "90003"):  # street not in the BAN files; no address at all
        assert frame.loc[ident, "precision_localisation"] == schema.LOCATION_COMMUNE
        assert pd.isna(frame.loc[ident, "longitude"]) and frame.loc[ident, "geometry"] is None
    assert frame.loc["1499", "territoire"] == "metropole" and frame.loc["1499", "code_departement"] == "2B"
    counts = frame["precision_localisation"].value_counts().to_dict()
    assert counts == {schema.LOCATION_BAN_NUMBER: 6, schema.LOCATION_BAN_STREET: 2, schema.LOCATION_SIRET: 2,
                      schema.LOCATION_COMMUNE: 3}
    assert any("3 commune seulement" in w and "hors des calculs de rayon" in w for w in read.meta.warnings)


def test_without_placement_rows_without_coordinates_are_quarantined_as_before():
    read = read_tiers_lieux(CENSUS)
    assert read.frame.empty
    assert set(read.quarantine["reason"]) == {NO_COORDINATES}


def test_rows_with_coordinates_keep_them():
    listing = DATA.parent / "tiers_lieux" / "tiers_lieux_commune_mesure.csv"
    read = read_tiers_lieux(listing, placement=PlacementFiles.of(ban=BAN))
    assert (read.frame["precision_localisation"] == schema.LOCATION_PROVIDED).all()
    assert len(read.frame) == 38


def test_a_ban_file_without_its_columns_is_refused(tmp_path):
    bad = tmp_path / "adresses-84.csv.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as out:
        out.write("id;numero;nom_voie;code_insee\n84031_0001_00001;1;Rue X;84031\n")
    with pytest.raises(InputFileError) as error:
        read_tiers_lieux(CENSUS, placement=PlacementFiles.of(ban=[bad]))
    message = str(error.value)
    assert "adresses-84.csv.gz" in message and "lon" in message and "lat" in message


def test_place_places_is_usable_alone():
    places = pd.DataFrame({
        "code_commune": ["84129", "84080"], "adresse": ["3 Rue des Remparts", "35 rue des remparts"],
        "code_postal": [pd.NA, pd.NA], "siren": [pd.NA, pd.NA],
    }, index=[10, 20])
    found = place_places(places, PlacementFiles.of(ban=BAN))
    assert found.precision.tolist() == [schema.LOCATION_BAN_NUMBER] * 2
    assert found.longitude.round(4).tolist() == [4.8731, 4.9972]
