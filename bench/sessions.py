"""The dashboard server alone under concurrent sessions: Streamlit's websocket protocol spoken from Python.

``bench/browser.py`` opens real chromium tabs, all on the machine that runs the server: each page
load costs chromium about 5 s of CPU, so with 4 or 8 tabs at once the browsers, not the server, hold
most of the 2 cores. Here each session is a few lines of Python speaking the protocol the Streamlit
frontend speaks, as a user's browser on their own machine would, and costs (almost) no CPU:

1. open a websocket on ``/_stcore/stream`` with the subprotocol ``streamlit`` (the frontend puts its
   XSRF token and a previous session id in the next subprotocol entries; a new session without login
   needs neither) and the page's origin;
2. send ``BackMsg.rerun_script`` with a ``ClientState`` holding the page's query string
   (``departements=04``), an empty ``page_script_hash`` (the main page: the frontend does not know a
   hash before the first ``new_session``), no widget state, no cached message hash (a first visit:
   the server then sends every element in full, never a ``ref_hash``) and the browser's context
   (time zone, locale, URL);
3. read ``ForwardMsg``s: ``new_session`` starts each script run, ``delta``s carry the elements (the map
   is the ``component_instance`` whose component name contains ``streamlit_folium``, the key figures
   are ``metric``s), ``page_info_changed`` is the script rewriting the URL's query string, and
   ``script_finished`` ends a run. A run ``FINISHED_EARLY_FOR_RERUN`` (``st.rerun``) is followed by the
   server's own next run, as in the browser; the session is over at the first run finished
   successfully.

Timed, for each session, from the moment its websocket starts opening: the arrival of the map
message (and its size on the wire), and of the ``script_finished`` that ends the page load. Around
each round: the server process's CPU time (utime + stime from ``/proc/PID/stat``) and the load average.
The map message names its layers' data (packed geometry and points, files the app publishes under
``app/static/points/``): each session fetches them over HTTP as the map frame does, and the time
all have arrived is recorded too. What a browser does besides is not replayed: the frontend's and the
component frame's own assets (the same for every view), drawing, and the rerun the component may
ask for once drawn.

Cases (``run``), mirroring ``bench/browser.py`` (same départements, same server starter):

- ``embedded_4``: 4 sessions on 4 unvisited départements of the embedded store at once, against the
  same 4 one at a time on a second fresh server; both servers first serve one other département.
  Target: slowest map message <= 2x the slowest lone one.
- ``national_8``: 8 sessions on 8 départements of the national store at once, on a server just
  started and on a server that has served one other département; and, as a baseline, the same 8 one
  at a time on a server that has served one other département. Target: every map message < 3 s.
  With ``replicas`` N > 1, the same 8 at once on N servers of the same store (one process each, as
  ``make serve REPLICAS=N`` runs them behind nginx), just started and warmed by one other département:
  session i goes to server i mod N and stays there (websocket and layers), as nginx's sticky cookie
  keeps a browser on one replica; the servers' CPU is summed. Round-robin, not nginx's hash: every
  round splits the sessions evenly, so rounds compare (a hash may put 5 of 8 on one replica).

Every server starts as ``make run`` starts it (``serve/launch.py``: its port opens once the app's
stack is imported). "Server just started" is what a user meets: on one server, as ``make run``, the
sessions open as soon as the port answers while ``serve/warm.py`` computes the default view (13,
one of the 8) in the background; on N replicas, as ``make serve``, once every replica has run
``serve/warm.py`` (nginx opens only then). "Warmed by one other département" servers run no
``serve/warm.py``: they serve the warm-up département only, and the 8 views are all cold.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from browser import EMBEDDED_4, EMBEDDED_WARM_UP, NATIONAL_8, NATIONAL_WARM_UP, StreamlitServer
from measure import OUT_DIR, load_average, log
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

MAP_COMPONENT = "streamlit_folium"
#: The browser bench's page context (its tabs run with locale fr-FR, on this machine's clock).
LOCALE = "fr-FR"
TIMEZONE = "Europe/Paris"
SESSION_TIMEOUT_S = 240.0
ONE_AT_A_TIME_WARM = "one at a time, server warmed by one other département"
#: A layer payload named in the map's arguments (relative to the component frame: ``../../app/static``).
LAYER_URL = re.compile(r"app/static/points/[0-9a-f]+\.json\.gz")


@dataclass
class Session:
    """One page load over the protocol: times in seconds from the opening of its websocket."""

    query: str
    opened_at: float = 0.0  # epoch seconds
    map_message_s: float = float("nan")
    map_message_bytes: int = 0
    map_messages: int = 0
    finished_s: float = float("nan")
    layers_s: float = float("nan")
    layers_bytes: int = 0
    script_runs: int = 0
    messages: int = 0
    websocket_bytes: int = 0
    #: Key figures shown above the map (metric label -> text), from the last run.
    metrics: dict[str, str] = field(default_factory=dict)
    #: The query string the script last wrote to the URL (``page_info_changed``), "" if untouched.
    final_query: str = ""


@dataclass
class Round:
    """Sessions opened at once (or one at a time) on one server."""

    label: str
    sessions: list[Session] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    start_spread_s: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: Servers the sessions were spread over (session i on server i mod replicas).
    replicas: int = 1

    @property
    def slowest_message_s(self) -> float:
        return max(s.map_message_s for s in self.sessions)


# --- The protocol ------------------------------------------------------------------------------------


def rerun_message(url: str, query: str) -> bytes:
    """The ``rerun_script`` a fresh page sends once its websocket is open."""
    state = ClientState(query_string=query, page_script_hash="")
    info = state.context_info
    info.timezone, info.timezone_offset, info.locale = TIMEZONE, -60, LOCALE
    info.url, info.is_embedded, info.color_scheme = f"{url}/?{query}", False, "light"
    return BackMsg(rerun_script=state).SerializeToString()


def _fetch(url: str) -> int:
    with urllib.request.urlopen(url, timeout=60) as response:
        return len(response.read())


async def _fetch_layers(url: str, json_args: str, session: Session, started: float) -> None:
    """Fetch, all at once as the map frame does, the layer payloads the map names."""
    paths = dict.fromkeys(LAYER_URL.findall(json_args))
    sizes = await asyncio.gather(*(asyncio.to_thread(_fetch, f"{url}/{path}") for path in paths))
    session.layers_s, session.layers_bytes = time.perf_counter() - started, sum(sizes)


async def open_session(url: str, query: str, *, timeout_s: float = SESSION_TIMEOUT_S) -> Session:
    """Load the page ``url/?query`` over the protocol; returns when its script has finished and the
    map's layers have arrived."""
    session = Session(query, opened_at=time.time())
    started = time.perf_counter()
    stream = url.replace("http://", "ws://", 1) + "/_stcore/stream"
    async with asyncio.timeout(timeout_s), connect(stream, subprotocols=[Subprotocol("streamlit")], origin=Origin(url),
                                                    max_size=None, compression=None) as ws:
        await ws.send(rerun_message(url, query))
        layers: asyncio.Task | None = None
        async for raw in ws:
            at = time.perf_counter() - started
            msg = ForwardMsg.FromString(raw)  # binary frames only
            session.messages += 1
            session.websocket_bytes += len(raw)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                session.script_runs += 1
                session.metrics = {}
            elif kind == "page_info_changed":
                session.final_query = msg.page_info_changed.query_string
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                if element.WhichOneof("type") == "exception":
                    raise RuntimeError(f"{query}: the script failed: {element.exception.message}")
                if element.WhichOneof("type") == "metric":
                    session.metrics[element.metric.label] = element.metric.body
                elif (element.WhichOneof("type") == "component_instance"
                      and MAP_COMPONENT in element.component_instance.component_name):
                    session.map_messages += 1
                    if session.map_messages == 1:
                        session.map_message_s, session.map_message_bytes = at, len(raw)
                        layers = asyncio.create_task(
                            _fetch_layers(url, element.component_instance.json_args, session, started))
            elif kind == "script_finished":
                status = msg.script_finished
                if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    continue  # the server starts the next run itself (st.rerun)
                session.finished_s = at
                if status != ForwardMsg.FINISHED_SUCCESSFULLY:
                    raise RuntimeError(f"{query}: script finished with status {status}")
                if layers is not None:
                    await layers
                return session
    raise RuntimeError(f"{query}: the server closed the websocket before the script finished")


