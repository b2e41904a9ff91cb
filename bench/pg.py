"""PostGIS baseline of the point in polygon: a throw-away PostgreSQL cluster, the same layers loaded.

The cluster lives in a temporary folder, listens only on a Unix socket inside it (no TCP), is
started with ``pg_ctl`` (as the ``postgres`` user when the benchmark runs as root, since
PostgreSQL refuses to run as root) and is always stopped and deleted on exit, even on error or
Ctrl-C. The binaries are Debian's ``/usr/lib/postgresql/<major>/bin`` of the newest major that has
the PostGIS extension installed (``PG_BINDIR`` overrides).

Loading (COPY of hex EWKB, GiST indexes, ``ANALYZE``) is done once and timed apart; the query is
timed alone, written the way a GIS analyst writes it: ``CREATE UNLOGGED TABLE ... AS SELECT p.i,
q.j FROM polys q JOIN pts p ON ST_Intersects(q.geom, p.geom)`` on geometry in EPSG:4326 (the
topology of lon/lat coordinates, as essmap), with up to 2 parallel workers.
"""

from __future__ import annotations

import atexit
import io
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely

#: Server settings for a 2-core, 24 GB machine. Durability is off (fsync, full page writes):
#: it only speeds up loading, which is not timed. JIT is off: it compiles for ~100 ms on each
#: heavy query and brings nothing to PostGIS function calls.
SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "2GB",
    "work_mem": "256MB",
    "maintenance_work_mem": "1GB",
    "effective_cache_size": "12GB",
    "max_worker_processes": "8",
    "max_parallel_workers": "4",
    "max_parallel_workers_per_gather": "2",
    "max_parallel_maintenance_workers": "2",
    "random_page_cost": "1.1",
    "jit": "off",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "listen_addresses": "",
}


class PostgisUnavailable(RuntimeError):
    """No PostgreSQL server with PostGIS on this machine."""


