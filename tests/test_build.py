"""The embedded demo build, end to end through the readers, and its atomicity."""

from __future__ import annotations

import shutil

import pytest

from essmap import store
from essmap.demo.build import build_demo
from essmap.domain.config import Settings
from essmap.domain.errors import BuildError, InputFileError

PACA_POPULATION = 5_030_890  # populations légales (2017 vintage) of the 946 communes of PACA


@pytest.fixture(scope="module")
def con(demo_db):
    con = store.connect(demo_db)
    yield con
    con.close()


def test_demo_has_real_geography(con):
    communes = store.read_layer(con, "communes")
    com = communes[communes["type_commune"] == "COM"]
    assert len(com) == 946
    assert com["population"].sum() == PACA_POPULATION
    assert set(com["code_departement"]) == {"04", "05", "06", "13", "83", "84"}
    assert (communes["type_commune"] == "ARM").sum() == 16  # Marseille's arrondissements
    regions = store.read_layer(con, "regions")
    assert regions["code_region"].tolist() == ["93"]
    assert regions["population"].tolist() == [PACA_POPULATION]
    assert regions["nom"].tolist() == ["Provence-Alpes-Côte d'Azur"]
    deps = store.read_layer(con, "departements").set_index("code_departement")
    assert deps.loc["13", "nom"] == "Bouches-du-Rhône"
    assert deps["population"].sum() == PACA_POPULATION
    qpv = store.read_layer(con, "qpv")
    assert len(qpv) == 135
    assert set(qpv["generation"]) == {"2024"}
    assert qpv["insee_dep"].value_counts().to_dict() == {"13": 71, "83": 23, "84": 23, "06": 14, "04": 3, "05": 1}
    assert (qpv["epsg_metrique"] == 2154).all()


def test_demo_establishments_are_synthetic_and_labelled(con):
    etab = store.read_layer(con, "etablissements")
    assert len(etab) > 500
    assert etab["is_synthetic"].all()
    assert etab["denomination"].str.contains("SIMUL").all()
    assert etab["siret"].str.fullmatch(r"\d{14}").all()
    assert set(etab["code_departement"]) <= {"04", "05", "06", "13", "83", "84"}
    sources = store.sources(con).set_index("source")
    assert bool(sources.loc["sirene", "is_synthetic"]) is True


def test_demo_tiers_lieux_mix_real_and_synthetic(con):
    tl = store.read_layer(con, "tiers_lieux")
    real = tl[~tl["is_synthetic"]]
    assert "Coco velten" in set(real["nom"])  # Marseille, from the Commune Mesure list
    assert set(real["code_departement"]) <= {"04", "05", "06", "13", "83", "84"}
    assert tl["is_synthetic"].any()
    assert tl["id_tiers_lieu"].is_unique


def test_sources_and_quarantine_are_recorded(con):
    src = store.sources(con)
    assert {"communes", "qpv", "sirene", "tiers_lieux"} <= set(src["source"])
    assert src["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    qpv = src[src["source"] == "qpv"].iloc[0]
    assert qpv["file_name"] == "qpv2024_paca.geojson"
    assert "2024" in qpv["generation"]
    # every real file says which millésime it is, for the source lines of exports
    real = src[~src["is_synthetic"].astype(bool)].set_index("file_name")["generation"]
    assert real["communes_france.parquet"] == "populations légales 2017"
    assert real["tiers_lieux_commune_mesure.csv"] == "2022"
    assert real["france_tiers_lieux_2023_numerique_extrait.csv"] == "2023"
    quarantine = store.quarantine_rows(con)
    # the census extract has no coordinates: its PACA rows are kept in quarantine, not dropped
    census = quarantine[quarantine["file_name"] == "france_tiers_lieux_2023_numerique_extrait.csv"]
    assert len(census) >= 1
    assert census["reason"].str.contains("coordonnées absentes").all()


def _copy_data(tmp_path, settings: Settings) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(settings.data_dir / "geo", data / "geo")
    shutil.copytree(settings.data_dir / "raw", data / "raw")
    return Settings(data_dir=data, db_path=tmp_path / "essmap.duckdb", cache_dir=tmp_path / "cache")


def test_build_failing_while_reading_leaves_previous_database_intact(tmp_path, demo_settings, demo_db):
    settings = _copy_data(tmp_path, demo_settings)
    shutil.copyfile(demo_db, settings.db_path)
    before = settings.db_path.read_bytes()
    (settings.geo_dir / "qpv2024_paca.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputFileError, match="qpv2024_paca.geojson"):
        build_demo(settings, scale=0.01)
    assert settings.db_path.read_bytes() == before


def test_build_failing_half_way_through_writing_leaves_previous_database_intact(tmp_path, demo_settings, demo_db):
    settings = _copy_data(tmp_path, demo_settings)
    shutil.copyfile(demo_db, settings.db_path)
    before = settings.db_path.read_bytes()
    # the EPCI names are read while the new database is being written
    (settings.raw_dir / "epci_france.csv").write_text("siren,libelle\n200054807,Métropole\n", encoding="utf-8")
    with pytest.raises(BuildError) as excinfo:
        build_demo(settings, scale=0.01)
    message = str(excinfo.value)
    assert "intacte" in message and "epci_france.csv" in message
    assert settings.db_path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    con = store.connect(settings.db_path)
    assert len(store.read_layer(con, "qpv")) == 135
    con.close()


def test_qpv_commune_names_are_filled_from_the_communes(con):
    qpv = store.read_layer(con, "qpv").set_index("code_qp")
    assert qpv.loc["QN01354M", "lib_com"] == "Marseille"
    assert qpv["lib_com"].notna().all()
