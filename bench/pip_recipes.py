"""Point-in-polygon recipes on the national benchmark data, timed in one run.

Each recipe gives, for each of the establishments (2 million at national scale), the code of the
QPV (~1,600 polygons) and of the commune (~35,000, arrondissements left out) that holds it, with
essmap's rules: a point on a boundary is in the polygon (``intersects``), the first code in
alphabetical order wins where polygons overlap, no geometry gives <NA>. Recipes:

- ``shapely.query_predicate``: ``STRtree(polygons).query(points, predicate="intersects")``;
- ``shapely.query_xy``: ``STRtree(polygons).query(points)`` (boxes), then
  ``shapely.intersects_xy`` on prepared copies of the polygons, pairs sorted by polygon, the
  points' coordinates read once (``.unsorted``: pairs in the tree's order; ``.gathered``:
  coordinates read from the candidate points, as an object array);
- ``shapely.points_tree``: ``STRtree(points).query(polygons, predicate="intersects")`` (each
  polygon prepared once by the query);
- ``geopandas.sjoin``: ``geopandas.sjoin(points, polygons, predicate="intersects")``;
- ``duckdb.spatial``: an ``ST_Intersects`` join inside DuckDB (spatial extension from its wheel),
  timed with the loading of both tables (``duckdb.spatial``) and the join alone (``duckdb.join``);
- ``old_engine``: the adaptive grid removed from ``essmap.geo`` (commit b380aba), copied from git
  into ``bench/out/old_engine``: ``cold`` builds its polygon layer in the run (fresh copies of the
  polygons each time), ``warm`` reuses its cached layer;
- ``essmap.geo``: :func:`essmap.geo.points_in_polygons` as it is now.

Every recipe's answer is compared with the old engine's, point by point. Times are medians of
``--repeat`` runs; the load average is printed before each recipe (the machine is shared: compare
ratios within one run). Run: ``python bench/pip_recipes.py [--small] [--repeat N]``.

``--view-queries DEP`` times instead the radius queries the dashboard runs on demand for one
département (wall and CPU time, new code and old engine): its QPVs against the tiers-lieux of
France and against its establishments, within 1 km, with each QPV's nearest.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(HERE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

import duckdb  # noqa: E402
import geopandas as gpd  # noqa: E402
import national_data as nd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402

from essmap import geo  # noqa: E402
from essmap.store.connection import prepare  # noqa: E402

OLD_COMMIT = "b380aba"
OLD_FILES = ("__init__.py", "base.py", "contains.py", "distance.py")
OLD_PACKAGE = "old_geo"

Pairs = tuple[np.ndarray, np.ndarray]


# --- The recipes: (point position, polygon position) of every intersecting pair -----------------


def _geoms(frame: gpd.GeoDataFrame) -> np.ndarray:
    return np.asarray(frame.geometry.array, dtype=object)


def query_predicate(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> Pairs:
    ip, ig = shapely.STRtree(_geoms(polygons)).query(_geoms(points), predicate="intersects")
    return ip, ig


def query_xy(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, *, sort: bool = True,
             gather: bool = False) -> Pairs:
    """Box candidates, then prepared ``intersects_xy``: pairs sorted by polygon (``sort``), the
    points' coordinates read once for all points (or from the candidate points, ``gather``)."""
    geoms = _geoms(points)
    ip, ig = shapely.STRtree(_geoms(polygons)).query(geoms)
    if sort:
        order = np.argsort(ig, kind="stable")
        ip, ig = ip[order], ig[order]
    prepared = shapely.transform(_geoms(polygons), lambda xy: xy)  # copies: the input stays unprepared
    shapely.prepare(prepared)
    if gather:
        x, y = shapely.get_x(geoms[ip]), shapely.get_y(geoms[ip])
    else:
        xy = shapely.bounds(geoms)[:, :2]  # a point's bounds start with its coordinates
        x, y = xy[ip, 0], xy[ip, 1]
    hit = shapely.intersects_xy(prepared[ig], x, y)
    return ip[hit], ig[hit]


