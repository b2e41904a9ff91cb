"""The input files: cheap checks before any scan, the streaming hash/encoding pass, the quarantines."""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from essmap.domain.errors import InputFileError
from essmap.io.readers.common import (
    Quarantine,
    check_is_file,
    check_required_columns,
    decode_bytes,
    empty_quarantine,
    sha256_of,
    sniff_delimiter,
)
from essmap.io.readers.sirene.layouts import GEOLOCALISATION_PROJECTED, GEOLOCALISATION_WGS84, SOURCE
from essmap.io.readers.sirene.sql import first_line, sql_str
from essmap.io.text import printable

#: Bytes read per block when hashing, checking or converting a file.
_CHUNK_BYTES = 4 << 20
#: Bytes read to check the header, the delimiter and the encoding (public: tests shrink it).
SAMPLE_BYTES = 4 << 20

#: Data records of the sample checked against the header (column count, value shapes).
SAMPLED_RECORDS = 2000
#: Well-formed sampled records needed before value shapes are judged.
MIN_RECORDS_FOR_SHAPES = 3

#: Hint of every refusal of a damaged stock file.
REDOWNLOAD = ("retéléchargez le fichier publié par l'INSEE (`essmap fetch NOM --force`, NOM étant "
              "sirene_unites_legales, sirene_etablissements ou sirene_geolocalisation) et ne le modifiez pas.")

#: Name of the manifest the synthetic generator writes next to its files.
SYNTHETIC_MANIFEST = "essmap-synthetic.json"


@dataclass
class InputFile:
    """One checked input file and how DuckDB must read it."""

    path: Path
    parquet: bool
    columns: list[str]
    types: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    encoding: str = "utf-8"  # of the file; "cp1252" files are read from a UTF-8 copy
    read_path: Path | None = None  # that copy
    sha256: str = ""
    #: {column: (regular expression, French description)} that most values must match
    shapes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def compressed(self) -> bool:
        return self.path.suffix.lower() == ".gz"

    def open_binary(self):
        return gzip.open(self.path, "rb") if self.compressed else open(self.path, "rb")


def as_paths(value: Path | str | Sequence[Path | str] | None) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".parq")


def inspect_file(path: Path, required: Sequence[str], expected_delimiter: str, warnings: list[str], *,
                 shapes: dict[str, tuple[str, str]] | None = None) -> InputFile:
    """Check a file cheaply (header, encoding, delimiter, emptiness) before any scan.

    For CSV the first records are also checked against the header: their number of values and,
    per ``shapes`` column, the form of most values (a header over misaligned data is refused).
    """
    name = path.name
    check_is_file(path)
    if path.suffix.lower() == ".zip":
        raise InputFileError(
            name, "archive ZIP non décompressée.",
            hint="décompressez l'archive publiée par l'INSEE et indiquez le fichier CSV ou Parquet qu'elle contient.",
        )
    if path.stat().st_size == 0:
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    if _is_parquet(path):
        return _inspect_parquet(path, required)
    return _inspect_csv(path, required, expected_delimiter, warnings, shapes or {})


def inspect_geolocalisation(path: Path, warnings: list[str], *,
                            shapes: dict[str, tuple[str, str]] | None = None) -> InputFile:
    """Check a geolocation file: its SIRET, and either its WGS84 pair or its projected x, y, epsg."""
    inp = inspect_file(path, ("siret",), ";", warnings, shapes=shapes)
    has_wgs84 = all(c in inp.columns for c in GEOLOCALISATION_WGS84)
    has_projected = all(c in inp.columns for c in GEOLOCALISATION_PROJECTED)
    if not (has_wgs84 or has_projected):
        check_required_columns(inp.columns, GEOLOCALISATION_WGS84 + GEOLOCALISATION_PROJECTED, inp.name)
    return inp


def _inspect_parquet(path: Path, required: Sequence[str]) -> InputFile:
    name = path.name
    con = duckdb.connect()
    try:
        described = con.sql(f"DESCRIBE SELECT * FROM read_parquet({sql_str(path)})").fetchall()
        count = con.sql(f"SELECT count(*) FROM read_parquet({sql_str(path)})").fetchall()[0][0]
    except duckdb.Error as exc:
        raise InputFileError(
            name, "ce n'est pas un fichier Parquet lisible : incomplet ou endommagé "
            f"(détail technique : {printable(first_line(exc), limit=300)}).",
            hint="vérifiez le téléchargement, ou fournissez la version CSV publiée par l'INSEE.",
        ) from exc
    finally:
        con.close()
    columns = [str(row[0]) for row in described]
    check_required_columns(columns, required, name)
    if count == 0:
        raise InputFileError(
            name, "le fichier ne contient aucune ligne de données.",
            hint="vérifiez le filtre ou l'export qui a produit ce fichier.",
        )
    return InputFile(path, True, columns, types={str(r[0]): str(r[1]) for r in described})


