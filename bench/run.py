"""``make bench``: essmap's spatial engine against PostGIS and plain GeoPandas, in one run.

Cases (national scale by default; ``--small`` for a smoke run):

(a) assign each of 2 million establishments to its QPV and its commune;
(b) QPV x tiers-lieux within 1 km, with each QPV's nearest tiers-lieu;
(c) the indicator table of all communes (``indicators_by_level("commune", ...)``);
(d) ``read_sirene`` on a synthetic national stock (5 million establishments, 1.5 million ESS),
    with its peak memory.

Each case is the median of several runs (fewer for the heavy ones: a case stops repeating once
its runs add up to its time budget). Baselines run on the same data in the same run: PostGIS
(throw-away cluster, data loaded and indexed before timing, query time only) and GeoPandas.
Results go to ``bench/RESULTS.md`` (``--small``: ``bench/out/RESULTS-small.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(HERE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

import cases  # noqa: E402
import geopandas as gpd  # noqa: E402
import national_data as nd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sirene_stock  # noqa: E402
from cases import Timing, measure  # noqa: E402
from essmap.memory import keep_freed_memory  # noqa: E402

RESULTS = HERE / "RESULTS.md"
SMALL_RESULTS = nd.OUT_DIR / "RESULTS-small.md"

#: Targets of the spatial engine (seconds, and the minimum speed-up over PostGIS for (a)).
TARGET_ASSIGN_S = 1.0
TARGET_ASSIGN_VS_POSTGIS = 10.0
TARGET_QPV_TIERS_LIEUX_S = 0.020
TARGET_INDICATORS_S = 1.0
TARGET_INGEST_S = 120.0
TARGET_INGEST_PEAK_GB = 4.0


def log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", flush=True)


@dataclass
class Results:
    """Everything the report needs, filled as the run goes."""

    small: bool
    seed: int
    started: float = field(default_factory=time.perf_counter)
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    data: dict[str, object] = field(default_factory=dict)
    timings: dict[str, Timing] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def time(self, key: str, fn, *, repeat: int, budget_s: float = float("inf"), before=None):
        log(f"{key}: running (up to {repeat} runs)")
        timing, result = measure(fn, repeat=repeat, budget_s=budget_s, before=before)
        self.timings[key] = timing
        log(f"{key}: median {timing.median:.4f} s over {timing.n} run(s) {[round(r, 4) for r in timing.runs]}")
        return result

    def median(self, key: str) -> float | None:
        timing = self.timings.get(key)
        return timing.median if timing and timing.runs else None


def _guard(results: Results, name: str, fn) -> None:
    """Run one part; a failure is recorded in the report instead of ending the run."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - reported in RESULTS.md
        results.errors[name] = f"{type(exc).__name__}: {exc}"
        log(f"{name}: FAILED: {exc}")
        traceback.print_exc()


# --- The parts of the run ----------------------------------------------------------------------


def run_essmap(results: Results, data: nd.NationalData, repeat: int) -> dict[str, object]:
    """(a), (b), (c) with essmap, the loading pieces and the profile of (a)."""
    communes_com = cases.com_polygons(data.communes)
    e, q, tl = data.establishments, data.qpv, data.tiers_lieux
    out: dict[str, object] = {}

    # warm-up on a slice: imports, pyproj transformer caches (not timed)
    cases.assign_essmap(e.iloc[:2_000], q, communes_com)
    cases.qpv_tiers_lieux_essmap(q.iloc[:50], tl)

    from essmap import geo

    # what (a) builds once per polygon layer and then reuses, as PostGIS its GiST index: timed on its own
    # (the cache emptied before each run), then kept for (a)
    results.time("a.essmap.index", lambda: cases.build_polygon_layers(q, communes_com), repeat=3, budget_s=20,
                 before=geo.contains._POLYGON_CACHE.clear)

    # the first full-size call of a process also pays for the first touch of the memory its arrays use (the
    # allocator then reuses it): measured on its own, reported as (a‴), and kept out of the median of (a)
    results.time("a.essmap.first_call", lambda: cases.assign_essmap(e, q, communes_com), repeat=1)
    assign = results.time("a.essmap", lambda: cases.assign_essmap(e, q, communes_com), repeat=repeat, budget_s=40)
    out["assign"] = assign
    results.facts["a.essmap.summary"] = cases.summarise_assign(assign)
    results.time("a.essmap.one_thread", lambda: cases.assign_essmap(e, q, communes_com, threads=1), repeat=repeat,
                 budget_s=30)
    by_code = results.time("a.essmap.by_code", lambda: cases.assign_essmap_by_code(e, q, communes_com, data.communes),
                           repeat=repeat, budget_s=30)
    results.facts["a.essmap.by_code.agreement"] = cases.compare_assign(assign, by_code)
    results.facts["a.essmap.by_code.located"] = int(
        (~cases.parent_codes_known(e, communes_com, data.communes)).sum())
    results.time("a.essmap.qpv_only", lambda: cases.assign_essmap_qpv_only(e, q), repeat=repeat, budget_s=20)
    log("a.essmap: profiling one run")
    results.facts["a.profile"] = cases.profile_assign(e, q, communes_com, dump=nd.OUT_DIR / "profile-assign.txt")

    # cold: the cache of metric reprojections emptied before each run (a first query)
    results.time("b.essmap.cold", lambda: cases.qpv_tiers_lieux_essmap(q, tl), repeat=max(repeat, 7), budget_s=20,
                 before=geo.distance._METRIC_CACHE.clear)
    near = results.time("b.essmap", lambda: cases.qpv_tiers_lieux_essmap(q, tl), repeat=max(repeat, 7), budget_s=20)
    out["qpv_tiers_lieux"] = near
    results.facts["b.essmap.summary"] = cases.summarise_qpv_tiers_lieux(near)

    communes = data.communes
    table = results.time("c.essmap.full", lambda: cases.indicators_essmap(communes, e, tl, q), repeat=repeat, budget_s=40)
    out["indicators"] = table
    in_qpv = assign["code_qp"]
    results.time("c.essmap.given_qpv", lambda: cases.indicators_essmap(communes, e, tl, q, in_qpv=in_qpv),
                 repeat=repeat, budget_s=30)
    results.facts["c.essmap.rows"] = len(table)
    return out


