"""A real HTTP server for the download tests: 127.0.0.1, a free port (port 0), its own thread.

The standard library's SimpleHTTPRequestHandler knows neither ``Range`` nor ``If-Range``:
:class:`RangeHandler` answers a file with ``ETag``, open-ended ranges (``bytes=N-``), ``416`` past
the end, and the ways real servers misbehave (a connection cut after some bytes, ``Range``
ignored, a wrong ``Content-Length``). Each test module subclasses it with its own routing (what
is served, redirected or refused) and runs it with :func:`running_server`.
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Proxy variables a test must clear: a proxy would swallow requests to 127.0.0.1.
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


class RangeHandler(BaseHTTPRequestHandler):
    """GET handler with the answers every route needs; subclasses write ``do_GET``."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_file(self, data: bytes, *, log: dict[str, object] | None = None, honour_range: bool = True,
                  length_delta: int = 0, cut_after: int | None = None, cut_at: int | None = None) -> None:
        """Answer ``data`` (200, 206 for a range whose ``If-Range`` matches, 416 past the end).

        ``length_delta`` is added to the announced Content-Length (at most the announced length is
        sent); the body stops after ``cut_after`` bytes or at file offset ``cut_at``, and the
        connection closes: the client sees a transfer cut short. ``log`` (the request's entry in a
        test's log) gets ``status`` and ``sent`` (body bytes) before the response goes out: a client
        that has read the whole answer, and the test after it, find them there."""
        etag = etag_of(data)
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and honour_range and self.headers.get("If-Range") in (None, etag):
            match = re.fullmatch(r"bytes=(\d+)-", wanted)
            assert match, f"only open-ended ranges are served, not {wanted!r}"
            start = int(match[1])
            if start >= len(data):
                if log is not None:
                    log.update(status=416, sent=0)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        announced = len(data) - start + length_delta
        stop = min(len(data), start + announced)
        if cut_after is not None:
            stop = min(stop, start + cut_after)
        if cut_at is not None:
            stop = min(stop, cut_at)
        if log is not None:
            log.update(status=status, sent=stop - start)
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(announced))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[start:stop])
        self.close_connection = True


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Clients hanging up mid-transfer are what the resume tests make happen: not an error."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextmanager
def running_server(handler: type[RangeHandler]) -> Iterator[QuietServer]:
    """``handler`` served on 127.0.0.1 at a free port until the block ends (``server.base_url``)."""
    server = QuietServer(("127.0.0.1", 0), handler)
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    # shutdown() waits for the loop to look again: every 0.05 s, not every 0.5 s (the default)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
