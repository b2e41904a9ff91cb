"""Resumable, verified downloads of the official files (``essmap fetch``).

Official files are large (the Sirene stocks weigh gigabytes) and connections drop, so a download
is written to ``<dest>.part`` and resumed with an HTTP ``Range`` request (automatically a few
times within one run, and on the next run after that), then checked (size, optional SHA-256)
and only then renamed to its final name: a file under its final name is always complete.

Files come from the producer's address in the catalogue, or from a mirror (``--miroir``): a
base URL or a folder holding the files under their catalogue file names, flat or in one
sub-folder per source (so a copied ``data/cache`` works as a mirror). A folder is copied with
the same guarantees as a download (partial file, resume, verification).

Cache rule: a file already complete in the cache is used as it is, without contacting the
server (so a second run, or a run without network, costs nothing); ``force`` fetches it again,
and the old file stays in place until the new one is verified. Monthly files (Sirene stocks)
are therefore refreshed on request (``essmap fetch --force``), never behind the user's back.

The standard library (``urllib``) is used so that fetching needs no undeclared dependency. This
module draws nothing: progress goes through a callback and the CLI draws the bars.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

from essmap import __version__
from essmap.domain.errors import FetchError
from essmap.io.readers.common import checked_departements
from essmap.io.sources import SOURCES, OfficialFile

#: ``progress(bytes_done, total_or_None)``, called after every chunk.
Progress = Callable[[int, int | None], None]

USER_AGENT = f"essmap/{__version__} (Python urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)
_HASH_BLOCK = 1 << 20
#: Prefix of the validator of a partial file copied from a mirror folder (size and mtime of
#: the source file), so that an HTTP resume never splices onto a folder copy, nor the reverse.
_FOLDER_VALIDATOR = "file:"


class _Restart(Exception):
    """The partial file cannot be resumed: start again from byte zero."""


class _Interrupted(FetchError):
    """The transfer stopped midway; the partial file is kept and can be resumed."""


class NotFoundError(FetchError):
    """The server (or the mirror) has no such file (HTTP 404 / 410, or absent from a mirror
    folder): a build may then fall back to another edition of the same data."""


class _CorruptArchive(FetchError):
    """A downloaded archive cannot be read."""


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
        "Vérifiez la connexion internet (ou le proxy ; `--miroir` permet de passer par une copie "
        "locale des fichiers), ou téléchargez le fichier à la main, "
        f"enregistrez-le sous {dest}, puis utilisez `essmap ingest`."
    )


def _mismatch_message(name: str, origin: str, what: str, expected: str, received: str, retry: str) -> str:
    return (
        f"Fichier « {name} » incorrect, reçu de {origin} : {what} attendue {expected}, "
        f"reçue {received}. Il n'a pas été utilisé et la partie reçue a été supprimée : relancez "
        f"`{retry}`. Si l'erreur persiste, le fichier de la source a probablement changé (ou la "
        "copie du miroir est abîmée) : mettez à jour sa taille ou son empreinte dans "
        "essmap/io/sources.py, ou remplacez la copie du miroir."
    )


def _part_paths(dest: Path) -> tuple[Path, Path]:
    """The partial file of ``dest`` and the validator that says where its bytes came from."""
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.validator")


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
    retries: int = 2,
    retry_delay: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, and verify it.

    Parameters
    ----------
    url : str
        HTTP(S) address (redirects are followed).
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
    retries : int
        How many times a transfer cut midway is resumed within this call before giving up.
    retry_delay : float
        Seconds to wait before the first automatic resume (doubled at each one).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    FetchError
        Network or HTTP failure (partial file kept for a later resume), or a size / checksum
        mismatch (partial file deleted). The French message names the file, the URL and the fix.
    """
    dest = Path(dest)
    expected_sha256 = expected_sha256.lower() if expected_sha256 else None
    if not force and dest.is_file() and _is_complete(dest, expected_size, expected_sha256):
        return dest
    part, validator = _part_paths(dest)
    if validator.is_file() and validator.read_text(encoding="utf-8").startswith(_FOLDER_VALIDATOR):
        part.unlink(missing_ok=True)  # bytes copied from a mirror folder: not this URL's
        validator.unlink(missing_ok=True)
    restarts = 0
    attempt = 0
    while True:
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
            restarts += 1
            if restarts > 1:  # pragma: no cover - a fresh download never asks for a restart
                raise FetchError(
                    f"Téléchargement impossible depuis {url} : le serveur refuse la reprise et le "
                    f"téléchargement complet. Relancez `{retry_command}` plus tard."
                ) from None
        except _Interrupted:
            if attempt >= retries:
                raise
            attempt += 1
            time.sleep(retry_delay * 2 ** (attempt - 1))
    os.replace(part, dest)
    validator.unlink(missing_ok=True)
    return dest


