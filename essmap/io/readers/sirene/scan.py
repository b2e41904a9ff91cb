"""The DuckDB scans: ESS legal units, their active establishments, their geolocation rows; then the
rows, fetched part by part."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from essmap.domain.errors import InputFileError
from essmap.io.readers.sirene.files import InputFile, Quarantines
from essmap.io.readers.sirene.layouts import (
    CODE_WIDTH,
    ETABLISSEMENT_KEPT,
    GEOLOCALISATION_PROJECTED,
    GEOLOCALISATION_QPV,
    GEOLOCALISATION_QUALITY,
    GEOLOCALISATION_WGS84,
    UNITE_LEGALE_ATTRIBUTES,
)
from essmap.io.readers.sirene.sql import first_line, ident, sql_str
from essmap.io.text import printable

#: DuckDB limits: the scans spill to a temporary folder beyond this memory.
DUCKDB_MEMORY_LIMIT = "1GB"
DUCKDB_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Malformed lines kept per file; beyond, the file is refused rather than half read.
MAX_MALFORMED_LINES = 10_000

_REJECT_REASONS = {
    "CAST": "valeur illisible",
    "MISSING COLUMNS": "colonnes manquantes",
    "TOO MANY COLUMNS": "trop de colonnes",
    "UNQUOTED VALUE": "guillemets mal fermés",
    "LINE SIZE OVER MAXIMUM": "ligne trop longue",
    "INVALID ENCODING": "caractère non UTF-8",
    "INVALID STATE": "ligne illisible",
}


def connect_for_scans(spill: str) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB for one read: bounded memory and threads, spilling into ``spill``."""
    con = duckdb.connect(
        ":memory:",
        config={
            "memory_limit": DUCKDB_MEMORY_LIMIT,
            "threads": DUCKDB_THREADS,
            "temp_directory": spill,
            "preserve_insertion_order": True,
        },
    )
    con.execute("SET enable_progress_bar = false")  # no terminal bar in the CLI or the app
    return con


# --- SQL -----------------------------------------------------------------------------------------


def _value_sql(inp: InputFile, column: str) -> str:
    """The column as trimmed VARCHAR, NULL when blank or absent from the file.

    Identifiers that a Parquet file stores as integers get their leading zeros back.
    """
    if column not in inp.columns:
        return "CAST(NULL AS VARCHAR)"
    expr = f"trim(CAST({ident(column)} AS VARCHAR))"
    sql_type = inp.types.get(column, "VARCHAR").upper()
    if column in CODE_WIDTH and any(t in sql_type for t in ("INT", "DECIMAL", "DOUBLE", "FLOAT")):
        expr = f"lpad(CAST(CAST({ident(column)} AS BIGINT) AS VARCHAR), {CODE_WIDTH[column]}, '0')"
    return f"nullif({expr}, '')"


def _source_sql(inp: InputFile, rejects: str) -> str:
    """``read_csv``/``read_parquet`` of one file, every column as text (CSV) or as stored."""
    if inp.parquet:
        return f"read_parquet({sql_str(inp.path)}, file_row_number = true)"
    columns = "{" + ", ".join(f"{sql_str(c)}: 'VARCHAR'" for c in inp.columns) + "}"
    return (
        f"read_csv({sql_str(inp.read_path or inp.path)}, header = true, auto_detect = false, columns = {columns}, "
        f"delim = {sql_str(inp.delimiter)}, quote = '\"', escape = '\"', "
        "encoding = 'utf-8', store_rejects = true, "
        f"rejects_table = {sql_str(rejects + '_errors')}, rejects_scan = {sql_str(rejects + '_scans')}, "
        f"rejects_limit = {MAX_MALFORMED_LINES})"
    )


def _scan_sql(
    inp: InputFile,
    columns: Sequence[str],
    rejects: str,
    *,
    numbered: bool,
    where: Callable[[InputFile], str],
    filtered_on: Sequence[str] = (),
) -> str:
    """SELECT of ``columns`` (as text) of one file's rows matching ``where(inp)``.

    ``filtered_on`` names the other columns ``where`` reads.

    With ``numbered``, ``_k`` is the 1-based index of the data row in the file. The row number is
    taken on the raw columns and the conversions come after the filter, so that the single
    ordered pass over a national file does as little work per row as possible.
    """
    source = _source_sql(inp, rejects)
    select = ", ".join(f"{_value_sql(inp, c)} AS {ident(c)}" for c in columns)
    raw = ", ".join(ident(c) for c in dict.fromkeys((*columns, *filtered_on)) if c in inp.columns)
    if not numbered:
        return f"SELECT {select} FROM (SELECT {raw} FROM {source}) WHERE {where(inp)}"
    if inp.parquet:
        inner = f"SELECT file_row_number + 1 AS _k, {raw} FROM {source}"
    else:
        inner = f"SELECT row_number() OVER () AS _k, {raw} FROM {source}"
    return f"SELECT _k, {select} FROM ({inner}) WHERE {where(inp)}"