def run_loading(results: Results, data: nd.NationalData, repeat: int) -> None:
    """Loading pieces around (a): the layers read from essmap's DuckDB store and from GeoParquet."""
    from essmap import store

    folder = nd.cache_dir(data.sizes, data.seed)
    db = folder / "essmap-store.duckdb"
    if not db.exists():
        log("loading: building an essmap store with the national layers (once, cached)")
        started = time.perf_counter()
        with store.atomic_update(db, start_empty=True) as con:
            store.replace_rows(con, "communes", data.communes)
            store.replace_rows(con, "qpv", data.qpv)
            store.replace_rows(con, "etablissements", data.establishments)
            store.replace_rows(con, "tiers_lieux", data.tiers_lieux)
        log(f"loading: store built in {time.perf_counter() - started:.1f} s")

    def from_store():
        con = store.connect(db)
        try:
            return {t: store.read_layer(con, t) for t in ("etablissements", "qpv", "communes")}
        finally:
            con.close()

    layers = results.time("a.load.store", from_store, repeat=min(repeat, 3), budget_s=60)
    results.facts["a.load.store.rows"] = {k: len(v) for k, v in layers.items()}
    results.time("a.load.geoparquet",
                 lambda: [gpd.read_parquet(folder / f"{n}.parquet") for n in ("establishments", "qpv", "communes")],
                 repeat=min(repeat, 3), budget_s=40)


def run_geopandas(results: Results, data: nd.NationalData, essmap_out: dict[str, object], repeat: int) -> None:
    communes_com = cases.com_polygons(data.communes)
    e, q, tl = data.establishments, data.qpv, data.tiers_lieux
    assign = results.time("a.geopandas", lambda: cases.assign_geopandas(e, q, communes_com), repeat=min(repeat, 3), budget_s=60)
    results.facts["a.geopandas.summary"] = cases.summarise_assign(assign)
    if "assign" in essmap_out:
        results.facts["a.geopandas.agreement"] = cases.compare_assign(essmap_out["assign"], assign)
    near = results.time("b.geopandas", lambda: cases.qpv_tiers_lieux_geopandas(q, tl), repeat=repeat, budget_s=30)
    results.facts["b.geopandas.summary"] = cases.summarise_qpv_tiers_lieux(near)
    if "qpv_tiers_lieux" in essmap_out:
        results.facts["b.geopandas.agreement"] = cases.compare_qpv_tiers_lieux(essmap_out["qpv_tiers_lieux"], near)


