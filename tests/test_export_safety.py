"""Exports are safe to open: no formula from data in CSV or XLSX (OWASP "CSV Injection"), numbers stay
numbers, GeoJSON and GeoPackage keep the values as they are; and safe to write: no file is replaced
unless asked, the store never."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import geopandas as gpd
import openpyxl
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from essmap.cli import app
from essmap.domain.errors import OutputFileError
from essmap.render.tables import table_bytes, write_table

#: Names that a spreadsheet would run as formulas if written raw (the issue's examples first).
FORMULAS = ['=HYPERLINK("http://x","clic")', "=cmd|' /C calc'!A0", "+33 4 90 00 00 00", "-2+3", "@SUM(1+1)",
            "\t=1+1", "\r=1+1", "  =1+1", '"=1+1', "\u00a0-1+1"]
#: Names where a formula follows a character that a reader with other settings takes for a cell break.
FORMULAS_AFTER_BREAK = {"Friche;=1+1": "Friche;'=1+1", "Friche,@SUM(1)": "Friche,'@SUM(1)",
                        "Friche\n+1": "Friche\n'+1"}
#: Names that must come back unchanged.
PLAIN = ["La Friche d'Avignon", "Saint-Denis", "Café ; atelier", "'=déjà neutralisé", "100 % solidaire"]
NAMES = FORMULAS + list(FORMULAS_AFTER_BREAK) + PLAIN
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture()
def frame() -> gpd.GeoDataFrame:
    """Tiers-lieux with hostile names, negative numbers and missing values, as points (like the exports)."""
    n = len(NAMES)
    return gpd.GeoDataFrame({
        "Nom": pd.Series(NAMES, dtype="str"),
        "Labels": pd.Series([None, "=1+1", 3] + ["x"] * (n - 3), dtype=object),  # mixed object column
        "Distance (m)": [-120 + 10 * i for i in range(n)],
        "Part": pd.array([-2.5, 0.25, None] + [1234.5] * (n - 3), dtype="Float64"),
        "=Total": pd.array([-3, None] + [7] * (n - 2), dtype="Int64"),
    }, geometry=gpd.points_from_xy([4.8 + i / 100 for i in range(n)], [43.9] * n), crs=4326)


def _csv_rows(content: bytes, separator: str) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""), delimiter=separator))


def _csv_bytes(frame: gpd.GeoDataFrame, separator: str, via: str, folder: Path) -> bytes:
    if via == "download":
        return table_bytes(frame, "CSV « ; »" if separator == ";" else "CSV")
    path = folder / "tiers_lieux.csv"
    write_table(frame, path, "csv", separator=separator)
    return path.read_bytes()


@pytest.mark.parametrize("via", ["file", "download"])
@pytest.mark.parametrize("separator", [",", ";"])
def test_csv_text_cells_that_open_a_formula_get_a_single_quote(frame, tmp_path, separator, via):
    rows = _csv_rows(_csv_bytes(frame, separator, via, tmp_path), separator)
    header, body = rows[0], rows[1:]
    assert header == ["Nom", "Labels", "Distance (m)", "Part", "'=Total", "longitude", "latitude"]
    assert len(body) == len(NAMES)  # a carriage return or line feed in a name does not cut the row
    names = [row[0] for row in body]
    # a tab or carriage return is itself a cell break for some reader: the formula after it is quoted too
    in_csv = {**{name: "'" + name for name in FORMULAS}, "\t=1+1": "'\t'=1+1", "\r=1+1": "'\r'=1+1"}
    assert names[:len(FORMULAS)] == [in_csv[name] for name in FORMULAS]
    assert names[len(FORMULAS):len(NAMES) - len(PLAIN)] == list(FORMULAS_AFTER_BREAK.values())
    assert names[-len(PLAIN):] == PLAIN
    assert [row[1] for row in body[:3]] == ["", "'=1+1", "3"]


@pytest.mark.parametrize("separator", [",", ";"])
def test_csv_read_with_the_other_separator_has_no_cell_that_opens_a_formula(frame, tmp_path, separator):
    """A French spreadsheet splits a comma file on ";" (and an English one a ";" file on ","): whatever
    cells it cuts, none begins with a formula character, except pieces of numbers."""
    other = ";" if separator == "," else ","
    content = _csv_bytes(frame, separator, "file", tmp_path)
    fields = [field for row in _csv_rows(content, other) for field in row]
    assert len(fields) > len(NAMES)
    opening = [f for f in fields if f.lstrip(' \t\r\n\u00a0"').startswith(TRIGGERS) or f.startswith(TRIGGERS)]
    number_pieces = [f for f in opening if f.lstrip("-").replace(",", "").replace(".", "").isdigit()]
    assert opening == number_pieces, opening


@pytest.mark.parametrize("separator", [",", ";"])
def test_csv_numbers_stay_numbers(frame, tmp_path, separator):
    content = _csv_bytes(frame, separator, "file", tmp_path)
    rows = _csv_rows(content, separator)
    distance, part, total = ([row[i] for row in rows[1:4]] for i in (2, 3, 4))
    assert distance == ["-120", "-110", "-100"]
    assert part == (["-2,5", "0,25", ""] if separator == ";" else ["-2.5", "0.25", ""])
    assert total == ["-3", "", "7"]
    back = pd.read_csv(io.BytesIO(content), sep=separator,
                       decimal="," if separator == ";" else ".", encoding="utf-8-sig")
    assert back["Part"].iloc[0] == -2.5 and back["'=Total"].iloc[0] == -3 and back["Distance (m)"].iloc[0] == -120


@pytest.mark.parametrize("via", ["file", "download"])
def test_xlsx_holds_no_formula_and_numbers_are_numbers(frame, tmp_path, via):
    if via == "download":
        path = tmp_path / "download.xlsx"
        path.write_bytes(table_bytes(frame, "XLSX", layer="tiers_lieux"))
    else:
        path = tmp_path / "tiers_lieux.xlsx"
        write_table(frame, path, "xlsx", layer="tiers_lieux")
    sheet = openpyxl.load_workbook(path, data_only=False).active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    assert not any(isinstance(c.value, str) and c.value.startswith("=") for c in cells)
    header = [c.value for c in sheet[1]]
    assert header == ["Nom", "Labels", "Distance (m)", "Part", "'=Total", "longitude", "latitude"]
    names = [c.value for c in sheet["A"][1:]]
    # XML turns a carriage return into a line feed when the file is read back
    assert names[:len(FORMULAS)] == [("'" + name).replace("\r", "\n") for name in FORMULAS]
    # real cells: a formula character after a separator or a line break opens nothing
    assert names[len(FORMULAS):] == list(FORMULAS_AFTER_BREAK) + PLAIN
    assert all(c.data_type == "s" for c in sheet["A"])
    assert [c.value for c in sheet["B"][1:4]] == [None, "'=1+1", 3]
    for column, first in (("C", -120), ("D", -2.5), ("E", -3)):
        cell = sheet[f"{column}2"]
        assert (cell.value, cell.data_type) == (first, "n")


def test_geojson_and_geopackage_keep_values_unchanged(frame, tmp_path):
    frame = frame.drop(index=[FORMULAS.index("\r=1+1")])  # GDAL writes a carriage return as a line feed
    geojson, gpkg = tmp_path / "t.geojson", tmp_path / "t.gpkg"
    write_table(frame, geojson, "geojson")
    write_table(frame, gpkg, "gpkg", layer="tiers_lieux")
    features = json.loads(geojson.read_text(encoding="utf-8"))["features"]
    assert [f["properties"]["Nom"] for f in features] == frame["Nom"].tolist()
    assert "=Total" in features[0]["properties"]
    assert gpd.read_file(gpkg)["Nom"].tolist() == frame["Nom"].tolist()


# --- Where an export may be written -------------------------------------------------------------

FORMATS = [("csv", "csv"), ("xlsx", "xlsx"), ("geojson", "geojson"), ("gpkg", "gpkg")]


@pytest.mark.parametrize(("fmt", "extension"), FORMATS)
def test_an_existing_file_is_kept_unless_force(frame, tmp_path, fmt, extension):
    path = tmp_path / f"tiers_lieux.{extension}"
    path.write_bytes(b"previous export")
    with pytest.raises(OutputFileError) as error:
        write_table(frame, path, fmt)
    message = str(error.value)
    assert f"Le fichier « {path} » existe déjà" in message and "--force" in message
    assert path.read_bytes() == b"previous export"
    write_table(frame, path, fmt, force=True)
    assert path.read_bytes() != b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_force_replaces_a_geopackage_whole(frame, tmp_path):
    path = tmp_path / "tiers_lieux.gpkg"
    write_table(frame, path, "gpkg", layer="ancienne")
    write_table(frame, path, "gpkg", layer="tiers_lieux", force=True)
    assert [name for name, _kind in pyogrio.list_layers(path)] == ["tiers_lieux"]


def test_a_failed_export_leaves_the_previous_file_whole(frame, tmp_path):
    path = tmp_path / "tiers_lieux.geojson"
    path.write_text("previous export", encoding="utf-8")
    with pytest.raises(ValueError, match="demande une géométrie"):
        write_table(pd.DataFrame(frame.drop(columns="geometry")), path, "geojson", force=True)
    assert path.read_text(encoding="utf-8") == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.fixture()
def store_file(tmp_path) -> Path:
    """A real DuckDB file with a table, and a journal file beside it."""
    path = tmp_path / "essmap.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE communes AS SELECT '84007' AS code")
    con.close()
    path.with_name(path.name + ".wal").write_bytes(b"journal")
    return path


@pytest.mark.parametrize("spelling", ["store", "journal", "dotdot", "symlink"])
def test_the_store_and_its_journal_are_never_overwritten_even_with_force(frame, store_file, tmp_path, spelling):
    other = tmp_path / "exports"
    other.mkdir()
    (other / "lien.duckdb").symlink_to(store_file)
    target = {"store": store_file, "journal": store_file.with_name("essmap.duckdb.wal"),
              "dotdot": other / ".." / "essmap.duckdb", "symlink": other / "lien.duckdb"}[spelling]
    before = {p: p.read_bytes() for p in (store_file, store_file.with_name("essmap.duckdb.wal"))}
    with pytest.raises(OutputFileError, match="même avec --force") as error:
        write_table(frame, target, "csv", force=True, protect=store_file)
    assert f"« {target} »" in str(error.value)
    assert {p: p.read_bytes() for p in before} == before
    con = duckdb.connect(str(store_file), read_only=True)
    assert con.execute("SELECT code FROM communes").fetchall() == [("84007",)]
    con.close()


def test_a_missing_folder_or_a_folder_as_file_is_refused(frame, tmp_path):
    missing = tmp_path / "absent" / "tiers_lieux.csv"
    with pytest.raises(OutputFileError, match=f"Le dossier « {tmp_path / 'absent'} » n'existe pas"):
        write_table(frame, missing, "csv", force=True)
    with pytest.raises(OutputFileError, match="est un dossier"):
        write_table(frame, tmp_path, "csv", force=True)
    assert list(tmp_path.iterdir()) == []


def test_standard_output_is_not_a_file(frame, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("-").write_text("a file named -", encoding="utf-8")
    write_table(frame, "-", "csv")
    assert capsys.readouterr().out.startswith("Nom,Labels,")
    assert Path("-").read_text(encoding="utf-8") == "a file named -"


def test_cli_says_in_french_that_the_folder_is_missing(demo_db, tmp_path):
    missing = tmp_path / "absent" / "ind.csv"
    result = CliRunner().invoke(app, ["query", "indicators", "--level", "departement", "--out", str(missing),
                                      "--db", str(demo_db)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"Le dossier « {missing.parent} » n'existe pas" in output
    assert "Traceback" not in result.output and not missing.parent.exists()


def test_xlsx_export_survives_control_characters_xml_cannot_hold(tmp_path):
    """A line break copied from a word processor is a vertical tab: openpyxl refuses it, failing the export."""
    frame = pd.DataFrame({"Nom": ["Friche\x0bdu Moulin", "\x01=1+1", "Café"], "Places": [12, -1, 3]})
    path = tmp_path / "tiers_lieux.xlsx"
    write_table(frame, path, "xlsx")
    sheet = openpyxl.load_workbook(path, data_only=False).active
    assert [(c.value, c.data_type) for c in sheet["A"][1:]] == [("Friche\ndu Moulin", "s"), ("'=1+1", "s"),
                                                               ("Café", "s")]
    assert [c.value for c in sheet["B"][1:]] == [12, -1, 3]
