"""Reader of the INSEE SIRENE stock files: ESS establishments with their positions.

The national stocks (``StockUniteLegale``, ``StockEtablissement``, and optionally INSEE's
``GeolocalisationEtablissement_Sirene_pour_etudes_statistiques``) are several GB each. They are
never loaded into pandas: DuckDB scans them with a memory limit, keeps the legal units flagged
ESS (``economieSocialeSolidaireUniteLegale = 'O'``) and their active establishments, and only
that result (about 1.5 million rows nationally) is checked and projected in pandas.

Line numbers (header = line 1) are counted by DuckDB while scanning: CSV files are read by one
thread so that ``row_number() OVER ()`` follows the file order, and lines DuckDB rejects as
malformed are put back into the count. They are exact for files without blank lines and without
quoted values spanning several lines, which is the case of INSEE's files. For Parquet files the
"line" is the row index + 2, so a Parquet file and its CSV version report the same numbers.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Transformer
from pyproj.exceptions import CRSError

from essmap import schema
from essmap.errors import InputFileError
from essmap.nomenclature import family_of_legal_category, sector_of_naf
from essmap.readers._common import (
    Quarantine,
    SourceMeta,
    SourceRead,
    canonical_frame,
    check_required_columns,
    clean_text,
    decode_bytes,
    empty_quarantine,
    points_from_lonlat,
    sha256_of,
    siret_problems,
    sniff_delimiter,
    to_float,
)
from essmap.territories import (
    TERRITORIES,
    departements_of_communes,
    epsg_of_territory_codes,
    is_valid_commune_code,
    normalise_departement,
    territory_codes_of_departements,
    territory_of_departement,
)

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

#: Columns of INSEE's geolocation file (``;``-separated).
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

_LAMBERT = ("coordonneeLambertAbscisseEtablissement", "coordonneeLambertOrdonneeEtablissement")

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
    *_LAMBERT,
)

_GEO_WGS84 = ("x_longitude", "y_latitude")
_GEO_PROJECTED = ("x", "y", "epsg")

#: Identifier columns padded back to their width when a Parquet file stores them as integers.
_CODE_WIDTH = {
    "siren": 9,
    "siret": 14,
    "categorieJuridiqueUniteLegale": 4,
    "codeCommuneEtablissement": 5,
    "codePostalEtablissement": 5,
}

#: DuckDB limits: the scans spill to a temporary folder beyond this memory.
DUCKDB_MEMORY_LIMIT = "2GB"
DUCKDB_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Malformed lines kept per file; beyond, the file is refused rather than half read.
MAX_MALFORMED_LINES = 10_000
#: Bytes read to check the header, the delimiter and the encoding.
_SAMPLE_BYTES = 4 << 20

#: Name of the manifest the synthetic generator writes next to its files.
SYNTHETIC_MANIFEST = "essmap-synthetic.json"

NOT_DIFFUSED = "[ND]"
POSITION_STOCK = "stock_lambert"
POSITION_GEOLOC = "geolocalisation"
REASON_NO_COORDINATES = "coordonnées absentes : établissement non géolocalisé"
REASON_SWAPPED = "latitude et longitude inversées"

_REJECT_REASONS = {
    "CAST": "valeur illisible",
    "MISSING COLUMNS": "colonnes manquantes",
    "TOO MANY COLUMNS": "trop de colonnes",
    "UNQUOTED VALUE": "guillemets mal fermés",
    "LINE SIZE OVER MAXIMUM": "ligne trop longue",
    "INVALID ENCODING": "caractère non UTF-8",
    "INVALID STATE": "ligne illisible",
}


# --- Files ---------------------------------------------------------------------------------------


@dataclass
class _Input:
    """One checked input file and how DuckDB must read it."""

    path: Path
    parquet: bool
    columns: list[str]
    types: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    encoding: str = "utf-8"

    @property
    def name(self) -> str:
        return self.path.name


def _as_paths(value: Path | str | Sequence[Path | str] | None) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".parq")


def _inspect(path: Path, required: Sequence[str], expected_delimiter: str, warnings: list[str]) -> _Input:
    """Check a file cheaply (header, encoding, delimiter, emptiness) before any scan."""
    name = path.name
    if not path.is_file():
        raise InputFileError(name, "fichier introuvable.", hint=f"vérifiez le chemin « {path} ».")
    if path.suffix.lower() == ".zip":
        raise InputFileError(
            name, "archive ZIP non décompressée.",
            hint="décompressez l'archive publiée par l'INSEE et indiquez le fichier CSV ou Parquet qu'elle contient.",
        )
    if path.stat().st_size == 0:
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    if _is_parquet(path):
        return _inspect_parquet(path, required)
    return _inspect_csv(path, required, expected_delimiter, warnings)


def _inspect_parquet(path: Path, required: Sequence[str]) -> _Input:
    name = path.name
    con = duckdb.connect()
    try:
        described = con.sql(f"DESCRIBE SELECT * FROM read_parquet({_sql_str(path)})").fetchall()
        count = con.sql(f"SELECT count(*) FROM read_parquet({_sql_str(path)})").fetchone()[0]
    except duckdb.Error as exc:
        raise InputFileError(
            name, f"ce n'est pas un fichier Parquet lisible ({_first_line(exc)}).",
            hint="vérifiez le téléchargement, ou fournissez la version CSV publiée par l'INSEE.",
        ) from exc
    finally:
        con.close()
    columns = [str(row[0]) for row in described]
    check_required_columns(columns, required, name)
    if count == 0:
        raise InputFileError(
            name, "le fichier ne contient aucune ligne de données.",
            hint="vérifiez le filtre ou l'export qui a produit ce fichier.",
        )
    return _Input(path, True, columns, types={str(r[0]): str(r[1]) for r in described})


def _read_sample(path: Path) -> tuple[bytes, bool]:
    """First bytes of the file (decompressed for .gz) and whether they are the whole file."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as fh:
        sample = fh.read(_SAMPLE_BYTES + 1)
    complete = len(sample) <= _SAMPLE_BYTES
    if not complete:
        # Cut at a line end so that a multi-byte character is never split.
        sample = sample[: sample.rfind(b"\n") + 1] or sample[:_SAMPLE_BYTES]
    return sample, complete