def run_postgis(results: Results, data: nd.NationalData, essmap_out: dict[str, object], repeat: int) -> None:
    import pg

    communes_com = cases.com_polygons(data.communes)
    plans: list[str] = []
    with pg.cluster(log=log) as cl:
        results.versions["postgis"] = cl.version()
        load_times = pg.load(cl, communes=data.communes, qpv=data.qpv, establishments=data.establishments,
                             tiers_lieux=data.tiers_lieux, log=log)
        results.facts["postgis.load_s"] = load_times
        with cl.connect() as conn:
            results.versions["postgis_full"] = conn.execute("SELECT postgis_full_version()").fetchone()[0]
            settings = conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers','work_mem','max_parallel_workers_per_gather','jit') ORDER BY name").fetchall()
            results.facts["postgis.settings"] = {k: v for k, v in settings}

            # (a): two ways of writing the join; the faster is the baseline
            budgets = {"plain LEFT JOIN": 60.0, "polygon-driven joins": 90.0}
            for label, sql in pg.ASSIGN_VARIANTS.items():
                conn.execute("DROP TABLE IF EXISTS bench_assign")
                plans.append(f"-- (a) {label}\n{pg.explain(conn, sql)}")
                key = f"a.postgis.{label}"

                def run(sql=sql):
                    conn.execute("DROP TABLE IF EXISTS bench_assign")
                    return pg.timed(conn, sql, fetch=False)[0]

                log(f"{key}: running")
                timing = Timing()
                for _ in range(max(1, min(repeat, 3))):
                    timing.runs.append(run())
                    if sum(timing.runs) > budgets[label]:
                        break
                results.timings[key] = timing
                log(f"{key}: median {timing.median:.2f} s over {timing.n} run(s) {[round(r, 2) for r in timing.runs]}")
                results.facts[f"{key}.summary"] = pg.assign_summary(conn)
            frame = pg.assign_frame(conn)
            if "assign" in essmap_out:
                ours = essmap_out["assign"]
                ref = pd.DataFrame({"siret": data.establishments["siret"].to_numpy(dtype=object),
                                    "code_qp": ours["code_qp"].to_numpy(dtype=object),
                                    "code_insee": ours["code_insee"].to_numpy(dtype=object)}).sort_values("siret")
                theirs = frame.set_index("siret").reindex(ref["siret"]).reset_index()
                results.facts["a.postgis.agreement"] = cases.compare_assign(ref.reset_index(drop=True), theirs)
            pg.keep_assignment(conn)
            conn.execute("DROP TABLE IF EXISTS bench_assign")

            # (b): geography and per-territory metric CRS
            params = {"radius": cases.RADIUS_M}
            variants = {"geography": pg.QPV_TIERS_LIEUX_GEOGRAPHY_SQL,
                        "metric CRS per territory": pg.qpv_tiers_lieux_metric_sql(pg.metric_epsgs(conn))}
            for label, sql in variants.items():
                plans.append(f"-- (b) {label}\n{pg.explain(conn, sql, params)}")
                key = f"b.postgis.{label}"
                rows_box: list = []

                def run(sql=sql, rows_box=rows_box):
                    seconds, rows = pg.timed(conn, sql, params)
                    rows_box[:] = rows
                    return seconds

                timing = Timing(runs=[run() for _ in range(max(repeat, 7))])
                results.timings[key] = timing
                log(f"{key}: median {timing.median:.4f} s over {timing.n} runs")
                near = pd.DataFrame(rows_box, columns=["code_qp", "n_within", "nearest", "distance_m"])
                results.facts[f"{key}.summary"] = cases.summarise_qpv_tiers_lieux(near)
                if "qpv_tiers_lieux" in essmap_out:
                    results.facts[f"{key}.agreement"] = cases.compare_qpv_tiers_lieux(essmap_out["qpv_tiers_lieux"], near)

            # (c): the GROUP BY query, with (a)'s QPV stored, and computing it itself
            for label, sql, budget in (("given QPV", pg.INDICATORS_GIVEN_QPV_SQL, 30.0),
                                       ("full", pg.INDICATORS_FULL_SQL, 60.0)):
                plans.append(f"-- (c) {label}\n{pg.explain(conn, sql, params)}")
                key = f"c.postgis.{label}"
                rows_box = []

                def run(sql=sql, rows_box=rows_box):
                    seconds, rows = pg.timed(conn, sql, params)
                    rows_box[:] = rows
                    return seconds

                timing = Timing()
                for _ in range(max(1, min(repeat, 3))):
                    timing.runs.append(run())
                    if sum(timing.runs) > budget:
                        break
                results.timings[key] = timing
                log(f"{key}: median {timing.median:.3f} s over {timing.n} run(s)")
                table = pd.DataFrame(rows_box, columns=list(pg.INDICATOR_COLUMNS))
                results.facts[f"{key}.rows"] = len(table)
                if "indicators" in essmap_out:
                    results.facts[f"{key}.agreement"] = cases.compare_indicators(essmap_out["indicators"], table)
    (nd.OUT_DIR / "postgis-plans.txt").write_text("\n\n".join(plans) + "\n", encoding="utf-8")
    del communes_com


