"""A national-size mirror of the official files, and the timed ``essmap build --officiel`` over it.

``write`` fills a folder (default ``/work/main/bench/out/national-mirror-<key>/``, git-ignored) with
every file ``essmap build --officiel --france --miroir FOLDER`` fetches, under the catalogue's file
names (``essmap fetch --liste``) and in the official layouts, all synthetic:

- ``StockUniteLegale_utf8.zip`` / ``StockEtablissement_utf8.zip`` (one CSV each inside, ZIP64) and
  their Parquet editions (default 40 million establishment rows, 30 million legal units): the 5 M-row
  stock of :mod:`sirene_stock` (1.5 M active ESS establishments), completed chunk by chunk with non-ESS
  establishments and their units, then ceased legal units (see the SIRENE section below). The
  Parquet editions hold every column as text (INSEE's Parquet types are not confirmed here).
- ``GeolocalisationEtablissement_Sirene_pour_etudes_statistiques_utf8.parquet``: one row per active
  establishment of the stock, current layout (``plg_qp24``...; INSEE's QPV columns left empty),
  projected coordinates and their WGS84 twin computed with pyproj.
- ``ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01.7z``: IGN's 7-Zip and folders, a GeoPackage with
  the layers ``commune``, ``arrondissement_municipal`` and ``epci`` in the 4.0 field names, from the
  ~35,000 real communes of ``data/geo/communes_france.parquet``, densified (``shapely.segmentize``)
  towards the vertex count of the full-resolution product.
- ``qpv2024_anct.zip``: ANCT's archive layout with the 1,600 synthetic QPV of :mod:`national_data`.
- ``bdftl-2023-01-fiche-identite.csv`` and ``bdftl-2023-04-activites.csv``: the census of the
  synthetic tiers-lieux, without coordinates, with their types as ``TYPE_ACT_*`` indicators.
- ``adresses-<DEP>.csv.gz``: BAN files for every département, the census addresses plus filler
  addresses (default 26 million in all, the BAN's order of magnitude), shared by population.

Each file is written once (kept when present), through a temporary name. ``run`` times one build
as a whole child process: wall time, peak resident memory (``ru_maxrss`` from ``os.wait4``), the
load average before and after, and the time of each stage (the build's own progress callbacks,
logged by the child with its resident memory and peak so far). Results go to ``<mirror>/runs/``
(or ``--runs DIR``) and are printed as JSON.

Usage::

    PYTHONPATH=. python bench/national_mirror.py write
    PYTHONPATH=. python bench/national_mirror.py run --departements 38
    PYTHONPATH=. python bench/national_mirror.py run --france
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import measure  # noqa: E402
import national_data as nd  # noqa: E402
import sirene_stock as ss  # noqa: E402

from essmap.domain.territories import (  # noqa: E402
    departements_of_communes,
    epsg_of_territory_codes,
    territory_codes_of_departements,
)
from essmap.io.readers.sirene import UNITE_LEGALE_COLUMNS  # noqa: E402
from essmap.io.sources import BAN_ADDRESS_COLUMNS, SOURCES  # noqa: E402

MIRROR_VERSION = 1
DEFAULT_OUT = Path("/work/main/bench/out")
ADMIN_EXPRESS = "ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01"
ADMIN_EXPRESS_GPKG = (f"{ADMIN_EXPRESS}/ADMIN-EXPRESS-COG/1_DONNEES_LIVRAISON_2025-06-00114/"
                      "ADE-COG_4-0_GPKG_WGS84G_FRA-ED2025-01-01/ADE-COG_4-0_GPKG_WGS84G_FRA-ED2025-01-01.gpkg")
QPV_MEMBER = "GEOJSON/QP2024_France_Hexagonale_Outre_Mer_WGS84.geojson"
GEOLOCATION = SOURCES["sirene_geolocalisation"][0].filename
CENSUS, ACTIVITIES = (f.filename for f in SOURCES["tiers_lieux"])
NATURE = {"CC": "Communauté de communes", "CA": "Communauté d'agglomération", "CU": "Communauté urbaine",
          "ME": "Métropole", "EPT": "Établissement public territorial"}
#: ``TYPE_ACT_*`` indicator written for each type of the synthetic tiers-lieux (see the census reader).
TYPE_COLUMNS = {"Coworking": "TYPE_ACT_COWORK", "Atelier partagé / fablab": "TYPE_ACT_FABLAB",
                "Friche culturelle": "TYPE_ACT_CULTU", "Tiers-lieu nourricier": "TYPE_ACT_NOURRI",
                "Tiers-lieu numérique": "TYPE_ACT_NUMER", "Espace de vie sociale": "TYPE_ACT_SOCIAL"}
STREETS = ("Rue de la République", "Avenue Jean Jaurès", "Boulevard Victor Hugo", "Place de la Mairie",
           "Chemin du Moulin", "Rue Pasteur", "Allée des Tilleuls", "Route Nationale", "Impasse des Lilas",
           "Rue de la Gare", "Avenue du Général de Gaulle", "Rue des Écoles")


@dataclass(frozen=True)
class MirrorSizes:
    """How big the mirror is."""

    establishments: int = 40_000_000
    legal_units: int = 30_000_000
    ess_active: int = 1_500_000
    ban_addresses: int = 26_000_000
    #: longest segment of the commune boundaries after densifying, in degrees (0: as shipped)
    segment_deg: float = 0.0005

    @property
    def key(self) -> str:
        return (f"e{self.establishments}-u{self.legal_units}-ess{self.ess_active}-b{self.ban_addresses}"
                f"-g{self.segment_deg:g}")


NATIONAL = MirrorSizes()
SMALL = MirrorSizes(establishments=400_000, legal_units=300_000, ess_active=75_000, ban_addresses=300_000,
                    segment_deg=0.0)


def log(message: str) -> None:
    print(f"[mirror {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _replace_into(tmp: Path, target: Path) -> Path:
    os.replace(tmp, target)
    log(f"  {target.name}: {target.stat().st_size / 1e6:,.1f} MB")
    return target


def _tmp(target: Path) -> Path:
    return target.with_name(target.name + ".tmp")


# --- SIRENE ----------------------------------------------------------------------------------------
#
# The stock of :mod:`sirene_stock` (5 M rows: the 1.5 M active ESS establishments with their units,
# closed ESS establishments, non-ESS ones) is reused as it is, then completed, chunk by chunk, with
# non-ESS establishments and their legal units, and with ceased legal units without establishment:
# memory stays bounded (planning 40 M rows at once, as ``write_stock`` does, needs over 12 GB).
# Every row goes once through the writers of the ZIP member, the Parquet edition and (active ones)
# the geolocation file.

BASE_STOCK = ss.StockSizes(establishments=5_000_000, ess_active=1_500_000)
FILLER_CHUNK = 1_000_000
#: Seeded-sequence indices of the SIREN this module adds (those of the base stock stay under 4 M).
FILLER_SIREN_START = 30_000_000
CEASED_SIREN_START = 75_000_000
ETABLISSEMENT_COLUMNS = ss.ETABLISSEMENT_COLUMNS


def _filler_chunk(data: nd.NationalData, names: pd.Series, rng: np.random.Generator, n: int,
                  first_unit: int) -> tuple[pa.Table, pa.Table, int]:
    """``n`` non-ESS establishments (35 % closed) of new legal units, positions of national
    establishments jittered by 30 m; returns both tables and the number of units used."""
    unit, rank = nd.units_for(rng, n)
    n_units = int(unit.max()) + 1
    unit_siren = nd.siren_numbers(FILLER_SIREN_START + first_unit, n_units, data.seed)
    siren = unit_siren[unit]
    siret = ss.digits(nd.siret_numbers(siren, rank), 14)
    est = data.establishments
    src = rng.integers(0, len(est), n)
    jitter = rng.uniform(-ss.POSITION_JITTER_M, ss.POSITION_JITTER_M, (n, 2))
    commune = pd.Series(est["code_commune"].to_numpy(dtype=object)[src], dtype="string")
    postcode = (commune.str[:2] + "0" + commune.str[3:5]).where(~commune.str.startswith("97"),
                                                              commune.str[:3] + commune.str[3:5])
    employer = rng.random(n) < 0.3
    unit_employer = rng.random(n_units) < 0.3
    establishments = ss.official_table(ETABLISSEMENT_COLUMNS, {
        "siren": ss.digits(siren, 9).to_numpy(), "nic": siret.str[9:].to_numpy(), "siret": siret.to_numpy(),
        "statutDiffusionEtablissement": "O", "dateCreationEtablissement": ss.dates(rng, n, "1950-01-01", "2025-06-30"),
        "trancheEffectifsEtablissement": np.where(employer, ss.pick(rng, nd.SIZE_BANDS, n), "NN"),
        "anneeEffectifsEtablissement": ss.value_or_null(employer, "2023"),
        "dateDernierTraitementEtablissement": ss.LAST_PROCESSED,
        "etablissementSiege": np.where(rank == 0, "true", "false"),
        "nombrePeriodesEtablissement": rng.integers(1, 5, n).astype(str),
        "numeroVoieEtablissement": rng.integers(1, 200, n).astype(str),
        "typeVoieEtablissement": np.array(ss.STREET_TYPES, dtype=object)[rng.integers(0, len(ss.STREET_TYPES), n)],
        "libelleVoieEtablissement": np.array(ss.STREET_NAMES, dtype=object)[rng.integers(0, len(ss.STREET_NAMES), n)],
        "codePostalEtablissement": postcode.to_numpy(), "codeCommuneEtablissement": commune.to_numpy(),
        "libelleCommuneEtablissement": commune.map(names).to_numpy(),
        "coordonneeLambertAbscisseEtablissement": np.round(est["x"].to_numpy(dtype=float)[src] + jitter[:, 0], 1)
        .astype(str),
        "coordonneeLambertOrdonneeEtablissement": np.round(est["y"].to_numpy(dtype=float)[src] + jitter[:, 1], 1)
        .astype(str),
        "dateDebut": ss.dates(rng, n, "2000-01-01", "2025-06-30"),
        "etatAdministratifEtablissement": np.where(rng.random(n) < ss.CLOSED_OTHER_SHARE, "F", "A"),
        "activitePrincipaleEtablissement": ss.pick(rng, ss.OTHER_NAF, n),
        "nomenclatureActivitePrincipaleEtablissement": "NAFRev2",
        "caractereEmployeurEtablissement": np.where(employer, "O", "N"),
    }, n)
    unit_text = ss.digits(unit_siren, 9)
    units = ss.official_table(UNITE_LEGALE_COLUMNS, {
        "siren": unit_text.to_numpy(), "statutDiffusionUniteLegale": "O",
        "dateCreationUniteLegale": ss.dates(rng, n_units, "1950-01-01", "2025-06-30"),
        "trancheEffectifsUniteLegale": np.where(unit_employer, ss.pick(rng, nd.SIZE_BANDS, n_units), "NN"),
        "dateDernierTraitementUniteLegale": ss.LAST_PROCESSED, "etatAdministratifUniteLegale": "A",
        "dateDebut": ss.dates(rng, n_units, "2000-01-01", "2025-06-30"),
        "denominationUniteLegale": ("SOCIETE SIMULEE " + unit_text).to_numpy(),
        "categorieJuridiqueUniteLegale": ss.pick(rng, ss.OTHER_CATEGORIES, n_units),
        "activitePrincipaleUniteLegale": ss.pick(rng, ss.OTHER_NAF, n_units),
        "nomenclatureActivitePrincipaleUniteLegale": "NAFRev2",
        "nicSiegeUniteLegale": ss.digits(nd.siret_numbers(unit_siren, np.zeros(n_units, dtype=np.int64)) % 100_000, 5)
        .to_numpy(),
        "economieSocialeSolidaireUniteLegale": "N", "caractereEmployeurUniteLegale": np.where(unit_employer, "O", "N"),
    }, n_units)
    return establishments, units, n_units


def _ceased_units(start: int, count: int, seed: int) -> pa.Table:
    """Legal units ceased long ago (no establishment in the stock)."""
    rng = np.random.default_rng(seed + 23 + start)
    siren = ss.digits(nd.siren_numbers(CEASED_SIREN_START + start, count, seed), 9)
    return ss.official_table(UNITE_LEGALE_COLUMNS, {
        "siren": siren.to_numpy(), "statutDiffusionUniteLegale": "O", "etatAdministratifUniteLegale": "C",
        "dateCreationUniteLegale": ss.dates(rng, count, "1950-01-01", "2010-12-31"),
        "dateDebut": ss.dates(rng, count, "1990-01-01", "2020-12-31"),
        "denominationUniteLegale": ("SOCIETE CESSEE SIMULEE " + siren).to_numpy(),
        "categorieJuridiqueUniteLegale": ss.pick(rng, ss.OTHER_CATEGORIES, count),
        "activitePrincipaleUniteLegale": ss.pick(rng, ss.OTHER_NAF, count),
        "nomenclatureActivitePrincipaleUniteLegale": "NAFRev2", "economieSocialeSolidaireUniteLegale": "N",
        "caractereEmployeurUniteLegale": "N", "trancheEffectifsUniteLegale": "NN",
    }, count)


class _Geolocation:
    """INSEE's geolocation file (current layout) of the active establishments, written batch by batch."""

    def __init__(self, path: Path) -> None:
        from pyproj import Transformer

        self.path, self.transformer = path, Transformer
        self.writer: pq.ParquetWriter | None = None
        self.transformers: dict[int, object] = {}

    def write(self, table: pa.Table) -> None:
        frame = table.select(["siret", "codeCommuneEtablissement", "coordonneeLambertAbscisseEtablissement",
                              "coordonneeLambertOrdonneeEtablissement", "etatAdministratifEtablissement"]).to_pandas()
        frame = frame[frame["etatAdministratifEtablissement"] == "A"]
        x = pd.to_numeric(frame["coordonneeLambertAbscisseEtablissement"], errors="coerce").to_numpy()
        y = pd.to_numeric(frame["coordonneeLambertOrdonneeEtablissement"], errors="coerce").to_numpy()
        commune = frame["codeCommuneEtablissement"].astype("string")
        epsg = epsg_of_territory_codes(territory_codes_of_departements(departements_of_communes(commune))).to_numpy()
        lon, lat = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
        for code in np.unique(epsg[epsg > 0]):
            rows = epsg == code
            transformer = self.transformers.setdefault(int(code), self.transformer.from_crs(int(code), 4326,
                                                                                            always_xy=True))
            lon[rows], lat[rows] = transformer.transform(x[rows], y[rows])  # type: ignore[attr-defined]
        n = len(frame)
        empty = pa.nulls(n, pa.string())
        out = pa.table({
            "siret": frame["siret"].to_numpy(), "x": x, "y": y, "qualite_xy": np.full(n, "11", dtype=object),
            "epsg": epsg.astype(str), "plg_qp24": empty, "plg_iris": empty, "plg_zus": empty, "plg_qp15": empty,
            "plg_qva": empty, "plg_code_commune": commune.to_numpy(), "distance_precision": np.zeros(n),
            "qualite_qp24": empty, "qualite_iris": empty, "qualite_zus": empty, "qualite_qp15": empty,
            "qualite_qva": empty, "y_latitude": lat, "x_longitude": lon,
        })
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, out.schema, compression="zstd")
        self.writer.write_table(out)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _csv_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue().to_pybytes()