def _inspect_csv(path: Path, required: Sequence[str], expected_delimiter: str, warnings: list[str]) -> _Input:
    name = path.name
    try:
        sample, complete = _read_sample(path)
    except (OSError, EOFError) as exc:
        raise InputFileError(name, f"le fichier ne peut pas être lu ({exc}).", hint="vérifiez le téléchargement.") from exc
    if not sample.strip():
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    decoded = decode_bytes(sample, name)
    warnings.extend(decoded.warnings)
    encoding = "utf-8" if decoded.encoding == "utf-8" else "latin-1"
    text = decoded.text.lstrip("\ufeff")
    lines = text.splitlines()
    header = lines[0]
    delimiter = sniff_delimiter(header)
    if delimiter != expected_delimiter:
        warnings.append(
            f"Fichier « {name} » : séparateur « {delimiter} » détecté au lieu de "
            f"« {expected_delimiter} » (format INSEE) ; le fichier a été lu avec « {delimiter} »."
        )
    columns = [c.strip().strip("\ufeff") for c in next(csv.reader([header], delimiter=delimiter))]
    check_required_columns(columns, required, name)
    if complete and not any(line.strip() for line in lines[1:]):
        raise InputFileError(
            name, "le fichier ne contient que la ligne d'en-tête, aucune ligne de données.",
            row=2, hint="vérifiez le filtre ou l'export qui a produit ce fichier.",
        )
    return _Input(path, False, columns, delimiter=delimiter, encoding=encoding)


def _detect_synthetic(etablissements: Sequence[Path]) -> bool:
    """True when the generator's manifest, next to an establishment file, lists that file."""
    for path in etablissements:
        manifest = path.parent / SYNTHETIC_MANIFEST
        if not manifest.is_file():
            continue
        try:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
        except (ValueError, OSError, AttributeError):
            continue
        if isinstance(files, list) and path.name in {Path(str(f)).name for f in files}:
            return True
    return False


def _combined_sha256(paths: Sequence[Path]) -> str:
    """SHA-256 of the file, or for several files the SHA-256 of their ordered digests."""
    digests = [sha256_of(p) for p in paths]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()


# --- SQL -----------------------------------------------------------------------------------------


def _sql_str(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _column_expr(inp: _Input, column: str) -> str:
    """The column as trimmed VARCHAR (NULL when the file lacks it), padded if stored as a number."""
    if column not in inp.columns:
        return f"CAST(NULL AS VARCHAR) AS {_ident(column)}"
    expr = f"trim(CAST({_ident(column)} AS VARCHAR))"
    sql_type = inp.types.get(column, "VARCHAR").upper()
    if column in _CODE_WIDTH and any(t in sql_type for t in ("INT", "DECIMAL", "DOUBLE", "FLOAT")):
        expr = f"lpad(CAST(CAST({_ident(column)} AS BIGINT) AS VARCHAR), {_CODE_WIDTH[column]}, '0')"
    return f"nullif({expr}, '') AS {_ident(column)}"


def _source_sql(inp: _Input, rejects: str) -> str:
    """``read_csv``/``read_parquet`` of one file, every column as text (CSV) or as stored."""
    if inp.parquet:
        return f"read_parquet({_sql_str(inp.path)}, file_row_number = true)"
    columns = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in inp.columns) + "}"
    return (
        f"read_csv({_sql_str(inp.path)}, header = true, auto_detect = false, columns = {columns}, "
        f"delim = {_sql_str(inp.delimiter)}, quote = '\"', escape = '\"', "
        f"encoding = {_sql_str(inp.encoding)}, store_rejects = true, "
        f"rejects_table = {_sql_str(rejects + '_errors')}, rejects_scan = {_sql_str(rejects + '_scans')}, "
        f"rejects_limit = {MAX_MALFORMED_LINES})"
    )


def _scan_sql(inp: _Input, columns: Sequence[str], rejects: str, *, numbered: bool) -> str:
    """SELECT of the wanted columns of one file, with ``_k`` (1-based data row) if ``numbered``."""
    select = ", ".join(_column_expr(inp, c) for c in columns)
    source = _source_sql(inp, rejects)
    if not numbered:
        return f"SELECT {select} FROM {source}"
    if inp.parquet:
        return f"SELECT file_row_number + 1 AS _k, {select} FROM {source}"
    return f"SELECT row_number() OVER () AS _k, {select} FROM {source}"


