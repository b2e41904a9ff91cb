"""Writing the store: schema, atomic updates (temporary copy swapped in), rows and sources.

Builds and ingests write a temporary copy and swap it in with ``os.replace``: a failed build
leaves the previous database untouched, and readers that have the old file open keep reading
it (POSIX keeps the old inode alive).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import geopandas as gpd
import pandas as pd
import shapely

from essmap.domain import schema
from essmap.domain.errors import BuildError
from essmap.io.readers.common import SourceMeta
from essmap.store.connection import prepare

#: Tables holding a layer with a geometry column, in dependency order.
GEOMETRY_TABLES: tuple[str, ...] = (
    "regions", "departements", "epci", "communes", "qpv", "etablissements", "tiers_lieux",
)
_FORMAT_VERSION = "1"


def _create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in schema.LAYERS.items():
        cols = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({cols}, geometry GEOMETRY)')
    for table, columns in (("quarantine", schema.QUARANTINE), ("sources", schema.SOURCES)):
        cols = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({cols})')
    con.execute("CREATE TABLE IF NOT EXISTS essmap_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute(
        "INSERT OR REPLACE INTO essmap_meta VALUES ('format_version', ?), ('updated_at', ?)",
        [_FORMAT_VERSION, datetime.now().isoformat(timespec="seconds")],
    )


@contextmanager
def atomic_update(target: Path, *, start_empty: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Write connection on a temporary copy of ``target``, swapped in only on success.

    ``start_empty`` builds from scratch (``essmap build``); otherwise the current database is
    copied first (``essmap ingest``). Any exception removes the temporary file, leaves
    ``target`` untouched and is re-raised as :class:`BuildError` (French message).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    _remove_db_files(tmp)
    if not start_empty and target.exists():
        shutil.copyfile(target, tmp)
    con = duckdb.connect(str(tmp))
    try:
        prepare(con)
        _create_schema(con)
        yield con
        con.execute("CHECKPOINT")
        con.close()
        os.replace(tmp, target)
    except BaseException as exc:
        con.close()
        _remove_db_files(tmp)
        if isinstance(exc, BuildError) or not isinstance(exc, Exception):
            raise
        raise BuildError(
            f"La construction de la base a échoué ; la base précédente « {target.name} » est "
            f"intacte. Cause : {exc}"
        ) from exc


def _remove_db_files(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            p.unlink()


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: gpd.GeoDataFrame,
    *,
    where: str | None = None,
    params: Sequence[object] = (),
) -> int:
    """Delete the rows matching ``where`` (all when None) and insert ``frame``.

    ``frame`` carries the canonical columns of ``table`` and a geometry in EPSG:4326.
    """
    columns = schema.LAYERS[table]
    if frame.crs is None or frame.crs.to_epsg() != 4326:
        raise ValueError(f"{table}: geometry must be in EPSG:4326, got {frame.crs}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing canonical columns {missing}")
    con.execute(f'DELETE FROM "{table}"' + (f" WHERE {where}" if where else ""), list(params))
    if frame.empty:
        return 0
    data = pd.DataFrame({c: frame[c] for c in columns})
    data["_wkb"] = shapely.to_wkb(frame.geometry.to_numpy(), output_dimension=2)
    con.register("_incoming", data)
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        con.execute(
            f'INSERT INTO "{table}" ({cols}, geometry) '
            f"SELECT {cols}, CASE WHEN _wkb IS NULL THEN NULL ELSE ST_GeomFromWKB(_wkb) END FROM _incoming"
        )
    finally:
        con.unregister("_incoming")
    return len(data)


def record_source(con: duckdb.DuckDBPyConnection, meta: SourceMeta, quarantine: pd.DataFrame) -> None:
    """Add a ``sources`` row and the file's quarantined rows (replacing an earlier load of it)."""
    con.execute(
        "DELETE FROM quarantine WHERE source = ? AND file_name = ?", [meta.source, meta.file_name]
    )
    con.execute(
        "DELETE FROM sources WHERE source = ? AND file_name = ?", [meta.source, meta.file_name]
    )
    con.execute(
        "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            meta.source, meta.generation, meta.file_name, meta.sha256, meta.rows_read,
            meta.rows_kept, meta.rows_quarantined, meta.is_synthetic,
            "\n".join(meta.warnings), datetime.now().replace(microsecond=0),
        ],
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