def _stream_csv(path: Path, columns: tuple[str, ...]):
    """Batches of an official CSV, every column as text."""
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=True)
    return pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=64 << 20), convert_options=convert)


def _write_stocks(folder: Path, data: nd.NationalData, sizes: MirrorSizes, out: Path) -> None:
    """The two ZIPs (one CSV member each), their Parquet editions and the geolocation file."""
    targets = [folder / n for n in ("StockUniteLegale_utf8.zip", "StockUniteLegale_utf8.parquet",
                                    "StockEtablissement_utf8.zip", "StockEtablissement_utf8.parquet", GEOLOCATION)]
    if all(t.is_file() for t in targets):
        return
    base_sizes = BASE_STOCK if sizes.establishments >= BASE_STOCK.establishments else \
        ss.StockSizes(sizes.establishments * 9 // 10, sizes.ess_active)
    base = ss.write_stock(data, base_sizes, out_dir=out, log=log)
    base_units, base_establishments = Path(str(base["unites_legales"])), Path(str(base["etablissements"]))
    tmp = {t: _tmp(t) for t in targets}
    ul_zip, ul_parquet, et_zip, et_parquet, geoloc_path = (tmp[t] for t in targets)
    names = pd.Series(data.communes["nom"].astype(str).str.upper().to_numpy(),
                      index=data.communes["code_insee"].astype(str).to_numpy())
    rng = np.random.default_rng(data.seed + 41)
    started = time.perf_counter()
    units_spill = folder / "_filler_units.csv"  # the filler units, for the legal-unit ZIP afterwards
    et_writer = ul_writer = None
    geolocation = _Geolocation(geoloc_path)
    written_units = int(str(base["unites_legales_rows"]))
    try:
        et_schema = pa.schema([(c, pa.string()) for c in ETABLISSEMENT_COLUMNS])
        ul_schema = pa.schema([(c, pa.string()) for c in UNITE_LEGALE_COLUMNS])
        et_writer = pq.ParquetWriter(et_parquet, et_schema, compression="zstd")
        ul_writer = pq.ParquetWriter(ul_parquet, ul_schema, compression="zstd")
        with zipfile.ZipFile(et_zip, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                             allowZip64=True) as zf, zf.open("StockEtablissement_utf8.csv", "w",
                                                             force_zip64=True) as member, \
                open(units_spill, "wb") as spill:
            with open(base_establishments, "rb") as src:
                shutil.copyfileobj(src, member, 8 << 20)
            for batch in _stream_csv(base_establishments, ETABLISSEMENT_COLUMNS):
                table = pa.Table.from_batches([batch]).select(list(ETABLISSEMENT_COLUMNS)).cast(et_schema)
                et_writer.write_table(table)
                geolocation.write(table)
            for batch in _stream_csv(base_units, UNITE_LEGALE_COLUMNS):
                ul_writer.write_table(pa.Table.from_batches([batch]).select(list(UNITE_LEGALE_COLUMNS)).cast(ul_schema))
            log(f"  base stock copied ({time.perf_counter() - started:.0f} s)")
            remaining, first_unit = sizes.establishments - int(str(base["etablissements_rows"])), 0
            while remaining > 0:
                n = min(FILLER_CHUNK, remaining)
                establishments, units, n_units = _filler_chunk(data, names, rng, n, first_unit)
                member.write(_csv_bytes(establishments))
                et_writer.write_table(establishments)
                geolocation.write(establishments)
                spill.write(_csv_bytes(units))
                ul_writer.write_table(units)
                remaining, first_unit, written_units = remaining - n, first_unit + n_units, written_units + n_units
                if remaining % 5_000_000 == 0:
                    done = sizes.establishments - remaining
                    log(f"  {done:,} establishments ({time.perf_counter() - started:.0f} s)")
        ceased = max(0, sizes.legal_units - written_units)
        with zipfile.ZipFile(ul_zip, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                             allowZip64=True) as zf, \
                zf.open("StockUniteLegale_utf8.csv", "w", force_zip64=True) as member:
            for part in (base_units, units_spill):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, member, 8 << 20)
            for start in range(0, ceased, FILLER_CHUNK):
                table = _ceased_units(start, min(FILLER_CHUNK, ceased - start), data.seed)
                member.write(_csv_bytes(table))
                ul_writer.write_table(table)
        log(f"  legal units: {written_units + ceased:,} ({time.perf_counter() - started:.0f} s)")
    finally:
        for writer in (et_writer, ul_writer, geolocation):
            if writer is not None:
                writer.close()
        units_spill.unlink(missing_ok=True)
    for target in targets:
        _replace_into(tmp[target], target)


