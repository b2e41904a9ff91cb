"""Tools every reader shares: decoding, CSV dialect, required columns, quarantine, results.

Readers raise :class:`~essmap.domain.errors.InputFileError` for problems that make a whole file
unreadable (empty, missing column, not the claimed format) and send individual bad rows to the
quarantine with a reason, so that nothing is lost silently.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from essmap.domain import schema
from essmap.domain.errors import EssmapError, InputFileError
from essmap.domain.schema import WGS84
from essmap.domain.territories import normalise_departement, territory_of_departement
from essmap.io.text import printable

# geopandas and shapely are imported where geometry is built: table queries (the CLI's) start without them
if TYPE_CHECKING:
    import geopandas as gpd

_DELIMITERS = (",", ";", "\t", "|")


# --- Results -----------------------------------------------------------------------------------


@dataclass
class SourceMeta:
    """What the ``sources`` table records about one file read."""

    source: str
    file_name: str
    sha256: str
    generation: str = ""
    rows_read: int = 0
    rows_kept: int = 0
    rows_quarantined: int = 0
    is_synthetic: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class SourceRead:
    """A reader's result: the canonical frame, its quarantined rows and its provenance."""

    frame: gpd.GeoDataFrame
    quarantine: pd.DataFrame
    meta: SourceMeta


