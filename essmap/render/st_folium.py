"""The one place that talks to streamlit-folium's private API (the package is pinned).

``st_folium`` renders the whole folium map on every Streamlit rerun (about a second for a
département). The dashboard computes the component's map arguments once per view
(:func:`component_args`), caches them, and calls the component with identical arguments on every
rerun (:func:`show_map`), so the browser keeps the drawn map. ``tests/test_st_folium.py`` checks that
the whole keyword set sent here equals what ``st_folium`` itself sends, so an upgrade that changes
it fails there first.
"""

from __future__ import annotations

import folium
import streamlit_folium

from essmap.render.maps import selection_script, walk

#: What the dashboard asks of the map: the feature last clicked (a commune or QPV opens its fiche) and
#: the number of clicks on the map's layers so far, which tells a new click on the same feature from
#: the value the component keeps returning on every rerun (the component sends only changed values).
RETURNED_OBJECTS = ["last_active_drawing", "last_object_clicked_count"]
#: The value the map's frame computes for :data:`RETURNED_OBJECTS` before any click, in the frame's
#: key order (it compares the JSON texts). Passed as the component's default, the frame's first
#: report equals it and is not sent: no rerun of the whole script when the map has just drawn (with
#: st_folium's own default, whose count is None, every new map triggered one, which redrew the page).
NO_CLICK = {"last_object_clicked_count": 0, "last_active_drawing": None}


def component_args(m: folium.Map, *, key: str) -> dict[str, object]:
    """The map-dependent arguments ``st_folium(m, key=key)`` sends to its component."""
    m.get_root().render()
    html = streamlit_folium._get_html(m)  # same order as st_folium: rendering alters the map
    header = streamlit_folium._get_header(m)
    script = streamlit_folium._get_map_string(m)
    elements = list(walk(m))
    return {
        "script": script, "header": header, "html": html, "id": streamlit_folium.get_full_id(m),
        "css_links": list(dict.fromkeys(url for e in elements for _n, url in getattr(e, "default_css", []))),
        "js_links": list(dict.fromkeys(url for e in elements for _n, url in getattr(e, "default_js", []))),
        "key": streamlit_folium.generate_js_hash(script, key, False),
    }


def clicked_code(returned: dict | None, args: dict[str, object]) -> tuple[str, tuple[object, int]] | None:
    """The ``code`` of the feature a click reported, with the click's identity (the map's component key
    and its click count: the count starts again with each map); None when no click on a feature is
    reported. A click is new when its identity differs from the last one handled."""
    returned = returned or {}
    count = returned.get("last_object_clicked_count")
    feature = returned.get("last_active_drawing") or {}
    code = str((feature.get("properties") or {}).get("code") or "")
    if not code or not isinstance(count, int):
        return None
    return code, (args.get("key"), count)


def show_map(args: dict[str, object], *, height: int, selected: str | None = None) -> dict | None:
    """``st_folium(m, returned_objects=RETURNED_OBJECTS, use_container_width=True, height=height)``
    from cached :func:`component_args`: what the user last clicked, or None; its default is
    :data:`NO_CLICK` (the frame's own value before a click), not st_folium's.

    ``selected`` (a unit's code) is outlined on the map: it travels as the component's
    ``feature_group`` script (:func:`essmap.render.maps.selection_script`), which the map's frame
    runs whenever it changes, so a new selection does not redraw the map.

    No ``on_change``: st_folium's own copies the value into ``st.session_state[key]``, which the
    dashboard does not read (it uses the returned value)."""
    return streamlit_folium._component_func(
        **args, height=height, width=None, returned_objects=RETURNED_OBJECTS,
        default=dict(NO_CLICK), zoom=None, center=None,
        feature_group=selection_script(selected), return_on_hover=False, layer_control=None, pixelated=False,
        wrap_longitude=False, on_change=None,
    )