def points_tree(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> Pairs:
    ig, ip = shapely.STRtree(_geoms(points)).query(_geoms(polygons), predicate="intersects")
    return ip, ig


def sjoin(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> Pairs:
    left = gpd.GeoDataFrame(geometry=points.geometry.to_numpy(), crs=points.crs)  # positions as index
    right = gpd.GeoDataFrame(geometry=polygons.geometry.to_numpy(), crs=polygons.crs)
    joined = gpd.sjoin(left, right, how="inner", predicate="intersects")
    return joined.index.to_numpy(), joined["index_right"].to_numpy()


def duckdb_tables(con: duckdb.DuckDBPyConnection, points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> None:
    """Points (from their coordinates) and polygons (from WKB) as DuckDB tables."""
    geoms = _geoms(points)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    pts = pd.DataFrame({"i": np.flatnonzero(present), "x": shapely.get_x(geoms[present]),
                        "y": shapely.get_y(geoms[present])})
    polys = pd.DataFrame({"j": np.arange(len(polygons)), "wkb": shapely.to_wkb(_geoms(polygons))})
    con.register("pts_df", pts)
    con.register("polys_df", polys)
    con.execute("CREATE OR REPLACE TABLE pts AS SELECT i, ST_Point(x, y) AS geom FROM pts_df")
    con.execute("CREATE OR REPLACE TABLE polys AS SELECT j, ST_GeomFromWKB(wkb) AS geom FROM polys_df "
                "WHERE wkb IS NOT NULL")
    con.unregister("pts_df")
    con.unregister("polys_df")


def duckdb_join(con: duckdb.DuckDBPyConnection) -> Pairs:
    found = con.execute("SELECT p.i, q.j FROM pts p JOIN polys q ON ST_Intersects(q.geom, p.geom)").fetchnumpy()
    return np.asarray(found["i"], dtype=np.int64), np.asarray(found["j"], dtype=np.int64)


def duckdb_spatial(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> Pairs:
    con = prepare(duckdb.connect())
    try:
        duckdb_tables(con, points, polygons)
        return duckdb_join(con)
    finally:
        con.close()


def first_by_key(n_points: int, ip: np.ndarray, ig: np.ndarray, keys: pd.Series) -> pd.Series:
    """Each point's polygon key (<NA> when none), the first key in order where several hold it."""
    rank = keys.rank(method="first", na_option="bottom").to_numpy(dtype=np.int64)
    order = np.lexsort((rank[ig], ip))
    sorted_points = ip[order]
    _, first = np.unique(sorted_points, return_index=True)
    position = np.full(n_points, -1, dtype=np.int64)
    position[sorted_points[first]] = ig[order][first]
    return pd.Series(keys.array.take(position, allow_fill=True))


# --- The old engine, from git -----------------------------------------------------------------


def old_engine(out_dir: Path) -> ModuleType:
    """The ``essmap.geo`` of commit b380aba as a package ``old_geo`` under ``out_dir`` (imports renamed)."""
    package = out_dir / "old_engine" / OLD_PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    for name in OLD_FILES:
        text = subprocess.run(["git", "show", f"{OLD_COMMIT}:essmap/geo/{name}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        (package / name).write_text(text.replace("essmap.geo", OLD_PACKAGE), encoding="utf-8")
    if str(package.parent) not in sys.path:
        sys.path.insert(0, str(package.parent))
    return importlib.import_module(OLD_PACKAGE)


def fresh_copies(polygons: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The same polygons as new geometry objects: the old engine's cache (keyed by object
    identity) misses, so its run includes building its layer."""
    return polygons.set_geometry(shapely.transform(_geoms(polygons), lambda xy: xy))


# --- Timing -----------------------------------------------------------------------------------


def timed(run: Callable[[], pd.Series], repeat: int, before: Callable[[], None] | None = None
          ) -> tuple[list[float], pd.Series]:
    times: list[float] = []
    answer = pd.Series(dtype=object)
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        answer = run()
        times.append(time.perf_counter() - started)
    return times, answer


def agreement(answer: pd.Series, reference: pd.Series) -> tuple[float, int]:
    """Share (%) of points with the same code (both <NA> counts as equal), and the differing count."""
    same = answer.fillna("<NA>").to_numpy(dtype=object) == reference.fillna("<NA>").to_numpy(dtype=object)
    return 100.0 * same.mean(), int((~same).sum())


Recipe = tuple[Callable[[], pd.Series], Callable[[], None] | None, str]


def recipes(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, key: str, old: ModuleType,
            con: duckdb.DuckDBPyConnection, copies: list[gpd.GeoDataFrame]) -> dict[str, Recipe]:
    """Name -> (run, what to do before each run (untimed), threads used)."""

    def pairs_recipe(find: Callable[[gpd.GeoDataFrame, gpd.GeoDataFrame], Pairs]) -> Callable[[], pd.Series]:
        return lambda: first_by_key(len(points), *find(points, polygons), polygons[key])

    return {
        "old_engine.warm": (lambda: old.points_in_polygons(points, polygons, key), None, "2 threads"),
        "old_engine.cold": (lambda: old.points_in_polygons(points, copies[-1], key),
                            lambda: copies.append(fresh_copies(polygons)), "2 threads"),
        "shapely.query_predicate": (pairs_recipe(query_predicate), None, "1 thread"),
        "shapely.query_xy": (pairs_recipe(query_xy), None, "1 thread"),
        "shapely.query_xy.unsorted": (pairs_recipe(partial(query_xy, sort=False)), None, "1 thread"),
        "shapely.query_xy.gathered": (pairs_recipe(partial(query_xy, gather=True)), None, "1 thread"),
        "shapely.points_tree": (pairs_recipe(points_tree), None, "1 thread"),
        "geopandas.sjoin": (pairs_recipe(sjoin), None, "1 thread"),
        "duckdb.spatial": (pairs_recipe(duckdb_spatial), None, "2 threads"),
        "duckdb.join.1thread": (lambda: first_by_key(len(points), *duckdb_join(con), polygons[key]), None,
                                "1 thread"),
        "essmap.geo": (lambda: geo.points_in_polygons(points, polygons, key), None, "1 thread"),
    }


def view_queries(data: nd.NationalData, departement: str, repeat: int, old: ModuleType) -> None:
    """Median wall and CPU time of the dashboard's radius queries for one département."""
    qpv = data.qpv[data.qpv["insee_dep"] == departement]
    establishments = data.establishments[data.establishments["code_departement"] == departement]
    tiers_lieux = data.tiers_lieux
    print(f"département {departement}: {len(qpv)} QPV, {len(tiers_lieux):,} tiers-lieux (France), "
          f"{len(establishments):,} establishments; load at start {os.getloadavg()}")
    # the same establishments as new objects, as read from the store (a slice of the national frame has
    # its geometries all over the memory: every pass over them costs more)
    fresh = establishments.set_geometry(shapely.from_wkb(shapely.to_wkb(_geoms(establishments))))
    for label, targets, key in (("tiers-lieux of France", tiers_lieux, "id_tiers_lieu"),
                                ("establishments of the dép. (sliced)", establishments, "siret"),
                                ("establishments of the dép. (fresh)", fresh, "siret")):
        engines = (("essmap.geo", geo.within_and_nearest), ("old engine (cache warm)", old.within_and_nearest))
        for engine, query in engines:
            found = query(qpv, targets, 1000.0, key)  # warm-up (and the old engine's cache)
            wall, cpu = [], []
            for _ in range(repeat):
                started, started_cpu = time.perf_counter(), time.process_time()
                query(qpv, targets, 1000.0, key)
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
            print(f"  QPV x {label:34s} {engine:24s} wall {1000 * statistics.median(wall):7.1f} ms  "
                  f"CPU {1000 * statistics.median(cpu):7.1f} ms  ({len(found.source):,} pairs within 1 km)  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per recipe (median reported)")
    parser.add_argument("--skip", nargs="*", default=[], help="recipes to leave out (e.g. shapely.query_predicate)")
    parser.add_argument("--layers", nargs="*", default=["code_qp", "code_insee"], help="polygon layers to run")
    parser.add_argument("--view-queries", metavar="DEP", help="time the view-time radius queries of this département")
    args = parser.parse_args(argv)
    data = nd.load_or_generate(nd.sizes_from_env(nd.SMALL if args.small else nd.NATIONAL))
    if args.view_queries:
        view_queries(data, args.view_queries, max(args.repeat, 15), old_engine(nd.OUT_DIR))
        return 0
    points = data.establishments[["geometry"]]
    communes = data.communes[data.communes["type_commune"] == "COM"][["code_insee", "geometry"]]
    layers = {"code_qp": data.qpv[["code_qp", "geometry"]].reset_index(drop=True),
              "code_insee": communes.reset_index(drop=True)}
    old = old_engine(nd.OUT_DIR)
    print(f"{len(points):,} points; {len(layers['code_qp']):,} QPV; {len(layers['code_insee']):,} communes; "
          f"{args.repeat} runs per recipe; {os.cpu_count()} CPUs; load at start {os.getloadavg()}")

    rows: list[dict[str, object]] = []
    for key, polygons in layers.items():
        if key not in args.layers:
            continue
        con = prepare(duckdb.connect())
        duckdb_tables(con, points, polygons)
        con.execute("SET threads = 1")
        copies: list[gpd.GeoDataFrame] = []
        old.points_in_polygons(points.iloc[:1000], polygons, key)  # warm-up: imports, the old layer cached
        reference: pd.Series | None = None
        for name, (run, before, threads) in recipes(points, polygons, key, old, con, copies).items():
            if name in args.skip:
                continue
            load = os.getloadavg()[0]
            times, answer = timed(run, args.repeat, before)
            answer = pd.Series(answer.to_numpy(), dtype=object)
            if reference is None:
                reference = answer
            same, differing = agreement(answer, reference)
            rows.append({"layer": key, "recipe": name, "threads": threads, "median_s": statistics.median(times),
                         "min_s": min(times), "load_before": load, "agreement_%": same, "differing": differing})
            print(f"  {key:10s} {name:24s} median {statistics.median(times):7.3f} s  min {min(times):7.3f} s  "
                  f"load {load:4.2f}  agreement {same:.4f} % ({differing} differ)", flush=True)
            copies.clear()
        con.close()

    table = pd.DataFrame(rows)
    library = table[~table["recipe"].str.startswith(("old_engine", "essmap", "duckdb.join"))
                    & ~table["recipe"].str.endswith((".unsorted", ".gathered"))]
    best = library.loc[library.groupby("layer")["median_s"].idxmin()].set_index("layer")
    table["vs_best_library"] = table["median_s"] / table["layer"].map(best["median_s"])
    print(f"\nload at end {os.getloadavg()}; best library recipe: {best['recipe'].to_dict()}")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0 if (table["differing"] == 0).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
