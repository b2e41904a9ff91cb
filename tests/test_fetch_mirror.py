"""`essmap fetch` end to end: the catalogue's shape, data.gouv-style redirects, resumes, server
errors, corrupted files and mirrors (``--miroir`` URL or folder).

Everything is served by a real HTTP server started here (127.0.0.1, free port) whose request log
says what was asked and how many bytes went out: no network, no mocks.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from httpmirror import PROXY_VARIABLES, RangeHandler, running_server

from essmap.cli import app
from essmap.domain.errors import FetchError
from essmap.io.fetch import fetch_file, files_of_source, mirror_locations, unpack
from essmap.io.sources import (
    BAN_ADDRESS_COLUMNS,
    DEPARTEMENT,
    LICENCE_OUVERTE,
    SOURCES,
    OfficialFile,
    describe_sources,
    is_dated_url,
)

runner = CliRunner(env={"COLUMNS": "200"})

BIG = random.Random(12).randbytes(700_000)  # several chunks of urllib's reads and of our 1 MiB ones
QPV_ID = "942d4ee8-8142-4556-8ea1-335537ce1119"


def qpv_archive() -> bytes:
    """A ZIP with the folder layout of ANCT's QP2024 national archive (GEOJSON/...), padded so
    that it takes several chunks to download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("GEOJSON/QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson",
                         b'{"type": "FeatureCollection", "features": []}')
        archive.writestr("SHP/padding.bin", BIG)
    return buffer.getvalue()


def ban_file(departement: str) -> bytes:
    """A gzipped CSV in the Base Adresse Nationale layout (header of the official files)."""
    rows = [
        ";".join(BAN_ADDRESS_COLUMNS),
        f"{departement}055_1234_00012;{departement}055_1234;12;;Rue de la République;13002;{departement}055;"
        "Marseille;;;892870.12;6247660.45;5.3712;43.2990;entrée;;;MARSEILLE;RUE DE LA REPUBLIQUE;commune;"
        "commune;1;13202000A0012",
    ]
    return gzip.compress(("\n".join(rows) + "\n").encode("utf-8"), mtime=0)


QPV_ZIP = qpv_archive()


@dataclass
class Served:
    """What the server holds and how it misbehaves; a fresh one for every test."""

    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)  # path -> error status to answer
    cut_after: int | None = None  # close every response after this many body bytes
    log: list[dict[str, object]] = field(default_factory=list)

    def sent(self, path: str) -> int:
        """Body bytes sent for ``path`` over all requests."""
        return sum(int(r["sent"]) for r in self.log if r["path"] == path)


