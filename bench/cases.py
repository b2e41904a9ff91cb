"""The benchmark cases, as essmap runs them and as plain GeoPandas would, plus their checks.

Every function takes the in-memory layers of :mod:`national_data` (EPSG:4326) and returns a
small frame, so that the engines can be compared on results as well as on time:

- (a) ``assign_*``: for each establishment, the QPV and the commune (``COM`` polygons) holding it;
- (b) ``qpv_tiers_lieux_*``: per QPV, the tiers-lieux within 1 km and the nearest one;
- (c) ``indicators_*``: the indicator table of all communes.

:func:`profile_assign` splits the time of essmap's (a) between the exact geometry predicate and
everything around it (candidate search, preparation, coordinate copies, sorting, assembly).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

RADIUS_M = 1000.0


# --- Timing --------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock seconds of each run of one case, the CPU seconds of this process for the same
    runs (less sensitive to other jobs on the machine), and the 1-minute load average before
    the first run."""

    runs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    load: float = float("nan")

    @property
    def median(self) -> float:
        return float(np.median(self.runs)) if self.runs else float("nan")

    @property
    def n(self) -> int:
        return len(self.runs)


def measure(fn: Callable[[], object], *, repeat: int, budget_s: float = float("inf"),
            before: Callable[[], object] | None = None) -> tuple[Timing, object]:
    """Run ``fn`` up to ``repeat`` times (at least once), stopping early once the runs so far
    took more than ``budget_s``; ``before`` runs untimed before each run (e.g. to empty a
    cache). Returns the timings and the last result."""
    timing = Timing(load=os.getloadavg()[0])
    result = None
    for _ in range(max(1, repeat)):
        if before is not None:
            before()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        timing.runs.append(time.perf_counter() - start)
        timing.cpu.append(time.process_time() - start_cpu)
        if sum(timing.runs) > budget_s:
            break
    return timing, result


# --- (a) assignment -----------------------------------------------------------------------------


