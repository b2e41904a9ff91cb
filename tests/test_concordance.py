"""Concordance of essmap's QPV with INSEE's own assignment (geolocation file ``plg_qp24``).

The fixture ``tests/data/sirene/GeolocalisationEtablissement_concordance.csv`` places six real
ESS establishments of Marseille and Nice against the demo store's real QPV 2024 polygons, with
INSEE's QPV written to agree or not on purpose (table in ``build_concordance_fixture.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import geopandas as gpd
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from essmap.cli import app
from essmap.domain import schema
from essmap.domain.config import PROJECT_ROOT
from essmap.io.readers.sirene import read_sirene
from essmap.store.concordance import (
    concordance_by_departement,
    concordance_disagreements,
    concordance_sentences,
)
from essmap.store.ingest import ingest_files

SIRENE = Path(__file__).resolve().parent / "data" / "sirene"
UNITES = SIRENE / "unites_legales_ess_extrait.csv"
ETABLISSEMENTS = SIRENE / "StockEtablissement_extrait.csv"
GEOLOC = SIRENE / "GeolocalisationEtablissement_concordance.csv"
QPV_PACA = PROJECT_ROOT / "data" / "geo" / "qpv2024_paca.geojson"
runner = CliRunner(env={"COLUMNS": "220"})


def test_reader_keeps_insee_assignment_of_both_generations():
    read = read_sirene(UNITES, ETABLISSEMENTS, geolocalisation=GEOLOC, departements=["13", "06"])
    frame = read.frame.set_index("siret")
    assert frame.loc["10002917200010", ["code_qp_insee_2024", "code_qp_insee_2015", "qualite_xy",
                                        "source_position"]].tolist() == ["QN01330M", "QP013012", "11",
                                                                         "geolocalisation"]
    assert frame.loc["32407950800010", ["code_qp_insee_2024", "code_qp_insee_2015"]].tolist() == [
        schema.INSEE_OUTSIDE_QPV, schema.INSEE_OUTSIDE_QPV]  # "HZ"
    assert frame.loc["10007004400035", "code_qp_insee_2024"] == schema.INSEE_OUTSIDE_QPV  # "CSZ"
    # no row in INSEE's file: INSEE said nothing (not "outside")
    assert frame.loc["01234567400019", ["code_qp_insee_2024", "qualite_xy", "source_position"]].isna().tolist()[:2] \
        == [True, True]
    assert not any("forme inattendue" in w for w in read.meta.warnings)


def test_older_edition_plg_qp_is_the_current_generation(tmp_path):
    old = SIRENE / "GeolocalisationEtablissement_extrait.csv"  # plg_qp, plg_qp15, qualite_qp (2024 edition)
    read = read_sirene(UNITES, ETABLISSEMENTS, geolocalisation=old, departements=["13"])
    placed = read.frame[read.frame["source_position"] == "geolocalisation"]
    assert len(placed) == 1 and placed["code_qp_insee_2024"].tolist() == [schema.INSEE_OUTSIDE_QPV]
    # a code of another form is kept as published, and said
    text = GEOLOC.read_text(encoding="utf-8").replace(";QN01330M;", ";1330M;", 1)
    odd = tmp_path / "GeolocalisationEtablissement_forme.csv"
    odd.write_text(text, encoding="utf-8")
    read = read_sirene(UNITES, ETABLISSEMENTS, geolocalisation=odd, departements=["13"])
    assert read.frame.set_index("siret").loc["10002917200010", "code_qp_insee_2024"] == "1330M"
    assert any("1 QPV 2024 attribué(s) par l'INSEE de forme inattendue (« 1330M »)" in w for w in read.meta.warnings)


@pytest.fixture(scope="module")
def loaded_once(demo_db, demo_settings, tmp_path_factory) -> Path:
    """The demo store with the SIRENE extract and INSEE's geolocation file ingested (13 and 06)."""
    path = tmp_path_factory.mktemp("concordance") / "essmap.duckdb"
    shutil.copyfile(demo_db, path)
    ingest_files(path, "sirene", [UNITES, ETABLISSEMENTS, GEOLOC], settings=demo_settings,
                 departements=["13", "06"])
    return path


@pytest.fixture()
def loaded(loaded_once, tmp_path) -> Path:
    """A copy of :func:`loaded_once` of the test's own (an ingest is seconds, a copy milliseconds)."""
    path = tmp_path / "essmap.duckdb"
    shutil.copyfile(loaded_once, path)
    return path