_DEPARTEMENT_SQL = (
    "CASE WHEN regexp_full_match(codeCommuneEtablissement, '[0-9]{4}') THEN '0' || substr(codeCommuneEtablissement, 1, 1) "
    "WHEN starts_with(upper(codeCommuneEtablissement), '97') THEN substr(codeCommuneEtablissement, 1, 3) "
    "ELSE upper(substr(codeCommuneEtablissement, 1, 2)) END"
)


class _Scanner:
    """Runs the DuckDB scans of one read, collecting malformed lines into the quarantine."""

    def __init__(self, con: duckdb.DuckDBPyConnection, quarantines: _Quarantines, warnings: list[str]) -> None:
        self.con = con
        self.quarantines = quarantines
        self.warnings = warnings
        self._count = 0
        self.malformed = 0

    def run(self, inp: _Input, sql_of: Callable[[str], str]) -> np.ndarray:
        """Execute ``sql_of(rejects_name)`` for one file; returns its rejected line numbers.

        Each scan is one transaction: a CSV with a non-UTF-8 byte beyond the sampled start is
        rolled back and read again as Latin-1.
        """
        self._count += 1
        rejects = f"essmap_rejects_{self._count}"
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(sql_of(rejects))
            errors = None
            if not inp.parquet:
                errors = self.con.sql(
                    f"SELECT line, column_name, error_type, csv_line FROM {rejects}_errors ORDER BY line"
                ).df()
        except duckdb.Error as exc:
            self.con.execute("ROLLBACK")
            raise _duckdb_error(inp, exc) from exc
        if errors is None:
            self.con.execute("COMMIT")
            return np.zeros(0, dtype="int64")
        encoding_errors = errors[errors["error_type"] == "INVALID ENCODING"]
        if inp.encoding == "utf-8" and len(encoding_errors):
            self.con.execute("ROLLBACK")
            first = encoding_errors.iloc[0]
            self.warnings.append(
                f"Fichier « {inp.name} » : encodage non UTF-8 détecté (ligne {int(first['line'])}, "
                f"colonne « {first['column_name']} ») ; le fichier a été lu en Latin-1. "
                "Vérifiez les accents ou convertissez le fichier en UTF-8."
            )
            inp.encoding = "latin-1"
            return self.run(inp, sql_of)
        if len(errors) >= MAX_MALFORMED_LINES:
            self.con.execute("ROLLBACK")
            raise InputFileError(
                inp.name, f"au moins {MAX_MALFORMED_LINES} lignes mal formées (nombre de colonnes, guillemets).",
                row=int(errors["line"].iloc[0]),
                hint="vérifiez le séparateur et l'encodage, ou retéléchargez le fichier publié par l'INSEE.",
            )
        self.con.execute("COMMIT")
        errors = errors.drop_duplicates("line")
        if len(errors):
            reasons = errors["error_type"].map(lambda t: _REJECT_REASONS.get(str(t), str(t).lower()))
            columns = errors["column_name"].fillna("").astype(str)
            quarantine = self.quarantines.of(inp.name)
            for (reason, column), part in errors.groupby([reasons, columns], sort=False):
                quarantine.add(
                    part["line"].to_numpy(), column, part["csv_line"].to_numpy(),
                    f"ligne CSV mal formée ({reason}) : ligne ignorée, corrigez-la dans le fichier",
                )
            self.malformed += len(errors)
        return errors["line"].to_numpy(dtype="int64")


def _duckdb_error(inp: _Input, exc: duckdb.Error) -> InputFileError:
    text = str(exc)
    match = re.search(r"Line:?\s*(\d+)", text)
    return InputFileError(
        inp.name, f"le fichier ne peut pas être lu ({_first_line(exc)}).",
        row=int(match.group(1)) if match else None,
        hint="vérifiez que c'est bien un fichier SIRENE de l'INSEE (CSV séparé par des virgules, "
        "ou Parquet) et qu'il n'est pas tronqué.",
    )


def _physical_lines(k: pd.Series, rejected: np.ndarray) -> np.ndarray:
    """File line of the k-th accepted data row (1-based), given the rejected lines (sorted).

    Without rejects it is ``k + 1`` (header = line 1); each rejected line before a row shifts it.
    """
    k = k.to_numpy(dtype="int64")
    if len(rejected) == 0:
        return k + 1
    # accepted rows before the i-th rejected line: rejected[i] - 2 - i (non-decreasing)
    before = np.sort(rejected) - 2 - np.arange(len(rejected))
    return k + 1 + np.searchsorted(before, k, side="left")


class _Quarantines:
    """One :class:`Quarantine` per file, since a read spans several files."""

    def __init__(self) -> None:
        self._by_file: dict[str, Quarantine] = {}

    def of(self, file_name: str) -> Quarantine:
        if file_name not in self._by_file:
            self._by_file[file_name] = Quarantine(SOURCE, file_name)
        return self._by_file[file_name]

    def frame(self) -> pd.DataFrame:
        parts = [q.frame() for q in self._by_file.values() if len(q)]
        if not parts:
            return empty_quarantine()
        return pd.concat(parts, ignore_index=True)

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_file.values())


