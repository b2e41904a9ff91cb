"""How the benchmarks measure: whole processes (wall, peak memory, memory over time), repeated
runs with their median, the load average around each measurement, and the machine.

A process is measured from outside, as a user sees it: ``os.wait4`` gives the peak resident set
size the kernel recorded for that very process (``ru_maxrss``, everything it ever held: interpreter,
DuckDB, pandas), and a sampler thread reads its ``VmRSS`` from ``/proc`` every few hundred
milliseconds, so that a report can say whether memory stays flat or grows with the input.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT_DIR = HERE / "out"
#: The ``essmap`` command next to the running interpreter (the project's virtualenv).
ESSMAP = Path(sys.executable).parent / "essmap"


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of measured processes: this checkout's ``essmap`` package first."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""), **(extra or {})}


# --- Whole processes -------------------------------------------------------------------------------


@dataclass
class ProcessRun:
    """One measured process."""

    command: list[str]
    wall_s: float
    peak_rss_kb: int
    user_s: float
    system_s: float
    returncode: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    #: (seconds since the start, resident kB), sampled while it ran
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kb / 1024

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


#: Runs the measured command as its own child and reports that child's resource usage. Measured through
#: this small launcher, not spawned directly: a process spawned by a big one (vfork + exec) inherits the
#: spawner's peak RSS in its ``ru_maxrss``, and the harness holds hundreds of MB of data.
_LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as fh:
    json.dump({"wall_s": wall, "maxrss_kb": usage.ru_maxrss, "user_s": usage.ru_utime, "system_s": usage.ru_stime}, fh)
sys.exit(os.waitstatus_to_exitcode(status) & 255)
"""


def _measured_pid(launcher_pid: int) -> int | None:
    try:
        with open(f"/proc/{launcher_pid}/task/{launcher_pid}/children", encoding="ascii") as fh:
            children = fh.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def run_process(command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                timeout_s: float = 3600.0, sample_every_s: float = 0.25, check: bool = True) -> ProcessRun:
    """Run ``command`` to its end; wall time, peak RSS (kernel's ``ru_maxrss`` of this process) and
    RSS samples. Raises ``RuntimeError`` with the end of its error output when it fails and ``check``."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stem = OUT_DIR / f"process-{os.getpid()}-{threading.get_ident()}"
    err_path, usage_path = stem.with_suffix(".stderr"), stem.with_suffix(".usage.json")
    usage_path.unlink(missing_ok=True)
    load_before = load_average()
    samples: list[tuple[float, int]] = []
    with open(err_path, "wb") as err, open(os.devnull, "wb") as devnull:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(usage_path), *map(str, command)],
                                   env=dict(env) if env is not None else child_env(), cwd=cwd or REPO,
                                   stdout=devnull, stderr=err)
        done = threading.Event()

        def sample() -> None:
            pid = None
            while not done.is_set():
                pid = pid or _measured_pid(process.pid)
                rss = _rss_kb(pid) if pid else None
                if rss is not None:
                    samples.append((time.perf_counter() - started, rss))
                done.wait(sample_every_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            measured = _measured_pid(process.pid)
            if measured:
                os.kill(measured, 9)
            process.wait()
        wall = time.perf_counter() - started
        done.set()
    sampler.join()
    tail = err_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    err_path.unlink(missing_ok=True)
    try:
        usage = json.loads(usage_path.read_text(encoding="utf-8"))
        usage_path.unlink()
    except (OSError, ValueError):
        usage = {"wall_s": wall, "maxrss_kb": 0, "user_s": float("nan"), "system_s": float("nan")}
    # the measured process's own wall time (from its fork to its end), the launcher's start-up left out
    run = ProcessRun(list(map(str, command)), float(usage["wall_s"]), int(usage["maxrss_kb"]), usage["user_s"],
                     usage["system_s"], process.returncode, load_before, load_average(), samples, tail)
    if check and run.returncode != 0:
        raise RuntimeError(f"{' '.join(run.command)} failed (status {run.returncode}):\n{tail}")
    return run


# --- Repeated measurements --------------------------------------------------------------------------


@dataclass
class Series:
    """Repeated measurements of one quantity (seconds, bytes or MB), with the load around them."""

    values: list[float] = field(default_factory=list)
    load_before: tuple[float, float, float] = (float("nan"),) * 3
    load_after: tuple[float, float, float] = (float("nan"),) * 3
    unit: str = "s"

    @property
    def median(self) -> float:
        return float(statistics.median(self.values)) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"values": self.values, "load_before": self.load_before, "load_after": self.load_after,
                "unit": self.unit, "median": self.median}


def repeat_process(command: Sequence[str], *, runs: int, warmup: int = 1, env: Mapping[str, str] | None = None,
                   before: Callable[[], None] | None = None) -> tuple[Series, Series, list[ProcessRun]]:
    """``warmup`` unmeasured runs, then ``runs`` measured ones: (wall series, peak-RSS series in MB, runs)."""
    for _ in range(warmup):
        if before is not None:
            before()
        run_process(command, env=env)
    wall, peak = Series(load_before=load_average()), Series(unit="MB")
    done: list[ProcessRun] = []
    for _ in range(runs):
        if before is not None:
            before()
        run = run_process(command, env=env)
        done.append(run)
        wall.values.append(run.wall_s)
        peak.values.append(run.peak_rss_mb)
    wall.load_after = load_average()
    peak.load_before, peak.load_after = wall.load_before, wall.load_after
    return wall, peak, done


def repeat_call(fn: Callable[[], object], *, runs: int, warmup: int = 1) -> tuple[Series, object]:
    """Median wall time of an in-process call (after ``warmup`` calls); returns the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    series = Series(load_before=load_average())
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        series.values.append(time.perf_counter() - started)
    series.load_after = load_average()
    return series, result


# --- The machine ---------------------------------------------------------------------------------------


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """CPU, memory, OS, Python and the versions of the libraries measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
                break
    except OSError:
        pass
    import shapely

    info = {
        "CPU": f"{cpu} ({os.cpu_count()} logical CPUs)",
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "shapely": f"{shapely.__version__} (GEOS {shapely.geos_version_string})",
    }
    for name in ("duckdb", "geopandas", "pandas", "numpy", "pyarrow", "pyproj", "streamlit", "streamlit-folium",
                 "folium", "playwright"):
        info[name] = _package(name)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "essmap", "app.py"], cwd=REPO,
                           capture_output=True, text=True)
    changed = " (+ uncommitted changes)" if dirty.stdout.strip() else ""
    info["essmap commit"] = (commit.stdout.strip() or "?") + changed
    return info
