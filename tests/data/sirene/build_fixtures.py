"""Rebuild the SIRENE test fixtures (run from the repository root; kept for provenance).

- ``unites_legales_ess_extrait.csv``: 40 real legal units copied from the shared INSEE extract
  (``unites_legales_ess_numerique.csv``, Licence Ouverte), then 2 hand-made units at the end.
- ``StockUniteLegale_complement.csv``: one hand-made unit in the full official layout.
- ``StockEtablissement_extrait.csv``: hand-made establishment rows in the full official layout,
  for some of those units; Lambert/UTM coordinates computed here from known lon/lat.
- ``GeolocalisationEtablissement_extrait.csv``: hand-made rows in INSEE's geolocation layout.

Usage: ``.venv/bin/python tests/data/sirene/build_fixtures.py /path/to/unites_legales_ess_numerique.csv``
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pandas as pd
from pyproj import Transformer

from essmap.io.readers.sirene import (
    ETABLISSEMENT_COLUMNS,
    GEOLOCALISATION_COLUMNS,
    UNITE_LEGALE_COLUMNS,
)

HERE = Path(__file__).parent


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def with_key(prefix: str) -> str:
    """Append the Luhn check digit."""
    return next(prefix + str(k) for k in range(10) if luhn_ok(prefix + str(k)))


# Places: commune code, postal code, name, lon, lat (WGS84), metric EPSG of the territory.
PLACES = {
    "marseille1": ("13201", "13001", "MARSEILLE", 5.381000, 43.299000, 2154),
    "marseille2": ("13202", "13002", "MARSEILLE", 5.365000, 43.310000, 2154),
    "marseille3": ("13203", "13003", "MARSEILLE", 5.380000, 43.312000, 2154),
    "marseille6": ("13206", "13006", "MARSEILLE", 5.380000, 43.288000, 2154),
    "paris8": ("75108", "75008", "PARIS", 2.310000, 48.872000, 2154),
    "nice": ("06088", "06000", "NICE", 7.262000, 43.710200, 2154),
    "bourg": ("01053", "01000", "BOURG-EN-BRESSE", 5.225600, 46.205200, 2154),
    "ajaccio": ("2A004", "20000", "AJACCIO", 8.736900, 41.919200, 2154),
    "bastia": ("2B033", "20200", "BASTIA", 9.450000, 42.697000, 2154),
    "saint_denis": ("97411", "97400", "SAINT-DENIS", 55.448100, -20.882300, 2975),
    "pointe_a_pitre": ("97120", "97110", "POINTE-A-PITRE", -61.533100, 16.241100, 5490),
    "cayenne": ("97302", "97300", "CAYENNE", -52.326000, 4.937200, 2972),
    "mamoudzou": ("97611", "97600", "MAMOUDZOU", 45.227900, -12.780600, 4471),
    "fort_de_france": ("97209", "97200", "FORT-DE-FRANCE", -61.058800, 14.616100, 5490),
}


def project(lon: float, lat: float, epsg: int) -> tuple[str, str]:
    x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(lon, lat)
    return f"{x:.2f}", f"{y:.2f}"


REAL_PICKS = [
    "100029172", "100094655", "100070044", "334735032", "491011698", "353975733", "313967945",
    "310238894", "309266633", "388225021", "533784591", "324079508", "448604728", "808737100",
    "409193810", "811742436", "524951712", "750584864",
]

ZERO_SIREN = with_key("01234567")  # hand-made ESS association with a leading zero
NON_ESS_SIREN = with_key("98765432")  # hand-made unit flagged N
PERSON_SIREN = with_key("55512345")  # hand-made natural person flagged O (complement file)
UNKNOWN_SIREN = with_key("77788899")  # in no legal-unit file


def build_unites_legales(shared: Path) -> None:
    real = pd.read_csv(shared, dtype=str, keep_default_na=False)
    picks = real[real["siren"].isin(REAL_PICKS)]
    others = real[~real["siren"].isin(REAL_PICKS)].head(40 - len(picks))
    extract = pd.concat([picks, others]).sort_index()
    assert len(extract) == 40
    hand = pd.DataFrame(
        [
            {"siren": ZERO_SIREN, "denominationUniteLegale": "ASSOCIATION FICTIVE ZERO", "nomUniteLegale": "",
             "activitePrincipaleUniteLegale": "88.99B", "economieSocialeSolidaireUniteLegale": "O",
             "categorieJuridiqueUniteLegale": "9220", "trancheEffectifsUniteLegale": "01",
             "sources": "fictif", "methode_jointure": "fictif"},
            {"siren": NON_ESS_SIREN, "denominationUniteLegale": "SOCIETE FICTIVE HORS ESS", "nomUniteLegale": "",
             "activitePrincipaleUniteLegale": "62.01Z", "economieSocialeSolidaireUniteLegale": "N",
             "categorieJuridiqueUniteLegale": "5710", "trancheEffectifsUniteLegale": "11",
             "sources": "fictif", "methode_jointure": "fictif"},
        ]
    )
    pd.concat([extract, hand]).to_csv(HERE / "unites_legales_ess_extrait.csv", index=False, lineterminator="\n")

    row = dict.fromkeys(UNITE_LEGALE_COLUMNS, "")
    row.update(
        siren=PERSON_SIREN, statutDiffusionUniteLegale="O", dateCreationUniteLegale="2019-05-02",
        sexeUniteLegale="F", prenom1UniteLegale="CLAIRE", prenomUsuelUniteLegale="CLAIRE",
        trancheEffectifsUniteLegale="NN", dateDernierTraitementUniteLegale="2024-02-01T10:00:00",
        nombrePeriodesUniteLegale="1", categorieEntreprise="PME", anneeCategorieEntreprise="2022",
        dateDebut="2019-05-02", etatAdministratifUniteLegale="A", nomUniteLegale="MARTIN",
        categorieJuridiqueUniteLegale="1000", activitePrincipaleUniteLegale="88.91A",
        nomenclatureActivitePrincipaleUniteLegale="NAFRev2", nicSiegeUniteLegale="00012",
        economieSocialeSolidaireUniteLegale="O", caractereEmployeurUniteLegale="N",
    )
    write_csv(HERE / "StockUniteLegale_complement.csv", UNITE_LEGALE_COLUMNS, [row])


def etab(siren: str, nic4: str, place: str | None, **fields: str) -> dict[str, str]:
    row = dict.fromkeys(ETABLISSEMENT_COLUMNS, "")
    siret = with_key(siren + nic4)
    row.update(
        siren=siren, nic=siret[9:], siret=siret, statutDiffusionEtablissement="O",
        dateCreationEtablissement="2015-01-01", trancheEffectifsEtablissement="NN",
        anneeEffectifsEtablissement="", dateDernierTraitementEtablissement="2025-09-30T04:00:00",
        etablissementSiege="true", nombrePeriodesEtablissement="1", numeroVoieEtablissement="1",
        typeVoieEtablissement="RUE", libelleVoieEtablissement="DE LA REPUBLIQUE", dateDebut="2015-01-01",
        etatAdministratifEtablissement="A", activitePrincipaleEtablissement="62.01Z",
        nomenclatureActivitePrincipaleEtablissement="NAFRev2", caractereEmployeurEtablissement="N",
    )
    if place:
        commune, postal, name, lon, lat, epsg = PLACES[place]
        x, y = project(lon, lat, epsg)
        row.update(
            codeCommuneEtablissement=commune, codePostalEtablissement=postal, libelleCommuneEtablissement=name,
            coordonneeLambertAbscisseEtablissement=x, coordonneeLambertOrdonneeEtablissement=y,
        )
    row.update(fields)
    return row


def build_etablissements() -> None:
    rows = [
        # 1..16: kept
        etab("100029172", "0001", "marseille1", numeroVoieEtablissement="12", indiceRepetitionEtablissement="B",
             enseigne1Etablissement="Café des Possibles", activitePrincipaleEtablissement="85.59A",
             caractereEmployeurEtablissement="O", trancheEffectifsEtablissement="01",
             dateCreationEtablissement="2021-03-01", dateDernierTraitementEtablissement="2025-11-14T03:12:45"),
        etab("100094655", "0001", "paris8", activitePrincipaleEtablissement="94.99Z", typeVoieEtablissement="BD",
             libelleVoieEtablissement="HAUSSMANN", numeroVoieEtablissement="40"),
        etab("100094655", "0002", "paris8", etatAdministratifEtablissement="F", etablissementSiege="false"),
        etab("100070044", "0001", "nice", caractereEmployeurEtablissement="O", trancheEffectifsEtablissement="03",
             typeVoieEtablissement="AV", libelleVoieEtablissement="JEAN MEDECIN"),
        etab("334735032", "0001", "ajaccio", activitePrincipaleEtablissement="69.20Z",
             caractereEmployeurEtablissement="O"),
        etab("491011698", "0001", "bastia", caractereEmployeurEtablissement="O"),
        etab("353975733", "0001", "saint_denis", activitePrincipaleEtablissement="88.99B",
             caractereEmployeurEtablissement="O"),
        etab("313967945", "0001", "pointe_a_pitre", activitePrincipaleEtablissement="62.02A"),
        etab("310238894", "0001", "cayenne", activitePrincipaleEtablissement="62.03Z"),
        etab("309266633", "0001", "mamoudzou", activitePrincipaleEtablissement="69.20Z"),
        etab("388225021", "0001", "fort_de_france", activitePrincipaleEtablissement="91.01Z"),
        etab("533784591", "0001", "bourg", activitePrincipaleEtablissement="88.10A"),
        etab("324079508", "0001", "marseille6", activitePrincipaleEtablissement="72.2Z",
             nomenclatureActivitePrincipaleEtablissement="NAFRev1"),
        etab("448604728", "0001", "marseille3", enseigne1Etablissement="Escale &amp; CO"),
        etab("808737100", "0001", "marseille2", denominationUsuelleEtablissement="<script>alert(1)</script>"),
        etab(ZERO_SIREN, "0001", "nice", activitePrincipaleEtablissement="88.99B"),
        # 17, 18: excluded (legal unit not ESS, legal unit unknown)
        etab(NON_ESS_SIREN, "0001", "marseille1"),
        etab(UNKNOWN_SIREN, "0001", "marseille1"),
        # 19..26: quarantined
        etab("100029172", "0002", "marseille1", siret="1000291720002"),  # 13 characters
        etab("100070044", "0002", "nice"),  # checksum broken below
        etab("334735032", "0001", "ajaccio", activitePrincipaleEtablissement="69.20Z"),  # duplicate of row 5
        etab("491011698", "0002", "bastia", coordonneeLambertAbscisseEtablissement="",
             coordonneeLambertOrdonneeEtablissement="", etablissementSiege="false"),
        etab("313967945", "0002", "pointe_a_pitre", statutDiffusionEtablissement="P",
             coordonneeLambertAbscisseEtablissement="[ND]", coordonneeLambertOrdonneeEtablissement="[ND]",
             etablissementSiege="false"),
        etab("353975733", "0002", "saint_denis", coordonneeLambertAbscisseEtablissement="652000.00",
             coordonneeLambertOrdonneeEtablissement="6862000.00", etablissementSiege="false"),
        etab("388225021", "0002", "fort_de_france", codeCommuneEtablissement="97X09", etablissementSiege="false"),
        etab("309266633", "0002", None, codePaysEtrangerEtablissement="99131",
             libellePaysEtrangerEtablissement="BELGIQUE", libelleCommuneEtrangerEtablissement="BRUXELLES",
             etablissementSiege="false"),
        # 27: no stock coordinates, present in the geolocation file
        etab("100029172", "0003", "marseille1", coordonneeLambertAbscisseEtablissement="",
             coordonneeLambertOrdonneeEtablissement="", etablissementSiege="false"),
        # 28: good stock coordinates, lon/lat swapped in the geolocation file
        etab("100070044", "0003", "nice", etablissementSiege="false"),
    ]
    broken = rows[19]
    key = broken["siret"][-1]
    broken["siret"] = broken["siret"][:-1] + str((int(key) + 1) % 10)
    broken["nic"] = broken["siret"][9:]
    write_csv(HERE / "StockEtablissement_extrait.csv", ETABLISSEMENT_COLUMNS, rows)

    def geo(siret: str, place: str, *, swap: bool = False) -> dict[str, str]:
        commune, _, _, lon, lat, epsg = PLACES[place]
        x, y = project(lon, lat, epsg)
        row = dict.fromkeys(GEOLOCALISATION_COLUMNS, "")
        row.update(
            siret=siret, x=x, y=y, qualite_xy="11", epsg=str(epsg), plg_code_commune=commune,
            distance_precision="0", qualite_qp="1", qualite_iris="1",
            x_longitude=f"{lat:.6f}" if swap else f"{lon:.6f}", y_latitude=f"{lon:.6f}" if swap else f"{lat:.6f}",
        )
        return row

    geo_rows = [
        geo(rows[26]["siret"], "marseille1"),
        geo(rows[6]["siret"], "saint_denis"),
        geo(rows[27]["siret"], "nice", swap=True),
        geo(rows[16]["siret"], "marseille1"),  # not ESS: ignored
    ]
    write_csv(HERE / "GeolocalisationEtablissement_extrait.csv", GEOLOCALISATION_COLUMNS, geo_rows, delimiter=";")


def write_csv(path: Path, columns, rows, delimiter: str = ",") -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), delimiter=delimiter, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    build_unites_legales(Path(sys.argv[1]))
    build_etablissements()
