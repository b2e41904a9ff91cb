"""Rebuild the small real-data fixtures of the QPV, communes and tiers-lieux reader tests.

Run from the project root: ``.venv/bin/python tests/data/make_reader_fixtures.py``.
Sources are the real files shipped in ``data/`` (and the shared copies, when present); see
``tests/data/README.md`` for provenance and licences. Output is deterministic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import pyogrio

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared" / "data"

#: Communes kept: Marseille with two of its arrondissements, Aix, Allauch (13); the ten
#: communes of the CA du Pays Ajaccien (2A); three communes of La Réunion (974); special
#: cases of the national file: no geometry (49126), no population (97601), no EPCI (29155).
COMMUNES = [
    "13055", "13201", "13202", "13001", "13002",
    "2A001", "2A004", "2A006", "2A017", "2A103", "2A209", "2A271", "2A323", "2A336", "2A351",
    "97411", "97415", "97418",
    "49126", "97601", "29155",
]

QPV2024 = ["QN00401M", "QN00603M", "QN00612M", "QN01341I", "QN01354M", "QN08301M", "QN08401M"]
QPV2015_OCCITANIE = ["QP066007", "QP011002", "QP065003", "QP009001", "QP030003", "QP031010"]


def _features_subset(src: Path, dst: Path, key: str, codes: list[str]) -> None:
    data = json.loads(src.read_text(encoding="utf-8"))
    data["features"] = [f for f in data["features"] if f["properties"][key] in codes]
    dst.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def qpv() -> None:
    out = HERE / "qpv"
    _features_subset(ROOT / "data/geo/qpv2024_paca.geojson", out / "qpv2024_paca_extrait.geojson", "q", QPV2024)
    occitanie = SHARED / "qpv/qpv2015_occitanie.geojson"
    _features_subset(occitanie, out / "qpv2015_occitanie_extrait.geojson", "code_qp", QPV2015_OCCITANIE)
    # Same features with the uppercase field names of the 2015 official shapefile.
    data = json.loads((out / "qpv2015_occitanie_extrait.geojson").read_text(encoding="utf-8"))
    rename = {"code_qp": "CODE_QP", "nom_qp": "NOM_QP", "commune_qp": "COMMUNE_QP"}
    for f in data["features"][:3]:
        f["properties"] = {rename.get(k, k): v for k, v in f["properties"].items()
                           if k in rename}
    data["features"] = data["features"][:3]
    (out / "qpv2015_majuscules.geojson").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    shutil.copyfile(SHARED / "qpv/qpv2015_lyon.geojson", out / "qpv2015_lyon.geojson")


def communes() -> None:
    out = HERE / "communes"
    national = gpd.read_parquet(ROOT / "data/geo/communes_france.parquet")
    subset = national[national["code_insee"].isin(COMMUNES)].reset_index(drop=True)
    subset.to_parquet(out / "communes_extrait.parquet", index=False)

    # ADMIN EXPRESS-style COMMUNE layer (IGN field names, Lambert-93): Paris, Saint-Denis (93),
    # Bastia. Saint-Denis gets the "MGP/EPT" SIREN_EPCI form ADMIN EXPRESS uses in Grand Paris.
    picked = national[national["code_insee"].isin(["75056", "93066", "2B033"])].reset_index(drop=True)
    admin = gpd.GeoDataFrame(
        {
            "ID": ["COMMUNE_" + c for c in picked["code_insee"]],
            "NOM": picked["nom"],
            "NOM_M": picked["nom"].str.upper(),
            "INSEE_COM": picked["code_insee"],
            "STATUT": "Commune simple",
            "POPULATION": picked["population"].astype("int64"),
            "INSEE_CAN": "NR",
            "INSEE_ARR": "1",
            "INSEE_DEP": picked["code_departement"],
            "INSEE_REG": picked["code_region"],
            "SIREN_EPCI": picked["siren_epci"].where(picked["code_insee"] != "93066", "200054781/200057867"),
        },
        geometry=picked.geometry.to_crs(2154),
        crs=2154,
    )
    for ext in ("shp", "shx", "dbf", "prj", "cpg"):
        (out / f"COMMUNE.{ext}").unlink(missing_ok=True)
    admin.to_file(out / "COMMUNE.shp", engine="pyogrio", encoding="UTF-8")

    # ADMIN EXPRESS-style GeoPackage: commune, arrondissement_municipal and departement layers.
    gpkg = out / "admin_express_extrait.gpkg"
    gpkg.unlink(missing_ok=True)
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2024-01-01T00:00:00Z"})  # reproducible
    com = national[national["code_insee"].isin(["13055", "13001"])].reset_index(drop=True)
    gpd.GeoDataFrame(
        {"ID": "COMMUNE_" + com["code_insee"], "NOM": com["nom"], "INSEE_COM": com["code_insee"],
         "POPULATION": com["population"].astype("int64"), "INSEE_DEP": com["code_departement"],
         "INSEE_REG": com["code_region"], "SIREN_EPCI": com["siren_epci"]},
        geometry=com.geometry.to_crs(2154), crs=2154,
    ).to_file(gpkg, layer="commune", engine="pyogrio")
    arm = national[national["code_insee"].isin(["13201", "13202"])].reset_index(drop=True)
    gpd.GeoDataFrame(
        {"ID": "ARRONDISSEMENT_" + arm["code_insee"], "NOM": arm["nom"], "INSEE_ARM": arm["code_insee"],
         "INSEE_COM": arm["code_commune_parent"], "POPULATION": arm["population"].astype("int64")},
        geometry=arm.geometry.to_crs(2154), crs=2154,
    ).to_file(gpkg, layer="arrondissement_municipal", engine="pyogrio")
    dep = gpd.GeoDataFrame({"INSEE_DEP": ["13"], "NOM": ["Bouches-du-Rhône"]},
                           geometry=[com.geometry.to_crs(2154).union_all()], crs=2154)
    dep.to_file(gpkg, layer="departement", engine="pyogrio")


def tiers_lieux() -> None:
    out = HERE / "tiers_lieux"
    for name in ("tiers_lieux_commune_mesure.csv", "france_tiers_lieux_2023_numerique_extrait.csv"):
        shutil.copyfile(ROOT / "data/raw" / name, out / name)


if __name__ == "__main__":
    qpv()
    communes()
    tiers_lieux()
