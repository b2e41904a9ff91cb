"""SIRENE stock layouts: the columns INSEE publishes, and those the reader needs among them."""

from __future__ import annotations

SOURCE = "sirene"

# --- Official layouts (INSEE "Description des fichiers de stock", API Sirene 3.11) -------------

#: Columns of ``StockUniteLegale_utf8.csv``, in the published order. The last one
#: (NAF 2025 activity) was appended by INSEE in December 2025; older files lack it.
UNITE_LEGALE_COLUMNS: tuple[str, ...] = (
    "siren",
    "statutDiffusionUniteLegale",
    "unitePurgeeUniteLegale",
    "dateCreationUniteLegale",
    "sigleUniteLegale",
    "sexeUniteLegale",
    "prenom1UniteLegale",
    "prenom2UniteLegale",
    "prenom3UniteLegale",
    "prenom4UniteLegale",
    "prenomUsuelUniteLegale",
    "pseudonymeUniteLegale",
    "identifiantAssociationUniteLegale",
    "trancheEffectifsUniteLegale",
    "anneeEffectifsUniteLegale",
    "dateDernierTraitementUniteLegale",
    "nombrePeriodesUniteLegale",
    "categorieEntreprise",
    "anneeCategorieEntreprise",
    "dateDebut",
    "etatAdministratifUniteLegale",
    "nomUniteLegale",
    "nomUsageUniteLegale",
    "denominationUniteLegale",
    "denominationUsuelle1UniteLegale",
    "denominationUsuelle2UniteLegale",
    "denominationUsuelle3UniteLegale",
    "categorieJuridiqueUniteLegale",
    "activitePrincipaleUniteLegale",
    "nomenclatureActivitePrincipaleUniteLegale",
    "nicSiegeUniteLegale",
    "economieSocialeSolidaireUniteLegale",
    "societeMissionUniteLegale",
    "caractereEmployeurUniteLegale",
    "activitePrincipaleNAF25UniteLegale",
)

#: Columns of ``StockEtablissement_utf8.csv``, in the published order (with the address
#: identifier and Lambert coordinates added in 2023, and the NAF 2025 activity appended in
#: December 2025).
ETABLISSEMENT_COLUMNS: tuple[str, ...] = (
    "siren",
    "nic",
    "siret",
    "statutDiffusionEtablissement",
    "dateCreationEtablissement",
    "trancheEffectifsEtablissement",
    "anneeEffectifsEtablissement",
    "activitePrincipaleRegistreMetiersEtablissement",
    "dateDernierTraitementEtablissement",
    "etablissementSiege",
    "nombrePeriodesEtablissement",
    "complementAdresseEtablissement",
    "numeroVoieEtablissement",
    "indiceRepetitionEtablissement",
    "dernierNumeroVoieEtablissement",
    "indiceRepetitionDernierNumeroVoieEtablissement",
    "typeVoieEtablissement",
    "libelleVoieEtablissement",
    "codePostalEtablissement",
    "libelleCommuneEtablissement",
    "libelleCommuneEtrangerEtablissement",
    "distributionSpecialeEtablissement",
    "codeCommuneEtablissement",
    "codeCedexEtablissement",
    "libelleCedexEtablissement",
    "codePaysEtrangerEtablissement",
    "libellePaysEtrangerEtablissement",
    "identifiantAdresseEtablissement",
    "coordonneeLambertAbscisseEtablissement",
    "coordonneeLambertOrdonneeEtablissement",
    "complementAdresse2Etablissement",
    "numeroVoie2Etablissement",
    "indiceRepetition2Etablissement",
    "typeVoie2Etablissement",
    "libelleVoie2Etablissement",
    "codePostal2Etablissement",
    "libelleCommune2Etablissement",
    "libelleCommuneEtranger2Etablissement",
    "distributionSpeciale2Etablissement",
    "codeCommune2Etablissement",
    "codeCedex2Etablissement",
    "libelleCedex2Etablissement",
    "codePaysEtranger2Etablissement",
    "libellePaysEtranger2Etablissement",
    "dateDebut",
    "etatAdministratifEtablissement",
    "enseigne1Etablissement",
    "enseigne2Etablissement",
    "enseigne3Etablissement",
    "denominationUsuelleEtablissement",
    "activitePrincipaleEtablissement",
    "nomenclatureActivitePrincipaleEtablissement",
    "caractereEmployeurEtablissement",
    "activitePrincipaleNAF25Etablissement",
)

#: Columns of INSEE's geolocation file (``;``-separated), edition of 2024: ``plg_qp`` holds the
#: QPV of the current generation, ``qualite_qp`` the quality of that assignment.
GEOLOCALISATION_COLUMNS: tuple[str, ...] = (
    "siret",
    "x",
    "y",
    "qualite_xy",
    "epsg",
    "plg_qp",
    "plg_iris",
    "plg_zus",
    "plg_qp15",
    "plg_qva",
    "plg_code_commune",
    "distance_precision",
    "qualite_qp",
    "qualite_iris",
    "x_longitude",
    "y_latitude",
)