def _http_error(url: str, error: HTTPError, part: Path, retry: str) -> FetchError:
    kept = (
        f" La partie déjà reçue est conservée dans {part} : la reprise repartira de là."
        if part.is_file() else ""
    )
    if error.code in (404, 410):
        return NotFoundError(
            f"Téléchargement impossible depuis {url} : le serveur a répondu HTTP {error.code} "
            f"({error.reason}), le fichier n'y est pas. Il a peut-être été déplacé : vérifiez "
            "l'adresse dans essmap/io/sources.py (ou le contenu du miroir), ou téléchargez le "
            "fichier à la main depuis la page du jeu de données puis utilisez `essmap ingest`."
        )
    if error.code >= 500:
        return FetchError(
            f"Téléchargement impossible depuis {url} : erreur du serveur (HTTP {error.code}, "
            f"{error.reason}). Réessayez plus tard avec `{retry}`.{kept}"
        )
    return FetchError(
        f"Téléchargement impossible depuis {url} : le serveur a répondu HTTP {error.code} "
        f"({error.reason}). Vérifiez l'adresse dans essmap/io/sources.py (ou le proxy), ou "
        "téléchargez le fichier à la main depuis la page du jeu de données puis utilisez "
        f"`essmap ingest`.{kept}"
    )


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
                    _verify(dest.name, url, part, offset, None, expected_size, expected_sha256, retry)
                    return
                raise _Restart from None
            raise _http_error(url, error, part, retry) from None
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
            part.parent.mkdir(parents=True, exist_ok=True)
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
                    dest.name, url, "taille", _octets(expected_size),
                    f"{_octets(total)} annoncés par le serveur", retry,
                )
            )
        _stream(response, part, mode, offset, total, url=url, expected_sha256=expected_sha256,
                progress=progress, chunk_size=chunk_size, retry=retry, dest=dest, expected_size=expected_size)


def _stream(
    source,
    part: Path,
    mode: str,
    offset: int,
    total: int | None,
    *,
    url: str,
    dest: Path,
    expected_size: int | None,
    expected_sha256: str | None,
    progress: Progress | None,
    chunk_size: int,
    retry: str,
) -> None:
    """Copy ``source`` (a response or an open file) into ``part`` from ``offset``, then verify."""
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
                chunk = source.read(chunk_size)
            except (OSError, http.client.HTTPException) as error:
                out.flush()
                raise _Interrupted(_interrupted(url, part, done, total, error, retry)) from error
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
        raise _Interrupted(_interrupted(url, part, done, total, "connexion fermée", retry))
    _verify(dest.name, url, part, done, hasher, expected_size, expected_sha256, retry, announced=total)


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
    name: str,
    origin: str,
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
        problem = ("taille", f"{_octets(announced)} (annoncés par la source)", _octets(size))
    elif expected_size is not None and size != expected_size:
        problem = ("taille", _octets(expected_size), _octets(size))
    elif expected_sha256 is not None:
        digest = (hasher or _sha256_file(part)).hexdigest()
        if digest != expected_sha256:
            problem = ("empreinte SHA-256", expected_sha256, digest)
    if problem is not None:
        part.unlink(missing_ok=True)
        part.with_name(part.name + ".validator").unlink(missing_ok=True)
        raise FetchError(_mismatch_message(name, origin, *problem, retry))


