"""``make serve``: dashboard replicas behind Debian's nginx with sticky sessions, in Debian's chromium.

The real launcher (serve/run.py) starts two replicas and nginx on free ports, on a copy of the demo
store. Independent browser contexts (fresh cookies, like different users) load the map and download
a table through nginx: every response of one context must come from one replica (the
``X-Essmap-Replica`` header, and nginx's access log for the websocket and the download), and both
replicas must serve. A Ctrl-C then stops everything: no process of the launcher's group is left and no
port still listens.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from appdriver import ARTIFACTS, REPO, free_port, map_frame, new_page, wait_for_script_idle
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

LAUNCHER = REPO / "serve" / "run.py"
STICKY_COOKIE = "essmap_replica"
REPLICA_HEADER = "x-essmap-replica"
#: Requests straight to the local servers, never through an HTTP proxy of the environment.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
#: Contexts are opened until both replicas have served. Each lands on either replica with a
#: probability near 1/2 (consistent hash of a random id): all of them on one replica has a
#: probability of about 2 x 0.5^16 (3e-5) even with a 45/55 split of the hash ring (1e-4).
MAX_CONTEXTS = 16
READY = re.compile(r"^nginx prêt \(pid \d+\)", re.M)
REPLICAS_ONLY_READY = re.compile(r"^\d+ répliques sans nginx", re.M)
REPLICA_READY = re.compile(r"^réplique \d+ prête : http://127\.0\.0\.1:(\d+) \(pid (\d+)\)$", re.M)
#: One line of the access log (log_format essmap of serve/nginx.conf.template).
ACCESS_LINE = re.compile(r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) .* '
                         r"replica=(?P<replica>\S+) sticky=(?P<sticky>\S+)$")


@dataclass
class Served:
    """The launcher running in its own process group (its pid is the group id)."""

    process: subprocess.Popen
    url: str
    port: int
    replica_ports: list[int]
    run_dir: Path
    output: Path

    def output_text(self) -> str:
        return self.output.read_text(errors="replace")

    def ctrl_c(self, timeout_s: float = 60) -> int:
        """SIGINT to the whole group, as a Ctrl-C in the terminal; the launcher's exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout_s)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def _as_from_a_terminal() -> None:
    """Ctrl-C acts on a launcher started from a terminal: a test run started in the background of a
    non-interactive shell (``make test &``) passes SIGINT down ignored, and the launcher would then
    outlive its nginx's Ctrl-C instead of stopping with it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_launcher(db: Path, run_dir: Path, output: Path, *, replicas: int, options: tuple[str, ...] = (),
                   timeout_s: float = 180) -> Served:
    """serve/run.py in its own process group, once it says it is ready (``--replicas-only``: no nginx)."""
    port = free_port()
    command = [sys.executable, str(LAUNCHER), "--replicas", str(replicas), "--port", str(port),
               "--address", "127.0.0.1", "--replica-port", "0", "--db", str(db), "--run-dir", str(run_dir), *options]
    ready = REPLICAS_ONLY_READY if "--replicas-only" in options else READY
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_as_from_a_terminal)
    served = Served(process, f"http://127.0.0.1:{port}", port, [], run_dir, output)
    deadline = time.monotonic() + timeout_s
    while not ready.search(served.output_text()):
        if process.poll() is not None:
            pytest.fail(f"the launcher stopped (status {process.returncode}):\n{served.output_text()}")
        if time.monotonic() > deadline:
            stop_group(process)
            pytest.fail(f"the launcher was not ready within {timeout_s:.0f} s:\n{served.output_text()}")
        time.sleep(0.2)
    served.replica_ports = [int(port) for port, _pid in REPLICA_READY.findall(served.output_text())]
    assert len(served.replica_ports) == replicas, served.output_text()
    return served


def stop_group(process: subprocess.Popen) -> None:
    """Cleanup after a failed test: SIGKILL whatever is left in the launcher's group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def access_log(served: Served) -> list[dict[str, str]]:
    lines = (served.run_dir / "logs" / "access.log").read_text().split("\n")[:-1]  # complete lines only
    entries = [ACCESS_LINE.search(line) for line in lines]
    assert all(entries), [line for line, entry in zip(lines, entries, strict=True) if not entry][:3]
    return [entry.groupdict() for entry in entries if entry]


