"""The `essmap` command: exit codes, French messages, atomic ingests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

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


def test_query_qpv_radius_writes_a_csv_a_spreadsheet_opens(db, tmp_path):
    out = tmp_path / "qpv.csv"
    result = runner.invoke(app, ["query", "qpv-radius", "--radius", "1000", "--departement", "13",
                                 "--out", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM
    import pandas as pd

    table = pd.read_csv(out, encoding="utf-8-sig", dtype={"insee_com": str})
    assert len(table) == 71  # QPVs of the Bouches-du-Rhône
    assert {"code_qp", "lib_qp", "n_tiers_lieux", "nearest_nom", "nearest_distance_m", "covered"} <= set(table.columns)
    assert (table.loc[table["covered"], "nearest_distance_m"] <= 1000).all()
    assert "à moins de 1\u202f000 m" in result.output and "données simulées" in result.output


def test_query_qpv_radius_grows_with_the_radius_and_streams_geojson(db):
    counts = []
    for radius in ("0", "500", "2000"):
        result = runner.invoke(app, ["query", "qpv-radius", "--radius", radius, "--format", "geojson",
                                     "--out", "-", "--db", str(db)])
        assert result.exit_code == 0, result.output
        start = result.stdout.index("{")
        collection = json.loads(result.stdout[start:])
        assert len(collection["features"]) == 135
        counts.append(sum(f["properties"]["covered"] for f in collection["features"]))
    assert counts[0] <= counts[1] <= counts[2]


def test_query_indicators_by_departement_with_french_separator(db, tmp_path):
    out = tmp_path / "ind.csv"
    result = runner.invoke(app, ["query", "indicators", "--level", "departement", "--separateur", ";",
                                 "--out", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out, sep=";", decimal=",", encoding="utf-8-sig", dtype={"code": str})
    assert table["code"].tolist() == ["04", "05", "06", "13", "83", "84"]
    assert table.set_index("code").loc["13", "nom"] == "Bouches-du-Rhône"
    assert table["population"].sum() == 5_030_890
    assert table["etablissements_pour_10k_hab"].gt(0).all()


def test_query_indicators_rejects_an_unknown_level(db):
    result = runner.invoke(app, ["query", "indicators", "--level", "canton", "--db", str(db)])
    assert result.exit_code == 1
    assert "niveau « canton » inconnu" in result.output


def test_queries_do_not_import_the_rendering_stack(demo_db):
    """`essmap query` needs neither the map nor the classes (mapclassify and scipy cost seconds)."""
    script = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from essmap.cli import app
        for args in (["query", "indicators", "--level", "commune", "--departement", "84"],
                     ["query", "qpv-radius", "--departement", "84"]):
            result = CliRunner().invoke(app, [*args, "--out", "-", "--db", {str(demo_db)!r}])
            assert result.exit_code == 0, result.output
        heavy = sorted({{name.split(".")[0] for name in sys.modules}} & {{"mapclassify", "scipy", "matplotlib",
                                                                          "folium", "streamlit", "sklearn"}})
        print(",".join(heavy))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
