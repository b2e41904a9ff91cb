"""The map view round-trips through a URL query string and rejects bad values in French."""

from __future__ import annotations

import pytest

from essmap.analysis import Selection
from essmap.present.view import MapView


def test_view_round_trips_through_query_params():
    view = MapView(Selection(departements=("13",), families=("association",), employer_only=True),
                   indicator="part_qpv_avec_tiers_lieu", level="epci", radius_m=500, method="natural_breaks",
                   k=4, selected="QN01354M", tiles="Plan IGN")
    params = view.to_query_params()
    assert params["rayon"] == "500" and params["departements"] == "13" and params["selection"] == "QN01354M"
    assert MapView.from_query_params(params) == view
    assert MapView().to_query_params() == {}
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
