"""essmap dashboard (Streamlit). Layout, widgets and caching only: data, analysis and maps come
from the essmap package (viewdata.view_data computes what is shown, maps.view_map draws it).

Widget labels and keys are an interface: tests/test_app.py and tests/browser rely on them. The view
lives in the URL query string (``MapView.to_query_params``): opening a link reproduces it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from essmap import store
from essmap.analysis.coverage import coverage_share
from essmap.analysis.indicators import INDICATORS, INDICATORS_BY_KEY
from essmap.domain.config import load_settings
from essmap.domain.formatting import format_number, format_percent
from essmap.domain.nomenclature import FAMILY_LABELS, SECTOR_LABELS, SIZE_BAND_LABELS
from essmap.domain.selection import Selection
from essmap.present import keyfigures, viewdata
from essmap.present.basemaps import TILES
from essmap.present.view import DASHBOARD_RADIUS_M, LEVELS_BY_SCOPE, TABS, MapView, scope_of, view_from_link
from essmap.render import accessibility, maps, portrait, snapshot, st_folium
from essmap.render import charts as charts_spec
from essmap.render.tables import DOWNLOAD_FORMATS, display_table, export_file_name, table_bytes

st.set_page_config(page_title="essmap – ESS, QPV et tiers-lieux", layout="wide")
# lang="fr" and Streamlit's own strings in French (its index.html and frontend are English), skip-link style
st.html(accessibility.PAGE_STYLE + accessibility.page_script(), unsafe_allow_javascript=True)
st.html(Path(__file__).with_name("app.css"))  # phone layout: the map in the first screen
SETTINGS = load_settings()

LEVELS = {"commune": "Commune", "epci": "EPCI", "departement": "Département", "region": "Région"}
METHODS = {"quantiles": "Quantiles", "natural_breaks": "Seuils naturels (Jenks)", "equal_interval": "Intervalles égaux"}
TILE_CHOICES = {"": "Aucun (hors ligne)", **{name: name for name in TILES}}
CHOROPLETH_INDICATORS = [i.key for i in INDICATORS if i.key not in ("rayon_m", "inclut_donnees_simulees")]
TAB_OF_LABEL = {label: tab for tab, label in TABS.items()}
#: Widgets of the tabs that run only while open: Streamlit forgets a widget's value in a run that does not
#: draw it, so these are carried over explicitly (see below).
TAB_WIDGETS = ("selection", "table_export", "titre_export", "format_carte", "orientation_carte")
SNAPSHOT_FORMATS = {"PNG 300 dpi": "png", "PDF": "pdf", "SVG": "svg"}


# --- Cached data -------------------------------------------------------------------------------
# Every cache is keyed on the store file's identity (``STORE_KEY``): after an ingest replaces the file,
# the next run reads the new store. Each call takes its own DuckDB cursor (one per thread).

StoreKey = tuple[int, int, int, int]


@st.cache_resource
def _store() -> store.SharedStore:
    return store.SharedStore(SETTINGS.db_path)


@st.cache_data(show_spinner=False, max_entries=2)
def _catalogue(store_key: StoreKey) -> dict:
    """Names and choices for the sidebar (small tables, read once per store)."""
    with _store().cursor() as con:
        return store.catalogue(con)


@st.cache_resource(show_spinner="Calcul de la carte…", max_entries=32)
def _view_data(store_key: StoreKey, params: tuple[tuple[str, str], ...]) -> viewdata.ViewData:
    """Keyed on :func:`viewdata.computation_key`: classes, tiles and selection do not recompute it.

    Shared, not copied (cache_resource): copying 25 000 establishments on every rerun cost more than
    the rest of the run. Nothing downstream mutates a ViewData (it derives new frames).
    """
    with _store().cursor() as con:
        return viewdata.view_data(con, MapView.from_query_params(dict(params)))


@st.cache_resource(show_spinner="Préparation de la carte…", max_entries=16)
def _map_component(store_key: StoreKey, params: tuple[tuple[str, str], ...]) -> dict:
    """The arguments of the streamlit-folium component for the map of a view without its selection.

    The map of a view never changes, so it is rendered once here and the component is called with the
    same arguments on every rerun (same key: the browser keeps the drawn map, a click does not rebuild it).
    """
    view = MapView.from_query_params(dict(params))
    data = _data(store_key, view)
    m = maps.view_map(data, publish=_publish_points, asset_urls=_asset_urls())
    accessibility.FrenchLeaflet(f"Carte : {data.indicator.label_fr}, {data.territory_label}").add_to(m)
    return st_folium.component_args(m, key="carte")


#: ./static, which Streamlit serves at app/static (``enableStaticServing``), as the map component's frame
#: (``<base>/component/<name>/index.html``) reaches it.
STATIC, STATIC_URL = Path(__file__).resolve().parent / "static", "../../app/static"


@st.cache_resource(show_spinner=False)
def _asset_urls() -> dict[str, str]:
    """Leaflet's files served from ./static. A read-only install keeps them inlined in the map."""
    try:
        return maps.publish_assets(STATIC, STATIC_URL)
    except OSError:
        return {}


