"""Région and France views: the whole territory on one map, establishments counted in groups."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil

from essmap import store
from essmap.domain.selection import Selection
from essmap.present import viewdata
from essmap.present.view import MapView, scope_of, view_from_link
from essmap.render import maps


def _count(con, where: str = "TRUE", params: list | None = None) -> int:
    return con.execute(f"SELECT count(*) FROM etablissements WHERE {where}", params or []).fetchone()[0]


def test_scope_of_a_selection():
    assert scope_of(Selection()) == "france"
    assert scope_of(Selection(region="93")) == "region"
    assert scope_of(Selection(region="93", departements=("13",))) == "local"
    assert scope_of(Selection(communes=("13055",))) == "local"


def test_a_france_link_reopens_france_not_the_default_departement():
    params = MapView(Selection(), level="departement").to_query_params()
    assert params == {"france": "1"}  # France opens by département: no "niveau" needed
    view, notices = view_from_link(params, departements=["13", "84"])
    assert notices == [] and scope_of(view.selection) == "france" and view.level == "departement"
    assert view_from_link({"france": "1", "niveau": "departement"}, departements=["13"])[0] == view  # older links
    assert "france" not in MapView(Selection(departements=("13",))).to_query_params()
    region = MapView(Selection(region="93")).to_query_params()
    assert region == {"region": "93"}
    assert view_from_link(region, departements=["13"])[0].selection == Selection(region="93")


def test_each_scope_opens_at_its_own_level():
    """A région opens by EPCI (a CRESS reads its région by EPCI; its communes are a megabyte of
    geometry), a département by commune, France by département; any offered level stays a choice."""
    assert MapView(Selection(region="93")).level == "epci"
    assert MapView(Selection(departements=("13",))).level == "commune"
    assert MapView(Selection(region="93", departements=("13",))).level == "commune"
    assert MapView(Selection()).level == "departement"
    by_commune = MapView(Selection(region="93"), level="commune")
    assert by_commune.to_query_params() == {"region": "93", "niveau": "commune"}
    assert view_from_link(by_commune.to_query_params(), departements=["13"]) == (by_commune, [])
    assert view_from_link({"region": "93"}, departements=["13"])[0].level == "epci"
    # a département view by EPCI keeps its level in the link (commune is the département's default)
    assert MapView(Selection(departements=("13",)), level="epci").to_query_params()["niveau"] == "epci"
    assert "niveau" not in MapView(Selection(departements=("13",))).to_query_params()


def test_region_view_counts_establishments_by_epci(demo_con):
    data = viewdata.view_data(demo_con, MapView(Selection(region="93")))
    groups = data.groupes_etablissements
    assert data.etablissements.empty and groups is not None
    assert data.n_etablissements == _count(demo_con, "code_region = '93'") > 0
    assert int(groups["n"].sum()) == _count(demo_con, "code_region = '93' AND siren_epci IS NOT NULL")
    assert groups["code"].is_unique
    assert set(groups["code"]) <= {r[0] for r in demo_con.execute("SELECT siren_epci FROM epci").fetchall()}
    metropole = groups.set_index("code").loc["200054807"]  # Métropole d'Aix-Marseille-Provence
    assert "Marseille" in metropole["nom"]
    assert metropole["n"] == _count(demo_con, "siren_epci = '200054807'")
    assert 43.1 < metropole["latitude"] < 43.8 and 4.9 < metropole["longitude"] < 5.8
    epci = demo_con.execute("SELECT DISTINCT siren_epci FROM communes WHERE code_region = '93' "
                            "AND type_commune = 'COM' AND siren_epci IS NOT NULL").fetchall()
    assert data.view.level == "epci" and set(data.areas["code"].astype(str)) == {r[0] for r in epci}
    assert data.areas.geometry.notna().all() and len(data.qpv) > 0
    assert len(data.tiers_lieux) > 0 and data.synthetic


def test_region_view_by_commune_stays_a_choice(demo_con):
    data = viewdata.view_data(demo_con, MapView(Selection(region="93"), level="commune"))
    communes = demo_con.execute("SELECT count(*) FROM communes WHERE code_region = '93' AND type_commune = 'COM'")
    assert len(data.areas) == communes.fetchone()[0] and data.areas.geometry.notna().all()
    by_epci = viewdata.view_data(demo_con, MapView(Selection(region="93")))
    assert data.n_etablissements == by_epci.n_etablissements  # same groups of establishments either way
    assert int(data.areas["n_etablissements"].sum()) == int(by_epci.areas["n_etablissements"].sum())


def test_filters_apply_to_the_groups(demo_con):
    selection = Selection(region="93", families=("association",), employer_only=True)
    data = viewdata.view_data(demo_con, MapView(selection))
    expected = _count(demo_con, "code_region = '93' AND famille = 'association' AND employeur")
    assert data.n_etablissements == expected > 0


def test_france_view_by_departement_groups_by_departement(demo_con):
    data = viewdata.view_data(demo_con, MapView(Selection(), level="departement"))
    departements = demo_con.execute("SELECT count(DISTINCT code_departement) FROM communes").fetchone()[0]
    assert len(data.areas) == departements and data.territory_label == "France"
    groups = data.groupes_etablissements
    assert groups is not None and data.n_etablissements == _count(demo_con, "TRUE") == int(groups["n"].sum())
    assert set(groups["code"]) == {r[0] for r in demo_con.execute(
        "SELECT DISTINCT code_departement FROM etablissements").fetchall()}


def test_region_map_draws_groups_sized_by_count(demo_con):
    data = viewdata.view_data(demo_con, MapView(Selection(region="93")))
    page = maps.render_html(maps.view_map(data))
    overlays = [re.sub(r"<svg.*?</svg>", "", json.loads(n))  # each name after its symbol
                for n in re.findall(r'^\s*("(?:[^"\\]|\\.)*") : \w+,$', page, re.M)]
    assert "Établissements ESS (regroupés par EPCI)" in overlays
    assert "L.markerClusterGroup" not in page  # no point-by-point layer
    payloads = [json.loads(gzip.decompress(base64.b64decode(p)))
                for p in re.findall(r'\(null, "([A-Za-z0-9+/=]+)",', page)]
    (points,) = [p for p in payloads if p.get("features") and p["features"][0]["geometry"]["type"] == "Point"]
    assert {f["properties"]["code"] for f in points["features"]} == set(data.groupes_etablissements["code"])
    (radius,) = [p["radius"] for p in payloads if p.get("radius")]
    groups = data.groupes_etablissements.set_index("code")
    biggest = groups["n"].idxmax()
    assert radius[biggest] == max(radius.values()) == 25.0
    assert all(3 <= r <= 25 for r in radius.values())


def test_exports_of_a_region_view_list_every_establishment(demo_con):
    data = viewdata.view_data(demo_con, MapView(Selection(region="93"), radius_m=500))
    tables = viewdata.export_tables(demo_con, data)
    _stem, establishments = tables["Établissements ESS"]
    assert len(establishments) == data.n_etablissements


def test_establishments_of_a_commune_outside_any_epci_form_their_commune_group(demo_db, tmp_path):
    """Île-d'Yeu, Bréhat, Ouessant, Sein belong to no EPCI: their establishments still count in a
    région view, as their commune's circle."""

    copy = tmp_path / "islands.duckdb"
    shutil.copyfile(demo_db, copy)
    con = store.connect(copy, read_only=False)
    try:
        con.execute("UPDATE etablissements SET siren_epci = NULL WHERE code_com = '13055'")
    finally:
        con.close()
    con = store.connect(copy)
    try:
        data = viewdata.view_data(con, MapView(Selection(region="93")))
        groups = data.groupes_etablissements.set_index("code")
        assert groups.loc["13055", "nom"] == "Marseille"
        assert groups.loc["13055", "n"] == _count(con, "code_com = '13055'") > 0
        assert data.n_etablissements == _count(con, "code_region = '93'")
    finally:
        con.close()