# --- Boundaries ------------------------------------------------------------------------------------


def admin_express_gpkg(target: Path, *, segment_deg: float, communes_path: Path = nd.COMMUNES_PATH) -> Path:
    """An ADMIN EXPRESS COG 4.0 GeoPackage of all the communes (also the realistic-size input of
    the reader's timing): layers ``commune``, ``arrondissement_municipal``, ``epci``, WGS84."""
    national = gpd.read_parquet(communes_path).sort_values("code_insee")
    national = national[national.geometry.notna()].reset_index(drop=True)
    geometry = national.geometry.values
    if segment_deg > 0:
        geometry = shapely.segmentize(geometry, segment_deg)
    national = national.set_geometry(gpd.GeoSeries(geometry, crs=4326))
    is_arm = (national["type_commune"] == "ARM").to_numpy()
    communes, arm = national[~is_arm].reset_index(drop=True), national[is_arm].reset_index(drop=True)
    commune = gpd.GeoDataFrame({
        "cleabs": "COMMUNE_" + communes["code_insee"], "nom_officiel": communes["nom"],
        "nom_officiel_en_majuscules": communes["nom"].str.upper(), "code_insee": communes["code_insee"],
        "statut": "Commune simple", "population": communes["population"].astype("Int64"),
        "code_insee_du_departement": communes["code_departement"],
        "code_insee_de_la_region": communes["code_region"],
        "codes_siren_des_epci": communes["siren_epci"].astype("string").fillna("NR"),
    }, geometry=communes.geometry.values, crs=4326)
    arrondissements = gpd.GeoDataFrame({
        "cleabs": "ARRONDISSEMENT_MUNICIPAL_" + arm["code_insee"], "nom_officiel": arm["nom"],
        "code_insee": arm["code_insee"], "code_insee_de_la_commune_de_rattach": arm["code_commune_parent"],
        "population": arm["population"].astype("Int64"),
    }, geometry=arm.geometry.values, crs=4326)
    names = pd.read_csv(REPO / "data" / "raw" / "epci_france.csv", dtype=str).set_index("siren_epci")
    shipped = gpd.read_parquet(communes_path)
    shipped = shipped[(shipped["type_commune"] == "COM") & shipped["siren_epci"].notna() & shipped.geometry.notna()]
    shapes = shipped.dissolve("siren_epci").geometry
    epci = gpd.GeoDataFrame({"cleabs": "EPCI_" + shapes.index.to_series().to_numpy(), "code_siren": shapes.index,
                             "nom_officiel": names["nom"].reindex(shapes.index).to_numpy(),
                             "nature": names["type"].reindex(shapes.index).map(NATURE).to_numpy()},
                            geometry=shapes.values, crs=4326)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name("_" + target.name)
    tmp.unlink(missing_ok=True)
    for layer, frame in (("commune", commune), ("arrondissement_municipal", arrondissements), ("epci", epci)):
        frame.rename_geometry("geometrie").to_file(tmp, layer=layer, driver="GPKG", engine="pyogrio")
    os.replace(tmp, target)
    return target


