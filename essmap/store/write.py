"""Writing the store: schema, atomic updates (temporary copy swapped in), rows and sources.

Builds and ingests write a temporary copy and swap it in with ``os.replace``: a failed build
leaves the previous database untouched, and readers that have the old file open keep reading
it (POSIX keeps the old inode alive). One writer at a time (:mod:`essmap.store.lock`): a second
ingest waits for the first, so neither loses the other's rows.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from essmap.domain import schema
from essmap.domain.errors import BuildError, EssmapError
from essmap.domain.formatting import format_number
from essmap.io.scratch import scratch_folder
from essmap.io.text import printable
from essmap.store.connection import FORMAT_VERSION
from essmap.store.lock import filesystem_message, writer_lock

# numpy, pandas, pyarrow, geopandas, shapely and the memberships (geometry) are imported where rows are
# written: table queries (the CLI's) start without them
if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa

    from essmap.io.readers.common import SourceMeta

#: Tables holding a layer with a geometry column, in dependency order.
GEOMETRY_TABLES: tuple[str, ...] = (
    "regions", "departements", "epci", "communes", "qpv", "etablissements", "tiers_lieux",
)

#: Table of the rows each source loads.
SOURCE_TABLES: dict[str, str] = {
    "communes": "communes", "qpv": "qpv", "sirene": "etablissements", "tiers_lieux": "tiers_lieux",
}


def layer_columns(table: str) -> dict[str, str]:
    """Every stored column of a layer but its geometry: canonical, provenance, memberships."""
    columns = dict(schema.LAYERS[table])
    if table in schema.FILE_LAYERS:
        columns[schema.SOURCE_FILE_COLUMN] = "VARCHAR"
    if table in schema.POINT_LAYERS:
        columns.update(schema.MEMBERSHIPS)
    return columns


def _create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for table in schema.LAYERS:
        cols = ", ".join(f'"{c}" {t}' for c, t in layer_columns(table).items())
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({cols}, geometry GEOMETRY)')
    tables = {"quarantine": schema.QUARANTINE, "sources": schema.SOURCES, **schema.DERIVED}
    for table, columns in tables.items():
        cols = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({cols})')
    con.execute("CREATE TABLE IF NOT EXISTS essmap_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute(
        "INSERT OR REPLACE INTO essmap_meta VALUES ('format_version', ?), ('updated_at', ?)",
        [FORMAT_VERSION, datetime.now().isoformat(timespec="seconds")],
    )


def _check_format(con: duckdb.DuckDBPyConnection, target: Path) -> None:
    found = con.execute(
        "SELECT value FROM essmap_meta WHERE key = 'format_version'"
    ).fetchone() if "essmap_meta" in {r[0] for r in con.execute("SHOW TABLES").fetchall()} else None
    if found is not None and found[0] != FORMAT_VERSION:
        raise BuildError(
            f"La base « {target.name} » a été créée par une autre version d'essmap (format {found[0]}, "
            f"attendu {FORMAT_VERSION}). Solution : reconstruisez-la avec `essmap build`, puis rechargez "
            "vos fichiers avec `essmap ingest`."
        )


def say(message: str) -> None:
    """Default notice channel of writers: a line on standard error (the CLI's progress goes there too)."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def atomic_update(target: Path, *, start_empty: bool = False,
                  notify: Callable[[str], None] = say) -> Iterator[duckdb.DuckDBPyConnection]:
    """Write connection on a temporary copy of ``target``, swapped in only on success.

    ``start_empty`` builds from scratch (``essmap build``); otherwise the current database is
    copied first (``essmap ingest``). The writer lock is held from before the copy to after the
    swap; a temporary copy left by a killed writer is removed first, and ``notify`` says so (in
    French). Any exception removes the temporary file (and its ``.wal``), leaves ``target``
    untouched and is re-raised as :class:`BuildError` (French message).
    """
    target = Path(target)
    what = "La construction" if start_empty else "La mise à jour"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"{what} de la base est impossible : {filesystem_message(exc, target.parent)}") from exc
    with writer_lock(target, on_wait=notify):
        try:
            left_overs = remove_left_overs(target)
        except OSError as exc:
            raise BuildError(f"{what} de la base est impossible : {filesystem_message(exc, target.parent)}") from exc
        if left_overs:
            notify(left_overs_notice(target, left_overs))
        tmp = _temporary_path(target)
        con = None
        try:
            if not start_empty and target.exists():
                shutil.copyfile(target, tmp)
            con = duckdb.connect(str(tmp))
            if not start_empty:
                _check_format(con, target)
            _create_schema(con)
            yield con
            con.execute("CHECKPOINT")
            con.close()
            con = None
            _sync(tmp)
            os.replace(tmp, target)
            _sync(target.parent)
        except BaseException as exc:
            if con is not None:
                try:
                    con.close()
                except duckdb.Error:  # a FATAL error already invalidated the database
                    pass
            _remove_db_files(tmp)
            if isinstance(exc, BuildError) or not isinstance(exc, Exception):
                raise
            raise BuildError(
                f"{what} de la base a échoué ; la base précédente « {target.name} » est "
                f"intacte. Cause : {failure_cause(exc, target.parent)}"
            ) from exc


