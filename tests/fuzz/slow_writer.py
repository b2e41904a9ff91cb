"""A real ingest that pauses inside its write, for the concurrency and kill tests.

Usage: ``python slow_writer.py DB SOURCE FILE GO_FILE``. The ingest (``ingest_files``, the
library behind ``essmap ingest``) reads FILE, takes the writer lock, copies the store and writes
its rows into the copy; when it reaches the joins it prints ``WRITING`` and waits until GO_FILE
exists (at most two minutes), then finishes and prints ``DONE``. Between the two, the test starts
a second writer or kills this one with SIGKILL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from essmap.domain.config import load_settings
from essmap.store.ingest import ingest_files


def main(db: str, source: str, file: str, go_file: str) -> None:
    go = Path(go_file)

    def progress(label: str, _fraction: float) -> None:
        if label.startswith("Jointures"):
            print("WRITING", flush=True)
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    ingest_files(Path(db), source, [Path(file)], settings=load_settings(), progress=progress)
    print("DONE", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