def _admin_express(folder: Path, segment_deg: float) -> None:
    import py7zr

    target = folder / f"{ADMIN_EXPRESS}.7z"
    if target.is_file():
        return
    staging = folder / "_admin_express"
    shutil.rmtree(staging, ignore_errors=True)
    gpkg = admin_express_gpkg(staging / ADMIN_EXPRESS_GPKG, segment_deg=segment_deg)
    log(f"  GeoPackage {gpkg.stat().st_size / 1e6:,.1f} MB, compressing")
    tmp = _tmp(target)
    with py7zr.SevenZipFile(tmp, "w", filters=[{"id": py7zr.FILTER_LZMA2, "preset": 1}]) as seven:
        seven.writeall(staging / ADMIN_EXPRESS, ADMIN_EXPRESS)
    shutil.rmtree(staging)
    _replace_into(tmp, target)


def _qpv(folder: Path, data: nd.NationalData) -> None:
    target = folder / SOURCES["qpv2024"][0].filename
    if target.is_file():
        return
    qpv = data.qpv
    official = gpd.GeoDataFrame({"code_qp": qpv["code_qp"], "lib_qp": qpv["lib_qp"], "insee_dep": qpv["insee_dep"],
                                 "insee_com": qpv["insee_com"], "lib_com": qpv["lib_com"]},
                                geometry=qpv.geometry.values, crs=4326)
    tmp = _tmp(target)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(QPV_MEMBER, official.to_json(drop_id=True))
    _replace_into(tmp, target)