# --- Rounds ----------------------------------------------------------------------------------------------


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _queries(departements: Sequence[str]) -> list[str]:
    return [f"departements={dep}" for dep in departements]


def run_round(server: StreamlitServer | Sequence[StreamlitServer], departements: Sequence[str], label: str, *,
              at_once: bool = True) -> Round:
    """Open one session per département, all at once (or one after the other) on ``server``; given
    several servers (replicas), session i opens on server i mod their number."""
    servers = [server] if isinstance(server, StreamlitServer) else list(server)
    urls = [servers[i % len(servers)].url for i in range(len(departements))]

    async def sessions() -> list[Session]:
        if at_once:
            return list(await asyncio.gather(*(open_session(u, q) for u, q in zip(urls, _queries(departements),
                                                                                    strict=True))))
        return [await open_session(u, q) for u, q in zip(urls, _queries(departements), strict=True)]

    pids = []
    for each in servers:
        assert each.process is not None
        pids.append(each.process.pid)
    result = Round(label, load_before=load_average(), replicas=len(servers))
    cpu_before, client_before, wall_before = sum(map(server_cpu_s, pids)), time.process_time(), time.perf_counter()
    # an event loop of its own, in a thread of its own: the caller's thread may run one already
    # (Playwright's sync API does, in a test process that has driven chromium before)
    with ThreadPoolExecutor(max_workers=1) as thread:
        result.sessions = thread.submit(asyncio.run, sessions()).result()
    result.wall_s = time.perf_counter() - wall_before
    result.client_cpu_s = time.process_time() - client_before
    result.server_cpu_s = sum(map(server_cpu_s, pids)) - cpu_before
    result.load_after = load_average()
    starts = [s.opened_at for s in result.sessions]
    result.start_spread_s = max(starts) - min(starts) if at_once else 0.0
    for s in result.sessions:
        if s.map_messages == 0:
            raise RuntimeError(f"{s.query}: no map message ({s.messages} messages, metrics {s.metrics})")
    return result


