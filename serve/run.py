"""Serve the dashboard to many users: N Streamlit replicas on one read-only store behind nginx.

``make serve REPLICAS=4`` runs this script. It starts the replicas on local ports (``serve/launch.py``,
as ``make run``: a replica's port opens once it has imported the app's stack), waits until each
answers its health check, writes an nginx configuration from ``serve/nginx.conf.template`` into a run
folder (pid, logs and temporary files stay there: no root-owned path is needed) and runs nginx in the
foreground on the public port, with sticky sessions: every request of one browser reaches the replica
that holds its Streamlit session. Once they answer, ``serve/warm.py`` warms each replica in turn (each
computes the default view once, filling its caches; log in the run folder), and nginx opens only
then, so that no user meets a cold replica. Ctrl-C (or SIGTERM) stops nginx and every replica.

Several machines: each runs its own replicas (``--replicas-only --replica-address 0.0.0.0``, on its own
copy of the store), and the machine that runs nginx lists them with ``--upstream HOST:PORT``.

Standard library only: it runs before anything else is known to work.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
LAUNCH = Path(__file__).resolve().with_name("launch.py")
WARM = Path(__file__).resolve().with_name("warm.py")
TEMPLATE = Path(__file__).resolve().with_name("nginx.conf.template")
PLACEHOLDERS = ("@RUN_DIR@", "@LISTEN@", "@UPSTREAM_SERVERS@")
#: Where Debian installs nginx (/usr/sbin is not on an ordinary user's PATH).
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
STOP_TIMEOUT_S = 15.0


class ServeError(RuntimeError):
    """A start-up failure, with a French message for the person running ``make serve``."""


class Stop(Exception):  # noqa: N818 - a request to stop, not an error
    """SIGTERM received: stop like Ctrl-C."""


@dataclass
class Child:
    """A process started by the launcher, with the file its output goes to."""

    name: str
    process: subprocess.Popen
    log_path: Path
    url: str = ""
    port: int = 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Launcher:
    children: list[Child] = field(default_factory=list)

    def stop_all(self) -> None:
        """nginx first (no new requests), then the replicas; SIGKILL whatever ignores SIGTERM."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="Streamlit processes on this machine (default 2)")
    parser.add_argument("--port", type=int, default=8501, help="port of nginx, the address users open (default 8501)")
    parser.add_argument("--address", default="",
                        help="address nginx listens on (default: every interface, like `make run`)")
    parser.add_argument("--replica-port", type=int, default=8601,
                        help="port of the first replica, the next ones follow (default 8601; 0: free ports)")
    parser.add_argument("--replica-address", default="127.0.0.1",
                        help="address the replicas listen on (default 127.0.0.1: only nginx reaches them)")
    parser.add_argument("--upstream", action="append", default=[], metavar="HOST:PORT",
                        help="a replica run on another machine, added to the nginx upstream (repeatable)")
    parser.add_argument("--replicas-only", action="store_true",
                        help="run the replicas without nginx (a machine behind another machine's nginx)")
    parser.add_argument("--db", type=Path, help="the store (default: $ESSMAP_DB, else data/essmap.duckdb)")
    parser.add_argument("--run-dir", type=Path,
                        help="folder of the nginx configuration, logs and temporary files (kept); "
                             "default: a temporary folder removed at exit")
    parser.add_argument("--nginx", help="the nginx program (default: found on PATH or in /usr/sbin)")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the replicas")
    args = parser.parse_args(argv)
    if args.replicas < 0 or (args.replicas == 0 and not args.upstream):
        parser.error("--replicas : au moins 1 (ou 0 avec --upstream)")
    if args.replicas_only and (args.upstream or args.replicas == 0):
        parser.error("--replicas-only lance les répliques de cette machine : sans --upstream, --replicas au moins 1")
    for upstream in args.upstream:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}", upstream):
            parser.error(f"--upstream {upstream!r} : attendu HÔTE:PORT")
    return args