def _departement_sql(inp: InputFile) -> str:
    """Département of ``codeCommuneEtablissement`` (as territories.departement_of_commune)."""
    code = f"upper({_value_sql(inp, 'codeCommuneEtablissement')})"
    return (
        f"CASE WHEN regexp_full_match({code}, '[0-9]{{4}}') THEN '0' || substr({code}, 1, 1) "
        f"WHEN starts_with({code}, '97') THEN substr({code}, 1, 3) ELSE substr({code}, 1, 2) END"
    )


class Scanner:
    """Runs the DuckDB scans of one read, collecting malformed lines into the quarantine."""

    def __init__(self, con: duckdb.DuckDBPyConnection, quarantines: Quarantines, warnings: list[str]) -> None:
        self.con = con
        self.quarantines = quarantines
        self.warnings = warnings
        self._count = 0
        self.malformed = 0

    def run(self, inp: InputFile, sql_of: Callable[[str], str]) -> np.ndarray:
        """Execute ``sql_of(rejects_name)`` for one file; returns its rejected line numbers."""
        self._count += 1
        rejects = f"essmap_rejects_{self._count}"
        try:
            self.con.execute(sql_of(rejects))
            if inp.parquet:
                return np.zeros(0, dtype="int64")
            errors = self.con.sql(
                f"SELECT line, column_name, error_type, csv_line FROM {rejects}_errors ORDER BY line"
            ).df()
        except duckdb.Error as exc:
            raise _duckdb_error(inp, exc) from exc
        if len(errors) >= MAX_MALFORMED_LINES:
            raise InputFileError(
                inp.name, f"au moins {MAX_MALFORMED_LINES} lignes mal formées (nombre de colonnes, guillemets).",
                row=int(errors["line"].iloc[0]),
                hint="vérifiez le séparateur et l'encodage, ou retéléchargez le fichier publié par l'INSEE.",
            )
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


def _duckdb_error(inp: InputFile, exc: duckdb.Error) -> InputFileError:
    text = str(exc)
    match = re.search(r"Line:?\s*(\d+)", text)
    return InputFileError(
        inp.name, "le fichier ne peut pas être lu comme un CSV (guillemets, fins de ligne ou en-tête "
        f"incohérents) (détail technique : {printable(first_line(exc), limit=300)}).",
        row=int(match.group(1)) if match else None,
        hint="vérifiez que c'est bien un fichier SIRENE de l'INSEE (CSV séparé par des virgules, "
        "ou Parquet) et qu'il n'est pas tronqué.",
    )


def physical_lines(k: pd.Series, rejected: np.ndarray) -> np.ndarray:
    """File line of the k-th accepted data row (1-based), given the rejected lines (sorted).

    Without rejects it is ``k + 1`` (header = line 1); each rejected line before a row shifts it.
    """
    k = k.to_numpy(dtype="int64")
    if len(rejected) == 0:
        return k + 1
    # accepted rows before the i-th rejected line: rejected[i] - 2 - i (non-decreasing)
    before = np.sort(rejected) - 2 - np.arange(len(rejected))
    return k + 1 + np.searchsorted(before, k, side="left")


# --- Scans ---------------------------------------------------------------------------------------


def load_unites_legales(scanner: Scanner, inputs: Sequence[InputFile]) -> None:
    """Table ``ul``: the legal units flagged ESS (all columns the output needs)."""
    columns = ("siren", *UNITE_LEGALE_ATTRIBUTES)
    scanner.con.execute(
        "CREATE TEMP TABLE ul (" + ", ".join(f"{ident(c)} VARCHAR" for c in columns) + ")"
    )
    names = ", ".join(ident(c) for c in columns)
    for inp in inputs:

        def sql(rejects: str, inp: InputFile = inp) -> str:
            scan = _scan_sql(
                inp, columns, rejects, numbered=False,
                where=lambda i: f"upper({_value_sql(i, 'economieSocialeSolidaireUniteLegale')}) = 'O' "
                f"AND {_value_sql(i, 'siren')} IS NOT NULL",
                filtered_on=("economieSocialeSolidaireUniteLegale",),
            )
            return f"INSERT INTO ul SELECT {names} FROM ({scan})"

        scanner.run(inp, sql)