def find_bindir() -> Path:
    """``PG_BINDIR``, else the newest Debian PostgreSQL whose PostGIS extension is installed."""
    if os.environ.get("PG_BINDIR"):
        path = Path(os.environ["PG_BINDIR"])
        if not (path / "pg_ctl").is_file():
            raise PostgisUnavailable(f"PG_BINDIR={path} has no pg_ctl")
        return path
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        major = bindir.parent.name
        if (bindir / "pg_ctl").is_file() and Path(f"/usr/share/postgresql/{major}/extension/postgis.control").is_file():
            candidates.append((int(major) if major.isdigit() else 0, bindir))
    if not candidates:
        raise PostgisUnavailable(
            "no PostgreSQL with PostGIS found under /usr/lib/postgresql; "
            "run `bash bench/install-system-deps.sh` (or `make bench`, which runs it)"
        )
    return max(candidates)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running throw-away cluster (see :func:`cluster`)."""

    bindir: Path
    root: Path
    port: int
    user: str = "bench"

    @property
    def conninfo(self) -> str:
        return f"host={self.root} port={self.port} user={self.user} dbname=postgres"

    def connect(self):
        import psycopg

        return psycopg.connect(self.conninfo, autocommit=True)

    def version(self) -> str:
        with self.connect() as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
            postgis = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        return f"PostgreSQL {server.split()[0]}, PostGIS {postgis}"


def _as_owner(cmd: Sequence[object], owner: str | None) -> list[str]:
    return (["runuser", "-u", owner, "--"] if owner else []) + [str(c) for c in cmd]


@contextmanager
def cluster(*, log=print) -> Iterator[Cluster]:
    """Start a private PostgreSQL cluster with PostGIS; stop and delete it on exit."""
    bindir = find_bindir()
    owner = None
    if os.geteuid() == 0:
        owner = "postgres"
        try:
            pw = pwd.getpwnam(owner)
        except KeyError as exc:
            raise PostgisUnavailable("running as root but there is no `postgres` user to run the server") from exc
    root = Path(tempfile.mkdtemp(prefix="essmap-bench-pg-"))
    if owner:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data = root / "data"
    logfile = root / "server.log"
    port = _free_port()
    started = False

    def stop() -> None:
        nonlocal started
        if started:
            for mode in ("fast", "immediate"):
                command = [bindir / "pg_ctl", "-D", data, "-m", mode, "-w", "-t", "60", "stop"]
                done = subprocess.run(_as_owner(command, owner),
                                      capture_output=True, text=True)
                if done.returncode == 0:
                    break
            started = False
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # turn SIGTERM into an exception so that cleanup runs
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        subprocess.run(_as_owner([bindir / "initdb", "-D", data, "-U", "bench", "-A", "trust", "-E", "UTF8",
                                  "--no-locale", "--no-sync"], owner), check=True, capture_output=True, text=True)
        options = " ".join(f"-c {k}={v!s}" if v else f"-c {k}=''" for k, v in SERVER_SETTINGS.items())
        cmd = [bindir / "pg_ctl", "-D", data, "-l", logfile, "-w", "-t", "120",
               "-o", f"-p {port} -k {root} {options}", "start"]
        done = subprocess.run(_as_owner(cmd, owner), capture_output=True, text=True)
        started = True  # pg_ctl may have started it even when it reports a failure
        if done.returncode != 0:
            server_log = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
            raise PostgisUnavailable(f"pg_ctl start failed: {done.stderr.strip()}\n{server_log}")
        result = Cluster(bindir, root, port)
        with result.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        log(f"postgis: cluster started ({result.version()}, {bindir}, socket in {root})")
        yield result
    except subprocess.CalledProcessError as exc:
        raise PostgisUnavailable(f"{exc.cmd[0] if exc.cmd else 'initdb'} failed: {exc.stderr}") from exc
    finally:
        stop()
        atexit.unregister(stop)
        signal.signal(signal.SIGTERM, previous)


# --- Loading -------------------------------------------------------------------------------------


def _copy(conn, table: str, columns: dict[str, np.ndarray], *, chunk: int = 250_000) -> None:
    """COPY the columns (the last one geometries, written as hex EWKB with SRID 4326) into ``table``."""
    names = list(columns)
    total = len(next(iter(columns.values())))
    # No header anywhere: the column list of the COPY names the fields.
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, total, chunk):
            arrays = {}
            for name, values in columns.items():
                part = values[start:start + chunk]
                if name == "geom":
                    part = shapely.to_wkb(shapely.set_srid(part, 4326), hex=True, include_srid=True)
                arrays[name] = pa.array(part)
            buffer = io.BytesIO()
            pacsv.write_csv(pa.table(arrays), buffer, write_options=pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getvalue())


def load_pip(cl: Cluster, points: gpd.GeoDataFrame, layers: dict[str, gpd.GeoDataFrame], *,
             log=print) -> dict[str, float]:
    """Points as ``pts (i, geom)`` and each polygon layer as ``polys_<key> (j, geom)``, GiST-indexed and
    analysed; returns the seconds each step took."""
    timings: dict[str, float] = {}
    with cl.connect() as conn:
        started = time.perf_counter()
        conn.execute("CREATE TABLE pts (i bigint, geom geometry(Point, 4326))")
        geoms = np.asarray(points.geometry.array, dtype=object)
        present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        _copy(conn, "pts", {"i": np.flatnonzero(present), "geom": geoms[present]})
        for key, polygons in layers.items():
            conn.execute(f"CREATE TABLE polys_{key} (j bigint, geom geometry(Geometry, 4326))")
            shapes = np.asarray(polygons.geometry.array, dtype=object)
            keep = ~shapely.is_missing(shapes)
            _copy(conn, f"polys_{key}", {"j": np.flatnonzero(keep), "geom": shapes[keep]})
        timings["copy"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("CREATE INDEX ON pts USING gist (geom)")
        for key in layers:
            conn.execute(f"CREATE INDEX ON polys_{key} USING gist (geom)")
        conn.execute("VACUUM ANALYZE")
        timings["index_analyze"] = time.perf_counter() - started
    log(f"postgis: loaded {len(points):,} points and {len(layers)} polygon layer(s) in {sum(timings.values()):.1f} s")
    return timings


def settings(cl: Cluster) -> dict[str, str]:
    with cl.connect() as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
            "('shared_buffers','work_mem','max_parallel_workers_per_gather','jit') ORDER BY name").fetchall()
    return {name: value for name, value in rows}


def pip_join(cl: Cluster, key: str) -> float:
    """Seconds of the point-in-polygon join of layer ``key``, materialised in ``pip_result`` (kept)."""
    with cl.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS pip_result")
        started = time.perf_counter()
        conn.execute(f"CREATE UNLOGGED TABLE pip_result AS SELECT p.i, q.j FROM polys_{key} q "
                     "JOIN pts p ON ST_Intersects(q.geom, p.geom)")
        return time.perf_counter() - started


def pip_pairs(cl: Cluster) -> tuple[np.ndarray, np.ndarray]:
    """The (point, polygon) positions of the last :func:`pip_join`."""
    with cl.connect() as conn:
        rows = conn.execute("SELECT i, j FROM pip_result").fetchall()
    pairs = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def explain(cl: Cluster, key: str) -> str:
    """The plan of the join, for the record (EXPLAIN without ANALYZE: nothing runs)."""
    with cl.connect() as conn:
        rows = conn.execute(f"EXPLAIN SELECT p.i, q.j FROM polys_{key} q JOIN pts p ON ST_Intersects(q.geom, p.geom)"
                            ).fetchall()
    return "\n".join(r[0] for r in rows)
