"""Canonical columns of every layer, shared by the readers, the store and the generator.

Each reader returns exactly these columns (plus ``geometry`` in EPSG:4326); the store creates its
tables from them. Codes are strings (leading zeros, "2A"/"2B").
"""

from __future__ import annotations

#: CRS of every geometry in the store and in the readers' output (longitude/latitude order).
WGS84 = "EPSG:4326"

#: column -> DuckDB type. ``geometry`` is stored as a spatial GEOMETRY (WGS84, lon/lat order).
COMMUNES: dict[str, str] = {
    "code_insee": "VARCHAR",
    "nom": "VARCHAR",
    "type_commune": "VARCHAR",  # COM, or ARM (arrondissement municipal of Paris/Lyon/Marseille)
    "code_commune_parent": "VARCHAR",  # for ARM: the commune they belong to
    "population": "BIGINT",  # populations légales; ARM are already counted in their parent
    "code_departement": "VARCHAR",
    "code_region": "VARCHAR",
    "siren_epci": "VARCHAR",
    "territoire": "VARCHAR",
    "epsg_metrique": "INTEGER",
}

EPCI: dict[str, str] = {
    "siren_epci": "VARCHAR",
    "nom": "VARCHAR",
    "type": "VARCHAR",
    "population": "BIGINT",
    "nb_communes": "INTEGER",
}

DEPARTEMENTS: dict[str, str] = {
    "code_departement": "VARCHAR",
    "nom": "VARCHAR",
    "code_region": "VARCHAR",
    "population": "BIGINT",
    "territoire": "VARCHAR",
    "epsg_metrique": "INTEGER",
}

REGIONS: dict[str, str] = {
    "code_region": "VARCHAR",
    "nom": "VARCHAR",
    "population": "BIGINT",
}

QPV: dict[str, str] = {
    "code_qp": "VARCHAR",
    "lib_qp": "VARCHAR",
    "generation": "VARCHAR",  # "2024" or "2015": which QPV generation this is
    "insee_dep": "VARCHAR",
    "insee_com": "VARCHAR",  # commune code(s), comma-separated when the QPV spans several
    "lib_com": "VARCHAR",
    "siren_epci": "VARCHAR",
    "territoire": "VARCHAR",
    "epsg_metrique": "INTEGER",
}

ETABLISSEMENTS: dict[str, str] = {
    "siret": "VARCHAR",
    "siren": "VARCHAR",
    "denomination": "VARCHAR",
    "enseigne": "VARCHAR",
    "categorie_juridique": "VARCHAR",
    "famille": "VARCHAR",  # see nomenclature.FAMILY_LABELS
    "activite_naf": "VARCHAR",
    "nomenclature_naf": "VARCHAR",
    "secteur": "VARCHAR",  # see nomenclature.SECTOR_LABELS
    "employeur": "BOOLEAN",  # caractereEmployeurEtablissement = 'O'
    "tranche_effectifs": "VARCHAR",
    "siege": "BOOLEAN",
    "date_creation": "VARCHAR",
    "adresse": "VARCHAR",
    "code_postal": "VARCHAR",
    "libelle_commune": "VARCHAR",
    "code_commune": "VARCHAR",
    "code_departement": "VARCHAR",
    "x": "DOUBLE",  # as published, in the CRS given by ``epsg``
    "y": "DOUBLE",
    "epsg": "INTEGER",
    "source_position": "VARCHAR",  # "stock_lambert" or "geolocalisation"
    # INSEE's own QPV assignment (geolocation file: plg_qp24 / plg_qp, plg_qp15), kept for the
    # concordance check: a QPV code, INSEE_OUTSIDE_QPV, or NULL when INSEE did not say
    "code_qp_insee_2024": "VARCHAR",
    "code_qp_insee_2015": "VARCHAR",
    "qualite_xy": "VARCHAR",  # INSEE's geocoding quality code of the position, as published
    "territoire": "VARCHAR",
    "epsg_metrique": "INTEGER",
    "longitude": "DOUBLE",
    "latitude": "DOUBLE",
    "is_synthetic": "BOOLEAN",
}

