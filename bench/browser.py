"""The dashboard in Debian chromium: when the map reaches each session, and when it is drawn.

Every case starts its own server as ``make run`` does (``serve/launch.py``: ``streamlit run app.py``
once the app's stack is imported; headless, file watcher off: the tests' driver,
``tests/browser/appdriver.py``) on the store it measures, and opens fresh browser tabs (a new
browser context each: empty cache, like a first visit) with Playwright. Timing happens in the
pages, on the machine's clock:

- the **map message**: a script installed before the page's own wraps ``WebSocket`` and stamps
  every message Streamlit receives (``performance.timeOrigin + performance.now()``, before the app
  handles it); the map message is the largest one carrying the streamlit-folium component. Its
  time is counted from the page's navigation start (``performance.timeOrigin``), its size is the
  map's bytes on the wire;
- the **full drawing**: in the map's frame, the same script checks every 50 ms whether the Leaflet
  map has drawn its vector layers and added its packed point layers (the tests' definition of a
  complete map), and stamps the first time it is.

Cases (``run``):

- ``national_8``: 8 sessions open 8 different départements of the national store at once, on a
  server just started, and on a server that has served one other département (process warm, the 8
  views cold). Just started is what ``make run`` gives a user: the tabs open as soon as the port
  answers (the stack imported), while ``serve/warm.py`` computes the default view (13, one of the
  8) beside them. Target: the map message reaches every session in < 3 s; drawing reported.
- ``embedded_4``: on the embedded store, 4 sessions open 4 unvisited départements at once, against
  the same 4 départements opened one at a time (each unvisited then) on another server started the
  same way; both servers first serve one other département. Target: slowest map message <= 2x the
  slowest lone one.
- ``national_first``: one session on a warm server (it has served other départements), first map of
  a département it has not computed yet, then of one it has (cached view); then a filter change
  (the employer checkbox): first to a filter state never computed, then back to a cached one.
  Targets: first map < 2 s from navigation, redraw after a filter < 0.5 s.
- ``nord_bytes``: the size of the map message for Nord (59) on the national store (< 2 MB).
- ``national_regions``: one session on a warm server (it has served one département), first map of
  a whole région (``?region=CODE``: choropleth by EPCI, the région's own level, QPVs, tiers-lieux,
  establishments grouped by EPCI). Target (issue 13): < 3 s. Then, as a same-run comparison, the
  same région by commune (``&niveau=commune``, a first map too: another computation).

Beside ``national_first`` and ``national_regions`` runs their fairest peer, the **Streamlit floor**: a
page with a title and a line (``bench/floor_app.py``) served by its own ``streamlit run``, opened
in fresh browser contexts like the dashboard (times from navigation: first websocket message, title
shown). No map can reach a session before Streamlit's own start in the page; the report gives it as
the same-run baseline of the first-map rows.

``run(cases=...)`` runs some cases only (``bench/run.py --browser-cases``); ``nord_bytes`` comes with
``national_8``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from measure import OUT_DIR, REPO, load_average, log

sys.path.insert(0, str(REPO / "tests" / "browser"))
from appdriver import (  # type: ignore[import-not-found]  # noqa: E402
    MAP_COMPLETE_JS,
    MAP_IFRAME,
    MAP_MARK_STALE_JS,
    MAP_STALE_JS,
    StreamlitServer,
    launch_chromium,
    new_page,
    wait_for_script_idle,
)

TARGET_8_SESSIONS_S = 3.0
TARGET_4_SESSIONS_RATIO = 2.0
TARGET_FIRST_MAP_S = 2.0
TARGET_REDRAW_S = 0.5
TARGET_NORD_BYTES = 2_000_000
TARGET_REGION_S = 3.0

NATIONAL_8 = ("59", "13", "75", "69", "33", "31", "44", "93")
NATIONAL_WARM_UP = "01"
NATIONAL_FIRST = ("62", "92", "06", "34", "67")
EMBEDDED_WARM_UP = "13"
#: Auvergne-Rhône-Alpes, Hauts-de-France, Occitanie: the largest régions by communes.
NATIONAL_REGIONS = ("84", "32", "76")
EMBEDDED_4 = ("04", "05", "06", "83")
#: Sidebar checkbox toggled as "a filter change" (UI label « Établissements employeurs uniquement »).
FILTER_CHECKBOX_TEXT = "employeurs"

#: Installed in every frame before its own scripts (see the module docstring).
TIMING_JS = """(() => {
  const now = () => performance.timeOrigin + performance.now();
  if (window === window.top) {
    const messages = [];
    Object.defineProperty(window, '__essmapMessages', {get: () => messages});
    const Original = window.WebSocket;
    const decoder = new TextDecoder('latin1');
    function Stamped(...args) {
      const ws = new Original(...args);
      ws.addEventListener('message', (event) => {
        const at = now();
        const data = event.data;
        let size = 0, map = false;
        if (data instanceof ArrayBuffer) {
          size = data.byteLength;
          map = size > 2000 && decoder.decode(new Uint8Array(data)).includes('streamlit_folium');
        } else if (typeof data === 'string') {
          size = data.length;
          map = data.includes('streamlit_folium');
        } else if (data && data.size !== undefined) {
          size = data.size;
        }
        messages.push({at, size, map});
      });
      return ws;
    }
    Stamped.prototype = Original.prototype;
    for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Stamped[k] = Original[k];
    window.WebSocket = Stamped;
  }
  const complete = """ + MAP_COMPLETE_JS + """;
  setInterval(() => {  // stamped once per showing of a map (the frame counts them: window.essmapShown)
    const map = window.map, shown = window.essmapShown || 0;
    if (map && map.__essmapDrawnShown !== shown && complete()) {
      map.__essmapDrawnAt = now();
      map.__essmapDrawnShown = shown;
    }
  }, 50);
})();"""

#: The drawing time of the current (not stale) map of a frame, or null.
_DRAWN_AT_JS = ("() => (window.map && !(" + MAP_STALE_JS + ")(window.map) && window.map.__essmapDrawnShown === "
                "(window.essmapShown || 0) && window.map.__essmapDrawnAt) || null")


@dataclass
class Session:
    """One page load: times in seconds from the page's navigation start."""

    departement: str
    navigation_start_ms: float = 0.0
    map_message_s: float = float("nan")
    map_message_bytes: int = 0
    drawn_s: float = float("nan")
    websocket_bytes: int = 0


