"""The streamlit-folium adapter sends exactly what ``st_folium`` sends (its private API is pinned)."""

from __future__ import annotations

import copy
import re

import pytest
import streamlit_folium

from essmap.domain.selection import Selection
from essmap.present.view import MapView
from essmap.present.viewdata import view_data
from essmap.render import maps, st_folium


@pytest.fixture(scope="module")
def folium_map(demo_con):
    return maps.view_map(view_data(demo_con, MapView(Selection(departements=("04",)))))


def _sent(call, monkeypatch) -> dict:
    sent: dict = {}
    monkeypatch.setattr(streamlit_folium, "_component_func", lambda **kwargs: sent.update(kwargs))
    call()
    assert sent, "the component was not called"
    return sent


def test_show_map_sends_the_whole_keyword_set_of_st_folium(folium_map, monkeypatch):
    theirs = _sent(lambda: streamlit_folium.st_folium(
        copy.deepcopy(folium_map), key="carte", returned_objects=st_folium.RETURNED_OBJECTS,
        use_container_width=True, height=620), monkeypatch)
    args = st_folium.component_args(copy.deepcopy(folium_map), key="carte")
    ours = _sent(lambda: st_folium.show_map(args, height=620), monkeypatch)
    assert set(ours) == set(theirs)
    # st_folium's on_change copies the clicked feature into st.session_state["carte"]; the dashboard
    # reads the component's return value instead, so it passes no callback
    assert callable(theirs.pop("on_change")) and ours.pop("on_change") is None
    # the selected unit's outline travels as the feature-group script, which the map's frame runs
    # when it changes (st_folium sends None when no feature group is given)
    assert theirs.pop("feature_group") is None
    assert ours.pop("feature_group") == maps.selection_script(None)
    # the default is the frame's own value before a click (its first report is then not sent: no rerun
    # when a map has drawn, tests/browser/test_dashboard_browser.py); st_folium's has a count of None
    assert theirs.pop("default") == {"last_active_drawing": None, "last_object_clicked_count": None}
    assert ours.pop("default") == st_folium.NO_CLICK == {"last_object_clicked_count": 0, "last_active_drawing": None}
    # one component key for every map (the open frame replaces its map): st_folium's key, a hash of the
    # map's script, is the map's own key in the script sent, after the frame's swap code
    map_key = theirs.pop("key")
    assert ours.pop("key") == "carte"
    assert ours.pop("script") == f'window.essmapMapKey = "{map_key}";\n{st_folium.FRAME_SWAP_JS}{theirs.pop("script")}'
    assert ours == theirs


def test_show_map_outlines_the_selection_without_a_new_map(folium_map, monkeypatch):
    args = st_folium.component_args(copy.deepcopy(folium_map), key="carte")
    plain = _sent(lambda: st_folium.show_map(args, height=620), monkeypatch)
    selected = _sent(lambda: st_folium.show_map(args, height=620, selected="04070"), monkeypatch)
    assert selected.pop("feature_group") == 'window.essmapSelect && window.essmapSelect("04070");\n'
    plain.pop("feature_group")
    assert selected == plain  # same map, same component key: the browser keeps the drawn map


def test_another_view_goes_to_the_same_component_with_its_own_map_key(demo_con, folium_map, monkeypatch):
    other = maps.view_map(view_data(demo_con, MapView(Selection(departements=("04",), employer_only=True))))
    first = _sent(lambda: st_folium.show_map(st_folium.component_args(copy.deepcopy(folium_map), key="carte"),
                                             height=620), monkeypatch)
    second = _sent(lambda: st_folium.show_map(st_folium.component_args(other, key="carte"), height=620), monkeypatch)
    assert first["key"] == second["key"] == "carte"  # the same frame
    keys = [re.findall(r'^window\.essmapMapKey = "(\w+)";\n', str(sent["script"])) for sent in (first, second)]
    assert len(keys[0]) == len(keys[1]) == 1 and keys[0] != keys[1]  # which tells the frame its map is another
