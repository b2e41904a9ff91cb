"""Downloads against a real local HTTP server (127.0.0.1, free port): no network, no mocks.

The server below supports ``Range`` / ``If-Range`` (the standard library's
SimpleHTTPRequestHandler does not) and has switches to misbehave the way real servers do:
drop the connection midway, ignore ``Range``, announce a wrong ``Content-Length``.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from httpmirror import PROXY_VARIABLES, RangeHandler, running_server

from essmap.domain.errors import FetchError
from essmap.io.fetch import download, extract_zip, fetch_source
from essmap.io.sources import LICENCE_OUVERTE, SOURCES, OfficialFile, describe_sources

PAYLOAD = random.Random(20240101).randbytes(3 * 1024 * 1024)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CHUNK = 64 * 1024


@dataclass
class ServerState:
    """What the server serves and how it misbehaves; reset before every test."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    drop_at: int | None = None  # one shot: close the connection at this file offset
    ignore_range: bool = False  # always answer 200 with the whole file
    length_delta: int = 0  # announce Content-Length + delta (and send min(real, announced))


class MisbehavingHandler(RangeHandler):
    """``/r/<path>`` redirects to ``<path>`` (like data.gouv.fr's stable /datasets/r/<id> addresses)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        state.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.path.startswith("/r/"):
            self.redirect(self.path[2:])
            return
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        cut_at, state.drop_at = state.drop_at, None
        self.send_file(data, honour_range=not state.ignore_range, length_delta=state.length_delta, cut_at=cut_at)


@dataclass
class LocalServer:
    state: ServerState
    base: str

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def _http_server():
    with running_server(MisbehavingHandler) as httpd:
        httpd.state = ServerState()  # type: ignore[attr-defined]
        yield httpd


@pytest.fixture
def server(_http_server, monkeypatch) -> LocalServer:
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    state = ServerState(files={"/data.bin": PAYLOAD})
    _http_server.state = state
    return LocalServer(state=state, base=_http_server.base_url)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- download ----------------------------------------------------------------------------------


def test_download_verifies_and_renames(server, tmp_path):
    seen: list[tuple[int, int | None]] = []
    dest = download(
        server.url("/data.bin"),
        tmp_path / "sub" / "data.bin",
        expected_size=len(PAYLOAD),
        expected_sha256=PAYLOAD_SHA.upper(),
        progress=lambda done, total: seen.append((done, total)),
        chunk_size=CHUNK,
    )
    assert dest == tmp_path / "sub" / "data.bin"
    assert sha256(dest) == PAYLOAD_SHA
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]  # no .part left
    assert seen[0] == (0, len(PAYLOAD))
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(seen) > 10  # streamed in chunks
    assert "range" not in server.state.requests[0]


def test_resume_after_dropped_connection(server, tmp_path):
    dest = tmp_path / "data.bin"
    server.state.drop_at = 1_000_000
    with pytest.raises(FetchError) as excinfo:
        download(server.url("/data.bin"), dest, expected_sha256=PAYLOAD_SHA, chunk_size=CHUNK, retries=0)
    message = str(excinfo.value)
    assert "interrompu" in message and server.url("/data.bin") in message
    assert "relancez `essmap fetch`" in message
    part = tmp_path / "data.bin.part"
    assert part.stat().st_size == 1_000_000
    assert not dest.exists()

    seen: list[tuple[int, int | None]] = []
    download(
        server.url("/data.bin"),
        dest,
        expected_sha256=PAYLOAD_SHA,
        chunk_size=CHUNK,
        progress=lambda done, total: seen.append((done, total)),
    )
    second = server.state.requests[-1]
    assert second["range"] == "bytes=1000000-"
    assert second["if-range"].startswith('"')  # the ETag of the first response
    assert seen[0] == (1_000_000, len(PAYLOAD))
    assert sha256(dest) == PAYLOAD_SHA
    assert not part.exists()


def test_resume_through_redirect(server, tmp_path):
    dest = tmp_path / "data.bin"
    server.state.drop_at = 2_000_000
    with pytest.raises(FetchError):
        download(server.url("/r/data.bin"), dest, chunk_size=CHUNK, retries=0)
    download(server.url("/r/data.bin"), dest, expected_sha256=PAYLOAD_SHA, chunk_size=CHUNK)
    redirected = server.state.requests[-1]
    assert redirected["path"] == "/data.bin" and redirected["range"] == "bytes=2000000-"
    assert sha256(dest) == PAYLOAD_SHA


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes that must not be kept")
    server.state.ignore_range = True
    download(server.url("/data.bin"), dest, expected_size=len(PAYLOAD), chunk_size=CHUNK)
    assert server.state.requests[-1]["range"] == "bytes=33-"
    assert sha256(dest) == PAYLOAD_SHA


def test_file_changed_on_server_between_attempts(server, tmp_path):
    dest = tmp_path / "data.bin"
    server.state.drop_at = 500_000
    with pytest.raises(FetchError):
        download(server.url("/data.bin"), dest, chunk_size=CHUNK, retries=0)
    new_payload = PAYLOAD[::-1]
    server.state.files["/data.bin"] = new_payload  # new monthly edition, new ETag
    download(server.url("/data.bin"), dest, chunk_size=CHUNK)
    assert server.state.requests[-1]["range"] == "bytes=500000-"
    assert dest.read_bytes() == new_payload  # If-Range made the server send the whole new file


def test_partial_file_already_complete_416(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download(server.url("/data.bin"), dest, expected_sha256=PAYLOAD_SHA)
    assert server.state.requests[-1]["range"] == f"bytes={len(PAYLOAD)}-"
    assert sha256(dest) == PAYLOAD_SHA


def test_partial_file_longer_than_remote_restarts(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD + b"extra")
    download(server.url("/data.bin"), dest, expected_sha256=PAYLOAD_SHA, chunk_size=CHUNK)
    assert "range" in server.state.requests[-2] and "range" not in server.state.requests[-1]
    assert sha256(dest) == PAYLOAD_SHA


def test_content_length_longer_than_body(server, tmp_path):
    server.state.length_delta = 100
    with pytest.raises(FetchError) as excinfo:
        download(server.url("/data.bin"), tmp_path / "data.bin", chunk_size=CHUNK, retries=0)
    message = str(excinfo.value)
    assert server.url("/data.bin") in message
    announced = f"{len(PAYLOAD) + 100:,}".replace(",", " ")
    received = f"{len(PAYLOAD):,}".replace(",", " ")
    assert announced in message and received in message
    assert not (tmp_path / "data.bin").exists()


def test_announced_size_differs_from_expected(server, tmp_path):
    server.state.length_delta = -100
    with pytest.raises(FetchError) as excinfo:
        download(
            server.url("/data.bin"), tmp_path / "data.bin", expected_size=len(PAYLOAD), chunk_size=CHUNK
        )
    message = str(excinfo.value)
    assert "taille attendue" in message and "annoncés par le serveur" in message
    assert "relancez `essmap fetch`" in message
    assert not (tmp_path / "data.bin.part").exists()
    assert not (tmp_path / "data.bin").exists()


def test_short_content_length_caught_by_checksum(server, tmp_path):
    # The server announces a short Content-Length: the transfer "succeeds" but is truncated.
    server.state.length_delta = -100
    with pytest.raises(FetchError, match="empreinte SHA-256 attendue"):
        download(server.url("/data.bin"), tmp_path / "a.bin", expected_sha256=PAYLOAD_SHA)
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_deletes_partial(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(FetchError) as excinfo:
        download(
            server.url("/data.bin"),
            tmp_path / "data.bin",
            expected_sha256=wrong,
            chunk_size=CHUNK,
            retry_command="essmap fetch demo",
        )
    message = str(excinfo.value)
    assert wrong in message and PAYLOAD_SHA in message and server.url("/data.bin") in message
    assert "relancez `essmap fetch demo`" in message
    assert list(tmp_path.iterdir()) == []


def test_http_404(server, tmp_path):
    url = server.url("/moved.zip")
    with pytest.raises(FetchError) as excinfo:
        download(url, tmp_path / "moved.zip")
    message = str(excinfo.value)
    assert url in message and "404" in message and "essmap ingest" in message
    assert list(tmp_path.iterdir()) == []


def test_network_error_is_a_fetch_error(tmp_path):
    with socket.socket() as sock:  # a free port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(FetchError) as excinfo:
        download(url, tmp_path / "x.bin", timeout=5)
    message = str(excinfo.value)
    assert message.startswith("Téléchargement impossible") and url in message
    assert "vérifiez la connexion" in message.lower() and "`essmap ingest`" in message
    assert isinstance(excinfo.value, OSError)


def test_existing_file_is_kept_or_replaced(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    download(server.url("/data.bin"), dest, expected_sha256=PAYLOAD_SHA)
    assert server.state.requests == []  # right checksum: skipped

    dest.write_bytes(b"corrupted")
    download(server.url("/data.bin"), dest, expected_sha256=PAYLOAD_SHA, chunk_size=CHUNK)
    assert len(server.state.requests) == 1 and sha256(dest) == PAYLOAD_SHA

    download(server.url("/data.bin"), dest, force=True, chunk_size=CHUNK)
    assert len(server.state.requests) == 2


# --- fetch_source ------------------------------------------------------------------------------


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def official(name: str, url: str, filename: str, content: bytes | None = None) -> OfficialFile:
    return OfficialFile(
        name=name,
        url=url,
        description="Fichier de test.",
        licence=LICENCE_OUVERTE,
        size=None if content is None else len(content),
        sha256=None if content is None else hashlib.sha256(content).hexdigest(),
        filename=filename,
    )


def test_fetch_source_downloads_and_extracts(server, tmp_path):
    csv = b"siren;economieSocialeSolidaireUniteLegale\n123456789;O\n"
    archive = make_zip({"StockUniteLegale_utf8.csv": csv, "doc/LISEZMOI.txt": PAYLOAD[:1000]})
    server.state.files["/stock.zip"] = archive
    server.state.files["/stable-redirect-id"] = make_zip({"GEOJSON/qp.geojson": b"{}"})
    catalogue = {
        "demo": (
            official("stock", server.url("/stock.zip"), "stock.zip", archive),
            official("plain", server.url("/data.bin"), "data.bin", PAYLOAD),
            official("no-extension", server.url("/stable-redirect-id"), "qpv"),
        ),
        "other": (),
    }
    calls: list[tuple[str, int, int | None]] = []
    current: list[str] = []
    paths = fetch_source(
        "demo",
        tmp_path,
        catalogue=catalogue,
        progress=lambda done, total: calls.append((current[-1], done, total)),
        on_file=lambda file: current.append(file.name),
    )
    folder = tmp_path / "demo"
    assert paths == [
        folder / "stock" / "StockUniteLegale_utf8.csv",
        folder / "stock" / "doc" / "LISEZMOI.txt",
        folder / "data.bin",
        folder / "qpv_extrait" / "GEOJSON" / "qp.geojson",
    ]
    assert paths[0].read_bytes() == csv
    assert paths[1].read_bytes() == PAYLOAD[:1000]
    assert sha256(paths[2]) == PAYLOAD_SHA
    assert (folder / "stock.zip").is_file()  # kept, so that a second run is a no-op
    assert {name for name, _, _ in calls} == {"stock", "plain", "no-extension"}
    assert ("plain", len(PAYLOAD), len(PAYLOAD)) in calls

    before = {p: p.stat().st_mtime_ns for p in paths}
    requests = len(server.state.requests)
    assert fetch_source("demo", tmp_path, catalogue=catalogue) == paths
    assert len(server.state.requests) == requests  # verified cache: nothing downloaded
    assert {p: p.stat().st_mtime_ns for p in paths} == before  # nor re-extracted

    assert fetch_source("demo", tmp_path, catalogue=catalogue, extract=False)[0] == folder / "stock.zip"


def test_fetch_source_unknown_name_lists_known_ones(tmp_path):
    with pytest.raises(FetchError) as excinfo:
        fetch_source("sirene", tmp_path)
    message = str(excinfo.value)
    assert "« sirene »" in message
    for name in SOURCES:
        assert name in message
    assert list(tmp_path.iterdir()) == []


def test_fetch_source_error_names_the_source_command(server, tmp_path):
    catalogue = {"demo": (official("bad", server.url("/data.bin"), "data.bin", b"other"),)}
    with pytest.raises(FetchError, match="relancez `essmap fetch demo`"):
        fetch_source("demo", tmp_path, catalogue=catalogue)


def test_extract_zip_refuses_paths_outside_target(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"../escaped.txt": b"x"}))
    with pytest.raises(FetchError, match="chemin dangereux"):
        extract_zip(archive)
    assert not (tmp_path / "escaped.txt").exists()


def test_extract_zip_corrupted_archive(tmp_path):
    archive = tmp_path / "broken.zip"
    data = bytearray(make_zip({"a.csv": PAYLOAD[:200_000]}))
    data[100:200] = bytes(100)  # damage the compressed stream, keep the directory readable
    archive.write_bytes(bytes(data))
    with pytest.raises(FetchError, match="Archive corrompue"):
        extract_zip(archive, retry_command="essmap fetch demo")
    assert not (tmp_path / "broken" / "a.csv").exists()


# --- catalogue ---------------------------------------------------------------------------------


def test_catalogue_is_complete_and_consistent():
    expected = {
        "qpv2024", "qpv2015", "sirene_unites_legales", "sirene_etablissements",
        "sirene_geolocalisation", "communes", "tiers_lieux",
    }
    assert expected <= set(SOURCES)
    for source, files in SOURCES.items():
        assert files, source
        assert len({f.filename for f in files}) == len(files)
        for file in files:
            assert file.url.startswith("https://"), file
            assert Path(file.filename).name == file.filename
            assert file.description and file.licence == LICENCE_OUVERTE
            assert file.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", file.sha256)
            assert file.size is None or file.size > 0


def test_describe_sources_is_a_markdown_table():
    table = describe_sources()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| Source") and lines[1].startswith("|---")
    assert len(lines) == 2 + sum(len(files) for files in SOURCES.values())
    for source, files in SOURCES.items():
        assert f"`{source}`" in table
        for file in files:
            assert file.url in table
    assert all(line.count("|") - line.count("\\|") == 7 for line in lines)


def test_fetch_source_extracts_7z_archives_like_ign_admin_express(server, tmp_path):
    import py7zr

    source = tmp_path / "src"
    (source / "ADMIN-EXPRESS" / "GPKG").mkdir(parents=True)
    (source / "ADMIN-EXPRESS" / "GPKG" / "ADE.gpkg").write_bytes(PAYLOAD[:5000])
    archive = tmp_path / "ade.7z"
    with py7zr.SevenZipFile(archive, "w") as seven:
        seven.writeall(source / "ADMIN-EXPRESS", "ADMIN-EXPRESS")
    server.state.files["/ade.7z"] = archive.read_bytes()
    catalogue = {"communes": (official("ade", server.url("/ade.7z"), "ade.7z", archive.read_bytes()),)}
    paths = fetch_source("communes", tmp_path / "cache", catalogue=catalogue)
    assert [p.name for p in paths] == ["ADE.gpkg"]
    assert paths[0].read_bytes() == PAYLOAD[:5000]

    (tmp_path / "cache" / "communes" / "ade.7z").write_bytes(b"7z\xbc\xaf\x27\x1c" + b"\x00" * 50)
    from essmap.io.fetch import extract_7z

    with pytest.raises(FetchError, match="Archive corrompue"):
        extract_7z(tmp_path / "cache" / "communes" / "ade.7z", tmp_path / "out")


def _seven_zip(path: Path, members: dict[str, bytes]) -> Path:
    import py7zr

    with py7zr.SevenZipFile(path, "w") as seven:
        for name, data in members.items():
            seven.writestr(data, name)
    return path


def test_7z_is_extracted_once_then_reused_until_a_new_download(tmp_path):
    import os

    from essmap.io.fetch import EXTRACTION_MARKER, unpack

    archive = _seven_zip(tmp_path / "ade.7z", {"ADE/COMMUNE.gpkg": PAYLOAD[:4000], "ADE/LISEZMOI.txt": b"v1"})
    first = unpack(archive)
    assert [p.relative_to(tmp_path / "ade").as_posix() for p in first] == ["ADE/COMMUNE.gpkg", "ADE/LISEZMOI.txt"]
    stats = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in first]
    assert (tmp_path / "ade" / EXTRACTION_MARKER).is_file()

    again = unpack(archive)  # same archive: the files of the first extraction, untouched
    assert again == first and [(p.stat().st_ino, p.stat().st_mtime_ns) for p in again] == stats

    # a new download under the same name (``--force``, next edition): extracted again, old files gone
    _seven_zip(archive, {"ADE/COMMUNE.gpkg": PAYLOAD[:6000]})
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    fresh = unpack(archive)
    assert [p.name for p in fresh] == ["COMMUNE.gpkg"] and fresh[0].read_bytes() == PAYLOAD[:6000]


def test_interrupted_7z_extraction_is_never_reused(tmp_path):
    from essmap.io.fetch import EXTRACTION_MARKER, extract_7z, unpack

    archive = _seven_zip(tmp_path / "ade.7z", {"ADE/COMMUNE.gpkg": PAYLOAD[:4000], "ADE/EPCI.gpkg": PAYLOAD[:10]})
    # what a run killed during the extraction leaves: the temporary folder, half filled
    half = tmp_path / "ade.extraction-en-cours" / "ADE"
    half.mkdir(parents=True)
    (half / "COMMUNE.gpkg").write_bytes(PAYLOAD[:100])
    paths = unpack(archive)
    assert [p.name for p in paths] == ["COMMUNE.gpkg", "EPCI.gpkg"] and paths[0].read_bytes() == PAYLOAD[:4000]
    assert not (tmp_path / "ade.extraction-en-cours").exists()

    # an extraction that fails midway (here: a damaged archive) leaves no folder that looks complete
    damaged = tmp_path / "autre.7z"
    damaged.write_bytes(archive.read_bytes()[:-40])
    with pytest.raises(FetchError, match="Archive corrompue"):
        extract_7z(damaged)
    assert not (tmp_path / "autre").exists() and not (tmp_path / "autre.extraction-en-cours").exists()
    # a folder of the right name but without the marker (an older essmap, a copy by hand) is redone
    (tmp_path / "ade" / EXTRACTION_MARKER).unlink()
    (tmp_path / "ade" / "ADE" / "COMMUNE.gpkg").write_bytes(b"abime")
    assert unpack(archive)[0].read_bytes() == PAYLOAD[:4000]