def copy_from_folder(
    source: Path,
    dest: Path,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: Progress | None = None,
    chunk_size: int = 1 << 20,
    force: bool = False,
    retry_command: str = "essmap fetch",
    hard_link: bool = True,
) -> Path:
    """Copy a mirror folder's file into the cache with the guarantees of :func:`download`.

    The bytes go to ``dest.part`` (resumed if an earlier copy of the same source file was
    interrupted), are verified against the source's size and what the catalogue knows, and only
    then renamed to ``dest``.

    On the same file system the "copy" is a hard link (no byte moved: the national SIRENE files
    weigh gigabytes), verified the same way. Nothing in the cache is ever written in place (new
    files are renamed over old ones), and a partial file that is such a link is dropped rather
    than resumed, so the mirror's file cannot be altered through the cache. ``hard_link=False``
    always copies.
    """
    source, dest = Path(source), Path(dest)
    expected_sha256 = expected_sha256.lower() if expected_sha256 else None
    if not force and dest.is_file() and _is_complete(dest, expected_size, expected_sha256):
        return dest
    try:
        stat = source.stat()
        handle = open(source, "rb")
    except OSError as error:
        raise FetchError(
            f"Lecture impossible de {source} dans le miroir : {error.strerror or error}. Vérifiez "
            f"le dossier donné à --miroir, puis relancez `{retry_command}`."
        ) from error
    part, validator = _part_paths(dest)
    tag = f"{_FOLDER_VALIDATOR}{stat.st_size}:{stat.st_mtime_ns}"
    if part.is_file() and part.stat().st_nlink > 1:
        part.unlink()  # a link to a mirror file: never append to (or truncate) it
    offset = part.stat().st_size if part.is_file() else 0
    known = validator.read_text(encoding="utf-8") if validator.is_file() else None
    if offset and (known != tag or offset > stat.st_size):
        offset = 0  # another source file (or another edition of it): start again
    dest.parent.mkdir(parents=True, exist_ok=True)
    if offset == 0 and hard_link and _link(source, part):
        handle.close()
        _verify(dest.name, str(source), part, part.stat().st_size, None, expected_size, expected_sha256,
                retry_command, announced=stat.st_size)
        if progress is not None:
            progress(stat.st_size, stat.st_size)
        os.replace(part, dest)
        validator.unlink(missing_ok=True)
        return dest
    with handle:
        validator.write_text(tag, encoding="utf-8")
        handle.seek(offset)
        _stream(handle, part, "ab" if offset else "wb", offset, stat.st_size, url=str(source), dest=dest,
                expected_size=expected_size, expected_sha256=expected_sha256, progress=progress,
                chunk_size=chunk_size, retry=retry_command)
    os.replace(part, dest)
    validator.unlink(missing_ok=True)
    return dest


def _link(source: Path, part: Path) -> bool:
    """Hard-link ``source`` as ``part`` (replacing a stale one); False where links are impossible
    (another file system, a file system without links, no permission): the caller copies."""
    part.unlink(missing_ok=True)
    try:
        os.link(source, part)
    except OSError:
        return False
    return True


def is_url(mirror: str | Path) -> bool:
    """Whether a ``--miroir`` value is a base URL (otherwise it is a folder)."""
    return isinstance(mirror, str) and mirror.lower().startswith(("http://", "https://"))


