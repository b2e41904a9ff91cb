"""Drive the Streamlit dashboard in Debian's chromium: shared by the browser tests and bench/browser.py.

The app runs as a real ``streamlit run app.py`` subprocess on a free local port; the browser is
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
APP = REPO / "app.py"
#: Screenshots and server logs for inspection (ignored by git).
ARTIFACTS = REPO / "tests" / "artifacts" / "browser"
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
    """``streamlit run app.py`` on a free local port against the database ``db_path``.

    Use as a context manager: entering waits until the server answers its health check,
    leaving stops it. The server output goes to ``log_path`` (shown when start-up fails).
    """

    def __init__(self, db_path: Path, log_path: Path, *, env: Mapping[str, str] | None = None,
                 startup_timeout_s: float = 90.0) -> None:
        self.db_path = Path(db_path)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> StreamlitServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ESSMAP_DB": str(self.db_path), **self.extra_env}
        command = [
            str(STREAMLIT), "run", str(APP),
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # other people edit app.py while tests run: never rerun on a file change
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        ]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                status = self.process.returncode
                raise RuntimeError(f"streamlit stopped at start-up (status {status}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"streamlit did not answer on {self.url} within {self.startup_timeout_s:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

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