def scan_etablissements(
    scanner: Scanner, inputs: Sequence[InputFile], deps: list[str] | None
) -> dict[int, np.ndarray]:
    """Table ``etab``: active establishments of ESS legal units, with their file and row index
    (``_file``, ``_k``). Returns the rejected (malformed) lines of each file, by file index."""
    con = scanner.con
    names = ETABLISSEMENT_KEPT
    con.execute(
        "CREATE TEMP TABLE etab (_file INTEGER, _k BIGINT, "
        + ", ".join(f"{ident(c)} VARCHAR" for c in names) + ")"
    )
    quoted_deps = ", ".join(sql_str(d) for d in deps or ())

    def where(inp: InputFile) -> str:
        sql = (
            f"upper({_value_sql(inp, 'etatAdministratifEtablissement')}) = 'A' "
            f"AND {_value_sql(inp, 'siren')} IN (SELECT siren FROM ul)"
        )
        if deps is not None:
            sql += f" AND ({_departement_sql(inp)}) IN ({quoted_deps})"
        return sql

    rejected: dict[int, np.ndarray] = {}
    for index, inp in enumerate(inputs):

        def sql(rejects: str, inp: InputFile = inp, index: int = index) -> str:
            scan = _scan_sql(
                inp, names, rejects, numbered=True, where=where, filtered_on=("etatAdministratifEtablissement",)
            )
            return f"INSERT INTO etab SELECT {index}, * FROM ({scan})"

        rejected[index] = scanner.run(inp, sql)
    return rejected


#: INSEE's QPV columns of the geolocation file (all names of all generations).
_ASSIGNMENT = tuple(dict.fromkeys(c for names in GEOLOCALISATION_QPV.values() for c in names))
#: The columns of the geolocation rows a read keeps.
_GEOLOCALISATION_KEPT = ("siret", *GEOLOCALISATION_PROJECTED, *GEOLOCALISATION_WGS84, *_ASSIGNMENT,
                         *GEOLOCALISATION_QUALITY)


def scan_geolocalisation(scanner: Scanner, inputs: Sequence[InputFile]) -> dict[int, np.ndarray]:
    """Table ``geo``: rows of the geolocation files for the establishments of ``etab`` (all of
    them: the first occurrence of a SIRET is chosen when the rows are fetched). Returns the
    rejected lines of each file, by file index."""
    con = scanner.con
    columns = _GEOLOCALISATION_KEPT
    con.execute(
        "CREATE TEMP TABLE geo (_file INTEGER, _k BIGINT, " + ", ".join(f"{ident(c)} VARCHAR" for c in columns) + ")"
    )
    rejected: dict[int, np.ndarray] = {}
    for index, inp in enumerate(inputs):

        def sql(rejects: str, inp: InputFile = inp, index: int = index) -> str:
            scan = _scan_sql(
                inp, columns, rejects, numbered=True,
                where=lambda i: f"{_value_sql(i, 'siret')} IN (SELECT siret FROM etab)",
            )
            return f"INSERT INTO geo SELECT {index}, * FROM ({scan})"

        rejected[index] = scanner.run(inp, sql)
    return rejected


def repeated_sirets(con: duckdb.DuckDBPyConnection) -> set[str]:
    """SIRETs that ``etab`` holds more than once (a handful: the rows are checked part by part, and
    only these need to be remembered from one part to the next)."""
    rows = con.execute("SELECT siret FROM etab WHERE siret IS NOT NULL GROUP BY siret HAVING count(*) > 1").fetchall()
    return {str(r[0]) for r in rows}


