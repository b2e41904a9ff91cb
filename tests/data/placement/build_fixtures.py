"""Write the placement fixtures (deterministic): census rows, BAN files, SIRENE geolocation and stock.

Run from the project root: ``.venv/bin/python tests/data/placement/build_fixtures.py``.
Census rows are real rows of the France Tiers-Lieux 2023 extract (tests/data/tiers_lieux/) plus
hand-made rows (ids >= 90000); BAN, geolocation and stock rows are hand-made in the official
layouts, with positions near the real communes (not surveyed addresses).
"""

from __future__ import annotations

import csv
import gzip
import io
import unicodedata
from pathlib import Path

from pyproj import Transformer

HERE = Path(__file__).parent
TO_LAMBERT = Transformer.from_crs(4326, 2154, always_xy=True)

CENSUS_HEADER = ["ID_UNIQUE", "NOM", "Insee", "NOM_STRC_PORT", "ADRESSE", "CODPOST", "VILLE", "INTERNET", "siren",
                 "confiance_jointure", "methode_jointure", "sources"]
CENSUS = [
    # real rows of the 2023 extract
    ["71.0", "Anonymal - La Maison Numérique", "13001", "", "1 place Victor Schoelcher", "13090.0",
     "AIX EN PROVENCE", "https://maison-numerique.net", "", "", "scoring", "tiers_lieux"],
    ["131.0", "Axelle Benaich", "13055", "LA FABULERIE", "10 Bd Garibaldi", "13001.0",
     "MARSEILLE 1ER ARRONDISSEMENT", "http://www.lafabulerie.com", "528704117", "0.9", "scoring", "tiers_lieux"],
    ["309.0", "Cycle²", "41255", "", "26, rue st père", "41800.0", "TERNAY", "", "931898928", "0.91",
     "scoring", "tiers_lieux"],
    ["1120.0", "Le Petit Lien", "93014", "", "1 boulevard gagarine", "93390.0", "CLICHY SOUS BOIS", "",
     "949655765", "0.93", "scoring", "tiers_lieux"],
    ["1164.0", "Le tiers lieu de carpentras", "84031", "", "136 rue du vieil hopital", "84200.0", "CARPENTRAS", "",
     "062201199", "0.9", "scoring", "tiers_lieux"],
    ["1165.0", "Le tiers lieu de Sorgues", "84129", "", "35  rue des remparts", "84700.0", "SORGUES", "",
     "432887982", "0.9", "scoring", "tiers_lieux"],
    ["1312.0", "Médiathèque du Luc en Provence", "83073", "", "Avenue Gabriel Magnino", "83340.0", "LE LUC", "",
     "438568271", "0.82", "scoring", "tiers_lieux"],
    ["1482.0", "SCIC Provence Numerique", "84080", "", "2 Boulevard belle croix", "84170.0", "MONTEUX", "",
     "432887982", "0.88", "scoring", "tiers_lieux"],
    ["1499.0", "Solideria", "2B050", "", "", "20260.0", "CALVI", "", "808665285", "1.0", "scoring", "tiers_lieux"],
    ["1509.0", "Ste Marthe Tiers-Lieu pour la Transition", "06069", "", "17-21 avenue Chiris", "6130.0", "GRASSE",
     "", "", "", "scoring", "tiers_lieux"],
    # hand-made: abbreviation and repetition index, street of the same name in two arrondissements
    ["90001.0", "Atelier de la Libération (fictif)", "83073", "", "12 bis av. de la Libération", "83340.0",
     "LE LUC", "", "", "", "", "essmap"],
    ["90002.0", "Fablab République (fictif)", "13055", "", "5 r. de la République", "13002.0",
     "MARSEILLE 2E ARRONDISSEMENT", "", "", "", "", "essmap"],
    # hand-made: no address, no SIREN: known by its commune only
    ["90003.0", "Tiers-lieu sans adresse (fictif)", "13001", "", "", "13100.0", "AIX EN PROVENCE", "", "", "",
     "", "essmap"],
]

