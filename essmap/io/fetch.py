"""Resumable, verified downloads of the official files (``essmap fetch``).

Official files are large (the Sirene stocks weigh gigabytes) and connections drop, so a download
is written to ``<dest>.part`` and resumed with an HTTP ``Range`` request, then checked (size,
optional SHA-256) and only then renamed to its final name: a file under its final name is always
complete. The standard library (``urllib``) is used so that fetching needs no undeclared
dependency. This module draws nothing: progress goes through a callback and the CLI draws the bar.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from essmap import __version__
from essmap.domain.errors import FetchError
from essmap.io.sources import SOURCES, OfficialFile

#: ``progress(bytes_done, total_or_None)``, called after every chunk.
Progress = Callable[[int, int | None], None]

USER_AGENT = f"essmap/{__version__} (Python urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)
_HASH_BLOCK = 1 << 20


class _Restart(Exception):
    """The partial file cannot be resumed: start again from byte zero."""


def _octets(n: int) -> str:
    """French-style byte count, e.g. ``3 145 728 octets``."""
    return f"{n:,}".replace(",", " ") + " octets"


def _to_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _sha256_file(path: Path, limit: int | None = None) -> hashlib._Hash:
    """Hash a file (or its first ``limit`` bytes) without loading it in memory."""
    hasher = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            size = _HASH_BLOCK if remaining is None else min(_HASH_BLOCK, remaining)
            block = handle.read(size)
            if not block:
                break
            hasher.update(block)
            if remaining is not None:
                remaining -= len(block)
    return hasher


def _is_complete(dest: Path, expected_size: int | None, expected_sha256: str | None) -> bool:
    """Whether an existing final file can be kept (what is known about it matches)."""
    if expected_sha256 is not None:
        return _sha256_file(dest).hexdigest() == expected_sha256
    if expected_size is not None:
        return dest.stat().st_size == expected_size
    return True


def _network_message(url: str, reason: object, dest: Path) -> str:
    return (
        f"Téléchargement impossible depuis {url} : {reason}. "
        "Vérifiez la connexion internet (ou le proxy), ou téléchargez le fichier à la main, "
        f"enregistrez-le sous {dest}, puis utilisez `essmap ingest`."
    )


def _mismatch_message(url: str, what: str, expected: str, received: str, retry: str) -> str:
    return (
        f"Fichier incorrect téléchargé depuis {url} : {what} attendue {expected}, "
        f"reçue {received}. Le fichier partiel a été supprimé : relancez `{retry}`. "
        "Si l'erreur persiste, le fichier officiel a probablement changé : mettez à jour sa "
        "taille ou son empreinte dans essmap/sources.py."
    )


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = 60,
    chunk_size: int = 1 << 20,
    force: bool = False,
    retry_command: str = "essmap fetch",
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, and verify it.

    Parameters
    ----------
    url : str
        HTTP(S) address.
    dest : Path
        Final path. Bytes go to ``dest`` + ``.part`` first; the rename happens only once the
        file is verified, so ``dest`` is never a truncated file.
    expected_size, expected_sha256 : int or str, optional
        What the file must be. ``None``: not checked (the size the server announces still is).
    progress : callable, optional
        ``progress(bytes_done, total)``; ``total`` is ``None`` when the server does not say.
    timeout : float
        Seconds without any network activity before giving up (the partial file is kept).
    chunk_size : int
        Bytes read and written at a time: the file is never held in memory.
    force : bool
        Download again even if ``dest`` already exists and matches what is known about it.
    retry_command : str
        Command quoted in error messages to resume (e.g. ``essmap fetch qpv2024``).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    FetchError
        Network or HTTP failure (partial file kept for a later resume), or a size / checksum
        mismatch (partial file deleted). The French message names the URL and the fix.
    """
    dest = Path(dest)
    expected_sha256 = expected_sha256.lower() if expected_sha256 else None
    if not force and dest.is_file() and _is_complete(dest, expected_size, expected_sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    # The ETag / Last-Modified of the first response, sent back as If-Range when resuming, so
    # that a file replaced on the server in between (monthly stocks) is not spliced.
    validator = dest.with_suffix(dest.suffix + ".part.validator")
    for _ in range(2):
        try:
            _fetch_to_part(
                url,
                part,
                validator,
                dest=dest,
                expected_size=expected_size,
                expected_sha256=expected_sha256,
                progress=progress,
                timeout=timeout,
                chunk_size=chunk_size,
                retry=retry_command,
            )
            break
        except _Restart:
            part.unlink(missing_ok=True)
            validator.unlink(missing_ok=True)
    else:  # pragma: no cover - a fresh download never asks for a restart
        raise FetchError(
            f"Téléchargement impossible depuis {url} : le serveur refuse la reprise et le "
            f"téléchargement complet. Relancez `{retry_command}` plus tard."
        )
    os.replace(part, dest)
    validator.unlink(missing_ok=True)
    return dest


def _fetch_to_part(
    url: str,
    part: Path,
    validator: Path,
    *,
    dest: Path,
    expected_size: int | None,
    expected_sha256: str | None,
    progress: Progress | None,
    timeout: float,
    chunk_size: int,
    retry: str,
) -> None:
    """One HTTP request: append to (or restart) ``part``; raise ``_Restart`` if it cannot resume."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator.is_file():
            headers["If-Range"] = validator.read_text(encoding="utf-8").strip()
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as error:
        with error:
            if error.code == 416 and offset:
                # "Range Not Satisfiable": the partial file may already hold the whole file.
                match = _UNSATISFIED_RANGE.search(error.headers.get("Content-Range", ""))
                total = int(match[1]) if match else None
                if total == offset or (total is None and expected_size == offset):
                    _verify(url, part, offset, None, expected_size, expected_sha256, retry)
                    return
                raise _Restart from None
            raise FetchError(
                f"Téléchargement impossible depuis {url} : le serveur a répondu HTTP "
                f"{error.code} ({error.reason}). Le fichier a peut-être été déplacé : vérifiez "
                "l'adresse dans essmap/sources.py, ou téléchargez le fichier à la main depuis "
                "la page du jeu de données puis utilisez `essmap ingest`."
            ) from None
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        reason = getattr(error, "reason", error)
        raise FetchError(_network_message(url, reason, dest)) from error

    with response:
        length = _to_int(response.headers.get("Content-Length"))
        if offset and response.status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match[1]) != offset:
                raise _Restart
            total = None if match[3] == "*" else int(match[3])
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        elif response.status == 200:
            # A fresh download, or a server that ignored the Range (or whose file changed, per
            # If-Range): restart from byte zero over the partial file.
            offset, total, mode = 0, length, "wb"
            tag = response.headers.get("ETag") or response.headers.get("Last-Modified")
            if tag and not tag.startswith("W/"):
                validator.write_text(tag, encoding="utf-8")
            else:
                validator.unlink(missing_ok=True)
        else:
            raise FetchError(
                f"Téléchargement impossible depuis {url} : réponse HTTP {response.status} "
                f"inattendue. Relancez `{retry}` ; si cela persiste, téléchargez le fichier à la "
                "main puis utilisez `essmap ingest`."
            )

        if total is not None and expected_size is not None and total != expected_size:
            part.unlink(missing_ok=True)
            validator.unlink(missing_ok=True)
            raise FetchError(
                _mismatch_message(
                    url, "taille", _octets(expected_size),
                    f"{_octets(total)} annoncés par le serveur", retry,
                )
            )

        hasher = None
        if expected_sha256 is not None:
            hasher = _sha256_file(part, offset) if offset else hashlib.sha256()
        done = offset
        if progress is not None:
            progress(done, total)
        try:
            out = open(part, mode)
        except OSError as error:
            raise FetchError(
                f"Écriture impossible dans {part} : {error}. Vérifiez les droits sur le dossier "
                "de cache (ESSMAP_CACHE_DIR) et l'espace disque."
            ) from error
        with out:
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as error:
                    out.flush()
                    raise FetchError(_interrupted(url, part, done, total, error, retry)) from error
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as error:
                    raise FetchError(
                        f"Écriture impossible dans {part} : {error}. Libérez de l'espace disque "
                        f"puis relancez `{retry}` : le téléchargement reprendra."
                    ) from error
                if hasher is not None:
                    hasher.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)

    if total is not None and done < total:
        raise FetchError(_interrupted(url, part, done, total, "connexion fermée", retry))
    _verify(url, part, done, hasher, expected_size, expected_sha256, retry, announced=total)


def _interrupted(
    url: str, part: Path, done: int, total: int | None, reason: object, retry: str
) -> str:
    expected = f" sur {_octets(total)} attendus" if total is not None else ""
    return (
        f"Téléchargement interrompu depuis {url} : {_octets(done)} reçus{expected} ({reason}). "
        f"La partie reçue est conservée dans {part} : relancez `{retry}` pour reprendre là où "
        "il s'est arrêté. Si la connexion ne revient pas, téléchargez le fichier à la main puis "
        "utilisez `essmap ingest`."
    )


def _verify(
    url: str,
    part: Path,
    size: int,
    hasher: hashlib._Hash | None,
    expected_size: int | None,
    expected_sha256: str | None,
    retry: str,
    *,
    announced: int | None = None,
) -> None:
    """Check a finished partial file; delete it on any mismatch."""
    problem = None
    if announced is not None and size != announced:
        problem = ("taille", f"{_octets(announced)} (annoncés par le serveur)", _octets(size))
    elif expected_size is not None and size != expected_size:
        problem = ("taille", _octets(expected_size), _octets(size))
    elif expected_sha256 is not None:
        digest = (hasher or _sha256_file(part)).hexdigest()
        if digest != expected_sha256:
            problem = ("empreinte SHA-256", expected_sha256, digest)
    if problem is not None:
        part.unlink(missing_ok=True)
        part.with_suffix(part.suffix + ".validator").unlink(missing_ok=True)
        raise FetchError(_mismatch_message(url, *problem, retry))


def extract_zip(
    archive: Path, target: Path | None = None, *, retry_command: str = "essmap fetch"
) -> list[Path]:
    """Extract a ZIP archive member by member (streamed), next to it by default.

    Members already extracted after the archive was written (same size, newer file) are kept,
    so that running ``essmap fetch`` twice does not rewrite gigabytes. Each member goes through
    a ``.part`` file and a rename, like downloads.

    Returns
    -------
    list of Path
        The extracted files, in archive order.
    """
    archive = Path(archive)
    if target is None:
        stem = archive.with_suffix("")
        target = stem if stem != archive else archive.with_name(archive.name + "_extrait")
    root = target.resolve()
    archive_mtime = archive.stat().st_mtime
    extracted: list[Path] = []
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if info.is_dir():
                    continue
                out = (root / info.filename).resolve()
                if not out.is_relative_to(root) or out == root:
                    raise FetchError(
                        f"Archive refusée : {archive} contient un chemin dangereux "
                        f"« {info.filename} » (hors du dossier d'extraction). Supprimez-la et "
                        "téléchargez le fichier depuis sa source officielle."
                    )
                extracted.append(out)
                if out.is_file():
                    stat = out.stat()
                    if stat.st_size == info.file_size and stat.st_mtime >= archive_mtime:
                        continue
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_name(out.name + ".part")
                try:
                    with zipped.open(info) as source, open(tmp, "wb") as sink:
                        shutil.copyfileobj(source, sink, 1 << 20)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                os.replace(tmp, out)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise FetchError(
            f"Archive corrompue : {archive} ({error}). Supprimez ce fichier puis relancez "
            f"`{retry_command}`."
        ) from error
    return extracted


def _is_7z(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"7z\xbc\xaf\x27\x1c"


def extract_7z(archive: Path, target: Path | None = None, *, retry_command: str = "essmap fetch") -> list[Path]:
    """Extract a 7-Zip archive (IGN ships ADMIN EXPRESS so) next to it by default.

    Member paths are checked like ZIP members: nothing may land outside the target folder.
    """
    import py7zr

    archive = Path(archive)
    root = (target or archive.with_suffix("")).resolve()
    try:
        with py7zr.SevenZipFile(archive) as seven:
            names = [n for n in seven.getnames()]
            for member in names:
                out = (root / member).resolve()
                if not out.is_relative_to(root) or out == root:
                    raise FetchError(
                        f"Archive refusée : {archive} contient un chemin dangereux « {member} » "
                        "(hors du dossier d'extraction). Supprimez-la et téléchargez le fichier "
                        "depuis sa source officielle."
                    )
            seven.extractall(path=root)
    except (py7zr.exceptions.ArchiveError, EOFError, OSError) as error:
        if isinstance(error, FetchError):
            raise
        raise FetchError(
            f"Archive corrompue : {archive} ({error}). Supprimez ce fichier puis relancez "
            f"`{retry_command}`."
        ) from error
    return sorted(p for p in root.rglob("*") if p.is_file())


def fetch_source(
    name: str,
    cache_dir: Path,
    *,
    catalogue: dict[str, tuple[OfficialFile, ...]] = SOURCES,
    progress: Progress | None = None,
    on_file: Callable[[OfficialFile], None] | None = None,
    extract: bool = True,
    force: bool = False,
    timeout: float = 60,
) -> list[Path]:
    """Download every file of one source of the catalogue into ``cache_dir/<name>/``.

    Parameters
    ----------
    name : str
        A key of ``catalogue`` (e.g. ``qpv2024``, ``sirene_unites_legales``).
    cache_dir : Path
        Root of the download cache (``Settings.cache_dir``).
    catalogue : dict
        Sources to pick from; :data:`essmap.io.sources.SOURCES` by default (tests pass their own).
    progress : callable, optional
        ``progress(bytes_done, total)`` for the file being downloaded (restarts at each file).
    on_file : callable, optional
        ``on_file(file)``, called before each file, e.g. to label the progress bar.
    extract : bool
        Extract ZIP archives (detected by content, not by name: some stable data.gouv.fr
        addresses serve a ZIP) into a folder named after the archive.
    force : bool
        Download again files already in the cache.
    timeout : float
        Network timeout in seconds.

    Returns
    -------
    list of Path
        Usable files: the files extracted from each archive (when ``extract``), otherwise the
        downloaded file itself. 7-Zip archives (IGN's ADMIN EXPRESS) are extracted the same way.
    """
    files = catalogue.get(name)
    if files is None:
        known = ", ".join(sorted(catalogue)) or "aucune"
        raise FetchError(
            f"Source inconnue : « {name} ». Sources connues : {known}. "
            f"Exemple : `essmap fetch {next(iter(sorted(catalogue)), 'qpv2024')}`."
        )
    folder = Path(cache_dir) / name
    retry = f"essmap fetch {name}"
    paths: list[Path] = []
    for file in files:
        if Path(file.filename).name != file.filename or file.filename in ("", ".", ".."):
            raise ValueError(f"{name}/{file.name}: filename must be a bare name: {file.filename!r}")
        if on_file is not None:
            on_file(file)
        path = download(
            file.url,
            folder / file.filename,
            expected_size=file.size,
            expected_sha256=file.sha256,
            progress=progress,
            timeout=timeout,
            force=force,
            retry_command=retry,
        )
        if extract and zipfile.is_zipfile(path):
            paths.extend(extract_zip(path, retry_command=retry))
        elif extract and _is_7z(path):
            paths.extend(extract_7z(path, retry_command=retry))
        else:
            paths.append(path)
    return paths
