"""Census tiers-lieux placed offline, through the store and the CLI: precision stored, places known by
their commune only shown at its centre but never in radius queries, France-wide shares printed."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from essmap import geo, store
from essmap.analysis import coverage, proximity
from essmap.cli import app
from essmap.domain import schema
from essmap.domain.selection import Selection
from essmap.present.viewdata import radius_table, tiers_lieux_table
from essmap.render.maps import tiers_lieu_popup

DATA = Path(__file__).resolve().parent / "data" / "placement"
CENSUS = DATA / "recensement_tiers_lieux_2023_extrait.csv"
GEOLOC = DATA / "GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_extrait.csv"
BAN = sorted(DATA.glob("adresses-*.csv.gz"))

runner = CliRunner(env={"COLUMNS": "220"})


@pytest.fixture(scope="module")
def placed_db(tmp_path_factory, demo_db) -> Path:
    """The demo store with the census rows ingested by the CLI, placed with the SIRENE geolocation
    file and the BAN files."""
    path = tmp_path_factory.mktemp("placement") / "essmap.duckdb"
    shutil.copyfile(demo_db, path)
    args = ["ingest", "tiers-lieux", str(CENSUS), "--geoloc", str(GEOLOC)]
    for ban in BAN:
        args += ["--ban", str(ban)]
    result = runner.invoke(app, [*args, "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "3 commune seulement" in text and "hors des calculs de rayon" in text
    return path


def _tiers_lieux(db: Path) -> pd.DataFrame:
    con = store.connect(db)
    try:
        return con.execute(
            "SELECT id_tiers_lieu, precision_localisation, code_commune, code_com, longitude, latitude, "
            "is_synthetic FROM tiers_lieux"
        ).df().set_index("id_tiers_lieu")
    finally:
        con.close()


def test_each_row_records_how_it_was_placed(placed_db):
    rows = _tiers_lieux(placed_db)
    census = rows.loc[["71", "131", "1164", "1482", "1120", "1499", "90003"]]
    assert census["precision_localisation"].tolist() == [
        schema.LOCATION_BAN_NUMBER, schema.LOCATION_SIRET, schema.LOCATION_BAN_NUMBER, schema.LOCATION_SIRET,
        schema.LOCATION_COMMUNE, schema.LOCATION_COMMUNE, schema.LOCATION_COMMUNE,
    ]
    # the Commune Mesure tiers-lieux kept came with their coordinates; the real census replaced the
    # simulated tiers-lieux of the départements it covers (the replacement rules)
    others = rows.drop(index=[i for i in rows.index if i in set(CENSUS_IDS)])
    assert len(others) > 0 and (others["precision_localisation"] == schema.LOCATION_PROVIDED).all()
    assert not others["is_synthetic"].any()


def test_the_demo_tiers_lieux_have_their_coordinates(demo_db):
    rows = _tiers_lieux(demo_db)
    assert (rows["precision_localisation"] == schema.LOCATION_PROVIDED).all()
    assert rows["is_synthetic"].sum() > 0 and (~rows["is_synthetic"]).sum() > 0
    assert rows["longitude"].notna().all()


CENSUS_IDS = ("71", "131", "309", "1120", "1164", "1165", "1312", "1482", "1499", "1509", "90001", "90002", "90003")


def test_a_place_known_by_its_commune_is_at_the_commune_centre(placed_db):
    rows = _tiers_lieux(placed_db)
    con = store.connect(placed_db)
    try:
        aix = store.read_layer(con, "communes", columns=["code_insee"])
    finally:
        con.close()
    aix = aix[aix["code_insee"] == "13001"].geometry.iloc[0]
    point = shapely.Point(rows.loc["90003", "longitude"], rows.loc["90003", "latitude"])
    assert aix.contains(point)
    assert point.distance(aix.centroid) < 1e-9 or not aix.contains(aix.centroid)
    # communes the store does not hold (93, 2B): kept, without a point
    assert rows.loc[["1120", "1499"], "longitude"].isna().all()


def test_commune_only_places_never_enter_radius_queries(placed_db):
    con = store.connect(placed_db)
    try:
        pairs = con.execute("SELECT DISTINCT id_tiers_lieu FROM qpv_tiers_lieux").df()["id_tiers_lieu"]
        assert "90003" not in set(pairs)
        assert {"71", "131", "90002"} <= set(pairs)  # placed ones are paired
        # ...although Aix's centre lies within the stored radius of a QPV: it would have been paired
        point = store.read_layer(con, "tiers_lieux", columns=["id_tiers_lieu", "territoire"])
        point = point[point["id_tiers_lieu"] == "90003"].reset_index(drop=True)
        qpv = store.read_layer(con, "qpv", columns=["code_qp", "territoire"])
        assert geo.within_distance(point, qpv, schema.STORED_RADIUS_M).shape[0] > 0
        selection = Selection(departements=("13",))
        assert coverage.approximate_tiers_lieux(con, selection) == 1
        result = coverage.qpv_coverage(con, selection, radius_m=20_000)  # beyond the stored pairs
        assert "90003" not in set(result["nearest_id"].dropna())
        status = proximity.tiers_lieux_qpv_status(
            store.read_layer(con, "tiers_lieux"), store.read_layer(con, "qpv", columns=["code_qp", "lib_qp"]))
    finally:
        con.close()
    tiers_lieux_status = status  # aligned on the layer read
    assert (tiers_lieux_status["status"] == schema.APPROXIMATE_LOCATION_FR).sum() == 3


def test_qpv_radius_says_what_was_left_out_and_shows_the_precision(placed_db, tmp_path):
    out = tmp_path / "qpv.csv"
    result = runner.invoke(app, ["query", "qpv-radius", "--departement", "13", "--out", str(out),
                                 "--db", str(placed_db)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 tiers-lieu(x) placé(s) à leur commune seulement (localisation approximative) laissé(s) hors du calcul" \
        in text
    table = pd.read_csv(out, dtype=str)
    assert "nearest_localisation" in table.columns
    nearest = table.set_index("nearest_id")["nearest_localisation"].dropna().to_dict()
    assert nearest.get("131") == schema.LOCATION_SIRET or nearest.get("90002") == schema.LOCATION_BAN_NUMBER
    assert schema.LOCATION_COMMUNE not in set(table["nearest_localisation"].dropna())


def test_qpv_radius_france_prints_the_two_published_shares(placed_db):
    result = runner.invoke(app, ["query", "qpv-radius", "--france", "--out", "-", "--db", str(placed_db)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    con = store.connect(placed_db)
    try:
        share, near, total, _ = coverage.tiers_lieux_near_qpv_share(con, Selection(), radius_m=1000)
        expected_total = con.execute(
            "SELECT count(*) FROM tiers_lieux WHERE longitude IS NOT NULL AND precision_localisation <> ?",
            [schema.LOCATION_COMMUNE]).fetchone()[0]
        near_sql = con.execute(
            "SELECT count(DISTINCT id_tiers_lieu) FROM qpv_tiers_lieux WHERE generation = '2024' AND distance_m <= 1000"
        ).fetchone()[0]
    finally:
        con.close()
    assert total == expected_total and near == near_sql and 0 < near < total
    assert f"({near} sur {total} localisés précisément)" in text.replace("\u202f", " ")
    assert "Tiers-lieux dans un QPV ou à moins de 1 000 m" in text.replace("\u202f", " ")
    assert "publié : 31,0 %" in text.replace("\u202f", " ") and "publié : 36,0 %" in text.replace("\u202f", " ")
    assert "3 tiers-lieu(x) placé(s) à leur commune seulement" in text
    # the whole store: every QPV of the store is a row
    csv_part = result.stdout[result.stdout.index("code_qp"):]
    assert len(pd.read_csv(io.StringIO(csv_part))) == 135


def test_france_and_departement_exclude_each_other(placed_db):
    result = runner.invoke(app, ["query", "qpv-radius", "--france", "--departement", "13", "--db", str(placed_db)])
    assert result.exit_code == 1
    assert "--france et --departement s'excluent" in result.output


def test_placement_files_only_with_tiers_lieux(placed_db):
    result = runner.invoke(app, ["ingest", "qpv", str(CENSUS), "--ban", str(BAN[0]), "--db", str(placed_db)])
    assert result.exit_code == 1
    assert "indiquez-les avec la source tiers-lieux" in " ".join(result.output.split())


def test_tables_and_popups_show_the_precision(placed_db):
    con = store.connect(placed_db)
    try:
        points = store.read_layer(con, "tiers_lieux")
        radius_result = coverage.qpv_coverage(con, Selection(departements=("13",)), radius_m=1000)
    finally:
        con.close()
    points = points[points["id_tiers_lieu"].isin(["90003", "131"])].sort_values("id_tiers_lieu")
    table = tiers_lieux_table(points)
    assert table["Localisation"].tolist() == [
        schema.LOCATION_SIRET, f"{schema.LOCATION_COMMUNE} ({schema.APPROXIMATE_LOCATION_FR})"]
    popup = {prefix: values.tolist() for _style, prefix, values in tiers_lieu_popup(points)}
    assert popup["Localisation : "][1] == "commune seulement (localisation approximative)"
    radius = radius_table(radius_result, count_label="n", nearest_label="plus proche")
    assert "Localisation du plus proche" in radius.columns
    assert isinstance(points, gpd.GeoDataFrame)