#: Memory DuckDB may hold while an ingest writes the store: beyond it, DuckDB writes its blocks out
#: and spills sorts and staging tables to a temporary folder, so that an ingest of the national
#: SIRENE stock (whose rows are in memory besides) stays under 3 GB as a whole.
INGEST_MEMORY_LIMIT = "512MB"


def limit_memory(con: duckdb.DuckDBPyConnection, spill: Path | str, limit: str = INGEST_MEMORY_LIMIT) -> None:
    """Bound the memory of a write connection, spilling into the folder ``spill`` (a temporary
    folder of the caller: DuckDB's default one would sit next to the store's temporary copy)."""
    con.execute("SET temp_directory = " + "'" + str(spill).replace("'", "''") + "'")
    con.execute("SET memory_limit = " + "'" + limit.replace("'", "''") + "'")


@contextmanager
def bounded_update(target: Path, *, scratch: str, start_empty: bool = False,
                   notify: Callable[[str], None] = say) -> Iterator[duckdb.DuckDBPyConnection]:
    """:func:`atomic_update` whose connection has :func:`limit_memory`, spilling into a scratch folder of
    its own (``scratch``: its kind, see :func:`essmap.io.scratch.scratch_folder`): ingests and builds,
    whose readers' rows are in memory besides."""
    with scratch_folder(scratch) as spill, atomic_update(target, start_empty=start_empty, notify=notify) as con:
        limit_memory(con, spill)
        yield con


def failure_cause(exc: BaseException, folder: Path) -> str:
    """Why a write failed, in French: the file-system cause with its fix, or the error's own
    French message, or a French lead followed by the technical detail (DuckDB, pandas...)."""
    if isinstance(exc, EssmapError):
        return str(exc)
    if isinstance(exc, OSError):
        return filesystem_message(exc, folder)
    text = str(exc)
    code = next((c for c, marks in _FILESYSTEM_MARKS.items() if any(m in text for m in marks)), None)
    if code is not None:
        return filesystem_message(OSError(code, os.strerror(code)), folder)
    detail = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if isinstance(exc, duckdb.Error):
        return f"erreur de la base DuckDB (détail technique : {detail})"
    return f"erreur inattendue (détail technique : {type(exc).__name__} : {detail})"


#: Messages of DuckDB (which raises its own exceptions, not OSError) naming a file-system cause.
_FILESYSTEM_MARKS: dict[int, tuple[str, ...]] = {
    errno.ENOSPC: ("No space left on device",),
    errno.EROFS: ("Read-only file system",),
    errno.EACCES: ("Permission denied",),
    errno.EDQUOT: ("Disk quota exceeded",),
}