@dataclass
class Redraw:
    """One filter change: seconds from the click."""

    departement: str
    cached: bool
    map_message_s: float = float("nan")
    drawn_s: float = float("nan")


@dataclass
class Round:
    """Sessions opened at once (or one at a time) on one server."""

    label: str
    sessions: list[Session] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    start_spread_s: float = 0.0

    @property
    def slowest_message_s(self) -> float:
        return max(s.map_message_s for s in self.sessions)

    @property
    def slowest_drawn_s(self) -> float:
        return max(s.drawn_s for s in self.sessions)


# --- Driving pages ---------------------------------------------------------------------------------


def _open(browser, url: str):
    page = new_page(browser)
    page.context.add_init_script(TIMING_JS)
    page.set_default_timeout(180_000)
    page.goto(url, wait_until="commit")
    return page


def _drawn_at(page) -> float | None:
    for handle in page.query_selector_all(MAP_IFRAME):
        frame = handle.content_frame()
        try:
            at = frame.evaluate(_DRAWN_AT_JS) if frame is not None else None
        except Exception:  # noqa: BLE001 - frame navigating or detached during a rerun
            at = None
        if at:
            return float(at)
    return None


def _wait_drawn(pages: Sequence, *, timeout_s: float = 240.0) -> list[float]:
    """Epoch milliseconds at which each page's map was complete."""
    found: list[float | None] = [None] * len(pages)
    deadline = time.monotonic() + timeout_s
    while any(f is None for f in found):
        for i, page in enumerate(pages):
            if found[i] is None:
                found[i] = _drawn_at(page)
        if time.monotonic() > deadline:
            raise TimeoutError(f"maps not drawn within {timeout_s:.0f} s")
        pages[0].wait_for_timeout(100)  # playwright keeps handling events meanwhile
    return [f for f in found if f is not None]  # all found by now


def _messages(page) -> list[dict]:
    return page.evaluate("() => window.__essmapMessages.slice()")


def _map_message(messages: list[dict], since_ms: float) -> dict | None:
    """The largest message carrying the map component after ``since_ms``."""
    found = [m for m in messages if m["map"] and m["at"] >= since_ms]
    return max(found, key=lambda m: m["size"], default=None)


def open_at_once(browser, url: str, departements: Sequence[str], label: str, *,
                 parameter: str = "departements") -> Round:
    """One fresh tab per département (or région, ``parameter="region"``), all navigations started
    before waiting for any."""
    result = Round(label, load_before=load_average())
    pages = [_open(browser, f"{url}/?{parameter}={dep}") for dep in departements]
    try:
        drawn = _wait_drawn(pages)
        for dep, page, drawn_at in zip(departements, pages, drawn, strict=True):
            wait_for_script_idle(page, timeout_ms=180_000)
            result.sessions.append(_session(dep, page, drawn_at))
    finally:
        for page in pages:
            page.context.close()
    result.load_after = load_average()
    starts = [s.navigation_start_ms for s in result.sessions]
    result.start_spread_s = (max(starts) - min(starts)) / 1000
    return result