def _publish_points(content: bytes) -> str | None:
    """A point layer served from ./static/points (the map message stays small); inlined if read-only."""
    try:
        return maps.publish_payload(STATIC / "points", f"{STATIC_URL}/points", content)
    except OSError:
        return None


@st.cache_resource(show_spinner="Calcul des QPV dans le rayon…", max_entries=16)
def _radius_tables(store_key: StoreKey, params: tuple[tuple[str, str], ...]) -> tuple:
    """The radius tab's tables (QPV x tiers-lieux, QPV x establishments), keyed on
    :func:`viewdata.computation_key` and shared, read only; QPV x establishments is computed here, on demand."""
    data = _view_data(store_key, params)
    with _store().cursor() as con:
        around = viewdata.establishments_around(con, data)
    return viewdata.qpv_tiers_lieux_table(data), around, viewdata.qpv_establishments_table(around)


@st.cache_resource(show_spinner="Préparation des tableaux…", max_entries=16)
def _export_tables(store_key: StoreKey, params: tuple[tuple[str, str], ...]) -> dict:
    """The exports tab's tables, cached like :func:`_radius_tables`."""
    data = _view_data(store_key, params)
    with _store().cursor() as con:
        return viewdata.export_tables(con, data)


@st.cache_data(show_spinner="Calcul de la fiche…", max_entries=32)
def _fiche(store_key: StoreKey, params: tuple[tuple[str, str], ...], code: str):
    view = MapView.from_query_params(dict(params))
    with _store().cursor() as con:
        return viewdata.fiche(con, _data(store_key, view), code)


@st.cache_data(show_spinner=False, max_entries=2)
def _sources(store_key: StoreKey):
    with _store().cursor() as con:
        return store.sources(con)


@st.cache_data(show_spinner=False, max_entries=8)
def _portrait_pdf(store_key: StoreKey, level: str, code: str, radius_m: float) -> bytes:
    """Run on click (deferred download), in another thread: its own DuckDB cursor."""
    with _store().cursor() as con:
        return portrait.portrait_pdf(con, level, code, radius_m=radius_m)


def _key(view: MapView) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(view.to_query_params().items()))


def _data(store_key: StoreKey, view: MapView) -> viewdata.ViewData:
    return _view_data(store_key, _key(viewdata.computation_key(view))).with_view(view)


#: Rows a long list shows on screen (the whole list is in the exports): static tables draw every row.
SHOWN_ROWS = 200
#: Rows of the exports tab's preview, and of the map's values shown under the map.
PREVIEW_ROWS, MAP_TABLE_ROWS = 50, 2000
FICHE_WHOLE_LIST = ("pour la liste complète, choisissez ce territoire dans les filtres et téléchargez le tableau "
                    "de l'onglet « Exports »")


