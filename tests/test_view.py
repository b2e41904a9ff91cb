"""The map view round-trips through a URL query string and rejects bad values in French."""

from __future__ import annotations

import pytest

from essmap.domain.selection import Selection
from essmap.present.view import TABS, MapView, view_from_link


def test_view_round_trips_through_query_params():
    view = MapView(Selection(departements=("13",), families=("association",), employer_only=True),
                   indicator="part_qpv_avec_tiers_lieu", level="epci", radius_m=500, method="natural_breaks",
                   k=4, selected="QN01354M", tiles="Plan IGN")
    params = view.to_query_params()
    assert params["rayon"] == "500" and params["departements"] == "13" and params["selection"] == "QN01354M"
    assert MapView.from_query_params(params) == view
    assert MapView().to_query_params() == {"france": "1"}  # no territory: France
    assert hash(view) == hash(MapView.from_query_params(params))  # usable as a cache key


@pytest.mark.parametrize("params, message", [
    ({"niveau": "canton"}, "niveau « canton » inconnu"),
    ({"rayon": "loin"}, "n'est pas un nombre"),
    ({"rayon": "90000"}, "hors des bornes"),
    ({"indicateur": "nope"}, "indicateur « nope » inconnu"),
])
def test_bad_query_params_raise_in_french(params, message):
    with pytest.raises(ValueError, match=message):
        MapView.from_query_params(params)


def test_links_are_made_valid_for_the_dashboard():
    deps = ["04", "13", "84"]
    view, notices = view_from_link({"rayon": "2549", "departements": "84"}, departements=deps)
    assert view.radius_m == 2500 and view.selection.departements == ("84",)
    assert notices == ["Lien invalide : rayon de 2\u202f549 m hors de ce que propose le tableau de bord "
                       "(100 à 5\u202f000 m, par pas de 100 m) ; le rayon de 2\u202f500 m est utilisé."]
    view, notices = view_from_link({"departements": "99,84,13"}, departements=deps)
    assert view.selection.departements == ("13",)  # codes are sorted: 13, 84, 99
    assert any("99 absent(s)" in n for n in notices) and any("le 13 est affiché" in n for n in notices)
    view, notices = view_from_link({"indicateur": "<script>"}, departements=deps)
    assert view == MapView() and notices[0].startswith("Lien invalide : indicateur")
    assert view_from_link({}, departements=deps) == (MapView(), [])


def test_tab_travels_in_the_link_and_an_unknown_tab_opens_the_map():
    view = MapView(Selection(departements=("84",)), selected="84007", tab="fiche")
    params = view.to_query_params()
    assert params["onglet"] == "fiche" and params["selection"] == "84007"
    assert MapView.from_query_params(params) == view
    assert "onglet" not in MapView(tab="carte").to_query_params()  # the default tab makes no parameter
    assert set(TABS) == {"carte", "rayon", "fiche", "exports"}

    deps = ["13", "84"]
    opened, notices = view_from_link({"departements": "84", "selection": "84007", "onglet": "fiche"},
                                     departements=deps)
    assert (opened.tab, opened.selected, notices) == ("fiche", "84007", [])
    # an unknown tab is dropped with a French notice; the rest of the link is kept
    opened, notices = view_from_link({"departements": "84", "selection": "84007", "onglet": "<b>x</b>"},
                                     departements=deps)
    assert opened.tab == "carte" and opened.selected == "84007" and opened.selection.departements == ("84",)
    assert notices == ["Lien invalide : onglet « <b>x</b> » inconnu (onglets possibles : carte, rayon, fiche, "
                       "exports) ; la carte est affichée."]
    with pytest.raises(ValueError, match="onglet « Fiche » inconnu"):
        MapView.from_query_params({"onglet": "Fiche"})
