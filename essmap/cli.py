"""Command line: ``essmap build | ingest | fetch | info``.

Commands stay thin: parse, call the library, print. Expected failures print a French message
with a fix and exit with status 1, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from essmap.click_fr import FrenchGroup
from essmap.domain.config import Settings, load_settings
from essmap.domain.errors import EssmapError

#: Help on ``-h`` as on ``--help``, defaults shown: the options of a command read as a form.
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


@click.group(name="essmap", cls=FrenchGroup, context_settings=CONTEXT)
def app() -> None:
    """essmap : l'économie sociale et solidaire (ESS), les QPV et les tiers-lieux sur une carte."""


console = Console()
err_console = Console(stderr=True)

#: Ends a command with this exit status (click prints nothing more).
Exit = click.exceptions.Exit


def _path(**kwargs: bool) -> click.Path:
    return click.Path(path_type=Path, **kwargs)


db_option = click.option("--db", type=_path(dir_okay=False), default=None, show_default=False,
                         help="Fichier DuckDB (défaut : data/essmap.duckdb, ou $ESSMAP_DB).")


def _settings(db: Path | None) -> Settings:
    settings = load_settings()
    if db is not None:
        settings = Settings(**{**settings.__dict__, "db_path": db})
    return settings


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn expected failures into a French message and exit status 1."""
    try:
        yield
    except EssmapError as exc:
        err_console.print(f"[bold red]Erreur :[/] {exc}", highlight=False, markup=True)
        raise Exit(1) from None


@contextmanager
def _safe_errors(*, store_path: Path | None = None) -> Iterator[None]:
    """The boundary of ``build``, ``ingest``, ``fetch`` and ``info``: every failure ends in a French
    message and exit status 1, never a traceback; text from files is escaped (no raw terminal
    escape sequence, no Rich markup). ``store_path``: the store a failed write left untouched.

    ``ESSMAP_DEBUG=1`` lets unexpected errors through with their traceback, for a bug report.
    """
    from essmap.io.text import printable

    existed = store_path is not None and store_path.exists()

    def untouched(message: str = "") -> str:
        if not existed or "intacte" in message:
            return ""
        return f" La base « {printable(store_path)} » n'a pas été modifiée."

    try:
        yield
    except EssmapError as exc:
        text = printable(exc, keep_newlines=True)
        err_console.print(Text.assemble(("Erreur :", "bold red"), f" {text}{untouched(text)}"))
        raise Exit(1) from None
    except KeyboardInterrupt:
        err_console.print(f"Interrompu.{untouched()}", markup=False, highlight=False)
        raise Exit(130) from None
    except (Exit, click.Abort, SystemExit):
        raise
    except Exception as exc:
        if os.environ.get("ESSMAP_DEBUG"):
            raise
        from essmap.store.write import failure_cause

        cause = failure_cause(exc, store_path.parent if store_path else Path("."))
        err_console.print(Text.assemble(
            ("Erreur :", "bold red"),
            f" {printable(cause, keep_newlines=True)}{untouched(cause)} Si le problème persiste, relancez avec "
            "ESSMAP_DEBUG=1 pour obtenir le détail technique et signalez-le.",
        ))
        raise Exit(1) from None


def _notice(message: str) -> None:
    """A French notice of the write (waiting for another writer, clean-up), escaped, on stderr."""
    from essmap.io.text import printable

    err_console.print(printable(message), markup=False, highlight=False, soft_wrap=True)


def _cell(value: object) -> Text:
    """A table cell from data: escaped, never read as Rich markup."""
    from essmap.io.text import printable

    return Text("" if value is None else printable(value, limit=300))


@contextmanager
def _progress_bar(total: float = 1.0) -> Iterator[Callable[[str, float], None]]:
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f} %"),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("Démarrage", total=total)

        def update(label: str, fraction: float) -> None:
            bar.update(task, description=label, completed=fraction * total)

        yield update


def _parse_departements(text: str | None) -> list[str] | None:
    from essmap.domain.territories import normalise_departement

    if not text:
        return None
    return [normalise_departement(d) for d in text.split(",") if d.strip()]


def _print_sources(report, *, synthetic_column: bool = True) -> None:
    """The files loaded: source, file, millésime, rows read, kept, quarantined (and simulated or not,
    unless ``synthetic_column`` is False and no file is simulated)."""
    from essmap.io.text import printable

    synthetic = synthetic_column or any(m.is_synthetic for m in report.sources)
    table = Table(title=Text(f"Base : {printable(report.db_path)}"))
    for col in ("source", "fichier", "génération", "lues", "gardées", "en quarantaine", "simulées")[:7 if synthetic
                                                                                                      else 6]:
        table.add_column(col, overflow="fold")
    for m in report.sources:
        row: list[Text | str] = [_cell(m.source), _cell(m.file_name), _cell(m.generation), _fmt(m.rows_read),
                                 _fmt(m.rows_kept), _fmt(m.rows_quarantined)]
        table.add_row(*row, *(["oui" if m.is_synthetic else "non"] if synthetic else []))
    console.print(table)


def _print_loaded(report) -> None:
    from essmap.io.text import printable

    _print_sources(report)
    for replacement in report.replacements:
        console.print(printable(replacement.sentence()), highlight=False, markup=False)
    for name in report.forgotten:
        console.print(f"Le fichier « {printable(name)} » n'a plus aucune ligne dans la base : il est retiré des "
                      "sources, avec ses lignes en quarantaine.", highlight=False, markup=False)
    for m in report.sources:
        for w in m.warnings:
            err_console.print(Text.assemble(("Attention :", "yellow"), f" {printable(w)}"))


def _fmt(n: int | float) -> str:
    from essmap.domain.formatting import format_number

    return format_number(n)


@app.command()
@db_option
@click.option("--scale", type=click.FloatRange(min=0.001), default=None,
              help="Démonstration : volume des données simulées (1 = réaliste).")
@click.option("--officiel", is_flag=True, help="Construire une base de données réelles (fichiers officiels "
              "téléchargés) pour --departements, --region ou --france.")
@click.option("--departements", default=None, help="Avec --officiel : départements, ex. 38 ou 13,84,2A.")
@click.option("--region", default=None, help="Avec --officiel : tous les départements d'une région (code INSEE, "
              "ex. 84).")
@click.option("--france", is_flag=True, help="Avec --officiel : toute la France.")
@click.option("--qpv2015", is_flag=True, help="Avec --officiel : charger aussi les QPV de la génération 2015.")
@click.option("--miroir", default=None, help="Avec --officiel : prendre les fichiers dans ce dossier, ou sous cette "
              "adresse de base http(s)://, sous les noms de `essmap fetch --liste`.")
@click.option("--force", is_flag=True, help="Avec --officiel : retélécharger les fichiers même complets dans le "
              "cache (nouveau stock mensuel SIRENE).")
@click.option("--cache", type=_path(file_okay=False), default=None, help="Avec --officiel : dossier du cache des "
              "téléchargements (défaut : data/cache, ou $ESSMAP_CACHE_DIR).", show_default=False)
def build(db: Path | None, scale: float | None, officiel: bool, departements: str | None, region: str | None,
          france: bool, qpv2015: bool, miroir: str | None, force: bool, cache: Path | None) -> None:
    """Construire la base : la démonstration (région PACA, établissements ESS simulés), ou avec --officiel
    une base de données réelles pour des départements, une région ou la France."""
    settings = _settings(db)
    if officiel:
        _build_official(settings, departements=departements, region=region, france=france, qpv2015=qpv2015,
                        miroir=miroir, force=force, cache=cache, scale=scale)
        return
    with _safe_errors(store_path=settings.db_path):
        used = [name for name, value in (("--departements", departements), ("--region", region),
                                         ("--france", france), ("--qpv2015", qpv2015), ("--miroir", miroir),
                                         ("--force", force), ("--cache", cache)) if value]
        if used:
            raise EssmapError(f"{', '.join(used)} ne sert qu'avec --officiel (base de données réelles), par exemple "
                              "`essmap build --officiel --departements 38`.")
        from essmap.demo.build import build_demo

        with _progress_bar() as progress:
            report = build_demo(settings, scale=1.0 if scale is None else scale, progress=progress)
    _print_loaded(report)
    console.print("[bold]Les établissements ESS et une partie des tiers-lieux sont des données simulées.[/]")


class _AmountColumn(ProgressColumn):
    """Bytes, speed and time left for a download; the percentage for the stage bar."""

    def __init__(self) -> None:
        super().__init__()
        self.columns = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())

    def render(self, task) -> Text:
        if task.fields.get("stage"):
            return Text(f"{task.percentage:>3.0f} %")
        return Text(" ").join(Text(str(column.render(task))) for column in self.columns)


class _DownloadBars:
    """One bar per download for :func:`essmap.store.official.build_official` (``(en cache)`` when nothing moved)."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, Any] = {}

    def start(self, label: str) -> Callable[[int, int | None], None]:
        from essmap.io.text import printable

        task = self.bar.add_task(printable(label, limit=80), total=None)
        self.tasks[label] = task

        def update(done: int, total: int | None) -> None:
            self.bar.update(task, completed=done, total=total)

        return update

    def finished(self, label: str, size: int, *, cached: bool) -> None:
        from essmap.io.text import printable

        task = self.tasks[label]
        self.bar.update(task, total=size, completed=size)
        if cached:
            self.bar.update(task, description=f"{printable(label, limit=80)} (en cache)")