TIERS_LIEUX: dict[str, str] = {
    "id_tiers_lieu": "VARCHAR",
    "nom": "VARCHAR",
    "structure_porteuse": "VARCHAR",
    "adresse": "VARCHAR",
    "code_postal": "VARCHAR",
    "commune": "VARCHAR",
    "code_commune": "VARCHAR",
    "code_departement": "VARCHAR",
    "types": "VARCHAR",  # "; "-separated: a place can have several types
    "labels": "VARCHAR",  # ANCT labels, "; "-separated
    "fabrique_territoire": "BOOLEAN",
    "manufacture_proximite": "BOOLEAN",
    "site_web": "VARCHAR",
    "precision_localisation": "VARCHAR",  # how the place was positioned: one of LOCATION_PRECISIONS
    "territoire": "VARCHAR",
    "epsg_metrique": "INTEGER",
    "longitude": "DOUBLE",
    "latitude": "DOUBLE",
    "is_synthetic": "BOOLEAN",
}

# --- How a tiers-lieu was positioned (``precision_localisation``), best first --------------------

#: The list gave latitude and longitude.
LOCATION_PROVIDED = "coordonnées fournies"
#: The structure's establishment in the same commune, positioned by INSEE's geolocation file.
LOCATION_SIRET = "SIRET géolocalisé INSEE"
#: The address's house number found on its street in the Base Adresse Nationale.
LOCATION_BAN_NUMBER = "adresse BAN (numéro)"
#: The street found in the Base Adresse Nationale, not the number: the middle of its numbers.
LOCATION_BAN_STREET = "adresse BAN (voie)"
#: Only the commune is known: the point is the commune's centre. Never used in radius queries.
LOCATION_COMMUNE = "commune seulement"
LOCATION_PRECISIONS: tuple[str, ...] = (
    LOCATION_PROVIDED, LOCATION_SIRET, LOCATION_BAN_NUMBER, LOCATION_BAN_STREET, LOCATION_COMMUNE,
)
#: What maps and tables say of a place positioned at its commune only.
APPROXIMATE_LOCATION_FR = "localisation approximative"

#: Layers that carry a geometry column (all but EPCI/départements/régions attributes-only views).
LAYERS: dict[str, dict[str, str]] = {
    "communes": COMMUNES,
    "epci": EPCI,
    "departements": DEPARTEMENTS,
    "regions": REGIONS,
    "qpv": QPV,
    "etablissements": ETABLISSEMENTS,
    "tiers_lieux": TIERS_LIEUX,
}

QUARANTINE: dict[str, str] = {
    "source": "VARCHAR",
    "file_name": "VARCHAR",
    "row_number": "BIGINT",  # line in the file (header = 1), or feature index + 1 for GeoJSON
    "column_name": "VARCHAR",
    "value": "VARCHAR",
    "reason": "VARCHAR",  # in French, shown to users
}

SOURCES: dict[str, str] = {
    "source": "VARCHAR",  # qpv, communes, sirene, tiers_lieux...
    "generation": "VARCHAR",  # QPV generation or millésime of the file
    "file_name": "VARCHAR",
    "sha256": "VARCHAR",
    "rows_read": "BIGINT",
    "rows_kept": "BIGINT",
    "rows_quarantined": "BIGINT",
    "is_synthetic": "BOOLEAN",
    "warnings": "VARCHAR",
    "loaded_at": "TIMESTAMP",
    "scope": "VARCHAR",  # départements the load covered (comma-separated), or "" for all
    "rows_in_store": "BIGINT",  # rows of this file still in the store (later ingests may replace some)
}

# --- Stored at ingest, never read from a file (essmap.store.joins) ------------------------------