def _table(frame, *, limit: int | None = None, whole: str = "") -> None:
    """A table as a static HTML table (``st.table``: real headers for screen readers, no English toolbar),
    numbers in French, text escaped (:func:`_plain`); with ``limit``, its first rows and a note saying how
    many there are and, ``whole``, where to find them all."""
    if limit is not None and len(frame) > limit:
        st.caption(f"Les {format_number(limit)} premières lignes sur {format_number(len(frame))}" + (
            f" ; {whole}" if whole else "") + ".")
        frame = frame.head(limit)
    if len(frame):
        # st.table reads its cells as Markdown: every markup character escaped, text from data shows as typed
        st.table(display_table(frame).map(_plain), hide_index=True)
    else:
        st.caption("Aucune ligne.")


def _map_table(data: viewdata.ViewData):
    """The choropleth as a table: unit, code, value of the indicator and its class in the legend."""
    areas = data.areas.sort_values(["nom", "code"])
    classes = data.classification.class_of(areas["valeur"])
    labels = dict(enumerate(data.classification.labels))
    return pd.DataFrame({
        LEVELS[data.view.level]: areas["nom"].astype("string").to_numpy(),
        "Code": areas["code"].astype("string").to_numpy(),
        data.legend_title: [viewdata.format_value(v, data.indicator) for v in areas[data.indicator.key]],
        "Classe de la légende": [labels.get(int(c), "") if pd.notna(c) else "Pas de données" for c in classes],
    })


def _plain(text: object) -> str:
    """Text from data shown through Markdown (headers, metrics): every markup character escaped."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|&~$=:])", r"\\\1", str(text))


# --- The view from the URL, once per session ----------------------------------------------------

STORE_KEY = _store().identity()
CATALOGUE = _catalogue(STORE_KEY)
communes, departements = CATALOGUE["communes"], CATALOGUE["departements"]
state = st.session_state
if "departement" not in state:
    deps = list(departements["code_departement"])
    initial, notices = view_from_link(st.query_params.to_dict(), departements=deps)
    state["_avis_lien"] = notices
    sel = initial.selection
    wide = bool(sel.region) or st.query_params.get("france") == "1"  # a région or France link
    dep = sel.departements[0] if sel.departements else ("" if wide else ("13" if "13" in deps else deps[0]))
    state.update({
        "departement": dep,
        "region": (str(departements.set_index("code_departement").loc[dep, "code_region"]) if dep
                   else sel.region or ""),
        "epci": sel.epci[0] if sel.epci else "", "commune": sel.communes[0] if sel.communes else "",
        "familles": list(sel.families), "secteurs": list(sel.sectors), "employeurs": sel.employer_only,
        "tranches": list(sel.size_bands), "types_tl": list(sel.tiers_lieu_types),
        "labels_tl": list(sel.tiers_lieu_labels),
        "generation_qpv": sel.qpv_generation or (CATALOGUE["generations"] or [""])[0],
        "indicateur": initial.indicator if initial.indicator in CHOROPLETH_INDICATORS else CHOROPLETH_INDICATORS[0],
        # the link's level if it has a valid one; else the territory's own (set below: a région by EPCI)
        "niveau": initial.level if st.query_params.get("niveau") == initial.level else "",
        "methode": initial.method, "k": initial.k, "fond": initial.tiles or "",
        "rayon": int(initial.radius_m), "selection": initial.selected or "", "onglet": TABS[initial.tab],
    })
for key in TAB_WIDGETS:  # kept while their tab is closed (assigning turns them into plain session state)
    if key in state:
        state[key] = state[key]
if "_a_ouvrir" in state:  # a click on the map, handled before the widgets are drawn
    state["selection"] = state.pop("_a_ouvrir")
    state["onglet"] = TABS["fiche"]


def _choose(key: str, options: list) -> None:
    """Keep a widget's value among its (cascading) options."""
    if state.get(key) not in options:
        state[key] = options[0]