BAN_HEADER = ["id", "id_fantoir", "numero", "rep", "nom_voie", "code_postal", "code_insee", "nom_commune",
              "code_insee_ancienne_commune", "nom_ancienne_commune", "x", "y", "lon", "lat", "type_position",
              "alias", "nom_ld", "libelle_acheminement", "nom_afnor", "source_position", "source_nom_voie",
              "certification_commune", "cad_parcelles"]

#: (département, code_insee, commune, postcode, street, [(number, rep)], lon of first number, lat, step in degrees)
STREETS = [
    ("13", "13001", "Aix-en-Provence", "13090", "Place Victor Schœlcher", [(1, ""), (3, ""), (5, "")],
     5.43050, 43.51820, 0.0001),
    ("13", "13201", "Marseille 1er Arrondissement", "13001", "Boulevard Garibaldi", [(8, ""), (10, ""), (12, "")],
     5.38150, 43.29700, 0.0001),
    ("13", "13201", "Marseille 1er Arrondissement", "13001", "Rue de la République", [(1, ""), (5, "")],
     5.37280, 43.29860, 0.0002),
    ("13", "13202", "Marseille 2e Arrondissement", "13002", "Rue de la République", [(5, ""), (7, "")],
     5.36900, 43.30200, 0.0002),
    ("84", "84031", "Carpentras", "84200", "Rue du Vieil Hôpital", [(130, ""), (136, ""), (140, "")],
     5.04720, 44.05560, 0.0001),
    ("84", "84129", "Sorgues", "84700", "Rue des Remparts", [(1, ""), (3, ""), (5, ""), (7, ""), (9, "")],
     4.87300, 44.00800, 0.0001),
    ("84", "84080", "Monteux", "84170", "Rue des Remparts", [(33, ""), (35, ""), (37, "")],
     4.99710, 44.03520, 0.0001),
    ("84", "84080", "Monteux", "84170", "Boulevard Belle Croix", [(2, ""), (4, "")], 4.99400, 44.03300, 0.0001),
    ("83", "83073", "Le Luc", "83340", "Avenue Gabriel Magnino", [(1, ""), (5, ""), (9, "")],
     6.31200, 43.39200, 0.0003),
    ("83", "83073", "Le Luc", "83340", "Avenue de la Libération", [(10, ""), (12, ""), (12, "bis"), (14, "")],
     6.31500, 43.39400, 0.0001),
    ("06", "06069", "Grasse", "06130", "Avenue Chiris", [(15, ""), (17, ""), (19, "")], 6.92450, 43.65650, 0.0001),
    ("41", "41255", "Ternay", "41800", "Rue Saint-Père", [(24, ""), (26, "")], 0.77400, 47.73650, 0.0001),
]


def ban_rows() -> dict[str, list[list[str]]]:
    files: dict[str, list[list[str]]] = {}
    for dep, code, commune, postcode, street, numbers, lon0, lat0, step in STREETS:
        fantoir = f"{code}_{len(street):04d}"
        for i, (number, rep) in enumerate(numbers):
            lon, lat = round(lon0 + i * step, 6), round(lat0 + i * step / 2, 6)
            x, y = TO_LAMBERT.transform(lon, lat)
            files.setdefault(dep, []).append([
                f"{fantoir}_{number:05d}{'_' + rep if rep else ''}", fantoir, str(number), rep, street, postcode, code,
                commune, "", "", f"{x:.2f}", f"{y:.2f}", f"{lon:.6f}", f"{lat:.6f}", "entrée", "", "",
                commune.upper(), _afnor(street), "commune", "commune", "1", "",
            ])
    return files


def _afnor(street: str) -> str:
    """BAN's ``nom_afnor``: upper case, without accents."""
    folded = unicodedata.normalize("NFKD", street.replace("œ", "oe"))
    return "".join(c for c in folded if not unicodedata.combining(c)).upper()


def luhn_siret(siren: str, nic4: str) -> str:
    """A SIRET with a valid Luhn key: SIREN + 4 digits + the key digit."""
    base = siren + nic4
    for key in range(10):
        digits = [int(c) for c in base + str(key)]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return base + str(key)
    raise AssertionError