def run_sirene(results: Results, data: nd.NationalData, stock_sizes: sirene_stock.StockSizes, repeat: int) -> None:
    meta = sirene_stock.write_stock(data, stock_sizes, log=log)
    results.facts["d.stock"] = meta
    runs = []
    for i in range(max(1, repeat)):
        log(f"d.read_sirene: run {i + 1} in a child process")
        measured = sirene_stock.measure_ingest(Path(meta["unites_legales"]), Path(meta["etablissements"]))
        runs.append(measured)
        log(f"d.read_sirene: {measured['seconds']:.1f} s, peak {measured['peak_rss_kb'] / 1e6:.2f} GB, "
            f"{measured['rows_kept']:,} rows kept")
        if sum(r["seconds"] for r in runs) > 150:
            break
    results.timings["d.essmap"] = Timing(runs=[r["seconds"] for r in runs])
    results.facts["d.runs"] = runs


# --- Report ----------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    import duckdb
    import pyarrow
    import pyproj
    import shapely

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "CPU": f"{cpu} ({os.cpu_count()} logical CPUs)",
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "shapely": f"{shapely.__version__} (GEOS {shapely.geos_version_string})",
        "geopandas": gpd.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "pyproj": f"{pyproj.__version__} (PROJ {pyproj.proj_version_str})",
    }