# --- Public API ----------------------------------------------------------------------------------


def read_sirene(
    unites_legales: Path | Sequence[Path],
    etablissements: Path | Sequence[Path],
    *,
    geolocalisation: Path | Sequence[Path] | None = None,
    departements: Sequence[str] | None = None,
    is_synthetic: bool | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> SourceRead:
    """Read the ESS active establishments of SIRENE stock files, with WGS84 positions.

    ``unites_legales`` / ``etablissements``: ``StockUniteLegale`` / ``StockEtablissement`` files
    (CSV as published, or Parquet), one or several (parts of a stock). ``geolocalisation``:
    INSEE's geolocation file, whose positions win over the stock's Lambert coordinates.
    ``departements`` restricts the read ("13", "2A", "974"). ``is_synthetic`` None means: look
    for the generator's manifest next to the establishment files. ``progress(label, fraction)``
    is called after each stage.

    Whole-file problems raise :class:`InputFileError` before any heavy scan; bad rows go to the
    quarantine with their file line. ``meta.rows_read`` counts the ESS active establishments
    found plus the malformed lines, so that ``rows_read = rows_kept + rows_quarantined``.
    """
    report = progress or (lambda label, fraction: None)
    ul_paths = _as_paths(unites_legales)
    etab_paths = _as_paths(etablissements)
    geo_paths = _as_paths(geolocalisation)
    if not ul_paths or not etab_paths:
        raise ValueError("Indiquez au moins un fichier d'unités légales et un fichier d'établissements SIRENE.")
    deps = _checked_departements(departements)
    warnings: list[str] = []

    report("Vérification des fichiers", 0.0)
    ul_inputs = [_inspect(p, UNITE_LEGALE_REQUIRED, ",", warnings) for p in ul_paths]
    etab_required = ETABLISSEMENT_REQUIRED + (() if geo_paths else _LAMBERT)
    etab_inputs = [_inspect(p, etab_required, ",", warnings) for p in etab_paths]
    geo_inputs = [_inspect_geolocalisation(p, warnings) for p in geo_paths]
    synthetic = _detect_synthetic(etab_paths) if is_synthetic is None else bool(is_synthetic)
    report("Fichiers vérifiés", 0.05)

    quarantines = _Quarantines()
    with tempfile.TemporaryDirectory(prefix="essmap-sirene-") as spill:
        con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                "threads": DUCKDB_THREADS,
                "temp_directory": spill,
                "preserve_insertion_order": True,
            },
        )
        try:
            scanner = _Scanner(con, quarantines, warnings)
            _load_unites_legales(scanner, ul_inputs)
            report("Unités légales de l'ESS lues", 0.25)
            frame = _load_etablissements(scanner, etab_inputs, deps)
            report("Établissements actifs de l'ESS lus", 0.7)
            geo = _load_geolocalisation(scanner, geo_inputs) if geo_inputs else None
            if geo_inputs:
                report("Géolocalisation lue", 0.8)
        finally:
            con.close()

    if any(inp.encoding == "latin-1" for inp in (*ul_inputs, *etab_inputs)):
        frame = _latin1_to_cp1252(frame)
    rows_found = len(frame)
    kept = _check_rows(frame, quarantines)
    kept = _place(kept, geo, quarantines, warnings)
    report("Contrôles et positions terminés", 0.9)
    out = _canonical(kept, synthetic)

    all_paths = ul_paths + etab_paths + geo_paths
    meta = SourceMeta(
        source=SOURCE,
        file_name=" + ".join(p.name for p in all_paths),
        sha256=_combined_sha256(all_paths),
        generation=_generation(frame),
        rows_read=rows_found + scanner.malformed,
        rows_kept=len(out),
        rows_quarantined=len(quarantines),
        is_synthetic=synthetic,
        warnings=warnings,
    )
    report("Lecture SIRENE terminée", 1.0)
    return SourceRead(frame=out, quarantine=quarantines.frame(), meta=meta)


def _checked_departements(departements: Sequence[str] | None) -> list[str] | None:
    if departements is None:
        return None
    if isinstance(departements, str):
        departements = [departements]
    codes = []
    for code in departements:
        norm = normalise_departement(code)
        try:
            territory_of_departement(norm)
        except KeyError:
            raise ValueError(
                f"Département inconnu : « {code} ». Indiquez un code INSEE (\"13\", \"2A\", \"974\")."
            ) from None
        codes.append(norm)
    return codes


def _inspect_geolocalisation(path: Path, warnings: list[str]) -> _Input:
    inp = _inspect(path, ("siret",), ";", warnings)
    has_wgs84 = all(c in inp.columns for c in _GEO_WGS84)
    has_projected = all(c in inp.columns for c in _GEO_PROJECTED)
    if not (has_wgs84 or has_projected):
        check_required_columns(inp.columns, _GEO_WGS84 + _GEO_PROJECTED, inp.name)
    return inp


# --- Scans ---------------------------------------------------------------------------------------


