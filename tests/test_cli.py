"""The `essmap` command: exit codes, French messages, atomic ingests."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

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


#: click's own English, which must never reach a user of the French command line.
CLICK_ENGLISH = ("Usage:", "Error:", "Options:", "Commands:", "Show this message", "No such", "Missing",
                 "Invalid value", "is not", "Did you mean", "Try '", "default:", "Aborted")


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["query"], ["query", "indicators", "-h"], ["ingest", "--help"],
                                  ["export", "map", "-h"]])
def test_help_pages_are_french(args):
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 2), result.output  # a group without its command shows its help (status 2)
    assert result.output.startswith("Utilisation : essmap"), result.output
    assert "Afficher cette aide et quitter." in result.output and "\nOptions :\n" in result.output
    assert not [english for english in CLICK_ENGLISH if english in result.output], result.output


@pytest.mark.parametrize(("args", "french", "command"), [
    (["query", "indicators", "--radius", "60000"],
     "Erreur : valeur invalide pour --radius : 60000.0 n'est pas dans l'intervalle 0<=x<=50000.", "query indicators"),
    (["query", "indicators", "--radius", "abc"],
     "Erreur : valeur invalide pour --radius : « abc » n'est pas un nombre.", "query indicators"),
    (["query", "indicators", "--radiu", "5"], "Erreur : option inconnue : --radiu. Vouliez-vous dire --radius ?",
     "query indicators"),
    (["query", "indicatorz"], "Erreur : commande inconnue : « indicatorz ». Vouliez-vous dire « indicators » ?",
     "query"),
    (["ingest", "qpv"], "Erreur : argument manquant : « FILES... ».", "ingest"),
    (["export", "map", "--classes", "9"], "Erreur : valeur invalide pour --classes : 9 n'est pas dans l'intervalle "
                                          "3<=x<=7.", "export map"),
    (["info", "--db"], "Erreur : l'option --db attend une valeur.", None),  # no command context yet
    (["ingest", "qpv", "a.geojson", "--geoloc", "."], "Erreur : valeur invalide pour --geoloc : « . » est un dossier, "
                                                      "pas un fichier.", "ingest"),
    (["fetch", "sirene", "--liste", "--bogus"], "Erreur : option inconnue : --bogus.", "fetch"),
])
def test_usage_errors_are_french_with_the_way_to_help(args, french, command):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert french in result.output, result.output
    assert not [english for english in CLICK_ENGLISH if english in result.output], result.output
    if command:
        assert f"Utilisation : essmap {command} [OPTIONS]" in result.output
        assert f"Aide : « essmap {command} -h »." in result.output


@pytest.mark.slow
def test_queries_do_not_import_the_rendering_stack(demo_db):
    """`essmap query` needs neither the map nor the classes (mapclassify and scipy cost seconds).

    Slow (left out by `make test-unit`): only a fresh interpreter shows what a command imports (2 s)."""
    script = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
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


# --- Replacement rules (README "Replacement rules") ------------------------------------------------

DATA = Path(__file__).parent / "data"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"


def _ingest(db, *args: str):
    result = runner.invoke(app, ["ingest", *args, "--db", str(db)])
    assert "Traceback" not in result.output
    return result


def _counts(db, sql: str) -> dict:
    con = store.connect(db)
    try:
        return dict(con.execute(sql).fetchall())
    finally:
        con.close()


def _sources(db):
    con = store.connect(db)
    try:
        return store.sources(con).set_index("file_name")
    finally:
        con.close()


def _quarantined_files(db) -> set[str]:
    con = store.connect(db)
    try:
        return set(store.quarantine_rows(con)["file_name"])
    finally:
        con.close()


def _qpv_13_file(path: Path) -> Path:
    """The two QPV of the 13 in the shipped extract, and a third feature without code (quarantined)."""
    collection = json.loads((DATA / "qpv" / "qpv2024_paca_extrait.geojson").read_text(encoding="utf-8"))
    features = [f for f in collection["features"] if f["properties"]["d"] == "13"]
    broken = json.loads(json.dumps(features[0]))
    broken["properties"]["q"] = None
    collection["features"] = [*features, broken]
    path.write_text(json.dumps(collection), encoding="utf-8")
    return path


def test_qpv_ingest_replaces_its_generation_in_its_departements_only(db, tmp_path, shared_qpv2015_lyon):
    assert _ingest(db, "qpv", str(shared_qpv2015_lyon)).exit_code == 0  # another generation
    before = _counts(db, "SELECT code_qp, insee_dep FROM qpv WHERE generation = '2024'")
    result = _ingest(db, "qpv", str(_qpv_13_file(tmp_path / "qpv_13_v1.geojson")), "--departements", "13")
    assert result.exit_code == 0, result.output
    assert "QPV 2024 : 2 ajouté(s), 71 remplacé(s) dans le 13, 64 conservé(s) ailleurs." in result.output
    after = _counts(db, "SELECT code_qp, insee_dep FROM qpv WHERE generation = '2024'")
    assert {c for c, d in after.items() if d == "13"} == {"QN01341I", "QN01354M"}
    assert {c: d for c, d in after.items() if d != "13"} == {c: d for c, d in before.items() if d != "13"}
    assert _counts(db, "SELECT generation, count(*) FROM qpv GROUP BY 1") == {"2024": 66, "2015": 37}
    sources = _sources(db)
    assert sources.loc["qpv_13_v1.geojson", ["rows_read", "rows_kept", "rows_quarantined", "rows_in_store"]].tolist() \
        == [3, 2, 1, 2]
    assert sources.loc["qpv_13_v1.geojson", "scope"] == "13"
    assert sources.loc["qpv2024_paca.geojson", "rows_in_store"] == 64  # what the first file still has
    assert "qpv_13_v1.geojson" in _quarantined_files(db)

    # The 13 loaded again from the full file: the first file has no row left and is forgotten,
    # with its quarantine.
    result = _ingest(db, "qpv", str(PROJECT_DATA / "geo" / "qpv2024_paca.geojson"), "--departements", "13")
    assert result.exit_code == 0, result.output
    assert "QPV 2024 : 71 ajouté(s), 2 remplacé(s) dans le 13, 64 conservé(s) ailleurs." in result.output
    assert "Le fichier « qpv_13_v1.geojson » n'a plus aucune ligne dans la base : il est retiré des sources" \
        in result.output
    sources = _sources(db)
    assert "qpv_13_v1.geojson" not in sources.index
    assert "qpv_13_v1.geojson" not in _quarantined_files(db)
    # a file loaded again under the same name is one record: its latest load, all its rows in the store
    assert sources.loc["qpv2024_paca.geojson", ["rows_read", "rows_in_store"]].tolist() == [71, 135]
    assert _counts(db, "SELECT generation, count(*) FROM qpv GROUP BY 1") == {"2024": 135, "2015": 37}


def test_communes_ingest_replaces_the_departements_of_the_file_and_keeps_the_others(db):
    before = _counts(db, "SELECT code_departement, count(*) FROM communes GROUP BY 1")
    assert before["13"] == 135 and before["84"] == 151
    result = _ingest(db, "communes", str(DATA / "communes" / "communes_extrait.parquet"), "--departements", "13,84")
    assert result.exit_code == 0, result.output
    assert ("Communes : 5 ajouté(s), 135 remplacé(s) dans le 13, 827 conservé(s) ailleurs ; aucune ligne pour le 84 "
            "dans ce fichier : ce que la base en avait est conservé.") in result.output
    after = _counts(db, "SELECT code_departement, count(*) FROM communes GROUP BY 1")
    assert after == {**before, "13": 5}  # the 84, named but absent from the file, is untouched
    codes = _counts(db, "SELECT code_insee, type_commune FROM communes WHERE code_departement = '13'")
    assert codes == {"13001": "COM", "13002": "COM", "13055": "COM", "13201": "ARM", "13202": "ARM"}
    # upper levels derived again from the communes now in the store
    population = _counts(db, "SELECT code_departement, population FROM departements")
    com = _counts(db, "SELECT 'x', sum(population) FROM communes WHERE code_departement = '13' "
                      "AND type_commune = 'COM'")
    assert population["13"] == com["x"] and len(population) == 6
    sources = _sources(db)
    assert sources.loc["communes_extrait.parquet", ["rows_kept", "rows_in_store", "scope"]].tolist() == [5, 5, "13"]
    assert sources.loc["communes_france.parquet", "rows_in_store"] == 962 - 135


def test_sirene_ingest_replaces_simulated_establishments_with_real_ones_and_says_so(db):
    from essmap.domain.formatting import format_number

    before = _counts(db, "SELECT code_departement, count(*) FILTER (WHERE is_synthetic) FROM etablissements GROUP BY 1")
    elsewhere = sum(n for d, n in before.items() if d != "13")
    result = _ingest(db, "sirene", str(DATA / "sirene" / "unites_legales_ess_extrait.csv"),
                     str(DATA / "sirene" / "StockEtablissement_extrait.csv"), "--departements", "13")
    assert result.exit_code == 0, result.output
    replaced = format_number(before["13"])
    assert (f"Établissements ESS : 4 ajouté(s), {replaced} remplacé(s) dans le 13, {format_number(elsewhere)} "
            f"conservé(s) ailleurs ; dont {replaced} ligne(s) simulée(s) remplacée(s) par des données réelles.") \
        in result.output
    after = _counts(db, "SELECT siret, is_synthetic FROM etablissements WHERE code_departement = '13'")
    assert after == {"10002917200010": False, "32407950800010": False, "44860472800015": False,
                     "80873710000012": False}
    assert _counts(db, "SELECT code_departement, count(*) FILTER (WHERE is_synthetic) FROM etablissements "
                       "WHERE code_departement <> '13' GROUP BY 1") == {d: n for d, n in before.items() if d != "13"}
    sources = _sources(db)
    real = sources.loc["unites_legales_ess_extrait.csv + StockEtablissement_extrait.csv"]
    assert [real["rows_read"], real["rows_kept"], real["rows_quarantined"], real["rows_in_store"]] == [6, 4, 2, 4]
    assert not real["is_synthetic"]
    simulated = sources.loc["StockUniteLegale_utf8.csv + StockEtablissement_utf8.csv"]
    assert simulated["rows_in_store"] == elsewhere and simulated["is_synthetic"]


def _places_csv(path: Path, places: list[tuple[str, str, float, float]]) -> Path:
    lines = ["id,nom,latitude,longitude"] + [f"{i},{n},{lat},{lon}" for i, n, lat, lon in places]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tiers_lieux_ingest_replaces_simulated_rows_its_own_previous_version_and_same_ids(db, tmp_path):
    places = [("r-06", "Lieu de Nice", 43.7000, 7.2600), ("r-13", "Lieu de Marseille", 43.2990, 5.3690),
              ("r-83", "Lieu de Toulon", 43.1250, 5.9300), ("r-84", "Lieu d'Avignon", 43.9490, 4.8050)]
    listing = _places_csv(tmp_path / "reseau_regional.csv", places)
    result = _ingest(db, "tiers-lieux", str(listing))
    assert result.exit_code == 0, result.output
    # the 14 simulated places were in 06, 13, 83 and 84: all replaced, their file forgotten
    assert ("Tiers-lieux : 4 ajouté(s), 14 remplacé(s) dans les départements 06, 13, 83, 84, 1 conservé(s) "
            "ailleurs ; dont 14 ligne(s) simulée(s) remplacée(s) par des données réelles.") in result.output
    assert "Le fichier « tiers_lieux_simules.csv » n'a plus aucune ligne dans la base" in result.output
    rows = _counts(db, "SELECT id_tiers_lieu, source_file FROM tiers_lieux")
    assert not _counts(db, "SELECT 'x', count(*) FROM tiers_lieux WHERE is_synthetic")["x"]
    assert sum(1 for f in rows.values() if f == "tiers_lieux_commune_mesure.csv") == 5  # other lists are kept
    assert "tiers_lieux_simules.csv" not in _sources(db).index

    # a new version of the same list (Toulon closed, Marseille renamed): its previous rows are replaced
    places = [places[0], ("r-13", "Nouveau lieu de Marseille", 43.2990, 5.3690), places[3]]
    result = _ingest(db, "tiers-lieux", str(_places_csv(listing, places)), "--departements", "06,13,83,84")
    assert result.exit_code == 0, result.output
    assert "Tiers-lieux : 3 ajouté(s), 4 remplacé(s) dans les départements 06, 13, 84" in result.output
    names = _counts(db, "SELECT id_tiers_lieu, nom FROM tiers_lieux WHERE source_file = 'reseau_regional.csv'")
    assert names == {"r-06": "Lieu de Nice", "r-13": "Nouveau lieu de Marseille", "r-84": "Lieu d'Avignon"}
    assert _sources(db).loc["reseau_regional.csv", "rows_in_store"] == 3


# --- Damaged or wrong files are refused, the store untouched ----------------------------------------


@pytest.fixture(scope="module")
def sirene_pair(tmp_path_factory, demo_settings) -> tuple[Path, Path]:
    """A real-format SIRENE stock pair for PACA (the synthetic generator's), without its manifest."""
    from essmap.demo.synthetic import write_demo_inputs
    from essmap.io.readers.communes import read_communes
    from essmap.io.readers.qpv import read_qpv

    folder = tmp_path_factory.mktemp("sirene")
    deps = list(demo_settings.demo_departements)
    communes = read_communes(demo_settings.geo_dir / "communes_france.parquet", departements=deps)
    qpv = read_qpv(demo_settings.geo_dir / "qpv2024_paca.geojson", departements=deps)
    files = write_demo_inputs(folder, communes.frame, qpv.frame, seed=7, scale=0.05)
    files.manifest.unlink()
    return files.unites_legales, files.etablissements


def _refused(db, *args: str, expect: list[str]):
    """Run an ingest that must be refused: exit 1, French message holding ``expect``, store unchanged."""
    before = db.read_bytes()
    result = runner.invoke(app, ["ingest", *args, "--db", str(db)])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    for text in expect:
        assert text in message, message
    assert "Traceback" not in result.output and "Error" not in result.output
    assert f"La base « {db} » n'a pas été modifiée." in message
    assert db.read_bytes() == before
    return message


def test_sirene_stock_cut_mid_row_is_refused(db, tmp_path, sirene_pair):
    unites, etablissements = sirene_pair
    cut = tmp_path / "StockEtablissement_utf8.csv"
    content = etablissements.read_bytes()
    cut.write_bytes(content[: len(content) * 2 // 5])  # a download stopped at 40 %
    lines = cut.read_bytes().count(b"\n") + 1
    _refused(db, "sirene", str(unites), str(cut), "--departements", "13",
             expect=["« StockEtablissement_utf8.csv »", f"ligne {lines}", "le fichier est tronqué",
                     "retéléchargez"])


def test_sirene_gzip_cut_is_refused(db, tmp_path, sirene_pair):
    unites, etablissements = sirene_pair
    packed = gzip.compress(etablissements.read_bytes())
    cut = tmp_path / "StockEtablissement_utf8.csv.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    _refused(db, "sirene", str(unites), str(cut), expect=["archive gzip tronquée", "retéléchargez"])


def test_sirene_header_over_misaligned_data_is_refused(db, tmp_path, sirene_pair):
    unites, etablissements = sirene_pair
    header, *rows = etablissements.read_text(encoding="utf-8").splitlines()
    shifted = tmp_path / "StockEtablissement_utf8.csv"
    shifted.write_text("\n".join([header, *(f"X,{row}" for row in rows)]) + "\n", encoding="utf-8")
    _refused(db, "sirene", str(unites), str(shifted), "--departements", "13",
             expect=["ligne 2, colonne « siren »", "les valeurs ne correspondent pas à l'en-tête", "(ex. « X »)"])
    # a column missing in every record (values one place to the left)
    dropped = tmp_path / "StockEtablissement_court.csv"
    dropped.write_text("\n".join([header, *(row.split(",", 1)[1] for row in rows)]) + "\n", encoding="utf-8")
    _refused(db, "sirene", str(unites), str(dropped),
             expect=["ligne 2", "l'en-tête et les données sont décalés", "53 valeurs pour 54 colonnes"])


def test_files_of_the_wrong_kind_are_refused_with_the_right_command(db, tmp_path):
    _refused(db, "communes", str(DATA / "qpv" / "qpv2024_paca_extrait.geojson"),
             expect=["ressemble à un fichier de QPV", "`essmap ingest qpv qpv2024_paca_extrait.geojson`"])
    _refused(db, "qpv", str(DATA / "communes" / "COMMUNE.shp"),
             expect=["ressemble à un fichier de communes", "`essmap ingest communes COMMUNE.shp`"])
    _refused(db, "qpv", str(DATA / "communes" / "communes_extrait.parquet"),
             expect=["ressemble à un fichier de communes"])
    for source in ("qpv", "communes"):
        _refused(db, source, str(DATA / "tiers_lieux" / "tiers_lieux_commune_mesure.csv"),
                 expect=["un fichier CSV ne contient pas de contours",
                         "Il ressemble à une liste de tiers-lieux : chargez-le avec `essmap ingest tiers-lieux`"])
    _refused(db, "tiers-lieux", str(DATA / "tiers_lieux"),
             expect=["« tiers_lieux » : c'est un dossier, pas un fichier", "tiers_lieux_commune_mesure.csv"])


def _without_crs(frame, path: Path) -> Path:
    frame.to_file(path, driver="GeoJSON")
    collection = json.loads(path.read_text(encoding="utf-8"))
    collection.pop("crs", None)
    path.write_text(json.dumps(collection), encoding="utf-8")
    return path


def test_projected_geojson_without_crs_is_refused_naming_its_projection(db, tmp_path):
    import geopandas as gpd

    qpv = gpd.read_file(DATA / "qpv" / "qpv2024_paca_extrait.geojson").to_crs(2154)
    qpv["com"] = qpv["com"].astype(str)
    _refused(db, "qpv", str(_without_crs(qpv, tmp_path / "qpv_l93.geojson")),
             expect=["les coordonnées sont en mètres, pas en degrés", "ressemblent à la projection Lambert-93 "
                     "(EPSG:2154)", "ogr2ogr -s_srs EPSG:2154 -t_srs EPSG:4326"])
    communes = gpd.read_parquet(DATA / "communes" / "communes_extrait.parquet")
    reunion = communes[communes["code_departement"] == "974"].to_crs(2975)
    _refused(db, "communes", str(_without_crs(reunion, tmp_path / "communes_974.geojson")),
             expect=["ressemblent à la projection UTM zone 40 Sud de La Réunion (EPSG:2975)"])


def test_a_file_whose_rows_are_all_quarantined_is_refused(db, tmp_path):
    listing = tmp_path / "lieux_sans_position.csv"
    listing.write_text("nom,latitude,longitude\nLieu A,,\nLieu B,,\n", encoding="utf-8")
    _refused(db, "tiers-lieux", str(listing),
             expect=["aucune ligne utilisable : les 2 ligne(s) lue(s) sont toutes en quarantaine",
                     "coordonnées absentes", "ligne 2"])
    _refused(db, "qpv", str(DATA / "qpv" / "qpv2024_paca_extrait.geojson"), "--departements", "05",
             expect=["rien à charger : aucune ligne dans les départements demandés (05)"])


def test_unknown_or_absurd_departements_are_refused_like_queries_do(db, tmp_path):
    pair = [str(DATA / "sirene" / "unites_legales_ess_extrait.csv"),
            str(DATA / "sirene" / "StockEtablissement_extrait.csv")]
    _refused(db, "sirene", *pair, "--departements", "99", expect=["Département inconnu : « 99 »"])
    message = _refused(db, "qpv", str(DATA / "qpv" / "qpv2015_lyon.geojson"), "--departements", "1" * 5000,
                       expect=["Département inconnu : « 111111111111… (5000 caractères) »"])
    assert len(message) < 500
    # known but not in the store: the same refusal as `essmap query`
    _refused(db, "sirene", *pair, "--departements", "13,69",
             expect=["Département(s) 69 absent(s) de la base. Départements chargés : 04, 05, 06, 13, 83, 84.",
                     "`essmap ingest communes`"])


def test_escape_sequences_from_a_file_never_reach_the_terminal(db, tmp_path):
    listing = tmp_path / "lieux\x1b[2J.csv"
    listing.write_text("\x1b]0;pwned\x07nom_\x1b[31mrouge,lat\n[bold]x[/bold],43.3\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", "tiers-lieux", str(listing), "--db", str(db)])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;pwned\\x07nom_\\x1b[31mrouge" in result.output  # shown, escaped
    assert "lieux\\x1b[2J.csv" in result.output


def test_unexpected_errors_are_french_without_traceback(db, tmp_path, monkeypatch):
    """A bug below the CLI (here a reader that raises KeyError) still ends in a French message."""
    import essmap.store.ingest as ingest_module

    def broken(*_args, **_kwargs):
        raise KeyError("colonne_interne")

    monkeypatch.setattr(ingest_module, "read_qpv", broken)
    before = db.read_bytes()
    result = runner.invoke(app, ["ingest", "qpv", str(DATA / "qpv" / "qpv2015_lyon.geojson"), "--db", str(db)])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "erreur inattendue (détail technique : KeyError : 'colonne_interne')" in message
    assert "ESSMAP_DEBUG=1" in message and f"La base « {db} » n'a pas été modifiée." in message
    assert db.read_bytes() == before


# --- Read-only folder, full disk: real file systems (tmpfs in a private mount namespace) -------------


def _namespace_available() -> bool:
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


needs_mount = pytest.mark.skipif(not _namespace_available(),
                                 reason="needs root and unshare to mount a small tmpfs in a private namespace")


def _in_small_filesystem(tmp_path: Path, script: str, *, size: int, read_only: bool = False) -> str:
    """Run ``script`` (sh) with a fresh tmpfs of ``size`` bytes mounted on ``$FS``, in a private
    mount namespace (the mount disappears with the process); ``$STORE`` is a copy of the demo store
    in it, and the tmpfs is remounted read-only first when asked. ``$ESSMAP`` runs the command with
    its standard error merged into the output, in order."""
    fs = tmp_path / "fs"
    fs.mkdir()
    wrapper = tmp_path / "essmap-cli"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m essmap.cli "$@" 2>&1\n', encoding="utf-8")
    wrapper.chmod(0o755)
    essmap = str(wrapper)
    prelude = (f"mount -t tmpfs -o size={size} tmpfs {fs} && cp {tmp_path / 'store.duckdb'} {fs}/essmap.duckdb && "
               + (f"mount -o remount,ro {fs} && " if read_only else ""))
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", prelude + script],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "FS": str(fs), "STORE": f"{fs}/essmap.duckdb", "ESSMAP": essmap, "COLUMNS": "250"},
    )
    assert done.stderr == "", done.stderr
    return done.stdout


@needs_mount
@pytest.mark.slow
@pytest.mark.parametrize("room", ["copy", "write"])
def test_ingest_on_a_full_disk_is_refused_in_french_and_leaves_no_temporary_file(tmp_path, demo_db, room):
    """``copy``: not even room for the temporary copy; ``write``: the copy fits, DuckDB's writes do not."""
    shutil.copyfile(demo_db, tmp_path / "store.duckdb")
    size = demo_db.stat().st_size
    free = {"copy": size // 2, "write": size + 150_000}[room]
    out = _in_small_filesystem(tmp_path, (
        'sha256sum "$STORE" | cut -c1-64; '
        f'$ESSMAP ingest qpv {DATA / "qpv" / "qpv2015_lyon.geojson"} --db "$STORE"; echo "exit=$?"; '
        'sha256sum "$STORE" | cut -c1-64; ls "$FS"'), size=size + free)
    lines = out.splitlines()
    message = " ".join(out.split())
    assert "exit=1" in lines
    assert "plus d'espace disque dans" in message and "libérez de la place" in message
    assert "la base précédente « essmap.duckdb » est intacte" in message
    assert "Traceback" not in out and "No space left" not in out
    assert lines[0] == lines[lines.index("exit=1") + 1]  # the store is byte-identical
    assert lines[-2:] == ["essmap.duckdb", "essmap.duckdb.lock"]  # no temporary copy, no .wal


@needs_mount
@pytest.mark.slow
def test_ingest_and_build_in_a_read_only_folder_are_refused_in_french(tmp_path, demo_db):
    shutil.copyfile(demo_db, tmp_path / "store.duckdb")
    out = _in_small_filesystem(tmp_path, (
        f'$ESSMAP ingest qpv {DATA / "qpv" / "qpv2015_lyon.geojson"} --db "$STORE"; echo "exit=$?"; '
        '$ESSMAP build --scale 0.01 --db "$FS/nouvelle.duckdb"; echo "exit=$?"; '
        '$ESSMAP info --db "$STORE" > /dev/null; echo "exit=$?"'),
        size=demo_db.stat().st_size + 1_000_000, read_only=True)
    message = " ".join(out.split())
    assert [line for line in out.splitlines() if line.startswith("exit=")] == ["exit=1", "exit=1", "exit=0"]
    assert message.count("dossier en lecture seule ou droits insuffisants") == 2
    assert "choisissez un dossier accessible en écriture avec --db" in message
    assert "Traceback" not in out


# --- info --quarantaine: bounded output --------------------------------------------------------------


def _with_quarantine(db: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect(str(db))
    try:
        con.execute(
            "INSERT INTO quarantine SELECT 'sirene', 'StockEtablissement_utf8.csv', i + 2, 'siret', "
            "CASE WHEN i % 1000 = 0 THEN '=HYPERLINK(\"http://x\")' ELSE lpad(i::VARCHAR, 13, '0') END, "
            "'SIRET invalide : 14 chiffres attendus (13 caractères)' FROM range(?) t(i)", [rows])
    finally:
        con.close()


def test_info_quarantine_shows_a_page_and_writes_every_row_to_csv(db, tmp_path):
    _with_quarantine(db, 2_500)
    result = runner.invoke(app, ["info", "--db", str(db), "--quarantaine", "--limite", "10"])
    assert result.exit_code == 0, result.output
    assert "… et 2 497 autre(s) ligne(s) en quarantaine (sur 2 507)" in result.output.replace("\u202f", " ")
    out = tmp_path / "quarantaine.csv"
    result = runner.invoke(app, ["info", "--db", str(db), "--quarantaine-csv", str(out)])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["source", "file_name", "row_number", "column_name", "value", "reason"]
    assert len(table) == 2_507
    assert (table["value"] == "'=HYPERLINK(\"http://x\")").sum() == 3  # inert in a spreadsheet
    again = runner.invoke(app, ["info", "--db", str(db), "--quarantaine-csv", str(out)])
    assert again.exit_code == 1 and "existe déjà" in again.output and "--force" in again.output


#: Runs a command and prints its exit status and peak resident set size (MB). A child forked from
#: the test process would report the test process's own peak (Linux keeps the high-water mark across
#: exec), so the command is started by this small launcher and measured with ``os.wait4``.
_MEASURE = ("import os, subprocess, sys; child = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], 'wb'), "
            "stderr=subprocess.STDOUT); _pid, status, usage = os.wait4(child.pid, 0); "
            "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024)")


def _measured(args: list[str], out: Path) -> tuple[float, float, int]:
    """Run ``essmap ARGS`` in a child process: (seconds, peak resident MB, exit status)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(out), sys.executable, "-m", "essmap.cli", *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    seconds = time.monotonic() - start
    status, peak = done.stdout.split()
    return seconds, float(peak), int(status)


@pytest.mark.slow
def test_info_on_490_000_quarantined_rows_takes_seconds_and_bounded_memory(tmp_path, demo_db):
    """The issue's case: `info --quarantaine` on 490,000 rows ran past 300 s and 4.1 GB."""
    import duckdb

    db = tmp_path / "essmap.duckdb"
    shutil.copyfile(demo_db, db)
    con = duckdb.connect(str(db))
    try:
        con.execute(
            "INSERT INTO quarantine SELECT 'sirene', 'StockEtablissement_utf8.csv', i + 2, "
            "'coordonneeLambertAbscisseEtablissement', 'x=' || (600000 + i % 500000)::VARCHAR || '.4 ; y=' || "
            "(6200000 + i % 900000)::VARCHAR || '.1 ; ' || repeat('libellé ', (i % 20)::INT), "
            "CASE i % 3 WHEN 0 THEN 'coordonnées absentes : établissement non géolocalisé' "
            "WHEN 1 THEN 'SIRET invalide : clé de contrôle (Luhn) incorrecte' "
            "ELSE 'coordonnées hors du territoire du département (France métropolitaine)' END "
            "FROM range(490000 - 7) t(i)")  # and the 7 rows of the demo
    finally:
        con.close()
    load = os.getloadavg()[0]
    seconds, peak_mb, status = _measured(["info", "--db", str(db), "--quarantaine"], tmp_path / "page.txt")
    page = (tmp_path / "page.txt").read_text(encoding="utf-8")
    assert status == 0, page
    assert "… et 489 000 autre(s) ligne(s) en quarantaine (sur 490 000)" in page.replace("\u202f", " ")
    assert seconds < 60 and peak_mb < 500, (seconds, peak_mb, load)

    target = tmp_path / "quarantaine.csv"
    seconds_csv, peak_csv, status = _measured(["info", "--db", str(db), "--quarantaine-csv", str(target)],
                                              tmp_path / "csv.txt")
    assert status == 0, (tmp_path / "csv.txt").read_text(encoding="utf-8")
    with open(target, encoding="utf-8-sig") as fh:
        assert sum(1 for _ in fh) == 490_001
    assert seconds_csv < 90 and peak_csv < 500, (seconds_csv, peak_csv, load)
    print(f"info --quarantaine: {seconds:.1f} s, {peak_mb:.0f} MB; --quarantaine-csv: {seconds_csv:.1f} s, "
          f"{peak_csv:.0f} MB (load {load:.1f})")