# --- Tabs other than the map (each runs only while open) ---------------------------------------


def _radius_tab(data: viewdata.ViewData, view: MapView) -> None:
    """QPV x tiers-lieux and QPV x ESS establishments within the radius."""
    near_tiers_lieux, around, near_establishments = _radius_tables(STORE_KEY, _key(viewdata.computation_key(view)))
    radius = format_number(view.radius_m)
    st.header("Tiers-lieux autour des QPV", anchor="tiers-lieux-autour-des-qpv")
    st.caption(f"Tiers-lieux dans chaque QPV ou à moins de {radius} m, et le plus proche.")
    st.metric("QPV couverts", format_percent(coverage_share(data.qpv)),
              help=f"Part des QPV ayant au moins un tiers-lieu dans le quartier ou à moins de {radius} m.")
    _table(near_tiers_lieux)
    st.header("Établissements ESS autour des QPV", anchor="etablissements-ess-autour-des-qpv")
    st.caption(f"Établissements ESS retenus par les filtres ({_plain(data.filters_label)}) à moins de {radius} m "
               "de chaque QPV" + (" ; données simulées." if data.synthetic else "."))
    st.metric("QPV avec un établissement ESS proche", format_percent(coverage_share(around)))
    _table(near_establishments)


def _fiche_tab(data: viewdata.ViewData, view: MapView, units: dict[str, str]) -> None:
    """The fiche of the selected unit (chosen here or by a click on the map)."""
    st.selectbox("Territoire sélectionné", ["", *units], key="selection",
                 format_func=lambda c: units.get(c, "Aucun (cliquez sur la carte)"))
    fiche = _fiche(STORE_KEY, _key(viewdata.computation_key(view)), view.selected) if view.selected else None
    if fiche is None:
        st.info("Choisissez un territoire ci-dessus ou cliquez sur une commune ou un QPV de la carte.")
    else:
        st.header(f"Fiche : {_plain(fiche.name)}")
        st.caption(f"{fiche.level_label} {_plain(fiche.code)} · {_plain(data.filters_label)}")
        if fiche.synthetic:
            st.warning("Fiche calculée sur des **données simulées** (démonstration).")
        _key_figures(fiche)
        charts = st.columns(2)
        charts[0].subheader("Établissements par famille")
        charts[0].vega_lite_chart(charts_spec.breakdown_bar_chart(fiche.familles, category_label="Famille"),
                                  width="stretch")
        charts[1].subheader("Établissements par secteur")
        charts[1].vega_lite_chart(charts_spec.breakdown_bar_chart(fiche.secteurs, category_label="Secteur"),
                                  width="stretch")
        st.subheader("Dans les QPV et hors QPV")
        _table(fiche.qpv_hors_qpv)
        st.subheader(f"Établissements ESS ({format_number(len(fiche.etablissements))})")
        _table(viewdata.establishments_table(fiche.etablissements), limit=SHOWN_ROWS, whole=FICHE_WHOLE_LIST)
        st.subheader(f"Tiers-lieux ({format_number(len(fiche.tiers_lieux))})")
        _table(viewdata.tiers_lieux_table(fiche.tiers_lieux), limit=SHOWN_ROWS, whole=FICHE_WHOLE_LIST)
        _fiche_sources(fiche)


def _key_figures(fiche: viewdata.Fiche) -> None:
    """The top of the fiche: the key figures large, each with its comparison and a one-line reading."""
    figures = keyfigures.key_figures(fiche)
    columns = st.columns(3)
    for i, figure in enumerate(figures):
        with columns[i % 3].container(border=True):
            st.metric(figure.label, figure.value)
            if figure.comparison != figure.value:
                st.markdown(f"**{_plain(figure.comparison)}**")
            if figure.reading:
                st.markdown(_plain(figure.reading))
    st.markdown("Détail des chiffres, de leurs comparaisons et de leurs sources : section « Sources et méthode » "
                "en bas de la fiche.")


