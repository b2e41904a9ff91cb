"""The Streamlit app runs headless on the demo store (AppTest, no browser): filters, radius,
URL restore, fiche, synthetic labels and escaped names."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 600  # the machine is slow and shared: generous on purpose, this is no speed test
HOSTILE = "<script>alert(1)</script> Escale &amp; CO"


def _app(db: Path, monkeypatch, **params: str) -> AppTest:
    monkeypatch.setenv("ESSMAP_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def _open_tab(at: AppTest, name: str) -> AppTest:
    """Only the open tab runs (besides the map): open ``name`` as a click on it would."""
    at.session_state["onglet"] = name
    at.run()
    assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _table(at: AppTest, column: str):
    """The displayed table having ``column`` (static tables, ``st.table``: French text in every cell)."""
    return next(t.value for t in at.table if column in t.value.columns)


def _count(value: str) -> int:
    return int(value.replace("\u202f", ""))


def _clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="module", autouse=True)
def demo_caches():
    """The tests on the demo store share the app's caches, as the visitors of one server do: each view
    is computed once per module, not once per test (the first test still runs them cold). Clean at
    the start and the end, for the other modules that run the app."""
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture()
def fresh_caches():
    """For a test on another store: the store connection is cached without argument (one store per
    server), so start and end clean."""
    _clear_caches()
    yield
    _clear_caches()


def test_default_view_labels_synthetic_data_and_filters_change_counts(demo_db, monkeypatch):
    at = _app(demo_db, monkeypatch)
    assert at.title[0].value == "essmap : l'économie sociale et solidaire, les QPV et les tiers-lieux"
    assert any("données simulées" in w.value for w in at.warning)
    assert at.selectbox(key="departement").value == "13"
    assert at.selectbox(key="region").value == "93"
    assert [t.label for t in at.tabs] == ["Carte", "Rayon autour des QPV", "Fiche", "Exports"]
    # empty filters say "all" in French, not Streamlit's English default
    assert all(m.placeholder.startswith("Tou") for m in at.multiselect), [m.placeholder for m in at.multiselect]
    everything = _count(_metrics(at)["Établissements ESS (données simulées)"])
    assert everything > 0

    at.multiselect(key="familles").set_value(["cooperative"]).run()
    assert not at.exception
    coops = _count(_metrics(at)["Établissements ESS (données simulées)"])
    assert 0 < coops < everything
    assert at.query_params["families"] == "cooperative"

    at.checkbox(key="employeurs").check().run()
    assert _count(_metrics(at)["Établissements ESS (données simulées)"]) < coops

    commune = at.selectbox(key="commune")
    assert "13055" in commune.options or "Marseille (13055)" in commune.options
    commune.set_value("13055").run()
    assert at.caption[0].value.startswith("Marseille \\(13055\\)")

    at.selectbox(key="departement").set_value("05").run()
    assert not at.exception
    assert at.selectbox(key="commune").value == ""  # the cascade resets what no longer exists
    assert at.query_params["departements"] == "05"


def test_radius_change_changes_the_radius_table(demo_db, monkeypatch):
    at = _app(demo_db, monkeypatch)
    assert not any("Tiers-lieux dans le rayon" in t.value.columns for t in at.table)  # closed tab: not run
    assert not at.dataframe  # static tables only: st.dataframe's toolbar is in English
    _open_tab(at, "Rayon autour des QPV")
    table = _table(at, "Tiers-lieux dans le rayon")
    assert list(table.columns[:6]) == ["QPV", "Code QPV", "Commune", "Tiers-lieux dans le rayon",
                                       "Tiers-lieu le plus proche", "Distance (m)"]
    covered = _metrics(at)["QPV couverts"]
    assert "1\u202f000" in at.select_slider(key="rayon").options  # the radius reads in French
    at.select_slider(key="rayon").set_value(4000).run()
    assert not at.exception
    wider = _table(at, "Tiers-lieux dans le rayon")
    assert list(wider["Code QPV"]) == list(table["Code QPV"])
    assert wider["Tiers-lieux dans le rayon"].map(_count).sum() > table["Tiers-lieux dans le rayon"].map(_count).sum()
    # distances read in French, thousands separated ("14 310")
    distances = list(wider["Distance (m)"]) + list(table["Distance (m)"])
    assert all(re.fullmatch(r"\d{1,3}(\u202f\d{3})*|–", d) for d in distances), distances
    assert any("\u202f" in d for d in distances), distances
    assert _metrics(at)["QPV couverts"] != covered
    assert at.query_params["rayon"] == "4000"


def test_url_restores_the_view_and_opens_the_fiche(demo_db, monkeypatch):
    at = _app(demo_db, monkeypatch, departements="13", indicateur="part_employeurs_en_qpv", niveau="epci",
              rayon="2500", classes="4", methode="equal_interval", selection="13055", families="association")
    _open_tab(at, "Fiche")
    assert at.selectbox(key="indicateur").value == "part_employeurs_en_qpv"
    assert at.selectbox(key="niveau").value == "epci"
    assert at.select_slider(key="rayon").value == 2500
    assert at.slider(key="k").value == 4
    assert at.selectbox(key="methode").value == "equal_interval"
    assert at.multiselect(key="familles").value == ["association"]
    # 13055 is no EPCI: the selection falls back to none, the rest of the view stays
    assert at.selectbox(key="selection").value == ""

    at = _app(demo_db, monkeypatch, departements="13", niveau="commune", rayon="2500", selection="13055")
    assert at.query_params["selection"] == "13055"  # kept while the fiche tab is closed
    _open_tab(at, "Fiche")
    assert any(h.value == "Fiche : Marseille" for h in at.header)
    assert at.query_params["selection"] == "13055"
    assert at.query_params["rayon"] == "2500"
    cards = _metrics(at)
    assert "Employeurs de l'ESS pour 10 000 hab." in cards
    # each key figure with its comparison and a reading, in plain text (not the source sentences)
    texts = [m.value for m in at.markdown]
    rate = cards["Employeurs de l'ESS pour 10 000 hab."]
    assert any(t.startswith(f"**{rate} · France ") for t in texts), texts
    assert any(t.endswith("que la moyenne nationale") for t in texts), texts
    assert any("des établissements de l'ESS du département" in t for t in texts), texts
    # sources and methods, complete, in their own section
    sources = next(e for e in at.expander if e.label == "Sources et méthode")
    assert sources.label == "Sources et méthode"
    captions = [c.value for c in sources.caption]
    assert any("France : " in c and "source : " in c for c in captions)
    assert any("Bouches" in c for c in captions)
    assert sum("Source : " in c for c in captions) == 7
    # the charts' category labels are wrapped, never cut
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    assert len(specs) == 2
    for spec in specs:
        axis = spec["encoding"]["y"]["axis"]
        assert axis["labelLimit"] == 0 and "split" in axis["labelExpr"]


def test_a_shared_link_reopens_the_tab_and_the_unit(demo_db, monkeypatch):
    at = _app(demo_db, monkeypatch, departements="13", selection="13055", onglet="fiche")
    assert any(h.value == "Fiche : Marseille" for h in at.header)  # no click needed: the link opened the fiche
    assert at.selectbox(key="selection").value == "13055"
    assert at.query_params["onglet"] == "fiche" and at.query_params["selection"] == "13055"
    _open_tab(at, "Exports")
    assert at.query_params["onglet"] == "exports"
    _open_tab(at, "Carte")
    assert "onglet" not in at.query_params  # the default tab makes no parameter
    assert at.query_params["selection"] == "13055"


def test_choosing_a_qpv_shows_its_fiche(demo_db, monkeypatch):
    at = _open_tab(_app(demo_db, monkeypatch), "Fiche")
    box = at.selectbox(key="selection")
    qpv_code = next(o for o in box.options if o.startswith("QPV "))
    code = qpv_code[qpv_code.rindex("(") + 1:-1]
    box.set_value(code).run()
    assert not at.exception
    assert any(h.value.startswith("Fiche : ") for h in at.header)
    assert at.query_params["selection"] == code
    assert any("données simulées" in w.value for w in at.warning)

    # the choice outlives its tab: closed, the URL keeps it; reopened, the fiche is back
    _open_tab(at, "Carte")
    assert not any(h.value.startswith("Fiche : ") for h in at.header)
    assert at.query_params["selection"] == code
    _open_tab(at, "Fiche")
    assert at.selectbox(key="selection").value == code
    assert any(h.value.startswith("Fiche : ") for h in at.header)


def test_names_from_data_are_shown_as_text(demo_db, monkeypatch, tmp_path, fresh_caches):
    db = tmp_path / "hostile.duckdb"
    shutil.copy(demo_db, db)
    con = duckdb.connect(str(db))
    con.execute("UPDATE communes SET nom = ? WHERE code_insee = '13055'", [HOSTILE])
    con.close()
    at = _open_tab(_app(db, monkeypatch, departements="13", selection="13055"), "Fiche")
    headers = [h.value for h in at.header if h.value.startswith("Fiche : ")]
    assert headers == ["Fiche : \\<script\\>alert\\(1\\)\\</script\\> Escale \\&amp; CO"]
    assert any(HOSTILE in option for option in at.selectbox(key="commune").options)  # a plain-text widget


def test_departement_fiche_compares_with_its_region(demo_db, monkeypatch):
    at = _open_tab(_app(demo_db, monkeypatch, departements="84", niveau="departement", selection="84"), "Fiche")
    assert any(h.value == "Fiche : Vaucluse" for h in at.header)
    cards = [c.value for c in at.caption if "Source : " in c.value]  # one caption under each key figure
    # every key figure compared with the région (loaded for this), and with France where a figure exists
    assert len(cards) >= 4 and all("Provence\\-Alpes\\-Côte d'Azur : " in c for c in cards), cards
    assert any("France : " in c for c in cards)


def test_a_region_opens_by_epci_and_commune_stays_a_choice(demo_db, monkeypatch):
    con = duckdb.connect(str(demo_db), read_only=True)
    try:
        n_epci, n_communes = con.execute(
            "SELECT count(DISTINCT siren_epci), count(*) FROM communes WHERE code_region = '93' "
            "AND type_commune = 'COM'").fetchone()
    finally:
        con.close()
    at = _app(demo_db, monkeypatch)  # the default view: a département, by commune
    assert at.selectbox(key="niveau").value == "commune"
    at.selectbox(key="departement").select_index(0).run()  # "Toute la région"
    assert not at.exception
    assert at.selectbox(key="niveau").value == "epci"
    assert _count(_metrics(at)["Unités cartographiées (EPCI)"]) == n_epci
    assert dict(at.query_params) == {"region": "93"}  # EPCI is the région's own level: not in the link
    at.selectbox(key="niveau").set_value("commune").run()
    assert _count(_metrics(at)["Unités cartographiées (commune)"]) == n_communes
    assert at.query_params["niveau"] == "commune"
    at.selectbox(key="departement").set_value("84").run()  # a département opens by commune again
    assert at.selectbox(key="niveau").value == "commune" and "niveau" not in at.query_params

    at = _app(demo_db, monkeypatch, region="93")
    assert at.selectbox(key="niveau").value == "epci" and at.selectbox(key="departement").value == ""
    at = _app(demo_db, monkeypatch, region="93", niveau="commune")  # a shared link keeps its level
    assert at.selectbox(key="niveau").value == "commune"
    assert _count(_metrics(at)["Unités cartographiées (commune)"]) == n_communes


@pytest.mark.parametrize("params, radius, notice", [
    ({"rayon": "0"}, 100, "hors de ce que propose le tableau de bord"),
    ({"rayon": "5001"}, 5000, "hors de ce que propose le tableau de bord"),
    ({"rayon": "1,5"}, 100, "hors de ce que propose le tableau de bord"),
    ({"rayon": "abc"}, 1000, "n'est pas un nombre"),
    ({"departements": "99"}, 1000, "département(s) 99 absent(s) de la base"),
    ({"departements": "13,84"}, 1000, "un département à la fois : le 13 est affiché"),
    ({"onglet": "Fiche"}, 1000, "onglet « Fiche » inconnu"),
])
def test_invalid_links_open_a_valid_view_with_a_french_notice(demo_db, monkeypatch, params, radius,
                                                              notice):
    at = _app(demo_db, monkeypatch, **params)
    errors = " ".join(e.value for e in at.error)
    assert "Lien invalide" in errors or "à la fois" in errors
    assert notice in errors
    assert at.select_slider(key="rayon").value == radius
    assert at.selectbox(key="departement").value == "13"
    assert _count(_metrics(at)["QPV"]) > 0  # a map of a real département


def test_collapsed_classes_are_announced_and_the_map_has_its_table(demo_db, monkeypatch):
    at = _app(demo_db, monkeypatch, departements="13", indicateur="n_tiers_lieux", methode="quantiles", classes="5")
    notices = [i.value for i in at.info if i.value.startswith("Carte en ")]
    assert len(notices) == 1 and "au lieu des 5 demandées" in notices[0] and "« Tiers-lieux »" in notices[0], notices
    # the map's values without the map: one row per commune, the legend title "Tiers-lieux" (no repeated unit),
    # drawn once its expander is open
    assert not [t for t in at.table if "Classe de la légende" in t.value.columns]
    at.session_state["tableau_carte"] = True
    at.run()
    values = _table(at, "Classe de la légende")
    assert list(values.columns) == ["Commune", "Code", "Tiers-lieux", "Classe de la légende"]
    assert len(values) == _count(_metrics(at)["Unités cartographiées (commune)"])
    at.selectbox(key="indicateur").set_value("population").run()  # distinct values: every class drawn
    assert not [i.value for i in at.info if i.value.startswith("Carte en ")]