def _build_official(settings: Settings, *, departements: str | None, region: str | None, france: bool,
                    qpv2015: bool, miroir: str | None, force: bool, cache: Path | None, scale: float | None) -> None:
    """``essmap build --officiel``: downloads (one bar each), stages (one bar), then the French summary."""
    import dataclasses

    from essmap.domain.errors import FetchError
    from essmap.io.text import printable
    from essmap.store.official import RESUME_HINT, build_official, departements_of_request, summary_lines

    if cache is not None:
        settings = dataclasses.replace(settings, cache_dir=cache)
    with _safe_errors(store_path=settings.db_path):
        if scale is not None:
            raise EssmapError("--scale règle le volume des données simulées de la démonstration : il ne sert pas "
                              "avec --officiel.")
        deps = departements_of_request(departements=[d for d in (departements or "").split(",") if d.strip()],
                                       region=region, france=france, raw_dir=settings.raw_dir)
        err_console.print(f"Construction d'une base de données réelles : {len(deps)} département(s) "
                          f"({printable(', '.join(deps), limit=200)}) ; cache {printable(settings.cache_dir)}"
                          + (f" ; miroir {printable(miroir)}" if miroir else "") + ".", markup=False, highlight=False)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), _AmountColumn(), console=err_console) as bar:
                downloads = _DownloadBars(bar)
                stage = bar.add_task("Étapes", total=1.0, visible=False, stage=True)

                def progress(label: str, fraction: float) -> None:
                    if fraction > 0:  # the stage bar appears once the downloads are done
                        bar.update(stage, description=f"Étape : {printable(label, limit=90)}", completed=fraction,
                                   visible=True)

                report = build_official(settings, deps, qpv2015=qpv2015, mirror=miroir, force=force,
                                        downloads=downloads, progress=progress, notify=_notice)
        except FetchError as exc:
            raise FetchError(f"{exc} {RESUME_HINT}") from exc
    _print_sources(report.load, synthetic_column=False)
    for line in summary_lines(report, default_db=load_settings().db_path, per_source=False):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@click.argument("source")
@click.argument("files", nargs=-1, required=True, type=_path())
@click.option("--departements", default=None, help="Restreindre à ces départements, ex. 13,93,2A.")
@click.option("--generation", default=None, help="Génération des QPV (2024 ou 2015), ou millésime des communes / "
              "tiers-lieux, si le fichier ne le dit pas.")
