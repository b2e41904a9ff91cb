"""Catalogue of the official downloads behind ``essmap fetch``.

This is the only module that holds download URLs, so that a moved file is fixed in one place.
Machines running the tests have no internet: nothing here is fetched at import time.

Address rule (``tests/test_fetch_mirror.py`` checks it on every entry):

- prefer the stable addresses producers publish: data.gouv.fr resource redirects
  (``https://www.data.gouv.fr/fr/datasets/r/<id>``, which always point at the resource's current
  file) or undated "latest" object-storage paths (``.../siren/stock/StockUniteLegale_utf8.zip``,
  ``.../adresses/latest/csv/...``);
- a dated path (a ``YYYY-MM-DD`` or ``YYYYMMDD`` date in the URL; every
  ``static.data.gouv.fr/resources/...`` upload path is one) is allowed only for an entry that says
  why in ``dated_reason``: a frozen edition for which no stable address could be confirmed. An
  entry with a reason but an undated URL fails too, so reasons do not outlive their cause.

Every entry names its landing page (where a user downloads the file by hand), its licence and
the bare file name it has in the cache and in a mirror (``essmap fetch --miroir``); file names
are unique over the whole catalogue so that a mirror can hold every file in one folder.

Sizes and checksums are ``None`` when they could not be verified offline (most official files are
replaced monthly or yearly under the same address). ``None`` means "not verified by size or
checksum": the download is then checked against the size the server announces
(``Content-Length`` / ``Content-Range``) and nothing more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

LICENCE_OUVERTE = "Licence Ouverte / Etalab 2.0"

#: Placeholder of the département code in the URL and file name of a per-département file.
DEPARTEMENT = "{departement}"

#: A date in a URL path: 2025-01-01, 20241219 (data.gouv.fr upload folders), not inside longer digit runs.
_DATE_IN_URL = re.compile(r"(?<!\d)(?:19|20)\d{2}(-?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])(?!\d)")

#: Header of the Base Adresse Nationale CSV (``;``-separated, UTF-8), in file order, for readers
#: and test fixtures (schema documented at https://adresse.data.gouv.fr/outils/telechargements/format-csv).
BAN_ADDRESS_COLUMNS: tuple[str, ...] = (
    "id", "id_fantoir", "numero", "rep", "nom_voie", "code_postal", "code_insee", "nom_commune",
    "code_insee_ancienne_commune", "nom_ancienne_commune", "x", "y", "lon", "lat", "type_position",
    "alias", "nom_ld", "libelle_acheminement", "nom_afnor", "source_position", "source_nom_voie",
    "certification_commune", "cad_parcelles",
)


def is_dated_url(url: str) -> bool:
    """Whether ``url`` points at one dated edition rather than at the producer's current file."""
    return "static.data.gouv.fr/resources/" in url or bool(_DATE_IN_URL.search(url))


@dataclass(frozen=True)
class OfficialFile:
    """One file published by an official producer.

    Attributes
    ----------
    name : str
        Short identifier of the file within its source (e.g. ``StockUniteLegale``).
    url : str
        Download address (see the address rule in the module docstring). A per-département file
        has ``{departement}`` in its URL and file name; :meth:`for_departement` fills it in.
    description : str
        What the file holds, in French (shown to users).
    licence : str
        Licence of the data.
    size : int or None
        Expected size in bytes, or ``None`` when not verified (see module docstring).
    sha256 : str or None
        Expected SHA-256 (hex), or ``None`` when not verified.
    filename : str
        Name of the file in the cache folder and in a mirror.
    page : str
        Landing page of the dataset, where a user can download the file by hand.
    dated_reason : str
        Why ``url`` is a dated path (empty for a stable address).
    """

    name: str
    url: str
    description: str
    licence: str
    size: int | None
    sha256: str | None
    filename: str
    page: str = ""
    dated_reason: str = ""

    @property
    def per_departement(self) -> bool:
        """One file per département (the URL and file name hold ``{departement}``)."""
        return DEPARTEMENT in self.url or DEPARTEMENT in self.filename

    @property
    def display_filename(self) -> str:
        """File name as shown to users: ``adresses-<DEP>.csv.gz`` for a per-département file."""
        return self.filename.replace(DEPARTEMENT, "<DEP>")

    def for_departement(self, departement: str) -> OfficialFile:
        """The concrete file of one département (a canonical code such as ``13``, ``2A``, ``974``)."""
        if not self.per_departement:
            raise ValueError(f"{self.name} is not a per-département file")
        return replace(
            self,
            url=self.url.replace(DEPARTEMENT, departement),
            filename=self.filename.replace(DEPARTEMENT, departement),
            # One département's file: its size and checksum differ from any other's.
            size=None,
            sha256=None,
        )