@pytest.fixture
def store_copy(demo_db, tmp_path) -> Path:
    db = tmp_path / "essmap.duckdb"
    shutil.copyfile(demo_db, db)
    return db


@dataclass
class Visit:
    """One browser context (one user) through nginx."""

    context: object
    cookie: str = ""
    #: X-Essmap-Replica of every response from nginx (None: the header was missing)
    replicas: list[str | None] = field(default_factory=list)
    download_url: str = ""


def visit(chromium, served: Served, number: int) -> Visit:
    """A fresh context loads the complete map, then downloads a table from the Exports tab."""
    page = new_page(chromium)
    page.context.set_default_timeout(90_000)
    seen = Visit(page.context)

    def on_response(response) -> None:
        if response.url.startswith(served.url):
            seen.replicas.append(response.headers.get(REPLICA_HEADER))

    page.context.on("response", on_response)
    try:
        page.goto(served.url + "/")
        map_frame(page, timeout_ms=120_000)
        wait_for_script_idle(page)
        expect(page.get_by_role("heading", name=re.compile("^essmap"))).to_be_visible()
        # a download is a file of the replica's memory (/media/...): it must come from the same replica
        page.get_by_role("tab", name="Exports").click()
        wait_for_script_idle(page)
        with page.expect_download(timeout=90_000) as download_info:
            page.get_by_role("button", name="CSV", exact=True).click()
        download = download_info.value
        assert download.failure() is None, download.failure()
        content = Path(download.path()).read_text(encoding="utf-8-sig")
        assert len(content.splitlines()) > 1 and "," in content.splitlines()[0], content[:200]
        seen.download_url = download.url
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"replicas-context-{number}-failed.png"), full_page=True)
        raise
    cookies = [c["value"] for c in page.context.cookies() if c["name"] == STICKY_COOKIE]
    assert len(cookies) == 1, page.context.cookies()
    seen.cookie = cookies[0]
    return seen


def test_each_browser_stays_on_one_replica_and_ctrl_c_stops_all(chromium, store_copy, tmp_path):
    served = start_launcher(store_copy, tmp_path / "run", ARTIFACTS / "serve-replicas.log", replicas=2)
    replica_addresses = {f"127.0.0.1:{port}" for port in served.replica_ports}
    visits: list[Visit] = []
    try:
        # nginx opens once every replica has been warmed (serve/warm.py): no user meets a cold replica
        for port in served.replica_ports:
            assert "tableau de bord préchauffé" in _text(served.run_dir / "logs" / f"warm-{port}.log"), port
        while len(visits) < 2 or len({v.replicas[0] for v in visits}) < 2:
            assert len(visits) < MAX_CONTEXTS, f"{MAX_CONTEXTS} contexts all went to {visits[0].replicas[0]}"
            visits.append(visit(chromium, served, len(visits) + 1))
            # every response of one context, the first page included, from one replica
            assert visits[-1].replicas and len(set(visits[-1].replicas)) == 1, visits[-1].replicas
            assert visits[-1].replicas[0] in replica_addresses, visits[-1].replicas
            assert visits[-1].download_url.startswith(served.url + "/media/"), visits[-1].download_url
        for v in visits:
            v.context.close()  # closes the websockets: nginx logs each one when it ends
        assert len({v.cookie for v in visits}) == len(visits)
        deadline = time.monotonic() + 60
        while not all(any(e["path"] == "/_stcore/stream" and e["sticky"] == v.cookie for e in access_log(served))
                      for v in visits):
            assert time.monotonic() < deadline, "nginx did not log the end of every websocket within 60 s"
            time.sleep(0.5)

        status = served.ctrl_c()
        assert status == 0, served.output_text()
        assert not group_alive(served.process.pid), "a process of the launcher's group outlived it"
        for port in (served.port, *served.replica_ports):
            assert not listening(port), f"port {port} still listens after Ctrl-C"
    finally:
        for v in visits:
            v.context.close()  # a no-op when already closed
        if served.process.poll() is None or group_alive(served.process.pid):
            stop_group(served.process)

    # nginx's view: each cookie's requests (websocket and download included) went to the replica
    # whose header its context saw
    by_cookie: dict[str, list[dict[str, str]]] = defaultdict(list)
    for entry in access_log(served):
        by_cookie[entry["sticky"]].append(entry)
    for v in visits:
        entries = by_cookie[v.cookie]
        assert {e["replica"] for e in entries} == {v.replicas[0]}, entries
        paths = [e["path"] for e in entries]
        assert "/_stcore/stream" in paths, paths
        assert any(p.startswith("/media/") for p in paths), paths
        assert all(e["status"] in ("101", "200", "204", "304") for e in entries), entries
    print(f"{len(visits)} contexts: " + ", ".join(v.replicas[0] for v in visits))


