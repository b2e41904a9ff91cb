"""``make run`` opens its port with the dashboard's stack loaded, and the first session gets its map.

The Makefile's own recipe runs (``make -o DB run``: the store is not rebuilt) on the demo store.
The moment the port first accepts a connection, the server process must already have DuckDB,
GEOS and PROJ loaded (``/proc/PID/maps``): what ``serve/launch.py`` imports before Streamlit opens the
port, and what a bare ``streamlit run`` only loads in its first visitor's script run. The first session
then receives the map, whose component frame the server serves (the component is declared in that
session's run, not before: see ``serve/launch.py``), and ``serve/warm.py``, started beside it, computes
the default view.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Shared libraries of the stack (DuckDB, shapely's GEOS, pyproj's PROJ) that app.py's imports load.
STACK_LIBRARIES = ("_duckdb", "libgeos", "libproj")
MAP_FRAME = "/component/streamlit_folium.st_folium/index.html"

#: Starts make, the launcher and serve/warm.py (10-20 s, most of it the import of the stack): it checks
#: the processes `make run` starts, so `make test` runs it and `make test-unit` leaves it out.
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_processes(pgid: int) -> dict[int, str]:
    """The processes of a process group: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (ProcessLookupError, FileNotFoundError):
            continue
    return found


def listener(pids: list[int], port: int) -> list[int]:
    """Those of ``pids`` that hold a socket listening on ``port`` (``/proc/net/tcp*``, state 0A)."""
    sockets = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                sockets.add(f"socket:[{fields[9]}]")
    found = []
    for pid in pids:
        try:
            if any(os.readlink(fd) in sockets for fd in Path(f"/proc/{pid}/fd").iterdir()):
                found.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def test_make_run_opens_its_port_warm_and_serves_the_first_map(sessions, demo_db, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "make-run.log"
    command = ["make", "--no-print-directory", "-o", str(demo_db), "run", f"PORT={port}", f"DB={demo_db}",
               f"BIN={Path(sys.executable).parent}"]
    with log_path.open("w") as log:
        make = subprocess.Popen(command, cwd=REPO, env={**os.environ, "ESSMAP_DB": str(demo_db)}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not accepts(port):
            assert make.poll() is None, f"make run stopped (status {make.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"port {port} closed after 120 s:\n{log_path.read_text()}"
            time.sleep(0.05)
        servers = listener(list(group_processes(make.pid)), port)
        assert len(servers) == 1, (servers, list(group_processes(make.pid)))
        mapped = Path(f"/proc/{servers[0]}/maps").read_text()
        assert [lib for lib in STACK_LIBRARIES if lib not in mapped] == [], "port open before the stack was loaded"

        # the default view, as a visitor opens it; in a thread of its own: a worker that ran the browser
        # tests first holds Playwright's running event loop in this one (asyncio.run refuses to nest)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(asyncio.run, sessions.open_session(url, "")).result()
        assert first.map_messages >= 1 and first.map_message_bytes > 10_000, first
        assert first.layers_bytes > 0, first
        with urllib.request.urlopen(url + MAP_FRAME, timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()

        while "tableau de bord préchauffé" not in log_path.read_text():
            assert time.monotonic() < deadline, f"serve/warm.py did not finish:\n{log_path.read_text()}"
            time.sleep(0.2)
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_processes(make.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert group_processes(make.pid) == {}, "a process of make run outlived SIGTERM"