@click.option("--colonnes", default=None, help="Correspondance des colonnes (tiers-lieux), ex. nom=NOM,latitude=LAT.")
@click.option("--geoloc", multiple=True, type=_path(dir_okay=False),
              help="Tiers-lieux sans coordonnées : fichier de géolocalisation SIRENE de l'INSEE "
              "(GeolocalisationEtablissement_Sirene_pour_etudes_statistiques), pour les placer à l'établissement de "
              "leur structure (SIREN) dans leur commune.")
@click.option("--ban", multiple=True, type=_path(dir_okay=False),
              help="Tiers-lieux sans coordonnées : fichier adresses-<DEP>.csv.gz de la Base Adresse Nationale, pour "
              "les placer à leur adresse (répétez l'option pour plusieurs départements).")
@click.option("--etablissements-sirene", multiple=True, type=_path(dir_okay=False),
              help="Avec --geoloc (facultatif) : fichier StockEtablissement, pour ne garder que les établissements "
              "actifs et choisir d'après l'adresse quand la structure en a plusieurs dans la commune.")
@db_option
def ingest(source: str, files: tuple[Path, ...], departements: str | None, generation: str | None,
           colonnes: str | None, geoloc: tuple[Path, ...], ban: tuple[Path, ...],
           etablissements_sirene: tuple[Path, ...], db: Path | None) -> None:
    """Charger des fichiers officiels dans la base (la base précédente reste intacte en cas d'erreur) :
    SOURCE (qpv, communes, sirene ou tiers-lieux) et ses FILES, fichiers officiels tels que publiés.

    Tiers-lieux sans coordonnées (recensement France Tiers-Lieux) : placés hors ligne avec --geoloc et
    --ban ; ceux qui ne peuvent l'être qu'à leur commune sont montrés (localisation approximative) mais
    laissés hors des calculs de rayon.
    """
    from essmap.io.readers.placement import PlacementFiles
    from essmap.io.readers.tiers_lieux import parse_column_mapping
    from essmap.store.ingest import ingest_files

    settings = _settings(db)
    with _safe_errors(store_path=settings.db_path):
        columns = parse_column_mapping(colonnes) if colonnes else None
        placement = PlacementFiles.of(geolocalisation=geoloc, ban=ban, etablissements=etablissements_sirene)
        if placement.etablissements and not placement.geolocalisation:
            raise EssmapError("--etablissements-sirene ne sert qu'avec --geoloc (fichier de géolocalisation SIRENE).")
        deps = _ingest_departements(departements, source, settings.db_path)
        with _progress_bar() as progress:
            report = ingest_files(settings.db_path, source, list(files), settings=settings, departements=deps,
                                  generation=generation, columns=columns, placement=placement, progress=progress,
                                  notify=_notice)
        _print_loaded(report)


def _ingest_departements(text: str | None, source: str, db_path: Path) -> list[str] | None:
    """The départements of ``--departements``: known codes, and (but for communes, which may bring a
    new département) held by the store, refused as ``essmap query`` refuses them."""
    from essmap import store
    from essmap.io.readers.common import checked_departements

    if not text or not text.strip():
        return None
    deps = checked_departements([d for d in text.split(",") if d.strip()])
    if source == "communes" or not deps:
        return deps or None
    con = store.connect(db_path)
    try:
        _check_departements(con, deps)
    except EssmapError as exc:
        raise EssmapError(f"{exc} Solution : chargez d'abord leurs communes (`essmap ingest communes`), ou "
                          "retirez-les de --departements.") from exc
    finally:
        con.close()
    return deps


def _sources_table(catalogue) -> Table:
    """The catalogue as a terminal table (``essmap fetch --liste``), in French; the addresses
    follow the table (see :func:`_sources_addresses`) so that they stay whole and copyable.
    Columns whose value is the same for every file (licence, unknown sizes) become a caption."""
    from essmap.domain.formatting import format_number

    files = [(source, file) for source, entries in catalogue.items() for file in entries]
    licences = {file.licence for _, file in files}
    with_sizes = any(file.size is not None for _, file in files)
    notes = ["Fichier : nom du fichier dans le cache et dans un miroir (--miroir)."]
    if len(licences) == 1:
        notes.append(f"Licence de tous les fichiers : {next(iter(licences))}.")
    if not with_sizes:
        notes.append("Tailles vérifiées à l'arrivée contre celles annoncées par le serveur.")
    table = Table(title="Fichiers officiels téléchargeables : essmap fetch SOURCE", title_justify="left",
                  caption=" ".join(notes), caption_justify="left", show_lines=True)
    table.add_column("Source", no_wrap=True, style="bold")
    table.add_column("Fichier", overflow="fold", ratio=1)
    table.add_column("Contenu", ratio=2)
    if len(licences) > 1:
        table.add_column("Licence")
    if with_sizes:
        table.add_column("Taille", justify="right")
    for source, file in files:
        row = [source, file.display_filename, file.description]
        if len(licences) > 1:
            row.append(file.licence)
        if with_sizes:
            row.append("non vérifiée" if file.size is None else format_number(file.size / 1e6, 1, unit="Mo"))
        table.add_row(*row)
    return table


def _sources_addresses(catalogue) -> list[str]:
    """One line per file: its name, download address and landing page."""
    from essmap.io.sources import DEPARTEMENT

    return [f"{file.display_filename} : {file.url.replace(DEPARTEMENT, '<DEP>')} "
            f"(page : {file.page or 'non renseignée'})"
            for files in catalogue.values() for file in files]


@app.command()
@click.argument("sources", nargs=-1)
@click.option("--dest", type=_path(), default=None, show_default=False,
              help="Dossier du cache (défaut : data/cache, ou $ESSMAP_CACHE_DIR).")