def mirror_locations(mirror: str | Path, source: str, filename: str) -> list[str]:
    """Where a mirror may hold one file: ``<mirror>/<file>``, then ``<mirror>/<source>/<file>``."""
    if is_url(mirror):
        base = str(mirror).rstrip("/")
        return [f"{base}/{quote(filename)}", f"{base}/{quote(source)}/{quote(filename)}"]
    folder = Path(mirror)
    return [str(folder / filename), str(folder / source / filename)]


def files_of_source(
    name: str,
    departements: Sequence[str] | None = None,
    *,
    catalogue: dict[str, tuple[OfficialFile, ...]] = SOURCES,
) -> list[OfficialFile]:
    """The concrete files of one source: per-département entries expanded for ``departements``.

    Raises
    ------
    FetchError
        Unknown source, or a per-département source without départements (French message).
    """
    files = catalogue.get(name)
    if files is None:
        known = ", ".join(sorted(catalogue)) or "aucune"
        raise FetchError(
            f"Source inconnue : « {name} ». Sources connues : {known}. "
            f"Exemple : `essmap fetch {next(iter(sorted(catalogue)), 'qpv2024')}`."
        )
    deps = checked_departements(list(departements)) if departements else []
    concrete: list[OfficialFile] = []
    for file in files:
        if Path(file.filename).name != file.filename or file.filename in ("", ".", ".."):
            raise ValueError(f"{name}/{file.name}: filename must be a bare name: {file.filename!r}")
        if not file.per_departement:
            concrete.append(file)
        elif not deps:
            raise FetchError(
                f"La source « {name} » a un fichier par département : indiquez lesquels, par "
                f"exemple `essmap fetch {name} --departements 13,84`."
            )
        else:
            concrete.extend(file.for_departement(dep) for dep in deps)
    return concrete


def fetch_command(
    source: str,
    departements: Sequence[str] | None = None,
    mirror: str | Path | None = None,
    *,
    catalogue: dict[str, tuple[OfficialFile, ...]] = SOURCES,
) -> str:
    """The ``essmap fetch`` command that fetches (or resumes) one source, for error messages."""
    command = f"essmap fetch {source}"
    if departements and any(f.per_departement for f in catalogue.get(source, ())):
        command += " --departements " + ",".join(checked_departements(list(departements)))
    if mirror is not None:
        command += f" --miroir {mirror}"
    return command


