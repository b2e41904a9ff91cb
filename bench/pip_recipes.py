"""Point in polygon at ingest: ``essmap.geo.points_in_polygons`` against the library recipes, same run.

Each recipe gives, for each of the establishments (2 million at national scale), the code of the
QPV (~1,600 polygons) and of the commune (~35,000, arrondissements left out) that holds it, with
essmap's rules: a point on a boundary is in the polygon (``intersects``), the first code in
ascending order wins where polygons overlap, no geometry gives <NA>. Recipes:

- ``shapely.query_predicate``: ``STRtree(polygons).query(points, predicate="intersects")``;
- ``shapely.query_xy``: ``STRtree(polygons).query(points)`` (boxes), then ``shapely.intersects_xy``
  on prepared copies of the polygons, pairs sorted by polygon (``.unsorted``: in the tree's order);
- ``shapely.points_tree``: ``STRtree(points).query(polygons, predicate="intersects")``;
- ``geopandas.sjoin``: ``geopandas.sjoin(points, polygons, predicate="intersects")``;
- ``duckdb.spatial``: an ``ST_Intersects`` join in DuckDB (spatial extension from its wheel), timed
  with the loading of both tables; ``duckdb.join``: the join alone, tables loaded beforehand
  (DuckDB's default threads, and ``duckdb.join.1thread``);
- ``postgis.join``: ``CREATE UNLOGGED TABLE ... AS SELECT ... JOIN ... ON ST_Intersects`` in a
  throw-away PostGIS cluster (:mod:`pg`), points and polygons loaded, GiST-indexed and analysed
  beforehand (not timed; their load time is reported), up to 2 parallel workers;
- ``essmap.geo``: :func:`essmap.geo.points_in_polygons`, as the ingest calls it.

Every recipe's answer is compared with essmap's, point by point. Times are medians of ``repeat``
runs after a warm-up on a slice, the recipes taking turns (round robin), so that a burst of load
elsewhere on the shared machine hits all of them alike; the load average is recorded around each
layer. The recipes that need a prepared environment (a loaded
DuckDB or PostGIS table) are "query only" and say so. Run alone:
``python bench/pip_recipes.py [--small] [--repeat N] [--skip-postgis]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(HERE), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import duckdb  # noqa: E402
import geopandas as gpd  # noqa: E402
import national_data as nd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402
from measure import OUT_DIR, load_average, log  # noqa: E402

from essmap import geo  # noqa: E402
from essmap.store.connection import spatial_extension_path  # noqa: E402

Pairs = tuple[np.ndarray, np.ndarray]
#: Recipes that are library recipes (candidates for "the best library recipe"); the others are
#: essmap itself or variants shown for information.
ESSMAP_RECIPE = "essmap.geo"
#: The target: essmap not slower than the best library recipe by more than this factor.
TARGET_VS_BEST = 1.20
#: Recipes whose time covers the query only (tables prepared beforehand): not comparable one for one
#: with the recipes that start from the GeoDataFrames, as the ingest does; listed, not "best".
QUERY_ONLY = ("duckdb.join", "duckdb.join.1thread", "postgis.join")


# --- The recipes: (point position, polygon position) of every intersecting pair -----------------


def _geoms(frame: gpd.GeoDataFrame) -> np.ndarray:
    return np.asarray(frame.geometry.array, dtype=object)


def query_predicate(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> Pairs:
    ip, ig = shapely.STRtree(_geoms(polygons)).query(_geoms(points), predicate="intersects")
    return ip, ig


def query_xy(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, *, sort: bool = True) -> Pairs:
    """Box candidates, then prepared ``intersects_xy`` on the points' coordinates (read once)."""
    geoms = _geoms(points)
    ip, ig = shapely.STRtree(_geoms(polygons)).query(geoms)
    if sort:
        order = np.argsort(ig, kind="stable")
        ip, ig = ip[order], ig[order]
    prepared = shapely.transform(_geoms(polygons), lambda xy: xy)  # copies: the input stays unprepared
    shapely.prepare(prepared)
    xy = shapely.bounds(geoms)[:, :2]  # a point's bounds start with its coordinates
    hit = shapely.intersects_xy(prepared[ig], xy[ip, 0], xy[ip, 1])
    return ip[hit], ig[hit]


