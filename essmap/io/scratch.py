"""Scratch folders of long jobs (DuckDB's spill, re-encoded copies of input files: gigabytes on a
national stock), removed even after a job killed outright.

A folder's name carries the machine and the process that made it; the next job removes the folders
of processes of this machine that no longer run. A process of another machine (a shared temporary
folder) is never judged: its folders stay.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "essmap-"


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@contextmanager
def scratch_folder(kind: str) -> Iterator[Path]:
    """A new temporary folder for ``kind`` (a word: ``ingest``, ``sirene``), removed on exit; the
    folders left by killed jobs are removed first."""
    remove_orphans()
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind}-{_owner()}-") as folder:
        yield Path(folder)


def remove_orphans(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders in ``root`` (the temporary folder) whose process, on this machine,
    no longer runs; returns them."""
    root = Path(root or tempfile.gettempdir())
    host = socket.gethostname()
    removed = []
    for folder in root.glob(f"{PREFIX}*-{host}-*"):
        owner, _, _random = folder.name.rpartition("-")
        pid = owner.rpartition("-")[2]
        if folder.is_dir() and owner.endswith(f"-{host}-{pid}") and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
