"""Writing what users take away: data tables (CSV, XLSX, GeoJSON, GeoPackage).

CSV is UTF-8 with a BOM so spreadsheet software detects the encoding, with CRLF line ends (RFC
4180); the ``;`` separator (with a decimal comma) suits French spreadsheet settings. GeoJSON is
always WGS84 (RFC 7946). A GeoPackage is WGS84 (EPSG:4326) by default, which holds any mix of
territories; ``crs="metrique"`` writes it in the metric CRS of its territory (Lambert-93,
EPSG:2154, in metropolitan France; see :mod:`essmap.domain.territories`), the usual choice for
measuring in a GIS. Either way the CRS is recorded in the file.

Spreadsheet formats are inert: a text cell that a spreadsheet would read as a formula (OWASP
"CSV Injection") is prefixed with a single quote, see :func:`write_table`. GeoJSON and GeoPackage
are not spreadsheet formats: their values are written unchanged.

Number columns may carry how they read (integer, one decimal, share: see
:func:`essmap.domain.formatting.with_number_formats`): :func:`display_table` writes them as French
text for the screen ("1 775", "124,6", "5,0 %"); CSV holds them rounded as shown (a share in percent,
its title ending in "(%)"; no thousands separator, so a spreadsheet still reads a number); XLSX keeps
the raw number with a number format that shows it as on screen.

Map snapshots are in :mod:`essmap.render.snapshot`, portraits de territoire in :mod:`essmap.render.portrait`.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from essmap.domain.errors import OutputFileError
from essmap.domain.formatting import NumberFormat, format_cell, number_formats

# pandas is imported where frames are written: a CLI query writing rows as CSV starts without it
if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

TableFormat = Literal["csv", "xlsx", "geojson", "gpkg"]
TABLE_FORMATS: tuple[str, ...] = ("csv", "xlsx", "geojson", "gpkg")
#: Formats that carry each row's geometry (the others are plain tables).
GEOGRAPHIC_FORMATS: tuple[str, ...] = ("geojson", "gpkg")

#: The Excel number format of each :data:`NumberFormat` (Excel shows its own locale's separators:
#: "5,0 %" in French).
XLSX_NUMBER_FORMATS: dict[str, str] = {"entier": "#,##0", "decimal": "#,##0.0", "part": "0.0%"}


def is_geographic(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` is a GeoDataFrame, without importing geopandas for a plain table (the CLI's
    table queries start faster): no GeoDataFrame exists before geopandas is imported."""
    gpd = sys.modules.get("geopandas")
    return gpd is not None and isinstance(frame, gpd.GeoDataFrame)


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without geometry, its formatted number columns as French text and every other
    missing value as "–": what ``st.table`` shows (it has no English toolbar, unlike ``st.dataframe``)."""
    import pandas as pd
    table = pd.DataFrame(frame.drop(columns=frame.geometry.name)) if is_geographic(frame) else frame
    formats = number_formats(frame)
    shown = {}
    for column in table.columns:
        values = table[column]
        if column in formats:
            shown[column] = [format_cell(v, formats[column]) for v in values]
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            shown[column] = [format_cell(v, "entier" if pd.api.types.is_integer_dtype(values) else "decimal")
                             for v in values]
        else:
            shown[column] = ["–" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
                             for v in values]
    return pd.DataFrame(shown, index=range(len(table)), columns=list(table.columns))


def _csv_numbers(table: pd.DataFrame, formats: dict[str, NumberFormat]) -> pd.DataFrame:
    """Formatted number columns rounded as shown; shares in percent, their title ending in "(%)"."""
    import pandas as pd
    if not formats:
        return table
    table = table.copy()
    renames = {}
    for column, kind in formats.items():
        values = pd.to_numeric(table[column], errors="coerce")
        if kind == "part":
            table[column] = (values * 100).round(1)
            renames[column] = f"{column} (%)"
        elif kind == "decimal":
            table[column] = values.round(1)
        else:
            table[column] = values.round().astype("Int64")
    return table.rename(columns=renames)


def export_file_name(stem: str, territory: str, fmt: str, *, day: date | None = None) -> str:
    """``qpv_tiers_lieux``, ``Bouches-du-Rhône`` -> ``qpv_tiers_lieux_bouches-du-rhone_2026-11-25.csv``."""
    return f"{_slug(stem)}_{_slug(territory)}_{(day or date.today()).isoformat()}.{fmt}"


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9_]+", "-", ascii_text.lower()).strip("-_") or "france"


def write_table(frame: pd.DataFrame, out: Path | str, fmt: TableFormat, *, separator: str = ",",
                layer: str = "essmap", crs: str | int | None = None, force: bool = False,
                protect: Path | None = None) -> None:
    """Write a table; ``out`` ``"-"`` writes CSV/GeoJSON to standard output.

    Geometry columns are dropped from CSV and XLSX (a ``longitude``/``latitude`` pair is kept
    for points); GeoJSON and GeoPackage need a GeoDataFrame.

    CSV and XLSX are inert when opened in a spreadsheet (OWASP "CSV Injection", ASVS 5.0
    V1.2.10): a text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return or
    a NUL gets a leading single quote (``'=HYPERLINK(…)``), which spreadsheets read as "this is
    text"; so do column headers. The formula character also counts when only whitespace or double
    quotes come before it (``"  =1+1"``, ``'"=1+1'``): some readers trim or unquote them. A cell
    already starting with ``'`` is left alone, the quote being the neutraliser itself. Numbers are
    not text: a negative number stays a number (decimal comma kept in the ``;`` flavour).

    CSV also guards against a reader that splits on another separator than the one written:
    French spreadsheets open a comma file by splitting on ``;``, so the name ``x;=1+1`` would
    become a cell ``=1+1`` (RFC 4180 quoting does not help, a quote in the middle of a field is
    literal to such a reader). So, in CSV only, the single quote is also put after a ``,``, ``;``,
    tab or line break followed by a formula character (``x;'=1+1``): that changes the text of such
    cells, rare in names and addresses, and makes every cell that any separator could cut inert.
    XLSX has real cells, so only the start of a cell matters there; every text cell is stored as
    a string, never as a formula, without the control characters XML cannot hold (a vertical
    tab would make the whole export fail). GeoJSON and GeoPackage are not read by spreadsheets as
    formulas: their values are written unchanged.

    An existing file is replaced only with ``force``, and never (even with ``force``) when it is
    the store ``protect`` (the DuckDB file the CLI reads) or its ``.wal`` journal; a missing folder
    or a folder given as the file is refused too. Those refusals raise :class:`OutputFileError`,
    in French, before anything is written. The file is written under a temporary name in its
    folder and renamed at the end, so a failed export leaves no partial file and the previous file
    intact. Standard output is not checked.
    """
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"format {fmt!r} inconnu ; formats possibles : {', '.join(TABLE_FORMATS)}")
    if str(out) == "-" and fmt in ("xlsx", "gpkg"):
        raise ValueError(f"le format {fmt} ne peut pas être écrit sur la sortie standard ; utilisez --out FICHIER")
    _write_whole(out, lambda path: _write(frame, path, fmt, separator=separator, layer=layer, crs=crs),
                 force=force, protect=protect)


def write_csv_rows(columns: Sequence[str], rows: Iterable[Sequence[object]], out: Path | str, *,
                   separator: str = ",", force: bool = False, protect: Path | None = None) -> None:
    """Write rows as they come from DuckDB (``None`` where missing) as the CSV :func:`write_table` writes
    for the same table as a frame, byte for byte, without pandas (the command line's query tables).

    The same rules: UTF-8 with a BOM, CRLF, text cells and headers made inert, the decimal comma with
    ``;``; a float reads as Python writes it (``647.2526721906364``, ``1e-07``), a boolean ``True`` or
    ``False``, a missing value as an empty cell; ``out``, ``force`` and ``protect`` as :func:`write_table`.
    """
    if separator not in (",", ";"):
        raise ValueError(f"séparateur {separator!r} non pris en charge : « , » ou « ; »")
    rows = list(rows)

    def write(path: Path | None) -> None:
        # as pandas writes a frame: the csv module, minimal quoting, CRLF (see _write); the BOM of
        # utf-8-sig written once, the rows through the C UTF-8 encoder (utf-8-sig's is Python, per row)
        with (open(path, "w", encoding="utf-8", newline="") if path is not None
              else contextlib.nullcontext(sys.stdout)) as handle:
            if path is not None:
                handle.write("\ufeff")
            writer = csv.writer(handle, delimiter=separator, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow([_csv_cell(name) for name in columns])
            given = list(zip(*rows, strict=True))  # column-wise
            cells = [_csv_column(values, separator) for values in given]
            unchanged = all(new is old for new, old in zip(cells, given, strict=True))
            writer.writerows(rows if unchanged else zip(*cells, strict=True))

    _write_whole(out, write, force=force, protect=protect)


def _csv_column(values: Sequence[object], separator: str) -> Sequence[object]:
    """One column of :func:`write_csv_rows` ready for the csv module, which writes ``None`` as an empty
    cell, a float as its ``repr`` and an integer or a boolean as ``str``: only text cells (made inert),
    NaN (missing) and, with ``;``, the decimal comma need Python, a whole column at a time."""
    kinds = set(map(type, values))
    if str in kinds:
        # one search over the column's texts joined by line breaks (a break before each cell, as
        # _csv_cell sees inside one): most columns have nothing to neutralise and stay as they are
        joined = "\n".join(v for v in values if isinstance(v, str))
        if not any(pattern.search(joined) for pattern in _CELL_TO_NEUTRALISE):
            return values
        return [_csv_cell(v) if isinstance(v, str) else v for v in values]
    if float in kinds:
        if separator == ";":
            return [None if v is None or v != v else repr(v).replace(".", ",") if isinstance(v, float) else v
                    for v in values]
        if any(v != v for v in values):  # NaN: missing
            return [None if v != v else v for v in values]
    return values


def _write_whole(out: Path | str, write: Callable[[Path | None], None], *, force: bool,
                 protect: Path | None) -> None:
    """``write(None)`` for standard output (``out`` is ``"-"``), else ``write(path)`` of a temporary file
    renamed to ``out`` at the end, once :func:`checked_output_path` allows it."""
    if str(out) == "-":
        write(None)
        return
    target = checked_output_path(Path(out), force=force, protect=protect)
    try:
        staging = tempfile.TemporaryDirectory(dir=target.parent, prefix=".essmap-export-")
    except PermissionError:
        raise OutputFileError(f"Impossible d'écrire dans le dossier « {target.parent} » : permission refusée. "
                              "Solution : choisissez un autre dossier avec --out.") from None
    with staging as folder:
        partial = Path(folder) / target.name
        write(partial)
        os.replace(partial, target)


def _write(frame: pd.DataFrame, path: Path | None, fmt: str, *, separator: str, layer: str,
           crs: str | int | None) -> None:
    """Write ``frame`` as ``fmt`` to ``path``, or to standard output when ``path`` is None."""
    import pandas as pd
    if fmt in ("csv", "xlsx"):
        formats = number_formats(frame)
        table = _plain_table(frame)
        if fmt == "csv":
            table = _map_text(_csv_numbers(table, formats), _csv_cell, _FORMULA_CHARACTER)
            decimal = "," if separator == ";" else "."
            # CRLF (RFC 4180) also makes the csv module quote a text holding a lone carriage return,
            # which would otherwise end the row early in every reader
            if path is None:
                table.to_csv(sys.stdout, sep=separator, decimal=decimal, index=False, lineterminator="\r\n")
            else:
                table.to_csv(path, sep=separator, decimal=decimal, index=False, lineterminator="\r\n",
                             encoding="utf-8-sig")
        elif path is not None:
            xlsx_table = _map_text(table, _xlsx_cell, f"{_FORMULA_CHARACTER}|{_NOT_IN_XLSX.pattern}")
            with pd.ExcelWriter(path, engine="openpyxl") as writer:
                xlsx_table.to_excel(writer, index=False, sheet_name=layer[:31])
                sheet = writer.sheets[layer[:31]]
                for position, column in enumerate(table.columns, start=1):
                    if column in formats:  # raw numbers, shown as on screen
                        for (cell,) in sheet.iter_rows(min_row=2, min_col=position, max_col=position):
                            cell.number_format = XLSX_NUMBER_FORMATS[formats[column]]
        return
    if not is_geographic(frame):
        raise ValueError(f"le format {fmt} demande une géométrie")
    if fmt == "geojson":
        geo = frame.to_crs(4326)
    elif crs == "metrique":
        geo = frame.to_crs(metric_crs(frame))
    else:
        geo = frame.to_crs(crs) if crs else frame
    if path is None:
        sys.stdout.write(geo.to_json(drop_id=True))
    elif fmt == "geojson":
        geo.to_file(path, driver="GeoJSON")
    else:
        geo.to_file(path, driver="GPKG", layer=layer)


def checked_output_path(path: Path, *, force: bool, protect: Path | None) -> Path:
    """``path`` if an export may be written there, else :class:`OutputFileError` saying why.

    The rules of :func:`write_table` (no replacing without ``force``, never the store ``protect``
    or its journal, an existing folder), for other files the CLI writes (map snapshots).
    """
    if protect is not None:
        store = Path(protect)
        for guarded in (store, store.with_name(store.name + ".wal")):
            if _same_file(path, guarded):
                what = "la base de données essmap" if guarded == store else f"le journal de la base « {store} »"
                raise OutputFileError(
                    f"« {path} » est {what} : un export n'écrit jamais sur la base ni sur son journal, "
                    "même avec --force. Solution : choisissez un autre fichier avec --out.")
    if not path.parent.is_dir():
        raise OutputFileError(f"Le dossier « {path.parent} » n'existe pas : impossible d'écrire « {path} ». "
                              "Solution : créez ce dossier, ou choisissez un autre chemin avec --out.")
    if path.is_dir():
        raise OutputFileError(f"« {path} » est un dossier, pas un fichier. "
                              "Solution : donnez un nom de fichier avec --out.")
    if path.exists() and not force:
        raise OutputFileError(f"Le fichier « {path} » existe déjà. Solution : ajoutez --force pour le remplacer, "
                              "ou choisissez un autre nom avec --out.")
    return path


def _same_file(path: Path, other: Path) -> bool:
    """Whether two paths name one file: the same once resolved (links, ``..``), or the same inode."""
    if path.resolve() == other.resolve():
        return True
    try:
        return os.path.samefile(path, other)
    except OSError:  # either does not exist
        return False


#: Where a spreadsheet may read a formula in a text cell: at its start (a formula character,
#: possibly after whitespace or double quotes, or a tab, carriage return or NUL).
_FORMULA_AT_START = re.compile(r"^(?=[\t\r\0]|[\s\"]*[=+\-@])")
#: The same, or after a character that a reader with other settings takes for a cell or row break.
_FORMULA_AT_CELL_BREAK = re.compile(r"^(?=[\t\r\0])|(?:^|(?<=[,;\t\r\n]))(?=[\s\"]*[=+\-@])")
#: Where _FORMULA_AT_CELL_BREAK can match in a column's texts joined by line breaks (:func:`_csv_column`):
#: patterns that begin with their characters, which the regex engine scans for fast.
_CELL_TO_NEUTRALISE = (re.compile(r"\A[\s\"]*[=+\-@]"), re.compile(r"[,;\t\r\n][\s\"]*[=+\-@]"),
                       re.compile(r"(?:\A|\n)[\t\r\x00]"))
#: Every text where either pattern can match holds one of these.
_FORMULA_CHARACTER = r"[=+\-@\t\r\x00]"
#: Control characters that XML, hence XLSX, cannot hold (openpyxl refuses the whole workbook).
_NOT_IN_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _csv_cell(text: str) -> str:
    return _FORMULA_AT_CELL_BREAK.sub("'", text)


def _xlsx_cell(text: str) -> str:
    # a vertical tab or form feed is a line break copied from a word processor: a line feed in XLSX
    return _FORMULA_AT_START.sub("'", _NOT_IN_XLSX.sub(_xlsx_substitute, text))


def _xlsx_substitute(control: re.Match[str]) -> str:
    return "\n" if control.group() in "\x0b\x0c" else ""


def _map_text(table: pd.DataFrame, change: Callable[[str], str], changes_only: str) -> pd.DataFrame:
    """``table`` with ``change`` applied to every text cell and header; ``change`` must leave a text
    alone unless it matches the regular expression ``changes_only`` (which filters cells fast)."""
    import pandas as pd
    def changed(value: object) -> object:
        return change(value) if isinstance(value, str) else value

    types = pd.api.types
    new_table = table.set_axis([changed(name) for name in table.columns], axis=1)
    for position, dtype in enumerate(new_table.dtypes):
        column = new_table.iloc[:, position]
        if isinstance(dtype, pd.StringDtype):
            # only the cells that may change go through Python: 2.5 to 4 times faster than mapping
            # every cell (300,000 rows x 10 address-like columns)
            candidates = column.str.contains(changes_only, regex=True, na=False)
            if candidates.any():
                new_table.isetitem(position, column.mask(candidates, column[candidates].map(changed)))
        elif not (types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype) or types.is_datetime64_any_dtype(dtype)):
            # numbers, booleans and dates are never text; any other column may hold strings
            new_table.isetitem(position, column.map(changed))
    return new_table


def _plain_table(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
    if not is_geographic(frame):
        return frame
    table = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    geoms = frame.geometry
    if len(geoms) and (geoms.geom_type == "Point").all():
        wgs = geoms.to_crs(4326)
        table["longitude"] = wgs.x.round(6)
        table["latitude"] = wgs.y.round(6)
    return table


def metric_crs(frame: gpd.GeoDataFrame) -> int:
    """EPSG of the one metric CRS of the rows' territory; several territories raise ValueError."""
    from essmap.domain.territories import TERRITORIES
    from essmap.geo import territory_codes

    present = frame[~(frame.geometry.isna() | frame.geometry.is_empty)]
    codes = sorted(set(territory_codes(present.to_crs(4326))) - {""})
    epsg = sorted({TERRITORIES[c].epsg for c in codes})
    if len(epsg) != 1:
        raise ValueError("les lignes couvrent plusieurs territoires de systèmes métriques différents "
                         f"({', '.join(codes) or 'aucun'}) ; exportez en WGS84 (EPSG:4326)")
    return epsg[0]


#: Download formats of the Exports tab: label -> (export format, CSV separator, file extension).
DOWNLOAD_FORMATS: dict[str, tuple[str, str, str]] = {
    "CSV": ("csv", ",", "csv"),
    "CSV « ; »": ("csv", ";", "csv"),
    "XLSX": ("xlsx", ",", "xlsx"),
    "GeoJSON": ("geojson", ",", "geojson"),
    "GeoPackage": ("gpkg", ",", "gpkg"),
}


def table_bytes(frame: gpd.GeoDataFrame, label: str, *, layer: str = "essmap") -> bytes:
    """A table in one of :data:`DOWNLOAD_FORMATS`, as the bytes of the file to download."""
    fmt, separator, extension = DOWNLOAD_FORMATS[label]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"table.{extension}"
        write_table(frame, path, fmt, separator=separator, layer=layer)  # type: ignore[arg-type]
        return path.read_bytes()