def _sync(path: Path) -> None:
    """Flush a file or a folder to the disk, so that the swap survives a power cut too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.tmp-{os.getpid()}")


def remove_left_overs(target: Path) -> list[tuple[str, int]]:
    """Remove the temporary copies (and their ``.wal``) left by a killed writer (``kill -9``).

    Called with the writer lock held, so none of them belongs to a live writer. Returns the
    names and sizes removed.
    """
    found = []
    for path in sorted(target.parent.glob(f"{glob.escape(target.name)}.tmp-*")):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        path.unlink(missing_ok=True)
        found.append((path.name, size))
    return found


def left_overs_notice(target: Path, removed: Sequence[tuple[str, int]]) -> str:
    """The French notice of a clean-up: which files, how much space was given back."""
    total = sum(size for _name, size in removed)
    names = ", ".join(printable(name) for name, _size in removed)
    return (f"Nettoyage : une mise à jour précédente de « {printable(target.name)} » a été interrompue ; "
            f"{len(removed)} fichier(s) temporaire(s) laissé(s) par elle supprimé(s) ({names} ; "
            f"{format_number(total / 1e6, decimals=1)} Mo libérés). La base elle-même était intacte.")


def _remove_db_files(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


# --- Rows --------------------------------------------------------------------------------------


def delete_rows(con: duckdb.DuckDBPyConnection, table: str, *, where: str | None = None,
                params: Sequence[object] = ()) -> int:
    """Delete the rows of ``table`` matching ``where`` (all when None); how many went."""
    sql = f'DELETE FROM "{table}"' + (f" WHERE {where}" if where else "")
    row = con.execute(sql, list(params)).fetchone()
    return int(row[0]) if row else 0


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, frame: gpd.GeoDataFrame, *,
                source_file: str | None = None) -> int:
    """Insert ``frame`` (the canonical columns of ``table``, geometry in EPSG:4326).

    Rows of a point layer are staged first and get their memberships there
    (:func:`~essmap.store.memberships.fill_memberships`: commune proper, EPCI, région, QPV) from
    the layers already in the store, so that an ingest locates the rows it adds and no others.
    """
    if table in schema.POINT_LAYERS:
        staged = StagedPoints(con, table)
        staged.add(frame)
        return staged.insert(source_file)
    columns = _checked_columns(table, frame)
    if frame.empty:
        return 0
    _insert_arrow(con, table, columns, _arrow_rows(frame, table, columns, source_file))
    return len(frame)


def _checked_columns(table: str, frame: gpd.GeoDataFrame) -> list[str]:
    columns = list(schema.LAYERS[table])
    if frame.crs is None or frame.crs.to_epsg() != 4326:
        raise ValueError(f"{table}: geometry must be in EPSG:4326, got {frame.crs}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing canonical columns {missing}")
    return columns


def _insert_arrow(con: duckdb.DuckDBPyConnection, target: str, columns: list[str], incoming: pa.Table,
                  extra: dict[str, str] | None = None) -> None:
    """INSERT the Arrow rows of :func:`_arrow_rows` into ``target``; ``extra``: more columns of
    ``target`` and their SQL values over the Arrow rows."""
    if schema.SOURCE_FILE_COLUMN in incoming.column_names:
        columns = [*columns, schema.SOURCE_FILE_COLUMN]
    cols = ", ".join(f'"{c}"' for c in columns)
    more_cols = "".join(f', "{c}"' for c in extra or {})
    more_values = "".join(f", {v}" for v in (extra or {}).values())
    con.register("_incoming", incoming)
    try:
        con.execute(
            f'INSERT INTO "{target}" ({cols}, geometry{more_cols}) '
            f"SELECT {cols}, CASE WHEN _wkb IS NULL THEN NULL ELSE ST_GeomFromWKB(_wkb) END{more_values} "
            "FROM _incoming"
        )
    finally:
        con.unregister("_incoming")


class StagedPoints:
    """Rows of a point layer gathered part by part before one insert, e.g. the establishments of a
    national SIRENE read: each part goes into a temporary table of the write connection (DuckDB
    spills it beyond its memory limit) as soon as it is read, so that the caller can let it go.
    :meth:`insert` then locates them all at once (memberships, see
    :func:`~essmap.store.memberships.fill_memberships`) and writes them in the order of a single
    insert: by département, commune, then position in the parts.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        if table not in schema.POINT_LAYERS:
            raise ValueError(f"{table}: not a point layer")
        self.con, self.table = con, table
        self.name = f"_staged_{table}"
        self.rows = 0
        # _n: position in the parts; _place: the département as given, the first key of the order
        con.execute(f'CREATE OR REPLACE TEMP TABLE "{self.name}" AS SELECT *, CAST(0 AS BIGINT) AS _n, '
                    f'CAST(NULL AS VARCHAR) AS _place FROM "{table}" LIMIT 0')

    def add(self, frame: gpd.GeoDataFrame) -> None:
        """Stage ``frame`` (the canonical columns of the layer)."""
        columns = _checked_columns(self.table, frame)
        if frame.empty:
            return
        incoming = _arrow_rows(frame, self.table, columns, None, first=self.rows)
        _insert_arrow(self.con, self.name, columns, incoming, {"_n": "_n", "_place": "code_departement"})
        self.rows += len(frame)

    def departements(self) -> list[str]:
        """The départements of the rows staged (sorted)."""
        rows = self.con.execute(f'SELECT DISTINCT code_departement FROM "{self.name}" '
                                "WHERE code_departement IS NOT NULL AND code_departement <> ''").fetchall()
        return sorted(str(r[0]) for r in rows)

    def insert(self, source_file: str | None = None) -> int:
        """Insert every staged row into the layer (``source_file``: their file, for file layers);
        the staging table is dropped. Returns the rows inserted."""
        from essmap.store.memberships import fill_memberships

        fill_memberships(self.con, self.name)
        file_layer = self.table in schema.FILE_LAYERS
        source = f' REPLACE (CAST(? AS VARCHAR) AS "{schema.SOURCE_FILE_COLUMN}")' if file_layer else ""
        # stored by place: a view of one département then reads a few row groups, skipped by their
        # min/max (4x faster counts on the national store than rows in file order)
        self.con.execute(
            f'INSERT INTO "{self.table}" SELECT * EXCLUDE (_n, _place){source} FROM "{self.name}" '
            "ORDER BY _place ASC NULLS LAST, code_commune ASC NULLS LAST, _n",
            [source_file] if file_layer else [],
        )
        self.con.execute(f'DROP TABLE "{self.name}"')
        return self.rows


