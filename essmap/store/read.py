"""Reading the store: layers as GeoDataFrames (WKB converted in one place), sources, quarantine."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from essmap.domain import schema
from essmap.domain.schema import WGS84

# numpy and pandas are imported where frames are built, geopandas and shapely where geometry is: a CLI
# query that prints rows starts without them
if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd


def read_layer(
    con: duckdb.DuckDBPyConnection,
    table: str,
    *,
    departements: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> gpd.GeoDataFrame:
    """A layer as a GeoDataFrame in EPSG:4326, optionally restricted to some départements."""
    if table not in schema.LAYERS:
        raise ValueError(f"unknown layer {table!r}; expected one of {sorted(schema.LAYERS)}")
    wanted = list(columns) if columns is not None else list(schema.LAYERS[table])
    cols = ", ".join(f'"{c}"' for c in wanted)
    sql = f'SELECT {cols}, ST_AsWKB(geometry) AS _wkb FROM "{table}"'
    params: list[object] = []
    dep_column = _DEPARTEMENT_COLUMN.get(table)
    if departements and dep_column:
        sql += f' WHERE "{dep_column}" IN (SELECT unnest(?))'
        params.append(list(departements))
    return frame_from_arrow(con.execute(sql, params).arrow())


_DEPARTEMENT_COLUMN = {
    "communes": "code_departement",
    "departements": "code_departement",
    "qpv": "insee_dep",
    "etablissements": "code_departement",
    "tiers_lieux": "code_departement",
}


def arrow_frame(table, types: Mapping[str, str] | None = None) -> pd.DataFrame:
    """An Arrow result as pandas with nullable types (strings stay strings, integers keep <NA>).

    ``types`` gives some columns another pandas type, each set as its column is converted: a
    ``DataFrame.astype`` of the whole frame afterwards cost ten times the conversion (15 ms of a
    département's view, all of it holding the GIL)."""
    if hasattr(table, "read_all"):
        table = table.read_all()
    if not types:
        return table.to_pandas(types_mapper=arrow_types)
    import pandas as pd

    return pd.DataFrame({name: _typed(values, types.get(name)) for name, values in
                         zip(table.column_names, table.columns, strict=True)}, copy=False)


def _typed(values, dtype: str | None):
    """One Arrow column as a pandas array of ``dtype`` (else as :func:`arrow_frame` types it)."""
    if dtype in ("int64", "float64", "bool") and values.null_count == 0:
        return values.to_numpy().astype(dtype, copy=False)  # NumPy's own type, no <NA> to carry
    converted = values.to_pandas(types_mapper=arrow_types)
    return converted.array if dtype is None else converted.astype(dtype).array


def frame_from_arrow(table) -> gpd.GeoDataFrame:
    """The one place where WKB from DuckDB becomes shapely geometry."""
    import geopandas as gpd
    import numpy as np
    import shapely

    if hasattr(table, "read_all"):
        table = table.read_all()
    wkb = table.column("_wkb").to_numpy(zero_copy_only=False)
    frame = arrow_frame(table.drop(["_wkb"]))
    geometry = shapely.from_wkb(np.array([None if w is None else bytes(w) for w in wkb], dtype=object))
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84)


def arrow_types(arrow_type):
    import pandas as pd
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype("pyarrow")  # zero-copy from DuckDB's Arrow result; <NA> for missing
    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return None


def sources(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The ``sources`` table, latest loads first."""
    return con.execute("SELECT * FROM sources ORDER BY loaded_at DESC, source, file_name").df()


def quarantine_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Quarantined rows counted by source, file and reason."""
    return con.execute(
        "SELECT source, file_name, reason, count(*) AS lignes FROM quarantine "
        "GROUP BY ALL ORDER BY lignes DESC, source, reason"
    ).df()


def quarantine_rows(con: duckdb.DuckDBPyConnection, *, source: str | None = None,
                    limit: int | None = None) -> pd.DataFrame:
    """Quarantined rows in file order (all of them unless ``limit``: see :func:`quarantine_batches`
    for large quarantines)."""
    import pandas as pd
    parts = list(quarantine_batches(con, source=source, limit=limit))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in schema.QUARANTINE})
    return pd.concat(parts, ignore_index=True)


