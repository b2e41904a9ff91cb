"""Warm a freshly started dashboard, so its first visitor waits no longer than the next ones.

Streamlit runs ``app.py`` only when a browser opens a session: the server's port opens with the app's
stack imported (``serve/launch.py``), but the store, its catalogue and the default view's data and
map are computed by the first script run (then cached for every session of the process). ``make run``
starts this script beside the server: it waits for the health check, opens one session over
Streamlit's websocket as a browser does, runs the script once on the default view (or ``--query``)
and leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg


def wait_for_health(url: str, timeout_s: float) -> None:
    """Return once ``url``/_stcore/health answers 200; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} ne répond pas après {timeout_s:.0f} s")
        time.sleep(0.3)


async def run_script_once(url: str, *, query: str = "", timeout_s: float = 300.0) -> str:
    """Open a session on the server at ``url``, run the app once with ``query``, and return how the
    run finished (the name of Streamlit's ``ScriptFinishedStatus``)."""
    stream = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/_stcore/stream"
    request = BackMsg()
    request.rerun_script.query_string = query
    async with websockets.connect(stream, subprotocols=[websockets.Subprotocol("streamlit")], max_size=None,
                                  open_timeout=30) as socket:
        await socket.send(request.SerializeToString())
        async with asyncio.timeout(timeout_s):
            while True:
                data = await socket.recv()
                message = ForwardMsg()
                message.ParseFromString(data if isinstance(data, bytes) else data.encode())
                if message.WhichOneof("type") == "script_finished":
                    return ForwardMsg.ScriptFinishedStatus.Name(message.script_finished)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--query", default="", help="query string of the view to warm (default view: empty)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the start and for the run")
    args = parser.parse_args(argv)
    url = f"http://{args.host}:{args.port}"
    started = time.monotonic()
    try:
        wait_for_health(url, args.timeout)
        status = asyncio.run(run_script_once(url, query=args.query, timeout_s=args.timeout))
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        print(f"essmap : préchauffage du tableau de bord impossible ({exc}) ; le premier visiteur attendra "
              "le calcul de la carte.", file=sys.stderr)
        return 1
    seconds = f"{time.monotonic() - started:.1f}".replace(".", ",")
    if status != "FINISHED_SUCCESSFULLY":
        print(f"essmap : le préchauffage du tableau de bord s'est terminé sur {status}.", file=sys.stderr)
        return 1
    print(f"essmap : tableau de bord préchauffé (vue par défaut calculée) en {seconds} s.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
