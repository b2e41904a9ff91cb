"""Data exports (CSV, XLSX, GeoJSON, GeoPackage), the `essmap export` commands and the dashboard's
Exports tab, checked on the files they produce (demo store)."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from pathlib import Path

import geopandas as gpd
import openpyxl
import pandas as pd
import pyogrio
import pytest
import streamlit as st
from click.testing import CliRunner
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from test_snapshot import SCRIPT, pdf_text

from essmap.cli import app
from essmap.domain.selection import Selection
from essmap.present.view import MapView
from essmap.present.viewdata import export_tables, view_data
from essmap.render.tables import export_file_name, metric_crs, write_table

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TODAY = date.today().isoformat()


@pytest.fixture(scope="module")
def data(demo_con):
    return view_data(demo_con, MapView(selection=Selection(departements=("84",)), level="commune"))


@pytest.fixture(scope="module")
def tables(data, demo_con):
    return {stem: frame for stem, frame in export_tables(demo_con, data).values()}


def test_file_names_carry_territory_and_date():
    assert export_file_name("qpv_tiers_lieux", "Bouches-du-Rhône (13)", "csv", day=date(2026, 11, 25)) == (
        "qpv_tiers_lieux_bouches-du-rhone-13_2026-11-25.csv")
    assert export_file_name("carte", f"{SCRIPT} & Cie", "pdf", day=date(2026, 1, 2)) == (
        "carte_script-alert-1-script-cie_2026-01-02.pdf")


def test_csv_has_a_bom_and_french_separator_option(tables, tmp_path):
    frame = tables["indicateurs_commune"]
    comma, semicolon = tmp_path / "a.csv", tmp_path / "b.csv"
    write_table(frame, comma, "csv")
    write_table(frame, semicolon, "csv", separator=";")
    for path in (comma, semicolon):
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(pd.read_csv(comma, encoding="utf-8-sig")) == len(frame)
    text = semicolon.read_text(encoding="utf-8-sig")
    header = text.splitlines()[0]
    assert ";" in header and "," not in header
    # decimal comma in the ";" flavour: a per-10,000 value such as 31,4
    assert re.search(r";\d+,\d+;", text)
    back = pd.read_csv(semicolon, sep=";", decimal=",", encoding="utf-8-sig")
    numeric = back.select_dtypes("number").columns
    assert len(numeric) > 3


def test_xlsx_opens_with_every_row(tables, tmp_path):
    frame = tables["etablissements_ess"]
    path = tmp_path / "etab.xlsx"
    write_table(frame, path, "xlsx", layer="etablissements_ess")
    sheet = openpyxl.load_workbook(path).active
    assert sheet.title == "etablissements_ess"
    assert sheet.max_row == len(frame) + 1  # header + rows
    header = [c.value for c in sheet[1]]
    assert "longitude" in header and "latitude" in header


def test_geojson_is_wgs84(tables, tmp_path):
    frame = tables["tiers_lieux"]
    path = tmp_path / "tl.geojson"
    write_table(frame.to_crs(2154), path, "geojson")
    content = json.loads(path.read_text(encoding="utf-8"))
    assert len(content["features"]) == len(frame)
    lon, lat = content["features"][0]["geometry"]["coordinates"]
    assert 4 < lon < 6 and 43 < lat < 45  # Vaucluse, in degrees


@pytest.mark.parametrize(("crs", "epsg"), [(None, 4326), ("metrique", 2154)])
def test_geopackage_opens_with_its_crs_and_rows(tables, tmp_path, crs, epsg):
    frame = tables["qpv_tiers_lieux"]
    path = tmp_path / "qpv.gpkg"
    write_table(frame, path, "gpkg", layer="qpv_tiers_lieux", crs=crs)
    info = pyogrio.read_info(path, layer="qpv_tiers_lieux")
    assert info["crs"] == f"EPSG:{epsg}"
    assert info["features"] == len(frame) == 23  # the 23 QPV 2024 of the Vaucluse
    back = gpd.read_file(path)
    assert back.crs.to_epsg() == epsg
    assert set(back["Code QPV"]) == set(frame["Code QPV"])
    assert metric_crs(frame) == 2154


def test_metric_crs_refuses_several_territories(tables):
    frame = tables["tiers_lieux"].head(2).copy()
    frame.loc[frame.index[1], "geometry"] = gpd.points_from_xy([55.45], [-20.9])[0]  # La Réunion
    with pytest.raises(ValueError, match="plusieurs territoires"):
        metric_crs(frame)


# --- Command line ------------------------------------------------------------------------------


def test_cli_export_map_writes_an_a4_png_named_after_the_territory(demo_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "map", "--departement", "84", "--level", "epci",
                                      "--db", str(demo_db)])
    assert result.exit_code == 0, result.output
    path = tmp_path / f"carte_vaucluse-84_{TODAY}.png"
    assert path.exists(), result.output
    assert Image.open(path).size == (3508, 2480)
    assert "données simulées" in result.output


@pytest.mark.poppler
def test_cli_export_map_reproduces_a_dashboard_link_as_pdf(demo_db, tmp_path):
    out = tmp_path / "carte.pdf"
    link = ("http://localhost:8501/?departements=84&indicateur=n_tiers_lieux&methode=equal_interval"
            "&classes=3&rayon=500")
    result = CliRunner().invoke(app, ["export", "map", "--vue", link, "--format", "pdf", "--orientation",
                                      "portrait", "--titre", "Tiers-lieux $x$ 50 %", "--out", str(out),
                                      "--db", str(demo_db)])
    assert result.exit_code == 0, result.output
    text = " ".join(pdf_text(out.read_bytes()).split())
    assert "Tiers-lieux $x$ 50 %" in text
    # the legend of the linked indicator, titled with its label alone (not "Tiers-lieux (tiers-lieux)")
    assert text.count("Tiers-lieux") >= 2 and "(tiers-lieux)" not in text
    assert "rayon QPV – tiers-lieux : 500 m" in text


def test_cli_export_table_geopackage_in_lambert_93(demo_db, tmp_path):
    out = tmp_path / "qpv.gpkg"
    result = CliRunner().invoke(app, ["export", "table", "--departement", "84", "--couche", "qpv_tiers_lieux",
                                      "--format", "gpkg", "--crs", "metrique", "--out", str(out),
                                      "--db", str(demo_db)])
    assert result.exit_code == 0, result.output
    info = pyogrio.read_info(out)
    assert (info["crs"], info["features"]) == ("EPSG:2154", 23)


@pytest.mark.parametrize(("args", "message"), [
    (["map", "--format", "tiff"], "Format « tiff » inconnu"),
    (["map", "--orientation", "carré"], "Orientation « carré » inconnue"),
    (["map", "--departement", "77"], "Département(s) 77 absent(s) de la base"),
    (["map", "--vue", "indicateur=inconnu"], "Vue invalide : indicateur « inconnu » inconnu"),
    (["table", "--couche", "communes"], "Couche « communes » inconnue"),
])
def test_cli_export_errors_are_french(demo_db, args, message):
    result = CliRunner().invoke(app, ["export", *args, "--db", str(demo_db)])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


# --- Dashboard: the Exports tab -----------------------------------------------------------------


@pytest.fixture()
def deferred_downloads(monkeypatch):
    """The data callables of download buttons, by file id (Streamlit runs them on click)."""
    captured: dict[str, object] = {}
    original = MediaFileManager.add_deferred

    def add_deferred(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        captured[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield captured
    st.cache_data.clear()
    st.cache_resource.clear()


def _download(at: AppTest, captured: dict[str, object], label_start: str) -> tuple[str, bytes]:
    button = next(b for b in at.get("download_button") if b.proto.label.startswith(label_start))
    return button.proto.label, captured[button.proto.deferred_file_id]()


@pytest.mark.poppler
def test_exports_tab_buttons_produce_the_map_and_the_portrait(demo_db, monkeypatch, deferred_downloads):
    monkeypatch.setenv("ESSMAP_DB", str(demo_db))
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({"departements": "84", "selection": "84007"})  # Avignon
    at.run()
    at.session_state["onglet"] = "Exports"  # only the open tab runs
    at.run()
    assert not at.exception, at.exception
    at.text_input(key="titre_export").set_value(f"Avignon {SCRIPT} $x$").run()
    at.selectbox(key="format_carte").set_value("PDF").run()
    at.selectbox(key="orientation_carte").set_value("portrait").run()
    assert not at.exception, at.exception
    label, content = _download(at, deferred_downloads, "Télécharger la carte")
    assert label == "Télécharger la carte (PDF, A4 portrait)"
    text = " ".join(pdf_text(content).split())
    assert f"Avignon {SCRIPT} $x$" in text
    assert "Pas de données" in text and "données simulées" in text

    at.selectbox(key="format_carte").set_value("PNG 300 dpi").run()
    _, png = _download(at, deferred_downloads, "Télécharger la carte")
    assert Image.open(io.BytesIO(png)).size == (2480, 3508)

    label, portrait_pdf = _download(at, deferred_downloads, "Portrait de territoire (PDF)")
    text = " ".join(pdf_text(portrait_pdf).split())
    assert "Avignon (84007)" in text and "Page 4 / 4" in text


def test_indicator_files_read_as_the_dashboard(tables, tmp_path):
    """CSV: numbers rounded as shown, shares in percent ("(%)" titles); XLSX: raw numbers, shown as on screen."""
    frame = tables["indicateurs_commune"]
    share, rate = "Part des établissements de l'ESS situés dans un QPV", "Établissements de l'ESS pour 10 000 habitants"
    semicolon = tmp_path / "indicateurs.csv"
    write_table(frame, semicolon, "csv", separator=";")
    back = pd.read_csv(semicolon, sep=";", decimal=",", encoding="utf-8-sig", dtype={"Code commune": str})
    assert list(back.columns[:3]) == ["Code commune", "Nom", "Population"]
    assert f"{share} (%)" in back.columns and share not in back.columns
    raw = frame.set_index("Code commune")
    for _i, row in back.head(20).iterrows():
        code = row["Code commune"]
        if pd.notna(raw.loc[code, share]):
            assert row[f"{share} (%)"] == round(raw.loc[code, share] * 100, 1)
        assert row[rate] == round(raw.loc[code, rate], 1)
        assert row["Population"] == raw.loc[code, "Population"]

    workbook = tmp_path / "indicateurs.xlsx"
    write_table(frame, workbook, "xlsx", layer="indicateurs_commune")
    sheet = openpyxl.load_workbook(workbook).active
    header = [cell.value for cell in sheet[1]]
    first = {name: cell for name, cell in zip(header, sheet[2], strict=True)}
    code = first["Code commune"].value
    assert first[share].value == pytest.approx(raw.loc[code, share]) and first[share].number_format == "0.0%"
    assert first[rate].value == pytest.approx(raw.loc[code, rate]) and first[rate].number_format == "#,##0.0"
    assert first["Population"].value == raw.loc[code, "Population"] and first["Population"].number_format == "#,##0"