# --- Tiers-lieux and addresses -----------------------------------------------------------------------


def _census(folder: Path, data: nd.NationalData) -> pd.DataFrame:
    """The census files; returns the places with their address (for the BAN files)."""
    places = data.tiers_lieux.reset_index(drop=True)
    rng = np.random.default_rng(data.seed + 31)
    n = len(places)
    number = rng.integers(1, 150, n)
    street = np.array(STREETS, dtype=object)[rng.integers(0, len(STREETS), n)]
    commune = places["code_commune"].astype(str)
    postcode = commune.str[:2] + "0" + commune.str[3:5]
    ident = (np.arange(n) + 1).astype(float).astype(str)
    census = pd.DataFrame({
        "ID_UNIQUE": ident, "NOM": places["nom"], "Insee": commune, "NOM_STRC_PORT": "",
        "ADRESSE": [f"{k} {s}" for k, s in zip(number, street, strict=True)], "CODPOST": postcode + ".0",
        "VILLE": places["commune"].astype(str).str.upper(), "INTERNET": "",
    })
    activities = pd.DataFrame({"ID_UNIQUE": ident})
    types = places["types"].fillna("").astype(str)
    for label, column in TYPE_COLUMNS.items():
        activities[column] = types.map(lambda t, label=label: int(label in t.split("; ")))
    for name, frame, sep in ((CENSUS, census, ","), (ACTIVITIES, activities, ";")):
        target = folder / name
        if not target.is_file():
            tmp = _tmp(target)
            frame.to_csv(tmp, index=False, sep=sep)
            _replace_into(tmp, target)
    return pd.DataFrame({"code_insee": commune, "numero": number, "nom_voie": street, "code_postal": postcode,
                         "lon": places["longitude"].to_numpy(), "lat": places["latitude"].to_numpy()})


