"""Drive the Streamlit dashboard in Debian's chromium: shared by the browser tests and bench/browser.py.

The app runs as ``make run`` starts it (``serve/launch.py``: ``streamlit run app.py`` once the app's
stack is imported) in a subprocess on a free local port; the browser is
``/usr/bin/chromium`` driven by Playwright (never a downloaded browser). The map is the
streamlit-folium component: an iframe whose page holds the Leaflet map as ``window.map``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "serve" / "launch.py"
WARM = REPO / "serve" / "warm.py"
#: Screenshots and server logs for inspection (ignored by git).
ARTIFACTS = REPO / "tests" / "artifacts" / "browser"
#: A bare ``streamlit run`` (bench/browser.py's floor page; the dashboard starts through :data:`LAUNCHER`).
STREAMLIT = Path(sys.executable).parent / "streamlit"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
#: Browser window of the tests and the benchmark (a laptop screen).
VIEWPORT = {"width": 1400, "height": 1000}

#: The streamlit-folium component frame (by its page: the map names the frame in French once drawn).
MAP_IFRAME = 'iframe[src*="/component/streamlit_folium.st_folium/"]'

#: ``mark(map)`` marks the map on screen as stale, ``stale(map)`` tells whether it still is: the frame
#: counts the maps it shows (``window.essmapShown``), and a map it shows again (back to a view already
#: seen) is a new showing, no longer stale. Without the counter, a marked map stays stale.
MAP_MARK_STALE_JS = "(map) => { map.__essmapStale = window.essmapShown || true; }"
MAP_STALE_JS = "(map) => Boolean(map.__essmapStale) && map.__essmapStale === (window.essmapShown || true)"

#: True once the Leaflet map of the frame has drawn its vector layers (SVG paths, or pixels on
#: the canvas renderer used with ``prefer_canvas``), has added its packed point layers, and is
#: not a map marked stale by :func:`mark_map_stale` (:data:`MAP_STALE_JS`).
MAP_COMPLETE_JS = """() => {
  const map = window.map;
  if (!map || (""" + MAP_STALE_JS + """)(map) || !document.querySelector('.leaflet-container')) return false;
  if (window.essmapLoading) return false;  // layers still being fetched and unpacked
  let paths = 0;
  map.eachLayer(l => { if (window.L && l instanceof L.Path) paths += 1; });
  if (paths === 0) return false;
  if (document.querySelectorAll('.leaflet-overlay-pane path').length > 0) return true;
  for (const canvas of document.querySelectorAll('.leaflet-overlay-pane canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < data.length; i += 4 * 97) if (data[i] !== 0) return true;
  }
  return false;
}"""


class ChromiumMissing(RuntimeError):
    """Debian's chromium is not installed: the browser tests cannot run."""


def chromium_path() -> Path:
    if not CHROMIUM.exists():
        raise ChromiumMissing(
            f"{CHROMIUM} introuvable : les tests navigateur utilisent le chromium de Debian "
            "(jamais un navigateur téléchargé). Installez-le avec `make system-deps` "
            "(bash .ci/system-deps.sh, paquet Debian « chromium »)."
        )
    return CHROMIUM


def launch_chromium(playwright):
    """Debian's chromium, headless, with no background network traffic."""
    return playwright.chromium.launch(executable_path=str(chromium_path()), args=CHROMIUM_ARGS)


def new_page(browser):
    """A tab in a fresh browser context (empty cache, like a first visit), French locale."""
    context = browser.new_context(viewport=VIEWPORT, locale="fr-FR")
    return context.new_page()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StreamlitServer:
    """The dashboard started by ``make run``'s launcher, on a free local port against the database ``db_path``.

    Use as a context manager: entering waits until the server answers its health check (its port
    opens once the app's stack is imported: what a visitor waits for), leaving stops it. The server
    output goes to ``log_path`` (shown when start-up fails); ``started_s`` is the time from the start
    of the process to the first health check answered. ``warm_default_view`` also starts
    ``serve/warm.py`` beside it, as ``make run`` does: it runs the default view as soon as the port
    answers, while visitors may already arrive; :meth:`wait_warm` waits for it, as ``make serve``
    does before nginx opens.
    """

    def __init__(self, db_path: Path, log_path: Path, *, env: Mapping[str, str] | None = None,
                 startup_timeout_s: float = 90.0, warm_default_view: bool = False) -> None:
        self.db_path = Path(db_path)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.warm_default_view = warm_default_view
        self.process: subprocess.Popen | None = None
        self.warm_process: subprocess.Popen | None = None
        self.started_s = float("nan")

    def __enter__(self) -> StreamlitServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "ESSMAP_DB": str(self.db_path), **self.extra_env}

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, str(LAUNCHER),
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # other people edit app.py while tests run: never rerun on a file change
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        ]
        started = time.perf_counter()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=self._env(), stdout=log, stderr=subprocess.STDOUT)
            if self.warm_default_view:  # it waits for the health check itself
                self.warm_process = subprocess.Popen(
                    [sys.executable, str(WARM), "--host", "127.0.0.1", "--port", str(self.port)],
                    cwd=REPO, env=self._env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                status = self.process.returncode
                self.stop()  # serve/warm.py, if started
                raise RuntimeError(f"streamlit stopped at start-up (status {status}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        self.started_s = time.perf_counter() - started
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"streamlit did not answer on {self.url} within {self.startup_timeout_s:.0f} s:\n"
                           f"{self.log_tail()}")

    def wait_warm(self, timeout_s: float = 300.0) -> None:
        """Until ``serve/warm.py`` has run the default view (RuntimeError if it failed)."""
        assert self.warm_process is not None, "started without warm_default_view"
        if self.warm_process.wait(timeout=timeout_s) != 0:
            raise RuntimeError(f"serve/warm.py failed (status {self.warm_process.returncode}):\n{self.log_tail()}")

    def stop(self) -> None:
        for process in (self.warm_process, self.process):
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --- Page helpers ------------------------------------------------------------------------------


def wait_for_script_idle(page, *, timeout_ms: float = 60_000) -> None:
    """Wait until the Streamlit script run started by the last action has finished.

    A run may finish before it is seen running; then the first wait simply times out quickly.
    """
    try:
        page.wait_for_selector('[data-test-script-state="running"]', state="attached", timeout=1_500)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: the run was already over
        pass
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached",
                           timeout=timeout_ms)


