"""PostGIS baseline: a throw-away PostgreSQL cluster, the same layers loaded, the analyst's queries.

The cluster lives in a temporary folder, listens only on a Unix socket inside it (no TCP), is
started with ``pg_ctl`` (as the ``postgres`` user when the benchmark runs as root, since
PostgreSQL refuses to run as root) and is always stopped and deleted on exit, even on error or
Ctrl-C. The binaries are Debian's ``/usr/lib/postgresql/<major>/bin`` of the newest major that has
the PostGIS extension installed (``PG_BINDIR`` overrides).

Loading (COPY of hex EWKB, GiST indexes, ``ANALYZE``) is done once and not timed; only the
queries are timed. The queries are written the way a GIS analyst would write them:

- (a) ``LEFT JOIN ... ON ST_Contains(polygon, point)`` against QPVs and communes, materialised
  into an unlogged table;
- (b) per QPV: ``count(*)`` of tiers-lieux with ``ST_DWithin(..., 1000)`` and the nearest one by
  ``LATERAL (... ORDER BY <-> LIMIT 1)``, in two variants: on ``geography`` (geodesic metres)
  and on geometry transformed to each territory's metric CRS (one sub-query per EPSG code, with
  partial GiST indexes), the faster of the two being the baseline;
- (c) the commune indicator table as one ``GROUP BY`` query (see :mod:`cases`).
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
import pandas as pd
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


def _as_owner(cmd: Sequence[str], owner: str | None) -> list[str]:
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
                done = subprocess.run(_as_owner([bindir / "pg_ctl", "-D", data, "-m", mode, "-w", "-t", "60", "stop"], owner),
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


def _copy(conn, table: str, frame: pd.DataFrame, geometry: np.ndarray, columns: Sequence[str], *, chunk: int = 250_000) -> None:
    """COPY ``frame[columns]`` plus the geometry (hex EWKB, SRID 4326) into ``table``."""
    names = ", ".join([*columns, "geom"])
    # No header anywhere: the column list of the COPY names the fields, so a chunk can never
    # put a header line where a data row is expected.
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, len(frame), chunk):
            part = frame.iloc[start:start + chunk]
            geoms = shapely.set_srid(geometry[start:start + chunk], 4326)
            arrays = {c: pa.array(part[c].astype(object).where(part[c].notna(), None).tolist()) for c in columns}
            arrays["geom"] = pa.array(shapely.to_wkb(geoms, hex=True, include_srid=True))
            buffer = io.BytesIO()
            pacsv.write_csv(pa.table(arrays), buffer, write_options=pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getvalue())


def load(cl: Cluster, *, communes: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame, establishments: gpd.GeoDataFrame,
         tiers_lieux: gpd.GeoDataFrame, log=print) -> dict[str, float]:
    """Create and fill the tables with their indexes; returns the seconds each step took."""
    timings: dict[str, float] = {}
    with cl.connect() as conn:
        t0 = time.perf_counter()
        conn.execute("""
            CREATE TABLE communes (code_insee text, nom text, type_commune text, code_commune_parent text,
                                   code_departement text, territoire text, epsg int, population bigint,
                                   geom geometry(MultiPolygon, 4326));
            CREATE TABLE qpv (code_qp text, insee_com text, territoire text, epsg int, geom geometry(Geometry, 4326),
                              geog geography, geom_m geometry);
            CREATE TABLE etab (siret text, siren text, code_commune text, famille text, secteur text, employeur boolean,
                               territoire text, code_qp text, geom geometry(Point, 4326));
            CREATE TABLE tiers_lieux (id_tiers_lieu text, code_commune text, territoire text, epsg int,
                                      geom geometry(Point, 4326), geog geography, geom_m geometry);
        """)
        c = communes.assign(epsg=communes["epsg_metrique"])
        _copy(conn, "communes", c, communes.geometry.values,
              ["code_insee", "nom", "type_commune", "code_commune_parent", "code_departement", "territoire", "epsg",
               "population"])
        _copy(conn, "qpv", qpv.assign(epsg=qpv["epsg_metrique"]), qpv.geometry.values,
              ["code_qp", "insee_com", "territoire", "epsg"])
        _copy(conn, "tiers_lieux", tiers_lieux.assign(epsg=tiers_lieux["epsg_metrique"]), tiers_lieux.geometry.values,
              ["id_tiers_lieu", "code_commune", "territoire", "epsg"])
        e = establishments
        _copy(conn, "etab", e, e.geometry.values,
              ["siret", "siren", "code_commune", "famille", "secteur", "employeur", "territoire"])
        timings["copy"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        conn.execute("""
            UPDATE qpv SET geog = geom::geography, geom_m = ST_Transform(geom, epsg);
            UPDATE tiers_lieux SET geog = geom::geography, geom_m = ST_Transform(geom, epsg);
        """)
        timings["transform"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        statements = [
            "CREATE INDEX ON communes USING gist (geom)",
            "CREATE INDEX ON communes (code_insee)",
            "CREATE INDEX ON qpv USING gist (geom)",
            "CREATE INDEX ON qpv USING gist (geog)",
            "CREATE INDEX ON tiers_lieux USING gist (geom)",
            "CREATE INDEX ON tiers_lieux USING gist (geog)",
            "CREATE INDEX ON etab USING gist (geom)",
            "CREATE INDEX ON etab (code_commune)",
        ]
        for epsg in metric_epsgs(conn):
            statements.append(f"CREATE INDEX ON qpv USING gist (geom_m) WHERE epsg = {epsg}")
            statements.append(f"CREATE INDEX ON tiers_lieux USING gist (geom_m) WHERE epsg = {epsg}")
        for sql in statements:
            conn.execute(sql)
        conn.execute("VACUUM ANALYZE")
        timings["index_analyze"] = time.perf_counter() - t0
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("communes", "qpv", "etab", "tiers_lieux")}
    log(f"postgis: loaded {counts} in {sum(timings.values()):.1f} s "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return timings


def metric_epsgs(conn) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT DISTINCT epsg FROM qpv ORDER BY 1").fetchall()]


# --- Queries -------------------------------------------------------------------------------------

#: (a) every establishment with the QPV and the commune that contain it (COM polygons: the
#: arrondissements of Paris, Lyon and Marseille overlap their commune and are left out).
#: "plain": the LEFT JOINs an analyst writes first; the planner drives them from the points.
ASSIGN_PLAIN_SQL = """
CREATE UNLOGGED TABLE bench_assign AS
SELECT e.siret, q.code_qp, c.code_insee
FROM etab e
LEFT JOIN qpv q ON ST_Contains(q.geom, e.geom)
LEFT JOIN communes c ON c.type_commune = 'COM' AND ST_Contains(c.geom, e.geom)
"""

#: "polygon-driven": inner joins from the polygons (each polygon probes the point index, so
#: PostGIS reuses its prepared polygon for all the points in it), left-joined back by SIRET.
ASSIGN_POLYGON_DRIVEN_SQL = """
CREATE UNLOGGED TABLE bench_assign AS
WITH in_qpv AS (
    SELECT e.siret, q.code_qp FROM qpv q JOIN etab e ON ST_Contains(q.geom, e.geom)
), in_commune AS (
    SELECT e.siret, c.code_insee FROM communes c JOIN etab e ON ST_Contains(c.geom, e.geom)
    WHERE c.type_commune = 'COM'
)
SELECT e.siret, a.code_qp, b.code_insee
FROM etab e
LEFT JOIN in_qpv a USING (siret)
LEFT JOIN in_commune b USING (siret)
"""

ASSIGN_VARIANTS: dict[str, str] = {"plain LEFT JOIN": ASSIGN_PLAIN_SQL, "polygon-driven joins": ASSIGN_POLYGON_DRIVEN_SQL}


def assign_summary(conn) -> dict[str, int]:
    rows, in_qpv, with_commune = conn.execute(
        "SELECT count(*), count(code_qp), count(code_insee) FROM bench_assign").fetchone()
    return {"rows": int(rows), "in_qpv": int(in_qpv), "with_commune": int(with_commune)}


def assign_frame(conn) -> pd.DataFrame:
    """The (a) result, one row per establishment (first match kept on overlaps)."""
    rows = conn.execute("SELECT DISTINCT ON (siret) siret, code_qp, code_insee FROM bench_assign ORDER BY siret, code_qp, code_insee").fetchall()
    return pd.DataFrame(rows, columns=["siret", "code_qp", "code_insee"])


def keep_assignment(conn) -> None:
    """Store (a)'s QPV in ``etab.code_qp``, for the indicator query that takes it as given."""
    conn.execute("""
        UPDATE etab e SET code_qp = a.code_qp
        FROM (SELECT DISTINCT ON (siret) siret, code_qp FROM bench_assign WHERE code_qp IS NOT NULL ORDER BY siret, code_qp) a
        WHERE a.siret = e.siret
    """)
    conn.execute("VACUUM ANALYZE etab")


