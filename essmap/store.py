"""The DuckDB store: one file, every SQL string of essmap, atomic builds, read-only readers.

Geometry crosses the boundary as WKB and is converted in one place (:func:`_frame_from_arrow`).
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
import numpy as np
import pandas as pd
import shapely

from essmap import schema
from essmap.errors import BuildError, StoreError
from essmap.readers._common import WGS84, SourceMeta

#: Tables holding a layer with a geometry column, in dependency order.
GEOMETRY_TABLES: tuple[str, ...] = (
    "regions", "departements", "epci", "communes", "qpv", "etablissements", "tiers_lieux",
)
_FORMAT_VERSION = "1"


def _spatial_extension_path() -> Path:
    """The spatial extension shipped by the ``duckdb-extension-spatial`` wheel (never downloaded)."""
    try:
        import duckdb_extension_spatial
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ImportError(
            "Le paquet duckdb-extension-spatial est requis : pip install "
            f"duckdb-extension-spatial=={duckdb.__version__}"
        ) from exc
    base = Path(duckdb_extension_spatial.__file__).parent / "extensions"
    found = sorted(base.glob("*/spatial.duckdb_extension"))
    if not found:
        raise ImportError(f"Extension spatiale DuckDB introuvable sous {base}.")
    return found[-1]


def _prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute(f"LOAD '{_spatial_extension_path()}'")
    return con


def connect(path: Path, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the store. Read-only by default: the app and queries never write.

    Several processes may hold read-only connections at once, including during a build (which
    writes another file).
    """
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(
            f"Base de données introuvable : « {path} ». Solution : lancez `essmap build` "
            "(ou `make run`, qui la construit)."
        )
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(f"Impossible d'ouvrir la base « {path} » : {exc}") from exc
    _prepare(con)
    if read_only:
        tables = set(list_tables(con))
        if "sources" not in tables:
            con.close()
            raise StoreError(
                f"« {path} » n'est pas une base essmap (table « sources » absente). "
                "Solution : reconstruisez-la avec `essmap build`."
            )
    return con


def list_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]


# --- Building --------------------------------------------------------------------------------


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
        _prepare(con)
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


# --- Reading ----------------------------------------------------------------------------------


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
    return _frame_from_arrow(con.execute(sql, params).arrow())


_DEPARTEMENT_COLUMN = {
    "communes": "code_departement",
    "departements": "code_departement",
    "qpv": "insee_dep",
    "etablissements": "code_departement",
    "tiers_lieux": "code_departement",
}


def read_analysis_layers(
    con: duckdb.DuckDBPyConnection,
    *,
    departements: Sequence[str] | None = None,
    qpv_generation: str | None = None,
) -> dict[str, gpd.GeoDataFrame]:
    """The layers an analysis of some départements needs, keyed by table name.

    Communes, QPV, establishments and départements are restricted to ``departements``;
    EPCI and régions (names of units spanning borders) are read in full.

    Tiers-lieux are always read in full: one across a département border can still be within
    the radius of a QPV. ``qpv_generation`` defaults to the newest generation loaded.
    """
    layers = {t: read_layer(con, t, departements=departements)
              for t in ("communes", "qpv", "etablissements")}
    layers["tiers_lieux"] = read_layer(con, "tiers_lieux")
    layers["departements"] = read_layer(con, "departements", departements=departements)
    layers["epci"] = read_layer(con, "epci")
    layers["regions"] = read_layer(con, "regions")
    generations = qpv_generations(con)
    wanted = qpv_generation or (generations[0] if generations else None)
    layers["qpv"] = layers["qpv"][layers["qpv"]["generation"] == wanted].reset_index(drop=True)
    return layers


def _frame_from_arrow(table) -> gpd.GeoDataFrame:
    """The one place where WKB from DuckDB becomes shapely geometry."""
    if hasattr(table, "read_all"):
        table = table.read_all()
    wkb = table.column("_wkb").to_numpy(zero_copy_only=False)
    frame = table.drop(["_wkb"]).to_pandas(types_mapper=_arrow_types)
    geometry = shapely.from_wkb(np.array([None if w is None else bytes(w) for w in wkb], dtype=object))
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84)


def _arrow_types(arrow_type):
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype()
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


def quarantine_rows(con: duckdb.DuckDBPyConnection, *, source: str | None = None) -> pd.DataFrame:
    sql = "SELECT * FROM quarantine"
    params: list[object] = []
    if source:
        sql += " WHERE source = ?"
        params.append(source)
    return con.execute(sql + " ORDER BY source, file_name, row_number", params).df()


def layer_counts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Rows per layer, with how many are synthetic where the layer has that flag."""
    rows = []
    for table, columns in schema.LAYERS.items():
        synth = "count(*) FILTER (WHERE is_synthetic)" if "is_synthetic" in columns else "0"
        total, synthetic = con.execute(f'SELECT count(*), {synth} FROM "{table}"').fetchone()
        rows.append({"couche": table, "lignes": total, "dont_simulees": synthetic})
    return pd.DataFrame(rows)


def qpv_generations(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT generation FROM qpv ORDER BY 1 DESC").fetchall()]


def departements_present(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    column = _DEPARTEMENT_COLUMN[table]
    return [r[0] for r in con.execute(f'SELECT DISTINCT "{column}" FROM "{table}" ORDER BY 1').fetchall()]