def map_frame(page, *, timeout_ms: float = 60_000):
    """The frame of the map once its Leaflet map is complete (see ``MAP_COMPLETE_JS``)."""
    deadline = time.monotonic() + timeout_ms / 1000
    page.wait_for_selector(MAP_IFRAME, state="attached", timeout=timeout_ms)
    while True:
        for handle in page.query_selector_all(MAP_IFRAME):
            frame = handle.content_frame()
            try:
                if frame is not None and frame.evaluate(MAP_COMPLETE_JS):
                    return frame
            except Exception:  # noqa: BLE001 - frame navigating or detached during a rerun
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Leaflet map was not complete within {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(50)  # not time.sleep: playwright keeps handling events (dialogs)


def mark_map_stale(frame) -> None:
    """Mark the current map, so :func:`map_frame` waits for the one drawn after a change."""
    frame.evaluate(f"() => {{ if (window.map) ({MAP_MARK_STALE_JS})(window.map); }}")


def map_html_text(frame) -> str:
    """Visible text of the map frame (legend, notices, open popups)."""
    return frame.locator("body").inner_text()


def click_map_at(page, frame, lat: float, lon: float, *, zoom: int | None = None) -> None:
    """Click the map at (lat, lon) with the real mouse, optionally zooming there first."""
    if zoom is not None:
        frame.evaluate("([lat, lon, zoom]) => { window.map.setView([lat, lon], zoom, {animate: false}); }",
                       [lat, lon, zoom])
        frame.wait_for_timeout(300)  # let the renderer redraw at the new zoom
    point = frame.evaluate("([lat, lon]) => { const p = window.map.latLngToContainerPoint([lat, lon]);"
                           " const r = window.map.getContainer().getBoundingClientRect();"
                           " return [p.x + r.left, p.y + r.top]; }", [lat, lon])
    element = frame.frame_element()
    element.scroll_into_view_if_needed()
    box = element.bounding_box()
    page.mouse.click(box["x"] + point[0], box["y"] + point[1])
