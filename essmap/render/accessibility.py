"""The dashboard page in French and accessible (RGAA 4.1, i.e. WCAG 2.1 AA): language, Streamlit's
own interface strings, skip links, and the French furniture of the Leaflet map.

Streamlit serves its own ``index.html`` (``<html lang="en">``) and its frontend has no translations,
so :func:`page_script` runs in the page (``st.html(..., unsafe_allow_javascript=True)``, Streamlit's
supported way to run a script there): it sets ``lang="fr"`` and translates the strings of
:data:`STREAMLIT_STRINGS_FR` wherever Streamlit writes them, now or later (a ``MutationObserver``).
Tables are drawn with ``st.table`` (real HTML tables, no English toolbar) rather than
``st.dataframe``. :class:`FrenchLeaflet` does the same inside the map's frame (its page comes from
streamlit-folium, also ``lang="en"``) and names the frame.
``tests/browser/test_accessibility.py`` checks all of it with axe-core on every tab.
"""

from __future__ import annotations

import html
import json

from folium.template import Template

from essmap.render.maps import OnePass, script_string

#: Streamlit's interface strings (frontend 1.67) -> French. Exact texts, trimmed; the same table serves
#: text and the ``aria-label``, ``title`` and ``placeholder`` attributes.
STREAMLIT_STRINGS_FR: dict[str, str] = {
    "Skip to main content": "Aller au contenu principal",
    "Main menu": "Menu principal",
    "Open": "Ouvrir la liste",
    "Close": "Fermer",
    "Clear all": "Tout effacer",
    "Select all": "Tout sélectionner",
    "No results": "Aucun résultat",
    "No options to select": "Aucune option",
    "Collapse sidebar": "Replier le panneau des filtres",
    "Expand sidebar": "Déplier le panneau des filtres",
    "Open sidebar": "Ouvrir le panneau des filtres",
    "Close sidebar": "Fermer le panneau des filtres",
    "Running...": "Calcul en cours…",
    "Stop": "Arrêter",
    "Copy to clipboard": "Copier",
    "Link to heading": "Lien vers ce titre",
    "Fullscreen": "Plein écran",
    "Close fullscreen": "Quitter le plein écran",
    "View fullscreen": "Plein écran",
    "Exit fullscreen": "Quitter le plein écran",
    "Download": "Télécharger",
    "Download as CSV": "Télécharger en CSV",
    "Search": "Rechercher",
    "Show/hide columns": "Afficher ou masquer des colonnes",
    "empty": "vide",
    "Choose an option": "Choisissez une option",
    "Choose options": "Choisissez des options",
    "Clear value": "Effacer",
    "No options": "Aucune option",
    "Dismiss": "Fermer",
    "Sidebar": "Panneau latéral",
    "Selected values": "Valeurs sélectionnées",
    "Show suggestions": "Afficher les suggestions",
    "Show data": "Afficher les données",
    "Download as PNG": "Télécharger en PNG",
    "Download as SVG": "Télécharger en SVG",
    "Copy Vega-Lite spec": "Copier la spécification du graphique",
    "Vega visualization": "Graphique",
    "visualization": "graphique",
    "group mark container": "zone du graphique",
    "Print": "Imprimer",
    "Record screen": "Enregistrer l'écran",
    "Stop recording": "Arrêter l'enregistrement",
    "Made with Streamlit v": "Réalisé avec Streamlit v",  # the version follows in its own text node
}

#: Streamlit's announcements with a number or a name in them (regular expression -> French, ``$1`` the
#: part kept), read by screen readers from its live regions.
STREAMLIT_PATTERNS_FR: tuple[tuple[str, str], ...] = (
    (r"^1 option available\.$", "1 option disponible."),
    (r"^(\d+) options available\.$", "$1 options disponibles."),
    (r"^(.+), selected$", "$1, sélectionné"),
    (r"^Help for (.+)$", "Aide : $1"),
)