def find_nginx(explicit: str | None) -> str:
    found = explicit or shutil.which("nginx") or next((p for p in NGINX_CANDIDATES if os.access(p, os.X_OK)), None)
    if not found or not os.access(found, os.X_OK):
        raise ServeError("nginx introuvable. Installez le paquet Debian : `sudo apt-get install nginx` (ou "
                         "`make system-deps`, qui installe aussi ce dont les tests ont besoin), "
                         "ou indiquez le programme avec --nginx CHEMIN.")
    return found


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` (with SO_REUSEADDR, as nginx and uvicorn bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def replica_ports(first: int, count: int, host: str) -> list[int]:
    if first == 0:
        ports: list[int] = []
        while len(ports) < count:
            port = free_port(host)
            if port not in ports:
                ports.append(port)
        return ports
    ports = list(range(first, first + count))
    busy = [p for p in ports if not port_is_free(host, p)]
    if busy:
        raise ServeError(f"Port(s) des répliques déjà utilisé(s) : {', '.join(map(str, busy))}. Arrêtez l'autre "
                         "serveur ou choisissez d'autres ports (REPLICA_PORT=…, ou 0 pour des ports libres).")
    return ports


#: prctl(2), looked up before any fork (the child only calls it).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In the child before exec (Linux): SIGTERM when the launcher dies, even by SIGKILL: no orphans."""
    assert _PRCTL is not None
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the launcher died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def start(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """A child in the launcher's process group: a Ctrl-C in the terminal reaches it too."""
    parent = os.getpid()
    with log_path.open("ab") as log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT,
                                preexec_fn=(lambda: _die_with_parent(parent)) if _PRCTL is not None else None)


def start_replicas(ports: list[int], address: str, run_dir: Path, env: dict[str, str],
                   launcher: Launcher) -> list[Child]:
    replicas = []
    local = "127.0.0.1" if address in ("", "0.0.0.0") else address
    for number, port in enumerate(ports, start=1):
        command = [
            sys.executable, str(LAUNCH),  # `streamlit run app.py` once the app's stack is imported
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # a served dashboard never reruns because a file of the checkout changed
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        ]
        log_path = run_dir / "logs" / f"replica-{number}-{port}.log"
        child = Child(f"réplique {number}", start(command, log_path, env), log_path,
                      url=f"http://{local}:{port}", port=port)
        launcher.children.append(child)
        replicas.append(child)
    return replicas


def warm_replicas(replicas: list[Child], run_dir: Path, env: dict[str, str]) -> threading.Thread:
    """Run ``serve/warm.py`` on each replica, one after the other (all at once would share the cores and
    warm none sooner), in a thread (joined before nginx opens; left running with ``--replicas-only``);
    each run's output goes to ``logs/warm-PORT.log``."""
    def warm_all() -> None:
        for replica in replicas:
            host = replica.url.removeprefix("http://").rsplit(":", 1)[0]
            log_path = run_dir / "logs" / f"warm-{replica.port}.log"
            start([sys.executable, str(WARM), "--host", host, "--port", str(replica.port)], log_path, env).wait()

    thread = threading.Thread(target=warm_all, name="essmap-warm", daemon=True)
    thread.start()
    return thread


#: Health checks go straight to the replicas and nginx, never through an HTTP proxy of the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_healthy(child: Child, url: str, deadline: float) -> None:
    """Until ``url`` answers 200; fails if the process stops or the deadline passes."""
    while True:
        if child.process.poll() is not None:
            raise ServeError(f"{child.name} : arrêt pendant le démarrage (code {child.process.returncode}) :\n"
                             f"{child.log_tail()}")
        try:
            with _DIRECT.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServeError(f"{child.name} ne répond pas sur {url} :\n{child.log_tail()}")
        time.sleep(0.2)


def nginx_config(run_dir: Path, listen: str, upstreams: list[str]) -> str:
    """The template filled in; nginx's own ``$variables`` are left untouched."""
    if '"' in str(run_dir):
        raise ServeError(f"Le dossier « {run_dir} » ne peut pas contenir de guillemet.")
    servers = "\n".join(f"        server {address} max_fails=3 fail_timeout=10s;" for address in upstreams)
    text = TEMPLATE.read_text(encoding="utf-8")
    for placeholder, value in zip(PLACEHOLDERS, (str(run_dir), listen, servers), strict=True):
        text = text.replace(placeholder, value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ServeError(f"Modèle {TEMPLATE.name} : marque(s) non remplacée(s) {left}.")
    return text


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stop


def serve(args: argparse.Namespace) -> int:
    nginx = None if args.replicas_only else find_nginx(args.nginx)
    env = dict(os.environ)
    if args.db is not None:
        env["ESSMAP_DB"] = str(args.db.resolve())
    db = Path(env.get("ESSMAP_DB", REPO / "data" / "essmap.duckdb"))
    if args.replicas and not db.is_file():
        raise ServeError(f"Base de données introuvable : « {db} ». Lancez `make build` (ou `essmap build`).")
    if nginx and not port_is_free(args.address, args.port):
        raise ServeError(f"Le port {args.port} est déjà utilisé : arrêtez l'autre serveur ou choisissez PORT=…")
    ports = replica_ports(args.replica_port, args.replicas, args.replica_address)

    own_run_dir = args.run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="essmap-serve-")) if own_run_dir else args.run_dir.resolve()
    if own_run_dir:  # mkdtemp's 0700 would keep nginx's unprivileged workers (when started as root) out
        run_dir.chmod(0o755)
    for sub in ("logs", "temp"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    launcher = Launcher()
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        replicas = start_replicas(ports, args.replica_address, run_dir, env, launcher)
        deadline = time.monotonic() + args.startup_timeout
        for replica in replicas:
            wait_healthy(replica, f"{replica.url}/_stcore/health", deadline)
            print(f"{replica.name} prête : {replica.url} (pid {replica.process.pid})", flush=True)
        warming = warm_replicas(replicas, run_dir, env)
        if nginx:
            # nginx opens once every replica has computed the default view: no user meets a cold one
            print(f"Préchauffage des répliques (journaux : {run_dir / 'logs'})…", flush=True)
            warming.join()
            start_nginx(nginx, args, ports, run_dir, env, launcher)
        else:
            print(f"{len(replicas)} répliques sans nginx ; journaux dans {run_dir / 'logs'}. Ctrl-C pour arrêter.",
                  flush=True)
        while True:  # a replica or nginx that stops takes the service down: say so and stop the rest
            for child in launcher.children:
                if child.process.poll() is not None:
                    time.sleep(1)  # a Ctrl-C may have reached the child first: it is then handled as one
                    raise ServeError(f"{child.name} : arrêt inattendu (code {child.process.returncode}) :\n"
                                     f"{child.log_tail()}")
            time.sleep(0.5)
    except (KeyboardInterrupt, Stop):
        print("Arrêt de nginx et des répliques…", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        launcher.stop_all()
        if own_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def start_nginx(nginx: str, args: argparse.Namespace, ports: list[int], run_dir: Path, env: dict[str, str],
                launcher: Launcher) -> None:
    """nginx in the foreground on ``args.port``, in front of the local replicas and ``args.upstream``."""
    listen = f"{args.address}:{args.port}" if args.address else str(args.port)
    local = "127.0.0.1" if args.replica_address in ("", "0.0.0.0") else args.replica_address
    upstreams = [f"{local}:{port}" for port in ports] + list(args.upstream)
    config = run_dir / "nginx.conf"
    config.write_text(nginx_config(run_dir, listen, upstreams), encoding="utf-8")
    log_path = run_dir / "logs" / "nginx.log"
    command = [nginx, "-p", str(run_dir), "-c", str(config), "-e", "stderr"]
    proxy = Child("nginx", start(command, log_path, env), log_path, port=args.port)
    launcher.children.append(proxy)
    host = args.address if args.address not in ("", "0.0.0.0") else "127.0.0.1"
    wait_healthy(proxy, f"http://{host}:{args.port}/_stcore/health", time.monotonic() + 30)
    shown = args.address if args.address not in ("", "0.0.0.0") else "localhost"
    print(f"nginx prêt (pid {proxy.process.pid}) : http://{shown}:{args.port} → {len(upstreams)} répliques, "
          f"sessions collantes ; journaux dans {run_dir / 'logs'}. Ctrl-C pour arrêter.", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return serve(args)
    except ServeError as exc:
        print(f"make serve : {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
