"""Opening the store: the spatial extension from its wheel, read-only connections for readers."""

from __future__ import annotations

from pathlib import Path

import duckdb

from essmap.domain.errors import StoreError


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


def prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
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
    prepare(con)
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