#: Where the app's own text is (Streamlit's test ids): never translated, whatever it says.
APP_CONTENT = tuple(f'[data-testid="{test_id}"]' for test_id in (
    "stTable", "stMarkdownContainer", "stMetric", "stCaptionContainer", "stAlert", "stVegaLiteChart", "stHeading"))

#: Attributes that carry text a user hears (screen reader) or sees (tooltip, placeholder).
TRANSLATED_ATTRIBUTES = ("aria-label", "title", "placeholder", "aria-roledescription")

_PAGE_SCRIPT = """<script>
(function () {
  var doc = window.document;
  doc.documentElement.lang = "fr";
  if (window.__essmapFrench) { return; }
  window.__essmapFrench = true;
  var fr = %(strings)s, attributes = %(attributes)s;
  var patterns = %(patterns)s.map(function (p) { return [new RegExp(p[0]), p[1]]; });
  var userContent = %(user_content)s;
  var own = Object.prototype.hasOwnProperty;
  function french(text) {
    var key = text.trim();
    if (own.call(fr, key)) { return text.replace(key, fr[key]); }
    for (var i = 0; i < patterns.length; i++) {
      if (patterns[i][0].test(key)) { return text.replace(key, key.replace(patterns[i][0], patterns[i][1])); }
    }
    return null;
  }
  // a table wider than the page scrolls: keyboard users must reach it to scroll it (focusable region)
  function fixScrolling() {
    doc.querySelectorAll('[data-testid="stTable"] > div').forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1 && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", "Tableau défilant horizontalement");
      }
    });
  }
  // skip links: focus the first control of their target (a heading itself), the sidebar opened if needed
  doc.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest(".essmap-skip a[data-target]") : null;
    if (!link) { return; }
    var target = doc.querySelector(link.getAttribute("data-target"));
    if (!target) { return; }
    event.preventDefault();
    var go = function () {
      // a form field first: the sidebar begins with its collapse button, shown only on hover
      var control = /^H[1-6]$/.test(target.tagName) ? null : target.querySelector(
        'input:not([type="hidden"]):not([disabled]), select, textarea');
      if (!control) { control = target; target.setAttribute("tabindex", "-1"); }
      target.scrollIntoView({block: "start"});
      control.focus({preventScroll: true});
    };
    var expand = doc.querySelector('[data-testid="stExpandSidebarButton"]');
    if (target.getAttribute("data-collapsed") === "true" && expand) {  // a collapsed sidebar (phone)
      expand.click();
      setTimeout(go, 400);  // after its opening transition: a hidden field takes no focus
    } else {
      go();
    }
  });
  var pending = null;
  function later() {
    if (pending === null) { pending = setTimeout(function () { pending = null; fixScrolling(); }, 200); }
  }
  window.addEventListener("resize", later);
  function fixText(node) {
    // text the app wrote (tables, Markdown, metrics, charts) is data or already French: a tiers-lieu named
    // "Open" stays "Open"
    var parent = node.parentElement;
    if (parent && parent.closest(userContent)) { return; }
    var done = french(node.nodeValue || "");
    if (done !== null) { node.nodeValue = done; }
  }
  function fixAttribute(element, name) {
    var value = element.getAttribute(name), done = value === null ? null : french(value);
    if (done !== null) { element.setAttribute(name, done); }
  }
  function fixTree(root) {
    if (root.nodeType === 3) { fixText(root); return; }
    if (root.nodeType !== 1) { return; }
    attributes.forEach(function (name) { fixAttribute(root, name); });
    var selector = attributes.map(function (a) { return "[" + a + "]"; }).join(",");
    root.querySelectorAll(selector).forEach(function (element) {
      attributes.forEach(function (name) { fixAttribute(element, name); });
    });
    var walker = doc.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) { fixText(walker.currentNode); }
  }
  new MutationObserver(function (records) {
    records.forEach(function (record) {
      if (record.type === "childList") { record.addedNodes.forEach(fixTree); }
      else if (record.type === "characterData") { fixText(record.target); }
      else { fixAttribute(record.target, record.attributeName); }
    });
    if (doc.documentElement.lang !== "fr") { doc.documentElement.lang = "fr"; }
    later();
  }).observe(doc.documentElement, {subtree: true, childList: true, characterData: true, attributes: true,
                                   attributeFilter: attributes.concat(["lang"])});
  fixTree(doc.body);
})();
</script>"""