def fetch_file(
    source: str,
    file: OfficialFile,
    cache_dir: Path,
    *,
    departement: str | None = None,
    mirror: str | Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
    timeout: float = 60,
    retries: int = 2,
    retry_delay: float = 1.0,
    retry_command: str | None = None,
    hard_link: bool = True,
) -> Path:
    """One catalogue file, verified, in the cache: ``cache_dir/<source>/<file name>``.

    This is the function a build calls per catalogue entry. Nothing is extracted (see
    :func:`unpack`).

    Parameters
    ----------
    source : str
        The entry's source name in the catalogue (its cache folder), e.g. ``sirene_geolocalisation``.
    file : OfficialFile
        The catalogue entry.
    cache_dir : Path
        Root of the download cache (``Settings.cache_dir``).
    departement : str, optional
        Département code, required for a per-département entry (``ban_adresses``).
    mirror : str or Path, optional
        A base URL (``http(s)://...``) or a folder holding the files under their catalogue file
        names, flat or in one sub-folder per source; ``None``: the producer's address.
    progress : callable, optional
        ``progress(bytes_done, total)``.
    force : bool
        Fetch again a file already complete in the cache (see the module's cache rule).
    timeout, retries, retry_delay : see :func:`download`.
    retry_command : str, optional
        Command quoted in error messages; by default the matching ``essmap fetch ...``.
    hard_link : bool
        From a mirror folder on the cache's file system, link the file instead of copying it
        (see :func:`copy_from_folder`).

    Returns
    -------
    Path
        The complete, verified file.

    Raises
    ------
    FetchError
        French message naming the file and the fix; a partial download is kept for a resume
        unless it was found corrupted.
    """
    if file.per_departement:
        if departement is None:
            raise FetchError(
                f"Le fichier « {file.display_filename} » existe par département : indiquez le département."
            )
        (departement,) = checked_departements([departement])
        file = file.for_departement(departement)
    if retry_command is None:
        retry_command = fetch_command(source, [departement] if departement else None, mirror)
    dest = Path(cache_dir) / source / file.filename

    def from_url(url: str) -> Path:
        return download(url, dest, expected_size=file.size, expected_sha256=file.sha256, progress=progress,
                        force=force, retry_command=retry_command, timeout=timeout, retries=retries,
                        retry_delay=retry_delay)

    if mirror is None:
        return from_url(file.url)
    if not force and dest.is_file() and _is_complete(dest, file.size, (file.sha256 or "").lower() or None):
        return dest
    locations = mirror_locations(mirror, source, file.filename)
    if is_url(mirror):
        for location in locations:
            try:
                return from_url(location)
            except NotFoundError:
                continue
    else:
        if not Path(mirror).is_dir():
            raise FetchError(
                f"Miroir introuvable : « {mirror} » n'est pas un dossier (ni une adresse http(s)://). "
                "Solution : indiquez le dossier qui contient les fichiers, ou l'adresse de base du "
                "miroir."
            )
        for location in locations:
            if Path(location).is_file():
                return copy_from_folder(Path(location), dest, expected_size=file.size, expected_sha256=file.sha256,
                                        progress=progress, force=force, retry_command=retry_command,
                                        hard_link=hard_link)
    tried = " ; ".join(locations)
    raise NotFoundError(
        f"Fichier « {file.filename} » absent du miroir {mirror} (cherché : {tried}). Solution : "
        "déposez-le dans le miroir sous ce nom (les noms sont ceux de `essmap fetch --liste`), "
        "ou retirez --miroir pour le télécharger depuis la source officielle."
    )


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
        raise _CorruptArchive(
            f"Archive corrompue : {archive} ({error}). Supprimez ce fichier puis relancez "
            f"`{retry_command}`."
        ) from error
    return extracted