def test_fiche_radius_and_exports_of_a_region_view_by_epci(demo_con):
    """The région's default view (by EPCI): an EPCI's fiche compares it with its département, a QPV's
    with its commune; the radius tables and the indicators export are by EPCI."""
    data = viewdata.view_data(demo_con, MapView(Selection(region="93"), radius_m=500))
    units = viewdata.selectable_units(data)
    assert units["200054807"].startswith("Métropole d'Aix-Marseille-Provence")
    metropole = viewdata.fiche(demo_con, data, "200054807")
    assert metropole is not None and metropole.level == "epci" and metropole.level_label == "Intercommunalité (EPCI)"
    cards = {c.indicator.key: c for c in metropole.comparisons}
    assert cards["n_etablissements"].value == len(metropole.etablissements) == _count(
        demo_con, "siren_epci = '200054807'")
    assert cards["n_etablissements"].parent_name == "Bouches-du-Rhône"
    qpv = str(data.qpv["code_qp"].iloc[0])
    assert viewdata.fiche(demo_con, data, qpv).level == "qpv"
    radius = viewdata.qpv_tiers_lieux_table(data)
    assert len(radius) == len(data.qpv) > 0
    around = viewdata.establishments_around(demo_con, data)
    assert set(around["code_qp"]) == set(data.qpv["code_qp"])
    tables = viewdata.export_tables(demo_con, data)
    stem, indicators = tables["Indicateurs par intercommunalité (EPCI)"]
    assert stem == "indicateurs_epci" and len(indicators) == len(data.areas)
    assert "Code intercommunalité (EPCI)" in indicators.columns and indicators.geometry.notna().all()