def _read_sample(path: Path) -> tuple[bytes, bool]:
    """First bytes of the file (decompressed for .gz) and whether they are the whole file."""
    with (gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")) as fh:
        sample = fh.read(SAMPLE_BYTES + 1)
    complete = len(sample) <= SAMPLE_BYTES
    if not complete:
        # Cut at a line end so that a multi-byte character is never split.
        sample = sample[: sample.rfind(b"\n") + 1] or sample[:SAMPLE_BYTES]
    return sample, complete


def _inspect_csv(path: Path, required: Sequence[str], expected_delimiter: str, warnings: list[str],
                 shapes: dict[str, tuple[str, str]]) -> InputFile:
    name = path.name
    try:
        sample, complete = _read_sample(path)
    except (OSError, EOFError, zlib.error) as exc:
        raise _damaged_error(path, exc) from exc
    if not sample.strip():
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    decoded = decode_bytes(sample, name)
    if decoded.encoding not in ("utf-8", "cp1252"):
        raise InputFileError(
            name, f"encodage {decoded.encoding.upper()} : les stocks SIRENE sont lus en UTF-8 (ou Windows-1252).",
            hint="retéléchargez le fichier publié par l'INSEE, ou enregistrez-le en UTF-8.",
        )
    warnings.extend(decoded.warnings)
    encoding = decoded.encoding
    text = decoded.text.lstrip("\ufeff")
    if not text.strip():
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    lines = text.splitlines()
    header = lines[0]
    delimiter = sniff_delimiter(header)
    if delimiter != expected_delimiter:
        warnings.append(
            f"Fichier « {name} » : séparateur « {delimiter} » détecté au lieu de "
            f"« {expected_delimiter} » (format INSEE) ; le fichier a été lu avec « {delimiter} »."
        )
    columns = [c.strip().strip("\ufeff") for c in next(csv.reader([header], delimiter=delimiter))]
    check_required_columns(columns, required, name)
    if "" in columns or len(set(columns)) < len(columns):
        position = columns.index("") + 1 if "" in columns else next(
            i + 1 for i, c in enumerate(columns) if columns.index(c) != i)
        raise InputFileError(
            name, f"l'en-tête est abîmé : sa colonne n° {position} est sans nom ou en double.", row=1,
            hint=REDOWNLOAD,
        )
    if complete and not any(line.strip() for line in lines[1:]):
        raise InputFileError(
            name, "le fichier ne contient que la ligne d'en-tête, aucune ligne de données.",
            row=2, hint="vérifiez le filtre ou l'export qui a produit ce fichier.",
        )
    inp = InputFile(path, False, columns, delimiter=delimiter, encoding=encoding,
                    shapes={c: shape for c, shape in shapes.items() if c in columns})
    if complete and not text.endswith(("\n", "\r")):
        last = text.rsplit("\n", 1)[-1]
        check_last_record(inp, last, text.count("\n") + 1)
    check_sample_records(inp, text)
    return inp


def _damaged_error(path: Path, exc: BaseException) -> InputFileError:
    if path.suffix.lower() == ".gz":
        problem = "archive gzip tronquée ou endommagée : sa décompression s'arrête avant la fin"
    else:
        problem = "lecture interrompue : le fichier est illisible ou endommagé"
    detail = printable(str(exc) or type(exc).__name__, limit=200)
    return InputFileError(path.name, f"{problem} (détail technique : {detail}).", hint=REDOWNLOAD)


def check_sample_records(inp: InputFile, text: str) -> None:
    """Refuse a file whose first records do not fit its header.

    Two signs of a header over misaligned data (a file edited, or put together from two files):
    most records have another number of values than the header has columns; or most values of
    an identifier column do not have its form (``siren``: 9 digits...). A few bad records are
    left to the scan, which quarantines them.
    """
    reader = csv.reader(io.StringIO(text), delimiter=inp.delimiter, quotechar='"')
    width = len(inp.columns)
    index = {c: inp.columns.index(c) for c in inp.shapes}
    wrong: list[tuple[int, int]] = []
    values: dict[str, list[tuple[int, str]]] = {c: [] for c in inp.shapes}
    records = 0
    try:
        next(reader)  # header
        for record in reader:
            if not any(field.strip() for field in record):
                continue
            records += 1
            if len(record) == width + 1 and record[-1] == "":
                record = record[:-1]  # a trailing delimiter, as DuckDB reads it
            if len(record) != width:
                wrong.append((reader.line_num, len(record)))
            else:
                for column, i in index.items():
                    values[column].append((reader.line_num, record[i]))
            if records >= SAMPLED_RECORDS:
                break
    except csv.Error:
        return  # quoting problems: the scan quarantines those lines
    if records and 2 * len(wrong) > records:
        line, count = wrong[0]
        raise InputFileError(
            inp.name, f"l'en-tête et les données sont décalés : {len(wrong)} des {records} premières lignes de "
            f"données n'ont pas le nombre de valeurs de l'en-tête (ligne {line} : {count} valeurs pour {width} "
            "colonnes). Le fichier a été modifié, ou son en-tête vient d'un autre fichier.",
            row=line, hint=REDOWNLOAD,
        )
    for column, (pattern, expected) in inp.shapes.items():
        found = values[column]
        if len(found) < MIN_RECORDS_FOR_SHAPES:
            continue
        bad = [(line, value) for line, value in found if not re.fullmatch(pattern, value.strip())]
        if 2 * len(bad) > len(found):
            line, value = bad[0]
            raise InputFileError(
                inp.name, f"les valeurs ne correspondent pas à l'en-tête : la colonne attend {expected}, mais "
                f"{len(bad)} des {len(found)} premières lignes contiennent autre chose (ex. « "
                f"{printable(value, limit=40)} »). L'en-tête et les données sont décalés, ou l'en-tête vient d'un "
                "autre fichier.", row=line, column=column, hint=REDOWNLOAD,
            )


def check_last_record(inp: InputFile, last: str, line: int) -> None:
    """Refuse a file whose last line (without final line break) is cut in the middle of a record.

    A download or a copy stopped half-way ends in the middle of a line: reading it would load
    part of the stock as if it were all of it, and replace the départements' establishments with
    that part.
    """
    if not last.strip():
        return
    try:
        fields = next(csv.reader([last], delimiter=inp.delimiter, quotechar='"', strict=True))
        unclosed = False
    except (csv.Error, StopIteration):
        fields, unclosed = [], True
    if unclosed or len(fields) < len(inp.columns):
        count = "un guillemet ouvert" if unclosed else f"{len(fields)} valeurs sur {len(inp.columns)}"
        raise InputFileError(
            inp.name, f"le fichier est tronqué : sa dernière ligne s'arrête au milieu d'un enregistrement ({count}, "
            "sans saut de ligne final). Un téléchargement ou une copie interrompus donnent ce fichier "
            "incomplet ; le charger remplacerait les établissements par une partie seulement du stock.",
            row=line, hint=REDOWNLOAD,
        )


def detect_synthetic(etablissements: Sequence[Path]) -> bool:
    """True when the generator's manifest, next to an establishment file, lists that file."""
    for path in etablissements:
        manifest = path.parent / SYNTHETIC_MANIFEST
        if not manifest.is_file():
            continue
        try:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
        except (ValueError, OSError, AttributeError):
            continue
        if isinstance(files, list) and path.name in {Path(str(f)).name for f in files}:
            return True
    return False


def prepare_file(inp: InputFile, spill: Path, warnings: list[str]) -> None:
    """Streaming pass over a file: its SHA-256 and, for CSV, a check that all of it is UTF-8.

    The header check only sampled the start of the file; a Windows-1252 byte further down would
    make DuckDB fail, so the whole file is checked here, in the same pass as the hash (memory
    stays at one block). A Windows-1252 file is then copied to UTF-8 in the temporary folder,
    and DuckDB reads the copy. The pass also finds the last line: a file cut in the middle of a
    record is refused (:func:`check_last_record`), as is a truncated gzip archive.
    """
    try:
        _prepare(inp, spill, warnings)
    except (OSError, EOFError, zlib.error) as exc:
        raise _damaged_error(inp.path, exc) from exc


def _prepare(inp: InputFile, spill: Path, warnings: list[str]) -> None:
    if inp.parquet or inp.compressed or inp.encoding != "utf-8":
        inp.sha256 = sha256_of(inp.path, chunk=_CHUNK_BYTES)
    if inp.parquet:
        return
    tail = _Tail()
    if inp.encoding == "utf-8":
        digest = None if inp.compressed else hashlib.sha256()
        problem = _first_non_utf8(inp, digest, tail)
        if digest is not None:
            inp.sha256 = digest.hexdigest()
        if problem is not None:
            line, column = problem
            where = f"ligne {line}" + (f", colonne « {column} »" if column else "")
            warnings.append(
                f"Fichier « {inp.name} » : encodage non UTF-8 détecté ({where}) ; le fichier a été lu "
                "en Windows-1252 (Latin-1). Vérifiez les accents ou convertissez le fichier en UTF-8."
            )
            inp.encoding = "cp1252"
    if inp.encoding != "utf-8":
        tail = _Tail()
        inp.read_path = spill / f"{len(list(spill.iterdir()))}_{inp.path.stem}.utf8.csv"
        decoder = codecs.getincrementaldecoder(inp.encoding)(errors="replace")
        with inp.open_binary() as src, open(inp.read_path, "w", encoding="utf-8", newline="") as dst:
            while block := src.read(_CHUNK_BYTES):
                tail.feed(block)
                dst.write(decoder.decode(block))
            dst.write(decoder.decode(b"", final=True))
    if tail.complete:
        check_last_record(inp, tail.last.decode(inp.encoding, errors="replace"), tail.lines + 1)


class _Tail:
    """Follows a stream block by block: lines seen and the bytes after the last line break."""

    LIMIT = 1 << 20  # a longer last line is left to the scan (DuckDB refuses lines over 2 MB)

    def __init__(self) -> None:
        self.lines = 0
        self.last = b""
        self.complete = True  # whether ``last`` holds the whole last line

    def feed(self, block: bytes) -> None:
        self.lines += block.count(b"\n")
        cut = block.rfind(b"\n")
        if cut >= 0:
            self.last, self.complete = block[cut + 1 :][-self.LIMIT :], len(block) - cut - 1 <= self.LIMIT
        else:
            self.complete = self.complete and len(self.last) + len(block) <= self.LIMIT
            self.last = (self.last + block)[-self.LIMIT :]


def _first_non_utf8(inp: InputFile, digest, tail: _Tail | None = None) -> tuple[int, str | None] | None:
    """Line (header = 1) and column of the first byte that is not UTF-8, or None.

    When ``digest`` is given it is updated with every byte, so the file is read to the end;
    ``tail`` is fed every block read.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    problem: tuple[int, str | None] | None = None
    lines_before = 0
    line_start = b""  # bytes of the current line read so far
    with inp.open_binary() as fh:
        while block := fh.read(_CHUNK_BYTES):
            if digest is not None:
                digest.update(block)
            if tail is not None:
                tail.feed(block)
            if problem is not None:
                continue
            pending = len(decoder.getstate()[0])  # bytes of a character begun in the previous block
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                data = line_start + block[: max(exc.start - pending, 0)]
                problem = _where(inp, lines_before + data.count(b"\n") + 1, data[data.rfind(b"\n") + 1 :])
                if digest is None:
                    break
                continue
            lines_before += block.count(b"\n")
            cut = block.rfind(b"\n")
            line_start = block[cut + 1 :] if cut >= 0 else line_start + block
    if problem is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:  # file ends in the middle of a character
            problem = _where(inp, lines_before + 1, line_start)
    return problem


def _where(inp: InputFile, line: int, line_prefix: bytes) -> tuple[int, str | None]:
    """(line, column name) of a position, from the bytes of its line before it (for messages)."""
    index = line_prefix.decode("cp1252", errors="replace").count(inp.delimiter)
    return line, inp.columns[index] if index < len(inp.columns) else None


def combined_sha256(inputs: Sequence[InputFile]) -> str:
    """SHA-256 of the file, or for several files the SHA-256 of their ordered digests."""
    if len(inputs) == 1:
        return inputs[0].sha256
    return hashlib.sha256("\n".join(i.sha256 for i in inputs).encode("ascii")).hexdigest()


class Quarantines:
    """One :class:`Quarantine` per file, since a read spans several files."""

    def __init__(self) -> None:
        self._by_file: dict[str, Quarantine] = {}

    def of(self, file_name: str) -> Quarantine:
        if file_name not in self._by_file:
            self._by_file[file_name] = Quarantine(SOURCE, file_name)
        return self._by_file[file_name]

    def frame(self) -> pd.DataFrame:
        parts = [q.frame() for q in self._by_file.values() if len(q)]
        if not parts:
            return empty_quarantine()
        return pd.concat(parts, ignore_index=True)

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_file.values())