@click.option("--liste", is_flag=True, help="Lister les sources téléchargeables.")
@click.option("--markdown", is_flag=True, help="Lister les sources en tableau Markdown (celui du README).")
@click.option("--force", is_flag=True, help="Retélécharger même si le fichier est déjà complet dans le cache "
              "(nouveau stock mensuel SIRENE).")
@click.option("--miroir", default=None, help="Prendre les fichiers dans ce dossier, ou sous cette adresse de base "
              "http(s)://, sous les noms de fichier de `essmap fetch --liste` (proxy, réseau interne).")
@click.option("--departements", default=None, help="Départements des sources à un fichier par département "
              "(ban_adresses), ex. 13,84,2A.")
def fetch(sources: tuple[str, ...], dest: Path | None, liste: bool, markdown: bool, force: bool, miroir: str | None,
          departements: str | None) -> None:
    """Télécharger les fichiers officiels (reprise des téléchargements interrompus, vérification) : SOURCES,
    une ou plusieurs (voir `essmap fetch --liste`)."""
    from essmap.io.fetch import fetch_command, fetch_file, files_of_source, unpack
    from essmap.io.sources import SOURCES, describe_sources
    from essmap.io.text import printable

    if markdown:
        console.print(describe_sources(), markup=False, highlight=False, soft_wrap=True)
        return
    if liste or not sources:
        console.print(_sources_table(SOURCES))
        console.print("\nAdresses de téléchargement (<DEP> : code du département, ex. 13, 2A, 974) :",
                      markup=False, highlight=False)
        for line in _sources_addresses(SOURCES):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        console.print("\nAvec --miroir DOSSIER_OU_URL, les fichiers sont pris sous ces noms dans le dossier ou "
                      "sous l'adresse de base indiquée.", markup=False, highlight=False)
        return
    cache = dest or load_settings().cache_dir
    deps = [d for d in departements.split(",") if d.strip()] if departements else None
    paths: list[Path] = []
    with _safe_errors():
        # Every source and département checked before the first byte is fetched.
        wanted = [(source, file) for source in sources for file in files_of_source(source, deps, catalogue=SOURCES)]
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeRemainingColumn(), console=err_console) as bar:
            for source, file in wanted:
                label = printable(file.filename, limit=80)
                task = bar.add_task(label, total=None)
                moved: list[int] = []

                def update(done: int, total: int | None, task=task, moved=moved) -> None:
                    moved.append(done)
                    bar.update(task, completed=done, total=total)

                retry = fetch_command(source, deps, miroir)
                path = fetch_file(source, file, cache, mirror=miroir, progress=update, force=force,
                                  retry_command=retry)
                if not moved:  # complete in the cache: nothing fetched
                    size = path.stat().st_size
                    bar.update(task, total=size, completed=size, description=f"{label} (en cache)")
                paths.extend(unpack(path, retry_command=retry))
    for p in paths:
        console.print(str(p), markup=False, highlight=False)


@app.group("query")
def query_app() -> None:
    """Analyses : QPV et tiers-lieux dans un rayon, indicateurs par territoire."""


format_option = click.option("--format", "fmt", default="csv", help="csv, xlsx, geojson ou gpkg.")
out_option = click.option("--out", default=None, show_default=False, help="Fichier de sortie ; « - » pour la sortie "
                          "standard. Défaut : un fichier nommé d'après la requête, le territoire et la date.")
separator_option = click.option("--separateur", default=",", help="Séparateur CSV : « , » ou « ; » (tableurs "
                                "français, virgule décimale).")
force_option = click.option("--force", is_flag=True, help="Remplacer le fichier de sortie s'il existe déjà.")
departement_option = click.option("--departement", default=None, help="Restreindre à un ou plusieurs départements, "
                                  "ex. 13 ou 13,84.")
#: A radius in metres, from 0 (inside the QPV) to 50 km.
RADIUS = click.FloatRange(0, 50_000)


def _check_table_options(fmt: str, separator: str) -> None:
    from essmap.render.tables import TABLE_FORMATS

    if fmt not in TABLE_FORMATS:
        raise EssmapError(f"Format « {fmt} » inconnu. Formats possibles : {', '.join(TABLE_FORMATS)}.")
    if separator not in (",", ";"):
        raise EssmapError(f"Séparateur « {separator} » non pris en charge : utilisez « , » ou « ; ».")


def _write_query_result(frame, stem: str, territory: str, fmt: str, out: str | None, separator: str,
                        crs: str | int | None = None, *, force: bool, db: Path) -> None:
    from essmap.render.tables import TableFormat, export_file_name, write_table

    _check_table_options(fmt, separator)
    target = out or export_file_name(stem, territory, fmt)
    try:
        write_table(frame, target, cast(TableFormat, fmt), separator=separator, layer=stem, crs=crs, force=force,
                    protect=db)
    except ValueError as exc:
        raise EssmapError(str(exc)) from exc
    if target != "-":
        err_console.print(f"Écrit : {target}", highlight=False)


def _write_query_rows(columns: list[str], rows: list[tuple], stem: str, territory: str, out: str | None,
                      separator: str, *, force: bool, db: Path) -> None:
    """A query's rows as CSV straight from DuckDB: the bytes of :func:`_write_query_result`, without pandas."""
    from essmap.render.tables import export_file_name, write_csv_rows

    target = out or export_file_name(stem, territory, "csv")  # options checked before the query
    write_csv_rows(columns, rows, target, separator=separator, force=force, protect=db)
    if target != "-":
        err_console.print(f"Écrit : {target}", highlight=False)


def _territory_label(departements: list[str] | None) -> str:
    return "-".join(departements) if departements else "ensemble"


def _synthetic_note(flag: bool) -> None:
    if flag:
        err_console.print("[yellow]Attention :[/] ces résultats incluent des [bold]données simulées[/].")


@query_app.command("qpv-radius")
@click.option("--radius", type=RADIUS, default=1000.0, help="Rayon en mètres (distance au polygone du QPV, 0 à "
              "l'intérieur).")