class Handler(RangeHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        served: Served = self.server.served  # type: ignore[attr-defined]
        entry: dict[str, object] = {"path": self.path, "range": self.headers.get("Range"), "status": 0, "sent": 0}
        served.log.append(entry)
        if self.path in served.redirects:
            entry["status"] = 302
            self.redirect(served.redirects[self.path])
            return
        if self.path in served.status:
            entry["status"] = served.status[self.path]
            self.send_error(served.status[self.path])
            return
        data = served.files.get(self.path)
        if data is None:
            entry["status"] = 404
            self.send_error(404)
            return
        self.send_file(data, log=entry, cut_after=served.cut_after)


@dataclass
class Server:
    served: Served
    base: str

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def _httpd():
    with running_server(Handler) as httpd:
        httpd.served = Served()  # type: ignore[attr-defined]
        yield httpd


@pytest.fixture
def server(_httpd, monkeypatch) -> Server:
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    _httpd.served = Served()
    return Server(_httpd.served, _httpd.base_url)


@pytest.fixture
def qpv_from_datagouv(server, monkeypatch) -> OfficialFile:
    """The catalogue's qpv2024 entry, pointed at the local server's data.gouv-style redirect."""
    server.served.redirects[f"/fr/datasets/r/{QPV_ID}"] = "/resources/qpv/20240601/qpv2024.zip"
    server.served.files["/resources/qpv/20240601/qpv2024.zip"] = QPV_ZIP
    (real,) = SOURCES["qpv2024"]
    local = OfficialFile(**{**real.__dict__, "url": server.url(f"/fr/datasets/r/{QPV_ID}")})
    monkeypatch.setitem(SOURCES, "qpv2024", (local,))
    return local


@pytest.fixture
def retry_waits(monkeypatch) -> list[float]:
    """The waits between the attempts of a download, recorded instead of slept: the tests check the
    back-off (1 s, then 2 s) without spending 3 s per cut download."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def fetch_cli(*args: str):
    return runner.invoke(app, ["fetch", *args])


# --- the catalogue ------------------------------------------------------------------------------


def test_every_entry_has_page_licence_file_name_and_a_stable_or_explained_address():
    names = [file.filename for files in SOURCES.values() for file in files]
    assert len(names) == len(set(names)), "a mirror holds every file in one folder: names must be unique"
    for source, files in SOURCES.items():
        assert re.fullmatch(r"[a-z0-9_]+", source)
        for file in files:
            assert file.page.startswith("https://") and file.page != file.url, file.name
            assert file.licence == LICENCE_OUVERTE
            assert Path(file.filename).name == file.filename and file.filename.strip() == file.filename
            assert file.url.startswith("https://")
            assert file.description.strip()
            if is_dated_url(file.url):
                assert file.dated_reason.strip(), f"{source}: dated URL without a reason: {file.url}"
            else:
                assert not file.dated_reason, f"{source}: a reason for an undated URL: {file.url}"
                stable = (
                    re.fullmatch(r"https://www\.data\.gouv\.fr/(fr/|api/1/)?datasets/r/[0-9a-f-]{36}", file.url)
                    or "/latest/" in file.url
                    or file.url.startswith("https://object.files.data.gouv.fr/data-pipeline-open/")
                )
                assert stable, f"{source}: neither a data.gouv redirect nor a latest path: {file.url}"
            assert (DEPARTEMENT in file.url) == (DEPARTEMENT in file.filename) == file.per_departement
            if file.per_departement:
                assert file.size is None and file.sha256 is None


def test_the_dated_address_rule_tells_dated_from_stable_paths():
    assert is_dated_url("https://static.data.gouv.fr/resources/x/20241219-093636/f.csv")
    assert is_dated_url("https://data.geopf.fr/telechargement/download/A/A_2025-01-01/A_2025-01-01.7z")
    assert is_dated_url("https://example.org/export/20250101/file.zip")
    assert not is_dated_url(f"https://www.data.gouv.fr/fr/datasets/r/{QPV_ID}")
    assert not is_dated_url("https://adresse.data.gouv.fr/data/ban/adresses/latest/csv/adresses-13.csv.gz")
    assert not is_dated_url("https://object.files.data.gouv.fr/data-pipeline-open/siren/stock/StockUniteLegale_utf8.zip")
    assert not is_dated_url("https://example.org/ids/202512345678/file.zip")  # a long number is no date


def test_stable_sources_use_stable_addresses():
    (qpv,) = SOURCES["qpv2024"]
    assert f"/datasets/r/{QPV_ID}" in qpv.url
    for source in ("sirene_unites_legales", "sirene_etablissements", "sirene_geolocalisation",
                   "sirene_unites_legales_parquet", "sirene_etablissements_parquet", "ban_adresses"):
        for file in SOURCES[source]:
            assert not is_dated_url(file.url) and not file.dated_reason, source


def test_ban_is_a_per_departement_latest_csv():
    (ban,) = SOURCES["ban_adresses"]
    assert ban.per_departement and ban.display_filename == "adresses-<DEP>.csv.gz"
    corse = ban.for_departement("2A")
    assert corse.url == "https://adresse.data.gouv.fr/data/ban/adresses/latest/csv/adresses-2A.csv.gz"
    assert corse.filename == "adresses-2A.csv.gz" and not corse.per_departement
    assert BAN_ADDRESS_COLUMNS == (
        "id", "id_fantoir", "numero", "rep", "nom_voie", "code_postal", "code_insee", "nom_commune",
        "code_insee_ancienne_commune", "nom_ancienne_commune", "x", "y", "lon", "lat", "type_position",
        "alias", "nom_ld", "libelle_acheminement", "nom_afnor", "source_position", "source_nom_voie",
        "certification_commune", "cad_parcelles",
    )
    with pytest.raises(ValueError):
        SOURCES["qpv2024"][0].for_departement("13")


def test_files_of_source_expands_departements_and_refuses_in_french():
    files = files_of_source("ban_adresses", ["13", "2a", "974", "13"])
    assert [f.filename for f in files] == ["adresses-13.csv.gz", "adresses-2A.csv.gz", "adresses-974.csv.gz"]
    with pytest.raises(FetchError, match=r"un fichier par département.*--departements 13,84"):
        files_of_source("ban_adresses")
    with pytest.raises(Exception, match="Département inconnu : « 99 »"):
        files_of_source("ban_adresses", ["99"])
    assert files_of_source("qpv2024", ["13"]) == list(SOURCES["qpv2024"])  # not per département: ignored


# --- fetch --liste ------------------------------------------------------------------------------


def test_liste_is_a_french_table_then_whole_addresses():
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["fetch", "--liste"])
    assert narrow.exit_code == 0, narrow.output
    out = narrow.output
    assert re.search(r"┃ Source\s+┃ Fichier\s+┃ Contenu\s+┃", out)
    caption = " ".join(out.split())
    assert "Fichier : nom du fichier dans le cache et dans un miroir (--miroir)." in caption
    assert "Licence de tous les fichiers : Licence Ouverte / Etalab 2.0." in caption
    assert "|---|" not in out  # not the Markdown form
    for source in SOURCES:
        assert re.search(rf"│ {source}\s+│", out), source  # source names are never cut
    lines = out.splitlines()
    for files in SOURCES.values():
        for file in files:
            url = file.url.replace(DEPARTEMENT, "<DEP>")
            assert any(line.startswith(f"{file.display_filename} : {url} (page : {file.page})") for line in lines)


def test_markdown_is_the_readme_table():
    result = fetch_cli("--liste", "--markdown")
    assert result.exit_code == 0
    assert result.output.strip() == describe_sources().strip()


# --- downloads from the producers' addresses ----------------------------------------------------


def test_datagouv_redirect_download_extract_then_cache_hit(server, qpv_from_datagouv, tmp_path):
    cache = tmp_path / "cache"
    result = fetch_cli("qpv2024", "--dest", str(cache))
    assert result.exit_code == 0, result.output
    geojson = cache / "qpv2024" / "qpv2024_anct" / "GEOJSON" / "QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson"
    assert str(geojson) in result.stdout
    assert (cache / "qpv2024" / "qpv2024_anct.zip").read_bytes() == QPV_ZIP
    assert [(r["path"], r["status"]) for r in server.served.log] == [
        (f"/fr/datasets/r/{QPV_ID}", 302), ("/resources/qpv/20240601/qpv2024.zip", 200),
    ]
    assert not [name for name in cache_files(cache) if name.endswith((".part", ".validator"))]

    again = fetch_cli("qpv2024", "--dest", str(cache))
    assert again.exit_code == 0, again.output
    assert len(server.served.log) == 2  # complete in the cache: no request at all
    assert "qpv2024_anct.zip (en cache)" in again.stderr
    assert str(geojson) in again.stdout

    forced = fetch_cli("qpv2024", "--dest", str(cache), "--force")
    assert forced.exit_code == 0, forced.output
    assert server.served.sent("/resources/qpv/20240601/qpv2024.zip") == 2 * len(QPV_ZIP)


def test_cut_connection_resumes_without_fetching_twice(server, qpv_from_datagouv, tmp_path, retry_waits):
    cache = tmp_path / "cache"
    target = "/resources/qpv/20240601/qpv2024.zip"
    server.served.cut_after = 200_000  # every response stops after 200 000 bytes

    result = fetch_cli("qpv2024", "--dest", str(cache))
    assert result.exit_code == 1
    assert "interrompu" in result.stderr and "Traceback" not in result.output
    ranges = [r["range"] for r in server.served.log if r["path"] == target]
    assert ranges == [None, "bytes=200000-", "bytes=400000-"]  # resumed twice within the run
    assert retry_waits == [1.0, 2.0]  # after a pause that doubles
    assert cache_files(cache) == ["qpv2024/qpv2024_anct.zip.part", "qpv2024/qpv2024_anct.zip.part.validator"]
    assert (cache / "qpv2024" / "qpv2024_anct.zip.part").stat().st_size == 600_000

    server.served.cut_after = None
    resumed = fetch_cli("qpv2024", "--dest", str(cache))
    assert resumed.exit_code == 0, resumed.output
    assert [r["range"] for r in server.served.log if r["path"] == target][-1] == "bytes=600000-"
    assert server.served.sent(target) == len(QPV_ZIP)  # every byte sent exactly once
    assert (cache / "qpv2024" / "qpv2024_anct.zip").read_bytes() == QPV_ZIP


def test_server_error_leaves_only_the_resumable_partial(server, qpv_from_datagouv, tmp_path, retry_waits):
    cache = tmp_path / "cache"
    target = "/resources/qpv/20240601/qpv2024.zip"
    server.served.status[target] = 500
    fresh = fetch_cli("qpv2024", "--dest", str(cache))
    assert fresh.exit_code == 1
    assert "erreur du serveur (HTTP 500" in fresh.stderr and "Réessayez plus tard" in fresh.stderr
    assert cache_files(cache) == []
    assert retry_waits == []  # an HTTP error is final: no retry

    del server.served.status[target]
    server.served.cut_after = 100_000
    assert fetch_cli("qpv2024", "--dest", str(cache)).exit_code == 1
    partial = cache / "qpv2024" / "qpv2024_anct.zip.part"
    kept = partial.read_bytes()
    assert kept == QPV_ZIP[:300_000]
    assert retry_waits == [1.0, 2.0]

    server.served.cut_after = None
    server.served.status[target] = 500
    failed = fetch_cli("qpv2024", "--dest", str(cache))
    assert failed.exit_code == 1 and "HTTP 500" in failed.stderr
    assert "La partie déjà reçue est conservée" in failed.stderr
    assert partial.read_bytes() == kept  # untouched, and no final file
    assert not (cache / "qpv2024" / "qpv2024_anct.zip").exists()


def test_checksum_mismatch_names_the_file_and_keeps_nothing(server, monkeypatch, tmp_path):
    server.served.files["/tl/fiche.csv"] = b"ID_UNIQUE;NOM\n1;La Fabrique\n"
    real = SOURCES["tiers_lieux"][0]
    good = hashlib.sha256(b"ID_UNIQUE;NOM\n1;La Fabrique du quartier\n").hexdigest()
    local = OfficialFile(**{**real.__dict__, "url": server.url("/tl/fiche.csv"), "sha256": good})
    monkeypatch.setitem(SOURCES, "tiers_lieux", (local,))
    cache = tmp_path / "cache"
    result = fetch_cli("tiers_lieux", "--dest", str(cache))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "Fichier « bdftl-2023-01-fiche-identite.csv » incorrect" in message
    assert "empreinte SHA-256 attendue" in message and good in message
    assert "n'a pas été utilisé" in message
    assert cache_files(cache) == []
    assert result.stdout == ""  # no path handed to anything


def test_announced_size_mismatch_is_refused_before_the_body(server, monkeypatch, tmp_path):
    server.served.files["/stock.zip"] = QPV_ZIP
    (real,) = SOURCES["sirene_unites_legales"]
    local = OfficialFile(**{**real.__dict__, "url": server.url("/stock.zip"), "size": len(QPV_ZIP) + 1})
    monkeypatch.setitem(SOURCES, "sirene_unites_legales", (local,))
    cache = tmp_path / "cache"
    result = fetch_cli("sirene_unites_legales", "--dest", str(cache))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "« StockUniteLegale_utf8.zip »" in message and "taille attendue" in message
    assert cache_files(cache) == []


def test_corrupted_archive_is_removed_from_the_cache(tmp_path):
    archive = tmp_path / "qpv2024_anct.zip"
    data = bytearray(QPV_ZIP)
    data[200:400] = bytes(200)  # the central directory still reads, the members do not
    archive.write_bytes(bytes(data))
    with pytest.raises(FetchError) as excinfo:
        unpack(archive, retry_command="essmap fetch qpv2024")
    assert "Archive corrompue : « qpv2024_anct.zip »" in str(excinfo.value)
    assert "relancez `essmap fetch qpv2024`" in str(excinfo.value)
    assert not archive.exists()


# --- mirrors --------------------------------------------------------------------------------------


def test_url_mirror_flat_or_per_source_and_ban_per_departement(server, tmp_path):
    server.served.files["/miroir/qpv2024_anct.zip"] = QPV_ZIP
    server.served.files["/miroir/ban_adresses/adresses-13.csv.gz"] = ban_file("13")
    server.served.files["/miroir/adresses-84.csv.gz"] = ban_file("84")
    cache = tmp_path / "cache"
    result = fetch_cli("qpv2024", "ban_adresses", "--departements", "13,84", "--dest", str(cache),
                       "--miroir", server.url("/miroir/"))
    assert result.exit_code == 0, result.output
    assert [(r["path"], r["status"]) for r in server.served.log] == [
        ("/miroir/qpv2024_anct.zip", 200),
        ("/miroir/adresses-13.csv.gz", 404),
        ("/miroir/ban_adresses/adresses-13.csv.gz", 200),
        ("/miroir/adresses-84.csv.gz", 200),
    ]
    for dep in ("13", "84"):
        path = cache / "ban_adresses" / f"adresses-{dep}.csv.gz"
        assert str(path) in result.stdout  # kept compressed: readers stream gzip
        header = gzip.decompress(path.read_bytes()).decode().splitlines()[0]
        assert header.split(";") == list(BAN_ADDRESS_COLUMNS)
    assert (cache / "qpv2024" / "qpv2024_anct.zip").read_bytes() == QPV_ZIP


def test_url_mirror_missing_file_lists_where_it_looked(server, tmp_path):
    result = fetch_cli("qpv2015", "--dest", str(tmp_path / "c"), "--miroir", server.url("/m"))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "Fichier « qp-politiquedelaville-shp.zip » absent du miroir" in message
    assert server.url("/m/qp-politiquedelaville-shp.zip") in message
    assert server.url("/m/qpv2015/qp-politiquedelaville-shp.zip") in message


def test_url_mirror_cut_then_resumed(server, tmp_path, retry_waits):
    server.served.files["/m/qpv2024_anct.zip"] = QPV_ZIP
    server.served.cut_after = 150_000
    cache = tmp_path / "cache"
    cut = fetch_cli("qpv2024", "--dest", str(cache), "--miroir", server.url("/m"))
    assert cut.exit_code == 1 and f"--miroir {server.url('/m')}" in cut.stderr  # the command to resume
    assert retry_waits == [1.0, 2.0]
    server.served.cut_after = None
    result = fetch_cli("qpv2024", "--dest", str(cache), "--miroir", server.url("/m"))
    assert result.exit_code == 0, result.output
    assert server.served.log[-1]["range"] == "bytes=450000-"
    assert server.served.sent("/m/qpv2024_anct.zip") == len(QPV_ZIP)
    assert (cache / "qpv2024" / "qpv2024_anct.zip").read_bytes() == QPV_ZIP


def test_folder_mirror_flat_or_per_source(tmp_path):
    mirror = tmp_path / "miroir"
    (mirror / "ban_adresses").mkdir(parents=True)
    (mirror / "qpv2024_anct.zip").write_bytes(QPV_ZIP)
    (mirror / "ban_adresses" / "adresses-2A.csv.gz").write_bytes(ban_file("2A"))
    cache = tmp_path / "cache"
    result = fetch_cli("qpv2024", "ban_adresses", "--departements", "2a", "--dest", str(cache), "--miroir", str(mirror))
    assert result.exit_code == 0, result.output
    assert (cache / "qpv2024" / "qpv2024_anct.zip").read_bytes() == QPV_ZIP
    assert (cache / "ban_adresses" / "adresses-2A.csv.gz").read_bytes() == ban_file("2A")
    assert "qpv2024_anct/GEOJSON/QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson" in result.stdout
    assert not [name for name in cache_files(cache) if name.endswith((".part", ".validator"))]


def test_folder_mirror_missing_file_and_missing_folder(tmp_path):
    mirror = tmp_path / "miroir"
    mirror.mkdir()
    result = fetch_cli("qpv2015", "--dest", str(tmp_path / "c"), "--miroir", str(mirror))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "absent du miroir" in message and str(mirror / "qpv2015" / "qp-politiquedelaville-shp.zip") in message
    nowhere = fetch_cli("qpv2015", "--dest", str(tmp_path / "c"), "--miroir", str(tmp_path / "nulle-part"))
    assert nowhere.exit_code == 1 and "Miroir introuvable" in nowhere.stderr
    assert cache_files(tmp_path / "c") == []


def test_folder_mirror_corrupted_copy_is_refused(tmp_path, monkeypatch):
    mirror = tmp_path / "miroir"
    mirror.mkdir()
    (mirror / "qpv2024_anct.zip").write_bytes(QPV_ZIP[:-10])  # a truncated copy on the share
    (real,) = SOURCES["qpv2024"]
    monkeypatch.setitem(SOURCES, "qpv2024", (OfficialFile(**{**real.__dict__, "size": len(QPV_ZIP)}),))
    cache = tmp_path / "cache"
    result = fetch_cli("qpv2024", "--dest", str(cache), "--miroir", str(mirror))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "Fichier « qpv2024_anct.zip » incorrect" in message and "taille attendue" in message
    assert cache_files(cache) == []


def test_folder_copy_interrupted_then_resumed(tmp_path):
    mirror = tmp_path / "miroir"
    mirror.mkdir()
    (entry,) = SOURCES["qpv2024"]
    cache = tmp_path / "cache"

    def stop_after_first_chunk(done: int, total: int | None) -> None:
        if done > 0:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the copy

    big = QPV_ZIP + BIG * 2  # over 2 MiB: copied in 1 MiB chunks, so the first one is a partial
    (mirror / "qpv2024_anct.zip").write_bytes(big)
    with pytest.raises(KeyboardInterrupt):  # a byte copy (a share on another file system: no hard link)
        fetch_file("qpv2024", entry, cache, mirror=mirror, progress=stop_after_first_chunk, hard_link=False)
    partial = cache / "qpv2024" / "qpv2024_anct.zip.part"
    first = partial.stat().st_size
    assert 0 < first < len(big)

    seen: list[tuple[int, int | None]] = []
    path = fetch_file("qpv2024", entry, cache, mirror=mirror, progress=lambda d, t: seen.append((d, t)),
                      hard_link=False)
    assert seen[0] == (first, len(big))  # started from what was already there
    assert path.read_bytes() == big and not partial.exists()


def test_folder_copy_restarts_when_the_mirror_file_changed(tmp_path):
    mirror = tmp_path / "miroir"
    mirror.mkdir()
    source = mirror / "qpv2024_anct.zip"
    source.write_bytes(BIG * 3)
    (entry,) = SOURCES["qpv2024"]
    cache = tmp_path / "cache"

    def interrupt(done: int, total: int | None) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_file("qpv2024", entry, cache, mirror=mirror, progress=interrupt, hard_link=False)
    source.write_bytes(QPV_ZIP)  # a new edition dropped on the share in between
    seen: list[int] = []
    path = fetch_file("qpv2024", entry, cache, mirror=mirror, progress=lambda d, t: seen.append(d), hard_link=False)
    assert seen[0] == 0 and path.read_bytes() == QPV_ZIP


def test_folder_mirror_on_the_same_file_system_is_linked_not_copied(tmp_path, monkeypatch):
    mirror = tmp_path / "miroir"
    mirror.mkdir()
    source = mirror / "qpv2024_anct.zip"
    source.write_bytes(QPV_ZIP)
    (entry,) = SOURCES["qpv2024"]
    cache = tmp_path / "cache"
    path = fetch_file("qpv2024", entry, cache, mirror=mirror)
    assert path.stat().st_ino == source.stat().st_ino and path.read_bytes() == QPV_ZIP  # no byte copied
    assert not [name for name in cache_files(cache) if name.endswith((".part", ".validator"))]

    # a linked file is verified like a copied one: refused, and the mirror's file left as it was
    monkeypatch.setitem(SOURCES, "qpv2024", (OfficialFile(**{**entry.__dict__, "size": len(QPV_ZIP) + 1}),))
    with pytest.raises(FetchError, match="incorrect"):
        fetch_file("qpv2024", SOURCES["qpv2024"][0], tmp_path / "autre", mirror=mirror)
    assert source.read_bytes() == QPV_ZIP and cache_files(tmp_path / "autre") == []

    # a partial file that is a link to the mirror's (a run cut between the link and the rename) is
    # never appended to nor truncated: a copy starts afresh beside it
    partial = tmp_path / "trois" / "qpv2024" / "qpv2024_anct.zip.part"
    partial.parent.mkdir(parents=True)
    os.link(source, partial)
    path = fetch_file("qpv2024", entry, tmp_path / "trois", mirror=mirror, hard_link=False)
    assert path.read_bytes() == QPV_ZIP and source.read_bytes() == QPV_ZIP
    assert path.stat().st_ino != source.stat().st_ino


def test_mirror_locations():
    assert mirror_locations("https://miroir.example/officiel/", "ban_adresses", "adresses-2A.csv.gz") == [
        "https://miroir.example/officiel/adresses-2A.csv.gz",
        "https://miroir.example/officiel/ban_adresses/adresses-2A.csv.gz",
    ]
    assert mirror_locations(Path("/srv/m"), "qpv2024", "q.zip") == ["/srv/m/q.zip", "/srv/m/qpv2024/q.zip"]


def test_fetch_file_for_a_build(server, tmp_path):
    """The call ``essmap build --officiel`` makes per catalogue entry."""
    server.served.files["/m/adresses-13.csv.gz"] = ban_file("13")
    (ban,) = SOURCES["ban_adresses"]
    seen: list[tuple[int, int | None]] = []
    path = fetch_file("ban_adresses", ban, tmp_path, departement="13", mirror=server.url("/m"),
                      progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "ban_adresses" / "adresses-13.csv.gz"
    assert path.read_bytes() == ban_file("13")
    assert seen[-1] == (len(ban_file("13")), len(ban_file("13")))
    with pytest.raises(FetchError, match="indiquez le département"):
        fetch_file("ban_adresses", ban, tmp_path, mirror=server.url("/m"))