def _load_unites_legales(scanner: _Scanner, inputs: Sequence[_Input]) -> None:
    """Table ``ul``: the legal units flagged ESS (all columns the output needs)."""
    columns = ("siren", *UNITE_LEGALE_REQUIRED[2:], *_UNITE_LEGALE_OPTIONAL)
    scanner.con.execute(
        "CREATE TEMP TABLE ul (" + ", ".join(f"{_ident(c)} VARCHAR" for c in columns) + ")"
    )
    for inp in inputs:
        wanted = (*columns, "economieSocialeSolidaireUniteLegale")

        def sql(rejects: str, inp: _Input = inp, wanted: tuple[str, ...] = wanted) -> str:
            scan = _scan_sql(inp, wanted, rejects, numbered=False)
            names = ", ".join(_ident(c) for c in columns)
            return (
                f"INSERT INTO ul SELECT {names} FROM ({scan}) "
                "WHERE upper(economieSocialeSolidaireUniteLegale) = 'O' AND siren IS NOT NULL"
            )

        scanner.run(inp, sql)


_ETAB_SCAN_COLUMNS = ("siren", *ETABLISSEMENT_REQUIRED[1:], *_ETABLISSEMENT_OPTIONAL)


def _load_etablissements(scanner: _Scanner, inputs: Sequence[_Input], deps: list[str] | None) -> pd.DataFrame:
    """Active establishments of ESS legal units (joined to their unit), with file line numbers."""
    con = scanner.con
    names = [c for c in _ETAB_SCAN_COLUMNS if c != "etatAdministratifEtablissement"]
    con.execute(
        "CREATE TEMP TABLE etab (_file INTEGER, _k BIGINT, "
        + ", ".join(f"{_ident(c)} VARCHAR" for c in names) + ")"
    )
    dep_filter = ""
    if deps is not None:
        dep_filter = f" AND ({_DEPARTEMENT_SQL}) IN ({', '.join(_sql_str(d) for d in deps)})"
    rejected: dict[int, np.ndarray] = {}
    for index, inp in enumerate(inputs):

        def sql(rejects: str, inp: _Input = inp, index: int = index) -> str:
            scan = _scan_sql(inp, _ETAB_SCAN_COLUMNS, rejects, numbered=True)
            return (
                f"INSERT INTO etab SELECT {index}, _k, {', '.join(_ident(c) for c in names)} FROM ({scan}) "
                "WHERE upper(etatAdministratifEtablissement) = 'A' "
                f"AND siren IN (SELECT siren FROM ul){dep_filter}"
            )

        rejected[index] = scanner.run(inp, sql)

    ul_columns = [c for c in (*UNITE_LEGALE_REQUIRED[2:], *_UNITE_LEGALE_OPTIONAL)]
    frame = con.sql(
        "SELECT e.*, " + ", ".join(f"u.{_ident(c)}" for c in ul_columns)
        + " FROM etab e JOIN (SELECT DISTINCT ON (siren) * FROM ul) u USING (siren) ORDER BY e._file, e._k"
    ).df()
    frame = _as_strings(frame, exclude=("_file", "_k"))
    frame["_file_name"] = frame["_file"].map({i: inp.name for i, inp in enumerate(inputs)}).astype("string")
    frame["_line"] = np.zeros(len(frame), dtype="int64")
    for index, inp in enumerate(inputs):
        mask = (frame["_file"] == index).to_numpy()
        if inp.parquet:
            frame.loc[mask, "_line"] = frame.loc[mask, "_k"].to_numpy(dtype="int64") + 1
        else:
            frame.loc[mask, "_line"] = _physical_lines(frame.loc[mask, "_k"], rejected[index])
    return frame.reset_index(drop=True)


def _load_geolocalisation(scanner: _Scanner, inputs: Sequence[_Input]) -> pd.DataFrame:
    """Rows of the geolocation files for the establishments read, first occurrence per SIRET."""
    con = scanner.con
    columns = ("siret", *_GEO_PROJECTED, *_GEO_WGS84)
    con.execute(
        "CREATE TEMP TABLE geo (_file INTEGER, _k BIGINT, " + ", ".join(f"{_ident(c)} VARCHAR" for c in columns) + ")"
    )
    rejected: dict[int, np.ndarray] = {}
    for index, inp in enumerate(inputs):

        def sql(rejects: str, inp: _Input = inp, index: int = index) -> str:
            scan = _scan_sql(inp, columns, rejects, numbered=True)
            return (
                f"INSERT INTO geo SELECT {index}, _k, {', '.join(_ident(c) for c in columns)} FROM ({scan}) "
                "WHERE siret IN (SELECT siret FROM etab)"
            )

        rejected[index] = scanner.run(inp, sql)
    frame = _as_strings(con.sql("SELECT * FROM geo ORDER BY _file, _k").df(), exclude=("_file", "_k"))
    frame["_geo_file"] = frame["_file"].map({i: inp.name for i, inp in enumerate(inputs)}).astype("string")
    frame["_geo_line"] = np.zeros(len(frame), dtype="int64")
    for index, inp in enumerate(inputs):
        mask = (frame["_file"] == index).to_numpy()
        if inp.parquet:
            frame.loc[mask, "_geo_line"] = frame.loc[mask, "_k"].to_numpy(dtype="int64") + 1
        else:
            frame.loc[mask, "_geo_line"] = _physical_lines(frame.loc[mask, "_k"], rejected[index])
    return frame.drop(columns=["_file", "_k"])


