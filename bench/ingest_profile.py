"""Where an ingest spends its time and its memory: stage by stage, and a cProfile listing.

Runs ``essmap.store.ingest.ingest_files`` (what ``essmap ingest`` calls) in this process on a copy
of a store, with a progress callback that stamps each stage, a thread that samples this process's
resident memory every 0.1 s, and cProfile around the whole call. Prints one JSON line: the stages
(label, seconds since the start, seconds the stage took, peak resident MB during it), the whole
peak, and the path of the cProfile listing. Used by ``bench/run.py`` when the SIRENE ingest
misses its target. Run: ``python bench/ingest_profile.py sirene FILES... --db STORE_COPY --listing OUT``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import threading
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--listing", type=Path, required=True)
    parser.add_argument("--stats", type=Path, help="also write the raw cProfile statistics there (for pstats)")
    args = parser.parse_args(argv)

    from essmap.domain.config import load_settings
    from essmap.store.ingest import ingest_files

    samples: list[tuple[float, float]] = []
    stages: list[tuple[str, float]] = []
    done = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter() - started, _rss_mb()))
            done.wait(0.1)

    def progress(label: str, _fraction: float) -> None:
        stages.append((label, time.perf_counter() - started))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    profiler = cProfile.Profile()
    profiler.runcall(ingest_files, args.db, args.source, args.files, settings=load_settings(), progress=progress)
    total = time.perf_counter() - started
    done.set()
    sampler.join()

    rows, previous = [], 0.0
    for label, at in [*stages, ("(end)", total)]:
        during = [rss for t, rss in samples if previous <= t <= at] or [float("nan")]
        rows.append({"reached": label, "at_s": at, "took_s": at - previous, "peak_mb": max(during)})
        previous = at
    if args.stats:
        profiler.dump_stats(str(args.stats))
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    args.listing.write_text(text.getvalue(), encoding="utf-8")
    sys.stdout.write(json.dumps({"stages": rows, "wall_s": total, "peak_mb": max(r for _, r in samples),
                                 "listing": str(args.listing)}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
