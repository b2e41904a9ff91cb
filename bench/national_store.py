"""A national-scale essmap store, built the way a user builds one, with every step measured.

The national synthetic layers (:mod:`national_data`: real communes of all France, QPV-like
polygons, tiers-lieux) and the synthetic SIRENE stock (:mod:`sirene_stock`) are written in the
official file formats, then loaded with the real command line, each command a measured process
(wall time, peak resident memory, memory over time):

1. ``essmap build`` (the embedded PACA demo; a copy of it is kept as the *embedded store*);
2. ``essmap ingest communes data/geo/communes_france.parquet`` (all France);
3. ``essmap ingest qpv qpv2024_national.geojson`` (the synthetic QPVs in the ANCT layout:
   ``code_qp``, ``lib_qp``, ``insee_reg``, ``lib_reg``, ``insee_dep``, ``lib_dep``, ``insee_com``,
   ``lib_com``, ``siren_epci``);
4. ``essmap ingest sirene StockUniteLegale_utf8.csv StockEtablissement_utf8.csv`` (the stock
   pair, flagged synthetic by its ``essmap-synthetic.json``);
5. ``essmap ingest tiers-lieux tiers_lieux_national.csv`` (France Tiers-Lieux census columns,
   flagged synthetic the same way).

The store before step 4 is kept (``before-sirene.duckdb``) so that the SIRENE ingest can be
measured again, on this stock and on bigger ones, each on a fresh copy. Everything is cached
under ``bench/out/store-<key>/``; the key covers the seed, the sizes and the code that writes a
store (``essmap/`` except the view and rendering layers, ``data/``). ``--rebuild`` ignores it.

Run alone: ``python bench/national_store.py [--small] [--rebuild]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(HERE), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import geopandas as gpd  # noqa: E402
import national_data as nd  # noqa: E402
import pandas as pd  # noqa: E402
import sirene_stock  # noqa: E402
from measure import ESSMAP, OUT_DIR, ProcessRun, child_env, log, run_process  # noqa: E402

#: Bumped when the files written or the steps change.
STORE_RECIPE_VERSION = 1
#: Code whose change may change the store: everything that reads files or writes the store.
STORE_CODE = ("essmap/domain", "essmap/geo", "essmap/io", "essmap/store", "essmap/demo", "essmap/cli.py",
              "data/geo", "data/raw")
QPV_FILE = "qpv2024_national.geojson"
TIERS_LIEUX_FILE = "tiers_lieux_national.csv"
STEPS = ("build", "communes", "qpv", "sirene", "tiers-lieux")
#: The lead's pointer to the national store (outside bench/, not versioned).
POINTER = REPO / "NATIONAL_STORE_PATH.txt"


def code_hash() -> str:
    """Hash of the sources that decide what a store holds."""
    digest = hashlib.sha256()
    for root in STORE_CODE:
        path = REPO / root
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                digest.update(str(f.relative_to(REPO)).encode())
                digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class StoreSpec:
    sizes: nd.Sizes
    stock: sirene_stock.StockSizes
    seed: int = nd.DEFAULT_SEED

    @property
    def key(self) -> str:
        return f"v{STORE_RECIPE_VERSION}-s{self.seed}-{self.sizes.key}-{self.stock.key}-code{code_hash()}"

    @property
    def folder(self) -> Path:
        return OUT_DIR / f"store-{self.key}"


@dataclass
class NationalStore:
    """Paths of a built store and the measurements of its build."""

    folder: Path
    national: Path
    embedded: Path
    before_sirene: Path
    stock: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    spec: StoreSpec
    built_at: str = ""

    @property
    def sirene_files(self) -> list[Path]:
        return [Path(str(self.stock["unites_legales"])), Path(str(self.stock["etablissements"]))]


# --- Official files -------------------------------------------------------------------------------------


def write_qpv_geojson(data: nd.NationalData, path: Path) -> None:
    """The synthetic QPVs as the ANCT national GeoJSON (WGS84, official attribute names)."""
    deps = pd.read_csv(REPO / "data" / "raw" / "departements_france.csv", dtype=str)
    regions = pd.read_csv(REPO / "data" / "raw" / "regions_france.csv", dtype=str)
    dep_name = dict(zip(deps["code_departement"], deps["nom"], strict=True))
    dep_region = dict(zip(deps["code_departement"], deps["code_region"], strict=True))
    region_name = dict(zip(regions["code_region"], regions["nom"], strict=True))
    q = data.qpv
    insee_reg = q["insee_dep"].map(dep_region)
    frame = gpd.GeoDataFrame({
        "code_qp": q["code_qp"].astype(str),
        "lib_qp": q["lib_qp"].astype(str),
        "insee_reg": insee_reg,
        "lib_reg": insee_reg.map(region_name),
        "insee_dep": q["insee_dep"].astype(str),
        "lib_dep": q["insee_dep"].map(dep_name),
        "insee_com": q["insee_com"].astype(str),
        "lib_com": q["lib_com"].astype(str),
        "siren_epci": q["siren_epci"].astype("string"),
    }, geometry=q.geometry.values, crs=q.crs)
    frame.to_file(path, driver="GeoJSON")


def write_tiers_lieux_csv(data: nd.NationalData, path: Path) -> None:
    """The synthetic tiers-lieux in the France Tiers-Lieux census columns, flagged synthetic."""
    t = data.tiers_lieux
    frame = pd.DataFrame({
        "ID_UNIQUE": t["id_tiers_lieu"], "NOM": t["nom"], "Insee": t["code_commune"],
        "NOM_STRC_PORT": t["structure_porteuse"], "ADRESSE": t["adresse"], "CODPOST": t["code_postal"],
        "VILLE": t["commune"], "INTERNET": t["site_web"],
        "LATITUDE": t["latitude"].round(6), "LONGITUDE": t["longitude"].round(6),
        "TYPES": t["types"].astype("string").str.replace("; ", "|", regex=False), "LABELS": t["labels"],
    })
    frame.to_csv(path, index=False)
    (path.parent / "essmap-synthetic.json").write_text(json.dumps({
        "notice": "Tiers-lieux simulés pour les mesures de performance d'essmap (bench/) : aucun lieu réel.",
        "files": [path.name],
    }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# --- Build ----------------------------------------------------------------------------------------------


def _summary(run: ProcessRun, *, keep_samples: int = 400) -> dict[str, Any]:
    """A process run for the manifest, its memory samples thinned to ``keep_samples``."""
    out = run.to_dict()
    samples = run.rss_samples
    step = max(1, len(samples) // keep_samples)
    out["rss_samples"] = samples[::step]
    return out


def ingest_command(source: str, files: list[Path], db: Path) -> list[str]:
    return [str(ESSMAP), "ingest", source, *map(str, files), "--db", str(db)]


def build(spec: StoreSpec, *, rebuild: bool = False) -> NationalStore:
    """The cached store for ``spec``, built (and measured) when missing or when ``rebuild``."""
    folder = spec.folder
    manifest = folder / "manifest.json"
    data_stock = None
    if manifest.is_file() and not rebuild:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        log(f"national store: cached in {folder.name}")
        return _store_from_meta(folder, meta, spec)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    data = nd.load_or_generate(spec.sizes, spec.seed, log=log)
    data_stock = sirene_stock.write_stock(data, spec.stock, log=log)
    files = folder / "files"
    files.mkdir()
    write_qpv_geojson(data, files / QPV_FILE)
    write_tiers_lieux_csv(data, files / TIERS_LIEUX_FILE)
    del data

    national, embedded = folder / "national.duckdb", folder / "embedded.duckdb"
    before_sirene = folder / "before-sirene.duckdb"
    steps: dict[str, dict[str, Any]] = {}
    commands = {
        "build": [str(ESSMAP), "build", "--db", str(national)],
        "communes": ingest_command("communes", [REPO / "data" / "geo" / "communes_france.parquet"], national),
        "qpv": ingest_command("qpv", [files / QPV_FILE], national),
        "sirene": ingest_command("sirene", [Path(str(data_stock["unites_legales"])),
                                            Path(str(data_stock["etablissements"]))], national),
        "tiers-lieux": ingest_command("tiers-lieux", [files / TIERS_LIEUX_FILE], national),
    }
    for step in STEPS:
        if step == "sirene":
            shutil.copyfile(national, before_sirene)
        log(f"national store: {step}: {' '.join(commands[step][1:3])} ...")
        run = run_process(commands[step], env=child_env())
        steps[step] = _summary(run)
        log(f"national store: {step}: {run.wall_s:.1f} s, peak {run.peak_rss_mb:,.0f} MB "
            f"(load {run.load_before[0]:.2f} -> {run.load_after[0]:.2f})")
        if step == "build":
            shutil.copyfile(national, embedded)
    meta = {"spec": {"seed": spec.seed, "sizes": spec.sizes.key, "stock": spec.stock.key, "key": spec.key},
            "stock": data_stock, "steps": steps, "built_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "store_bytes": national.stat().st_size}
    manifest.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return _store_from_meta(folder, meta, spec)


def _store_from_meta(folder: Path, meta: dict, spec: StoreSpec) -> NationalStore:
    return NationalStore(folder, folder / "national.duckdb", folder / "embedded.duckdb",
                         folder / "before-sirene.duckdb", meta["stock"], meta["steps"], spec, meta.get("built_at", ""))


def publish_pointer(store: NationalStore) -> None:
    """Tell the lead where the national store is (a file at the root of this checkout)."""
    POINTER.write_text(f"{store.national}\n# embedded (PACA demo) store of the same build: {store.embedded}\n"
                       f"# built by bench/national_store.py, key {store.spec.key}\n", encoding="utf-8")


def measure_sirene_ingest(store: NationalStore, stock_files: list[Path], *, label: str) -> ProcessRun:
    """``essmap ingest sirene`` on a fresh copy of the store as it was before the SIRENE step."""
    target = store.folder / f"sirene-{label}.duckdb"
    shutil.copyfile(store.before_sirene, target)
    try:
        return run_process(ingest_command("sirene", stock_files, target), env=child_env())
    finally:
        target.unlink(missing_ok=True)
        for leftover in store.folder.glob(f"sirene-{label}.duckdb*"):
            leftover.unlink(missing_ok=True)


def spec_for(small: bool, seed: int = nd.DEFAULT_SEED) -> StoreSpec:
    sizes = nd.sizes_from_env(nd.SMALL if small else nd.NATIONAL)
    stock = sirene_stock.stock_sizes_from_env(sirene_stock.SMALL_STOCK if small else sirene_stock.NATIONAL_STOCK)
    return StoreSpec(sizes, stock, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--rebuild", action="store_true", help="build again even when cached")
    parser.add_argument("--seed", type=int, default=nd.DEFAULT_SEED)
    args = parser.parse_args(argv)
    store = build(spec_for(args.small, args.seed), rebuild=args.rebuild)
    if not args.small:
        publish_pointer(store)
    for step, run in store.steps.items():
        print(f"{step:12s} {run['wall_s']:7.1f} s  peak {int(run['peak_rss_kb']) / 1024:8.0f} MB")
    print(store.national)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