def quarantine_count(con: duckdb.DuckDBPyConnection, *, source: str | None = None) -> int:
    """How many rows the quarantine holds (of one source, if given)."""
    sql, params = "SELECT count(*) FROM quarantine", []
    if source:
        sql, params = sql + " WHERE source = ?", [source]
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def quarantine_batches(con: duckdb.DuckDBPyConnection, *, source: str | None = None, limit: int | None = None,
                       batch_rows: int = 50_000) -> Iterator[pd.DataFrame]:
    """Quarantined rows in file order (source, file, line), ``batch_rows`` at a time.

    DuckDB streams the sorted result in Arrow batches, so memory stays at one batch however
    large the quarantine (hundreds of thousands of rows after a national SIRENE ingest).
    """
    columns = ", ".join(f'"{c}"' for c in schema.QUARANTINE)
    sql = f"SELECT {columns} FROM quarantine"
    params: list[object] = []
    if source:
        sql += " WHERE source = ?"
        params.append(source)
    sql += " ORDER BY source, file_name, row_number, column_name"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    reader = con.execute(sql, params).to_arrow_reader(batch_rows)
    for batch in reader:
        if batch.num_rows:
            yield batch.to_pandas()


#: A text cell a spreadsheet could take for a formula (OWASP "CSV Injection"), in RE2 for DuckDB:
#: a formula character at the start of the cell or after a character that a reader splitting on
#: another separator takes for a cell break (whitespace and double quotes before it count), or a
#: tab or carriage return at the start. The rule of :func:`essmap.render.tables.write_table`.
_FORMULA_AFTER_BREAK = r"""(^|[,;\t\r\n])([ \t\r\n"]*[=+@-])"""
_CONTROL_AT_START = r"^([\t\r])"


def _inert_cell(column: str) -> str:
    """SQL putting a single quote before whatever a spreadsheet could run as a formula."""
    quote_after_break = r"'\1''\2'"  # the separator, a single quote, then the formula
    quote_first = r"'''\1'"
    return (f"""regexp_replace(regexp_replace("{column}", '{_FORMULA_AFTER_BREAK}', {quote_after_break}, 'g'), """
            f"""'{_CONTROL_AT_START}', {quote_first})""")


def copy_quarantine_csv(con: duckdb.DuckDBPyConnection, target: Path, *, spill: Path,
                        memory_limit: str = "128MB") -> int:
    """Write every quarantined row, in file order, to the CSV file ``target`` (UTF-8, no BOM); how many.

    DuckDB sorts and writes the rows itself, on one thread within ``memory_limit``, spilling to
    ``spill``: memory stays bounded however large the quarantine. Text cells that a spreadsheet
    could run as formulas get a leading single quote. The connection's memory limit and threads are
    restored afterwards (DuckDB cannot switch back a temporary folder once used: close the
    connection before removing ``spill``).
    """
    settings = ("memory_limit", "threads")
    saved = {name: con.execute("SELECT current_setting(?)", [name]).fetchone() for name in settings}
    columns = ", ".join(
        f'{_inert_cell(c)} AS "{c}"' if t == "VARCHAR" else f'"{c}"' for c, t in schema.QUARANTINE.items()
    )
    quoted_target = "'" + str(target).replace("'", "''") + "'"
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute("SET threads = 1")
        con.execute("SET temp_directory = ?", [str(spill)])
        row = con.execute(
            f"COPY (SELECT {columns} FROM quarantine ORDER BY source, file_name, row_number, column_name) "
            f"TO {quoted_target} (HEADER, DELIMITER ',')"
        ).fetchone()
    finally:
        for name, value in saved.items():
            if value is not None and value[0] is not None:
                con.execute(f"SET {name} = ?", [value[0]])
    return int(row[0]) if row else 0


def layer_counts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Rows per layer, with how many are synthetic where the layer has that flag."""
    import pandas as pd
    rows = []
    for table, columns in schema.LAYERS.items():
        synth = "count(*) FILTER (WHERE is_synthetic)" if "is_synthetic" in columns else "0"
        total, synthetic = con.execute(f'SELECT count(*), {synth} FROM "{table}"').fetchone() or (0, 0)
        rows.append({"couche": table, "lignes": total, "dont_simulees": synthetic})
    return pd.DataFrame(rows)


def departements_present(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    column = _DEPARTEMENT_COLUMN[table]
    return [r[0] for r in con.execute(f'SELECT DISTINCT "{column}" FROM "{table}" ORDER BY 1').fetchall()]