def _as_strings(frame: pd.DataFrame, *, exclude: Sequence[str] = ()) -> pd.DataFrame:
    for col in frame.columns:
        if col not in exclude:
            frame[col] = frame[col].astype("string")
    return frame


_C1 = re.compile("[\u0080-\u009f]")


def _latin1_to_cp1252(part: pd.DataFrame) -> pd.DataFrame:
    """DuckDB reads Latin-1; French files are mostly Windows-1252 (’, œ, €): fix those bytes."""

    def fix(value: object) -> object:
        if isinstance(value, str) and _C1.search(value):
            return value.encode("latin-1").decode("cp1252", errors="replace")
        return value

    part = part.copy()
    for col in part.columns:
        if col.startswith("_"):
            continue
        part[col] = part[col].map(fix).astype("string")
    return part


# --- Row checks and positions --------------------------------------------------------------------


def _quarantine_rows(quarantines: _Quarantines, rows: pd.DataFrame, column: str, values: pd.Series, reason: str | pd.Series) -> None:
    """Send rows (of possibly several files) to the quarantine; ``reason`` may vary per row."""
    if rows.empty:
        return
    reasons = reason if isinstance(reason, pd.Series) else pd.Series(reason, index=rows.index)
    files = rows["_file_name"] if "_file_name" in rows else pd.Series("", index=rows.index)
    for (file_name, text), part in rows.groupby([files, reasons], sort=False):
        quarantines.of(str(file_name)).add(part["_line"].to_numpy(), column, values.loc[part.index].to_numpy(), str(text))


def _check_rows(frame: pd.DataFrame, quarantines: _Quarantines) -> pd.DataFrame:
    """Identity and place checks; each rejected row is quarantined once, for its first problem."""
    frame = frame.copy()
    frame["siret"] = frame["siret"].fillna("")
    frame["siren"] = frame["siren"].fillna("")

    problems = siret_problems(frame["siret"])
    mismatch = problems.isna() & (frame["siret"].str[:9] != frame["siren"])
    problems = problems.where(~mismatch, "SIRET invalide : ne commence pas par le SIREN " + frame["siren"])
    bad = problems.notna()
    _quarantine_rows(quarantines, frame[bad], "siret", frame["siret"], problems[bad])
    frame = frame[~bad]

    duplicated = frame.duplicated("siret", keep="first")
    if duplicated.any():
        first = frame[~duplicated].drop_duplicates("siret").set_index("siret")
        where = frame.loc[duplicated, "siret"].map(
            lambda s: f"fichier « {first.at[s, '_file_name']} », ligne {first.at[s, '_line']}"
        )
        reasons = "SIRET en double : seule la première occurrence (" + where + ") est conservée"
        _quarantine_rows(quarantines, frame[duplicated], "siret", frame["siret"], reasons)
        frame = frame[~duplicated]

    raw = frame["codeCommuneEtablissement"].fillna("").str.strip().str.upper()
    commune = raw.where(~raw.str.fullmatch(r"\d{4}"), raw.str.zfill(5))
    valid = commune.map(is_valid_commune_code).astype(bool)
    abroad = ~valid & frame["codePaysEtrangerEtablissement"].notna()
    _quarantine_rows(
        quarantines, frame[abroad], "codePaysEtrangerEtablissement", frame["codePaysEtrangerEtablissement"],
        "établissement situé à l'étranger : hors du champ de la carte",
    )
    invalid = ~valid & ~abroad
    _quarantine_rows(
        quarantines, frame[invalid], "codeCommuneEtablissement", frame["codeCommuneEtablissement"],
        "code commune invalide : 5 caractères attendus (chiffres, ou 2A/2B suivis de 3 chiffres)",
    )
    frame = frame[valid].copy()
    frame["code_commune"] = commune[valid]
    frame["code_departement"] = departements_of_communes(frame["code_commune"])
    frame["territoire"] = territory_codes_of_departements(frame["code_departement"]).astype("string")
    uncovered = frame["territoire"] == ""
    _quarantine_rows(
        quarantines, frame[uncovered], "codeCommuneEtablissement", frame["codeCommuneEtablissement"],
        "territoire non couvert par essmap (collectivité d'outre-mer du Pacifique ou code inconnu)",
    )
    return frame[~uncovered]


_TRANSFORMERS: dict[int, Transformer | None] = {}


def _transformer(epsg: int) -> Transformer | None:
    if epsg not in _TRANSFORMERS:
        try:
            _TRANSFORMERS[epsg] = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
        except CRSError:
            _TRANSFORMERS[epsg] = None
    return _TRANSFORMERS[epsg]