#: Columns of the geolocation file since INSEE named its QPV columns by generation (2025 on):
#: ``plg_qp24`` (QPV 2024), ``plg_qp15`` (QPV 2015) and a quality for each.
GEOLOCALISATION_COLUMNS_QP24: tuple[str, ...] = (
    "siret",
    "x",
    "y",
    "qualite_xy",
    "epsg",
    "plg_qp24",
    "plg_iris",
    "plg_zus",
    "plg_qp15",
    "plg_qva",
    "plg_code_commune",
    "distance_precision",
    "qualite_qp24",
    "qualite_iris",
    "qualite_zus",
    "qualite_qp15",
    "qualite_qva",
    "y_latitude",
    "x_longitude",
)

# --- What the reader needs -------------------------------------------------------------------

#: Legal-unit columns without which the ESS perimeter or the family cannot be known.
UNITE_LEGALE_REQUIRED: tuple[str, ...] = (
    "siren",
    "economieSocialeSolidaireUniteLegale",
    "categorieJuridiqueUniteLegale",
    "denominationUniteLegale",
)
_UNITE_LEGALE_OPTIONAL: tuple[str, ...] = (
    "nomUniteLegale",
    "nomUsageUniteLegale",
    "prenom1UniteLegale",
    "prenomUsuelUniteLegale",
)

LAMBERT = ("coordonneeLambertAbscisseEtablissement", "coordonneeLambertOrdonneeEtablissement")

#: Establishment columns always required; the Lambert coordinates are required too unless a
#: geolocation file gives the positions (stocks older than 2023 have no coordinates).
ETABLISSEMENT_REQUIRED: tuple[str, ...] = (
    "siren",
    "siret",
    "etatAdministratifEtablissement",
    "codeCommuneEtablissement",
    "activitePrincipaleEtablissement",
    "nomenclatureActivitePrincipaleEtablissement",
    "caractereEmployeurEtablissement",
    "etablissementSiege",
)
_ETABLISSEMENT_OPTIONAL: tuple[str, ...] = (
    "dateCreationEtablissement",
    "trancheEffectifsEtablissement",
    "dateDernierTraitementEtablissement",
    "numeroVoieEtablissement",
    "indiceRepetitionEtablissement",
    "typeVoieEtablissement",
    "libelleVoieEtablissement",
    "codePostalEtablissement",
    "libelleCommuneEtablissement",
    "codePaysEtrangerEtablissement",
    "enseigne1Etablissement",
    "denominationUsuelleEtablissement",
    *LAMBERT,
)

#: Legal-unit attributes joined to each establishment.
UNITE_LEGALE_ATTRIBUTES = ("categorieJuridiqueUniteLegale", "denominationUniteLegale", *_UNITE_LEGALE_OPTIONAL)
#: Establishment columns kept from the scan (the state is only filtered on).
ETABLISSEMENT_KEPT = tuple(
    c for c in (*ETABLISSEMENT_REQUIRED, *_ETABLISSEMENT_OPTIONAL) if c != "etatAdministratifEtablissement"
)

GEOLOCALISATION_WGS84 = ("x_longitude", "y_latitude")
#: INSEE's QPV columns of the geolocation file, by generation, newest name first: ``plg_qp``
#: (2024 edition) is the current generation, told by its codes (``QN…`` 2024, ``QP…`` 2015).
GEOLOCALISATION_QPV: dict[str, tuple[str, ...]] = {"2024": ("plg_qp24", "plg_qp"), "2015": ("plg_qp15", "plg_qp")}
GEOLOCALISATION_QUALITY = ("qualite_xy",)
GEOLOCALISATION_PROJECTED = ("x", "y", "epsg")

#: Identifier columns padded back to their width when a Parquet file stores them as integers.
CODE_WIDTH = {
    "siren": 9,
    "siret": 14,
    "categorieJuridiqueUniteLegale": 4,
    "codeCommuneEtablissement": 5,
    "codePostalEtablissement": 5,
}

# --- Forms of values (a header over misaligned data is refused, see files.check_sample_records) -------

_SIREN = (r"\d{9}", "un SIREN de 9 chiffres")
_SIRET = (r"\d{14}", "un SIRET de 14 chiffres")

UNITE_LEGALE_SHAPES: dict[str, tuple[str, str]] = {
    "siren": _SIREN,
    "economieSocialeSolidaireUniteLegale": (r"[ONon]?", "« O », « N » ou rien"),
}
ETABLISSEMENT_SHAPES: dict[str, tuple[str, str]] = {
    "siren": _SIREN,
    "siret": _SIRET,
    "etatAdministratifEtablissement": (r"[AFaf]", "« A » (actif) ou « F » (fermé)"),
}
GEOLOCALISATION_SHAPES: dict[str, tuple[str, str]] = {"siret": _SIRET}