def points_tree(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> Pairs:
    ig, ip = shapely.STRtree(_geoms(points)).query(_geoms(polygons), predicate="intersects")
    return ip, ig


def sjoin(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> Pairs:
    left = gpd.GeoDataFrame(geometry=points.geometry.to_numpy(), crs=points.crs)  # positions as index
    right = gpd.GeoDataFrame(geometry=polygons.geometry.to_numpy(), crs=polygons.crs)
    joined = gpd.sjoin(left, right, how="inner", predicate="intersects")
    return joined.index.to_numpy(), joined["index_right"].to_numpy()


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"LOAD '{spatial_extension_path()}'")
    return con


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
    con = duckdb_connection()
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


# --- Running ------------------------------------------------------------------------------------


def agreement(answer: pd.Series, reference: pd.Series) -> tuple[float, int]:
    """Share of points with the same code (both <NA> counts as equal), and how many differ."""
    same = answer.fillna("<NA>").to_numpy(dtype=object) == reference.fillna("<NA>").to_numpy(dtype=object)
    return float(same.mean()), int((~same).sum())


def _recipes(points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, key: str,
             con: duckdb.DuckDBPyConnection) -> dict[str, tuple[Callable[[], pd.Series], str]]:
    """Name -> (run, threads used)."""

    def pairs_recipe(find: Callable[[gpd.GeoDataFrame, gpd.GeoDataFrame], Pairs]) -> Callable[[], pd.Series]:
        return lambda: first_by_key(len(points), *find(points, polygons), polygons[key])

    def duckdb_join_threads(threads: int) -> pd.Series:
        con.execute(f"SET threads = {threads}")
        return first_by_key(len(points), *duckdb_join(con), polygons[key])

    return {
        ESSMAP_RECIPE: (lambda: geo.points_in_polygons(points, polygons, key), "1 thread"),
        "shapely.query_predicate": (pairs_recipe(query_predicate), "1 thread"),
        "shapely.query_xy": (pairs_recipe(query_xy), "1 thread"),
        "shapely.query_xy.unsorted": (pairs_recipe(partial(query_xy, sort=False)), "1 thread"),
        "shapely.points_tree": (pairs_recipe(points_tree), "1 thread"),
        "geopandas.sjoin": (pairs_recipe(sjoin), "1 thread"),
        "duckdb.spatial": (pairs_recipe(duckdb_spatial), "2 threads"),
        "duckdb.join": (partial(duckdb_join_threads, 2), "2 threads"),
        "duckdb.join.1thread": (partial(duckdb_join_threads, 1), "1 thread"),
    }


def layers_of(data: nd.NationalData) -> dict[str, gpd.GeoDataFrame]:
    communes = data.communes[data.communes["type_commune"] == "COM"][["code_insee", "geometry"]]
    return {"code_qp": data.qpv[["code_qp", "geometry"]].reset_index(drop=True),
            "code_insee": communes.reset_index(drop=True)}


def run(data: nd.NationalData, *, repeat: int, layer_keys: tuple[str, ...] = ("code_qp", "code_insee"),
        postgis: bool = True, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every recipe on every layer; times, answers compared with essmap's, ratios to the best library recipe."""
    points = data.establishments[["geometry"]].reset_index(drop=True)
    layers = {k: v for k, v in layers_of(data).items() if k in layer_keys}
    out: dict[str, Any] = {"points": len(points), "repeat": repeat, "layers": {}, "postgis": None}
    answers: dict[str, dict[str, pd.Series]] = {}
    for key, polygons in layers.items():
        log(f"pip: layer {key}: {len(polygons):,} polygons, {len(points):,} points")
        con = duckdb_connection()
        duckdb_tables(con, points, polygons)
        results: dict[str, dict[str, Any]] = {}
        answers[key] = {}
        recipes = {n: r for n, r in _recipes(points, polygons, key, con).items() if n not in skip}
        for name in recipes:
            _warm_up(name, points, polygons, key)
            results[name] = {"times": [], "threads": recipes[name][1], "load_before": load_average(),
                             "query_only": name in QUERY_ONLY}
        for _ in range(repeat):  # round robin: a burst of load elsewhere hits every recipe alike
            for name, (fn, _threads) in recipes.items():
                started = time.perf_counter()
                answer = fn()
                results[name]["times"].append(time.perf_counter() - started)
                answers[key][name] = pd.Series(answer.to_numpy(), dtype=object)
                del answer
        for name, result in results.items():
            times = result["times"]
            result["median_s"] = statistics.median(times)
            result["load_after"] = load_average()
            log(f"pip: {key} {name:26s} median {result['median_s']:7.3f} s [{min(times):.3f}, {max(times):.3f}]")
        con.close()
        out["layers"][key] = {"polygons": len(polygons), "recipes": results}
    if postgis:
        try:
            out["postgis"] = _postgis(points, layers, answers, repeat)
            merge_postgis(out)
        except Exception as exc:  # noqa: BLE001 - reported: no PostGIS figure
            out["postgis"] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"pip: PostGIS failed: {exc}")
    for key, layer in out["layers"].items():
        reference = answers[key].get(ESSMAP_RECIPE)
        for name, result in layer["recipes"].items():
            if reference is not None and name in answers[key]:
                result["same_share"], result["differing"] = agreement(answers[key][name], reference)
        comparable = {n: r for n, r in layer["recipes"].items()
                      if n != ESSMAP_RECIPE and not r["query_only"] and not n.endswith(".unsorted")}
        if comparable and ESSMAP_RECIPE in layer["recipes"]:
            best = min(comparable, key=lambda n: comparable[n]["median_s"])
            layer["best_library"] = best
            layer["essmap_vs_best"] = layer["recipes"][ESSMAP_RECIPE]["median_s"] / comparable[best]["median_s"]
    return out


def _warm_up(name: str, points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, key: str) -> None:
    """Imports and first-call costs out of the timed runs (a slice of the points)."""
    part = points.iloc[:5_000]
    if name == ESSMAP_RECIPE:
        geo.points_in_polygons(part, polygons, key)
    elif name == "geopandas.sjoin":
        sjoin(part, polygons)


def _postgis(points: gpd.GeoDataFrame, layers: dict[str, gpd.GeoDataFrame], answers: dict[str, dict[str, pd.Series]],
             repeat: int) -> dict[str, Any]:
    import pg

    out: dict[str, Any] = {}
    with pg.cluster(log=log) as cluster:
        out["version"] = cluster.version()
        out["load_s"] = pg.load_pip(cluster, points, layers, log=log)
        out["settings"] = pg.settings(cluster)
        for key, polygons in layers.items():
            load_before = load_average()
            times = [pg.pip_join(cluster, key) for _ in range(repeat)]
            ip, ig = pg.pip_pairs(cluster)
            answers[key]["postgis.join"] = pd.Series(first_by_key(len(points), ip, ig, polygons[key]).to_numpy(),
                                                     dtype=object)
            result = {"times": times, "median_s": statistics.median(times), "threads": "up to 3 processes",
                      "load_before": load_before, "load_after": load_average(), "query_only": True}
            out.setdefault("layers", {})[key] = result
            log(f"pip: {key} postgis.join               median {result['median_s']:7.3f} s load {load_before[0]:.2f}")
    return out


def merge_postgis(out: dict[str, Any]) -> None:
    """Put PostGIS's per-layer results among the recipes of each layer (before the comparisons)."""
    postgis = out.get("postgis") or {}
    for key, result in (postgis.get("layers") or {}).items():
        out["layers"][key]["recipes"]["postgis.join"] = result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per recipe (median reported)")
    parser.add_argument("--skip", nargs="*", default=[], help="recipes to leave out (e.g. shapely.query_predicate)")
    parser.add_argument("--layers", nargs="*", default=["code_qp", "code_insee"], help="polygon layers to run")
    parser.add_argument("--skip-postgis", action="store_true")
    args = parser.parse_args(argv)
    data = nd.load_or_generate(nd.sizes_from_env(nd.SMALL if args.small else nd.NATIONAL), log=log)
    out = run(data, repeat=args.repeat, layer_keys=tuple(args.layers), postgis=not args.skip_postgis,
              skip=tuple(args.skip))
    path = OUT_DIR / "pip-recipes.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    for key, layer in out["layers"].items():
        ratio = layer.get("essmap_vs_best", float("nan"))
        print(f"{key}: best library recipe {layer.get('best_library')}, essmap / best = {ratio:.2f}")
        for name, result in layer["recipes"].items():
            print(f"  {name:26s} {result['median_s']:8.3f} s  same as essmap {result.get('same_share', 0) * 100:8.4f} %"
                  f"  ({result.get('differing', '?')} differ)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
