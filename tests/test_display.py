"""ViewData on the demo store: choropleth units, classes, radius results, filters, fiche."""

from __future__ import annotations

import re

import pytest
import shapely

from essmap.analysis.indicators import INDICATORS_BY_KEY
from essmap.domain.selection import Selection
from essmap.present import viewdata
from essmap.present.view import MapView
from essmap.render.tables import table_bytes
from essmap.store import queries

BDR = Selection(departements=("13",))


@pytest.fixture(scope="module")
def communes_view(demo_con):
    return viewdata.view_data(demo_con, MapView(BDR))


def test_commune_choropleth_has_one_coloured_unit_per_commune(communes_view, bdr_layers):
    data = communes_view
    communes = bdr_layers["communes"]
    assert len(data.areas) == int((communes["type_commune"] == "COM").sum()) == 119
    assert data.areas.crs.to_epsg() == 4326
    assert data.areas.geometry.notna().all() and not data.areas.geometry.is_empty.any()
    assert list(data.areas["classe_couleur"]) == list(data.classification.colour_of(data.areas["valeur"]))
    assert data.legend_title == "Établissements employeurs de l'ESS pour 10 000 habitants"  # the unit once
    assert data.territory_label == "Bouches-du-Rhône (13)"
    assert data.filters_label == "Bouches-du-Rhône"
    assert data.synthetic  # the demo establishments are simulated


def test_display_geometry_is_simplified_and_analysis_layers_stay_exact(communes_view, bdr_layers):
    com = bdr_layers["communes"][bdr_layers["communes"]["type_commune"] == "COM"]
    exact = shapely.get_num_coordinates(com.geometry.to_numpy()).sum()
    shown = shapely.get_num_coordinates(communes_view.areas.geometry.to_numpy()).sum()
    assert shown < exact
    marseille = communes_view.areas.set_index("code").geometry["13055"]
    original = com.set_index("code_insee").geometry["13055"]
    assert marseille.symmetric_difference(original).area / original.area < 0.02  # same shape, fewer points


def test_units_are_whole_unions_of_their_simplified_communes(demo_con, bdr_layers):
    """An EPCI that spans several départements is drawn and counted whole: the Métropole
    Aix-Marseille-Provence (200054807) has communes in the 13, the 83 and the 84."""
    epci = viewdata.view_data(demo_con, MapView(BDR, level="epci"))
    assert set(epci.areas["code"]) == set(bdr_layers["communes"]["siren_epci"].dropna())
    amp = epci.areas.set_index("code").loc["200054807"]
    whole = demo_con.execute("SELECT sum(population) FROM communes WHERE siren_epci = '200054807' "
                             "AND type_commune = 'COM'").fetchone()[0]
    in_13 = bdr_layers["communes"].query("siren_epci == '200054807' and type_commune == 'COM'")["population"].sum()
    assert amp["population"] == whole > in_13
    communes = viewdata.view_data(demo_con, MapView(Selection(epci=("200054807",))))
    assert shapely.union_all(communes.areas.geometry.to_numpy()).symmetric_difference(amp.geometry).area < 1e-9
    dep = viewdata.view_data(demo_con, MapView(BDR, level="departement"))
    assert list(dep.areas["code"]) == ["13"]
    bdr_communes = shapely.union_all(viewdata.view_data(demo_con, MapView(BDR)).areas.geometry.to_numpy())
    assert dep.areas.geometry.iloc[0].symmetric_difference(bdr_communes).area < 1e-9
    assert dep.areas.geometry.iloc[0].difference(shapely.union_all(epci.areas.geometry.to_numpy())).area < 1e-9

def test_qpv_in_view_carry_their_stored_display_boundary(communes_view, demo_con):
    """The QPVs of a view are the radius results with the boundary stored for display (the map's), as
    the analysis gives them, in the same order."""
    from geopandas.testing import assert_geodataframe_equal

    from essmap.analysis.coverage import qpv_coverage

    selection = Selection(departements=("13",), qpv_generation=queries.generation_of(demo_con, BDR))
    assert_geodataframe_equal(communes_view.qpv.drop(columns=list(SENT)),
                              qpv_coverage(demo_con, selection, radius_m=1000.0))
    shown = shapely.get_num_coordinates(communes_view.qpv.geometry.to_numpy()).sum()
    exact = shapely.get_num_coordinates(queries.read_qpv(demo_con, list(communes_view.qpv["code_qp"])).geometry
                                        .to_numpy()).sum()
    assert 0 < shown < exact


#: What the map sends of a unit's display geometry, stored with it at ingest.
SENT = ("geojson", "anchor_lon", "anchor_lat")