#: (b) on geography: geodesic metres, one GiST index per table.
QPV_TIERS_LIEUX_GEOGRAPHY_SQL = """
SELECT q.code_qp,
       (SELECT count(*) FROM tiers_lieux t WHERE ST_DWithin(q.geog, t.geog, %(radius)s)) AS n_within,
       n.id_tiers_lieu AS nearest, n.distance_m
FROM qpv q
LEFT JOIN LATERAL (
    SELECT t.id_tiers_lieu, ST_Distance(q.geog, t.geog) AS distance_m
    FROM tiers_lieux t
    ORDER BY q.geog <-> t.geog
    LIMIT 1
) n ON true
"""

_QPV_TIERS_LIEUX_METRIC_PART = """
SELECT q.code_qp,
       (SELECT count(*) FROM tiers_lieux t
        WHERE t.epsg = {epsg} AND ST_DWithin(q.geom_m, t.geom_m, %(radius)s)) AS n_within,
       n.id_tiers_lieu AS nearest, n.distance_m
FROM qpv q
LEFT JOIN LATERAL (
    SELECT t.id_tiers_lieu, ST_Distance(q.geom_m, t.geom_m) AS distance_m
    FROM tiers_lieux t
    WHERE t.epsg = {epsg}
    ORDER BY q.geom_m <-> t.geom_m
    LIMIT 1
) n ON true
WHERE q.epsg = {epsg}
"""