def _fiche_sources(fiche: viewdata.Fiche) -> None:
    """Every figure of the fiche with its parent and national values, notes and sources."""
    with st.expander("Sources et méthode"):
        for card in fiche.comparisons:
            lines = [f"**{_plain(card.indicator.label_fr)}** : {viewdata.format_value(card.value, card.indicator)}"]
            if card.parent_name is not None:
                parent_value = viewdata.format_value(card.parent_value, card.indicator)
                lines.append(f"{_plain(card.parent_name)} : {parent_value}")
            if card.france_value is not None:
                lines.append(f"France : {viewdata.format_value(card.france_value, card.indicator)} "
                             f"(source : {_plain(card.france_source_fr)})")
            if card.note_fr:
                lines.append(_plain(card.note_fr))
            lines.append(f"Unité de compte : {_plain(card.indicator.counting_unit)}")
            lines.append(f"Source : {_plain(card.indicator.source_fr)}")
            st.caption("  \n".join(lines))
        st.caption(f"Comparaisons : un taux ou une part est comparé à la référence nationale publiée quand elle "
                   f"existe, sinon au niveau supérieur ; un écart de moins de "
                   f"{format_percent(keyfigures.CLOSE_RELATIVE_GAP)} de la référence se lit « autant que ». "
                   "Les filtres de la vue (familles, secteurs…) s'appliquent au territoire, à son niveau supérieur "
                   "et aux chiffres de France calculés par essmap, pas aux chiffres nationaux publiés.")


def _exports_tab(data: viewdata.ViewData, view: MapView) -> None:
    """Tables, map snapshot and portrait of the view, as files.

    Downloads do not rerun the script (``on_click="ignore"``): a rerun replaces the deferred files of
    the other buttons, so a second click within a second of the first downloaded nothing.
    """
    tables = _export_tables(STORE_KEY, _key(viewdata.computation_key(view)))
    st.header("Tableaux de la vue")
    st.caption(f"{_plain(data.territory_label)} · {_plain(data.filters_label)}"
               + (" · contient des données simulées" if data.synthetic else ""))
    label = st.selectbox("Tableau", list(tables), key="table_export")
    stem, frame = tables[label]
    st.subheader(f"Aperçu : {label}")
    if len(frame) > PREVIEW_ROWS:
        st.caption(f"Les {format_number(PREVIEW_ROWS)} premières lignes sur {format_number(len(frame))} ; "
                   "les fichiers ci-dessous contiennent tout le tableau.")
    _table(frame.head(PREVIEW_ROWS))
    buttons = st.columns(len(DOWNLOAD_FORMATS))
    for column, fmt in zip(buttons, DOWNLOAD_FORMATS, strict=True):
        extension = DOWNLOAD_FORMATS[fmt][2]
        name = export_file_name(stem + ("_point-virgule" if fmt == "CSV « ; »" else ""), data.territory_label,
                                extension)
        column.download_button(fmt, data=lambda frame=frame, fmt=fmt, stem=stem: table_bytes(frame, fmt, layer=stem),
                               file_name=name, key=f"export_{stem}_{extension}_{fmt == 'CSV « ; »'}",
                               on_click="ignore")
    st.header("Carte de la vue")
    snap = st.columns([3, 1.2, 1.2])
    default_title = snapshot.default_title(data)
    title = snap[0].text_input("Titre de la carte", key="titre_export", placeholder=default_title) or default_title
    snap_format = snap[1].selectbox("Format", list(SNAPSHOT_FORMATS), key="format_carte")
    orientation = snap[2].selectbox("Orientation", ["paysage", "portrait"], key="orientation_carte",
                                    format_func=lambda o: f"A4 {o}")
    extension = SNAPSHOT_FORMATS[snap_format]
    st.download_button(
        f"Télécharger la carte ({snap_format}, A4 {orientation})",
        data=lambda data=data, fmt=extension, title=title, orientation=orientation: snapshot.render_snapshot(
            data, sources=_sources(STORE_KEY), fmt=fmt, title=title, orientation=orientation),
        file_name=export_file_name("carte", data.territory_label, extension), key="export_carte",
        on_click="ignore",
    )
    st.header("Portrait de territoire")
    chosen = view.selected or ""
    unit = viewdata.unit_of(data, chosen) if chosen else None
    if unit is None:
        st.info("Choisissez un territoire dans l'onglet « Fiche » (ou cliquez sur la carte) pour son portrait.")
    else:
        level, name = unit
        st.caption(f"{_plain(name)} ({_plain(chosen)}) · PDF de 4 pages : chiffres clés comparés, familles "
                   f"et secteurs, carte et QPV à moins de {format_number(view.radius_m)} m, principaux employeurs ; "
                   "tout le territoire, sans les filtres de familles ou de secteurs.")
        st.download_button(
            "Portrait de territoire (PDF)",
            data=lambda level=level, code=chosen, radius=view.radius_m: _portrait_pdf(STORE_KEY, level, code, radius),
            file_name=portrait.portrait_file_name(level, name, chosen), mime="application/pdf",
            key="export_portrait", on_click="ignore",
        )