def repeated_geolocalisation_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Rows of ``geo`` beyond the first of their SIRET."""
    row = con.execute("SELECT count(*) - count(DISTINCT siret) FROM geo").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class ScannedFiles:
    """The files of a read, and the malformed lines the scans rejected in each (by file index)."""

    etablissements: Sequence[InputFile]
    etablissements_rejected: dict[int, np.ndarray]
    geolocalisation: Sequence[InputFile] = ()
    geolocalisation_rejected: dict[int, np.ndarray] = field(default_factory=dict)


def fetch_parts(con: duckdb.DuckDBPyConnection, files: ScannedFiles,
                part_rows: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
    """The establishments of ``etab`` joined to their legal unit, in file order, ``part_rows`` at a
    time: ``(rows, geolocation rows)`` for each part, with file names and lines.

    The geolocation rows of a part are the first row of the geolocation files (in file order) of
    each SIRET of the part that they hold. Each part is one small query (a range of the file
    order, joined to the legal units): DuckDB never sorts or joins the whole national result, and
    only one part at a time is in pandas. At least one part is given, empty when ``etab`` is.
    """
    # one row per legal unit, from here on the only use of the units
    con.execute("CREATE TEMP TABLE unit AS SELECT DISTINCT ON (siren) * FROM ul")
    con.execute("DROP TABLE ul")
    keys = con.execute(f"SELECT {_order_key()} AS key FROM etab ORDER BY key").fetchnumpy()["key"]
    keys = np.asarray(keys, dtype="int64")
    bounds = [(int(keys[i]), int(keys[min(i + part_rows, len(keys)) - 1])) for i in range(0, len(keys), part_rows)]
    units = ", ".join(f"u.{ident(c)}" for c in UNITE_LEGALE_ATTRIBUTES)
    for first, last in bounds or [(0, -1)]:
        frame = _to_pandas(con.sql(
            f"SELECT e.*, {units} FROM etab e JOIN unit u USING (siren) "
            f"WHERE {_order_key('e')} BETWEEN {first} AND {last} ORDER BY e._file, e._k").to_arrow_table())
        frame["_file_name"] = frame["_file"].map(
            {i: inp.name for i, inp in enumerate(files.etablissements)}).astype("string")
        frame["_line"] = _lines(frame["_file"], frame["_k"], files.etablissements, files.etablissements_rejected)
        geo = None
        if files.geolocalisation:
            geo = _geolocation_part(con.sql(
                f"SELECT * FROM geo WHERE siret IN (SELECT siret FROM etab WHERE {_order_key()} BETWEEN {first} "
                f"AND {last}) ORDER BY _file, _k"
            ).to_arrow_table(), files)
        yield frame, geo


def _order_key(table: str = "") -> str:
    """The file order of ``etab`` rows as one number: file index, then row index (below 2**40)."""
    prefix = f"{table}." if table else ""
    return f"(CAST({prefix}_file AS BIGINT) * 1099511627776 + {prefix}_k)"


def _geolocation_part(table: pa.Table, files: ScannedFiles) -> pd.DataFrame:
    """The geolocation rows of a part (in file order): the first of each SIRET, with file names and
    lines; INSEE's QPV and quality columns "" where the file has the column but the row no value,
    <NA> where the file lacks the column (so that "INSEE says none" and "INSEE did not say" stay
    apart)."""
    geo = _to_pandas(table).drop_duplicates("siret")
    geo["_geo_file"] = geo["_file"].map(
        {i: inp.name for i, inp in enumerate(files.geolocalisation)}).astype("string")
    geo["_geo_line"] = _lines(geo["_file"], geo["_k"], files.geolocalisation, files.geolocalisation_rejected)
    for index, inp in enumerate(files.geolocalisation):
        mask = (geo["_file"] == index).to_numpy()
        for column in (*_ASSIGNMENT, *GEOLOCALISATION_QUALITY):
            if column in inp.columns:
                geo.loc[mask, column] = geo.loc[mask, column].fillna("")
    return geo.drop(columns=["_file", "_k"]).reset_index(drop=True)


def _lines(file_index: pd.Series, k: pd.Series, inputs: Sequence[InputFile],
           rejected: dict[int, np.ndarray]) -> np.ndarray:
    """File line of each row (header = line 1): ``_k`` (the 1-based data row) + 1 in a Parquet file,
    the line counted with the rejected lines put back in a CSV file."""
    lines = np.zeros(len(k), dtype="int64")
    for index, inp in enumerate(inputs):
        mask = (file_index == index).to_numpy(dtype=bool)
        if inp.parquet:
            lines[mask] = k[mask].to_numpy(dtype="int64") + 1
        else:
            lines[mask] = physical_lines(k[mask], rejected.get(index, np.zeros(0, dtype="int64")))
    return lines


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Rows as pandas, text columns as ``string`` (kept in Arrow, never turned into a Python
    object per value)."""
    string = pd.StringDtype()
    frame = table.to_pandas(
        types_mapper=lambda t: string if pa.types.is_string(t) or pa.types.is_large_string(t) else None)
    for col in frame.columns:
        if col not in ("_file", "_k"):
            frame[col] = frame[col].astype("string")
    return frame