@pytest.mark.parametrize("level", ["commune", "epci", "qpv"])
def test_stored_geojson_and_anchor_are_those_of_the_display_geometry(demo_con, level):
    """The GeoJSON text and the inner point stored at ingest are what the map would write from the
    display geometry itself (coordinates rounded to 1e-5 degree; a point inside the unit)."""
    from essmap.geo.simplify import geojson_texts

    data = viewdata.view_data(demo_con, MapView(BDR, level="commune" if level == "qpv" else level))
    frame = data.qpv if level == "qpv" else data.areas
    assert len(frame) > 1 and frame["geojson"].notna().all()
    assert list(frame["geojson"]) == list(geojson_texts(frame.geometry.to_numpy()))
    anchors = shapely.points(frame["anchor_lon"].to_numpy(), frame["anchor_lat"].to_numpy())
    assert shapely.within(anchors, frame.geometry.to_numpy()).all()


def test_share_indicators_are_shown_in_percent(demo_con):
    data = viewdata.view_data(demo_con, MapView(BDR, indicator="part_employeurs_en_qpv"))
    marseille = data.areas.set_index("code").loc["13055"]
    assert marseille["valeur"] == pytest.approx(100 * marseille["part_employeurs_en_qpv"])
    assert data.classification.unit == "%"


def test_filters_change_what_is_in_view(communes_view, demo_con):
    coops = viewdata.view_data(demo_con, MapView(Selection(departements=("13",), families=("cooperative",))))
    assert 0 < len(coops.etablissements) < len(communes_view.etablissements)
    assert set(coops.etablissements["famille"]) == {"cooperative"}
    assert coops.areas["n_etablissements"].sum() == len(coops.etablissements)
    assert coops.filters_label == "Bouches-du-Rhône · coopératives"
    marseille = viewdata.view_data(demo_con, MapView(Selection(communes=("13055",))))
    assert list(marseille.areas["code"]) == ["13055"]
    assert marseille.territory_label == "Marseille (13055)"
    assert set(marseille.qpv["insee_com"].str.contains("13055")) == {True}


def test_radius_changes_the_qpv_results(communes_view, demo_con):
    wide = viewdata.view_data(demo_con, MapView(BDR, radius_m=5000))
    assert list(wide.qpv["code_qp"]) == list(communes_view.qpv["code_qp"])
    assert wide.qpv["covered"].sum() > communes_view.qpv["covered"].sum()
    assert (wide.qpv["n_tiers_lieux"] >= communes_view.qpv["n_tiers_lieux"]).all()
    near, far = (viewdata.establishments_around(demo_con, d) for d in (communes_view, wide))
    assert (far["n_etablissements"] >= near["n_etablissements"]).all()
    assert (far["n_etablissements"] > near["n_etablissements"]).any()


def test_with_view_only_restyles(communes_view):
    three = communes_view.with_view(communes_view.view.replace(method="equal_interval", k=3, tiles="OpenStreetMap",
                                                               selected="13055"))
    assert len(three.classification.colours) == 3
    assert three.etablissements is communes_view.etablissements
    assert three.view.selected == "13055"
    with pytest.raises(ValueError, match="appelez view_data"):
        communes_view.with_view(communes_view.view.replace(radius_m=500))


def test_fiche_compares_with_parent_and_france(communes_view, demo_con):
    fiche = viewdata.fiche(demo_con, communes_view, "13055")
    assert fiche.name == "Marseille" and fiche.level == "commune"
    cards = {c.indicator.key: c for c in fiche.comparisons}
    density = cards["etablissements_employeurs_pour_10k_hab"]
    assert density.parent_name == "Bouches-du-Rhône"
    assert density.france_value is not None and density.france_source_fr
    assert cards["n_etablissements"].value == len(fiche.etablissements)
    assert cards["n_etablissements"].parent_value == len(communes_view.etablissements)
    assert fiche.familles["n"].sum() == len(fiche.etablissements)
    split = fiche.qpv_hors_qpv
    assert (split["Dans les QPV"] + split["Hors QPV"]).sum() == len(fiche.etablissements)
    assert split["Dans les QPV"].sum() == fiche.etablissements["code_qp"].notna().sum() > 0
    assert fiche.synthetic


def test_fiche_of_a_qpv_and_of_unknown_codes(communes_view, demo_con):
    code = str(communes_view.qpv["code_qp"].iloc[0])
    fiche = viewdata.fiche(demo_con, communes_view, code)
    assert fiche.level == "qpv" and fiche.level_label == "Quartier prioritaire (QPV)"
    assert fiche.etablissements["code_commune"].notna().all()
    assert viewdata.fiche(demo_con, communes_view, "99999") is None
    units = viewdata.selectable_units(communes_view)
    assert units["13055"] == "Marseille (13055)" and code in units
    assert viewdata.unit_of(communes_view, "13055") == ("commune", "Marseille")
    assert viewdata.unit_of(communes_view, code) == ("qpv", str(communes_view.qpv["lib_qp"].iloc[0]))
    assert viewdata.unit_of(communes_view, "99999") is None