@departement_option
@click.option("--generation", default=None, help="Génération des QPV (défaut : la plus récente chargée).")
@click.option("--france", is_flag=True, help="Toute la base, sans restriction de département, avec les deux parts "
              "publiées par France Tiers-Lieux et l'ANCT (31 % des tiers-lieux à moins d'1 km d'un QPV, 36 % des QPV "
              "avec un tiers-lieu à moins d'1 km) pour comparaison.")
@format_option
@out_option
@separator_option
@force_option
@db_option
def query_qpv_radius(radius: float, departement: str | None, generation: str | None, france: bool, fmt: str,
                     out: str | None, separateur: str, force: bool, db: Path | None) -> None:
    """Pour chaque QPV : tiers-lieux à moins de RADIUS mètres, le plus proche et sa distance.

    Les tiers-lieux placés à leur commune seulement (localisation approximative) sont laissés hors du calcul.
    """
    from essmap import store
    from essmap.analysis.coverage import approximate_tiers_lieux, covered_share, qpv_coverage, stored_coverage_rows
    from essmap.domain.formatting import format_number, format_percent
    from essmap.render.tables import GEOGRAPHIC_FORMATS

    settings = _settings(db)
    deps = _parse_departements(departement)
    with _user_errors():
        if france and deps:
            raise EssmapError("--france et --departement s'excluent : --france porte sur toute la base.")
        _check_table_options(fmt, separateur)
        con = store.connect(settings.db_path)
        try:
            _check_departements(con, deps)
            selection = _selection(departements=deps, qpv_generation=generation)
            # a CSV answered by the stored pairs is written from DuckDB's rows; else the frame (geometry)
            found = stored_coverage_rows(con, selection, radius_m=radius) if fmt == "csv" else None
            result = None if found else qpv_coverage(con, selection, radius_m=radius,
                                                     geometry="exact" if fmt in GEOGRAPHIC_FORMATS else None)
            approximate = approximate_tiers_lieux(con, selection)
            shares = _france_shares(con, selection, radius) if france else None
        finally:
            con.close()
        if found:
            columns, rows = found
            covered_at, synthetic_at = columns.index("covered"), columns.index("is_synthetic_involved")
            covered, total = sum(bool(row[covered_at]) for row in rows), len(rows)
            synthetic = any(bool(row[synthetic_at]) for row in rows)
        else:
            assert result is not None
            covered, total = int(result["covered"].sum()), len(result)
            synthetic = bool(result["is_synthetic_involved"].any())
        err_console.print(
            f"QPV avec au moins un tiers-lieu à moins de {format_number(radius)} m : {covered} sur "
            f"{total} ({format_percent(covered_share(covered, total))}) ; zones blanches : "
            f"{total - covered}.",
            highlight=False,
        )
        if approximate:
            err_console.print(
                f"{format_number(approximate)} tiers-lieu(x) placé(s) à leur commune seulement (localisation "
                "approximative) laissé(s) hors du calcul : une distance à partir du centre de la commune serait "
                "inventée.", highlight=False, markup=False,
            )
        if shares is not None:
            for line in shares(covered, total):
                console.print(line, highlight=False, markup=False)
        _synthetic_note(synthetic)
        stem = f"qpv_tiers_lieux_{int(radius)}m"
        if found:
            _write_query_rows(columns, rows, stem, _territory_label(deps), out, separateur, force=force,
                              db=settings.db_path)
        else:
            _write_query_result(result, stem, _territory_label(deps), fmt, out, separateur, force=force,
                                db=settings.db_path)


def _france_shares(con, selection, radius: float):
    """The two France-wide shares of France Tiers-Lieux / ANCT, computed on the store, with the
    published figures: a function of the QPVs covered and counted giving the lines to print."""
    from essmap.analysis.coverage import covered_share, tiers_lieux_near_qpv_share
    from essmap.analysis.references import REFERENCES_BY_KEY
    from essmap.domain.formatting import format_number, format_percent

    share, near, total, _synthetic = tiers_lieux_near_qpv_share(con, selection, radius_m=radius)
    published_tl = REFERENCES_BY_KEY["tiers_lieux_part_en_qpv_1km"]
    published_qpv = REFERENCES_BY_KEY["qpv_part_avec_tiers_lieu_1km"]

    def lines(covered: int, qpv_total: int) -> list[str]:
        out = [
            f"Tiers-lieux dans un QPV ou à moins de {format_number(radius)} m : {format_percent(share)} "
            f"({format_number(near)} sur {format_number(total)} localisés précisément) ; publié : "
            f"{format_percent(published_tl.value)} ({published_tl.source_fr}).",
            f"QPV ayant un tiers-lieu à moins de {format_number(radius)} m : "
            f"{format_percent(covered_share(covered, qpv_total))} "
            f"({format_number(covered)} sur {format_number(qpv_total)}) ; publié : "
            f"{format_percent(published_qpv.value)} ({published_qpv.source_fr}).",
        ]
        if radius != 1000:
            out.append("Les parts publiées portent sur un rayon de 1 000 m : relancez avec --radius 1000 pour "
                       "comparer.")
        return out

    return lines


def _selection(**fields):
    """A Selection from CLI options; an invalid value is a French user error."""
    from essmap.domain.selection import Selection

    try:
        return Selection(**fields)
    except ValueError as exc:
        raise EssmapError(f"Filtre invalide : {exc}") from exc


def _check_departements(con, departements: list[str] | None) -> None:
    """Refuse département codes the store does not hold (the same message everywhere)."""
    from essmap import store

    if not departements:
        return
    known = set(store.departements_present(con, "communes"))
    missing = sorted(set(departements) - known)
    if missing:
        raise EssmapError(f"Département(s) {', '.join(missing)} absent(s) de la base. "
                          f"Départements chargés : {', '.join(sorted(known)) or 'aucun'}.")