def _server(db: Path, name: str, *, warm_default_view: bool = False) -> StreamlitServer:
    return StreamlitServer(db, OUT_DIR / f"sessions-{name}.log", startup_timeout_s=180,
                           warm_default_view=warm_default_view)


def _describe(r: Round) -> str:
    return (f"slowest map message {r.slowest_message_s:.2f} s, server CPU {r.server_cpu_s:.1f} s, "
            f"wall {r.wall_s:.1f} s (load {r.load_before[0]:.2f} -> {r.load_after[0]:.2f})")


def embedded_4(db: Path, *, rounds: int) -> list[dict[str, Round]]:
    out = []
    for i in range(rounds):
        pair: dict[str, Round] = {}
        for mode in ("alone", "together"):
            with _server(db, f"embedded-{mode}") as server:
                run_round(server, [EMBEDDED_WARM_UP], "warm-up")
                pair[mode] = run_round(server, EMBEDDED_4, "4 at once" if mode == "together" else "one at a time",
                                       at_once=mode == "together")
            log(f"sessions: embedded, {pair[mode].label} ({i + 1}/{rounds}): {_describe(pair[mode])}")
        out.append(pair)
    return out


#: The rounds of ``national_8``: (label, warm-up first, all at once).
NATIONAL_MODES = (("server just started", False, True), ("server warmed by one other département", True, True),
                  (ONE_AT_A_TIME_WARM, True, False))


def replica_label(replicas: int, label: str) -> str:
    """"2 replicas, server just started": a round of :func:`national_8` on several servers."""
    return f"{replicas} replicas, {label}"


def national_8(db: Path, *, rounds: int, replicas: int = 1) -> list[Round]:
    """8 at once on a fresh server and on a warmed one, and the same 8 one at a time on a warmed server
    (the lone figure of each view, a baseline the browser case does not have); with ``replicas`` > 1,
    also the 8 at once spread over that many servers, fresh and warmed (each replica warmed)."""
    modes = [(label, warm, at_once, 1) for label, warm, at_once in NATIONAL_MODES]
    if replicas > 1:
        modes += [(replica_label(replicas, label), warm, True, replicas) for label, warm, _ in NATIONAL_MODES[:2]]
    out = []
    for i in range(rounds):
        for label, warm, at_once, count in modes:
            with ExitStack() as stack:
                # just started: as make run (one server) or make serve (replicas) start it (module docstring)
                servers = [stack.enter_context(_server(db, f"national-8-{n + 1}" if count > 1 else "national-8",
                                                       warm_default_view=not warm))
                           for n in range(count)]
                if warm:
                    for server in servers:
                        run_round(server, [NATIONAL_WARM_UP], "warm-up")
                elif count > 1:
                    for server in servers:
                        server.wait_warm()
                found = run_round(servers, NATIONAL_8, label, at_once=at_once)
            out.append(found)
            started = ", ".join(f"{server.started_s:.1f}" for server in servers)
            log(f"sessions: national 8, {label} ({i + 1}/{rounds}): {_describe(found)}; port open {started} s "
                "after start")
    return out


def _as_dict(r: Round) -> dict[str, Any]:
    return {**asdict(r), "slowest_message_s": r.slowest_message_s}


def run(national_db: Path | None, embedded_db: Path, *, rounds: int, replicas: int = 1) -> dict[str, Any]:
    """Both cases (the national one also on ``replicas`` servers when more than 1); ``national_db``
    None runs only the embedded-store case."""
    out: dict[str, Any] = {"embedded_4": [{k: _as_dict(v) for k, v in pair.items()}
                                          for pair in embedded_4(embedded_db, rounds=rounds)]}
    if national_db is not None:
        out["national_8"] = [_as_dict(r) for r in national_8(national_db, rounds=rounds, replicas=replicas)]
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", type=Path, required=True, help="store to serve")
    parser.add_argument("--dep", nargs="+", default=list(EMBEDDED_4), help="départements opened at once")
    parser.add_argument("--warm-up", default=EMBEDDED_WARM_UP, help="département served first ('' for none)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="servers started on the store; session i opens on server i mod N (default 1)")
    args = parser.parse_args()
    with ExitStack() as stack:
        servers = [stack.enter_context(_server(args.db, f"cli-{n + 1}")) for n in range(args.replicas)]
        if args.warm_up:
            for server in servers:
                log(f"warm-up: {_describe(run_round(server, [args.warm_up], 'warm-up'))}")
        found = run_round(servers, args.dep, "at once")
    log(_describe(found))
    print(json.dumps(_as_dict(found), indent=1, ensure_ascii=False))
