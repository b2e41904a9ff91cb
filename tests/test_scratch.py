"""Scratch folders of long jobs: removed on exit, and those of killed jobs removed by the next one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from essmap.io import scratch


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_folders_of_dead_processes_of_this_machine_go_the_others_stay(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f"essmap-ingest-{host}-{_dead_pid()}-abc123"
    alive = tmp_path / f"essmap-sirene-{host}-{os.getpid()}-def456"
    elsewhere = tmp_path / f"essmap-ingest-autre-machine-{_dead_pid()}-ghi789"
    unrelated = tmp_path / "essmap-notes"
    for folder in (dead, alive, elsewhere, unrelated):
        folder.mkdir()
        (folder / "spill.tmp").write_bytes(b"x" * 1000)
    assert scratch.remove_orphans(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, elsewhere, unrelated))


def test_a_scratch_folder_is_gone_after_use_even_on_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(scratch.tempfile, "tempdir", None)  # read TMPDIR again
    try:
        with scratch.scratch_folder("ingest") as folder:
            assert folder.parent == tmp_path and folder.name.startswith(f"essmap-ingest-{socket.gethostname()}-")
            (folder / "spill.tmp").write_bytes(b"x")
            raise RuntimeError("interrompu")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