def qpv_tiers_lieux_metric_sql(epsgs: Sequence[int]) -> str:
    """(b) on each territory's metric CRS: one sub-query per EPSG code, glued by UNION ALL."""
    return "\nUNION ALL\n".join(_QPV_TIERS_LIEUX_METRIC_PART.format(epsg=int(e)) for e in epsgs)


#: (c) the commune indicator table as one query: establishments and tiers-lieux grouped by
#: their commune code (arrondissements rolled up to their commune), QPVs counted in each
#: commune they list (``insee_com``), covered when a tiers-lieu is within the radius
#: (geography). ``{in_qpv}`` is replaced by the expression telling whether an establishment is
#: in a QPV: the stored result of (a), or a spatial test run by the query itself.
_INDICATORS_SQL = """
WITH parent AS (
    SELECT code_insee, code_commune_parent FROM communes WHERE type_commune = 'ARM'
), est AS (
    SELECT COALESCE(p.code_commune_parent, e.code_commune) AS code, e.siren, e.employeur,
           {in_qpv} AS in_qpv
    FROM etab e LEFT JOIN parent p ON p.code_insee = e.code_commune
), e_agg AS (
    SELECT code, count(*) AS n, count(*) FILTER (WHERE employeur) AS n_emp,
           count(DISTINCT siren) AS n_org, count(*) FILTER (WHERE in_qpv) AS n_in_qpv,
           count(*) FILTER (WHERE employeur AND in_qpv) AS n_emp_in_qpv
    FROM est GROUP BY code
), t_agg AS (
    SELECT COALESCE(p.code_commune_parent, t.code_commune) AS code, count(*) AS n_tl
    FROM tiers_lieux t LEFT JOIN parent p ON p.code_insee = t.code_commune
    GROUP BY 1
), cov AS (
    SELECT q.code_qp, q.insee_com,
           EXISTS (SELECT 1 FROM tiers_lieux t WHERE ST_DWithin(q.geog, t.geog, %(radius)s)) AS covered
    FROM qpv q
), q_agg AS (
    SELECT COALESCE(p.code_commune_parent, qc.code) AS code, count(DISTINCT cov.code_qp) AS n_qpv,
           count(DISTINCT cov.code_qp) FILTER (WHERE cov.covered) AS n_cov
    FROM cov CROSS JOIN LATERAL unnest(string_to_array(cov.insee_com, ',')) AS qc(code)
    LEFT JOIN parent p ON p.code_insee = qc.code
    GROUP BY 1
)
SELECT c.code_insee AS code, c.nom, c.population,
       COALESCE(e.n, 0) AS n_etablissements,
       COALESCE(e.n_emp, 0) AS n_etablissements_employeurs,
       COALESCE(e.n_org, 0) AS n_organisations,
       CASE WHEN c.population > 0 THEN COALESCE(e.n, 0) * 10000.0 / c.population END AS etablissements_pour_10k_hab,
       CASE WHEN c.population > 0 THEN COALESCE(e.n_emp, 0) * 10000.0 / c.population END
           AS etablissements_employeurs_pour_10k_hab,
       COALESCE(e.n_in_qpv, 0) AS n_etablissements_en_qpv,
       CASE WHEN e.n > 0 THEN e.n_in_qpv::float8 / e.n END AS part_etablissements_en_qpv,
       CASE WHEN e.n > 0 THEN 1 - e.n_in_qpv::float8 / e.n END AS part_etablissements_hors_qpv,
       COALESCE(e.n_emp_in_qpv, 0) AS n_employeurs_en_qpv,
       CASE WHEN e.n_emp > 0 THEN e.n_emp_in_qpv::float8 / e.n_emp END AS part_employeurs_en_qpv,
       COALESCE(t.n_tl, 0) AS n_tiers_lieux,
       COALESCE(q.n_qpv, 0) AS n_qpv,
       COALESCE(q.n_cov, 0) AS n_qpv_avec_tiers_lieu,
       CASE WHEN q.n_qpv > 0 THEN q.n_cov::float8 / q.n_qpv END AS part_qpv_avec_tiers_lieu
FROM communes c
LEFT JOIN e_agg e ON e.code = c.code_insee
LEFT JOIN t_agg t ON t.code = c.code_insee
LEFT JOIN q_agg q ON q.code = c.code_insee
WHERE c.type_commune = 'COM'
ORDER BY c.code_insee
"""

