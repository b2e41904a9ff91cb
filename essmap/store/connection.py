"""Opening the store: read-only connections that always see the current file, one cursor per thread.

DuckDB keeps one database instance per file path in a process, so a connection opened after an
ingest replaced the file would still read the old one while any connection to it lives. A reader
therefore opens a fresh in-memory instance and attaches the store file read-only
(:func:`connect`): every :func:`connect` sees the file as it is now. Geometry columns are DuckDB's
core GEOMETRY type (WKB in and out): reading needs no extension.

A DuckDB connection must not be shared by threads: :class:`SharedStore` hands each thread its own
cursor and reopens the store when an ingest has replaced the file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from essmap.domain.errors import StoreError

#: Catalog name of the attached store in a reader's connection.
CATALOG = "store"
#: Version of the table layout; a store of another version is rebuilt, not read.
FORMAT_VERSION = "4"


def spatial_extension_path() -> Path:
    """The spatial extension shipped by the ``duckdb-extension-spatial`` wheel (never downloaded)."""
    try:
        import duckdb_extension_spatial
    except ImportError as exc:  # pragma: no cover - optional (benchmarks)
        raise ImportError(
            "Le paquet duckdb-extension-spatial est requis : pip install "
            f"duckdb-extension-spatial=={duckdb.__version__}"
        ) from exc
    base = Path(duckdb_extension_spatial.__file__).parent / "extensions"
    found = sorted(base.glob("*/spatial.duckdb_extension"))
    if not found:
        raise ImportError(f"Extension spatiale DuckDB introuvable sous {base}.")
    return found[-1]


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No DuckDB progress bar (a per-connection setting): a query longer than two seconds would draw
    one, in English, in the middle of the CLI's output or the app's terminal. In a Jupyter kernel
    without ipywidgets DuckDB refuses to change the setting (it draws no bar there either)."""
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass
    return con


def connect(path: Path, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the store. Read-only by default: the app and queries never write.

    Several processes may hold read-only connections at once, including during a build (which
    writes another file and swaps it in).
    """
    path = Path(path)
    if not read_only:
        try:
            return _quiet(duckdb.connect(str(path)))
        except duckdb.Error as exc:
            raise StoreError(f"Impossible d'ouvrir la base « {path} » : {exc}") from exc
    if not path.exists():
        raise StoreError(
            f"Base de données introuvable : « {path} ». Solution : lancez `essmap build` "
            "(ou `make run`, qui la construit)."
        )
    con = _quiet(duckdb.connect(":memory:"))
    try:
        con.execute(f"ATTACH {_quoted(path.resolve())} AS {CATALOG} (READ_ONLY)")
        con.execute(f"USE {CATALOG}")
    except duckdb.Error as exc:
        con.close()
        raise StoreError(
            f"Impossible d'ouvrir la base « {path} » : ce n'est pas une base DuckDB lisible. "
            "Solution : reconstruisez-la avec `essmap build`."
        ) from exc
    if "sources" not in set(list_tables(con)):
        con.close()
        raise StoreError(
            f"« {path} » n'est pas une base essmap (table « sources » absente). "
            "Solution : reconstruisez-la avec `essmap build`."
        )
    found = con.execute("SELECT max(value) FROM essmap_meta WHERE key = 'format_version'").fetchone()
    if found is None or found[0] != FORMAT_VERSION:
        con.close()
        raise StoreError(
            f"La base « {path} » a été créée par une autre version d'essmap (format {found[0] if found else '?'}, "
            f"attendu {FORMAT_VERSION}). Solution : reconstruisez-la avec `essmap build` (ou `make run`), puis "
            "rechargez vos fichiers avec `essmap ingest`."
        )
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of a reader connection, for another thread (it reads the same attached store)."""
    cur = _quiet(con.cursor())
    cur.execute(f"USE {CATALOG}")
    return cur


def list_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() ORDER BY 1"
    ).fetchall()]


def file_identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when an ingest replaces the store (``os.replace`` gives a new inode)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class SharedStore:
    """The store of a long-running process (the dashboard): a cursor per use, reopened after ingests.

    :meth:`cursor` gives the calling thread its own cursor on the current connection. When the file
    has been replaced, the next :meth:`cursor` opens the new file; the old connection is closed
    as soon as its last cursor is done, which releases the old file's disk space.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._identity: tuple[int, int, int, int] | None = None
        self._users: dict[int, int] = {}
        self._retired: dict[int, duckdb.DuckDBPyConnection] = {}

    def identity(self) -> tuple[int, int, int, int]:
        """The identity of the file now: a cache key that changes with every ingest."""
        try:
            return file_identity(self.path)
        except FileNotFoundError as exc:
            raise StoreError(f"Base de données introuvable : « {self.path} ». Solution : lancez `essmap build`.") \
                from exc

    def _current(self) -> duckdb.DuckDBPyConnection:
        identity = self.identity()
        if self._con is None or identity != self._identity:
            fresh = connect(self.path)
            if self._con is not None:
                self._retire(self._con)
            self._con, self._identity = fresh, identity
        return self._con

    def _retire(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._users.get(id(con), 0) == 0:
            self._users.pop(id(con), None)
            con.close()
        else:
            self._retired[id(con)] = con

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            con = self._current()
            self._users[id(con)] = self._users.get(id(con), 0) + 1
            cur = cursor(con)
        try:
            yield cur
        finally:
            cur.close()
            with self._lock:
                self._users[id(con)] -= 1
                if id(con) in self._retired and self._users[id(con)] == 0:
                    self._retired.pop(id(con)).close()
                    self._users.pop(id(con), None)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._retire(self._con)
                self._con = None


def execute_literal(con: duckdb.DuckDBPyConnection, sql: str,
                    params: list[object] | tuple[object, ...] = ()) -> duckdb.DuckDBPyConnection:
    """``con.execute(sql, params)`` with every parameter written into the SQL as a literal.

    DuckDB's Python client imports pandas (0.6 to 1 s) before it binds any parameter that is not None;
    the queries of a command-line table run this way start without it. Literals: NULL, TRUE/FALSE,
    integers, a float as the text Python writes cast to DOUBLE (``'0.1'::DOUBLE``: the same double),
    a text quoted with its quotes doubled (DuckDB gives no other character a meaning there), lists.
    """
    return con.execute(sql_with_literals(sql, params))


def sql_with_literals(sql: str, params: list[object] | tuple[object, ...]) -> str:
    """``sql`` with each ``?`` placeholder outside quotes replaced by its parameter's literal."""
    pieces: list[str] = []
    values = iter(params)
    quote = ""
    start = 0
    for position, character in enumerate(sql):
        if quote:
            if character == quote:  # a doubled quote closes and reopens: same state either way
                quote = ""
        elif character in "'\"":
            quote = character
        elif character == "?":
            value = next(values, _END)
            if value is _END:
                raise ValueError("fewer parameters than placeholders")
            pieces += [sql[start:position], _literal(value)]
            start = position + 1
    if quote:
        raise ValueError("unterminated quote in SQL")
    if next(values, _END) is not _END:
        raise ValueError("more parameters than placeholders")
    return "".join(pieces) + sql[start:]


_END = object()


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"({value})"
    if isinstance(value, float):
        return f"'{value!r}'::DOUBLE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    raise TypeError(f"no SQL literal for {type(value).__name__}")
