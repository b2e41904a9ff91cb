"""A mirror of the official files, small, in their exact published layouts, for the end-to-end
tests of ``essmap build --officiel`` (``tests/test_build_official.py``).

Built from the project's real-format fixtures and embedded data (deterministic content), under the
file names of the catalogue (``essmap fetch --liste``), flat in one folder:

- ``ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01.7z``: IGN's 7-Zip, with its folders
  ``ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01/ADMIN-EXPRESS-COG/1_DONNEES_LIVRAISON_2025-06-00114/
  ADE-COG_4-0_GPKG_WGS84G_FRA-ED2025-01-01/ADE-COG_4-0_GPKG_WGS84G_FRA-ED2025-01-01.gpkg`` (the path
  third-party readers of the 2025 edition open; the delivery number varies between deliveries).
  Layers ``commune``, ``arrondissement_municipal`` and ``epci`` in the 4.0 field names and order of
  ``tests/data/communes/admin_express/ADMIN-EXPRESS-COG_4-0__GPKG_LAMB93_FXX_2025-extrait.gpkg``, with the
  real communes of the 13 and the 84 (boundaries, populations, EPCI of ``data/geo/communes_france.parquet``),
  in WGS84 as the catalogue's edition.
- ``qpv2024_anct.zip``: ANCT's archive, ``GEOJSON/QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson``
  with the real 135 QPV of PACA (``data/geo/qpv2024_paca.geojson``) in the national file's field names
  (``code_qp``, ``lib_qp``, ``insee_dep``, ``insee_com``...).
- ``qp-politiquedelaville-shp.zip``: the 2015 generation as a WGS84 shapefile
  ``QP_METROPOLEOUTREMER_WGS84_EPSG4326.shp`` (3 real QPV of Occitanie: none in the 13).
- ``StockUniteLegale_utf8.zip`` (``StockUniteLegale_utf8.csv`` inside) and ``StockUniteLegale_utf8.parquet``:
  the 42 legal units of ``tests/data/sirene/unites_legales_ess_extrait.csv`` and the one of
  ``StockUniteLegale_complement.csv`` in the full official column order (columns the extract lacks are
  empty, but ``statutDiffusionUniteLegale = O`` and ``etatAdministratifUniteLegale = A``).
- ``StockEtablissement_utf8.zip`` / ``.parquet``: ``StockEtablissement_extrait.csv`` then the 3 Carpentras
  establishments of ``tests/data/placement/``, official layout. The Parquet editions hold every column as
  text (the test data's types; INSEE's Parquet types are not documented here).
- ``GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_utf8.parquet``: the current layout
  (``plg_qp24``...) with the 6 rows of ``GeolocalisationEtablissement_concordance.csv``, the placement
  rows of ``tests/data/placement/`` and the first two rows of ``GeolocalisationEtablissement_extrait.csv``.
- ``bdftl-2023-01-fiche-identite.csv``: ``tests/data/placement/recensement_tiers_lieux_2023_extrait.csv``.
- ``bdftl-2023-04-activites.csv``: ``tests/data/tiers_lieux/bdftl-2023-04-activites_extrait.csv`` (types).
- ``adresses-06/13/41/83/84.csv.gz``: the BAN files of ``tests/data/placement/``.

``edition=2`` is the next month's SIRENE stock: every ``dateDernierTraitementEtablissement`` moved to
2026-01 and the establishment :data:`CLOSED_IN_EDITION_2` closed.

Usage: ``PYTHONPATH=. .venv/bin/python tests/official_mirror.py FOLDER`` writes a mirror folder to try
``essmap build --officiel --departements 13 --miroir FOLDER`` by hand.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import sys
import zipfile
from pathlib import Path

import duckdb
import geopandas as gpd
import pandas as pd
import pyogrio

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
ROOT = TESTS.parent

ADMIN_EXPRESS_ARCHIVE = "ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01"
ADMIN_EXPRESS_GPKG = (f"{ADMIN_EXPRESS_ARCHIVE}/ADMIN-EXPRESS-COG/1_DONNEES_LIVRAISON_2025-06-00114/"
                      "ADE-COG_4-0_GPKG_WGS84G_FRA-ED2025-01-01/ADE-COG_4-0_GPKG_WGS84G_FRA-ED2025-01-01.gpkg")
ADMIN_EXPRESS_FIXTURE = DATA / "communes" / "admin_express" / "ADMIN-EXPRESS-COG_4-0__GPKG_LAMB93_FXX_2025-extrait.gpkg"
COMMUNE_DEPARTEMENTS = ("13", "84")
QPV2024_MEMBER = "GEOJSON/QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson"
QPV2015_SHAPEFILE = "QP_METROPOLEOUTREMER_WGS84_EPSG4326"
NATURE = {"CC": "Communauté de communes", "CA": "Communauté d'agglomération", "CU": "Communauté urbaine",
          "ME": "Métropole"}
#: An ESS establishment of Marseille, active in edition 1, closed in edition 2 (one INSEE disagrees with).
CLOSED_IN_EDITION_2 = "10002917200036"
GEOLOCATION_FILE = "GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_utf8.parquet"


def _admin_express(folder: Path) -> None:
    """The IGN 7-Zip: the real communes of the 13 and the 84 in the 4.0 layout, WGS84."""
    import py7zr

    national = gpd.read_parquet(ROOT / "data" / "geo" / "communes_france.parquet")
    national = national[national["code_departement"].isin(COMMUNE_DEPARTEMENTS)].sort_values("code_insee")
    communes = national[national["type_commune"] == "COM"].reset_index(drop=True)
    arm = national[national["type_commune"] == "ARM"].reset_index(drop=True)
    layout = {layer: list(pyogrio.read_info(ADMIN_EXPRESS_FIXTURE, layer=layer)["fields"])
              for layer in ("commune", "arrondissement_municipal", "epci")}
    commune = pd.DataFrame({
        "cleabs": "COMMUNE_" + communes["code_insee"], "nom_officiel": communes["nom"],
        "nom_officiel_en_majuscules": communes["nom"].str.upper(), "code_insee": communes["code_insee"],
        "statut": "Commune simple", "population": communes["population"].astype("Int64"),
        "code_insee_du_departement": communes["code_departement"],
        "code_insee_de_la_region": communes["code_region"],
        "codes_siren_des_epci": communes["siren_epci"].astype("string").fillna("NR"),
    })
    arrondissements = pd.DataFrame({
        "cleabs": "ARRONDISSEMENT_MUNICIPAL_" + arm["code_insee"], "nom_officiel": arm["nom"],
        "code_insee": arm["code_insee"], "code_insee_de_la_commune_de_rattach": arm["code_commune_parent"],
        "population": arm["population"].astype("Int64"),
    })
    names = pd.read_csv(ROOT / "data" / "raw" / "epci_france.csv", dtype=str).set_index("siren_epci")
    shapes = communes[communes["siren_epci"].notna()].dissolve("siren_epci").geometry.simplify(0.001)
    epci = pd.DataFrame({"cleabs": "EPCI_" + shapes.index.to_series(), "code_siren": shapes.index,
                         "nom_officiel": names["nom"].reindex(shapes.index).to_numpy(),
                         "nature": names["type"].reindex(shapes.index).map(NATURE).to_numpy()})
    staging = folder / "_admin_express"
    gpkg = staging / ADMIN_EXPRESS_GPKG
    gpkg.parent.mkdir(parents=True, exist_ok=True)
    for layer, frame, geometry in (("commune", commune, communes.geometry), ("arrondissement_municipal",
                                   arrondissements, arm.geometry), ("epci", epci, shapes)):
        columns = [c for c in layout[layer] if c in frame.columns]
        assert columns == [c for c in layout[layer] if c in columns], layer
        out = gpd.GeoDataFrame(frame[columns].reset_index(drop=True), geometry=list(geometry), crs=4326)
        out.rename_geometry("geometrie").to_file(gpkg, layer=layer, driver="GPKG", engine="pyogrio")
    with py7zr.SevenZipFile(folder / f"{ADMIN_EXPRESS_ARCHIVE}.7z", "w") as seven:
        seven.writeall(staging / ADMIN_EXPRESS_ARCHIVE, ADMIN_EXPRESS_ARCHIVE)
    shutil.rmtree(staging)


def _zip(target: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def _qpv2024(folder: Path) -> None:
    """ANCT's archive with the real PACA QPV in the national file's field names."""
    qpv = gpd.read_file(ROOT / "data" / "geo" / "qpv2024_paca.geojson")
    official = gpd.GeoDataFrame({
        "code_qp": qpv["q"], "lib_qp": qpv["n"], "insee_dep": qpv["d"],
        "insee_com": [",".join(codes) if isinstance(codes, list) else str(codes) for codes in qpv["com"]],
    }, geometry=qpv.geometry, crs=4326)
    _zip(folder / "qpv2024_anct.zip", {QPV2024_MEMBER: official.to_json(drop_id=True).encode("utf-8")})


def _qpv2015(folder: Path) -> None:
    """The 2015 generation's WGS84 shapefile (3 QPV of Occitanie), zipped."""
    staging = folder / "_qpv2015"
    staging.mkdir()
    gpd.read_file(DATA / "qpv" / "qpv2015_majuscules.geojson").to_file(
        staging / f"{QPV2015_SHAPEFILE}.shp", engine="pyogrio", encoding="UTF-8")
    _zip(folder / "qp-politiquedelaville-shp.zip",
         {p.name: p.read_bytes() for p in sorted(staging.iterdir())})
    shutil.rmtree(staging)