#: (c) with the QPV of each establishment given (stored from (a) by :func:`keep_assignment`).
INDICATORS_GIVEN_QPV_SQL = _INDICATORS_SQL.format(in_qpv="e.code_qp IS NOT NULL")
#: (c) from the layers alone: the query finds the QPV of each establishment itself.
INDICATORS_FULL_SQL = _INDICATORS_SQL.format(
    in_qpv="EXISTS (SELECT 1 FROM qpv q WHERE ST_Contains(q.geom, e.geom))")
INDICATOR_COLUMNS = (
    "code", "nom", "population", "n_etablissements", "n_etablissements_employeurs", "n_organisations",
    "etablissements_pour_10k_hab", "etablissements_employeurs_pour_10k_hab", "n_etablissements_en_qpv",
    "part_etablissements_en_qpv", "part_etablissements_hors_qpv", "n_employeurs_en_qpv",
    "part_employeurs_en_qpv", "n_tiers_lieux", "n_qpv", "n_qpv_avec_tiers_lieu", "part_qpv_avec_tiers_lieu",
)


def timed(conn, sql: str, params: dict | None = None, *, fetch: bool = True) -> tuple[float, list | None]:
    """Seconds the query took as seen by the client (rows fetched included), and the rows."""
    t0 = time.perf_counter()
    cur = conn.execute(sql, params)
    rows = cur.fetchall() if fetch else None
    return time.perf_counter() - t0, rows


def explain(conn, sql: str, params: dict | None = None) -> str:
    """The plan, for the record (EXPLAIN without ANALYZE: nothing runs)."""
    rows = conn.execute("EXPLAIN " + sql, params).fetchall()
    return "\n".join(r[0] for r in rows)
