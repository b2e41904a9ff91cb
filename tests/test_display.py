"""ViewData on the demo store: choropleth units, classes, radius results, filters, fiche."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely

from essmap import display, store
from essmap.analysis import Selection
from essmap.view import MapView

BDR = Selection(departements=("13",))


@pytest.fixture(scope="module")
def layers(demo_db):
    con = store.connect(demo_db)
    out = store.read_analysis_layers(con, departements=["13"])
    con.close()
    return out


@pytest.fixture(scope="module")
def communes_view(layers):
    return display.view_data(MapView(BDR), layers)


def test_commune_choropleth_has_one_coloured_unit_per_commune(communes_view, layers):
    data = communes_view
    communes = layers["communes"]
    assert len(data.areas) == int((communes["type_commune"] == "COM").sum()) == 119
    assert data.areas.crs.to_epsg() == 4326
    assert data.areas.geometry.notna().all() and not data.areas.geometry.is_empty.any()
    assert list(data.areas["classe_couleur"]) == list(data.classification.colour_of(data.areas["valeur"]))
    assert data.legend_title == "Établissements employeurs de l'ESS pour 10 000 habitants (pour 10 000 hab.)"
    assert data.territory_label == "Bouches-du-Rhône (13)"
    assert data.filters_label == "Bouches-du-Rhône"
    assert data.synthetic  # the demo establishments are simulated


def test_display_geometry_is_simplified_and_analysis_layers_stay_exact(communes_view, layers):
    com = layers["communes"][layers["communes"]["type_commune"] == "COM"]
    exact = shapely.get_num_coordinates(com.geometry.to_numpy()).sum()
    shown = shapely.get_num_coordinates(communes_view.areas.geometry.to_numpy()).sum()
    assert shown < exact
    marseille = communes_view.areas.set_index("code").geometry["13055"]
    original = com.set_index("code_insee").geometry["13055"]
    assert marseille.symmetric_difference(original).area / original.area < 0.02  # same shape, fewer points


def test_coverage_simplification_keeps_one_shared_border():
    wiggle = [(1 + 0.001 * (i % 2), i / 50) for i in range(51)]
    left = shapely.Polygon([(0, 0), *wiggle, (0, 1)])
    right = shapely.Polygon([(2, 0), (2, 1), *reversed(wiggle)])
    out = display.simplify_coverage(gpd.GeoSeries([left, right], crs=4326), tolerance=0.01)
    assert shapely.get_num_coordinates(out.to_numpy()).sum() < shapely.get_num_coordinates([left, right]).sum()
    assert out.iloc[0].intersection(out.iloc[1]).area == pytest.approx(0, abs=1e-12)  # no overlap
    assert out.union_all().area == pytest.approx(2.0, rel=1e-9)  # no gap


def test_epci_and_departement_units_are_unions_of_communes(layers):
    epci = display.view_data(MapView(BDR, level="epci"), layers)
    assert set(epci.areas["code"]) == set(layers["communes"]["siren_epci"].dropna())
    dep = display.view_data(MapView(BDR, level="departement"), layers)
    assert list(dep.areas["code"]) == ["13"]
    assert shapely.area(dep.areas.geometry.iloc[0]) == pytest.approx(shapely.area(epci.areas.geometry.to_numpy()).sum(), rel=1e-6)


def test_share_indicators_are_shown_in_percent(layers):
    data = display.view_data(MapView(BDR, indicator="part_employeurs_en_qpv"), layers)
    marseille = data.areas.set_index("code").loc["13055"]
    assert marseille["valeur"] == pytest.approx(100 * marseille["part_employeurs_en_qpv"])
    assert data.classification.unit == "%"


def test_filters_change_what_is_in_view(communes_view, layers):
    coops = display.view_data(MapView(Selection(departements=("13",), families=("cooperative",))), layers)
    assert 0 < len(coops.etablissements) < len(communes_view.etablissements)
    assert set(coops.etablissements["famille"]) == {"cooperative"}
    assert coops.areas["n_etablissements"].sum() == len(coops.etablissements)
    assert coops.filters_label == "Bouches-du-Rhône · coopératives"
    marseille = display.view_data(MapView(Selection(communes=("13055",))), layers)
    assert list(marseille.areas["code"]) == ["13055"]
    assert marseille.territory_label == "Marseille (13055)"
    assert set(marseille.qpv["insee_com"].str.contains("13055")) == {True}


def test_radius_changes_the_qpv_results(communes_view, layers):
    wide = display.view_data(MapView(BDR, radius_m=5000), layers)
    assert list(wide.qpv["code_qp"]) == list(communes_view.qpv["code_qp"])
    assert wide.qpv["covered"].sum() > communes_view.qpv["covered"].sum()
    assert (wide.qpv["n_tiers_lieux"] >= communes_view.qpv["n_tiers_lieux"]).all()
    assert (wide.qpv_etablissements["n_etablissements"] >= communes_view.qpv_etablissements["n_etablissements"]).all()


def test_with_view_only_restyles(communes_view):
    three = communes_view.with_view(communes_view.view.replace(method="equal_interval", k=3, tiles="OpenStreetMap", selected="13055"))
    assert len(three.classification.colours) == 3
    assert three.etablissements is communes_view.etablissements
    assert three.view.selected == "13055"
    with pytest.raises(ValueError, match="appelez view_data"):
        communes_view.with_view(communes_view.view.replace(radius_m=500))


def test_fiche_compares_with_parent_and_france(communes_view, layers):
    fiche = display.fiche(communes_view, layers, "13055")
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
    in_qpv = communes_view.etablissements.loc[fiche.etablissements.index, "code_qp"]
    assert split["Dans les QPV"].sum() == in_qpv.notna().sum() > 0
    assert fiche.synthetic


def test_fiche_of_a_qpv_and_of_unknown_codes(communes_view, layers):
    code = str(communes_view.qpv["code_qp"].iloc[0])
    fiche = display.fiche(communes_view, layers, code)
    assert fiche.level == "qpv" and fiche.level_label == "Quartier prioritaire (QPV)"
    assert fiche.etablissements["code_commune"].notna().all()
    assert display.fiche(communes_view, layers, "99999") is None
    units = display.selectable_units(communes_view)
    assert units["13055"] == "Marseille (13055)" and code in units