def _ban(folder: Path, data: nd.NationalData, places: pd.DataFrame, total: int) -> None:
    """``adresses-<DEP>.csv.gz`` of every département: the places' addresses, then filler addresses
    in each commune (count by population), at points near the commune's centre."""
    communes = data.communes[data.communes["type_commune"] == "COM"].reset_index(drop=True)
    deps = sorted(communes["code_departement"].dropna().unique())
    if all((folder / f"adresses-{d}.csv.gz").is_file() for d in deps):
        return
    rng = np.random.default_rng(data.seed + 37)
    population = communes["population"].fillna(0).to_numpy(dtype=float) + 50
    counts = np.floor(population / population.sum() * total).astype(np.int64)
    centre = communes.geometry.representative_point()
    communes = communes.assign(count=counts, lon=centre.x.to_numpy(), lat=centre.y.to_numpy())
    streets = np.array(STREETS, dtype=object)
    started = time.perf_counter()
    for dep in deps:
        target = folder / f"adresses-{dep}.csv.gz"
        if target.is_file():
            continue
        here = communes[communes["code_departement"] == dep]
        n = int(here["count"].sum())
        code = np.repeat(here["code_insee"].to_numpy(dtype=object), here["count"].to_numpy())
        name = np.repeat(here["nom"].to_numpy(dtype=object), here["count"].to_numpy())
        lon = np.repeat(here["lon"].to_numpy(), here["count"].to_numpy()) + rng.uniform(-0.01, 0.01, n)
        lat = np.repeat(here["lat"].to_numpy(), here["count"].to_numpy()) + rng.uniform(-0.01, 0.01, n)
        numero = rng.integers(1, 400, n)
        street = streets[rng.integers(0, len(streets), n)] + " " + (rng.integers(0, 50, n)).astype(str)
        own = places[places["code_insee"].str.startswith(dep) & (departements_of_communes(places["code_insee"]) == dep)]
        frame = pd.DataFrame({
            "code_insee": np.concatenate([own["code_insee"].to_numpy(dtype=object), code]),
            "nom_commune": np.concatenate([np.full(len(own), "", dtype=object), name]),
            "numero": np.concatenate([own["numero"].to_numpy(), numero]).astype(str),
            "nom_voie": np.concatenate([own["nom_voie"].to_numpy(dtype=object), street]),
            "lon": np.round(np.concatenate([own["lon"].to_numpy(), lon]), 6).astype(str),
            "lat": np.round(np.concatenate([own["lat"].to_numpy(), lat]), 6).astype(str),
        })
        code_s = frame["code_insee"].astype(str)
        frame["code_postal"] = (code_s.str[:2] + "0" + code_s.str[3:5]).to_numpy()
        frame["id"] = (code_s + "_" + pd.Series(np.arange(len(frame)) % 10_000, dtype="string").str.zfill(4)
                       + "_" + frame["numero"].str.zfill(5)).to_numpy()
        frame["id_fantoir"] = frame["id"].str[:10]
        frame["rep"] = ""
        frame["type_position"] = "entrée"
        frame["source_position"] = "commune"
        frame["certification_commune"] = "1"
        table = pa.Table.from_pandas(frame.reindex(columns=list(BAN_ADDRESS_COLUMNS)).astype("string").fillna(""),
                                     preserve_index=False)
        tmp = _tmp(target)
        with pa.CompressedOutputStream(str(tmp), "gzip") as out:
            pacsv.write_csv(table, out, pacsv.WriteOptions(delimiter=";", quoting_style="needed"))
        os.replace(tmp, target)
    log(f"  BAN: {len(deps)} files in {time.perf_counter() - started:.0f} s")