@query_app.command("indicators")
@click.option("--level", default="commune", help="commune, epci, departement, region ou qpv.")
@departement_option
@click.option("--radius", type=RADIUS, default=1000.0, help="Rayon de couverture des QPV par les tiers-lieux, en "
              "mètres.")
@format_option
@out_option
@separator_option
@force_option
@db_option
def query_indicators(level: str, departement: str | None, radius: float, fmt: str, out: str | None,
                     separateur: str, force: bool, db: Path | None) -> None:
    """Indicateurs ESS par territoire (établissements, pour 10 000 habitants, part en QPV, tiers-lieux)."""
    from essmap import store
    from essmap.analysis.indicators import LEVELS, indicator_rows, indicators_by_level

    if level not in LEVELS:
        err_console.print(f"[bold red]Erreur :[/] niveau « {level} » inconnu. Niveaux possibles : {', '.join(LEVELS)}.")
        raise Exit(1)
    settings = _settings(db)
    deps = _parse_departements(departement)
    with _user_errors():
        _check_table_options(fmt, separateur)
        con = store.connect(settings.db_path)
        try:
            _check_departements(con, deps)
            selection = _selection(departements=deps)
            # CSV: the rows as DuckDB computes them, without pandas; other formats: the frame
            if fmt == "csv":
                columns, rows = indicator_rows(con, level, selection=selection, radius_m=radius)  # type: ignore[arg-type]
            else:
                table = indicators_by_level(con, level, selection=selection, radius_m=radius)  # type: ignore[arg-type]
        finally:
            con.close()
        stem = f"indicateurs_{level}"
        if fmt == "csv":
            synthetic = columns.index("inclut_donnees_simulees")
            _synthetic_note(any(bool(row[synthetic]) for row in rows))
            _write_query_rows(columns, rows, stem, _territory_label(deps), out, separateur, force=force,
                              db=settings.db_path)
        else:
            _synthetic_note(bool(table["inclut_donnees_simulees"].any()))
            _write_query_result(table, stem, _territory_label(deps), fmt, out, separateur, force=force,
                                db=settings.db_path)


@app.group("export")
def export_app() -> None:
    """Exports pour les rapports : carte (PNG 300 dpi, PDF, SVG), portrait de territoire (PDF), tableaux de la vue."""


vue_option = click.option("--vue", default=None, help="Lien du tableau de bord (ou sa partie après « ? ») : "
                          "reproduit ses filtres, indicateur, niveau, rayon et classes.")
epci_option = click.option("--epci", default=None, help="SIREN d'un EPCI, ex. 200054807.")
commune_option = click.option("--commune", default=None, help="Code INSEE d'une commune, ex. 13055.")
level_option = click.option("--level", default=None, help="Niveau de la carte : commune, epci, departement, region "
                            "ou qpv.")
indicator_option = click.option("--indicateur", default=None, help="Indicateur de la carte (voir essmap query "
                                "indicators).")
method_option = click.option("--methode", default=None, help="Classes : quantiles, natural_breaks ou "
                             "equal_interval.")
classes_option = click.option("--classes", type=click.IntRange(3, 7), default=None, help="Nombre de classes (3 à 7).")
rayon_option = click.option("--rayon", type=RADIUS, default=None, help="Rayon QPV – tiers-lieux en mètres.")


def _export_view(vue: str | None, *, departement: str | None, epci: str | None, commune: str | None,
                 level: str | None, indicateur: str | None, methode: str | None, classes: int | None,
                 rayon: float | None, fond: str | None = None):
    """The MapView of a dashboard link, changed by the options given."""
    import dataclasses
    from urllib.parse import parse_qsl, urlsplit

    from essmap.present.view import MapView, default_level

    try:
        params = dict(parse_qsl(urlsplit(vue).query or vue)) if vue else {}
        view = MapView.from_query_params(params)
        territory = {"departements": tuple(_parse_departements(departement) or ()),
                     "epci": (epci.strip(),) if epci else (), "communes": (commune.strip(),) if commune else ()}
        changes: dict[str, Any] = {k: v for k, v in territory.items() if v}
        if changes:
            selection = dataclasses.replace(view.selection, **changes)
            # a link without "niveau" opens at its territory's own level: so does the territory given here
            level_of_link = {} if params.get("niveau") else {"level": default_level(selection)}
            view = view.replace(selection=selection, **level_of_link)
        options = {"level": level, "indicator": indicateur, "method": methode, "k": classes, "radius_m": rayon,
                   "tiles": fond}
        return view.replace(**{k: v for k, v in options.items() if v is not None})
    except ValueError as exc:
        raise EssmapError(f"Vue invalide : {exc}") from exc


def _view_data_from_store(db: Path | None, view, *, tables: bool = False):
    """The view's data (and its export tables when asked), read from the store."""
    from essmap import store
    from essmap.present.viewdata import export_tables, view_data

    settings = _settings(db)
    con = store.connect(settings.db_path)
    try:
        selection = view.selection
        _check_departements(con, list(selection.departements) or None)
        data = view_data(con, view)
        sources = store.sources(con)
        exported = export_tables(con, data) if tables else None
    finally:
        con.close()
    if data.areas.empty:
        raise EssmapError("La vue ne contient aucun territoire : vérifiez les codes et les filtres.")
    return data, sources, exported


@export_app.command("map")
@vue_option
@departement_option
@epci_option
@commune_option
@level_option
@indicator_option
@method_option
@classes_option
@rayon_option
@click.option("--fond", default=None, help="Fond de carte si ses tuiles sont accessibles : « OpenStreetMap » ou "
              "« Plan IGN » (défaut : aucun, hors ligne).")
@click.option("--titre", default=None, help="Titre de la carte (défaut : indicateur et territoire).")
@click.option("--format", "fmt", default="png", help="png (300 dpi), pdf ou svg.")
@click.option("--orientation", default="paysage", help="A4 paysage ou portrait.")
@click.option("--out", type=_path(), default=None, show_default=False,
              help="Fichier de sortie (défaut : nommé d'après le territoire et la date).")