class Quarantine:
    """Collects rejected rows of one file, each with the column, value and reason (in French)."""

    def __init__(self, source: str, file_name: str) -> None:
        self.source = source
        self.file_name = file_name
        self._parts: list[pd.DataFrame] = []

    def add(
        self,
        rows: pd.Series | np.ndarray | list[int],
        column: str,
        values,
        reason: str | Sequence[str] | np.ndarray | pd.Series,
    ) -> None:
        """Record rejected rows (file line numbers) with the reason shown to users.

        ``values`` is one value per row (or a scalar); ``reason`` one text, or one per row.
        """
        rows = np.asarray(rows, dtype="int64")
        if len(rows) == 0:
            return
        vals = np.broadcast_to(np.asarray(values, dtype=object), rows.shape)
        self._parts.append(
            pd.DataFrame(
                {
                    "source": self.source,
                    "file_name": self.file_name,
                    "row_number": rows,
                    "column_name": column,
                    "value": ["" if v is None or v is pd.NA else str(v)[:500] for v in vals],
                    "reason": reason,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        """All rejected rows, ordered by row number (one line per row and reason)."""
        if not self._parts:
            return empty_quarantine()
        out = pd.concat(self._parts, ignore_index=True)
        return out.sort_values(["row_number", "column_name"], kind="stable").reset_index(drop=True)

    def __len__(self) -> int:
        return int(sum(len(p) for p in self._parts))

    def row_numbers(self) -> set[int]:
        return {int(r) for p in self._parts for r in p["row_number"]}


def year_in_file_name(name: str) -> str:
    """The publication year a file name carries ("ADMIN-EXPRESS_..._2024-02-22" -> "2024"), or "".

    Used as the millésime of a source when the user does not give one.
    """
    match = re.search(r"(?<!\d)((?:19|20)\d{2})(?!\d)", name)
    return match.group(1) if match else ""


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in schema.QUARANTINE})


# --- Files and text ----------------------------------------------------------------------------


def sha256_of(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (SIRENE stocks are several GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class DecodedText:
    text: str
    encoding: str
    warnings: list[str]


def decode_bytes(raw: bytes, file_name: str, *, encoding: str | None = None) -> DecodedText:
    """Decode a text file: UTF-8 (with or without BOM) by default, Windows-1252 as fallback.

    French open data is often published in Latin-1/Windows-1252: instead of failing, the file is
    read as Windows-1252 and a warning names the first line and column with a non-UTF-8 byte,
    so the user can check the accents.
    """
    warnings: list[str] = []
    if encoding:
        try:
            return DecodedText(raw.decode(encoding), encoding, warnings)
        except (UnicodeDecodeError, LookupError) as exc:
            raise InputFileError(
                file_name, f"le fichier ne peut pas être décodé avec l'encodage « {printable(encoding, limit=40)} » "
                f"({_decode_problem(raw, exc)}).",
                hint="vérifiez l'encodage du fichier (UTF-8 ou Windows-1252/Latin-1).",
            ) from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputFileError(
                file_name, "le fichier commence comme un texte UTF-16 mais ne peut pas être décodé "
                f"(octet {exc.start}).", hint="enregistrez-le en UTF-8 (Excel : « CSV UTF-8 »).",
            ) from exc
        warnings.append(f"Fichier « {file_name} » : encodage UTF-16 détecté ; le fichier a été lu en UTF-16.")
        return DecodedText(text, "utf-16", warnings)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\x00" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise InputFileError(
            file_name, "le fichier contient des octets nuls : ce n'est pas un fichier texte (fichier binaire, "
            "ou texte UTF-16 sans marque d'ordre des octets).", row=line,
            hint="fournissez le fichier CSV tel que publié, ou enregistrez-le en UTF-8 (Excel : « CSV UTF-8 »).",
        )
    try:
        return DecodedText(raw.decode("utf-8"), "utf-8", warnings)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        text = raw.decode("cp1252", errors="replace")
        header = text.split("\n", 1)[0]
        column = _column_at(text, raw, line_start, exc.start, header)
        where = f"ligne {line}" + (f", colonne « {column} »" if column else "")
        warnings.append(
            f"Fichier « {file_name} » : encodage non UTF-8 détecté ({where}, octet "
            f"0x{raw[exc.start]:02X}) ; le fichier a été lu en Windows-1252 (Latin-1). "
            "Vérifiez les accents ou convertissez le fichier en UTF-8."
        )
        return DecodedText(text, "cp1252", warnings)


def _decode_problem(raw: bytes, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        line = raw.count(b"\n", 0, exc.start) + 1
        return f"octet 0x{raw[exc.start]:02X} illisible, ligne {line}"
    return "encodage inconnu"


def _column_at(text: str, raw: bytes, line_start: int, offset: int, header: str) -> str | None:
    """Name of the CSV column holding byte ``offset`` (best effort, for messages)."""
    prefix = raw[line_start:offset].decode("cp1252", errors="replace")
    delimiter = sniff_delimiter(header)
    names = header.strip("\r").split(delimiter)
    index = prefix.count(delimiter)
    return names[index].strip('"') if index < len(names) else None


def sniff_delimiter(header: str) -> str:
    """The delimiter that splits the header line into the most fields."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def csv_parser_problem(exc: Exception) -> tuple[str, int | None]:
    """A pandas CSV parser error in French, and the line it names (header = 1), if any."""
    text = str(exc)
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if fields:
        expected, line, seen = fields.groups()
        return f"{seen} champs au lieu de {expected} (ceux de l'en-tête)", int(line)
    quote = re.search(r"EOF inside string starting (?:at|on) (?:row|line) (\d+)", text)
    if quote:
        # pandas counts rows from 0 (the header) here: the line in the file is one more
        return "guillemet ouvert jamais refermé jusqu'à la fin du fichier", int(quote.group(1)) + 1
    line = re.search(r"line (\d+)", text)
    detail = printable(text.strip().splitlines()[0] if text.strip() else type(exc).__name__, limit=200)
    return f"lecture impossible (détail technique : {detail})", int(line.group(1)) if line else None


def check_is_file(path: Path) -> None:
    """Refuse a missing path or a folder with a French message (a folder names its likely files)."""
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))[:8]
        listing = f" ; il contient par exemple : {', '.join(printable(f) for f in found)}" if found else " (vide)"
        raise InputFileError(
            path.name, f"c'est un dossier, pas un fichier{listing}.",
            hint="indiquez le fichier lui-même (par exemple DOSSIER/COMMUNE.shp ou DOSSIER/liste.csv).",
        )
    if not path.exists():
        raise InputFileError(path.name, f"fichier introuvable ({printable(path)}).",
                             hint="vérifiez le chemin ou téléchargez-le avec `essmap fetch`.")


def unreadable_file_error(path: Path, exc: OSError) -> InputFileError:
    """A file that exists but cannot be opened (rights, I/O error), in French."""
    if isinstance(exc, PermissionError):
        problem = "lecture refusée (droits insuffisants sur le fichier)."
    else:
        problem = f"lecture impossible (détail technique : {printable(exc.strerror or exc, limit=200)})."
    return InputFileError(path.name, problem, hint="vérifiez les droits du fichier, ou copiez-le ailleurs.")


def clean_text(values: pd.Series) -> pd.Series:
    """Normalise free text from data: HTML entities decoded (``&amp;`` -> ``&``), spaces folded.

    Markup such as ``<script>`` is kept as literal text: escaping happens where text is shown.
    """
    text = values.astype("string")
    # unescape only the values holding "&" (fast on millions of SIRENE rows)
    entity = text.str.contains("&", regex=False).fillna(False).to_numpy(dtype=bool)
    if entity.any():
        text = text.copy()
        text[entity] = text[entity].map(html.unescape).astype("string")
    text = text.str.replace(r"\s+", " ", regex=True).str.strip()
    return text.where(text != "", pd.NA).astype("string")


def read_csv_text(
    path: Path,
    *,
    required: list[str] | tuple[str, ...],
    expected_delimiter: str = ",",
    encoding: str | None = None,
    rename: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Read a small or medium CSV as strings, with clear errors and warnings.

    Returns the frame (all columns as ``string``, plus ``_row``: the line number in the file,
    header = 1) and warnings. ``rename`` maps file columns to the names the reader expects (the
    column-mapping option). Raises :class:`InputFileError` when the file is empty, has a header
    only, or lacks a required column.
    """
    name = path.name
    check_is_file(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise unreadable_file_error(path, exc) from exc
    if not raw.strip():
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    decoded = decode_bytes(raw, name, encoding=encoding)
    warnings = list(decoded.warnings)
    text = decoded.text
    if not text.strip("\ufeff \t\r\n"):
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    header = text.split("\n", 1)[0].strip("\r")
    delimiter = sniff_delimiter(header)
    if delimiter != expected_delimiter:
        warnings.append(
            f"Fichier « {name} » : séparateur « {delimiter} » détecté au lieu de "
            f"« {expected_delimiter} » ; le fichier a été lu avec « {delimiter} »."
        )
    _check_no_extra_values(text, delimiter, name)
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
            na_values=[], quoting=csv.QUOTE_MINIMAL, skip_blank_lines=True, index_col=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise InputFileError(name, "le fichier ne contient aucune colonne lisible.",
                             hint="vérifiez qu'il s'agit bien d'un fichier CSV avec sa ligne d'en-tête.") from exc
    except pd.errors.ParserError as exc:
        problem, row = csv_parser_problem(exc)
        raise InputFileError(
            name, f"le fichier n'est pas un CSV valide : {problem}.", row=row,
            hint="vérifiez les guillemets et le nombre de colonnes de cette ligne (un fichier tronqué finit "
            "souvent par un guillemet ouvert).",
        ) from exc
    frame.columns = [str(c).strip().strip("\ufeff") for c in frame.columns]
    if rename:
        frame = frame.rename(columns={src: dst for src, dst in rename.items() if src in frame.columns})
    check_required_columns(frame.columns, required, name)
    if frame.empty:
        raise InputFileError(
            name, "le fichier ne contient que la ligne d'en-tête, aucune ligne de données.",
            row=2, hint="vérifiez le filtre ou l'export qui a produit ce fichier.",
        )
    frame = frame.astype("string")
    frame["_row"] = np.arange(2, len(frame) + 2, dtype="int64")
    return frame, warnings


def _check_no_extra_values(text: str, delimiter: str, name: str) -> None:
    """Refuse a record with more values than the header has columns (empty trailing ones aside).

    pandas would silently take the extra values as row labels when every record has them
    (shifting every column), or drop them: either way the values would land in wrong columns.
    """
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        width = len(next(reader))
        for record in reader:
            if len(record) > width and any(value.strip() for value in record[width:]):
                raise InputFileError(
                    name, f"le fichier n'est pas un CSV valide : {len(record)} champs au lieu de {width} (ceux de "
                    "l'en-tête) ; les valeurs seraient lues dans d'autres colonnes.", row=reader.line_num,
                    hint="vérifiez le séparateur et les guillemets de cette ligne, ou l'en-tête du fichier.",
                )
    except (csv.Error, StopIteration):
        return  # pandas reports what the csv module cannot parse


def check_required_columns(columns, required, file_name: str) -> None:
    """Raise naming the first missing column, the closest existing one and the expected list."""
    present = [str(c) for c in columns]
    missing = [c for c in required if c not in present]
    if missing:
        raise missing_columns_error(present, missing, file_name)


def missing_columns_error(present: Sequence[str], missing: Sequence[str], file_name: str) -> InputFileError:
    """The error for missing columns: the first one, the closest existing one and the expected list."""
    column = printable(missing[0], limit=80)
    close = [printable(c, limit=80) for c in difflib.get_close_matches(missing[0], present, n=1, cutoff=0.6)]
    shown = [printable(c, limit=80) for c in present[:30]]
    if close:
        hint = (
            f"la colonne « {close[0]} » est peut-être celle-ci : renommez-la ou utilisez l'option de "
            "correspondance des colonnes."
        )
    else:
        hint = "ajoutez la colonne, ou indiquez laquelle l'utiliser avec l'option de correspondance des colonnes."
    return InputFileError(
        file_name,
        f"colonne obligatoire absente (manquantes : {', '.join(printable(m, limit=80) for m in missing)} ; "
        f"présentes : {', '.join(shown) or 'aucune'}{'…' if len(present) > 30 else ''}).",
        row=1, column=column, hint=hint,
    )


# --- Départements ------------------------------------------------------------------------------


class UnknownDepartementError(EssmapError, ValueError):
    """A département code given by the user is not one essmap knows (French message)."""


def checked_departements(codes: Sequence[str]) -> list[str]:
    """Canonical département codes ("6" -> "06", "2a" -> "2A"), each checked against the known
    territories; an unknown or absurd code is refused in French (shortened and escaped)."""
    checked: list[str] = []
    for code in codes:
        norm = normalise_departement(code)
        try:
            territory_of_departement(norm)
        except KeyError:
            raise UnknownDepartementError(
                f"Département inconnu : « {printable(str(code).strip(), limit=12)} ». Solution : indiquez des codes "
                "INSEE de département séparés par des virgules, par exemple 13,84,2A,974."
            ) from None
        if norm not in checked:
            checked.append(norm)
    return checked


# --- Identifiers and coordinates ---------------------------------------------------------------


def luhn_valid(codes: pd.Series) -> pd.Series:
    """Luhn checksum of digit strings (SIREN/SIRET), vectorised. Non-digits are invalid."""
    codes = codes.fillna("").astype(str)
    ok_digits = codes.str.fullmatch(r"[0-9]+").fillna(False).to_numpy(dtype=bool)
    out = np.zeros(len(codes), dtype=bool)
    if not ok_digits.any():
        return pd.Series(out, index=codes.index)
    valid = codes[ok_digits]
    width = valid.str.len().max()
    # one byte per ASCII digit: vectorised, SIRENE checks run on millions of rows
    packed = "".join(valid.str.zfill(width)).encode("ascii")
    digits = np.frombuffer(packed, dtype=np.uint8).reshape(-1, width).astype(np.int64) - ord("0")
    # double every second digit from the right
    weights = np.tile([2, 1], width)[-width:] if width % 2 == 0 else np.tile([1, 2], width)[:width]
    doubled = digits * weights
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    out[ok_digits] = doubled.sum(axis=1) % 10 == 0
    return pd.Series(out, index=codes.index)


#: La Poste's establishments share SIREN 356000000: their SIRET checks by digit sum modulo 5.
LA_POSTE_SIREN = "356000000"


def siret_problems(sirets: pd.Series) -> pd.Series:
    """Reason (in French) why each SIRET is invalid, or <NA> when valid."""
    s = sirets.fillna("").astype(str).str.strip()
    reason = pd.Series(pd.NA, index=s.index, dtype="string")
    wrong_shape = ~s.str.fullmatch(r"\d{14}").fillna(False)
    lengths = s[wrong_shape].str.len().astype(str)
    reason[wrong_shape] = "SIRET invalide : 14 chiffres attendus (" + lengths + " caractères)"
    shaped = ~wrong_shape
    la_poste = shaped & s.str.startswith(LA_POSTE_SIREN)
    luhn = luhn_valid(s.where(shaped, ""))
    digit_sum_ok = pd.Series(False, index=s.index)
    digit_sum_ok[la_poste] = s[la_poste].map(lambda v: v.isdigit() and sum(int(c) for c in v) % 5 == 0)
    bad_checksum = shaped & ((~la_poste & ~luhn) | (la_poste & ~digit_sum_ok))
    reason[bad_checksum] = "SIRET invalide : clé de contrôle (Luhn) incorrecte"
    return reason


def points_from_lonlat(lon: pd.Series, lat: pd.Series) -> gpd.GeoSeries:
    import geopandas as gpd

    return gpd.GeoSeries(gpd.points_from_xy(lon, lat), index=lon.index, crs=WGS84)


def to_float(values: pd.Series) -> pd.Series:
    """Parse numbers written with a dot or a French decimal comma; blanks and junk give NaN."""
    text = values.astype("string").str.strip().str.replace(",", ".", regex=False)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def canonical_frame(frame: pd.DataFrame, columns: dict[str, str], geometry: gpd.GeoSeries) -> gpd.GeoDataFrame:
    """Select and type the canonical columns of a layer, with geometry in WGS84."""
    import geopandas as gpd

    out = pd.DataFrame(index=frame.index)
    for col, sql_type in columns.items():
        values = frame[col] if col in frame.columns else pd.Series(pd.NA, index=frame.index)
        if sql_type == "VARCHAR":
            out[col] = values.astype("string")
        elif sql_type in ("BIGINT", "INTEGER"):
            out[col] = pd.to_numeric(values, errors="coerce").astype("Int64")
        elif sql_type == "DOUBLE":
            out[col] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif sql_type == "BOOLEAN":
            out[col] = values.astype("boolean")
        else:
            out[col] = values
    wgs84 = geometry.to_crs(WGS84) if geometry.crs else geometry.set_crs(WGS84)
    return gpd.GeoDataFrame(out, geometry=wgs84, crs=WGS84).reset_index(drop=True)