_DATA_GOUV_QPV = "https://www.data.gouv.fr/datasets/quartiers-prioritaires-de-la-politique-de-la-ville-qpv"
_DATA_GOUV_SIRENE = "https://www.data.gouv.fr/datasets/base-sirene-des-entreprises-et-de-leurs-etablissements-siren-siret"
_SIRENE_STOCK = "https://object.files.data.gouv.fr/data-pipeline-open/siren/stock/"
_TIERS_LIEUX_2023 = (
    "The 2023 census is a frozen edition; no data.gouv.fr resource redirect (/datasets/r/<id>) "
    "for this file could be confirmed offline."
)

#: Official files, grouped by source name (the argument of ``essmap fetch``).
SOURCES: dict[str, tuple[OfficialFile, ...]] = {
    "qpv2024": (
        OfficialFile(
            name="QP2024",
            # Stable data.gouv.fr resource redirect of the ANCT national file. Recent copies are a
            # ZIP holding GEOJSON/QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson (plus SHP and
            # per-territory projected versions); fetch_source detects the archive by content.
            url="https://www.data.gouv.fr/fr/datasets/r/942d4ee8-8142-4556-8ea1-335537ce1119",
            description=(
                "Quartiers prioritaires de la politique de la ville 2024 (ANCT / SIG Ville), "
                "fichier national France hexagonale et outre-mer, WGS84."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="qpv2024_anct.zip",
            page=_DATA_GOUV_QPV,
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
            page=_DATA_GOUV_QPV,
            dated_reason=(
                "The 2015 generation is frozen (replaced by QP2024); no data.gouv.fr resource "
                "redirect for this archive could be confirmed offline."
            ),
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
            dated_reason=(
                "IGN publishes one address per edition of ADMIN EXPRESS COG (yearly, named after "
                "its date) and no \"latest\" address; the readers know this edition's layout."
            ),
        ),
    ),
    "sirene_unites_legales": (
        OfficialFile(
            name="StockUniteLegale",
            url=_SIRENE_STOCK + "StockUniteLegale_utf8.zip",
            description=(
                "Base Sirene (Insee), stock mensuel des unités légales : forme juridique, "
                "indicateur ESS (economieSocialeSolidaireUniteLegale). CSV compressé (ZIP)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="StockUniteLegale_utf8.zip",
            page=_DATA_GOUV_SIRENE,
        ),
    ),
    "sirene_unites_legales_parquet": (
        OfficialFile(
            name="StockUniteLegale-parquet",
            url=_SIRENE_STOCK + "StockUniteLegale_utf8.parquet",
            description=(
                "Base Sirene (Insee), stock mensuel des unités légales, édition Parquet : "
                "lue directement par DuckDB (colonnes et lignes filtrées sans décompression)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="StockUniteLegale_utf8.parquet",
            page=_DATA_GOUV_SIRENE,
        ),
    ),
    "sirene_etablissements": (
        OfficialFile(
            name="StockEtablissement",
            url=_SIRENE_STOCK + "StockEtablissement_utf8.zip",
            description=(
                "Base Sirene (Insee), stock mensuel des établissements : SIRET, activité (NAF), "
                "caractère employeur, adresse. CSV compressé (ZIP)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="StockEtablissement_utf8.zip",
            page=_DATA_GOUV_SIRENE,
        ),
    ),
    "sirene_etablissements_parquet": (
        OfficialFile(
            name="StockEtablissement-parquet",
            url=_SIRENE_STOCK + "StockEtablissement_utf8.parquet",
            description=(
                "Base Sirene (Insee), stock mensuel des établissements, édition Parquet : "
                "lue directement par DuckDB (colonnes et lignes filtrées sans décompression)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename="StockEtablissement_utf8.parquet",
            page=_DATA_GOUV_SIRENE,
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
            dated_reason=_TIERS_LIEUX_2023,
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
            dated_reason=_TIERS_LIEUX_2023,
        ),
    ),
    "ban_adresses": (
        OfficialFile(
            name="adresses-departement",
            # The BAN's "latest" folder: always the current national export, one file per
            # département (adresses-13.csv.gz, adresses-2A.csv.gz, adresses-974.csv.gz).
            url=f"https://adresse.data.gouv.fr/data/ban/adresses/latest/csv/adresses-{DEPARTEMENT}.csv.gz",
            description=(
                "Base Adresse Nationale (BAN), adresses d'un département : numéro, voie, code "
                "postal, code Insee de la commune, position (lon/lat WGS84 et x/y). CSV « ; » "
                "compressé (gzip), dernière version ; un fichier par département (--departements)."
            ),
            licence=LICENCE_OUVERTE,
            size=None,
            sha256=None,
            filename=f"adresses-{DEPARTEMENT}.csv.gz",
            page="https://adresse.data.gouv.fr/outils/telechargements/format-csv",
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
            link = f"[{_cell(file.display_filename)}]({file.url})"
            if file.page:
                link += f" ([page]({file.page}))"
            lines.append(
                f"| `{source}` | {_cell(file.name)} | {_cell(file.description)} "
                f"| {_cell(file.licence)} | {_size(file.size)} | {link} |"
            )
    return "\n".join(lines) + "\n"