GEO_HEADER = ["siret", "x", "y", "qualite_xy", "epsg", "plg_qp", "plg_iris", "plg_zus", "plg_qp15", "plg_qva",
              "plg_code_commune", "distance_precision", "qualite_qp", "qualite_iris", "x_longitude", "y_latitude"]
#: (siret, commune, lon, lat, WGS84 pair written?)
ESTABLISHMENTS = [
    (luhn_siret("528704117", "0001"), "13201", 5.381620, 43.297080, True),   # La Fabulerie, Marseille 1er
    (luhn_siret("528704117", "0002"), "75056", 2.352200, 48.856600, True),   # same structure, Paris
    (luhn_siret("062201199", "0001"), "84031", 5.047310, 44.055650, True),   # Carpentras, at 136 rue du Vieil Hôpital
    (luhn_siret("062201199", "0002"), "84031", 5.051000, 44.058000, True),   # Carpentras, another address
    (luhn_siret("062201199", "0003"), "84031", 5.049000, 44.060000, True),   # Carpentras, closed (stock: F)
    (luhn_siret("432887982", "0001"), "84080", 4.994050, 44.033020, False),  # Monteux, x/y Lambert-93 only
]
STOCK_ADDRESSES = {  # siret -> (state, number, type, street, postcode)
    ESTABLISHMENTS[2][0]: ("A", "136", "R", "DU VIEIL HOPITAL", "84200"),
    ESTABLISHMENTS[3][0]: ("A", "2", "AV", "JEAN JAURES", "84200"),
    ESTABLISHMENTS[4][0]: ("F", "136", "R", "DU VIEIL HOPITAL", "84200"),
}


def geoloc_rows() -> list[list[str]]:
    rows = []
    for siret, commune, lon, lat, wgs84 in ESTABLISHMENTS:
        x, y = TO_LAMBERT.transform(lon, lat)
        rows.append([siret, f"{x:.2f}", f"{y:.2f}", "11", "2154", "", "", "", "", "", commune, "0", "1", "1",
                     f"{lon:.6f}" if wgs84 else "", f"{lat:.6f}" if wgs84 else ""])
    return rows


def stock_rows(header: list[str]) -> list[list[str]]:
    rows = []
    for siret, (state, number, kind, street, postcode) in STOCK_ADDRESSES.items():
        values = dict.fromkeys(header, "")
        values.update({
            "siren": siret[:9], "nic": siret[9:], "siret": siret, "statutDiffusionEtablissement": "O",
            "dateCreationEtablissement": "2015-01-01", "etablissementSiege": "false",
            "nombrePeriodesEtablissement": "1",
            "numeroVoieEtablissement": number, "typeVoieEtablissement": kind, "libelleVoieEtablissement": street,
            "codePostalEtablissement": postcode, "libelleCommuneEtablissement": "CARPENTRAS",
            "codeCommuneEtablissement": "84031", "dateDebut": "2015-01-01", "etatAdministratifEtablissement": state,
            "activitePrincipaleEtablissement": "94.99Z", "nomenclatureActivitePrincipaleEtablissement": "NAFRev2",
            "caractereEmployeurEtablissement": "N",
        })
        rows.append([values[c] for c in header])
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as out:
            out.write(buffer.getvalue().encode("utf-8"))
    else:
        path.write_text(buffer.getvalue(), encoding="utf-8")


def main() -> None:
    write_csv(HERE / "recensement_tiers_lieux_2023_extrait.csv", CENSUS_HEADER, CENSUS, ",")
    for dep, rows in ban_rows().items():
        write_csv(HERE / f"adresses-{dep}.csv.gz", BAN_HEADER, rows, ";")
    write_csv(HERE / "GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_extrait.csv", GEO_HEADER,
              geoloc_rows(), ";")
    stock_header = (HERE.parent / "sirene" / "StockEtablissement_extrait.csv").read_text(
        encoding="utf-8").splitlines()[0].split(",")
    write_csv(HERE / "StockEtablissement_tiers_lieux_extrait.csv", stock_header, stock_rows(stock_header), ",")


if __name__ == "__main__":
    main()