def _arrow_rows(frame: gpd.GeoDataFrame, table: str, columns: list[str], source_file: str | None, *,
                first: int = 0) -> pa.Table:
    """The rows to insert as an Arrow table (DuckDB scans it without a copy to Python objects):
    the canonical columns, the source file of file layers, the geometry as WKB (``_wkb``) and the
    row's position (``_n``, from ``first``)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import shapely

    data = pa.Table.from_pandas(pd.DataFrame({c: frame[c] for c in columns}), preserve_index=False)
    if table in schema.FILE_LAYERS:
        data = data.append_column(schema.SOURCE_FILE_COLUMN, pa.array([source_file] * len(frame), pa.string()))
    wkb = shapely.to_wkb(frame.geometry.to_numpy(), output_dimension=2)
    data = data.append_column("_wkb", pa.array(wkb, pa.binary()))
    return data.append_column("_n", pa.array(np.arange(first, first + len(frame), dtype=np.int64)))


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: gpd.GeoDataFrame,
    *,
    where: str | None = None,
    params: Sequence[object] = (),
    source_file: str | None = None,
) -> int:
    """Delete the rows matching ``where`` (all when None) and insert ``frame``; rows inserted."""
    delete_rows(con, table, where=where, params=params)
    return insert_rows(con, table, frame, source_file=source_file)


# --- Sources -----------------------------------------------------------------------------------


def record_source(con: duckdb.DuckDBPyConnection, meta: SourceMeta, quarantine: pd.DataFrame, *,
                  scope: Sequence[str] = ()) -> None:
    """Add a ``sources`` row and the file's quarantined rows (replacing an earlier load of it)."""
    con.execute(
        "DELETE FROM quarantine WHERE source = ? AND file_name = ?", [meta.source, meta.file_name]
    )
    con.execute(
        "DELETE FROM sources WHERE source = ? AND file_name = ?", [meta.source, meta.file_name]
    )
    columns = list(schema.SOURCES)
    values = {
        "source": meta.source, "generation": meta.generation, "file_name": meta.file_name,
        "sha256": meta.sha256, "rows_read": meta.rows_read, "rows_kept": meta.rows_kept,
        "rows_quarantined": meta.rows_quarantined, "is_synthetic": meta.is_synthetic,
        "warnings": "\n".join(meta.warnings), "loaded_at": datetime.now().replace(microsecond=0),
        "scope": ",".join(sorted(scope)), "rows_in_store": meta.rows_kept,
    }
    con.execute(
        f"INSERT INTO sources ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [values[c] for c in columns],
    )
    if len(quarantine):
        q = quarantine[list(schema.QUARANTINE)].astype(
            {"row_number": "int64"} | {c: "string" for c in schema.QUARANTINE if c != "row_number"}
        )
        con.register("_q", q)
        try:
            con.execute("INSERT INTO quarantine SELECT * FROM _q")
        finally:
            con.unregister("_q")


def refresh_sources(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Count each file's rows still in the store; forget the files whose rows were all replaced.

    Returns the names of the files forgotten (their quarantine goes with them), so that
    ``sources`` always describes what the store holds.
    """
    for source, table in SOURCE_TABLES.items():
        con.execute(
            f"""UPDATE sources SET rows_in_store = coalesce(n.rows, 0)
                FROM (SELECT s.file_name, count(t.{schema.SOURCE_FILE_COLUMN}) AS rows
                      FROM sources s LEFT JOIN "{table}" t ON t.{schema.SOURCE_FILE_COLUMN} = s.file_name
                      WHERE s.source = ? GROUP BY s.file_name) n
                WHERE sources.source = ? AND sources.file_name = n.file_name""",
            [source, source],
        )
    gone = con.execute(
        "SELECT source, file_name FROM sources WHERE rows_in_store = 0 AND rows_kept > 0"
    ).fetchall()
    for source, file_name in gone:
        con.execute("DELETE FROM quarantine WHERE source = ? AND file_name = ?", [source, file_name])
        con.execute("DELETE FROM sources WHERE source = ? AND file_name = ?", [source, file_name])
    return [name for _source, name in gone]
