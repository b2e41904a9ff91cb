"""Exceptions. Messages are for users, hence in French, and always say where and how to fix.

Each class subclasses a built-in so callers can catch ``ValueError``/``OSError`` as usual.
"""

from __future__ import annotations


class EssmapError(Exception):
    """Base class: an expected failure with a message a user can act on (in French)."""


class InputFileError(EssmapError, ValueError):
    """A file cannot be read as the format it claims to be.

    The message names the file, and where known the row (line number in the file, header = 1)
    and the column, then suggests a fix.
    """

    def __init__(
        self,
        file: str,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.problem = problem
        self.row = row
        self.column = column
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = [f"fichier « {self.file} »"]
        if self.row is not None:
            where.append(f"ligne {self.row}")
        if self.column is not None:
            where.append(f"colonne « {self.column} »")
        place = ", ".join(where)
        # not str.capitalize(): it would lowercase file and column names ("INSEE_COM")
        text = f"{place[:1].upper()}{place[1:]} : {self.problem}"
        if self.hint:
            text += f" Solution : {self.hint}"
        return text

    def __str__(self) -> str:
        return self.message


class BuildError(EssmapError, RuntimeError):
    """A build or ingest failed; the previous database was left untouched."""


class StoreError(EssmapError, RuntimeError):
    """The DuckDB store is missing, locked or not an essmap database."""


class FetchError(EssmapError, OSError):
    """A download failed or did not match its expected size or checksum."""


class SpatialInputError(EssmapError, ValueError):
    """A layer cannot enter a spatial computation: wrong CRS, or features outside every territory.

    Raised by :mod:`essmap.geo` before any computation, never after a silent guess.
    """


class OutputFileError(EssmapError, OSError):
    """An export cannot be written where asked: the file exists (and replacing it was not asked),
    it is the store itself, it is a folder, or its folder does not exist. Nothing was written."""
