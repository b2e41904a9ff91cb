"""essmap dashboard (Streamlit). Layout, widgets and caching only: data, analysis and maps come
from the essmap package."""

from __future__ import annotations

import streamlit as st
from streamlit_folium import st_folium

from essmap import maps, store
from essmap.config import load_settings
from essmap.formatting import format_number

st.set_page_config(page_title="essmap – ESS, QPV et tiers-lieux", layout="wide")
SETTINGS = load_settings()


@st.cache_resource
def _connection():
    return store.connect(SETTINGS.db_path)


@st.cache_data
def _layers(departement: str):
    con = _connection()
    deps = [departement]
    return (
        store.read_layer(con, "communes", departements=deps),
        store.read_layer(con, "qpv", departements=deps),
        store.read_layer(con, "etablissements", departements=deps),
        store.read_layer(con, "tiers_lieux", departements=deps),
    )


@st.cache_data
def _departements():
    con = _connection()
    deps = store.read_layer(con, "departements", columns=["code_departement", "nom"])
    return dict(zip(deps["code_departement"], deps["nom"], strict=True))


st.title("essmap : l'économie sociale et solidaire, les QPV et les tiers-lieux")
names = _departements()
codes = sorted(names)
departement = st.sidebar.selectbox(
    "Département", codes, index=codes.index("13") if "13" in codes else 0,
    format_func=lambda c: f"{c} – {names[c]}",
)
employers_only = st.sidebar.checkbox("Établissements employeurs seulement", value=True)

communes, qpv, etablissements, tiers_lieux = _layers(departement)
if employers_only:
    etablissements = etablissements[etablissements["employeur"].fillna(False)]
synthetic = bool(etablissements["is_synthetic"].fillna(False).any() or tiers_lieux["is_synthetic"].fillna(False).any())
if synthetic:
    st.warning("Les établissements ESS affichés sont des **données simulées** (démonstration) : "
               "aucun chiffre de cette carte ne décrit la réalité.")

cols = st.columns(4)
cols[0].metric("Communes", format_number(int((communes["type_commune"] == "COM").sum())))
cols[1].metric("QPV (génération " + ", ".join(sorted(qpv["generation"].dropna().unique())) + ")", format_number(len(qpv)))
cols[2].metric("Établissements ESS" + (" (données simulées)" if synthetic else ""), format_number(len(etablissements)))
cols[3].metric("Tiers-lieux", format_number(len(tiers_lieux)))

m = maps.base_map(tuple(communes.total_bounds))
maps.add_boundaries_layer(m, communes[communes["type_commune"] == "COM"], name="Communes")
maps.add_qpv_layer(m, qpv)
maps.add_points_layer(m, tiers_lieux, name="Tiers-lieux", popup=maps.tiers_lieu_popup, color="#1b7837", cluster=False)
maps.add_points_layer(m, etablissements, name="Établissements ESS", popup=maps.establishment_popup, color="#2166ac")
if synthetic:
    maps.add_synthetic_notice(m)
maps.finish(m)
st_folium(m, height=650, use_container_width=True, returned_objects=[])
st.caption("Sources : INSEE (communes, populations légales), ANCT (QPV 2024), France Tiers-Lieux et "
           "Commune Mesure (tiers-lieux réels) ; établissements ESS : données simulées.")