# --- The mirror ------------------------------------------------------------------------------------


def mirror_dir(sizes: MirrorSizes, seed: int, out: Path = DEFAULT_OUT) -> Path:
    return out / f"national-mirror-v{MIRROR_VERSION}-s{seed}-{sizes.key}"


PARTS = ("boundaries", "stocks", "ban")


def write_mirror(sizes: MirrorSizes, seed: int = nd.DEFAULT_SEED, *, out: Path = DEFAULT_OUT,
                 parts: tuple[str, ...] = PARTS) -> Path:
    """Write (or complete) the mirror folder; returns it. ``parts`` (of :data:`PARTS`) lets two
    processes write the SIRENE files and the BAN files at the same time (disjoint files)."""
    folder = mirror_dir(sizes, seed, out)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = nd.load_or_generate(nd.NATIONAL, seed, out_dir=out, log=log)
    if "boundaries" in parts:
        log("communes: ADMIN EXPRESS 7-Zip")
        _admin_express(folder, sizes.segment_deg)
        log("QPV archive, tiers-lieux census")
        _qpv(folder, data)
        _census(folder, data)
    if "stocks" in parts:
        log("SIRENE stocks: ZIP and Parquet editions, geolocation file")
        _write_stocks(folder, data, sizes, out)
    if "ban" in parts:
        log("BAN files")
        _ban(folder, data, _census(folder, data), sizes.ban_addresses)
    manifest = {"sizes": asdict(sizes), "seed": seed, "version": MIRROR_VERSION,
                "files": {p.name: p.stat().st_size for p in sorted(folder.iterdir())
                          if p.is_file() and not p.name.endswith(".tmp")},
                "notice": "Fichiers officiels simulés pour les mesures de performance d'essmap : aucune ligne réelle."}
    (folder / "mirror.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"mirror parts {', '.join(parts)} ready in {folder} ({time.perf_counter() - started:.0f} s this run)")
    return folder


# --- The timed build -------------------------------------------------------------------------------


def _child_build(args: argparse.Namespace) -> int:
    """Runs in the measured child: the official build, with a timestamp on every stage and file in
    ``args.log`` (the CLI's progress bars draw nothing into a pipe), then the French summary."""
    import dataclasses

    from essmap.domain.config import load_settings
    from essmap.store.official import build_official, departements_of_request, summary_lines

    started = time.perf_counter()
    with open(args.log, "w", encoding="utf-8", buffering=1) as journal:

        def stamp(text: str) -> None:
            # resident memory now and the process's peak so far: the stage whose line first shows
            # the final peak is where it happened
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            journal.write(f"@{time.perf_counter() - started:8.1f} s  [{_resident_mb():5d} MB, peak {peak:5d} MB]  "
                          f"{text}\n")

        class Downloads:
            def start(self, label: str):
                stamp(f"fetch {label}")
                return lambda done, total: None

            def finished(self, label: str, size: int, *, cached: bool) -> None:
                stamp(f"fetched {label} ({size / 1e6:,.1f} MB{', from the cache' if cached else ''})")

        deps = departements_of_request(departements=args.departements.split(",") if args.departements else None,
                                       france=args.france)
        settings = dataclasses.replace(load_settings(), cache_dir=Path(args.cache), db_path=Path(args.db))
        report = build_official(settings, deps, mirror=Path(args.mirror), downloads=Downloads(),
                                progress=lambda label, fraction: stamp(f"stage {label}"), notify=stamp)
        stamp("done")
        for line in summary_lines(report, per_source=True):
            journal.write(line + "\n")
    return 0


def _resident_mb() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next((int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS:")), 0)


def run_build(mirror: Path, *, departements: str | None, france: bool, keep_cache: bool = False,
              runs: Path | None = None) -> dict:
    """Time one build over ``mirror`` as a whole child process (:func:`measure.run_process`: wall
    time, kernel peak RSS, load average); returns (and saves under ``runs``, by default
    ``<mirror>/runs/``) the result. The cache and store of the build go to ``runs`` too: a folder
    of one's own lets several checkouts measure over one shared mirror (on the mirror's file
    system, the mirror's files are hard-linked into the cache, not copied)."""
    label = "france" if france else str(departements).replace(",", "-")
    runs = runs or mirror / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    db, cache, journal = runs / f"essmap-{label}.duckdb", runs / f"cache-{label}", runs / f"stages-{label}.log"
    db.unlink(missing_ok=True)
    if not keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, str(Path(__file__).resolve()), "_build", "--mirror", str(mirror), "--db", str(db),
               "--cache", str(cache), "--log", str(journal)]
    command += ["--france"] if france else ["--departements", str(departements)]
    run = measure.run_process(command, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout_s=3 * 3600, check=False)
    result = {
        "label": label, "mirror": str(mirror), "returncode": run.returncode, "wall_s": round(run.wall_s, 1),
        "peak_rss_mb": round(run.peak_rss_mb, 1), "user_s": run.user_s, "system_s": run.system_s,
        "load_before": run.load_before, "load_after": run.load_after, "cache_kept": keep_cache,
        "db_mb": round(db.stat().st_size / 1e6, 1) if db.is_file() else None,
        "cache_mb": round(sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 1e6, 1),
        "when": datetime.now().isoformat(timespec="seconds"), "machine": measure.machine_info(),
        "journal": journal.read_text(encoding="utf-8").splitlines() if journal.is_file() else [],
        "stderr_tail": run.stderr_tail if run.returncode else "",
        "rss_samples": run.rss_samples[:: max(1, len(run.rss_samples) // 200)],
    }
    (runs / f"run-{label}-{datetime.now():%Y%m%d-%H%M%S}.json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="National-size mirror of the official files, and timed builds")
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write (or complete) the mirror folder")
    write.add_argument("--small", action="store_true")
    write.add_argument("--seed", type=int, default=nd.DEFAULT_SEED)
    write.add_argument("--out", type=Path, default=DEFAULT_OUT)
    write.add_argument("--only", choices=PARTS, action="append", help="write only these parts (repeatable)")
    run = sub.add_parser("run", help="time `essmap build --officiel` over the mirror (fresh cache and store)")
    run.add_argument("--small", action="store_true")
    run.add_argument("--seed", type=int, default=nd.DEFAULT_SEED)
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    run.add_argument("--departements")
    run.add_argument("--france", action="store_true")
    run.add_argument("--keep-cache", action="store_true", help="reuse the cache of the previous run")
    run.add_argument("--runs", type=Path, help="folder of the cache, store and results (default: <mirror>/runs)")
    child = sub.add_parser("_build")
    child.add_argument("--mirror", required=True)
    child.add_argument("--db", required=True)
    child.add_argument("--cache", required=True)
    child.add_argument("--departements")
    child.add_argument("--france", action="store_true")
    child.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    if args.command == "_build":
        return _child_build(args)
    sizes = SMALL if args.small else NATIONAL
    if args.command == "write":
        write_mirror(sizes, args.seed, out=args.out, parts=tuple(args.only or PARTS))
        return 0
    if bool(args.departements) == bool(args.france):
        parser.error("give --departements or --france")
    result = run_build(mirror_dir(sizes, args.seed, args.out), departements=args.departements, france=args.france,
                       keep_cache=args.keep_cache, runs=args.runs)
    shown = {k: v for k, v in result.items() if k not in ("journal", "rss_samples", "machine")}
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    print("\n".join(result["journal"]))
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