def health_replica(served: Served, cookie: str | None) -> tuple[str, str | None]:
    """(X-Essmap-Replica, the Set-Cookie of the sticky cookie or None) of a health check through nginx."""
    request = urllib.request.Request(f"{served.url}/_stcore/health",
                                     headers={"Cookie": f"{STICKY_COOKIE}={cookie}"} if cookie else {})
    with DIRECT.open(request, timeout=10) as response:
        sticky = [c for c in response.headers.get_all("Set-Cookie", []) if c.startswith(f"{STICKY_COOKIE}=")]
        assert len(sticky) <= 1, sticky
        return response.headers[REPLICA_HEADER], (sticky or [None])[0]


def test_second_machine_replicas_and_a_killed_launcher(store_copy, tmp_path):
    """A launcher with ``--upstream`` spreads browsers over its replica and the one of "another machine"
    (a ``--replicas-only`` launcher), one replica per cookie; a SIGKILL of that launcher alone (no
    cleanup code runs) still stops its nginx and replica; on the other machine, a replica that dies
    stops its launcher with an error."""
    other = start_launcher(store_copy, tmp_path / "other", ARTIFACTS / "serve-other-machine.log", replicas=1,
                           options=("--replicas-only",))
    try:
        remote = f"127.0.0.1:{other.replica_ports[0]}"
        served = start_launcher(store_copy, tmp_path / "run", ARTIFACTS / "serve-upstream.log", replicas=1,
                                options=("--upstream", remote))
        try:
            local = f"127.0.0.1:{served.replica_ports[0]}"
            replica, set_cookie = health_replica(served, None)
            assert replica in (local, remote)
            assert set_cookie and re.fullmatch(rf"{STICKY_COOKIE}=[0-9a-f]{{32}}; Path=/; HttpOnly; SameSite=Lax",
                                               set_cookie), set_cookie
            # 40 users: all on one replica would have a probability of about 2e-12
            chosen = {f"user-{i}": health_replica(served, f"user-{i}") for i in range(40)}
            assert all(set_cookie is None for _replica, set_cookie in chosen.values())  # set once only
            assert {replica for replica, _ in chosen.values()} == {local, remote}
            assert all(health_replica(served, cookie)[0] == replica for cookie, (replica, _) in chosen.items())

            served.process.kill()
            served.process.wait(timeout=10)
            deadline = time.monotonic() + 30
            while group_alive(served.process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not group_alive(served.process.pid), "nginx or a replica outlived the killed launcher"
            assert not listening(served.port) and not listening(served.replica_ports[0])
            assert listening(other.replica_ports[0]), "the other machine's replica stopped with this launcher"
        finally:
            stop_group(served.process)
        # a replica that dies takes its launcher down, with the reason, and nothing stays behind
        replica_pid = int(REPLICA_READY.search(other.output_text()).group(2))
        os.kill(replica_pid, signal.SIGKILL)
        assert other.process.wait(timeout=30) == 1, other.output_text()
        assert "réplique 1 : arrêt inattendu (code -9)" in other.output_text()
        assert not group_alive(other.process.pid)
    finally:
        stop_group(other.process)
