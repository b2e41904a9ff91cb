"""The one place that talks to streamlit-folium's private API (the package is pinned).

``st_folium`` renders the whole folium map on every Streamlit rerun (about a second for a
département). The dashboard computes the component's map arguments once per view
(:func:`component_args`), caches them, and calls the component with identical arguments on every
rerun (:func:`show_map`), so the browser keeps the drawn map. ``tests/test_st_folium.py`` checks that
the whole keyword set sent here equals what ``st_folium`` itself sends, so an upgrade that changes
it fails there first.

Every map of the dashboard goes to the same component (one key): a new view sends new arguments to
the frame already open, and the frame replaces its map (:data:`FRAME_SWAP_JS`) instead of being
re-created (a new frame loads the component, Leaflet and their styles again before it draws).
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


#: Maps a frame keeps hidden after showing them, for going back to them (the employer filter off again).
KEPT_MAPS = 2

#: Run in the map's frame before each map's own script. The first time, it listens to the component's
#: render events: when the arguments carry another map (``window.essmapMapKey`` in its script), it
#: takes the drawn map out of the document (its ids and legend then never mix with the new map's) and
#: keeps it with its layers' state ``window.essmap*`` (the :data:`KEPT_MAPS` last complete ones; a map
#: still adding layers is removed), then shows the new map: a kept one again as it was (back to a view
#: already seen: nothing to fetch nor build), else it loads the scripts and styles the frame does not
#: have yet, runs the new map's script in a new container and hands the map to streamlit-folium
#: (``window.initComponent``: click handlers, the same click count). Then it outlines the selection
#: (the ``feature_group`` script). streamlit-folium's own handler runs first and does nothing for a
#: new script once a map exists. ``window.essmapShown`` counts the maps shown (a map shown again is a
#: new showing: tests and benchmarks tell them apart).
FRAME_SWAP_JS = """
if (!window.essmapSwap) {
    window.essmapShown = 1;
    window.essmapSwap = {legend: document.currentScript && document.currentScript.previousElementSibling, kept: []};
    window.Streamlit.events.addEventListener(window.Streamlit.RENDER_EVENT, function (event) {
        var args = event.detail.args, swap = window.essmapSwap;
        var key = (/window\\.essmapMapKey = "(\\w+)"/.exec(args.script) || [])[1];
        if (!window.map || !key || key === window.essmapMapKey || key === swap.wanted) { return; }
        swap.wanted = key;
        var state = ["essmapPolygons", "essmapAdded", "essmapLoading", "essmapSelected", "essmapSelectionWanted",
                     "essmapSelect"];
        var loaded = function (tag, attribute) {
            return Array.prototype.map.call(document.querySelectorAll(tag), function (e) { return e[attribute]; });
        };
        var scripts = loaded("script[src]", "src"), styles = loaded("link[rel=stylesheet]", "href");
        var absolute = function (url) { return new URL(url, document.baseURI).href; };
        (args.css_links || []).forEach(function (url) {
            if (styles.indexOf(absolute(url)) < 0) {
                var link = document.createElement("link");
                link.rel = "stylesheet"; link.href = url; document.head.appendChild(link);
            }
        });
        var missing = (args.js_links || []).filter(function (url) { return scripts.indexOf(absolute(url)) < 0; });
        var ready = missing.reduce(function (previous, url) {
            return previous.then(function () {
                return new Promise(function (resolve, reject) {
                    var tag = document.createElement("script");
                    tag.src = url; tag.async = false; tag.onload = resolve; tag.onerror = reject;
                    document.body.appendChild(tag);
                });
            });
        }, Promise.resolve());
        ready.then(function () {
            if (swap.wanted !== key) { return; }  // a newer map arrived meanwhile
            swap.wanted = null;
            var old = window.map, box = old.getContainer(), slot = document.createElement("div");
            slot.style.cssText = box.style.cssText;
            box.parentNode.insertBefore(slot, box);
            box.remove();  // out of the document: its ids and legend are not the new map's
            box.removeAttribute("id");
            if (!window.essmapLoading) {  // complete: kept
                var saved = {};
                state.forEach(function (name) { saved[name] = window[name]; });
                swap.kept.push({key: window.essmapMapKey, map: old, state: saved});
                while (swap.kept.length > KEPT_MAPS) { swap.kept.shift().map.remove(); }
            } else {  // still adding layers
                old.remove();
            }
            if (swap.legend) { swap.legend.remove(); }  // the legend's holder (the map took the legend)
            swap.legend = null;
            state.forEach(function (name) { delete window[name]; });
            window.essmapShown += 1;  // before the new map's layers count in window.essmapLoading
            var again = swap.kept.filter(function (k) { return k.key === key; })[0];
            if (again) {
                swap.kept.splice(swap.kept.indexOf(again), 1);
                state.forEach(function (name) {
                    if (again.state[name] !== undefined) { window[name] = again.state[name]; }
                });
                var shown = again.map.getContainer();
                slot.replaceWith(shown);
                shown.id = "map_div";
                window.essmapMapKey = key;
                window.map = again.map;
                again.map.invalidateSize({pan: false});
            } else {
                slot.id = "map_div";
                var legend = document.createElement("div");
                legend.innerHTML = args.html;
                document.body.appendChild(legend);
                swap.legend = legend;
                var run = document.createElement("script");
                run.innerHTML = args.script + "window.map = map_div; window.initComponent(map_div, false);";
                document.body.appendChild(run);
            }
            if (args.feature_group) { eval(args.feature_group); }  // eslint-disable-line no-eval
        });
    });
}
""".replace("KEPT_MAPS", str(KEPT_MAPS))


def component_args(m: folium.Map, *, key: str) -> dict[str, object]:
    """The map-dependent arguments ``st_folium(m, key=key)`` sends to its component, except that
    every map has the same component key (``key``): the open frame replaces its map
    (:data:`FRAME_SWAP_JS`, prepended to the map's script with the map's own key)."""
    m.get_root().render()
    html = streamlit_folium._get_html(m)  # same order as st_folium: rendering alters the map
    header = streamlit_folium._get_header(m)
    script = streamlit_folium._get_map_string(m)
    elements = list(walk(m))
    map_key = streamlit_folium.generate_js_hash(script, key, False)
    return {
        "script": f'window.essmapMapKey = "{map_key}";\n{FRAME_SWAP_JS}{script}', "header": header, "html": html,
        "id": streamlit_folium.get_full_id(m),
        "css_links": list(dict.fromkeys(url for e in elements for _n, url in getattr(e, "default_css", []))),
        "js_links": list(dict.fromkeys(url for e in elements for _n, url in getattr(e, "default_js", []))),
        "key": key,
    }


def clicked_code(returned: dict | None, args: dict[str, object]) -> tuple[str, tuple[object, int]] | None:
    """The ``code`` of the feature a click reported, with the click's identity (the component key and
    its click count: the count goes on across the maps a frame shows, and starts again at 0 in a new
    frame, which reports nothing before its first click); None when no click on a feature is reported.
    A click is new when its identity differs from the last one handled."""
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