def _session(departement: str, page, drawn_at: float) -> Session:
    origin = float(page.evaluate("() => performance.timeOrigin"))
    messages = _messages(page)
    message = _map_message(messages, origin)
    return Session(departement, origin,
                   (message["at"] - origin) / 1000 if message else float("nan"),
                   int(message["size"]) if message else 0,
                   (drawn_at - origin) / 1000, int(sum(m["size"] for m in messages)))


def one_at_a_time(browser, url: str, departements: Sequence[str], label: str) -> Round:
    result = Round(label, load_before=load_average())
    for dep in departements:
        result.sessions.extend(open_at_once(browser, url, [dep], label).sessions)
    result.load_after = load_average()
    return result


def _filter_checkbox(page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stCheckbox"]').filter(has_text=FILTER_CHECKBOX_TEXT)


def toggle_filter(page, departement: str, *, cached: bool) -> Redraw:
    """Click the employer checkbox; seconds until the new map message and the new map drawn."""
    for handle in page.query_selector_all(MAP_IFRAME):
        frame = handle.content_frame()
        if frame is not None:
            frame.evaluate(f"() => {{ if (window.map) ({MAP_MARK_STALE_JS})(window.map); }}")
    clicked_ms = time.time() * 1000
    _filter_checkbox(page).locator("label").click()
    drawn_at = _wait_drawn([page])[0]
    message = _map_message(_messages(page), clicked_ms)
    wait_for_script_idle(page, timeout_ms=180_000)
    return Redraw(departement, cached, (message["at"] - clicked_ms) / 1000 if message else float("nan"),
                  (drawn_at - clicked_ms) / 1000)


# --- The cases -------------------------------------------------------------------------------------------


def _server(db: Path, name: str, *, warm_default_view: bool = False) -> StreamlitServer:
    return StreamlitServer(db, OUT_DIR / f"browser-{name}.log", startup_timeout_s=180,
                           warm_default_view=warm_default_view)


def national_8(browser, db: Path, *, rounds: int) -> list[Round]:
    out = []
    for i in range(rounds):
        for warm in (False, True):
            label = "server warmed by one other département" if warm else "server just started"
            with _server(db, "national-8", warm_default_view=not warm) as server:  # just started: as make run
                if warm:
                    open_at_once(browser, server.url, [NATIONAL_WARM_UP], "warm-up")
                found = open_at_once(browser, server.url, NATIONAL_8, label)
            out.append(found)
            log(f"browser: 8 sessions, {label} ({i + 1}/{rounds}): slowest map message "
                f"{found.slowest_message_s:.2f} s, "
                f"slowest drawing {found.slowest_drawn_s:.2f} s (load {found.load_before[0]:.2f})")
    return out


def embedded_4(browser, db: Path, *, rounds: int) -> list[dict[str, Round]]:
    out = []
    for i in range(rounds):
        pair: dict[str, Round] = {}
        for mode in ("alone", "together"):
            with _server(db, f"embedded-{mode}") as server:
                open_at_once(browser, server.url, [EMBEDDED_WARM_UP], "warm-up")
                if mode == "alone":
                    pair[mode] = one_at_a_time(browser, server.url, EMBEDDED_4, "one at a time")
                else:
                    pair[mode] = open_at_once(browser, server.url, EMBEDDED_4, "4 at once")
        out.append(pair)
        log(f"browser: embedded 4 at once ({i + 1}/{rounds}): slowest {pair['together'].slowest_message_s:.2f} s vs "
            f"alone {pair['alone'].slowest_message_s:.2f} s")
    return out


def national_first(browser, db: Path, *, departements: Sequence[str]) -> dict[str, Any]:
    """First maps and filter changes on a warm server (it served the départements of ``national_8``)."""
    first, cached, redraws = [], [], []
    with _server(db, "national-first") as server:
        open_at_once(browser, server.url, [NATIONAL_WARM_UP], "warm-up")
        load_before = load_average()
        for dep in departements:
            first.extend(open_at_once(browser, server.url, [dep], "first map").sessions)
            log(f"browser: first map {dep}: message {first[-1].map_message_s:.2f} s, drawn {first[-1].drawn_s:.2f} s")
        for dep in departements:
            page = _open(browser, f"{server.url}/?departements={dep}")
            try:
                drawn_at = _wait_drawn([page])[0]
                wait_for_script_idle(page, timeout_ms=180_000)
                cached.append(_session(dep, page, drawn_at))
                redraws.append(toggle_filter(page, dep, cached=False))
                redraws.append(toggle_filter(page, dep, cached=True))
                log(f"browser: {dep} cached view {cached[-1].map_message_s:.2f} s; filter redraw "
                    f"{redraws[-2].drawn_s:.2f} s (new state), {redraws[-1].drawn_s:.2f} s (cached state)")
            finally:
                page.context.close()
        load_after = load_average()
    return {"first": first, "cached": cached, "redraws": redraws, "load_before": load_before, "load_after": load_after}


def national_regions(browser, db: Path, *, regions: Sequence[str]) -> dict[str, Any]:
    """First map of whole régions at their own level (EPCI), then by commune, one session at a time,
    on a server that has served one département."""
    with _server(db, "national-regions") as server:
        open_at_once(browser, server.url, [NATIONAL_WARM_UP], "warm-up")
        load_before = load_average()
        sessions, by_commune = [], []
        for region in regions:
            for found, value, level in ((sessions, region, "EPCI"),
                                        (by_commune, f"{region}&niveau=commune", "commune")):
                found.extend(open_at_once(browser, server.url, [value], "first map of a région", parameter="region")
                             .sessions)
                found[-1].departement = region
                log(f"browser: région {region} by {level}: message {found[-1].map_message_s:.2f} s, "
                    f"drawn {found[-1].drawn_s:.2f} s ({found[-1].map_message_bytes / 1e6:.2f} MB)")
        load_after = load_average()
    return {"first": sessions, "by_commune": by_commune, "load_before": load_before, "load_after": load_after}


FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"
FLOOR_RUNS = 5


def streamlit_floor(browser, *, runs: int = FLOOR_RUNS) -> dict[str, Any]:
    """Seconds from navigation to the first websocket message and to the title of
    :data:`FLOOR_APP`, each in a fresh browser context, after one unmeasured page."""
    import subprocess
    import urllib.request

    from appdriver import STREAMLIT, free_port  # type: ignore[import-not-found]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([str(STREAMLIT), "run", str(FLOOR_APP), "--server.port", str(port),
                                "--server.address", "127.0.0.1", "--server.headless", "true",
                                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the Streamlit floor page did not start on {url}") from None
                time.sleep(0.2)
        first_message, title = [], []
        load_before = load_average()
        for run in range(runs + 1):
            page = _open(browser, url + "/")
            try:
                page.wait_for_function("() => (document.querySelector('h1') || {}).textContent === 'Page témoin'",
                                       polling=20, timeout=60_000)
                shown_ms = float(page.evaluate("() => performance.now()"))
                origin = float(page.evaluate("() => performance.timeOrigin"))
                messages = _messages(page)
            finally:
                page.context.close()
            if run == 0:  # the server's first script run: not what a visitor meets
                continue
            first_message.append((messages[0]["at"] - origin) / 1000 if messages else float("nan"))
            title.append(shown_ms / 1000)
        log(f"browser: Streamlit floor page: first message {median(first_message):.2f} s, title {median(title):.2f} s")
        return {"first_message_s": first_message, "title_s": title, "load_before": load_before,
                "load_after": load_average()}
    finally:
        process.terminate()
        process.wait(timeout=15)


#: The cases of :func:`run`, in the order they run.
CASES = ("embedded_4", "national_8", "national_first", "national_regions")


def run(national_db: Path | None, embedded_db: Path, *, rounds: int, small: bool = False,
        cases: Sequence[str] = CASES) -> dict[str, Any]:
    """The browser ``cases`` (all by default); ``national_db`` None runs only the embedded-store case."""
    from playwright.sync_api import sync_playwright

    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"unknown browser cases {sorted(unknown)}; cases: {', '.join(CASES)}")
    out: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        out["chromium"] = browser.version
        try:
            if "embedded_4" in cases:
                out["embedded_4"] = [{k: asdict(v) for k, v in pair.items()}
                                     for pair in embedded_4(browser, embedded_db, rounds=rounds)]
            if national_db is not None and "national_8" in cases:
                rounds_8 = national_8(browser, national_db, rounds=rounds)
                out["national_8"] = [asdict(r) for r in rounds_8]
                nord = [s for r in rounds_8 for s in r.sessions if s.departement == "59"]
                out["nord_bytes"] = [s.map_message_bytes for s in nord]
            if national_db is not None and "national_first" in cases:
                departements = NATIONAL_FIRST[:2] if small else NATIONAL_FIRST
                first = national_first(browser, national_db, departements=departements)
                out["national_first"] = {k: [asdict(x) for x in v] if isinstance(v, list) else v
                                         for k, v in first.items()}
                out["national_first"]["floor"] = streamlit_floor(browser)
            if national_db is not None and "national_regions" in cases:
                regions = national_regions(browser, national_db, regions=NATIONAL_REGIONS[:1] if small
                                           else NATIONAL_REGIONS)
                out["national_regions"] = {k: [asdict(x) for x in v] if isinstance(v, list) else v
                                           for k, v in regions.items()}
                out["national_regions"]["floor"] = streamlit_floor(browser)
        finally:
            browser.close()
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")
