"""``make bench-browser``: the dashboard's speed in a real browser, on the embedded data.

Measured in one run, on ``data/essmap.duckdb`` (``make build``), with Debian's chromium driven by
Playwright against ``streamlit run app.py`` on a free local port (the tests' driver,
tests/browser/appdriver.py):

- first complete map: from the start of the page load to the Leaflet map of the streamlit-folium
  frame having drawn its vector layers; each repetition is a new browser tab on the warm server
  (caches filled by one warm-up load, whose time is reported as the cold start); also from the
  page's load event (the Streamlit page itself loaded) to the map drawn;
- filter change: from the click on the employer checkbox of the sidebar to the new map drawn;
- map size: bytes received on the Streamlit websocket for one page load, and the largest
  message (the one carrying the map), for every département of the embedded region.

Figures are medians of several repetitions; results go to bench/BROWSER.md with the machine and
the verdict against the targets of the dashboard issue.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(HERE), str(REPO / "tests" / "browser")):
    if path not in sys.path:
        sys.path.insert(0, path)

from appdriver import (  # noqa: E402
    MAP_IFRAME,
    VIEWPORT,
    StreamlitServer,
    launch_chromium,
    map_frame,
    mark_map_stale,
    new_page,
    wait_for_script_idle,
)

from essmap.domain.config import DEMO_DEPARTEMENTS, load_settings  # noqa: E402

RESULTS = HERE / "BROWSER.md"
LOG = HERE / "out" / "browser-streamlit.log"

#: Targets of the dashboard issue (#4).
TARGET_FIRST_MAP_S = 3.0
TARGET_FILTER_REDRAW_S = 1.0
TARGET_MAP_BYTES = 3_000_000

#: Label of the sidebar checkbox toggled as "a filter change" (UI contract: "Établissements
#: employeurs uniquement"; matched on its stable part).
FILTER_CHECKBOX_TEXT = "employeurs"


def log(message: str) -> None:
    print(f"[bench-browser {datetime.now():%H:%M:%S}] {message}", flush=True)


@dataclass
class PageLoad:
    seconds: float  # start of the page load -> map drawn
    after_load_event_s: float  # the page's load event -> map drawn
    map_message_s: float  # start -> the websocket message carrying the map received
    iframe_s: float  # start -> the map component's frame attached
    ws_bytes: int
    largest_message: int


@dataclass
class Redraw:
    seconds: float  # click -> new map drawn
    map_message_s: float  # click -> the message carrying the new map received


@dataclass
class Results:
    cold_first_map_s: float = 0.0
    first_map: list[PageLoad] = field(default_factory=list)
    filter_redraw: list[Redraw] = field(default_factory=list)
    map_bytes: dict[str, PageLoad] = field(default_factory=dict)
    chromium: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _largest_since(messages: list[tuple[float, int]], start: float) -> tuple[float, int]:
    """(arrival time, size) of the largest websocket message received after ``start``."""
    later = [m for m in messages if m[0] >= start]
    return max(later, key=lambda m: m[1], default=(start, 0))


def load_page(browser, url: str) -> tuple[PageLoad, object, list[tuple[float, int]]]:
    """Open ``url`` in a new tab; time to the complete map and websocket bytes received."""
    page = new_page(browser)
    messages: list[tuple[float, int]] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda payload: messages.append((time.perf_counter(), len(payload)))))
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(MAP_IFRAME, state="attached", timeout=120_000)
    iframe_s = time.perf_counter() - start
    map_frame(page, timeout_ms=120_000)
    seconds = time.perf_counter() - start
    load_event_s = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd / 1000")
    arrival, largest = _largest_since(messages, start)
    wait_for_script_idle(page)
    return PageLoad(seconds, seconds - load_event_s, arrival - start, iframe_s, sum(size for _, size in messages), largest), page, messages


def filter_checkbox(page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stCheckbox"]').filter(has_text=FILTER_CHECKBOX_TEXT)


def time_filter_change(page, messages: list[tuple[float, int]]) -> Redraw:
    """Toggle the employer checkbox; seconds until the new map has drawn."""
    mark_map_stale(map_frame(page))
    start = time.perf_counter()
    filter_checkbox(page).locator("label").click()
    map_frame(page, timeout_ms=120_000)
    seconds = time.perf_counter() - start
    arrival, _ = _largest_since(messages, start)
    wait_for_script_idle(page)
    return Redraw(seconds, arrival - start)


def run(repetitions: int, db_path: Path) -> Results:
    from playwright.sync_api import sync_playwright

    results = Results(load_before=os.getloadavg())
    with StreamlitServer(db_path, LOG) as server, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        results.chromium = browser.version
        log(f"server {server.url}, chromium {browser.version}")
        cold, page, _ = load_page(browser, server.url)
        results.cold_first_map_s = cold.seconds
        page.context.close()
        log(f"cold start (server caches empty): {cold.seconds:.2f} s")
        for i in range(repetitions):
            load, page, messages = load_page(browser, server.url)
            results.first_map.append(load)
            log(f"first map {i + 1}/{repetitions}: {load.seconds:.2f} s (map message at {load.map_message_s:.2f} s), "
                f"{load.ws_bytes / 1e6:.2f} MB")
            if i == 0:
                # every filter state once before timing: the heavy work is cached across reruns
                for _ in range(2):
                    time_filter_change(page, messages)
                for j in range(repetitions):
                    redraw = time_filter_change(page, messages)
                    results.filter_redraw.append(redraw)
                    log(f"filter change {j + 1}/{repetitions}: {redraw.seconds:.2f} s "
                        f"(map message at {redraw.map_message_s:.2f} s)")
            page.context.close()
        for dep in DEMO_DEPARTEMENTS:
            load, page, _ = load_page(browser, f"{server.url}/?departements={dep}")
            page.context.close()
            results.map_bytes[dep] = load
            log(f"département {dep}: {load.ws_bytes / 1e6:.2f} MB on the websocket "
                f"(largest message {load.largest_message / 1e6:.2f} MB)")
        browser.close()
    results.load_after = os.getloadavg()
    return results


def machine() -> list[str]:
    """The machine, from the spatial benchmark's description, plus the browser stack."""
    from run import machine_info

    info = machine_info()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return [
        f"- CPU: {info['CPU']}; RAM {info['RAM']}; {info['OS']}",
        f"- Python {info['Python']}, streamlit {version('streamlit')}, streamlit-folium {version('streamlit-folium')}, "
        f"folium {version('folium')}, playwright {version('playwright')}",
        f"- git commit {commit or '?'}",
    ]


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def write_report(results: Results, repetitions: int, db_path: Path) -> str:
    first_s = [load.seconds for load in results.first_map]
    redraw_s = [redraw.seconds for redraw in results.filter_redraw]
    first, redraw = statistics.median(first_s), statistics.median(redraw_s)
    after_load = [load.after_load_event_s for load in results.first_map]
    first_after_load = statistics.median(after_load)
    first_message = statistics.median(load.map_message_s for load in results.first_map)
    first_iframe = statistics.median(load.iframe_s for load in results.first_map)
    load_event = statistics.median(load.seconds - load.after_load_event_s for load in results.first_map)
    redraw_message = statistics.median(r.map_message_s for r in results.filter_redraw)
    largest_dep, largest = max(results.map_bytes.items(), key=lambda item: item[1].ws_bytes)
    lines = [
        "# Browser benchmark of the dashboard (`make bench-browser`)",
        "",
        f"Generated by `bench/browser.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, on the embedded "
        f"data (`{db_path.relative_to(REPO) if db_path.is_relative_to(REPO) else db_path}`, région PACA, "
        "synthetic establishments at full scale), in Debian chromium "
        f"{results.chromium} (headless, Playwright), window {VIEWPORT['width']}×{VIEWPORT['height']}.",
        "",
        *machine(),
        f"- load average (1, 5, 15 min) before the run {', '.join(f'{x:.1f}' for x in results.load_before)}, "
        f"after {', '.join(f'{x:.1f}' for x in results.load_after)} (other jobs share the machine: a load "
        f"above {os.cpu_count()} inflates every figure)",
        "",
        "How: `streamlit run app.py` on a free local port (file watcher off); each page load is a new "
        "browser tab on the warm server; the map is complete when the Leaflet map of the streamlit-folium "
        "frame has drawn its vector layers (pixels on its canvas) and added its packed point layers. A filter change is a click on the "
        "sidebar checkbox « Établissements employeurs uniquement », timed until the new map is drawn, after "
        "both states were shown once (server caches filled). Map size: bytes received on the Streamlit "
        f"websocket for one page load (the map is its largest message). Medians of {repetitions} repetitions.",
        "",
        "| measure | median | min | max | target | verdict |",
        "|---|---|---|---|---|---|",
        f"| first complete map from the start of the page load (warm server) | {first:.2f} s | {min(first_s):.2f} s | "
        f"{max(first_s):.2f} s | < {TARGET_FIRST_MAP_S:g} s | {verdict(first < TARGET_FIRST_MAP_S)} |",
        f"| first complete map after the page's load event | {first_after_load:.2f} s | {min(after_load):.2f} s | "
        f"{max(after_load):.2f} s | < {TARGET_FIRST_MAP_S:g} s | {verdict(first_after_load < TARGET_FIRST_MAP_S)} |",
        f"| redraw after a filter change | {redraw:.2f} s | {min(redraw_s):.2f} s | "
        f"{max(redraw_s):.2f} s | < {TARGET_FILTER_REDRAW_S:g} s | {verdict(redraw < TARGET_FILTER_REDRAW_S)} |",
        f"| map sent to the browser, largest département ({largest_dep}) | {largest.ws_bytes / 1e6:.2f} MB | | | "
        f"< {TARGET_MAP_BYTES / 1e6:g} MB | {verdict(largest.ws_bytes < TARGET_MAP_BYTES)} |",
        "",
        "Where the time goes (medians). Page load: the Streamlit page has loaded (load event) at "
        f"{load_event:.2f} s, the websocket message carrying the map arrives at {first_message:.2f} s (server: "
        f"script run, map serialised by st_folium), the map component's frame is attached at {first_iframe:.2f} s, "
        f"the map is drawn at {first:.2f} s (component page, Leaflet scripts, drawing). Filter change: the new map "
        f"message arrives {redraw_message:.2f} s after the click, the map is drawn {redraw - redraw_message:.2f} s "
        "later.",
        "",
        f"Cold start (first page load after the server started, caches empty): {results.cold_first_map_s:.2f} s.",
        "",
        "Bytes received per département view (`?departements=XX`, default indicator and level):",
        "",
        "| département | websocket total | largest message (map) |",
        "|---|---|---|",
        *(f"| {dep} | {load.ws_bytes / 1e6:.2f} MB | {load.largest_message / 1e6:.2f} MB |"
          for dep, load in results.map_bytes.items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--db", type=Path, default=None, help="database (default: the embedded one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    db_path = (args.db or load_settings().db_path).resolve()
    if not db_path.exists():
        sys.exit(f"{db_path} is missing: run `make build` first")
    results = run(args.repetitions, db_path)
    args.out.write_text(write_report(results, args.repetitions, db_path))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
