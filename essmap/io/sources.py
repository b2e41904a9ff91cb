"""Catalogue of the official downloads behind ``essmap fetch``.

This is the only module that holds download URLs, so that a moved file is fixed in one place.
Machines running the tests have no internet: nothing here is fetched at import time.

Sizes and checksums are ``None`` when they could not be verified offline (most official files are
replaced monthly or yearly under the same address). ``None`` means "not verified by size or
checksum": the download is then checked against the size the server announces
(``Content-Length`` / ``Content-Range``) and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

LICENCE_OUVERTE = "Licence Ouverte / Etalab 2.0"


@dataclass(frozen=True)
class OfficialFile:
    """One file published by an official producer.

    Attributes
    ----------
    name : str
        Short identifier of the file within its source (e.g. ``StockUniteLegale``).
    url : str
        Download address. Prefer stable addresses (data.gouv.fr ``/datasets/r/<id>`` redirects,
        "latest" object-storage paths) over dated ones.
    description : str
        What the file holds, in French (shown to users).
    licence : str
        Licence of the data.
    size : int or None
        Expected size in bytes, or ``None`` when not verified (see module docstring).
    sha256 : str or None
        Expected SHA-256 (hex), or ``None`` when not verified.
    filename : str
        Name of the file in the cache folder.
    page : str
        Landing page of the dataset, where a user can download the file by hand.
    """

    name: str
    url: str
    description: str
    licence: str
    size: int | None
    sha256: str | None
    filename: str
    page: str = ""


#: Official files, grouped by source name (the argument of ``essmap fetch``).
SOURCES: dict[str, tuple[OfficialFile, ...]] = {
    "qpv2024": (
        OfficialFile(
            name="QP2024",
            # Stable data.gouv.fr resource redirect of the ANCT national file. Recent copies are a
            # ZIP holding GEOJSON/QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson (plus SHP and
            # per-territory projected versions); fetch_source detects the archive by content.
            url="https://www.data.gouv.fr/api/1/datasets/r/942d4ee8-8142-4556-8ea1-335537ce1119",
            description=(
                "Quartiers prioritaires de la politique de la ville 2024 (ANCT / SIG Ville), "
                "fichier national France hexagonale et outre-mer, WGS84."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="qpv2024_anct.zip",
            page="https://www.data.gouv.fr/datasets/quartiers-prioritaires-de-la-politique-de-la-ville-qpv",
        ),
    ),
    "qpv2015": (
        OfficialFile(
            name="QP2015",
            # Archived static copy of the SIG Ville shapefile bundle (QP_METROPOLEOUTREMER_WGS84_EPSG4326).
            url=(
                "https://static.data.gouv.fr/resources/"
                "quartiers-prioritaires-de-la-politique-de-la-ville-qpv/20180110-144945/"
                "qp-politiquedelaville-shp.zip"
            ),
            description=(
                "Quartiers prioritaires de la politique de la ville 2015 (génération précédente, "
                "codes QP), shapefiles métropole et outre-mer dont une version WGS84."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="qp-politiquedelaville-shp.zip",
            page="https://www.data.gouv.fr/datasets/quartiers-prioritaires-de-la-politique-de-la-ville-qpv",
        ),
    ),
    "sirene_unites_legales": (
        OfficialFile(
            name="StockUniteLegale",
            url=(
                "https://object.files.data.gouv.fr/data-pipeline-open/siren/stock/"
                "StockUniteLegale_utf8.zip"
            ),
            description=(
                "Base Sirene (Insee), stock mensuel des unités légales : forme juridique, "
                "indicateur ESS (economieSocialeSolidaireUniteLegale). CSV compressé (ZIP)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="StockUniteLegale_utf8.zip",
            page="https://www.data.gouv.fr/datasets/base-sirene-des-entreprises-et-de-leurs-etablissements-siren-siret",
        ),
    ),
    "sirene_etablissements": (
        OfficialFile(
            name="StockEtablissement",
            url=(
                "https://object.files.data.gouv.fr/data-pipeline-open/siren/stock/"
                "StockEtablissement_utf8.zip"
            ),
            description=(
                "Base Sirene (Insee), stock mensuel des établissements : SIRET, activité (NAF), "
                "caractère employeur, adresse. CSV compressé (ZIP)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="StockEtablissement_utf8.zip",
            page="https://www.data.gouv.fr/datasets/base-sirene-des-entreprises-et-de-leurs-etablissements-siren-siret",
        ),
    ),
    "sirene_geolocalisation": (
        OfficialFile(
            name="GeolocalisationEtablissement",
            url=(
                "https://object.files.data.gouv.fr/data-pipeline-open/siren/geoloc/"
                "GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_utf8.parquet"
            ),
            description=(
                "Géolocalisation des établissements du répertoire Sirene pour les études "
                "statistiques (Insee) : coordonnées x/y par SIRET, rattachement QPV. Parquet."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_utf8.parquet",
            page="https://www.data.gouv.fr/datasets/geolocalisation-des-etablissements-du-repertoire-sirene-pour-les-etudes-statistiques",
        ),
    ),
    "communes": (
        OfficialFile(
            name="ADMIN-EXPRESS-COG-2025",
            url=(
                "https://data.geopf.fr/telechargement/download/ADMIN-EXPRESS-COG/"
                "ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01/"
                "ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01.7z"
            ),
            description=(
                "ADMIN EXPRESS COG 2025 (IGN) : limites des communes, EPCI, départements et "
                "régions conformes au COG Insee, France entière, WGS84, GeoPackage (archive 7z)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01.7z",
            page="https://geoservices.ign.fr/adminexpress",
        ),
    ),
    "tiers_lieux": (
        OfficialFile(
            name="bdftl-2023-fiche-identite",
            url=(
                "https://static.data.gouv.fr/resources/recensement-des-tiers-lieux-en-france-2023/"
                "20241219-093636/bdftl-2023-01-fiche-identite.csv"
            ),
            description=(
                "Recensement des tiers-lieux en France 2023 (France Tiers-Lieux), "
                "fiche identité : nom, structure porteuse, adresse, commune. CSV."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="bdftl-2023-01-fiche-identite.csv",
            page="https://www.data.gouv.fr/datasets/recensement-des-tiers-lieux-en-france-2023",
        ),
        OfficialFile(
            name="bdftl-2023-activites",
            url=(
                "https://static.data.gouv.fr/resources/recensement-des-tiers-lieux-en-france-2023/"
                "20241219-093639/bdftl-2023-04-activites.csv"
            ),
            description=(
                "Recensement des tiers-lieux en France 2023 (France Tiers-Lieux), "
                "activités : types de tiers-lieu (coworking, fablab, nourricier...). CSV."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="bdftl-2023-04-activites.csv",
            page="https://www.data.gouv.fr/datasets/recensement-des-tiers-lieux-en-france-2023",
        ),
    ),
}


def _cell(text: str) -> str:
    """Make text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _size(size: int | None) -> str:
    if size is None:
        return "not verified"
    return f"{size / 1_000_000:,.1f} MB"


def describe_sources(catalogue: dict[str, tuple[OfficialFile, ...]] | None = None) -> str:
    """Markdown table of the catalogue, for the README (generated, so it cannot drift)."""
    catalogue = SOURCES if catalogue is None else catalogue
    lines = [
        "| Source (`essmap fetch ...`) | File | Description | Licence | Size | Download |",
        "|---|---|---|---|---|---|",
    ]
    for source, files in catalogue.items():
        for file in files:
            link = f"[{_cell(file.filename)}]({file.url})"
            if file.page:
                link += f" ([page]({file.page}))"
            lines.append(
                f"| `{source}` | {_cell(file.name)} | {_cell(file.description)} "
                f"| {_cell(file.licence)} | {_size(file.size)} | {link} |"
            )
    return "\n".join(lines) + "\n"
