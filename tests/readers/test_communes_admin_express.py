"""ADMIN EXPRESS editions 4.0 (2025 on) and 3.x: same communes whatever the edition and the form.

Fixtures: ``tests/data/communes/admin_express`` (real boundaries of the 84, Marseille and three
arrondissements, Saint-Denis with its two SIREN, the Île-de-Sein without EPCI), rebuilt by
``tests/data/make_admin_express_fixtures.py``. Damaged variants are written here, in tmp folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from essmap.domain import schema
from essmap.domain.config import PROJECT_ROOT
from essmap.domain.errors import InputFileError
from essmap.io.readers.communes import combine_names, epci_type_of_nature, read_communes
from essmap.store.ingest import ingest_files

DATA = Path(__file__).resolve().parents[1] / "data" / "communes" / "admin_express"
GPKG_4 = DATA / "ADMIN-EXPRESS-COG_4-0__GPKG_LAMB93_FXX_2025-extrait.gpkg"
GPKG_3 = DATA / "ADMIN-EXPRESS-COG_3-2__GPKG_LAMB93_FXX_2024-extrait.gpkg"
SHP_3 = DATA / "ADE-COG_3-2_SHP_LAMB93_FXX_2024-extrait" / "COMMUNE.shp"
NATIONAL = PROJECT_ROOT / "data" / "geo" / "communes_france.parquet"
ATTRIBUTES = [c for c in schema.COMMUNES]


@pytest.fixture(scope="module")
def edition_4():
    return read_communes(GPKG_4)


def _layers(path: Path) -> dict[str, gpd.GeoDataFrame]:
    return {name: gpd.read_file(path, layer=name, engine="pyogrio") for name, _ in pyogrio.list_layers(path)}


def _write_layers(path: Path, layers: dict[str, gpd.GeoDataFrame]) -> Path:
    for name, frame in layers.items():
        frame.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
    return path


def test_edition_4_names_epci_regions_and_populations(edition_4):
    frame = edition_4.frame.set_index("code_insee")
    assert edition_4.meta.warnings == [] and edition_4.quarantine.empty
    assert (edition_4.meta.rows_read, edition_4.meta.rows_kept, edition_4.meta.generation) == (157, 157, "2025")
    communes_84 = frame[frame["code_departement"] == "84"]
    assert len(communes_84) == 151
    assert communes_84["nom"].notna().all() and communes_84["siren_epci"].notna().all()
    assert communes_84["siren_epci"].nunique() == 14 and set(communes_84["code_region"]) == {"93"}
    assert frame.loc["84007", ["nom", "population", "siren_epci"]].tolist() == ["Avignon", 91921, "248400251"]
    assert frame.loc["93066", "siren_epci"] == "200054781"  # "200054781/200057867": the first, the MGP
    assert frame.loc["29155", "siren_epci"] is pd.NA  # "NR": no EPCI, not a code
    # arrondissements: the 4.0 parent column, and their parent's région and EPCI
    assert frame.loc["13201", ["type_commune", "code_commune_parent", "code_departement", "code_region",
                               "siren_epci"]].tolist() == ["ARM", "13055", "13", "93", "200054807"]
    national = gpd.read_parquet(NATIONAL, filters=[("code_insee", "=", "84007")])
    np.testing.assert_allclose(shapely.get_coordinates(frame.loc["84007", "geometry"]),
                               shapely.get_coordinates(national.geometry.iloc[0]), atol=1e-6)


def test_the_three_forms_give_the_same_communes(edition_4):
    expected = edition_4.frame.sort_values("code_insee").reset_index(drop=True)
    for path in (GPKG_3, SHP_3):
        read = read_communes(path)
        assert read.meta.warnings == [], path.name
        got = read.frame.sort_values("code_insee").reset_index(drop=True)
        pd.testing.assert_frame_equal(pd.DataFrame(got[ATTRIBUTES]), pd.DataFrame(expected[ATTRIBUTES]))
        assert all(a.equals_exact(b, 1e-7) for a, b in zip(got.geometry, expected.geometry, strict=True))
        pd.testing.assert_frame_equal(read.epci_names, edition_4.epci_names)


def test_epci_layer_gives_names_and_types(edition_4):
    names = edition_4.epci_names.set_index("siren_epci")
    assert len(names) == 16  # 14 of the 84, Marseille's, the MGP and the EPT of Saint-Denis
    assert names.loc["248400251", ["nom", "type"]].tolist() == ["Communauté d'agglomération du Grand Avignon "
                                                                "(COGA)", "CA"]
    assert names.loc["200054807", "type"] == "ME" and names.loc["200057867", "type"] == "EPT"
    assert epci_type_of_nature(pd.Series(["Communauté de communes", "CU", "Pôle métropolitain", None])).tolist() == [
        "CC", "CU", "Pôle métropolitain", pd.NA]


def test_departement_filter_on_edition_4():
    read = read_communes(GPKG_4, departements=["84"])
    assert len(read.frame) == 151 and read.meta.rows_read == 151


@pytest.mark.parametrize("path", [GPKG_4, GPKG_3, SHP_3], ids=["4.0", "3.x gpkg", "3.x shp"])
def test_departement_filter_gives_what_a_whole_read_gives(path):
    """Both editions: the filtered read (GDAL attribute filter) keeps exactly the communes, and the
    arrondissements, that a whole read filtered afterwards keeps."""
    whole = read_communes(path).frame
    for deps in (["13"], ["84", "93"], ["2A"]):
        read = read_communes(path, departements=deps)
        expected = whole[whole["code_departement"].isin(deps)].sort_values("code_insee").reset_index(drop=True)
        got = read.frame.sort_values("code_insee").reset_index(drop=True)
        assert read.meta.rows_read == len(expected), deps
        pd.testing.assert_frame_equal(pd.DataFrame(got[ATTRIBUTES]), pd.DataFrame(expected[ATTRIBUTES]))
        assert all(a.equals_exact(b, 0) for a, b in zip(got.geometry, expected.geometry, strict=True))
    assert read.frame.empty and "aucune commune dans les départements demandés (2A)" in read.meta.warnings[0]


def test_filtered_read_keeps_the_row_numbers_of_a_whole_read(tmp_path):
    layers = _layers(GPKG_4)
    commune = layers["commune"]
    # two bad rows of the 84, far apart in the layer: their row numbers must be those of a whole read
    bad = commune.index[commune["code_insee_du_departement"] == "84"][[3, 140]]
    commune.loc[bad[0], "code_insee"] = "84ZZZ"
    commune.loc[bad[1], commune.geometry.name] = None
    layers["commune"] = commune
    path = _write_layers(tmp_path / "ae4_sale.gpkg", layers)
    whole = read_communes(path)
    read = read_communes(path, departements=["84"])
    assert sorted(read.quarantine["row_number"]) == sorted(bad + 1)
    assert sorted(read.quarantine["row_number"]) == sorted(
        whole.quarantine.loc[whole.quarantine["value"].astype(str).str.startswith("84"), "row_number"])
    assert (read.meta.rows_read, read.meta.rows_kept, read.meta.rows_quarantined) == (151, 149, 2)

    from essmap.io.readers.vector import read_vector_where, where_in

    frame, _, rows, total = read_vector_where(path, "commune", where_in("code_insee_du_departement", ["13"]))
    assert total == len(commune) and len(frame) == (commune["code_insee_du_departement"] == "13").sum()
    positions = np.flatnonzero((commune["code_insee_du_departement"] == "13").to_numpy())
    assert rows.tolist() == (positions + 1).tolist()
    assert frame["code_insee"].tolist() == commune["code_insee"].iloc[positions].tolist()


def test_edition_4_without_the_name_column_is_refused(tmp_path):
    layers = _layers(GPKG_4)
    layers["commune"] = layers["commune"].drop(columns=["nom_officiel"])
    path = _write_layers(tmp_path / "ADMIN-EXPRESS-COG_4-0_sans_nom.gpkg", layers)
    with pytest.raises(InputFileError) as info:
        read_communes(path)
    message = str(info.value)
    assert "ADMIN-EXPRESS-COG_4-0_sans_nom.gpkg" in message and "couche « commune »" in message
    assert "ADMIN EXPRESS 4.0" in message and "« nom_officiel »" in message and "Solution :" in message


def test_edition_4_arrondissements_without_their_parent_are_refused(tmp_path):
    layers = _layers(GPKG_4)
    layers["arrondissement_municipal"] = layers["arrondissement_municipal"].drop(
        columns=["code_insee_de_la_commune_de_rattach"])
    path = _write_layers(tmp_path / "ae4.gpkg", layers)
    with pytest.raises(InputFileError, match=r"couche « arrondissement_municipal ».*"
                                             r"« code_insee_de_la_commune_de_rattach »"):
        read_communes(path)


def test_missing_optional_columns_are_loud_warnings_not_silent_nulls(tmp_path):
    layers = _layers(GPKG_4)
    layers["commune"] = layers["commune"].drop(columns=["codes_siren_des_epci", "population"])
    path = _write_layers(tmp_path / "ae4_sans_epci.gpkg", layers)
    read = read_communes(path)
    assert read.frame.loc[read.frame["type_commune"] == "COM", "siren_epci"].isna().all()
    warnings = " | ".join(read.meta.warnings)
    assert "Fichier « ae4_sans_epci.gpkg », couche « commune » (ADMIN EXPRESS 4.0) : colonne " \
           "« codes_siren_des_epci » absente — aucune de ses communes n'est rattachée à un EPCI." in warnings
    assert "« population » absente — population inconnue" in warnings


def test_3x_shapefile_without_its_neighbours_reads_communes_only(tmp_path):
    for part in SHP_3.parent.glob("COMMUNE.*"):
        shutil.copy(part, tmp_path / part.name)
    read = read_communes(tmp_path / "COMMUNE.shp")
    assert set(read.frame["type_commune"]) == {"COM"} and len(read.frame) == 154
    assert read.epci_names.empty


def test_combine_names_first_source_wins_column_by_column():
    first = pd.DataFrame({"siren_epci": ["1", "2"], "nom": ["Un", None], "type": [None, "CA"]})
    second = pd.DataFrame({"siren_epci": ["2", "3"], "nom": ["Deux", "Trois"], "type": ["CC", "CU"]})
    out = combine_names([first, None, second], "siren_epci").set_index("siren_epci")
    assert out.loc["1", "nom"] == "Un" and out.loc["1", "type"] is pd.NA
    assert out.loc["2", ["nom", "type"]].tolist() == ["Deux", "CA"] and out.loc["3", "nom"] == "Trois"


# --- Into the store ------------------------------------------------------------------------------


@pytest.fixture()
def store_copy(demo_db, demo_settings, tmp_path) -> Path:
    path = tmp_path / "essmap.duckdb"
    shutil.copyfile(demo_db, path)
    return path


def _epci(path: Path) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT siren_epci, nom, type, nb_communes FROM epci ORDER BY siren_epci").df()
    finally:
        con.close()


def test_ingest_of_edition_4_keeps_names_and_epci(store_copy, demo_settings, tmp_path):
    before = _epci(store_copy)
    layers = _layers(GPKG_4)
    epci = layers["epci"]
    epci.loc[epci["code_siren"] == "248400251", "nom_officiel"] = "Grand Avignon (nom de la couche EPCI)"
    path = _write_layers(tmp_path / "ADMIN-EXPRESS-COG_4-0_2025.gpkg", layers)
    ingest_files(store_copy, "communes", [path], settings=demo_settings, departements=["84"])
    after = _epci(store_copy)
    con = duckdb.connect(str(store_copy), read_only=True)
    try:
        nulls = con.execute("SELECT count(*) FILTER (nom IS NULL), count(*) FILTER (siren_epci IS NULL) "
                            "FROM communes WHERE code_departement = '84'").fetchone()
    finally:
        con.close()
    assert nulls == (0, 0)
    assert len(after) == len(before)  # the drop from 52 to 40 EPCI does not happen
    assert after.set_index("siren_epci").loc["248400251", "nom"] == "Grand Avignon (nom de la couche EPCI)"
    # a later load without an EPCI layer keeps the names the store had from the file
    for part in SHP_3.parent.glob("COMMUNE.*"):
        shutil.copy(part, tmp_path / part.name)
    ingest_files(store_copy, "communes", [tmp_path / "COMMUNE.shp"], settings=demo_settings, departements=["84"])
    assert _epci(store_copy).set_index("siren_epci").loc["248400251", "nom"] == \
        "Grand Avignon (nom de la couche EPCI)"