def _is_7z(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"7z\xbc\xaf\x27\x1c"


#: Written last into a 7-Zip's extraction folder: which archive (size, modification time) it holds.
EXTRACTION_MARKER = ".essmap-extraction.json"


def _archive_stamp(archive: Path) -> dict[str, object]:
    """What identifies one download of an archive: its name, size and modification time (a new
    download, even of the same name, changes the time; hashing gigabytes at every build would not)."""
    stat = archive.stat()
    return {"archive": archive.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _extracted_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != EXTRACTION_MARKER)


def extract_7z(archive: Path, target: Path | None = None, *, retry_command: str = "essmap fetch") -> list[Path]:
    """Extract a 7-Zip archive (IGN ships ADMIN EXPRESS so) next to it by default, once.

    LZMA is slow (minutes for ADMIN EXPRESS), so the extraction is kept: the folder records the
    archive it came from (:data:`EXTRACTION_MARKER`: size and modification time) and is reused as
    long as the archive is the same file; a new download is extracted again. Extraction goes to a
    temporary folder renamed only once complete, so an interrupted one (power cut, Ctrl-C) is
    never taken for a finished one: the next run removes it and starts again.

    Member paths are checked like ZIP members: nothing may land outside the target folder.
    """
    import py7zr

    archive = Path(archive)
    root = (target or archive.with_suffix("")).resolve()
    stamp = _archive_stamp(archive)
    marker = root / EXTRACTION_MARKER
    try:
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp:
            return _extracted_files(root)
    except (OSError, ValueError):
        pass  # an unreadable marker: extract again
    staging = root.with_name(root.name + ".extraction-en-cours")
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted extraction left
    try:
        with py7zr.SevenZipFile(archive) as seven:
            for member in seven.getnames():
                out = (staging / member).resolve()
                if not out.is_relative_to(staging) or out == staging:
                    raise FetchError(
                        f"Archive refusée : {archive} contient un chemin dangereux « {member} » "
                        "(hors du dossier d'extraction). Supprimez-la et téléchargez le fichier "
                        "depuis sa source officielle."
                    )
            seven.extractall(path=staging)
        (staging / EXTRACTION_MARKER).write_text(json.dumps(stamp), encoding="utf-8")
    except (py7zr.exceptions.ArchiveError, EOFError, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, FetchError):
            raise
        raise _CorruptArchive(
            f"Archive corrompue : {archive} ({error}). Supprimez ce fichier puis relancez "
            f"`{retry_command}`."
        ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)  # the extraction of an older download
    os.replace(staging, root)
    return _extracted_files(root)


def unpack(archive: Path, *, retry_command: str = "essmap fetch") -> list[Path]:
    """The usable files of a downloaded file: the members of a ZIP or 7-Zip archive (detected by
    content, not by name: some stable addresses serve a ZIP without extension), extracted next
    to it, or the file itself.

    A corrupted archive is deleted (it would otherwise be taken as complete by the next run) and
    a French error says so.
    """
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            return extract_zip(archive, retry_command=retry_command)
        if _is_7z(archive):
            return extract_7z(archive, retry_command=retry_command)
    except _CorruptArchive as error:
        archive.unlink(missing_ok=True)
        raise FetchError(
            f"Archive corrompue : « {archive.name} » ne peut pas être lue ({error.__cause__ or error}). "
            f"Elle a été supprimée du cache : relancez `{retry_command}` pour la télécharger à nouveau."
        ) from error
    return [archive]


def fetch_source(
    name: str,
    cache_dir: Path,
    *,
    catalogue: dict[str, tuple[OfficialFile, ...]] = SOURCES,
    departements: Sequence[str] | None = None,
    mirror: str | Path | None = None,
    progress: Progress | None = None,
    on_file: Callable[[OfficialFile], None] | None = None,
    extract: bool = True,
    force: bool = False,
    timeout: float = 60,
    retries: int = 2,
    retry_delay: float = 1.0,
) -> list[Path]:
    """Fetch every file of one source of the catalogue into ``cache_dir/<name>/``.

    Parameters
    ----------
    name : str
        A key of ``catalogue`` (e.g. ``qpv2024``, ``sirene_unites_legales``).
    cache_dir : Path
        Root of the download cache (``Settings.cache_dir``).
    catalogue : dict
        Sources to pick from; :data:`essmap.io.sources.SOURCES` by default (tests pass their own).
    departements : sequence of str, optional
        Départements of a per-département source (``ban_adresses``); ignored by the others.
    mirror : str or Path, optional
        Base URL or folder to take the files from (see :func:`fetch_file`).
    progress : callable, optional
        ``progress(bytes_done, total)`` for the file being fetched (restarts at each file).
    on_file : callable, optional
        ``on_file(file)``, called before each file (a concrete one for per-département entries),
        e.g. to start a progress bar.
    extract : bool
        Extract ZIP and 7-Zip archives into a folder named after the archive (see :func:`unpack`).
    force : bool
        Fetch again files already complete in the cache.
    timeout, retries, retry_delay : see :func:`download`.

    Returns
    -------
    list of Path
        Usable files: the files extracted from each archive (when ``extract``), otherwise the
        fetched file itself.
    """
    files = files_of_source(name, departements, catalogue=catalogue)
    retry = fetch_command(name, departements, mirror, catalogue=catalogue)
    paths: list[Path] = []
    for file in files:
        if on_file is not None:
            on_file(file)
        path = fetch_file(name, file, cache_dir, mirror=mirror, progress=progress, force=force, timeout=timeout,
                          retries=retries, retry_delay=retry_delay, retry_command=retry)
        paths.extend(unpack(path, retry_command=retry) if extract else [path])
    return paths
