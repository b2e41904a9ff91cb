"""What every damaged input must end in: all rows accounted for, or a French refusal."""

from __future__ import annotations

import re
from pathlib import Path

from essmap.domain.errors import EssmapError
from essmap.io.readers.common import SourceRead

DATA = Path(__file__).resolve().parents[1] / "data"

#: Words of English error messages (pandas, DuckDB, GDAL, Python) that must not reach a user,
#: except inside the "(détail technique : …)" a French message may end with.
_ENGLISH = re.compile(r"\b(Error|error|Traceback|Exception|Expected|cannot|Cannot|No such|Invalid|invalid "
                      r"value|not found|unexpected)\b")
_FRENCH = ("fichier", "Fichier", "ligne", "colonne", "Département", "Solution", "base")


def assert_french_refusal(exc: BaseException) -> str:
    """A refusal users can act on: an :class:`EssmapError` whose message is French."""
    assert isinstance(exc, EssmapError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message.strip()
    outside_detail = re.sub(r"détail technique : .*?\)(?=[.;]|\s|$)", "", message)
    assert not _ENGLISH.search(outside_detail), message
    assert any(word in message for word in _FRENCH), message
    return message


def assert_accounted(read: SourceRead) -> None:
    """Every row read is either loaded or quarantined, once."""
    meta = read.meta
    assert meta.rows_read == meta.rows_kept + meta.rows_quarantined, meta
    assert len(read.frame) == meta.rows_kept
    rows = read.quarantine[["file_name", "row_number"]].drop_duplicates()
    assert len(rows) == meta.rows_quarantined, read.quarantine


def outcome(call) -> SourceRead | None:
    """Run a reader: its result with every row accounted for, or None after a French refusal."""
    try:
        read = call()
    except EssmapError as exc:
        assert_french_refusal(exc)
        return None
    assert_accounted(read)
    return read