# --- Sidebar: territory and filters -------------------------------------------------------------

side = st.sidebar
side.header("Filtres")
regions = dict(zip(CATALOGUE["regions"]["code_region"], CATALOGUE["regions"]["nom"], strict=True))
region_codes = ["", *sorted(set(departements["code_region"]) & set(regions))]  # "": France entière
_choose("region", region_codes)
side.selectbox("Région", region_codes, key="region",
               format_func=lambda c: f"{regions[c]} – {c}" if c else "France entière")
dep_names = dict(zip(departements["code_departement"], departements["nom"], strict=True))
in_region = departements["code_region"] == state["region"] if state["region"] else departements["code_region"].notna()
dep_codes = ["", *sorted(departements.loc[in_region, "code_departement"])]  # "": the whole région (or France)
_choose("departement", dep_codes)
all_deps = "Toute la région" if state["region"] else "Tous les départements"  # read now, not when formatting
side.selectbox("Département", dep_codes, key="departement",
               format_func=lambda c: f"{c} – {dep_names[c]}" if c else all_deps)
com_rows = communes[(communes["code_departement"] == state["departement"]) & (communes["type_commune"] == "COM")]
epci_names = dict(zip(CATALOGUE["epci"]["siren_epci"], CATALOGUE["epci"]["nom"], strict=True))
epci_codes = ["", *sorted(set(com_rows["siren_epci"].dropna()), key=lambda c: epci_names.get(c, c))]
_choose("epci", epci_codes)
side.selectbox("EPCI", epci_codes, key="epci",
               format_func=lambda c: f"{epci_names.get(c, c)} ({c})" if c else "Tous les EPCI")
if state["epci"]:
    com_rows = com_rows[com_rows["siren_epci"] == state["epci"]]
com_names = dict(zip(com_rows["code_insee"], com_rows["nom"], strict=True))
commune_codes = ["", *sorted(com_names, key=lambda c: (com_names[c], c))]
_choose("commune", commune_codes)
side.selectbox("Commune", commune_codes, key="commune",
               format_func=lambda c: f"{com_names[c]} ({c})" if c else "Toutes les communes")
side.multiselect("Familles ESS", list(FAMILY_LABELS), key="familles",
                placeholder="Toutes les familles", format_func=FAMILY_LABELS.get)
side.multiselect("Secteurs d'activité", list(SECTOR_LABELS), key="secteurs",
                placeholder="Tous les secteurs", format_func=SECTOR_LABELS.get)