def _fmt_s(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _ratio(baseline: float | None, ours: float | None) -> str:
    if not baseline or not ours:
        return "n/a"
    ratio = baseline / ours
    return f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def _best(results: Results, prefix: str) -> tuple[str | None, float | None]:
    found = [(t.median, k) for k, t in results.timings.items() if k.startswith(prefix) and t.runs]
    if not found:
        return None, None
    median, key = min(found)
    return key[len(prefix):], median


def _pct(value: float) -> str:
    return f"{value * 100:.3f} %" if value < 0.9995 else f"{value * 100:.2f} %"


def render(results: Results, machine: dict[str, str]) -> str:
    r = results
    a, b = r.median("a.essmap"), r.median("b.essmap")
    a_code, b_cold = r.median("a.essmap.by_code"), r.median("b.essmap.cold")
    c_full, c_given = r.median("c.essmap.full"), r.median("c.essmap.given_qpv")
    d = r.median("d.essmap")
    a_pg_label, a_pg = _best(r, "a.postgis.")
    b_pg_label, b_pg = _best(r, "b.postgis.")
    c_pg_full, c_pg_given = r.median("c.postgis.full"), r.median("c.postgis.given QPV")
    a_gpd, b_gpd = r.median("a.geopandas"), r.median("b.geopandas")
    peak_gb = None
    if r.facts.get("d.runs"):
        peak_gb = max(run["peak_rss_kb"] for run in r.facts["d.runs"]) / 1e6
    ok_a_time = None if a is None else a < TARGET_ASSIGN_S
    ok_a_ratio = None if (a is None or a_pg is None) else a_pg / a >= TARGET_ASSIGN_VS_POSTGIS
    ok_a_code_time = None if a_code is None else a_code < TARGET_ASSIGN_S
    ok_a_code_ratio = None if (a_code is None or a_pg is None) else a_pg / a_code >= TARGET_ASSIGN_VS_POSTGIS
    ok_b = None if b is None else b < TARGET_QPV_TIERS_LIEUX_S
    ok_b_cold = None if b_cold is None else b_cold < TARGET_QPV_TIERS_LIEUX_S
    ok_c = None if c_full is None else c_full < TARGET_INDICATORS_S
    ok_d = None if (d is None or peak_gb is None) else (d < TARGET_INGEST_S and peak_gb < TARGET_INGEST_PEAK_GB)

    lines: list[str] = []
    add = lines.append
    add("# essmap benchmarks: spatial engine vs PostGIS and GeoPandas")
    add("")
    add("How to run (from the repository root):")
    add("")
    add("- `make bench`: the national-scale run (about 10–15 minutes on 2 cores the first time, when it")
    add("  generates and caches the data under `bench/out/`; less afterwards). It installs PostgreSQL and")
    add("  PostGIS with `bench/install-system-deps.sh` when they are missing (Debian, needs root or sudo),")
    add("  starts a throw-away PostgreSQL cluster in a temporary folder and removes it at the end.")
    add("- `make bench-small`: a quick smoke run on small data, written to `bench/out/RESULTS-small.md`.")
    add("- Options: `bench/run.py --help` (`--skip-postgis`, `--skip-sirene`, `--repeat`, `--seed`); sizes")
    add("  through `BENCH_ESTABLISHMENTS`, `BENCH_QPV_METROPOLE`, `BENCH_QPV_OVERSEAS`, `BENCH_TIERS_LIEUX`,")
    add("  `BENCH_STOCK_ESTABLISHMENTS`, `BENCH_STOCK_ESS`.")
    add("")
    add("This file is **rewritten by every `make bench`**: the figures below are those of the last run.")
    add("Data are synthetic and seeded (`bench/national_data.py`): real commune boundaries, QPV-like")
    add("polygons, establishments and tiers-lieux placed by population; nothing here is a real")
    add("establishment. Each time is the median of the runs shown (`n`); heavy cases stop repeating once")
    add("their runs exceed a time budget. Baselines run on the same data in the same run; PostGIS times")
    add("cover the query only (data loaded, indexed and analysed beforehand).")
    add("")
    if r.small:
        add("> **Smoke run on small data (`--small`)**: not the national scale; targets are for the national run.")
        add("")
    add(f"Run: {r.date}, total {time.perf_counter() - r.started:.0f} s, seed {r.seed}.")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for k, v in machine.items():
        add(f"| {k} | {v} |")
    if "postgis" in r.versions:
        add(f"| PostGIS baseline | {r.versions['postgis']} |")
        if "postgis.settings" in r.facts:
            settings = ", ".join(f"{k}={v}" for k, v in r.facts["postgis.settings"].items())
            add(f"| PostgreSQL settings | {settings} (durability off: loading only) |")
    add("")
    add("## Data")
    add("")
    add("| layer | rows | notes |")
    add("|---|---|---|")
    s = r.data
    add(f"| communes | {s.get('communes', 0):,} | real boundaries (`data/geo/communes_france.parquet`), incl. 45 arrondissements; (a) uses the {s.get('communes_com', 0):,} `COM` polygons |")
    add(f"| QPV | {s.get('qpv', 0):,} | {s.get('qpv_overseas', 0)} overseas (971–976); {s.get('qpv_multipolygons', 0)} MultiPolygons; median {s.get('qpv_vertices_median', 0):.0f} vertices (max {s.get('qpv_vertices_max', 0)}); median {s.get('qpv_area_ha_median', 0):.0f} ha |")
    add(f"| establishments | {s.get('establishments', 0):,} | {s.get('establishments_overseas', 0):,} overseas; 7 % drawn inside QPVs, the rest by commune population |")
    add(f"| tiers-lieux | {s.get('tiers_lieux', 0):,} | 10 % drawn inside QPVs |")
    stock = r.facts.get("d.stock")
    if stock:
        add(f"| SIRENE stock (d) | {stock['etablissements_rows']:,} establishments ({stock['etablissements_bytes'] / 1e9:.2f} GB), {stock['unites_legales_rows']:,} legal units ({stock['unites_legales_bytes'] / 1e9:.2f} GB) | {stock['ess_active_establishments']:,} active ESS establishments |")
    add("")

    add("## Targets")
    add("")
    add("| case | essmap (median) | target | verdict | PostGIS (best variant) | vs PostGIS | GeoPandas | vs GeoPandas |")
    add("|---|---|---|---|---|---|---|---|")
    add(f"| (a) {s.get('establishments', 0):,} establishments → QPV + commune | {_fmt_s(a)} | < 1 s | {_verdict(ok_a_time)} | "
        f"{_fmt_s(a_pg)} ({a_pg_label or 'n/a'}) | {_ratio(a_pg, a)} (target ≥ 10×: {_verdict(ok_a_ratio)}) | {_fmt_s(a_gpd)} | {_ratio(a_gpd, a)} |")
    add(f"| (a′) same, commune **from the SIRENE commune code** (not geometry), QPV by geometry | {_fmt_s(a_code)} | < 1 s | "
        f"{_verdict(ok_a_code_time)} | {_fmt_s(a_pg)} ({a_pg_label or 'n/a'}) | {_ratio(a_pg, a_code)} (target ≥ 10×: "
        f"{_verdict(ok_a_code_ratio)}) | {_fmt_s(a_gpd)} | {_ratio(a_gpd, a_code)} |")
    a_one, a_first = r.median("a.essmap.one_thread"), r.median("a.essmap.first_call")
    a_index = r.median("a.essmap.index")
    add(f"| (a″) same as (a), on one thread | {_fmt_s(a_one)} | (info) | – | {_fmt_s(a_pg)} ({a_pg_label or 'n/a'}) | "
        f"{_ratio(a_pg, a_one)} | {_fmt_s(a_gpd)} | {_ratio(a_gpd, a_one)} |")
    add(f"| (a‴) same as (a), first full-size call of the process (one run) | {_fmt_s(a_first)} | (info) | – | "
        f"{_fmt_s(a_pg)} ({a_pg_label or 'n/a'}) | {_ratio(a_pg, a_first)} | {_fmt_s(a_gpd)} | {_ratio(a_gpd, a_first)} |")
    pg_index = r.facts.get("postgis.load_s", {}).get("index_analyze")
    add(f"| (a-index) building the QPV and commune layers (once per layer, like PostGIS's `CREATE INDEX`, not in (a)) | "
        f"{_fmt_s(a_index)} | (info) | – | {_fmt_s(pg_index)} (GiST indexes and `ANALYZE` of all tables) | "
        f"{_ratio(pg_index, a_index)} | – | – |")
    add(f"| (b) QPV × tiers-lieux at 1 km + nearest (repeated query) | {_fmt_s(b)} | < 20 ms | {_verdict(ok_b)} | "
        f"{_fmt_s(b_pg)} ({b_pg_label or 'n/a'}) | {_ratio(b_pg, b)} | {_fmt_s(b_gpd)} | {_ratio(b_gpd, b)} |")
    add(f"| (b′) same, first query (reprojection cache empty) | {_fmt_s(b_cold)} | < 20 ms | {_verdict(ok_b_cold)} | "
        f"{_fmt_s(b_pg)} ({b_pg_label or 'n/a'}) | {_ratio(b_pg, b_cold)} | {_fmt_s(b_gpd)} | {_ratio(b_gpd, b_cold)} |")
    add(f"| (c) indicator table, all communes (from the layers) | {_fmt_s(c_full)} | < 1 s | {_verdict(ok_c)} | "
        f"{_fmt_s(c_pg_full)} (full query) | {_ratio(c_pg_full, c_full)} | – | – |")
    add(f"| (c′) same, QPV of each establishment given (from (a)) | {_fmt_s(c_given)} | (info) | – | "
        f"{_fmt_s(c_pg_given)} (GROUP BY) | {_ratio(c_pg_given, c_given)} | – | – |")
    peak_text = f"{peak_gb:.2f} GB peak" if peak_gb is not None else "n/a"
    add(f"| (d) `read_sirene`, national stock | {_fmt_s(d)}, {peak_text} | < 2 min, < 4 GB | {_verdict(ok_d)} | – | – | – | – |")
    add("")
    if r.errors:
        add("**Parts that failed in this run** (no figure for them):")
        add("")
        for name, error in r.errors.items():
            add(f"- {name}: `{error}`")
        add("")

    add("How to read (a) and (a′): (a) is the pure geometric assignment, point in polygon against the QPVs *and*")
    add("the communes, with `points_in_polygon_layers` (coordinates read once; layers, and halves of large layers,")
    add("on parallel threads: the machine's two cores; (a″) is the same on one thread). What the grid needs of each")
    add("polygon layer (prepared polygons with their indexes, ring vertices, shared borders) is built once per layer")
    add("and cached by geometry identity, as PostGIS builds its GiST index before the query: that build is timed on")
    add("its own as (a-index), and (a) reuses it. Nothing about the points is cached. The first full-size call of a process")
    add("is slower (the operating system hands fresh memory to its arrays): it is run once before the others and shown")
    add("as (a‴). The benchmark process, like the dashboard, keeps freed memory for the next call")
    add(f"(`essmap.memory.keep_freed_memory`: {'applied' if r.facts.get('memory.kept') else 'NOT applied here'}); without")
    add("it, glibc hands large freed arrays back and each call of (a) faults tens of thousands of pages in again.")
    add("(a′) is how essmap attributes establishments in its indicators: the commune comes from the")
    add("SIRENE commune code (`codeCommuneEtablissement`, arrondissements rolled up), trusted without a geometric")
    add("check, and only establishments without a usable code are located geometrically; the QPV is still found by")
    add("geometry. (b) is the query as the dashboard repeats it (metric reprojections of the same QPVs and tiers-lieux")
    add("cached by geometry identity after the first call); (b′) empties that cache before every run.")
    add("")
    loads = [t.load for t in r.timings.values() if np.isfinite(t.load)]
    if loads:
        add(f"**Machine load.** The 1-minute load average before each measurement ranged from {min(loads):.1f} to "
            f"{max(loads):.1f} on {os.cpu_count()} logical CPUs (the benchmark's own work counts in it); wall "
            "times above 'load ≈ CPUs' are inflated. The CPU seconds of the benchmark process are given beside each "
            "wall-clock median below: they are less sensitive to that load.")
        add("")

    add("## All timings")
    add("")
    add("| measurement | median | n | runs | CPU median (this process) | load avg before |")
    add("|---|---|---|---|---|---|")
    for key, timing in r.timings.items():
        runs = ", ".join(_fmt_s(x) for x in timing.runs)
        cpu = _fmt_s(float(np.median(timing.cpu))) if timing.cpu else "–"
        load = f"{timing.load:.1f}" if np.isfinite(timing.load) else "–"
        add(f"| `{key}` | {_fmt_s(timing.median)} | {timing.n} | {runs} | {cpu} | {load} |")
    add("")

    add("## (a) Where the time goes")
    add("")
    profile = r.facts.get("a.profile")
    if profile:
        total = sum(profile.values()) or 1.0
        add(f"One profiled run of essmap's (a) on one thread (cProfile sees one thread; self time by category;"
            f" {total:.2f} s with profiling overhead):")
        add("")
        add("| piece | seconds | share |")
        add("|---|---|---|")
        for k, label in cases.PROFILE_LABELS.items():
            add(f"| {label} | {profile.get(k, 0.0):.3f} | {profile.get(k, 0.0) / total * 100:.1f} % |")
        outside = 1 - profile.get("predicate", 0.0) / total
        add("")
        add(f"**Share of (a) spent outside the geometry predicate: {outside * 100:.0f} %** (in memory, layers already loaded).")
        qpv_only = r.median("a.essmap.qpv_only")
        if qpv_only is not None and a is not None:
            add(f"Of the {_fmt_s(a)} median, the QPV assignment alone (`establishments_qpv`) takes {_fmt_s(qpv_only)};"
                f" the rest is the commune assignment against {s.get('communes_com', 0):,} polygons.")
        load_store, load_parquet = r.median("a.load.store"), r.median("a.load.geoparquet")
        if load_store is not None and a is not None:
            share = load_store / (load_store + a)
            add(f"Loading the three layers first (establishments, QPV, communes) takes {_fmt_s(load_store)} from the essmap"
                f" DuckDB store (`store.read_layer`: WKB → shapely) and {_fmt_s(load_parquet)} from GeoParquet; counting"
                f" the store load, {share * 100:.0f} % of load + assignment is loading.")
        add("Full profile listing: `bench/out/profile-assign.txt` (not versioned).")
        add("")

    add("## Result checks (same answers?)")
    add("")
    facts = r.facts
    if "a.essmap.summary" in facts:
        add(f"- (a) essmap: {facts['a.essmap.summary']['in_qpv']:,} establishments in a QPV, "
            f"{facts['a.essmap.summary']['with_commune']:,} with a commune.")
    if "a.essmap.by_code.agreement" in facts:
        agreement = facts["a.essmap.by_code.agreement"]
        add(f"- (a′) commune from the SIRENE code vs by geometry: same commune for {_pct(agreement['same_commune'])} of "
            f"establishments ({facts.get('a.essmap.by_code.located', 0):,} without a usable code located geometrically).")
    for engine in ("a.geopandas", "a.postgis"):
        agreement = facts.get(f"{engine}.agreement")
        if agreement:
            add(f"- (a) {engine.split('.')[1]} vs essmap: same QPV for {_pct(agreement['same_qpv'])}, same commune for "
                f"{_pct(agreement['same_commune'])} of establishments.")
    for key, value in facts.items():
        if key.startswith("a.postgis.") and key.endswith(".summary"):
            add(f"- (a) PostGIS {key[len('a.postgis.'):-len('.summary')]}: {value['rows']:,} rows, {value['in_qpv']:,} in a QPV, {value['with_commune']:,} with a commune.")
    if "b.essmap.summary" in facts:
        v = facts["b.essmap.summary"]
        add(f"- (b) essmap: {v['covered']:,} of {v['qpv']:,} QPVs have a tiers-lieu within 1 km ({v['coverage_share'] * 100:.1f} %).")
    for key, value in facts.items():
        if key.startswith("b.") and key.endswith(".agreement"):
            engine = key[2:-len(".agreement")]
            add(f"- (b) {engine} vs essmap: covered flag {_pct(value['same_covered'])}, count {_pct(value['same_count'])}, "
                f"nearest tiers-lieu {_pct(value['same_nearest'])} of QPVs; largest nearest-distance gap {value['max_distance_gap_m']:.1f} m.")
    for key, value in facts.items():
        if key.startswith("c.postgis.") and key.endswith(".agreement"):
            cols = ", ".join(f"{c} {_pct(v)}" for c, v in value.items() if c not in ("rows_reference", "rows_other"))
            add(f"- (c) PostGIS {key[len('c.postgis.'):-len('.agreement')]} vs essmap ({value['rows_other']:,} vs {value['rows_reference']:,} communes): {cols}.")
    add("")
    add("Small differences are expected and are not errors of either side: PostGIS (b) measures geodesic")
    add("distances (geography) or planar ones after `ST_Transform`, GeoPandas tests points against a")
    add("polygonised 1 km buffer, essmap measures in each territory's metric CRS; points that fall in the")
    add("slivers between simplified commune polygons, or in two of them, may be assigned differently.")
    add("")

    if r.facts.get("d.runs"):
        add("## (d) SIRENE ingest")
        add("")
        add("`read_sirene` runs in a fresh Python process; peak memory is that process's `VmHWM` (interpreter, DuckDB and")
        add("pandas included).")
        add("")
        add("| run | seconds | process wall | peak memory | rows kept | quarantined |")
        add("|---|---|---|---|---|---|")
        for i, run in enumerate(r.facts["d.runs"], 1):
            add(f"| {i} | {run['seconds']:.1f} | {run['process_seconds']:.1f} | {run['peak_rss_kb'] / 1e6:.2f} GB | "
                f"{run['rows_kept']:,} | {run['rows_quarantined']:,} |")
        add("")
        add("Stages of the last run (from the reader's progress callback; seconds since the call):")
        add("")
        add("| stage reached | at |")
        add("|---|---|")
        previous = 0.0
        for label, at in r.facts["d.runs"][-1]["stages"]:
            add(f"| {label} | {at:.1f} s (+{at - previous:.1f}) |")
            previous = at
        add("")

    if "postgis.load_s" in r.facts:
        load = r.facts["postgis.load_s"]
        add("## Baseline details")
        add("")
        add(f"- PostGIS loading (not timed in the cases): {', '.join(f'{k} {v:.1f} s' for k, v in load.items())}.")
        add("- (a) PostGIS variants: the plain `LEFT JOIN ... ST_Contains` an analyst writes first (the planner drives it from")
        add("  the 2 million points), and polygon-driven inner joins left-joined back by SIRET (each polygon probes the point")
        add("  index and PostGIS reuses its prepared polygon). The faster one is the baseline. Both materialise the result")
        add("  into an unlogged table, with up to 2 parallel workers.")
        add("- (b) PostGIS variants: `ST_DWithin`/`<->` on `geography`, and on geometry transformed to each territory's")
        add("  metric CRS (one sub-query per EPSG code with partial GiST indexes). Rows are fetched by the client.")
        add("- (c) PostGIS: one query with `GROUP BY` on the commune code (arrondissements rolled up), `count(DISTINCT siren)`,")
        add("  QPVs counted through `insee_com`, coverage by `EXISTS (... ST_DWithin(geography))`; \"full\" also finds each")
        add("  establishment's QPV (`EXISTS (... ST_Contains)`), \"given QPV\" reads the QPV stored from (a).")
        add("- GeoPandas: `sjoin(predicate=\"within\")` twice for (a); per territory `to_crs` + `buffer(1000)` + `sjoin`, and")
        add("  `sjoin_nearest`, for (b).")
        add("- Query plans: `bench/out/postgis-plans.txt` (not versioned).")
        add("")
    return "\n".join(lines) + "\n"


# --- Entry point -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", action="store_true", help="small data, quick smoke run (report in bench/out/)")
    parser.add_argument("--seed", type=int, default=nd.DEFAULT_SEED, help="data seed (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per light case (default %(default)s)")
    parser.add_argument("--skip-postgis", action="store_true", help="no PostGIS baseline")
    parser.add_argument("--skip-geopandas", action="store_true", help="no GeoPandas baseline")
    parser.add_argument("--skip-sirene", action="store_true", help="no SIRENE ingest (d)")
    parser.add_argument("--output", type=Path, help="report path (default bench/RESULTS.md; --small: bench/out/RESULTS-small.md)")
    args = parser.parse_args(argv)

    sizes = nd.sizes_from_env(nd.SMALL if args.small else nd.NATIONAL)
    stock_sizes = sirene_stock.stock_sizes_from_env(sirene_stock.SMALL_STOCK if args.small else sirene_stock.NATIONAL_STOCK)
    output = args.output or (SMALL_RESULTS if args.small else RESULTS)
    results = Results(small=args.small, seed=args.seed)
    log(f"sizes {sizes}, stock {stock_sizes}, report {output}")

    results.facts["memory.kept"] = keep_freed_memory()  # as the dashboard does (essmap.memory)
    data = nd.load_or_generate(sizes, args.seed, log=log)
    results.data = {**data.summary(), "communes_com": int((data.communes["type_commune"] == "COM").sum())}
    essmap_out: dict[str, object] = {}

    def essmap_part():
        essmap_out.update(run_essmap(results, data, args.repeat))

    _guard(results, "essmap (a)(b)(c)", essmap_part)
    _guard(results, "loading pieces", lambda: run_loading(results, data, args.repeat))
    if not args.skip_geopandas:
        _guard(results, "GeoPandas baseline", lambda: run_geopandas(results, data, essmap_out, args.repeat))
    if not args.skip_postgis:
        _guard(results, "PostGIS baseline", lambda: run_postgis(results, data, essmap_out, args.repeat))
    essmap_out.clear()
    if not args.skip_sirene:
        _guard(results, "SIRENE ingest (d)", lambda: run_sirene(results, data, stock_sizes, 2 if args.small else 1))

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results, machine_info()), encoding="utf-8")
    (nd.OUT_DIR / ("results-small.json" if args.small else "results.json")).write_text(json.dumps({
        "timings": {k: v.runs for k, v in results.timings.items()},
        "facts": results.facts, "errors": results.errors, "versions": results.versions, "data": results.data,
    }, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"report written to {output} ({time.perf_counter() - results.started:.0f} s in all)")
    return 1 if results.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
