"""One writer at a time: an advisory lock file next to the store.

Every build and ingest copies the store, writes the copy and swaps it in. Two writers at once
would each copy the same store and the second swap would drop the first one's rows, so a
writer takes ``<store>.lock`` (``fcntl.flock``) before the copy and keeps it until after the
swap. A second writer waits, saying which one runs; the lock dies with its process, so a
killed writer never blocks the next one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from essmap.domain.errors import BuildError
from essmap.io.text import printable

#: How long a writer waits for the running one before giving up.
WAIT_S = 3600.0


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


def _describe(holder: dict[str, object]) -> str:
    """The running writer as users read it: its command, process and start time (escaped)."""
    if not holder:
        return "une autre mise à jour"
    return (f"« {printable(holder.get('command', '?'), limit=200)} » (processus "
            f"{printable(holder.get('pid', '?'), limit=20)}, depuis {printable(holder.get('since', '?'), limit=40)})")


def _read_holder(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def filesystem_message(exc: BaseException, folder: Path) -> str:
    """A French explanation of a file-system failure, with the fix."""
    code = getattr(exc, "errno", None)
    where = printable(folder)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"plus d'espace disque dans « {where} » (la mise à jour écrit une copie complète de la base "
                "avant de la remplacer). Solution : libérez de la place, puis relancez.")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"écriture impossible dans « {where} » (dossier en lecture seule ou droits insuffisants). "
                "Solution : choisissez un dossier accessible en écriture avec --db.")
    detail = f"{type(exc).__name__} : {getattr(exc, 'strerror', None) or exc}"
    return f"erreur du système de fichiers dans « {where} » (détail technique : {printable(detail)})."


def _command() -> str:
    """This process's command line, paths shortened to their names (``essmap ingest qpv FILE``)."""
    return " ".join(Path(a).name if i == 0 or os.sep in a else a for i, a in enumerate(sys.argv))


@contextmanager
def writer_lock(store: Path, *, wait_s: float = WAIT_S,
                on_wait: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the store's writer lock; wait up to ``wait_s`` for a running writer (French notice)."""
    path = lock_path(Path(store))
    try:
        handle = open(path, "a+", encoding="utf-8")  # held for the whole block
    except OSError as exc:
        raise BuildError(f"Mise à jour de la base impossible : {filesystem_message(exc, path.parent)}") from exc
    try:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _describe(_read_holder(path))
                if time.monotonic() >= deadline:
                    raise BuildError(
                        f"La base « {Path(store).name} » est en cours de mise à jour par {holder}. "
                        "Solution : attendez la fin de cette mise à jour, puis relancez."
                    ) from None
                if not told:
                    on_wait(f"Attente : la base « {Path(store).name} » est en cours de mise à jour par "
                            f"{holder} ; cette commande reprendra ensuite.")
                    told = True
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(), "command": _command()[:1000],
            "since": datetime.now().strftime("%d/%m/%Y %H:%M:%S"),
        }))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