side.checkbox("Établissements employeurs uniquement", key="employeurs")
side.multiselect("Tranches d'effectifs", list(SIZE_BAND_LABELS), key="tranches",
                placeholder="Toutes les tranches", format_func=SIZE_BAND_LABELS.get)
side.multiselect("Types de tiers-lieux", CATALOGUE["types_tl"], key="types_tl", placeholder="Tous les types")
side.multiselect("Labels ANCT", CATALOGUE["labels_tl"], key="labels_tl",
                placeholder="Tous (avec ou sans label)")
generations = CATALOGUE["generations"] or [""]
_choose("generation_qpv", generations)
side.selectbox("Génération QPV", generations, key="generation_qpv", format_func=lambda g: f"QPV {g}" if g else "–")

# --- Main area ----------------------------------------------------------------------------------

st.markdown(accessibility.skip_links({"Aller aux filtres": '[data-testid="stSidebar"]',
                                      "Aller aux données de la carte en tableau": "#donnees-carte"}),
            unsafe_allow_html=True)
st.title("essmap : l'économie sociale et solidaire, les QPV et les tiers-lieux")
# the elements above the map keep their place in every run, notices or not: the map's frame stays open
# from view to view (a map at another place in the page is a new frame, which loads everything again)
link_notices = st.container()
for notice in state.pop("_avis_lien", []):  # once, on opening the link
    link_notices.error(notice)
controls_box = st.container(key="commandes_carte")  # below the map on a phone (app.css)
controls = controls_box.columns([3, 1.3, 1.6, 1.3, 1.5])
controls[0].selectbox("Indicateur", CHOROPLETH_INDICATORS, key="indicateur",
                      format_func=lambda k: INDICATORS_BY_KEY[k].label_fr)
selection = Selection(
    region=(state["region"] or None) if not state["departement"] else None,
    departements=(state["departement"],) if state["departement"] else (),
    epci=(state["epci"],) if state["epci"] else (),
    communes=(state["commune"],) if state["commune"] else (),
    families=tuple(state["familles"]), sectors=tuple(state["secteurs"]), employer_only=state["employeurs"],
    size_bands=tuple(state["tranches"]), tiers_lieu_types=tuple(state["types_tl"]),
    tiers_lieu_labels=tuple(state["labels_tl"]),
    qpv_generation=state["generation_qpv"] if state["generation_qpv"] != generations[0] else None,
)
levels = [level for level in LEVELS_BY_SCOPE[scope_of(selection)] if level in LEVELS]
if state.get("_portee") != scope_of(selection):  # another scope opens at its own level (the first of levels)
    if "_portee" in state:
        state["niveau"] = ""
    state["_portee"] = scope_of(selection)
_choose("niveau", levels)
controls[1].selectbox("Niveau", levels, key="niveau", format_func=LEVELS.get)
controls[2].selectbox("Classes", list(METHODS), key="methode", format_func=METHODS.get)
controls[3].slider("Nombre de classes", 3, 7, key="k")
controls[4].selectbox("Fond de carte", list(TILE_CHOICES), key="fond", format_func=TILE_CHOICES.get)
# a select slider: its values read in French ("1 000"), which a plain slider's format cannot do
controls_box.select_slider("Rayon (m)",
                          list(range(DASHBOARD_RADIUS_M[0], DASHBOARD_RADIUS_M[1] + 1, DASHBOARD_RADIUS_M[2])),
                          key="rayon", format_func=format_number)

view = MapView(selection, indicator=state["indicateur"], level=state["niveau"], radius_m=state["rayon"],
               method=state["methode"], k=state["k"], tiles=state["fond"] or None,
               tab=TAB_OF_LABEL.get(state.get("onglet", ""), MapView().tab))
data = _data(STORE_KEY, view)
units = viewdata.selectable_units(data)
_choose("selection", ["", *units])
view = view.replace(selected=state["selection"] or None)