#: QPV generations a store can hold, newest first ("QN…" codes = 2024, "QP…" = 2015).
QPV_GENERATIONS: tuple[str, ...] = ("2024", "2015")


def qpv_column(generation: str) -> str:
    """Column of a point layer holding its QPV of ``generation`` ("2024" -> "code_qp_2024")."""
    if generation not in QPV_GENERATIONS:
        raise ValueError(f"unknown QPV generation {generation!r}; expected one of {QPV_GENERATIONS}")
    return f"code_qp_{generation}"


#: Memberships of each establishment and tiers-lieu, computed at ingest so that indicators are a
#: ``GROUP BY``: the commune proper (arrondissements municipaux rolled up to Paris, Lyon, Marseille),
#: its EPCI and région, and the QPV holding the point for each generation (NULL outside any).
MEMBERSHIPS: dict[str, str] = {
    "code_com": "VARCHAR",
    "siren_epci": "VARCHAR",
    "code_region": "VARCHAR",
    **{qpv_column(g): "VARCHAR" for g in QPV_GENERATIONS},
}

#: INSEE's QPV of an establishment that INSEE places in no QPV (``code_qp_insee_*`` columns).
INSEE_OUTSIDE_QPV = "hors QPV"


def insee_qpv_column(generation: str) -> str:
    """Column of ``etablissements`` holding INSEE's QPV of ``generation`` ("2024" -> "code_qp_insee_2024")."""
    return qpv_column(generation).replace("code_qp_", "code_qp_insee_")


#: Layers whose rows carry :data:`MEMBERSHIPS`.
POINT_LAYERS: tuple[str, ...] = ("etablissements", "tiers_lieux")

#: Layers loaded from files: each row records the file it came from, so that an ingest replaces
#: exactly the rows of its source in its scope, and ``sources`` describes what the store holds.
SOURCE_FILE_COLUMN = "source_file"
FILE_LAYERS: tuple[str, ...] = ("communes", "qpv", "etablissements", "tiers_lieux")

#: Tables derived at ingest from the layers (recomputed whenever what they depend on changes).
DERIVED: dict[str, dict[str, str]] = {
    # one row per (QPV, commune it lies in), from ``insee_com``: the code as listed and the commune
    # proper (arrondissements rolled up)
    "qpv_communes": {"generation": "VARCHAR", "code_qp": "VARCHAR", "code_commune": "VARCHAR", "code_com": "VARCHAR"},
    # QPV x tiers-lieux pairs within STORED_RADIUS_M, with the geodesic distance (0 inside); a QPV with
    # none that near has one pair: its nearest tiers-lieu (so the nearest, unfiltered, is always stored)
    "qpv_tiers_lieux": {
        "generation": "VARCHAR", "code_qp": "VARCHAR", "id_tiers_lieu": "VARCHAR", "distance_m": "DOUBLE",
    },
    # establishments placed by INSEE's geolocation file whose QPV (point in polygon) differs from
    # the one INSEE assigned: codes NULL outside any QPV; geodesic distance of the point to the
    # nearest QPV boundary of the generation; INSEE's geocoding quality
    "concordance": {
        "generation": "VARCHAR", "siret": "VARCHAR", "code_departement": "VARCHAR", "code_qp_essmap": "VARCHAR",
        "code_qp_insee": "VARCHAR", "distance_limite_m": "DOUBLE", "qualite_xy": "VARCHAR",
    },
    # boundaries simplified for display, one row per unit of each level (borders shared exactly), with
    # what a map sends of them, ready at ingest: the GeoJSON text and a point inside the unit
    "display_geometry": {"level": "VARCHAR", "code": "VARCHAR", "geometry": "GEOMETRY", "geojson": "VARCHAR",
                         "anchor_lon": "DOUBLE", "anchor_lat": "DOUBLE"},
}

#: Largest radius of the stored QPV x tiers-lieux pairs: the dashboard offers 100 m to 5 km.
STORED_RADIUS_M = 5_000.0