def test_tables_use_french_columns_and_label_simulated_rows(communes_view, demo_con):
    radius = viewdata.qpv_tiers_lieux_table(communes_view)
    assert list(radius.columns) == ["QPV", "Code QPV", "Commune", "Tiers-lieux dans le rayon",
                                    "Tiers-lieu le plus proche", "Distance (m)", "Localisation du plus proche",
                                    "Données simulées"]
    assert set(radius["Localisation du plus proche"].dropna()) == {"coordonnées fournies"}
    assert len(radius) == len(communes_view.qpv)
    assert radius["Tiers-lieux dans le rayon"].sum() == communes_view.qpv["n_tiers_lieux"].sum()
    near = viewdata.qpv_establishments_table(viewdata.establishments_around(demo_con, communes_view))
    assert "Établissements ESS dans le rayon" in near.columns
    etab = viewdata.establishments_table(communes_view.etablissements)
    assert set(etab["Données simulées"]) == {"oui"}
    assert set(etab["Famille"]) <= {"Associations", "Coopératives", "Mutuelles", "Fondations",
                                    "Sociétés commerciales de l'ESS"}
    tables = viewdata.export_tables(demo_con, communes_view)
    assert list(tables) == ["Indicateurs par commune", "QPV et tiers-lieux dans le rayon",
                            "QPV et établissements ESS dans le rayon", "Établissements ESS", "Tiers-lieux"]
    assert all(frame.crs.to_epsg() == 4326 for _stem, frame in tables.values())


@pytest.mark.parametrize("fmt, starts", [
    ("CSV", b"\xef\xbb\xbfQPV,Code QPV,"), ("CSV « ; »", b"\xef\xbb\xbfQPV;Code QPV;"), ("XLSX", b"PK"),
    ("GeoJSON", b"{"), ("GeoPackage", b"SQLite format 3"),
])
def test_tables_download_in_every_format(communes_view, demo_con, fmt, starts):
    _stem, frame = viewdata.export_tables(demo_con, communes_view)["QPV et tiers-lieux dans le rayon"]
    content = table_bytes(frame, fmt, layer="qpv_tiers_lieux")
    assert content.startswith(starts)


def test_values_and_choices_read_in_french(demo_con):
    assert viewdata.format_value(0.36, INDICATORS_BY_KEY["part_qpv_avec_tiers_lieu"]) == "36,0\u202f%"
    assert viewdata.format_value(1234, INDICATORS_BY_KEY["n_etablissements"]) == "1\u202f234"
    assert viewdata.format_value(None, INDICATORS_BY_KEY["n_etablissements"]) == "–"
    types = queries.tiers_lieux_choices(demo_con, "types")
    assert "Coworking" in types and all(";" not in t for t in types)


def test_legend_titles_name_the_unit_once():
    titles = {key: viewdata.legend_title(INDICATORS_BY_KEY[key]) for key in
              ("n_tiers_lieux", "etablissements_pour_10k_hab", "part_employeurs_en_qpv")}
    assert titles == {"n_tiers_lieux": "Tiers-lieux",
                      "etablissements_pour_10k_hab": "Établissements de l'ESS pour 10 000 habitants",
                      "part_employeurs_en_qpv": "Part des établissements employeurs de l'ESS situés dans un QPV (%)"}


def test_indicators_table_reads_as_the_dashboard(communes_view):
    from essmap.render.tables import display_table

    table = viewdata.indicators_table(communes_view)
    assert list(table.columns[:3]) == ["Code commune", "Nom", "Population"]
    assert not [c for c in table.columns if "_" in c]  # no snake_case header
    shown = display_table(table).set_index("Code commune")
    raw = table.set_index("Code commune")
    aix = "13001"
    share = raw.loc[aix, "Part des établissements de l'ESS situés dans un QPV"]
    assert 0 < share < 1
    assert shown.loc[aix, "Part des établissements de l'ESS situés dans un QPV"] == (
        f"{share * 100:.1f}".replace(".", ",") + "\u202f%")
    rate = shown.loc[aix, "Établissements de l'ESS pour 10 000 habitants"]
    assert re.fullmatch(r"\d{1,3}(\u202f\d{3})*,\d", rate), rate
    assert shown.loc[aix, "Population"] == f"{raw.loc[aix, 'Population']:,}".replace(",", "\u202f")
    assert set(shown["Inclut des données simulées"]) <= {"oui", "non"}