@force_option
@db_option
def export_map(vue: str | None, departement: str | None, epci: str | None, commune: str | None, level: str | None,
               indicateur: str | None, methode: str | None, classes: int | None, rayon: float | None,
               fond: str | None, titre: str | None, fmt: str, orientation: str, out: Path | None, force: bool,
               db: Path | None) -> None:
    """Carte de la vue pour un rapport : A4, titre, légende, sources et millésimes, échelle, flèche du nord."""
    from essmap.render.snapshot import A4_PIXELS, SNAPSHOT_FORMATS, render_snapshot
    from essmap.render.tables import checked_output_path, export_file_name

    with _user_errors():
        if fmt not in SNAPSHOT_FORMATS:
            raise EssmapError(f"Format « {fmt} » inconnu. Formats possibles : {', '.join(SNAPSHOT_FORMATS)}.")
        if orientation not in A4_PIXELS:
            raise EssmapError(f"Orientation « {orientation} » inconnue : paysage ou portrait.")
        view = _export_view(vue, departement=departement, epci=epci, commune=commune, level=level,
                            indicateur=indicateur, methode=methode, classes=classes, rayon=rayon, fond=fond)
        data, sources, _tables = _view_data_from_store(db, view)
        content = render_snapshot(data, sources=sources, fmt=fmt, title=titre,  # type: ignore[arg-type]
                                  orientation=orientation)  # type: ignore[arg-type]
        target = checked_output_path(out or Path(export_file_name("carte", data.territory_label, fmt)),
                                     force=force, protect=_settings(db).db_path)
        target.write_bytes(content)
    _synthetic_note(data.synthetic)
    err_console.print(f"Écrit : {target}", highlight=False)


@export_app.command("table")
@click.option("--couche", default="indicateurs", help="indicateurs, qpv_tiers_lieux, qpv_etablissements, "
              "etablissements_ess ou tiers_lieux.")
@vue_option
@departement_option
@epci_option
@commune_option
@level_option
@rayon_option
@format_option
@separator_option
@click.option("--crs", default="4326", help="GeoPackage : 4326 (WGS84, défaut) ou metrique (Lambert-93 en "
              "métropole).")
@out_option
@force_option
@db_option
def export_table(couche: str, vue: str | None, departement: str | None, epci: str | None, commune: str | None,
                 level: str | None, rayon: float | None, fmt: str, separateur: str, crs: str, out: str | None,
                 force: bool, db: Path | None) -> None:
    """Un tableau de la vue, comme l'onglet Exports du tableau de bord : CSV, XLSX, GeoJSON ou GeoPackage."""
    with _user_errors():
        if crs not in ("4326", "metrique"):
            raise EssmapError(f"CRS « {crs} » non pris en charge : 4326 ou metrique.")
        view = _export_view(vue, departement=departement, epci=epci, commune=commune, level=level,
                            indicateur=None, methode=None, classes=None, rayon=rayon)
        data, _sources, exported = _view_data_from_store(db, view, tables=True)
        tables = {stem: frame for stem, frame in exported.values()}
        stems = {("indicateurs" if stem.startswith("indicateurs_") else stem): stem for stem in tables}
        if couche not in stems:
            raise EssmapError(f"Couche « {couche} » inconnue. Couches possibles : {', '.join(stems)}.")
        _synthetic_note(data.synthetic)
        stem = stems[couche]
        _write_query_result(tables[stem], stem, data.territory_label, fmt, out, separateur,
                            crs=4326 if crs == "4326" else crs, force=force, db=_settings(db).db_path)


@export_app.command("portrait")
@click.option("--level", default="commune", help="commune, epci, departement ou qpv.")
@click.option("--departement", default=None, help="Un portrait par territoire de ce département, ex. 13.")
@click.option("--code", default=None, help="Un seul territoire : code INSEE, SIREN d'EPCI, code de département ou "
              "de QPV.")
@click.option("--rayon", type=RADIUS, default=1000.0, help="Rayon QPV – tiers-lieux en mètres.")
@click.option("--out", type=_path(file_okay=False), default=Path("."), help="Dossier des PDF (créé au besoin).")
@force_option
@db_option
def export_portrait(level: str, departement: str | None, code: str | None, rayon: float, out: Path, force: bool,
                    db: Path | None) -> None:
    """Portrait de territoire (PDF de 4 pages) : un territoire (--code) ou tous ceux d'un département."""
    from essmap import store
    from essmap.render.portrait import resolve_scope, write_portraits

    settings = _settings(db)
    with _user_errors():
        con = store.connect(settings.db_path)
        try:
            scope = resolve_scope(con, level, departement=departement, code=code)
            sources = store.sources(con)
            err_console.print(f"{len(scope.codes)} portrait(s) à produire dans {out}", highlight=False)
            with _progress_bar(total=float(len(scope.codes))) as progress:
                paths = write_portraits(con, scope, out, sources=sources, radius_m=rayon, progress=progress,
                                        force=force)
        finally:
            con.close()
    for path in paths:
        console.print(str(path), highlight=False, soft_wrap=True)


@app.command()
@db_option
@click.option("--quarantaine", is_flag=True, help="Lister les lignes en quarantaine (les premières : voir --limite).")
@click.option("--limite", type=click.IntRange(min=0), default=1000, help="Lignes en quarantaine affichées au plus "
              "avec --quarantaine.")
@click.option("--quarantaine-csv", type=_path(dir_okay=False), default=None, help="Écrire toutes les lignes en "
              "quarantaine dans ce fichier CSV (lu par morceaux, quelle que soit sa taille).")