def _read(path: Path, function):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return function(con)
    finally:
        con.close()


def test_report_per_departement_and_disagreements(loaded):
    summary = _read(loaded, concordance_by_departement)
    assert summary[["generation", "code_departement", "comparés", "concordants", "discordants"]].values.tolist() == [
        ["2024", "06", 2, 2, 0], ["2024", "13", 4, 1, 3]]  # no QPV 2015 in the store: 2015 not compared
    assert summary["taux"].tolist() == [1.0, 0.25]
    assert concordance_sentences(summary) == [line.replace(" %", "\u202f%") for line in [
        "Concordance avec l'INSEE, QPV 2024 : 50,0 % (3 établissement(s) sur 6 classés dans le même QPV, ou hors "
        "QPV pour les deux).",
        "  06 : 100,0 % (2 sur 2 ; 0 désaccord(s))",
        "  13 : 25,0 % (1 sur 4 ; 3 désaccord(s))",
    ]]
    table = _read(loaded, concordance_disagreements).set_index("siret")
    assert sorted(table.index) == ["32407950800010", "44860472800015", "80873710000012"]
    assert table.loc["80873710000012", ["generation", "code_departement", "code_qp_essmap", "code_qp_insee",
                                         "qualite_xy"]].tolist() == ["2024", "13", "QN01341I", "QN01330M", "33"]
    outside = table.loc["44860472800015"]
    assert outside["code_qp_essmap"] is pd.NA and outside["code_qp_insee"] == "QN01354M"
    assert outside["qualite_xy"] == "12"
    assert outside["distance_limite_m"] == pytest.approx(20.0, abs=0.05)  # placed 20 m (Lambert-93) outside
    inside = table.loc["32407950800010"]
    assert inside["code_qp_essmap"] == "QN01332M" and inside["code_qp_insee"] is pd.NA
    qpv = gpd.read_file(QPV_PACA).set_index("q").to_crs(2154)
    point = gpd.GeoSeries(shapely.points([5.3833391], [43.3111908]), crs=4326).to_crs(2154).iloc[0]
    planar = qpv.geometry["QN01332M"].boundary.distance(point)
    assert inside["distance_limite_m"] == pytest.approx(planar, rel=2e-3)  # geodesic vs Lambert-93


def test_report_follows_qpv_and_establishment_changes(loaded, demo_settings, tmp_path):
    # QN01354M grown by 30 m: the point 20 m outside it is now inside, as INSEE says
    qpv = gpd.read_file(QPV_PACA)
    qpv = qpv[qpv["d"] == "13"].copy()
    grown = qpv.loc[qpv["q"] == "QN01354M"].to_crs(2154).buffer(30.0).to_crs(4326)
    qpv.loc[qpv["q"] == "QN01354M", "geometry"] = grown
    path = tmp_path / "qpv2024_13.geojson"
    qpv.to_file(path, driver="GeoJSON")
    ingest_files(loaded, "qpv", [path], settings=demo_settings, departements=["13"])
    summary = _read(loaded, concordance_by_departement).set_index("code_departement")
    assert summary.loc["13", ["comparés", "concordants"]].tolist() == [4, 2]
    assert "44860472800015" not in set(_read(loaded, concordance_disagreements)["siret"])
    # establishments of the 13 reloaded without INSEE's file: nothing left to compare there
    ingest_files(loaded, "sirene", [UNITES, ETABLISSEMENTS], settings=demo_settings, departements=["13"])
    summary = _read(loaded, concordance_by_departement)
    assert summary["code_departement"].tolist() == ["06"]
    assert set(_read(loaded, concordance_disagreements)["code_departement"]) <= {"06"}


def test_info_prints_the_concordance(loaded):
    result = runner.invoke(app, ["info", "--db", str(loaded)])
    assert result.exit_code == 0, result.output
    assert "Concordance avec le QPV attribué par l'INSEE" in result.output
    assert "25,0\u202f%" in result.output and "100,0\u202f%" in result.output
    assert "Désaccords (3 ; table « concordance » de la base)" in result.output
    assert "44860472800015" in result.output and "QN01354M" in result.output


def test_info_of_a_store_without_insee_file_says_nothing_of_it(demo_db):
    result = runner.invoke(app, ["info", "--db", str(demo_db)])
    assert result.exit_code == 0 and "Concordance" not in result.output
