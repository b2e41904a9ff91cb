"""Reader of the INSEE SIRENE stock files: ESS establishments with their positions.

The national stocks (``StockUniteLegale``, ``StockEtablissement``, and optionally INSEE's
``GeolocalisationEtablissement_Sirene_pour_etudes_statistiques``) are several GB each. They are
never loaded into pandas: DuckDB scans them with a memory limit (spilling to a temporary
folder), keeps the legal units flagged ESS (``economieSocialeSolidaireUniteLegale = 'O'``) and
their active establishments, and only that result (about 1.5 million rows nationally) is checked
and projected in pandas, a part at a time in file order (``part_rows``); a caller that writes
each part as it comes (``parts``) never holds the whole result.

Stages: headers are checked on a sample (missing column, empty file: refused at once); one
streaming pass per file computes its SHA-256 and checks that it is entirely UTF-8 (a
Windows-1252 file is copied to UTF-8 in the temporary folder, with a warning); then the DuckDB
scans.

Line numbers (header = line 1) are counted by DuckDB while scanning: ``row_number() OVER ()``
runs as a single-threaded streaming pipeline that follows the file order, and the lines DuckDB
rejects as malformed (quarantined) are put back into the count. They are exact for files without
blank lines and without quoted values spanning several lines, which is the case of INSEE's
files. For Parquet files the "line" is the row index + 2, so a Parquet file and its CSV version
report the same numbers.

Modules, in the order of a read: ``layouts`` (published and required columns), ``files`` (checks,
hash and encoding pass, quarantines), ``sql`` (quoting), ``scan`` (DuckDB scans), ``rows`` (row
checks and positions), ``output`` (canonical frame). Callers import from this package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import pandas as pd

from essmap.domain.formatting import format_number
from essmap.io.readers.common import SourceMeta, SourceRead, checked_departements
from essmap.io.readers.sirene.files import (
    SYNTHETIC_MANIFEST,
    Quarantines,
    as_paths,
    combined_sha256,
    detect_synthetic,
    inspect_file,
    inspect_geolocalisation,
    prepare_file,
)
from essmap.io.readers.sirene.layouts import (
    ETABLISSEMENT_COLUMNS,
    ETABLISSEMENT_REQUIRED,
    ETABLISSEMENT_SHAPES,
    GEOLOCALISATION_COLUMNS,
    GEOLOCALISATION_SHAPES,
    LAMBERT,
    SOURCE,
    UNITE_LEGALE_COLUMNS,
    UNITE_LEGALE_REQUIRED,
    UNITE_LEGALE_SHAPES,
)
from essmap.io.readers.sirene.output import canonical_etablissements, generation_of
from essmap.io.readers.sirene.rows import (
    NOT_DIFFUSED,
    POSITION_GEOLOC,
    POSITION_STOCK,
    REASON_NO_COORDINATES,
    REASON_SWAPPED,
    FirstOccurrences,
    UnexpectedQpv,
    check_rows,
    place_rows,
)
from essmap.io.readers.sirene.scan import (
    DUCKDB_MEMORY_LIMIT,
    DUCKDB_THREADS,
    MAX_MALFORMED_LINES,
    ScannedFiles,
    Scanner,
    connect_for_scans,
    fetch_parts,
    load_unites_legales,
    repeated_geolocalisation_rows,
    repeated_sirets,
    scan_etablissements,
    scan_geolocalisation,
)
from essmap.io.scratch import scratch_folder

#: Rows checked and placed at once: about 150 MB of pandas for a part of the national stock.
PART_ROWS = 200_000

__all__ = [
    "DUCKDB_MEMORY_LIMIT",
    "DUCKDB_THREADS",
    "ETABLISSEMENT_COLUMNS",
    "ETABLISSEMENT_REQUIRED",
    "GEOLOCALISATION_COLUMNS",
    "MAX_MALFORMED_LINES",
    "NOT_DIFFUSED",
    "PART_ROWS",
    "POSITION_GEOLOC",
    "POSITION_STOCK",
    "REASON_NO_COORDINATES",
    "REASON_SWAPPED",
    "SOURCE",
    "SYNTHETIC_MANIFEST",
    "UNITE_LEGALE_COLUMNS",
    "UNITE_LEGALE_REQUIRED",
    "read_sirene",
]


def read_sirene(
    unites_legales: Path | Sequence[Path],
    etablissements: Path | Sequence[Path],
    *,
    geolocalisation: Path | Sequence[Path] | None = None,
    departements: Sequence[str] | None = None,
    is_synthetic: bool | None = None,
    progress: Callable[[str, float], None] | None = None,
    parts: Callable[[gpd.GeoDataFrame], None] | None = None,
    part_rows: int = PART_ROWS,
) -> SourceRead:
    """Read the ESS active establishments of SIRENE stock files, with WGS84 positions.

    ``unites_legales`` / ``etablissements``: ``StockUniteLegale`` / ``StockEtablissement`` files
    (CSV as published, or Parquet), one or several (parts of a stock). ``geolocalisation``:
    INSEE's geolocation file, whose positions win over the stock's Lambert coordinates.
    ``departements`` restricts the read ("13", "2A", "974"). ``is_synthetic`` None means: look
    for the generator's manifest next to the establishment files. ``progress(label, fraction)``
    is called after each stage.

    The rows are checked and placed ``part_rows`` at a time, in file order (the result does not
    depend on it). With ``parts``, each part of the output is handed to ``parts`` as soon as it is
    ready and not kept: the returned frame has the output's columns and no row (``meta`` counts
    them all), and the process never holds the whole national read in pandas.

    Whole-file problems raise :class:`InputFileError` before any heavy scan; bad rows go to the
    quarantine with their file line. ``meta.rows_read`` counts the ESS active establishments
    found plus the malformed lines, so that ``rows_read = rows_kept + rows_quarantined``.
    """
    report = progress or (lambda label, fraction: None)
    ul_paths = as_paths(unites_legales)
    etab_paths = as_paths(etablissements)
    geo_paths = as_paths(geolocalisation)
    if not ul_paths or not etab_paths:
        raise ValueError("Indiquez au moins un fichier d'unités légales et un fichier d'établissements SIRENE.")
    deps = _checked_departements(departements)
    warnings: list[str] = []

    report("Vérification des fichiers", 0.0)
    ul_inputs = [inspect_file(p, UNITE_LEGALE_REQUIRED, ",", warnings, shapes=UNITE_LEGALE_SHAPES) for p in ul_paths]
    etab_required = ETABLISSEMENT_REQUIRED + (() if geo_paths else LAMBERT)
    etab_inputs = [inspect_file(p, etab_required, ",", warnings, shapes=ETABLISSEMENT_SHAPES) for p in etab_paths]
    geo_inputs = [inspect_geolocalisation(p, warnings, shapes=GEOLOCALISATION_SHAPES) for p in geo_paths]
    synthetic = detect_synthetic(etab_paths) if is_synthetic is None else bool(is_synthetic)
    report("Fichiers vérifiés", 0.05)

    quarantines = Quarantines()
    all_inputs = [*ul_inputs, *etab_inputs, *geo_inputs]
    kept_parts: list[gpd.GeoDataFrame] = []
    take = parts or kept_parts.append
    empty: gpd.GeoDataFrame | None = None  # the columns of the output, without rows
    rows_found, rows_kept, generation = 0, 0, ""
    with scratch_folder("sirene") as spill:
        for inp in all_inputs:
            prepare_file(inp, spill, warnings)
        report("Encodage vérifié, empreintes calculées", 0.15)
        con = connect_for_scans(str(spill))
        try:
            scanner = Scanner(con, quarantines, warnings)
            load_unites_legales(scanner, ul_inputs)
            report("Unités légales de l'ESS lues", 0.3)
            scanned = ScannedFiles(etab_inputs, scan_etablissements(scanner, etab_inputs, deps))
            report("Établissements actifs de l'ESS lus", 0.7)
            if geo_inputs:
                scanned = replace(scanned, geolocalisation=geo_inputs,
                                  geolocalisation_rejected=scan_geolocalisation(scanner, geo_inputs))
                repeated = repeated_geolocalisation_rows(con)
                if repeated:
                    warnings.append(f"Géolocalisation : {repeated} SIRET présents plusieurs fois ; "
                                    "seule la première ligne de chacun a été utilisée.")
                report("Géolocalisation lue", 0.8)
            first = FirstOccurrences(repeated_sirets(con))
            unexpected = UnexpectedQpv()
            # one part at a time in pandas: checked, placed, handed over, let go
            for frame, geo in fetch_parts(con, scanned, part_rows):
                rows_found += len(frame)
                generation = max(generation, generation_of(frame))
                kept = place_rows(check_rows(frame, quarantines, first), geo, quarantines, warnings, unexpected)
                del frame, geo
                out = canonical_etablissements(kept, synthetic)
                del kept
                rows_kept += len(out)
                if empty is None:
                    empty = out.iloc[:0]
                take(out)
                del out
                report(f"Contrôles et positions : {format_number(rows_found)} établissements", 0.85)
            warnings.extend(unexpected.warnings())
        finally:
            con.close()
    report("Contrôles et positions terminés", 0.9)
    assert empty is not None  # fetch_parts gives at least one part
    result = empty if parts is not None else (
        pd.concat(kept_parts, ignore_index=True) if len(kept_parts) > 1 else kept_parts[0])

    meta = SourceMeta(
        source=SOURCE,
        file_name=" + ".join(inp.name for inp in all_inputs),
        sha256=combined_sha256(all_inputs),
        generation=generation,
        rows_read=rows_found + scanner.malformed,
        rows_kept=rows_kept,
        rows_quarantined=len(quarantines),
        is_synthetic=synthetic,
        warnings=warnings,
    )
    report("Lecture SIRENE terminée", 1.0)
    return SourceRead(frame=result, quarantine=quarantines.frame(), meta=meta)


def _checked_departements(departements: Sequence[str] | None) -> list[str] | None:
    if departements is None:
        return None
    if isinstance(departements, str):
        departements = [departements]
    return checked_departements(departements)
