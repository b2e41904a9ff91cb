"""The `essmap` command: exit codes, French messages, atomic ingests."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from essmap import store
from essmap.cli import app

runner = CliRunner(env={"COLUMNS": "220"})  # wide enough for the tables


@pytest.fixture
def db(tmp_path, demo_db):
    path = tmp_path / "essmap.duckdb"
    shutil.copyfile(demo_db, path)
    return path


def test_info_lists_layers_sources_and_quarantine(db):
    result = runner.invoke(app, ["info", "--db", str(db)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "qpv2024_paca.geojson" in out
    assert "etablissements" in out and "tiers_lieux" in out
    assert "Quarantaine" in out
    assert "coordonnées absentes" in out


def test_info_without_database_says_how_to_build_it(tmp_path):
    result = runner.invoke(app, ["info", "--db", str(tmp_path / "absent.duckdb")])
    assert result.exit_code == 1
    assert "introuvable" in result.output and "essmap build" in result.output
    assert "Traceback" not in result.output


def test_ingest_qpv_2015_adds_a_generation(db, tmp_path, shared_qpv2015_lyon):
    result = runner.invoke(app, ["ingest", "qpv", str(shared_qpv2015_lyon), "--db", str(db)])
    assert result.exit_code == 0, result.output
    con = store.connect(db)
    assert store.qpv_generations(con) == ["2024", "2015"]
    qpv = store.read_layer(con, "qpv")
    assert (qpv["generation"] == "2015").sum() == 37
    assert (qpv["generation"] == "2024").sum() == 135
    con.close()


def test_failed_ingest_names_the_file_and_keeps_the_database(db, tmp_path):
    bad = tmp_path / "qpv_sans_code.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"nom": "Sans code"},
         "geometry": {"type": "Polygon", "coordinates": [[[5.37, 43.30], [5.38, 43.30], [5.38, 43.31], [5.37, 43.30]]]}}
    ]}), encoding="utf-8")
    before = db.read_bytes()
    result = runner.invoke(app, ["ingest", "qpv", str(bad), "--db", str(db)])
    assert result.exit_code == 1
    assert "qpv_sans_code.geojson" in result.output
    assert "colonne" in result.output
    assert "Traceback" not in result.output
    assert db.read_bytes() == before


def test_ingest_rejects_unknown_source_and_missing_file(db, tmp_path):
    result = runner.invoke(app, ["ingest", "bancs", str(db), "--db", str(db)])
    assert result.exit_code == 1 and "Source inconnue « bancs »" in result.output
    result = runner.invoke(app, ["ingest", "qpv", str(tmp_path / "absent.geojson"), "--db", str(db)])
    assert result.exit_code == 1 and "absent.geojson" in result.output and "introuvable" in result.output


def test_build_command_writes_a_database(tmp_path):
    target = tmp_path / "demo.duckdb"
    result = runner.invoke(app, ["build", "--db", str(target), "--scale", "0.01"])
    assert result.exit_code == 0, result.output
    assert "données simulées" in result.output
    con = store.connect(target)
    counts = store.layer_counts(con).set_index("couche")
    assert counts.loc["qpv", "lignes"] == 135
    assert counts.loc["etablissements", "lignes"] == counts.loc["etablissements", "dont_simulees"] > 0
    con.close()


def test_fetch_lists_official_sources():
    result = runner.invoke(app, ["fetch", "--liste"])
    assert result.exit_code == 0, result.output
    assert "sirene" in result.output.lower()
