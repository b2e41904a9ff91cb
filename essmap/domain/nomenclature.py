"""ESS families, sectors and size bands, from the INSEE nomenclatures (see docs/domain.md).

Pure lookups, vectorised over pandas Series: readers use them to normalise SIRENE rows, the
analysis and the UI use the labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas where a Series is built: importing the labels stays light
    import pandas as pd

# --- Families (catégorie juridique, niveau III) -------------------------------------------------

ASSOCIATION = "association"
COOPERATIVE = "cooperative"
MUTUELLE = "mutuelle"
FONDATION = "fondation"
SOCIETE_COMMERCIALE = "societe_commerciale_ess"

FAMILY_LABELS: dict[str, str] = {
    ASSOCIATION: "Associations",
    COOPERATIVE: "Coopératives",
    MUTUELLE: "Mutuelles",
    FONDATION: "Fondations",
    SOCIETE_COMMERCIALE: "Sociétés commerciales de l'ESS",
}

_ASSOCIATION_CODES = {"9210", "9220", "9221", "9222", "9223", "9230", "9240", "9260"}
_FONDATION_CODES = {"9300"}
_MUTUELLE_CODES = {"8210", "8250", "8290", "6411"}
#: SCOP: SARL, SA à conseil d'administration, SA à directoire.
SCOP_CODES = frozenset({"5458", "5558", "5658"})
_COOPERATIVE_CODES = set(SCOP_CODES) | {
    "5192", "5193", "5194", "5195", "5196", "5203", "5307", "5309", "5443", "5451", "5453",
    "5454", "5455", "5459", "5460", "5543", "5547", "5551", "5552", "5553", "5554", "5555",
    "5559", "5560", "5643", "5647", "5651", "5652", "5653", "5654", "5655", "5659", "5660",
    "6316", "6317", "6318", "6543", "6551", "6554", "6558", "6560", "6595", "6596",
}
#: Legal categories with a label of their own in the UI (insertion, procurement searches).
NOTABLE_LEGAL_CATEGORIES: dict[str, str] = {
    "9221": "Association d'insertion par l'économique",
    "9222": "Association intermédiaire",
    "9223": "Groupement d'employeurs",
    "9230": "Association reconnue d'utilité publique",
    "5458": "SCOP (SARL)",
    "5558": "SCOP (SA à conseil d'administration)",
    "5658": "SCOP (SA à directoire)",
    "6316": "CUMA",
}

_FAMILY_OF_CODE: dict[str, str] = {
    **{c: ASSOCIATION for c in _ASSOCIATION_CODES},
    **{c: FONDATION for c in _FONDATION_CODES},
    **{c: MUTUELLE for c in _MUTUELLE_CODES},
    **{c: COOPERATIVE for c in _COOPERATIVE_CODES},
}


def family_of_legal_category(categories: pd.Series) -> pd.Series:
    """ESS family of each ``categorieJuridiqueUniteLegale`` (for units flagged ESS = 'O').

    Any code outside the association, foundation, mutual and cooperative lists is a
    "société commerciale de l'ESS" (law of 31 July 2014).
    """
    codes = categories.fillna("").astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
    return codes.map(_FAMILY_OF_CODE).fillna(SOCIETE_COMMERCIALE).astype("string")


# --- Sectors (NAF rév. 2 grouped by division) -------------------------------------------------

OLD_NOMENCLATURE = "nomenclature_ancienne"
UNKNOWN_SECTOR = "inconnu"

SECTOR_LABELS: dict[str, str] = {
    "agriculture": "Agriculture, sylviculture, pêche",
    "industrie_construction": "Industrie et construction",
    "commerce": "Commerce",
    "transports": "Transports",
    "hebergement_restauration": "Hébergement et restauration",
    "information_communication": "Information et communication",
    "finance_assurance": "Activités financières et d'assurance",
    "immobilier": "Immobilier",
    "soutien_entreprises": "Soutien aux entreprises",
    "enseignement": "Enseignement",
    "sante": "Santé humaine",
    "action_sociale": "Action sociale (avec et sans hébergement)",
    "arts_spectacles": "Arts et spectacles",
    "sports_loisirs": "Sports et loisirs",
    "autres_services": "Autres activités de services",
    "non_classes": "Non classés (organisations fonctionnant par adhésion volontaire)",
    OLD_NOMENCLATURE: "Nomenclature ancienne (non NAF rév. 2)",
    UNKNOWN_SECTOR: "Activité non renseignée",
}

_DIVISION_RANGES: tuple[tuple[int, int, str], ...] = (
    (1, 3, "agriculture"),
    (5, 43, "industrie_construction"),
    (45, 47, "commerce"),
    (49, 53, "transports"),
    (55, 56, "hebergement_restauration"),
    (58, 63, "information_communication"),
    (64, 66, "finance_assurance"),
    (68, 68, "immobilier"),
    (69, 82, "soutien_entreprises"),
    (85, 85, "enseignement"),
    (86, 86, "sante"),
    (87, 88, "action_sociale"),
    (90, 92, "arts_spectacles"),
    (93, 93, "sports_loisirs"),
    (94, 96, "autres_services"),
)
_SECTOR_OF_DIVISION: dict[int, str] = {
    d: s for lo, hi, s in _DIVISION_RANGES for d in range(lo, hi + 1)
}


def sector_of_naf(naf: pd.Series, nomenclature: pd.Series | None = None) -> pd.Series:
    """Sector of each NAF rév. 2 code (``88.99B`` -> "action_sociale").

    Rows whose ``nomenclatureActivitePrincipaleEtablissement`` is not ``NAFRev2`` are not mapped
    silently: they get :data:`OLD_NOMENCLATURE`. Missing or unknown codes get
    :data:`UNKNOWN_SECTOR`. ``94.99Z`` is its own sector ("non classés").
    """
    import pandas as pd
    codes = naf.fillna("").astype(str).str.strip().str.upper()
    division = pd.to_numeric(codes.str[:2], errors="coerce")
    sector = division.map(_SECTOR_OF_DIVISION).fillna(UNKNOWN_SECTOR)
    sector = sector.where(codes != "94.99Z", "non_classes")
    if nomenclature is not None:
        nom = nomenclature.fillna("").astype(str).str.strip()
        old = (nom != "") & (nom != "NAFRev2")
        sector = sector.where(~old, OLD_NOMENCLATURE)
    return sector.astype("string")


# --- Size bands (tranche d'effectifs salariés) -----------------------------------------------

SIZE_BAND_LABELS: dict[str, str] = {
    "NN": "Non employeur",
    "00": "0 salarié",
    "01": "1 ou 2 salariés",
    "02": "3 à 5 salariés",
    "03": "6 à 9 salariés",
    "11": "10 à 19 salariés",
    "12": "20 à 49 salariés",
    "21": "50 à 99 salariés",
    "22": "100 à 199 salariés",
    "31": "200 à 249 salariés",
    "32": "250 à 499 salariés",
    "41": "500 à 999 salariés",
    "42": "1 000 à 1 999 salariés",
    "51": "2 000 à 4 999 salariés",
    "52": "5 000 à 9 999 salariés",
    "53": "10 000 salariés et plus",
}

#: Midpoint headcount of each band, for ranking "largest employers" (an estimate, labelled so).
SIZE_BAND_MIDPOINT: dict[str, float] = {
    "NN": 0, "00": 0, "01": 1.5, "02": 4, "03": 7.5, "11": 14.5, "12": 34.5, "21": 74.5,
    "22": 149.5, "31": 224.5, "32": 374.5, "41": 749.5, "42": 1499.5, "51": 3499.5,
    "52": 7499.5, "53": 10000,
}