def _read_csv(path: Path, sep: str = ",") -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return buffer.getvalue().encode("utf-8")


def _parquet(frame: pd.DataFrame, target: Path, *, doubles: tuple[str, ...] = ()) -> None:
    con = duckdb.connect()
    try:
        con.register("frame", frame)
        columns = ", ".join(f'TRY_CAST(nullif("{c}", \'\') AS DOUBLE) AS "{c}"' if c in doubles
                            else f'nullif("{c}", \'\') AS "{c}"' for c in frame.columns)
        con.execute(f"COPY (SELECT {columns} FROM frame) TO '{target}' (FORMAT parquet)")
    finally:
        con.close()


def _sirene(folder: Path, *, edition: int, parquet: bool) -> None:
    complement = _read_csv(DATA / "sirene" / "StockUniteLegale_complement.csv")
    extract = _read_csv(DATA / "sirene" / "unites_legales_ess_extrait.csv")
    legal = extract.reindex(columns=complement.columns, fill_value="")
    legal["statutDiffusionUniteLegale"] = "O"
    legal["etatAdministratifUniteLegale"] = "A"
    legal = pd.concat([legal, complement], ignore_index=True)
    establishments = pd.concat([_read_csv(DATA / "sirene" / "StockEtablissement_extrait.csv"),
                                _read_csv(DATA / "placement" / "StockEtablissement_tiers_lieux_extrait.csv")],
                               ignore_index=True)
    if edition == 2:
        dated = establishments["dateDernierTraitementEtablissement"] != ""
        establishments.loc[dated, "dateDernierTraitementEtablissement"] = "2026-01-15T09:30:00"
        closed = establishments["siret"] == CLOSED_IN_EDITION_2
        establishments.loc[closed, "etatAdministratifEtablissement"] = "F"
    for name, frame in (("StockUniteLegale_utf8", legal), ("StockEtablissement_utf8", establishments)):
        _zip(folder / f"{name}.zip", {f"{name}.csv": _csv_bytes(frame)})
        if parquet:
            _parquet(frame, folder / f"{name}.parquet")