def page_script() -> str:
    """The ``<script>`` that puts the Streamlit page in French (see the module docstring)."""
    return _PAGE_SCRIPT % {"strings": json.dumps(STREAMLIT_STRINGS_FR, ensure_ascii=False),
                           "patterns": json.dumps(STREAMLIT_PATTERNS_FR, ensure_ascii=False),
                           "user_content": json.dumps(", ".join(APP_CONTENT)),
                           "attributes": json.dumps(list(TRANSLATED_ATTRIBUTES))}


#: Skip links: visually hidden until focused (keyboard users), first in the page's tab order.
PAGE_STYLE = """<style>
.essmap-skip a { position: absolute; left: -10000px; top: auto; width: 1px; height: 1px; overflow: hidden; }
.essmap-skip a:focus { position: static; width: auto; height: auto; display: inline-block; padding: 0.3rem 0.6rem;
  background: #ffffff; color: #0b3d91; outline: 3px solid #0b3d91; text-decoration: underline; }
</style>"""


def skip_links(targets: dict[str, str]) -> str:
    """HTML of the skip links, ``{label: CSS selector of the target}``, in a box hidden until focused.

    :func:`page_script` moves the focus to the target's first control (a heading: to itself), as an
    anchor alone would not in Streamlit (its sidebar headings carry no ``id``).
    """
    links = " ".join(f'<a href="#" data-target="{html.escape(selector)}">{html.escape(label)}</a>'
                     for label, selector in targets.items())
    return f'<nav class="essmap-skip" aria-label="Liens d\'évitement">{links}</nav>'


#: Leaflet's own strings (Leaflet 1.9) -> French; the attribution prefix is set separately.
LEAFLET_STRINGS_FR: dict[str, str] = {
    "Zoom in": "Zoom avant",
    "Zoom out": "Zoom arrière",
    "Close popup": "Fermer la fenêtre",
    "Layers": "Couches",
}


class FrenchLeaflet(OnePass):
    """Leaflet in French, in the map's own frame: ``lang="fr"``, the frame's title, zoom buttons,
    popup close button, layer switcher, and the attribution prefix (Leaflet's options, set after the
    map is built); add it after the last control."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function (map) {
            var fr = {{ this.strings|tojson }};
            document.documentElement.lang = "fr";
            document.title = {{ this.title }};
            if (window.frameElement) { window.frameElement.title = {{ this.title }}; }
            if (map.zoomControl) {
                map.zoomControl.remove();
                L.Util.setOptions(map.zoomControl, {zoomInTitle: fr["Zoom in"], zoomOutTitle: fr["Zoom out"]});
                map.zoomControl.addTo(map);
            }
            if (map.attributionControl) {
                map.attributionControl.setPrefix('<a href="https://leafletjs.com" '
                    + 'title="Bibliothèque JavaScript de cartes interactives">Leaflet</a>');
            }
            var fix = function (root) {
                root.querySelectorAll(".leaflet-popup-close-button").forEach(function (b) {
                    b.setAttribute("aria-label", fr["Close popup"]); b.title = fr["Close popup"];
                });
                root.querySelectorAll(".leaflet-control-layers-toggle").forEach(function (a) {
                    a.title = fr["Layers"]; a.setAttribute("aria-label", fr["Layers"]);
                });
            };
            fix(map.getContainer());
            map.on("popupopen", function (e) { fix(e.popup.getElement()); });
        })({{ this._parent.get_name() }});
        {% endmacro %}
    """)

    def __init__(self, title: str) -> None:
        super().__init__()
        self._name = "FrenchLeaflet"
        self.title = script_string(title)  # names from data: see maps.escape
        self.strings = LEAFLET_STRINGS_FR