def com_polygons(communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Communes proper: the arrondissements of Paris, Lyon and Marseille overlap their commune."""
    return communes[communes["type_commune"] == "COM"][["code_insee", "territoire", "geometry"]]


def assign_essmap(establishments: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame, communes_com: gpd.GeoDataFrame,
                  *, threads: int | None = None) -> pd.DataFrame:
    """essmap: :func:`points_in_polygon_layers`, the QPV and the commune in one call (the
    points' coordinates read once, the work on parallel threads unless ``threads`` is 1)."""
    from essmap.geo import points_in_polygon_layers

    return points_in_polygon_layers(establishments, {"code_qp": qpv, "code_insee": communes_com}, threads=threads)


def build_polygon_layers(qpv: gpd.GeoDataFrame, communes_com: gpd.GeoDataFrame) -> None:
    """What (a) builds once per polygon layer and caches (oriented prepared polygons with their
    indexes, vertices, shared borders): the counterpart of PostGIS's GiST index."""
    from essmap.geo.contains import _polygon_layer

    for layer in (qpv, communes_com):
        _polygon_layer(np.asarray(layer.geometry.array, dtype=object))


def assign_essmap_by_code(establishments: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame, communes_com: gpd.GeoDataFrame,
                          communes: pd.DataFrame) -> pd.DataFrame:
    """essmap as the product attributes establishments: the QPV by geometry
    (:func:`establishments_qpv`), the commune from the SIRENE commune code
    (``codeCommuneEtablissement``, arrondissements rolled up to their commune) **taken as
    given, not checked against the geometry**; only establishments whose code is missing or is
    no commune of the layer are located by :func:`points_in_polygons`."""
    from essmap.analysis.proximity import establishments_qpv
    from essmap.domain.selection import parent_commune_codes
    from essmap.geo import points_in_polygons

    in_qpv = establishments_qpv(establishments, qpv)
    code = parent_commune_codes(establishments["code_commune"], communes)
    unknown = ~_known_codes(code, communes_com)
    if unknown.any():  # missing or unknown codes: located geometrically
        code[unknown] = points_in_polygons(establishments[unknown], communes_com, "code_insee").to_numpy()
    return pd.DataFrame({"code_qp": in_qpv["code_qp"], "code_insee": code.to_numpy()}, index=establishments.index)


def parent_codes_known(establishments: pd.DataFrame, communes_com: gpd.GeoDataFrame, communes: pd.DataFrame) -> np.ndarray:
    """Whether each establishment's SIRENE commune code (rolled up) names a commune of the layer."""
    from essmap.domain.selection import parent_commune_codes

    return _known_codes(parent_commune_codes(establishments["code_commune"], communes), communes_com)


def _known_codes(code: pd.Series, communes_com: gpd.GeoDataFrame) -> np.ndarray:
    """Whether each code is a commune of the layer (tested on the distinct codes)."""
    labels, uniques = pd.factorize(code, use_na_sentinel=True)
    known = pd.Index(np.asarray(uniques, dtype=object)).isin(communes_com["code_insee"].to_numpy(dtype=object))
    return (labels >= 0) & np.append(known, False)[labels]


def assign_essmap_qpv_only(establishments: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame) -> pd.DataFrame:
    """essmap: the QPV part of (a) alone (:func:`establishments_qpv`)."""
    from essmap.analysis.proximity import establishments_qpv

    return establishments_qpv(establishments, qpv)


def assign_geopandas(establishments: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame, communes_com: gpd.GeoDataFrame) -> pd.DataFrame:
    """Plain GeoPandas: two left ``sjoin(predicate="within")``; first match kept on overlaps."""
    points = establishments[["geometry"]]
    out = pd.DataFrame(index=establishments.index)
    for polygons, key in ((qpv[["code_qp", "geometry"]], "code_qp"), (communes_com[["code_insee", "geometry"]], "code_insee")):
        joined = gpd.sjoin(points, polygons, how="left", predicate="within")
        joined = joined[~joined.index.duplicated(keep="first")]
        out[key] = joined[key]
    return out


def compare_assign(reference: pd.DataFrame, other: pd.DataFrame) -> dict[str, float]:
    """Share of establishments given the same QPV (or none) and the same commune."""
    same_qpv = (reference["code_qp"].fillna("-").astype(str).to_numpy() == other["code_qp"].fillna("-").astype(str).to_numpy())
    same_com = (reference["code_insee"].fillna("-").astype(str).to_numpy() == other["code_insee"].fillna("-").astype(str).to_numpy())
    return {"same_qpv": float(same_qpv.mean()), "same_commune": float(same_com.mean())}


def summarise_assign(result: pd.DataFrame) -> dict[str, int]:
    return {"in_qpv": int(result["code_qp"].notna().sum()), "with_commune": int(result["code_insee"].notna().sum())}


#: Profile categories of (a), matched on the name of each function's own (self) time.
_PREDICATE = ("intersects", "contains", "within", "covers", "covered_by", "touches")
_CANDIDATES = ("strtree", "query")


def _category(key: tuple[str, int, str]) -> str:
    filename, _, name = key
    lowered = name.lower()
    in_shapely = "shapely" in filename or "shapely" in lowered
    if in_shapely and any(p in lowered for p in _PREDICATE):
        return "predicate"
    if in_shapely and any(c in lowered for c in _CANDIDATES):
        return "candidates"
    if in_shapely and "prepare" in lowered:
        return "preparation"
    if in_shapely:
        return "coordinates"
    return "other"


PROFILE_LABELS: dict[str, str] = {
    "predicate": "exact point-in-polygon predicate (shapely intersects/contains on candidate pairs)",
    "candidates": "STRtree build and bounding-box query (small inputs; large ones use essmap's grid, counted below)",
    "preparation": "polygon preparation (shapely.prepare)",
    "coordinates": "other shapely calls (coordinate extraction and copies, WKB, types)",
    "other": "numpy/pandas around them (grid cells and candidates, sorting, CRS checks, result assembly)",
}


def profile_assign(establishments: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame, communes_com: gpd.GeoDataFrame,
                   *, dump: Path | None = None) -> dict[str, float]:
    """Seconds of essmap's (a) by category (cProfile self time; profiling overhead included), run
    on one thread: cProfile sees only the thread that enabled it."""
    profiler = cProfile.Profile()
    profiler.enable()
    assign_essmap(establishments, qpv, communes_com, threads=1)
    profiler.disable()
    stats = pstats.Stats(profiler)
    seconds = dict.fromkeys(PROFILE_LABELS, 0.0)
    for key, (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        seconds[_category(key)] += tottime
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        with dump.open("w") as fh:
            pstats.Stats(profiler, stream=fh).sort_stats("tottime").print_stats(40)
    return seconds


# --- (b) QPV x tiers-lieux -----------------------------------------------------------------------


def qpv_tiers_lieux_essmap(qpv: gpd.GeoDataFrame, tiers_lieux: gpd.GeoDataFrame) -> pd.DataFrame:
    from essmap.analysis.proximity import qpv_tiers_lieux

    result = qpv_tiers_lieux(qpv, tiers_lieux, radius_m=RADIUS_M)
    return pd.DataFrame({
        "code_qp": result["code_qp"].to_numpy(dtype=object),
        "n_within": result["n_tiers_lieux"].to_numpy(dtype=np.int64),
        "nearest": result["nearest_id"].to_numpy(dtype=object),
        "distance_m": result["nearest_distance_m"].to_numpy(dtype=float, na_value=np.nan),
    })


def qpv_tiers_lieux_geopandas(qpv: gpd.GeoDataFrame, tiers_lieux: gpd.GeoDataFrame) -> pd.DataFrame:
    """Plain GeoPandas, per territory in its metric CRS: ``buffer(1000)`` + ``sjoin`` for the
    count, ``sjoin_nearest`` for the nearest tiers-lieu."""
    parts = []
    for epsg, q in qpv.groupby("epsg_metrique", sort=True):
        t = tiers_lieux[tiers_lieux["epsg_metrique"] == epsg]
        q_m = q[["code_qp", "geometry"]].to_crs(int(epsg))
        t_m = t[["id_tiers_lieu", "geometry"]].to_crs(int(epsg))
        buffered = q_m.set_geometry(q_m.buffer(RADIUS_M))
        within = gpd.sjoin(t_m, buffered, how="inner", predicate="within")
        counts = within.groupby("code_qp").size()
        nearest = gpd.sjoin_nearest(q_m, t_m, how="left", distance_col="distance_m")
        nearest = nearest[~nearest.index.duplicated(keep="first")]
        parts.append(pd.DataFrame({
            "code_qp": q_m["code_qp"].to_numpy(dtype=object),
            "n_within": q_m["code_qp"].map(counts).fillna(0).to_numpy(dtype=np.int64),
            "nearest": nearest["id_tiers_lieu"].to_numpy(dtype=object),
            "distance_m": nearest["distance_m"].to_numpy(dtype=float),
        }))
    return pd.concat(parts, ignore_index=True)


def compare_qpv_tiers_lieux(reference: pd.DataFrame, other: pd.DataFrame) -> dict[str, float]:
    """Agreement on the covered flag, the count and the nearest tiers-lieu (by QPV code)."""
    ref = reference.set_index("code_qp")
    oth = other.set_index("code_qp").reindex(ref.index)
    dist_ref = ref["distance_m"].to_numpy(dtype=float)
    dist_oth = oth["distance_m"].to_numpy(dtype=float)
    return {
        "same_covered": float(((ref["n_within"] > 0).to_numpy() == (oth["n_within"].fillna(0) > 0).to_numpy()).mean()),
        "same_count": float((ref["n_within"].to_numpy() == oth["n_within"].fillna(-1).to_numpy()).mean()),
        "same_nearest": float((ref["nearest"].astype(str).to_numpy() == oth["nearest"].astype(str).to_numpy()).mean()),
        "max_distance_gap_m": float(np.nanmax(np.abs(dist_ref - dist_oth))) if len(ref) else 0.0,
    }


def summarise_qpv_tiers_lieux(result: pd.DataFrame) -> dict[str, float]:
    return {"qpv": len(result), "covered": int((result["n_within"] > 0).sum()),
            "coverage_share": float((result["n_within"] > 0).mean()) if len(result) else float("nan")}


# --- (c) indicators ------------------------------------------------------------------------------


def indicators_essmap(communes: gpd.GeoDataFrame, establishments: gpd.GeoDataFrame, tiers_lieux: gpd.GeoDataFrame,
                      qpv: gpd.GeoDataFrame, *, in_qpv: pd.Series | None = None) -> pd.DataFrame:
    """``indicators_by_level("commune", ...)``; with ``in_qpv`` the QPV of each establishment
    is given (the documented use: computed once by ``establishments_qpv``)."""
    from essmap.analysis.indicators import indicators_by_level

    if in_qpv is None:
        return indicators_by_level("commune", communes=communes, establishments=establishments,
                                   tiers_lieux=tiers_lieux, qpv=qpv, radius_m=RADIUS_M)
    return indicators_by_level("commune", communes=communes, establishments=establishments,
                               tiers_lieux=tiers_lieux, qpv=qpv, radius_m=RADIUS_M, in_qpv=in_qpv)


#: Columns compared between essmap's and PostGIS's indicator tables.
INDICATOR_CHECK_COLUMNS = ("n_etablissements", "n_etablissements_employeurs", "n_organisations",
                           "n_etablissements_en_qpv", "n_employeurs_en_qpv", "n_tiers_lieux", "n_qpv",
                           "n_qpv_avec_tiers_lieu")


def compare_indicators(reference: pd.DataFrame, other: pd.DataFrame) -> dict[str, float]:
    """Share of communes whose counts agree, per compared column (by commune code)."""
    ref = reference.set_index(reference["code"].astype(str))
    oth = other.set_index(other["code"].astype(str)).reindex(ref.index)
    out = {"rows_reference": len(ref), "rows_other": len(other)}
    for column in INDICATOR_CHECK_COLUMNS:
        if column in oth.columns:
            a = pd.to_numeric(ref[column], errors="coerce").fillna(-1).to_numpy()
            b = pd.to_numeric(oth[column], errors="coerce").fillna(-1).to_numpy()
            out[column] = float((a == b).mean())
    return out