def _to_lonlat(x: np.ndarray, y: np.ndarray, epsg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised projection to WGS84, one transformer per EPSG code (NaN when impossible)."""
    lon = np.full(len(x), np.nan)
    lat = np.full(len(x), np.nan)
    usable = np.isfinite(x) & np.isfinite(y) & (epsg > 0)
    for code in np.unique(epsg[usable]):
        transformer = _transformer(int(code))
        if transformer is None:
            continue
        rows = usable & (epsg == code)
        if code == 4326:
            lon[rows], lat[rows] = x[rows], y[rows]
        else:
            lon[rows], lat[rows] = transformer.transform(x[rows], y[rows], errcheck=False)
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    lon[bad] = np.nan
    lat[bad] = np.nan
    return lon, lat


def _inside(territories: pd.Series, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(lon), dtype=bool)
    codes = territories.to_numpy(dtype=object)
    for code, territory in TERRITORIES.items():
        rows = codes == code
        if rows.any():
            inside[rows] = territory.contains_lonlat(lon[rows], lat[rows])
    return inside


def _place(frame: pd.DataFrame, geo: pd.DataFrame | None, quarantines: _Quarantines, warnings: list[str]) -> pd.DataFrame:
    """Positions from the geolocation file when it has the SIRET, else from the stock's Lambert
    coordinates; rows without a position or outside their territory are quarantined."""
    frame = frame.copy()
    n = len(frame)
    frame["epsg_metrique"] = epsg_of_territory_codes(frame["territoire"]).to_numpy()
    sx = to_float(_not_nd(frame["coordonneeLambertAbscisseEtablissement"]))
    sy = to_float(_not_nd(frame["coordonneeLambertOrdonneeEtablissement"]))
    x = sx.to_numpy(copy=True)
    y = sy.to_numpy(copy=True)
    epsg = frame["epsg_metrique"].to_numpy(dtype="int64").copy()
    lon, lat = _to_lonlat(x, y, epsg)
    source = np.where(np.isfinite(x) & np.isfinite(y), POSITION_STOCK, "")
    frame["_geo_file"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["_geo_line"] = 0
    from_wgs84 = np.zeros(n, dtype=bool)

    if geo is not None and len(geo):
        dup = geo.duplicated("siret", keep="first")
        if dup.any():
            warnings.append(
                f"Géolocalisation : {int(dup.sum())} SIRET présents plusieurs fois ; "
                "seule la première ligne de chacun a été utilisée."
            )
        g = geo[~dup].set_index("siret").reindex(frame["siret"].to_numpy())
        glon = to_float(g["x_longitude"]).to_numpy()
        glat = to_float(g["y_latitude"]).to_numpy()
        gx = to_float(g["x"]).to_numpy()
        gy = to_float(g["y"]).to_numpy()
        gepsg = pd.to_numeric(g["epsg"], errors="coerce").fillna(0).to_numpy(dtype="int64")
        has_wgs84 = np.isfinite(glon) & np.isfinite(glat)
        has_projected = np.isfinite(gx) & np.isfinite(gy) & (gepsg > 0)
        plon, plat = _to_lonlat(gx, gy, gepsg)
        use = has_wgs84 | has_projected
        lon = np.where(has_wgs84, glon, np.where(use, plon, lon))
        lat = np.where(has_wgs84, glat, np.where(use, plat, lat))
        # x, y, epsg as published by the geolocation file (its WGS84 pair when x/y are missing)
        x = np.where(has_projected, gx, np.where(use, glon, x))
        y = np.where(has_projected, gy, np.where(use, glat, y))
        epsg = np.where(has_projected, gepsg, np.where(use, 4326, epsg))
        source = np.where(use, POSITION_GEOLOC, source)
        from_wgs84 = has_wgs84
        frame["_geo_file"] = frame["_geo_file"].where(~use, g["_geo_file"].to_numpy())
        frame["_geo_line"] = np.where(use, g["_geo_line"].fillna(0).to_numpy(dtype="int64"), 0)

    frame["x"], frame["y"], frame["epsg"] = x, y, epsg
    frame["longitude"], frame["latitude"] = lon, lat
    frame["source_position"] = pd.Series(source, index=frame.index, dtype="string")

    missing = source == ""
    raw = (
        "x=" + frame["coordonneeLambertAbscisseEtablissement"].fillna("")
        + " ; y=" + frame["coordonneeLambertOrdonneeEtablissement"].fillna("")
    )
    nd = frame["coordonneeLambertAbscisseEtablissement"].fillna("").eq(NOT_DIFFUSED).to_numpy()
    reasons = pd.Series(
        np.where(nd, REASON_NO_COORDINATES + " (coordonnées non diffusibles [ND])", REASON_NO_COORDINATES),
        index=frame.index,
    )
    _quarantine_rows(quarantines, frame[missing], _LAMBERT[0], raw, reasons[missing])

    placed = ~missing
    inside = _inside(frame["territoire"], lon, lat) & placed
    outside = placed & ~inside
    if outside.any():
        names = frame["territoire"].map(lambda t: TERRITORIES[t].name if t in TERRITORIES else t)
        # swapped axes: the point falls inside its territory once the two values are exchanged
        swapped_lonlat = _inside(frame["territoire"], lat, lon) & outside & from_wgs84
        sw_x, sw_y = _to_lonlat(y, x, epsg)
        swapped_xy = _inside(frame["territoire"], sw_x, sw_y) & outside & ~from_wgs84 & ~swapped_lonlat
        at = pd.Series(
            [f"{a:.6f}, {b:.6f}" if np.isfinite(a) else "incalculable" for a, b in zip(lon, lat)],
            index=frame.index,
        )
        reason = pd.Series(
            "coordonnées hors du territoire du département (" + names + ") : point calculé en lon/lat " + at,
            index=frame.index,
        )
        reason[swapped_lonlat] = REASON_SWAPPED + " (x_longitude et y_latitude échangées) : corrigez le fichier"
        reason[swapped_xy] = "abscisse et ordonnée inversées (x et y échangés) : corrigez le fichier"
        geo_rows = outside & (frame["source_position"] == POSITION_GEOLOC).to_numpy()
        stock_rows = outside & ~geo_rows
        _quarantine_rows(quarantines, frame[stock_rows], _LAMBERT[0], raw, reason[stock_rows])
        if geo_rows.any():
            rows = frame[geo_rows].assign(_file_name=frame.loc[geo_rows, "_geo_file"], _line=frame.loc[geo_rows, "_geo_line"])
            column = pd.Series(np.where(from_wgs84, "x_longitude", "x"), index=frame.index)
            values = pd.Series(
                np.where(from_wgs84, [f"x_longitude={a} ; y_latitude={b}" for a, b in zip(lon, lat)],
                         [f"x={a} ; y={b} ; epsg={c}" for a, b, c in zip(x, y, epsg)]),
                index=frame.index,
            )
            for col_name, part in rows.groupby(column[geo_rows], sort=False):
                _quarantine_rows(quarantines, part, str(col_name), values, reason[part.index])
    return frame[inside]


def _not_nd(values: pd.Series) -> pd.Series:
    return values.where(values.fillna("").str.strip() != NOT_DIFFUSED, pd.NA)


# --- Output --------------------------------------------------------------------------------------


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    return clean_text(_not_nd(frame[column]))


def _canonical(frame: pd.DataFrame, synthetic: bool) -> gpd.GeoDataFrame:
    """The canonical ``etablissements`` columns (schema.ETABLISSEMENTS) with point geometry."""
    out = pd.DataFrame(index=frame.index)
    out["siret"] = frame["siret"]
    out["siren"] = frame["siren"]
    person = _join_words(_text(frame, "prenomUsuelUniteLegale").fillna(_text(frame, "prenom1UniteLegale")),
                         _text(frame, "nomUsageUniteLegale").fillna(_text(frame, "nomUniteLegale")))
    out["denomination"] = (
        _text(frame, "denominationUniteLegale")
        .fillna(person)
        .fillna(_text(frame, "denominationUsuelleEtablissement"))
        .fillna(_text(frame, "enseigne1Etablissement"))
    )
    out["enseigne"] = _text(frame, "enseigne1Etablissement").fillna(_text(frame, "denominationUsuelleEtablissement"))
    out["categorie_juridique"] = frame["categorieJuridiqueUniteLegale"]
    out["famille"] = family_of_legal_category(frame["categorieJuridiqueUniteLegale"])
    out["activite_naf"] = frame["activitePrincipaleEtablissement"]
    out["nomenclature_naf"] = frame["nomenclatureActivitePrincipaleEtablissement"]
    out["secteur"] = sector_of_naf(frame["activitePrincipaleEtablissement"], frame["nomenclatureActivitePrincipaleEtablissement"])
    out["employeur"] = frame["caractereEmployeurEtablissement"].fillna("").str.upper().eq("O").astype(bool)
    out["tranche_effectifs"] = frame["trancheEffectifsEtablissement"]
    out["siege"] = frame["etablissementSiege"].fillna("").str.lower().isin(["true", "1", "o", "oui"]).astype(bool)
    out["date_creation"] = frame["dateCreationEtablissement"].str[:10]
    number = frame["numeroVoieEtablissement"].fillna("") + frame["indiceRepetitionEtablissement"].fillna("")
    out["adresse"] = _join_words(
        clean_text(_not_nd(number)), _text(frame, "typeVoieEtablissement"), _text(frame, "libelleVoieEtablissement")
    )
    out["code_postal"] = _not_nd(frame["codePostalEtablissement"])
    out["libelle_commune"] = _text(frame, "libelleCommuneEtablissement")
    out["code_commune"] = frame["code_commune"]
    out["code_departement"] = frame["code_departement"]
    for col in ("x", "y", "epsg", "source_position", "territoire", "epsg_metrique", "longitude", "latitude"):
        out[col] = frame[col]
    out["is_synthetic"] = synthetic
    geometry = points_from_lonlat(out["longitude"], out["latitude"])
    return canonical_frame(out, schema.ETABLISSEMENTS, geometry)


def _join_words(*parts: pd.Series) -> pd.Series:
    """Space-joined non-empty parts (vectorised); <NA> when all are empty."""
    joined = parts[0].astype("string").fillna("")
    for part in parts[1:]:
        joined = joined + " " + part.astype("string").fillna("")
    joined = joined.str.replace(r"\s+", " ", regex=True).str.strip()
    return joined.where(joined != "", pd.NA).astype("string")


def _generation(frame: pd.DataFrame) -> str:
    """Millésime: month (YYYY-MM) of the latest ``dateDernierTraitementEtablissement`` read."""
    dates = frame["dateDernierTraitementEtablissement"].dropna().str[:7]
    dates = dates[dates.str.fullmatch(r"\d{4}-\d{2}").fillna(False)]
    return str(dates.max()) if len(dates) else ""