@force_option
def info(db: Path | None, quarantaine: bool, limite: int, quarantaine_csv: Path | None, force: bool) -> None:
    """Ce que contient la base : sources, millésimes, effectifs, quarantaine."""
    from essmap import store
    from essmap.io.text import printable

    settings = _settings(db)
    with _safe_errors():
        con = store.connect(settings.db_path)
        try:
            console.print(Text.assemble(("Base :", "bold"), f" {printable(settings.db_path)}"))
            counts = store.layer_counts(con)
            table = Table(title="Couches")
            for col in ("couche", "lignes", "dont simulées"):
                table.add_column(col, overflow="fold")
            for row in counts.itertuples():
                table.add_row(row.couche, _fmt(row.lignes), _fmt(row.dont_simulees))
            console.print(table)
            src = store.sources(con)
            table = Table(title="Sources chargées")
            for col in ("source", "fichier", "génération / millésime", "lues", "gardées", "quarantaine", "simulées",
                        "chargé le"):
                table.add_column(col, overflow="fold")
            for r in src.itertuples():
                table.add_row(_cell(r.source), _cell(r.file_name), _cell(r.generation or ""), _fmt(r.rows_read),
                              _fmt(r.rows_kept), _fmt(r.rows_quarantined), "oui" if r.is_synthetic else "non",
                              r.loaded_at.strftime("%d/%m/%Y %H:%M"))
            console.print(table)
            summary = store.quarantine_summary(con)
            if summary.empty:
                console.print("Quarantaine : aucune ligne rejetée.")
            else:
                table = Table(title="Quarantaine (lignes rejetées, par motif)")
                for col in ("source", "fichier", "motif", "lignes"):
                    table.add_column(col, overflow="fold")
                for r in summary.itertuples():
                    table.add_row(_cell(r.source), _cell(r.file_name), _cell(r.reason), _fmt(r.lignes))
                console.print(table)
            _print_concordance(con)
            if quarantaine:
                _print_quarantine(con, limite)
            if quarantaine_csv is not None:
                _write_quarantine_csv(con, quarantaine_csv, force=force, db=settings.db_path)
        finally:
            con.close()


def _print_concordance(con) -> None:
    """Agreement of essmap's QPV with INSEE's, per département, and the disagreements nearest to
    nothing first (printed only when an INSEE geolocation file was loaded)."""
    from essmap.io.text import printable
    from essmap.store.concordance import concordance_by_departement, concordance_disagreements

    summary = concordance_by_departement(con)
    if summary.empty:
        return
    from essmap.domain.formatting import format_number, format_percent

    table = Table(title="Concordance avec le QPV attribué par l'INSEE (fichier de géolocalisation)")
    for col in ("génération", "département", "comparés", "concordants", "désaccords", "taux"):
        table.add_column(col, overflow="fold")
    for r in summary.itertuples(index=False):
        table.add_row(r.generation, r.code_departement, _fmt(r.comparés), _fmt(r.concordants), _fmt(r.discordants),
                      format_percent(r.taux))
    console.print(table)
    total = int(summary["discordants"].sum())
    if total == 0:
        return
    shown = concordance_disagreements(con, limit=20)
    table = Table(title=f"Désaccords ({_fmt(total)} ; table « concordance » de la base)")
    for col in ("génération", "SIRET", "QPV essmap", "QPV INSEE", "distance à la limite", "qualité INSEE"):
        table.add_column(col, overflow="fold")
    import pandas as pd

    def shown_or(value: object, default: str) -> Text:
        return _cell(default if pd.isna(value) else value)

    for r in shown.itertuples(index=False):
        distance = "–" if pd.isna(r.distance_limite_m) else format_number(r.distance_limite_m, 1, unit="m")
        table.add_row(r.generation, r.siret, shown_or(r.code_qp_essmap, "hors QPV"),
                      shown_or(r.code_qp_insee, "hors QPV"), distance, shown_or(r.qualite_xy, ""))
    console.print(table)
    if total > len(shown):
        console.print(f"… et {_fmt(total - len(shown))} autre(s) : {printable('SELECT * FROM concordance')} dans la "
                      "base.", markup=False, highlight=False)


def _print_quarantine(con, limit: int) -> None:
    """The first ``limit`` quarantined rows, and how many more there are (bounded memory)."""
    from essmap import store
    from essmap.io.text import printable

    total = store.quarantine_count(con)
    shown = 0
    for batch in store.quarantine_batches(con, limit=limit, batch_rows=1000):
        text = batch.map(lambda v: printable(v, limit=120) if isinstance(v, str) else v)
        console.print(text.to_string(index=False, header=shown == 0), markup=False, highlight=False,
                      soft_wrap=True)
        shown += len(batch)
    if total > shown:
        console.print(f"… et {_fmt(total - shown)} autre(s) ligne(s) en quarantaine (sur {_fmt(total)}). Pour les "
                      "avoir toutes : --quarantaine-csv FICHIER.csv, ou --limite N.", markup=False, highlight=False)


def _write_quarantine_csv(con, path: Path, *, force: bool, db: Path) -> None:
    """Every quarantined row into a CSV file (UTF-8 with BOM, for spreadsheets), in bounded memory.

    DuckDB writes the rows (:func:`essmap.store.copy_quarantine_csv`) next to the target; the BOM
    and those rows go under a temporary name, renamed at the end (no partial file left).
    """
    import shutil
    import tempfile

    from essmap import store
    from essmap.io.text import printable
    from essmap.render.tables import checked_output_path

    target = checked_output_path(Path(path), force=force, protect=db)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".essmap-quarantaine-") as folder:
        rows = Path(folder) / "rows.csv"
        written = store.copy_quarantine_csv(con, rows, spill=Path(folder))
        partial = Path(folder) / target.name
        with open(partial, "wb") as out, open(rows, "rb") as src:
            out.write("\ufeff".encode())
            shutil.copyfileobj(src, out, 4 << 20)
        os.replace(partial, target)
    err_console.print(f"Écrit : {printable(target)} ({_fmt(written)} ligne(s) en quarantaine)", markup=False,
                      highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