synthetic_notice = st.empty()
if data.synthetic:
    synthetic_notice.warning("Cette vue contient des **données simulées** (démonstration) : les établissements ESS "
                             "et la plupart des tiers-lieux sont générés par essmap ; aucun chiffre ne décrit la "
                             "réalité.")
st.caption(f"{_plain(data.territory_label)} · {_plain(view.selection.without_territory().describe())}")

# Only the open tab runs (the map tab always does, so coming back to it is instant): the first map is not
# held up by the tables, the fiche and the exports.
carte, rayon, onglet_fiche, exports = st.tabs(list(TABS.values()), key="onglet", on_change="rerun")

with carte:
    level_label = LEVELS[view.level] if LEVELS[view.level].isupper() else LEVELS[view.level].lower()  # "EPCI"
    cols = st.container(key="chiffres_carte").columns(4)  # two by two on a phone (app.css)
    suffix = " (données simulées)" if data.synthetic else ""
    cols[0].metric("Établissements ESS" + suffix, format_number(data.n_etablissements))
    cols[1].metric("Tiers-lieux", format_number(len(data.tiers_lieux)))
    cols[2].metric("QPV", format_number(len(data.qpv)))
    cols[3].metric(f"Unités cartographiées ({level_label})", format_number(len(data.areas)))
    collapsed, collapsed_notice = data.classification.collapse_notice(data.indicator.label_fr), st.empty()
    if collapsed:
        collapsed_notice.info(collapsed)
    map_args = _map_component(STORE_KEY, _key(view.replace(selected=None, tab=MapView().tab)))
    click = st_folium.clicked_code(st_folium.show_map(map_args, height=620, selected=view.selected), map_args)
    # the component returns its last value on every rerun: a click is new when its identity is (the same
    # unit clicked again is a new click, and opens its fiche again)
    if click is not None and click[1] != state.get("_dernier_clic"):
        state["_dernier_clic"] = click[1]
        state["_a_ouvrir"] = click[0]
        st.rerun()
    a_unit = {"commune": "une commune", "epci": "un EPCI", "departement": "un département"}.get(view.level,
                                                                                           "une région")
    st.caption(f"Cliquez sur {a_unit} ou un QPV pour ouvrir sa fiche. Sources : INSEE (communes, populations "
               "légales, SIRENE), ANCT (QPV), France Tiers-Lieux et Commune Mesure (tiers-lieux)."
               + (" Établissements ESS : données simulées." if data.synthetic else ""))
    # the map's information without the map (RGAA 4.1: a map needs a text alternative)
    st.header("Données de la carte en tableau", anchor="donnees-carte")
    st.markdown(f"Sans la carte : la valeur de chaque {level_label} ci-dessous ; les QPV et leurs tiers-lieux "
                "proches dans l'onglet « Rayon autour des QPV » ; les établissements ESS et les tiers-lieux dans "
                "l'onglet « Exports » (tableaux et fichiers).")
    # drawn only while open (its rows cost the browser more than the rest of the page on large départements)
    map_table = st.expander(f"{data.legend_title} par {level_label} ({format_number(len(data.areas))} lignes)",
                            key="tableau_carte", on_change="rerun")
    if map_table.open:
        with map_table:
            _table(_map_table(data), limit=MAP_TABLE_ROWS,
                   whole=f"le tableau complet : « {viewdata.indicators_table_title(view.level)} » dans l'onglet "
                         "« Exports »")

if rayon.open:
    with rayon:
        _radius_tab(data, view)
if onglet_fiche.open:
    with onglet_fiche:
        _fiche_tab(data, view, units)
if exports.open:
    with exports:
        _exports_tab(data, view)

# --- Keep the URL in sync with the view ----------------------------------------------------------
params = view.to_query_params()
if st.query_params.to_dict() != params:
    st.query_params.from_dict(params)