def _geolocation(folder: Path) -> None:
    current = _read_csv(DATA / "sirene" / "GeolocalisationEtablissement_concordance.csv", ";")
    older = pd.concat([_read_csv(DATA / "placement" /
                                 "GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_extrait.csv", ";"),
                       _read_csv(DATA / "sirene" / "GeolocalisationEtablissement_extrait.csv", ";").head(2)],
                      ignore_index=True)
    older = older.rename(columns={"plg_qp": "plg_qp24", "qualite_qp": "qualite_qp24"})
    rows = pd.concat([current, older.reindex(columns=current.columns, fill_value="")], ignore_index=True)
    _parquet(rows.drop_duplicates("siret"), folder / GEOLOCATION_FILE,
             doubles=("x", "y", "x_longitude", "y_latitude"))


def build_mirror(folder: Path, *, edition: int = 1, parquet: bool = True, qpv2015: bool = True) -> Path:
    """Write the mirror into ``folder`` (created); returns it. ``parquet=False``: no Parquet
    edition of the SIRENE stocks (the build then falls back to the CSV in the ZIP)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _admin_express(folder)
    _qpv2024(folder)
    if qpv2015:
        _qpv2015(folder)
    _sirene(folder, edition=edition, parquet=parquet)
    _geolocation(folder)
    shutil.copyfile(DATA / "placement" / "recensement_tiers_lieux_2023_extrait.csv",
                    folder / "bdftl-2023-01-fiche-identite.csv")
    shutil.copyfile(DATA / "tiers_lieux" / "bdftl-2023-04-activites_extrait.csv",
                    folder / "bdftl-2023-04-activites.csv")
    for ban in sorted((DATA / "placement").glob("adresses-*.csv.gz")):
        shutil.copyfile(ban, folder / ban.name)
    return folder


def ban_rows(departement: str) -> int:
    """Data rows of a BAN fixture (for checks)."""
    with gzip.open(DATA / "placement" / f"adresses-{departement}.csv.gz", "rt", encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1


if __name__ == "__main__":
    build_mirror(Path(sys.argv[1]))
