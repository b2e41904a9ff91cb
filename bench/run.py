"""``make bench``: the benchmarks of the store-holds-the-answers architecture, rewritten into RESULTS.md.

Parts (``--only`` picks some; every part records its date and the load average around it):

- ``store``: the national store built the way a user builds one (:mod:`national_store`: official
  files, ``essmap build`` then ``essmap ingest communes|qpv|sirene|tiers-lieux``), every command a
  measured process; cached under ``bench/out/`` (``--rebuild`` builds it again);
- ``sirene``: ``essmap ingest sirene`` of the 5 M-row stock again (``--sirene-runs`` times) and of a
  15 M-row stock (memory flat?), each on a fresh copy of the store as it was before that step;
- ``cli``: ``essmap query qpv-radius`` and ``essmap query indicators`` as whole processes, with
  same-run baselines (:mod:`cases`);
- ``pip``: point in polygon, essmap against the library recipes and PostGIS (:mod:`pip_recipes`);
- ``viewpath``: the server-side split of a first map (:mod:`viewpath`), for the profile of misses;
- ``browser``: the dashboard in Debian chromium (:mod:`browser`);
- ``sessions``: the same concurrency cases with protocol clients instead of browsers, the server alone
  (:mod:`sessions`).

Results accumulate in ``bench/results.json`` (versioned with the report, so that a new machine or
checkout keeps the figures of the parts it does not run again; a part run again replaces its previous
figures) and ``bench/RESULTS.md`` is rendered from it; ``--small`` uses small data and writes
``bench/out/results-small.json`` and ``bench/out/RESULTS-small.md`` instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(HERE), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import national_data as nd  # noqa: E402
import national_store  # noqa: E402
import report  # noqa: E402
import sirene_stock  # noqa: E402
from measure import OUT_DIR, child_env, load_average, log, machine_info, run_process  # noqa: E402

PARTS = ("store", "sirene", "cli", "pip", "viewpath", "browser", "sessions")
RESULTS = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results.json"
#: The bigger stock of "memory flat on a 15 M-row stock".
BIG_STOCK = sirene_stock.StockSizes(establishments=15_000_000, ess_active=1_500_000)
SMALL_BIG_STOCK = sirene_stock.StockSizes(establishments=750_000, ess_active=75_000)
VIEWPATH_DEPARTEMENTS = ("59", "13", "75", "93")
#: How a child process is told the national data's sizes (:func:`national_data.sizes_from_env`).
SIZE_VARIABLES = {"establishments": "BENCH_ESTABLISHMENTS", "qpv_metropole": "BENCH_QPV_METROPOLE",
                  "qpv_overseas": "BENCH_QPV_OVERSEAS", "tiers_lieux": "BENCH_TIERS_LIEUX"}


def _now() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def part_store(store: national_store.NationalStore, results: dict) -> None:
    results["store"] = {"date": store.built_at, "key": store.spec.key, "steps": store.steps,
                        "stock": store.stock, "store_bytes": store.national.stat().st_size,
                        "sizes": store.spec.sizes.key}


def part_sirene(store: national_store.NationalStore, results: dict, *, runs: int, small: bool, big: bool,
                profile_misses: bool) -> None:
    out: dict[str, Any] = {"date": _now(), "load_before": load_average()}
    rows = []
    for i in range(runs):
        log(f"sirene: ingest of the {store.spec.stock.establishments:,}-row stock, run {i + 1}/{runs}")
        run = national_store.measure_sirene_ingest(store, store.sirene_files, label=f"5m-{i}")
        rows.append(national_store._summary(run))
        log(f"sirene: {run.wall_s:.1f} s, peak {run.peak_rss_mb:,.0f} MB (load {run.load_before[0]:.2f})")
    out["stock"] = {"rows": store.spec.stock.establishments, "runs": rows}
    if big:
        meta = _big_stock(store, SMALL_BIG_STOCK if small else BIG_STOCK)
        files = [Path(str(meta["unites_legales"])), Path(str(meta["etablissements"]))]
        log(f"sirene: ingest of the {meta['etablissements_rows']:,}-row stock")
        run = national_store.measure_sirene_ingest(store, files, label="big")
        out["big_stock"] = {"rows": meta["etablissements_rows"], "bytes": meta["etablissements_bytes"],
                            "runs": [national_store._summary(run)]}
        log(f"sirene: big stock {run.wall_s:.1f} s, peak {run.peak_rss_mb:,.0f} MB")
    walls = [r["wall_s"] for r in rows]
    peaks = [r["peak_rss_kb"] / 1024 for r in rows]
    missed = max(walls) >= report.TARGET_SIRENE_S or max(peaks) >= report.TARGET_SIRENE_MB
    if profile_misses and missed:
        out["profile"] = _profile_sirene(store)
    out["load_after"] = load_average()
    results["sirene"] = out


def _big_stock(store: national_store.NationalStore, sizes: sirene_stock.StockSizes) -> dict[str, Any]:
    """The bigger stock's files, written (once, cached) by a process of its own: writing 15 M rows takes
    several GB, which the harness should not keep for the rest of the run."""
    import subprocess

    env = child_env({"BENCH_STOCK_ESTABLISHMENTS": str(sizes.establishments), "BENCH_STOCK_ESS": str(sizes.ess_active),
                     **{var: str(getattr(store.spec.sizes, name)) for name, var in SIZE_VARIABLES.items()}})
    log(f"sirene: stock of {sizes.establishments:,} rows (written once, cached)")
    done = subprocess.run([sys.executable, str(HERE / "sirene_stock.py"), "write", "--seed", str(store.spec.seed)],
                          env=env, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout)


def _profile_sirene(store: national_store.NationalStore) -> dict[str, object]:
    """One SIRENE ingest on a copy of the store, stage by stage (time, peak memory) under cProfile
    (:mod:`ingest_profile`)."""
    import shutil
    import subprocess

    target = store.folder / "sirene-profile.duckdb"
    shutil.copyfile(store.before_sirene, target)
    try:
        log("sirene: one profiled run, stage by stage (target missed)")
        done = subprocess.run([sys.executable, str(HERE / "ingest_profile.py"), "sirene", *map(str, store.sirene_files),
                               "--db", str(target), "--listing", str(OUT_DIR / "profile-ingest-sirene.txt")],
                              env=child_env(), capture_output=True, text=True, check=True, cwd=REPO)
    finally:
        for leftover in store.folder.glob("sirene-profile.duckdb*"):
            leftover.unlink(missing_ok=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _listing(prof: Path, text_path: Path) -> str:
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buffer)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    text_path.write_text(buffer.getvalue(), encoding="utf-8")
    return str(text_path)


def part_cli(store: national_store.NationalStore, results: dict, *, runs: int, profile_misses: bool) -> None:
    import cases

    out = cases.run(store.national, runs=runs)
    out["date"] = _now()
    if profile_misses:
        out["profiles"] = {}
        checks = {"qpv_radius.essmap": cases.TARGET_QPV_RADIUS_S, "indicators.essmap": cases.TARGET_INDICATORS_S}
        for name, target in checks.items():
            if cases.series(out, name).median >= target:
                command = cases.commands(store.national, OUT_DIR / "cli")[name]
                prof = OUT_DIR / f"profile-{name}.prof"
                run_process([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "essmap.cli", *command[1:]],
                            env=child_env())
                out["profiles"][name] = _listing(prof, OUT_DIR / f"profile-{name}.txt")
    results["cli"] = out


def part_pip(store: national_store.NationalStore, results: dict, *, repeat: int, postgis: bool) -> None:
    import pip_recipes

    data = nd.load_or_generate(store.spec.sizes, store.spec.seed, log=log)
    started = load_average()
    out = pip_recipes.run(data, repeat=repeat, postgis=postgis)
    out.update({"date": _now(), "load_before": started, "load_after": load_average()})
    results["pip"] = out


def part_viewpath(store: national_store.NationalStore, results: dict, *, runs: int) -> None:
    out: dict[str, Any] = {"date": _now(), "load_before": load_average(), "departements": {}}
    for dep in VIEWPATH_DEPARTEMENTS:
        command = [sys.executable, str(HERE / "viewpath.py"), "--db", str(store.national), "--dep", dep]
        measured = [_viewpath_once(command) for _ in range(runs)]
        out["departements"][dep] = measured
        log(f"viewpath: {dep}: view_data {measured[-1]['view_data']:.2f} s, view_map {measured[-1]['view_map']:.2f} s, "
            f"component_args {measured[-1]['component_args']:.2f} s")
    profile = OUT_DIR / "profile-viewpath-59.txt"
    _viewpath_once([sys.executable, str(HERE / "viewpath.py"), "--db", str(store.national), "--dep", "59",
                    "--profile", str(profile)])
    out["profile"] = str(profile)
    out["load_after"] = load_average()
    results["viewpath"] = out


def _viewpath_once(command: list[str]) -> dict[str, float]:
    import subprocess

    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_browser(store: national_store.NationalStore, results: dict, *, rounds: int, small: bool,
                 cases: list[str] | None = None) -> None:
    """The browser cases (``cases``: some of them; the others keep their previous figures)."""
    import browser

    started = load_average()
    out = browser.run(store.national, store.embedded, rounds=rounds, small=small, cases=cases or browser.CASES)
    around = {"date": _now(), "load_before": started, "load_after": load_average()}
    if not cases:
        results["browser"] = {**out, **around}
        return
    # the part's date and load stay those of the full run; the cases run now say theirs
    previous = results.get("browser") or around
    results["browser"] = {**previous, **out, "cases_run": {**previous.get("cases_run", {}),
                                                           **{case: around for case in cases}}}


def part_sessions(store: national_store.NationalStore, results: dict, *, rounds: int, replicas: int) -> None:
    import sessions

    started = load_average()
    out = sessions.run(store.national, store.embedded, rounds=rounds, replicas=replicas)
    out.update({"date": _now(), "load_before": started, "load_after": load_average()})
    results["sessions"] = out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", action="store_true", help="small data, quick smoke run (report in bench/out/)")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run these parts only (the others keep their figures)")
    parser.add_argument("--rebuild", action="store_true", help="build the national store again even when cached")
    parser.add_argument("--skip-postgis", action="store_true", help="no PostGIS recipe in the point-in-polygon part")
    parser.add_argument("--skip-browser", action="store_true", help="no browser part")
    parser.add_argument("--browser-cases", nargs="+", metavar="CASE",
                        help="browser part: run these cases only (embedded_4, national_8, national_first, "
                             "national_regions); the others keep their figures")
    parser.add_argument("--skip-big-stock", action="store_true", help="no 15 M-row SIRENE stock")
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each CLI command (default %(default)s)")
    parser.add_argument("--sirene-runs", type=int, default=2, help="runs of the 5 M-row ingest (default %(default)s)")
    parser.add_argument("--pip-repeat", type=int, default=3, help="runs of each point-in-polygon recipe")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each concurrent case (browser, sessions)")
    parser.add_argument("--replicas", type=int, default=2,
                        help="sessions part: also 8 sessions at once over this many servers (1: not measured)")
    parser.add_argument("--no-profiles", action="store_true", help="no profiled run when a target is missed")
    parser.add_argument("--seed", type=int, default=nd.DEFAULT_SEED)
    parser.add_argument("--output", type=Path, help="report path (default bench/RESULTS.md; --small: bench/out/)")
    args = parser.parse_args(argv)

    small = args.small
    json_path = OUT_DIR / "results-small.json" if small else RESULTS_JSON
    output = args.output or (OUT_DIR / "RESULTS-small.md" if small else RESULTS)
    results: dict = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    parts = list(args.only or PARTS)
    if args.skip_browser and "browser" in parts:
        parts.remove("browser")
    results["machine"] = machine_info()
    results["small"] = small
    errors = results.setdefault("errors", {})

    spec = national_store.spec_for(small, args.seed)
    store = national_store.build(spec, rebuild=args.rebuild)
    if not small:
        national_store.publish_pointer(store)
    profiles = not args.no_profiles
    runners = {
        "store": lambda: part_store(store, results),
        "sirene": lambda: part_sirene(store, results, runs=1 if small else args.sirene_runs, small=small,
                                      big=not args.skip_big_stock, profile_misses=profiles and not small),
        "cli": lambda: part_cli(store, results, runs=2 if small else args.runs, profile_misses=profiles),
        "pip": lambda: part_pip(store, results, repeat=1 if small else args.pip_repeat, postgis=not args.skip_postgis),
        "viewpath": lambda: part_viewpath(store, results, runs=1 if small else 3),
        "browser": lambda: part_browser(store, results, rounds=1 if small else args.rounds, small=small,
                                        cases=args.browser_cases),
        "sessions": lambda: part_sessions(store, results, rounds=1 if small else args.rounds,
                                          replicas=args.replicas),
    }
    for part in parts:
        log(f"part {part}: start (load {load_average()[0]:.2f})")
        errors.pop(part, None)
        try:
            runners[part]()
        except Exception as exc:  # noqa: BLE001 - recorded in the report, the other parts still run
            errors[part] = f"{type(exc).__name__}: {exc}"
            log(f"part {part}: FAILED: {exc}")
            traceback.print_exc()
        json_path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
        output.write_text(report.render(results), encoding="utf-8")
    log(f"report written to {output}")
    return 1 if any(errors.get(p) for p in parts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
