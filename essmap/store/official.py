"""``essmap build --officiel``: a store of real data for some territories, in one command.

Three stages, each resumable or harmless to repeat:

1. **Downloads** (:mod:`essmap.io.fetch`): every catalogue file the territories need, into the
   cache, verified; a file complete in the cache is not fetched again, a partial one is resumed,
   ``force`` fetches them again (a new monthly SIRENE stock). The SIRENE stocks come as their
   Parquet editions when the producer (or the mirror) has them, else as the CSV in the ZIP.
2. **Reads**: the usual readers, restricted to the départements asked (quarantine of bad rows,
   French refusal of a damaged file); tiers-lieux of the census are placed with INSEE's
   geolocation file, the establishment stock and the BAN files of those départements.
3. **One write**: everything goes into a new store in one :func:`essmap.store.atomic_update`
   (``start_empty``), so a failed build, at any stage, leaves the previous store as it was. The
   SIRENE stock is read inside it, once the communes, QPVs and tiers-lieux are written and let go:
   the process never holds the SIRENE rows and the full-resolution communes at once. Its
   establishments go into the write connection part by part as they are read
   (:class:`essmap.store.StagedPoints`), so that pandas never holds the national rows at once.

The store then holds exactly the territories asked: a build replaces the whole store, as
``essmap build`` does for the demo (``essmap ingest`` adds or replaces a scope in a store).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import duckdb
import pandas as pd

from essmap import store
from essmap.domain import schema
from essmap.domain.config import PROJECT_ROOT, Settings
from essmap.domain.errors import EssmapError
from essmap.domain.formatting import format_number
from essmap.io.fetch import NotFoundError, fetch_command, fetch_file, unpack
from essmap.io.readers.common import SourceRead, checked_departements
from essmap.io.readers.communes import read_admin_names, read_communes
from essmap.io.readers.placement import PlacementFiles
from essmap.io.readers.qpv import read_qpv
from essmap.io.readers.sirene import POSITION_GEOLOC, read_sirene
from essmap.io.readers.tiers_lieux import read_tiers_lieux
from essmap.io.sources import SOURCES, OfficialFile
from essmap.io.text import printable
from essmap.store import joins
from essmap.store.concordance import concordance_by_departement, concordance_sentences
from essmap.store.ingest import (
    LoadReport,
    Progress,
    check_usable,
    finish_write,
    no_progress,
    write_admin,
    write_establishments,
    write_qpv,
    write_tiers_lieux,
)
from essmap.store.write import bounded_update, say

#: ``progress(bytes_done, total_or_None)`` of one download.
FetchProgress = Callable[[int, int | None], None]

#: The census file of the ``tiers_lieux`` source that lists the places, and the one that gives
#: their types (``TYPE_ACT_*`` columns, by ``ID_UNIQUE``).
CENSUS_FILE = "bdftl-2023-fiche-identite"
ACTIVITIES_FILE = "bdftl-2023-activites"

#: SIRENE stocks: the Parquet edition first (DuckDB projects and filters it without unpacking),
#: then the CSV in its ZIP.
SIRENE_STOCKS: dict[str, tuple[str, str]] = {
    "unites_legales": ("sirene_unites_legales_parquet", "sirene_unites_legales"),
    "etablissements": ("sirene_etablissements_parquet", "sirene_etablissements"),
}

_VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp")


class DownloadProgress(Protocol):
    """What the CLI draws for downloads: one bar per file."""

    def start(self, label: str) -> FetchProgress:
        """A file is about to be fetched (or found in the cache); returns its byte callback."""

    def finished(self, label: str, size: int, *, cached: bool) -> None:
        """The file is complete in the cache (``cached``: it was there already, nothing fetched)."""


@dataclass(frozen=True)
class Fetched:
    """One catalogue file, verified in the cache."""

    source: str
    file_name: str
    path: Path
    size: int
    cached: bool


@dataclass
class OfficialReport:
    """What ``essmap build --officiel`` did, for the summary."""

    db_path: Path
    departements: tuple[str, ...]
    load: LoadReport
    downloads: list[Fetched] = field(default_factory=list)
    #: French notices met on the way (a missing Parquet edition, a source without rows in the territory...)
    notices: list[str] = field(default_factory=list)
    #: rows per layer in the new store
    layers: dict[str, int] = field(default_factory=dict)
    #: tiers-lieux per ``precision_localisation``
    placements: dict[str, int] = field(default_factory=dict)
    #: establishments placed by INSEE's geolocation file, and all establishments
    geolocated: int = 0
    concordance: pd.DataFrame = field(default_factory=pd.DataFrame)
    with_geolocation: bool = False


# --- Territories ---------------------------------------------------------------------------------


def departements_of_request(*, departements: Sequence[str] | None = None, region: str | None = None,
                            france: bool = False, raw_dir: Path | None = None) -> list[str]:
    """The départements a build covers: those listed, those of a région, or all of France.

    Exactly one of the three must be given; codes are checked (French message otherwise). The
    régions' départements come from ``data/raw/departements_france.csv`` (INSEE COG).
    """
    given = sum([bool(departements), region is not None, france])
    if given != 1:
        raise EssmapError(
            "Indiquez le territoire à construire, une seule façon : --departements 38 (un ou plusieurs codes, "
            "séparés par des virgules), --region 84 (code INSEE de la région) ou --france."
        )
    if departements:
        return checked_departements(list(departements))
    names = read_admin_names((raw_dir or PROJECT_ROOT / "data" / "raw") / "departements_france.csv", "departements")
    if france:
        return checked_departements(names["code_departement"].dropna().tolist())
    code = str(region).strip().zfill(2)
    deps = names.loc[names["code_region"] == code, "code_departement"].dropna().tolist()
    if not deps:
        known = ", ".join(sorted(names["code_region"].dropna().unique()))
        raise EssmapError(f"Région inconnue : « {printable(str(region).strip(), limit=12)} ». Solution : indiquez "
                          f"un code INSEE de région, par exemple 84 (Auvergne-Rhône-Alpes) ; codes connus : {known}.")
    return checked_departements(deps)


# --- Files inside archives -----------------------------------------------------------------------


def pick_vector_file(paths: Sequence[Path], archive: str, *, prefer: Sequence[str] = ("wgs84", "4326")) -> Path:
    """The boundary file of an unpacked archive: a GeoJSON, GeoPackage or shapefile, preferring the
    version in WGS84 (national archives also hold projected per-territory copies), then GeoJSON
    over GeoPackage over shapefile."""
    candidates = [p for p in paths if p.suffix.lower() in _VECTOR_SUFFIXES]
    if not candidates:
        found = ", ".join(sorted(p.name for p in paths)[:8]) or "aucun fichier"
        raise EssmapError(
            f"L'archive « {printable(archive)} » ne contient aucun fichier de limites (GeoJSON, GeoPackage ou "
            f"shapefile) ; trouvé : {printable(found)}. Solution : vérifiez le fichier du miroir, ou supprimez-le du "
            "cache puis relancez la construction."
        )

    def rank(path: Path) -> tuple[int, int, str]:
        text = str(path).lower()
        preferred = 0 if any(word in text for word in prefer) else 1
        return preferred, _VECTOR_SUFFIXES.index(path.suffix.lower()), str(path)

    return min(candidates, key=rank)


def pick_communes_file(paths: Sequence[Path], archive: str) -> Path:
    """The ADMIN EXPRESS file of an unpacked archive: its GeoPackage, else the ``COMMUNE`` shapefile."""
    gpkg = sorted(p for p in paths if p.suffix.lower() == ".gpkg")
    if gpkg:
        return gpkg[0]
    shp = sorted(p for p in paths if p.name.lower() == "commune.shp")
    if shp:
        return shp[0]
    return pick_vector_file(paths, archive)


def pick_csv(paths: Sequence[Path], archive: str) -> Path:
    """The CSV of an unpacked SIRENE ZIP (one member)."""
    csv = sorted(p for p in paths if p.suffix.lower() == ".csv")
    if not csv:
        raise EssmapError(f"L'archive « {printable(archive)} » ne contient pas de fichier CSV. Solution : vérifiez le "
                          "fichier du miroir, ou supprimez-le du cache puis relancez la construction.")
    return csv[0]


# --- The build -----------------------------------------------------------------------------------


class _Downloader:
    """Fetches catalogue files into the cache, one progress bar each, and remembers what it did."""

    def __init__(self, cache_dir: Path, *, mirror: str | Path | None, force: bool, departements: Sequence[str],
                 downloads: DownloadProgress | None, catalogue: dict[str, tuple[OfficialFile, ...]]) -> None:
        self.cache_dir, self.mirror, self.force = Path(cache_dir), mirror, force
        self.departements = list(departements)
        self.downloads, self.catalogue = downloads, catalogue
        self.done: list[Fetched] = []

    def fetch(self, source: str, file: OfficialFile, departement: str | None = None) -> Path:
        label = file.filename.replace("{departement}", departement or "")
        moved: list[int] = []
        bar = self.downloads.start(label) if self.downloads else None

        def progress(done: int, total: int | None) -> None:
            moved.append(done)
            if bar is not None:
                bar(done, total)

        retry = fetch_command(source, [departement] if departement else None, self.mirror, catalogue=self.catalogue)
        path = fetch_file(source, file, self.cache_dir, departement=departement, mirror=self.mirror,
                          progress=progress, force=self.force, retry_command=retry)
        size = path.stat().st_size
        if self.downloads:
            self.downloads.finished(label, size, cached=not moved)
        self.done.append(Fetched(source, path.name, path, size, cached=not moved))
        return path

    def fetch_one(self, source: str, name_contains: str = "") -> Path:
        """The (first) file of a source whose name holds ``name_contains``."""
        return self.fetch(source, next(f for f in self.catalogue[source] if name_contains in f.name))


@dataclass
class _Inputs:
    """Every file a build reads, once downloaded and unpacked."""

    communes: Path
    qpv: list[tuple[str, Path]]  # (generation, file)
    unites_legales: Path
    etablissements: Path
    geolocalisation: Path
    census: Path
    activities: Path | None
    ban: list[Path]


def _download(fetcher: _Downloader, *, qpv2015: bool, notices: list[str]) -> _Inputs:
    """Stage 1: every file, fetched or found in the cache, then unpacked."""
    communes_archive = fetcher.fetch_one("communes")
    qpv_archives = [fetcher.fetch_one("qpv2024")] + ([fetcher.fetch_one("qpv2015")] if qpv2015 else [])
    stocks: dict[str, Path] = {}
    for kind, (parquet, zipped) in SIRENE_STOCKS.items():
        try:
            stocks[kind] = fetcher.fetch_one(parquet)
        except NotFoundError as exc:
            notices.append(f"Édition Parquet absente ({printable(exc, limit=160)}) : le CSV compressé "
                           f"(source {zipped}) est utilisé à la place.")
            stocks[kind] = fetcher.fetch_one(zipped)
    geolocalisation = fetcher.fetch_one("sirene_geolocalisation")
    census = fetcher.fetch_one("tiers_lieux", CENSUS_FILE)
    activities: Path | None = None
    try:
        activities = fetcher.fetch_one("tiers_lieux", ACTIVITIES_FILE)
    except NotFoundError as exc:
        notices.append(f"Fichier des activités des tiers-lieux absent ({printable(exc, limit=160)}) : les tiers-lieux "
                       "sont chargés sans leurs types (filtre par type vide).")
    ban = [fetcher.fetch("ban_adresses", entry, dep) for entry in fetcher.catalogue["ban_adresses"]
           for dep in fetcher.departements]

    def unpacked(source: str, path: Path) -> list[Path]:
        return unpack(path, retry_command=fetch_command(source, mirror=fetcher.mirror, catalogue=fetcher.catalogue))

    return _Inputs(
        communes=pick_communes_file(unpacked("communes", communes_archive), communes_archive.name),
        qpv=[(src.removeprefix("qpv"), pick_vector_file(unpacked(src, p), p.name))
             for src, p in zip(("qpv2024", "qpv2015"), qpv_archives, strict=False)],
        unites_legales=_stock_file(stocks["unites_legales"], unpacked),
        etablissements=_stock_file(stocks["etablissements"], unpacked),
        geolocalisation=geolocalisation,
        census=census,
        activities=activities,
        ban=ban,
    )


def _stock_file(path: Path, unpacked: Callable[[str, Path], list[Path]]) -> Path:
    if path.suffix.lower() == ".parquet":
        return path
    source = "sirene_unites_legales" if "unitelegale" in path.name.lower() else "sirene_etablissements"
    return pick_csv(unpacked(source, path), path.name)


def build_official(
    settings: Settings,
    departements: Sequence[str],
    *,
    db_path: Path | None = None,
    qpv2015: bool = False,
    mirror: str | Path | None = None,
    force: bool = False,
    downloads: DownloadProgress | None = None,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    catalogue: dict[str, tuple[OfficialFile, ...]] = SOURCES,
) -> OfficialReport:
    """Download, read and write the real data of ``departements`` into a new store (see module docstring).

    Raises
    ------
    FetchError
        A download failed (French message; a partial file stays for the next run to resume).
    EssmapError
        A file was refused, or a write failed; the previous store is untouched.
    """
    progress = progress or no_progress
    deps = checked_departements(list(departements))
    db_path = Path(db_path or settings.db_path)
    report = OfficialReport(db_path, tuple(deps), LoadReport(db_path))

    progress("Téléchargements", 0.0)
    fetcher = _Downloader(settings.cache_dir, mirror=mirror, force=force, departements=deps, downloads=downloads,
                          catalogue=catalogue)
    try:
        inputs = _download(fetcher, qpv2015=qpv2015, notices=report.notices)
    finally:
        report.downloads = fetcher.done

    progress("Lecture des communes (ADMIN EXPRESS)", 0.1)
    communes = read_communes(inputs.communes, departements=deps)
    check_usable(communes, deps)
    qpv_reads: list[SourceRead] = []
    for generation, path in inputs.qpv:
        progress(f"Lecture des QPV {generation}", 0.2)
        read = read_qpv(path, departements=deps)
        if _nothing_in_scope(read, f"QPV {generation}", deps, report.notices):
            continue
        qpv_reads.append(read)

    # the tiers-lieux are placed from the files alone (geolocation, stock, BAN): before the SIRENE rows
    # are in memory, which keeps the two apart
    progress("Tiers-lieux : placement (géolocalisation SIRENE, adresses BAN)", 0.25)
    placement = PlacementFiles.of(geolocalisation=inputs.geolocalisation, ban=inputs.ban,
                                  etablissements=inputs.etablissements)
    census = read_tiers_lieux(inputs.census, departements=deps, placement=placement, activities=inputs.activities)
    tiers_lieux = None if _nothing_in_scope(census, "Tiers-lieux", deps, report.notices) else census

    def sirene_progress(label: str, fraction: float) -> None:
        progress(f"SIRENE : {label}", 0.4 + 0.4 * fraction)

    load = report.load
    with bounded_update(db_path, scratch="build", start_empty=True, notify=notify or say) as con:
        progress("Écriture des communes, des QPV et des tiers-lieux", 0.35)
        load.replacements.append(write_admin(con, communes, settings))
        load.sources.append(communes.meta)
        for read in qpv_reads:
            load.replacements.append(write_qpv(con, read))
            load.sources.append(read.meta)
        if tiers_lieux is not None:
            load.replacements.append(write_tiers_lieux(con, tiers_lieux, communes.frame, keep_departements=deps))
            load.sources.append(tiers_lieux.meta)
        # written, they are read from the store from now on: the communes at full resolution (a gigabyte
        # for all France) are let go before the SIRENE rows come in; a refused SIRENE file still leaves
        # the previous store untouched (nothing is committed before the end of this block)
        del communes, census, tiers_lieux
        qpv_reads.clear()
        # their display geometries now, from the store: the simplification of the national communes
        # (about 1.6 GB) then comes before the SIRENE stage and the establishments, not on top of them
        progress("Géométries d'affichage (communes, QPV)", 0.37)
        for levels in ("communes", "qpv"):
            joins.refresh_display_geometry(con, levels=levels)
        # the establishments go into the write connection part by part as they are read (DuckDB keeps
        # them within its memory limit): the 1.5 million national rows are never in pandas at once
        staged = store.StagedPoints(con, "etablissements")
        sirene = read_sirene(inputs.unites_legales, inputs.etablissements, geolocalisation=inputs.geolocalisation,
                             departements=deps, progress=sirene_progress, parts=staged.add)
        check_usable(sirene, deps)
        report.with_geolocation = True
        progress("Écriture des établissements", 0.85)
        load.replacements.append(write_establishments(con, sirene, staged=staged))
        load.sources.append(sirene.meta)
        del sirene, staged
        progress("Jointures (communes, EPCI, QPV) et concordance INSEE", 0.9)
        # the points were written after the communes and QPVs: located at insert, not again
        load.forgotten = finish_write(con, changed=list(schema.FILE_LAYERS), located=schema.POINT_LAYERS,
                                      displayed=("communes", "qpv"))
        _count_store(con, report)
    progress("Terminé", 1.0)
    return report


def _nothing_in_scope(read: SourceRead, label: str, deps: Sequence[str], notices: list[str]) -> bool:
    """A source without any row in the territory is said and left out (a département may have no
    QPV of a generation, no tiers-lieu in the census); rows all quarantined are refused as usual."""
    if read.meta.rows_read == 0:
        notices.append(f"{label} : aucune ligne pour {_departements_text(deps)} dans "
                       f"« {printable(read.meta.file_name)} » — rien à charger.")
        return True
    check_usable(read, deps)
    return False


def _departements_text(deps: Sequence[str]) -> str:
    return f"le {deps[0]}" if len(deps) == 1 else f"les départements {', '.join(deps)}"


def _count_store(con: duckdb.DuckDBPyConnection, report: OfficialReport) -> None:
    counts = store.layer_counts(con)
    report.layers = {str(r.couche): int(r.lignes) for r in counts.itertuples()}
    rows = con.execute("SELECT precision_localisation, count(*) FROM tiers_lieux GROUP BY 1").fetchall()
    report.placements = {str(p): int(n) for p, n in rows}
    row = con.execute("SELECT count(*) FROM etablissements WHERE source_position = ?", [POSITION_GEOLOC]).fetchone()
    report.geolocated = int(row[0]) if row else 0
    report.concordance = concordance_by_departement(con)


# --- Summary -------------------------------------------------------------------------------------


def summary_lines(report: OfficialReport, *, default_db: Path | None = None, per_source: bool = True) -> list[str]:
    """The French summary of a build: downloads, what was loaded with its millésimes, quarantine,
    placing of the tiers-lieux, concordance with INSEE, and the command that opens the dashboard.

    ``per_source=False`` leaves out the line of each source (the CLI prints them as a table) but
    not their warnings."""
    fetched = [d for d in report.downloads if not d.cached]
    cached = [d for d in report.downloads if d.cached]
    lines = [f"Base réelle construite : « {printable(report.db_path)} », {_departements_text(report.departements)}.",
             f"Fichiers officiels : {len(fetched)} téléchargé(s) ({_megabytes(sum(d.size for d in fetched))}), "
             f"{len(cached)} déjà dans le cache."]
    lines.extend(report.notices)
    for meta in report.load.sources:
        millesime = meta.generation or "millésime non renseigné"
        if per_source:
            lines.append(f"{_SOURCE_LABELS.get(meta.source, meta.source)} ({millesime}) : "
                         f"{format_number(meta.rows_kept)} ligne(s) gardée(s) sur {format_number(meta.rows_read)} "
                         "lue(s), "
                         f"{format_number(meta.rows_quarantined)} en quarantaine — {printable(meta.file_name)}.")
        lines.extend(f"Attention : {printable(w)}" for w in meta.warnings)
    layers = report.layers
    lines.append("Dans la base : " + ", ".join(
        f"{format_number(layers.get(table, 0))} {label}" for table, label in _LAYER_LABELS.items()) + ".")
    if layers.get("etablissements"):
        lines.append(f"Établissements ESS placés par le fichier de géolocalisation de l'INSEE : "
                     f"{format_number(report.geolocated)} sur {format_number(layers['etablissements'])} "
                     "(les autres par les coordonnées Lambert du stock).")
    if report.placements:
        order = [p for p in schema.LOCATION_PRECISIONS if p in report.placements]
        lines.append("Tiers-lieux, localisation : " + ", ".join(
            f"{p} {format_number(report.placements[p])}" for p in order) + ".")
        approximate = report.placements.get(schema.LOCATION_COMMUNE, 0)
        if approximate:
            lines.append(f"  {format_number(approximate)} tiers-lieu(x) placé(s) à leur commune seulement "
                         f"({schema.APPROXIMATE_LOCATION_FR}) : montrés, mais laissés hors des calculs de rayon.")
    if report.with_geolocation:
        lines.extend(concordance_sentences(report.concordance))
    lines.append("Détail (sources, quarantaine, désaccords avec l'INSEE) : "
                 + _info_command(report.db_path, default_db))
    lines.append("Ouvrir le tableau de bord : " + dashboard_command(report.db_path))
    return lines


_SOURCE_LABELS = {"communes": "Communes (IGN ADMIN EXPRESS)", "qpv": "QPV (ANCT)",
                  "sirene": "Établissements ESS (INSEE SIRENE)", "tiers_lieux": "Tiers-lieux (France Tiers-Lieux)"}
_LAYER_LABELS = {"communes": "communes", "epci": "EPCI", "departements": "département(s)", "regions": "région(s)",
                 "qpv": "QPV", "etablissements": "établissements ESS", "tiers_lieux": "tiers-lieux"}


def _megabytes(size: int) -> str:
    return format_number(size / 1e6, 1, unit="Mo")


def _db_option(db_path: Path, default_db: Path | None) -> str:
    return "" if default_db is not None and Path(db_path).resolve() == Path(default_db).resolve() \
        else f" --db {printable(db_path)}"


def _info_command(db_path: Path, default_db: Path | None) -> str:
    return f"essmap info{_db_option(db_path, default_db)}"


def dashboard_command(db_path: Path) -> str:
    """The command that opens the dashboard on ``db_path`` (from the project folder).

    Not ``make run``: it rebuilds the embedded demo into ``data/essmap.duckdb`` whenever the code
    changed, and opens that store. ``serve/launch.py``, as ``make run``: the port opens once the
    dashboard's modules are imported, so the first visitor does not wait for them.
    """
    return f"ESSMAP_DB={printable(Path(db_path).resolve())} .venv/bin/python serve/launch.py"


RESUME_HINT = ("Relancez la même commande `essmap build --officiel ...` : les fichiers déjà complets dans le cache ne "
               "seront pas retéléchargés, et un téléchargement interrompu reprendra où il s'est arrêté.")
