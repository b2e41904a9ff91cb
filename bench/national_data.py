"""Seeded national-scale synthetic layers for the benchmarks, cached as GeoParquet.

What is generated (everything in EPSG:4326, canonical columns of :mod:`essmap.domain.schema`):

- ``communes``: the ~35,000 REAL commune boundaries shipped in ``data/geo/communes_france.parquet``
  (with the 45 arrondissements municipaux of Paris, Lyon and Marseille), plus ``territoire`` and
  ``epsg_metrique``. Rows without geometry are dropped.
- ``qpv``: QPV-like polygons (default 1,400 in metropolitan France and 200 overseas: 971, 972,
  973, 974, 976) built around points drawn in populated communes, with probability growing with
  population. Each is an irregular star-shaped blob of 5 to 200 ha with 16 to 400 vertices,
  built in its territory's metric CRS; about 8 % are MultiPolygons of 2 or 3 separate parts.
  They never overlap each other. Codes follow the 2024 pattern (``QN01301M``).
- ``etablissements``: points (default 2 million), 7 % drawn uniformly inside QPVs (area-weighted),
  the rest in communes with probability proportional to population (for Paris, Lyon and
  Marseille: their arrondissements, as SIRENE codes them), uniformly inside the polygon. Rows are
  in random order, like SIRENE (sorted by SIREN, not by place). Attributes: Luhn-valid SIREN and
  SIRET, ESS family and legal category, NAF code and sector, employer flag, size band, published
  coordinates in the territory's metric CRS (rounded to 0.1 m), ``is_synthetic`` = True.
- ``tiers_lieux``: points (default 4,000), 10 % inside QPVs, the rest in communes weighted by
  population (twice the weight above 10,000 inhabitants).

Everything derives from one seed: the same seed and sizes give the same data. Generated layers
are cached under ``bench/out/national-<key>/`` and reused by later runs.

Run ``python bench/national_data.py [--small]`` to generate (or check) the cache alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from essmap.domain import nomenclature as nom  # noqa: E402
from essmap.domain import schema  # noqa: E402
from essmap.domain.territories import (  # noqa: E402
    departements_of_communes,
    epsg_of_territory_codes,
    territory_codes_of_departements,
)

WGS84 = "EPSG:4326"
COMMUNES_PATH = REPO / "data" / "geo" / "communes_france.parquet"
OUT_DIR = Path(__file__).resolve().parent / "out"
#: Bumped whenever the generator changes, so stale caches are not reused.
GENERATOR_VERSION = 4
DEFAULT_SEED = 20240101

#: QPV per overseas département (QPV 2024 in force overseas since 2025: about 200 in all).
OVERSEAS_QPV_SHARES: dict[str, float] = {"971": 0.20, "972": 0.15, "973": 0.175, "974": 0.275, "976": 0.20}
#: Smallest commune population where QPV centres are drawn (QPVs need urban units of 10,000+).
QPV_MIN_POPULATION_METRO = 8_000
QPV_MIN_POPULATION_OVERSEAS = 5_000
QPV_AREA_HA = (5.0, 200.0)
QPV_VERTICES = (16, 400)
QPV_MULTIPART_SHARE = 0.08
ESTABLISHMENTS_QPV_SHARE = 0.07
TIERS_LIEUX_QPV_SHARE = 0.10
TIERS_LIEUX_URBAN_POPULATION = 10_000
ESTABLISHMENTS_PER_UNIT = 1.6
EMPLOYER_SHARE = 0.22

# Family mix of all ESS establishments (employers and non-employers): assumption of the same
# order as the published employer mix (associations 76.6 %), with more associations among
# non-employers.
FAMILY_MIX: dict[str, float] = {
    nom.ASSOCIATION: 0.84,
    nom.COOPERATIVE: 0.07,
    nom.MUTUELLE: 0.035,
    nom.FONDATION: 0.015,
    nom.SOCIETE_COMMERCIALE: 0.04,
}
LEGAL_CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    nom.ASSOCIATION: (("9220", "9210", "9221", "9222", "9230", "9260"), (0.86, 0.03, 0.03, 0.02, 0.03, 0.03)),
    nom.COOPERATIVE: (("5458", "5558", "5451", "6316", "5560", "5460", "6317"), (0.3, 0.05, 0.2, 0.15, 0.1, 0.1, 0.1)),
    nom.MUTUELLE: (("8210", "8290", "6411", "8250"), (0.5, 0.2, 0.2, 0.1)),
    nom.FONDATION: (("9300",), (1.0,)),
    nom.SOCIETE_COMMERCIALE: (("5710", "5499", "5720"), (0.6, 0.3, 0.1)),
}
NAF_CODES: tuple[tuple[str, float], ...] = (
    ("94.99Z", 0.30), ("88.99B", 0.08), ("93.12Z", 0.07), ("88.10A", 0.04), ("85.59A", 0.04),
    ("90.01Z", 0.04), ("87.10A", 0.02), ("88.91A", 0.02), ("86.10Z", 0.01), ("65.12Z", 0.02),
    ("64.19Z", 0.02), ("47.11F", 0.02), ("01.61Z", 0.02), ("56.10A", 0.02), ("55.20Z", 0.02),
    ("49.39A", 0.01), ("68.20B", 0.02), ("70.22Z", 0.02), ("43.21A", 0.01), ("10.71C", 0.01),
    ("58.11Z", 0.01), ("94.12Z", 0.03), ("96.09Z", 0.03), ("91.02Z", 0.03), ("85.20Z", 0.03),
    ("93.29Z", 0.04), ("94.91Z", 0.02),
)
SIZE_BANDS: tuple[tuple[str, float], ...] = (
    ("00", 0.05), ("01", 0.30), ("02", 0.22), ("03", 0.15), ("11", 0.13), ("12", 0.08),
    ("21", 0.04), ("22", 0.02), ("31", 0.01),
)
TIERS_LIEUX_TYPES = ("Coworking", "Atelier partagé / fablab", "Friche culturelle", "Tiers-lieu nourricier",
                     "Tiers-lieu numérique", "Espace de vie sociale")


@dataclass(frozen=True)
class Sizes:
    """How much to generate. The defaults are the national scale of the benchmark."""

    establishments: int = 2_000_000
    qpv_metropole: int = 1_400
    qpv_overseas: int = 200
    tiers_lieux: int = 4_000

    @property
    def key(self) -> str:
        return f"e{self.establishments}-q{self.qpv_metropole}+{self.qpv_overseas}-t{self.tiers_lieux}"


NATIONAL = Sizes()
SMALL = Sizes(establishments=100_000, qpv_metropole=300, qpv_overseas=40, tiers_lieux=500)


def sizes_from_env(base: Sizes, environ: dict[str, str] | None = None) -> Sizes:
    """``base`` with overrides from ``BENCH_ESTABLISHMENTS``, ``BENCH_QPV_METROPOLE``,
    ``BENCH_QPV_OVERSEAS`` and ``BENCH_TIERS_LIEUX``."""
    env = os.environ if environ is None else environ
    fields = {
        "establishments": "BENCH_ESTABLISHMENTS",
        "qpv_metropole": "BENCH_QPV_METROPOLE",
        "qpv_overseas": "BENCH_QPV_OVERSEAS",
        "tiers_lieux": "BENCH_TIERS_LIEUX",
    }
    overrides = {name: int(env[var].replace("_", "")) for name, var in fields.items() if env.get(var)}
    return replace(base, **overrides)


@dataclass
class NationalData:
    """The four layers, all in EPSG:4326."""

    communes: gpd.GeoDataFrame
    qpv: gpd.GeoDataFrame
    establishments: gpd.GeoDataFrame
    tiers_lieux: gpd.GeoDataFrame
    sizes: Sizes
    seed: int

    def summary(self) -> dict[str, object]:
        qpv_parts = shapely.get_num_geometries(self.qpv.geometry.values)
        vertices = shapely.get_num_coordinates(self.qpv.geometry.values)
        areas = self.qpv["area_ha"] if "area_ha" in self.qpv else pd.Series(dtype=float)
        return {
            "communes": len(self.communes),
            "qpv": len(self.qpv),
            "qpv_overseas": int((self.qpv["territoire"] != "metropole").sum()),
            "qpv_multipolygons": int((qpv_parts > 1).sum()),
            "qpv_vertices_median": float(np.median(vertices)) if len(vertices) else 0.0,
            "qpv_vertices_max": int(vertices.max()) if len(vertices) else 0,
            "qpv_area_ha_median": float(areas.median()) if len(areas) else 0.0,
            "establishments": len(self.establishments),
            "establishments_overseas": int((self.establishments["territoire"] != "metropole").sum()),
            "tiers_lieux": len(self.tiers_lieux),
        }


# --- Communes ----------------------------------------------------------------------------------


def load_communes(path: Path = COMMUNES_PATH) -> gpd.GeoDataFrame:
    """The real communes with the canonical columns (territoire, epsg_metrique added)."""
    raw = gpd.read_parquet(path)
    raw = raw[raw.geometry.notna() & ~raw.geometry.is_empty].copy()
    raw["code_departement"] = raw["code_departement"].astype("string")
    raw["territoire"] = territory_codes_of_departements(raw["code_departement"].fillna("")).astype("string")
    raw["epsg_metrique"] = epsg_of_territory_codes(raw["territoire"])
    out = pd.DataFrame(index=raw.index)
    for column, sql_type in schema.COMMUNES.items():
        values = raw[column] if column in raw else pd.Series(pd.NA, index=raw.index)
        if sql_type == "VARCHAR":
            out[column] = values.astype("string")
        elif sql_type in ("BIGINT", "INTEGER"):
            out[column] = pd.to_numeric(values, errors="coerce").astype("Int64")
        else:
            out[column] = values
    out = out[out["territoire"] != ""]
    return gpd.GeoDataFrame(out, geometry=raw.loc[out.index].geometry.values, crs=WGS84).reset_index(drop=True)


def _leaf_communes(communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Communes that partition the territory as SIRENE codes it: arrondissements instead of
    Paris, Lyon and Marseille."""
    parents = set(communes.loc[communes["type_commune"] == "ARM", "code_commune_parent"].dropna())
    return communes[~communes["code_insee"].isin(parents)].reset_index(drop=True)


# --- Random points in polygons -------------------------------------------------------------------


def sample_in_polygons(rng: np.random.Generator, polygons: np.ndarray,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``counts[i]`` uniform points inside ``polygons[i]`` (rejection sampling in the bounding
    box, vectorised). Returns x, y and the polygon index of each point, grouped by polygon."""
    counts = np.asarray(counts, dtype=np.int64)
    n = len(polygons)
    bounds = shapely.bounds(polygons)
    box_area = np.maximum((bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1]), 1e-18)
    fill = np.clip(shapely.area(polygons) / box_area, 0.02, 1.0)
    shapely.prepare(polygons)
    remaining = counts.copy()
    xs, ys, owners = [], [], []
    while remaining.sum() > 0:
        want = np.where(remaining > 0, np.ceil(remaining / fill * 1.3 + 4), 0).astype(np.int64)
        owner = np.repeat(np.arange(n), want)
        x = rng.uniform(bounds[owner, 0], bounds[owner, 2])
        y = rng.uniform(bounds[owner, 1], bounds[owner, 3])
        inside = shapely.contains_xy(polygons[owner], x, y)
        o = owner[inside]
        rank = np.arange(len(o)) - np.searchsorted(o, o, side="left")
        keep = rank < remaining[o]
        xs.append(x[inside][keep])
        ys.append(y[inside][keep])
        owners.append(o[keep])
        remaining -= np.bincount(o[keep], minlength=n)
    x, y, owner = np.concatenate(xs), np.concatenate(ys), np.concatenate(owners)
    order = np.argsort(owner, kind="stable")
    return x[order], y[order], owner[order]


def _locate(points_x: np.ndarray, points_y: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Index of the first polygon containing each point, -1 when none (generation helper)."""
    tree = shapely.STRtree(polygons)
    pts, polys = tree.query(shapely.points(points_x, points_y), predicate="within")
    out = np.full(len(points_x), -1, dtype=np.int64)
    first = np.unique(pts, return_index=True)[1]
    out[pts[first]] = polys[first]
    return out


def _transformers(epsg: int) -> tuple[Transformer, Transformer]:
    return (
        Transformer.from_crs(WGS84, f"EPSG:{epsg}", always_xy=True),
        Transformer.from_crs(f"EPSG:{epsg}", WGS84, always_xy=True),
    )


# --- QPV -----------------------------------------------------------------------------------------


def _star(rng: np.random.Generator, cx: float, cy: float, area_m2: float, vertices: int) -> tuple[np.ndarray, float]:
    """Ring of an irregular star-shaped blob of the given area centred on (cx, cy); also returns
    its largest radius. Star-shaped with increasing angles, so the ring is always simple."""
    k = np.arange(vertices)
    theta = 2 * np.pi * (k + rng.uniform(-0.3, 0.3, vertices)) / vertices
    theta = np.sort(theta)
    log_r = np.zeros(vertices)
    for harmonic in range(1, 6):
        log_r += rng.normal(0, 0.28 / harmonic) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    # street-level irregularity: noise smoothed over a few neighbouring vertices, so that dense
    # outlines wiggle along blocks instead of zigzagging at every vertex
    window = max(1, vertices // 24)
    noise = rng.normal(0, 0.05, vertices)
    if window > 1:
        padded = np.concatenate([noise[-window:], noise, noise[:window]])
        noise = np.convolve(padded, np.ones(window) / np.sqrt(window), mode="same")[window:-window]
    log_r += noise
    r = np.exp(log_r)
    x, y = r * np.cos(theta), r * np.sin(theta)
    # shoelace area of the unit shape, then scale to the wanted area
    unit_area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    scale = np.sqrt(area_m2 / unit_area)
    ring = np.column_stack([cx + x * scale, cy + y * scale])
    return ring, float(r.max() * scale)


def _qpv_shape(rng: np.random.Generator, cx: float, cy: float) -> shapely.Geometry:
    area = np.exp(rng.uniform(np.log(QPV_AREA_HA[0]), np.log(QPV_AREA_HA[1]))) * 10_000
    vertices = int(np.exp(rng.uniform(np.log(QPV_VERTICES[0]), np.log(QPV_VERTICES[1]))))
    if rng.random() >= QPV_MULTIPART_SHARE:
        ring, _ = _star(rng, cx, cy, area, vertices)
        return shapely.Polygon(ring)
    parts = rng.integers(2, 4)
    shares = rng.dirichlet(np.full(parts, 2.0))
    shares = np.sort(shares)[::-1]
    main, main_radius = _star(rng, cx, cy, area * shares[0], vertices)
    polygons = [shapely.Polygon(main)]
    for share in shares[1:]:
        n = max(QPV_VERTICES[0], int(vertices * share))
        probe, radius = _star(np.random.default_rng(rng.integers(1 << 32)), 0.0, 0.0, area * share, n)
        angle = rng.uniform(0, 2 * np.pi)
        gap = rng.uniform(40, 400)
        distance = main_radius + radius + gap
        ring = probe + [cx + distance * np.cos(angle), cy + distance * np.sin(angle)]
        polygons.append(shapely.Polygon(ring))
        main_radius = distance + radius  # later parts go beyond the earlier ones
    return shapely.MultiPolygon(polygons)


def _qpv_counts(sizes: Sizes) -> dict[str, int]:
    counts = {dep: int(round(sizes.qpv_overseas * share)) for dep, share in OVERSEAS_QPV_SHARES.items()}
    counts["971"] += sizes.qpv_overseas - sum(counts.values())
    return counts


def generate_qpv(rng: np.random.Generator, leaves: gpd.GeoDataFrame, sizes: Sizes) -> gpd.GeoDataFrame:
    """Non-overlapping QPV-like polygons around points of populated communes."""
    population = leaves["population"].fillna(0).to_numpy(dtype=float)
    # ARM rows carry their own population: they are eligible like communes
    territory = leaves["territoire"].to_numpy(dtype=object)
    departement = leaves["code_departement"].to_numpy(dtype=object)
    groups: list[tuple[str, np.ndarray, int]] = []
    metro = (territory == "metropole") & (population >= QPV_MIN_POPULATION_METRO)
    groups.append(("metropole", np.flatnonzero(metro), sizes.qpv_metropole))
    for dep, count in _qpv_counts(sizes).items():
        eligible = (departement == dep) & (population >= QPV_MIN_POPULATION_OVERSEAS)
        if not eligible.any():
            eligible = departement == dep
        groups.append((dep, np.flatnonzero(eligible), count))

    polygons = leaves.geometry.values
    rows: list[dict[str, object]] = []
    for _label, eligible, wanted in groups:
        if wanted <= 0 or len(eligible) == 0:
            continue
        weights = population[eligible] ** 0.8 + 1.0
        weights /= weights.sum()
        epsg = int(leaves["epsg_metrique"].iloc[eligible[0]])
        to_metric, to_wgs84 = _transformers(epsg)
        accepted: list[shapely.Geometry] = []
        accepted_rows: list[dict[str, object]] = []
        attempts = 0
        while len(accepted) < wanted and attempts < 20:
            attempts += 1
            batch = int((wanted - len(accepted)) * 1.4) + 5
            seeds = rng.choice(eligible, size=batch, p=weights)
            sx, sy, owner = sample_in_polygons(rng, polygons[seeds], np.ones(batch, dtype=np.int64))
            mx, my = to_metric.transform(sx, sy)
            shapes = np.array([_qpv_shape(rng, cx, cy) for cx, cy in zip(mx, my, strict=True)], dtype=object)
            wgs = shapely.transform(shapes, lambda xy, t=to_wgs84: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
            area_ha = shapely.area(shapes) / 10_000
            # keep those that overlap neither an accepted polygon nor an earlier one of the batch
            tree = shapely.STRtree(np.array(accepted + list(wgs), dtype=object))
            left, right = tree.query(wgs, predicate="intersects")
            offset = len(accepted)
            taken = np.zeros(offset + len(wgs), dtype=bool)
            taken[:offset] = True
            neighbours: dict[int, list[int]] = {}
            for a, b in zip(left, right, strict=True):
                if b != a + offset:
                    neighbours.setdefault(int(a), []).append(int(b))
            for i in range(len(wgs)):
                if len(accepted) >= wanted:
                    break
                if not shapely.is_valid(wgs[i]) or any(taken[j] for j in neighbours.get(i, ())):
                    continue
                taken[offset + i] = True
                accepted.append(wgs[i])
                seed_row = seeds[owner[i]]
                accepted_rows.append({
                    "seed": int(seed_row),
                    "area_ha": float(area_ha[i]),
                    "vertices": int(shapely.get_num_coordinates(shapes[i])),
                })
        for geom, info in zip(accepted, accepted_rows, strict=True):
            rows.append({**info, "geometry": geom})

    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=WGS84)
    seed_rows = leaves.iloc[frame["seed"].to_numpy()]
    frame["insee_dep"] = seed_rows["code_departement"].to_numpy()
    frame["territoire"] = seed_rows["territoire"].to_numpy()
    frame["epsg_metrique"] = seed_rows["epsg_metrique"].to_numpy()
    # communes crossed by each QPV (the seed's first)
    tree = shapely.STRtree(polygons)
    qpv_index, leaf_index = tree.query(frame.geometry.values, predicate="intersects")
    codes = leaves["code_insee"].to_numpy(dtype=object)
    names = leaves["nom"].to_numpy(dtype=object)
    crossed: dict[int, list[int]] = {}
    for q, c in zip(qpv_index, leaf_index, strict=True):
        crossed.setdefault(int(q), []).append(int(c))
    seed_arr = frame["seed"].to_numpy()
    insee_com, lib_com = [], []
    for q in range(len(frame)):
        found = [seed_arr[q]] + [c for c in crossed.get(q, []) if c != seed_arr[q]]
        insee_com.append(",".join(codes[c] for c in found))
        lib_com.append(", ".join(str(names[c]) for c in found))
    frame["insee_com"] = insee_com
    frame["lib_com"] = lib_com
    frame["siren_epci"] = seed_rows["siren_epci"].to_numpy()
    dep3 = frame["insee_dep"].astype(str).str.zfill(3)
    number = frame.groupby("insee_dep").cumcount() + 1
    frame["code_qp"] = np.where(number < 100, "QN" + dep3 + number.astype(str).str.zfill(2) + "M",
                                "QN" + dep3 + number.astype(str).str.zfill(3))
    frame["lib_qp"] = "Quartier simulé " + number.astype(str) + " (" + frame["lib_com"].str.split(",").str[0] + ")"
    frame["generation"] = "2024"
    columns = list(schema.QPV) + ["area_ha", "vertices"]
    out = frame[columns].copy()
    for column, sql_type in schema.QPV.items():
        if sql_type == "VARCHAR":
            out[column] = out[column].astype("string")
        elif sql_type == "INTEGER":
            out[column] = out[column].astype("Int64")
    return gpd.GeoDataFrame(out, geometry=frame.geometry.values, crs=WGS84)


# --- Points --------------------------------------------------------------------------------------


def _points(rng: np.random.Generator, leaves: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame, total: int,
            qpv_share: float, commune_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lon, lat and leaf-commune index of ``total`` points: ``qpv_share`` of them in QPVs
    (area-weighted), the rest in communes drawn with ``commune_weights``."""
    leaf_polygons = leaves.geometry.values
    in_qpv = int(round(total * qpv_share)) if len(qpv) else 0
    parts_lon, parts_lat, parts_leaf = [], [], []
    if in_qpv:
        area = qpv["area_ha"].to_numpy(dtype=float)
        missing = in_qpv
        while missing > 0:
            counts = rng.multinomial(missing, area / area.sum())
            x, y, _ = sample_in_polygons(rng, qpv.geometry.values, counts)
            leaf = _locate(x, y, leaf_polygons)  # a QPV can stick out of land: drop those points
            ok = leaf >= 0
            parts_lon.append(x[ok])
            parts_lat.append(y[ok])
            parts_leaf.append(leaf[ok])
            missing -= int(ok.sum())
    outside = total - in_qpv
    counts = rng.multinomial(outside, commune_weights / commune_weights.sum())
    x, y, leaf = sample_in_polygons(rng, leaf_polygons, counts)
    parts_lon.append(x)
    parts_lat.append(y)
    parts_leaf.append(leaf)
    lon, lat, leaf = np.concatenate(parts_lon), np.concatenate(parts_lat), np.concatenate(parts_leaf)
    order = rng.permutation(len(lon))
    return lon[order], lat[order], leaf[order]


def _luhn_check_digit(body: np.ndarray, length: int) -> np.ndarray:
    """Check digit making ``body * 10 + digit`` Luhn-valid (``body`` has ``length`` digits)."""
    total = np.zeros(len(body), dtype=np.int64)
    rest = body.astype(np.int64).copy()
    for position in range(length):  # position 0 = rightmost digit of body, doubled
        digit = rest % 10
        rest //= 10
        if position % 2 == 0:
            digit = digit * 2
            digit = np.where(digit > 9, digit - 9, digit)
        total += digit
    return (10 - total % 10) % 10


def siren_numbers(start: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct Luhn-valid SIREN (as int64), the ``start``-th onwards of a seeded
    sequence: a bijection of 0..10^8-1, so that ranges never collide."""
    index = np.arange(start, start + count, dtype=np.int64)
    body = ((index + seed % 99_991) * 54_435_761 + 10_000_019) % 100_000_000
    body = np.where(body == 35_600_000, (body + 1) % 100_000_000, body)  # La Poste has its own rule
    return body * 10 + _luhn_check_digit(body, 8)


def siret_numbers(siren: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Luhn-valid SIRET (int64) of the ``rank``-th (0-based) establishment of each SIREN."""
    body = siren.astype(np.int64) * 10_000 + (rank.astype(np.int64) + 1) % 10_000
    return body * 10 + _luhn_check_digit(body, 13)


def units_for(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit index and rank within its unit of ``count`` establishments (1 + geometric sizes)."""
    sizes = rng.geometric(1.0 / ESTABLISHMENTS_PER_UNIT, size=count)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), count) + 1]
    sizes[-1] -= sizes.sum() - count
    unit = np.repeat(np.arange(len(sizes)), sizes)
    rank = np.arange(count) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return unit, rank


def _choice(rng: np.random.Generator, table: tuple[tuple[str, float], ...] | dict[str, float], size: int) -> np.ndarray:
    items = list(table.items()) if isinstance(table, dict) else list(table)
    labels = np.array([k for k, _ in items], dtype=object)
    p = np.array([w for _, w in items], dtype=float)
    return labels[rng.choice(len(labels), size=size, p=p / p.sum())]


def _metric_xy(lon: np.ndarray, lat: np.ndarray, epsg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.full(len(lon), np.nan)
    y = np.full(len(lon), np.nan)
    for code in np.unique(epsg):
        rows = epsg == code
        x[rows], y[rows] = _transformers(int(code))[0].transform(lon[rows], lat[rows])
    return np.round(x, 1), np.round(y, 1)


def generate_establishments(rng: np.random.Generator, leaves: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame,
                            count: int, seed: int) -> gpd.GeoDataFrame:
    population = leaves["population"].fillna(0).to_numpy(dtype=float)
    lon, lat, leaf = _points(rng, leaves, qpv, count, ESTABLISHMENTS_QPV_SHARE, population + 1.0)
    unit, rank = units_for(rng, count)
    n_units = int(unit.max()) + 1
    siren = siren_numbers(0, n_units, seed)
    famille_u = _choice(rng, FAMILY_MIX, n_units)
    categorie_u = np.empty(n_units, dtype=object)
    for family, (codes, weights) in LEGAL_CATEGORIES.items():
        rows = famille_u == family
        categorie_u[rows] = _choice(rng, tuple(zip(codes, weights, strict=True)), int(rows.sum()))
    naf = _choice(rng, NAF_CODES, count)
    employer_share = np.where(famille_u[unit] == nom.ASSOCIATION, EMPLOYER_SHARE * 0.8, EMPLOYER_SHARE * 2)
    employer = rng.random(count) < employer_share
    band = np.where(employer, _choice(rng, SIZE_BANDS, count), "NN")
    code_commune = leaves["code_insee"].to_numpy(dtype=object)[leaf]
    territoire = leaves["territoire"].to_numpy(dtype=object)[leaf]
    epsg = leaves["epsg_metrique"].to_numpy(dtype=np.int64)[leaf]
    x, y = _metric_xy(lon, lat, epsg)
    naf_series = pd.Series(naf, dtype="string")
    frame = pd.DataFrame({
        "siret": pd.Series(siret_numbers(siren[unit], rank).astype(str), dtype="string").str.zfill(14),
        "siren": pd.Series(siren[unit].astype(str), dtype="string").str.zfill(9),
        "denomination": pd.Series(pd.NA, index=range(count), dtype="string"),
        "enseigne": pd.Series(pd.NA, index=range(count), dtype="string"),
        "categorie_juridique": pd.Series(categorie_u[unit], dtype="string"),
        "famille": pd.Series(famille_u[unit], dtype="string"),
        "activite_naf": naf_series,
        "nomenclature_naf": pd.Series("NAFRev2", index=range(count), dtype="string"),
        "secteur": nom.sector_of_naf(naf_series).astype("string"),
        "employeur": pd.array(employer, dtype="boolean"),
        "tranche_effectifs": pd.Series(band, dtype="string"),
        "siege": pd.array(rank == 0, dtype="boolean"),
        "date_creation": pd.Series(pd.NA, index=range(count), dtype="string"),
        "adresse": pd.Series(pd.NA, index=range(count), dtype="string"),
        "code_postal": pd.Series(pd.NA, index=range(count), dtype="string"),
        "libelle_commune": pd.Series(pd.NA, index=range(count), dtype="string"),
        "code_commune": pd.Series(code_commune, dtype="string"),
        "code_departement": departements_of_communes(pd.Series(code_commune, dtype="string")).astype("string"),
        "x": x,
        "y": y,
        "epsg": pd.array(epsg, dtype="Int64"),
        "source_position": pd.Series("stock_lambert", index=range(count), dtype="string"),
        "code_qp_insee_2024": pd.Series(pd.NA, index=range(count), dtype="string"),
        "code_qp_insee_2015": pd.Series(pd.NA, index=range(count), dtype="string"),
        "qualite_xy": pd.Series(pd.NA, index=range(count), dtype="string"),
        "territoire": pd.Series(territoire, dtype="string"),
        "epsg_metrique": pd.array(epsg, dtype="Int64"),
        "longitude": lon,
        "latitude": lat,
        "is_synthetic": pd.array(np.ones(count, dtype=bool), dtype="boolean"),
    })
    assert list(frame.columns) == list(schema.ETABLISSEMENTS)
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat), crs=WGS84)


def generate_tiers_lieux(rng: np.random.Generator, leaves: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame,
                         count: int) -> gpd.GeoDataFrame:
    population = leaves["population"].fillna(0).to_numpy(dtype=float)
    weights = population * np.where(population >= TIERS_LIEUX_URBAN_POPULATION, 2.0, 1.0) + 1.0
    lon, lat, leaf = _points(rng, leaves, qpv, count, TIERS_LIEUX_QPV_SHARE, weights)
    code_commune = pd.Series(leaves["code_insee"].to_numpy(dtype=object)[leaf], dtype="string")
    epsg = leaves["epsg_metrique"].to_numpy(dtype=np.int64)[leaf]
    ids = pd.Series([f"TLS{i:06d}" for i in range(count)], dtype="string")
    types = _choice(rng, tuple((t, 1.0) for t in TIERS_LIEUX_TYPES), count)
    fabrique = rng.random(count) < 0.108
    manufacture = rng.random(count) < 0.027
    frame = pd.DataFrame({
        "id_tiers_lieu": ids,
        "nom": "Tiers-lieu " + ids + " (simulé)",
        "structure_porteuse": pd.Series(pd.NA, index=range(count), dtype="string"),
        "adresse": pd.Series(pd.NA, index=range(count), dtype="string"),
        "code_postal": pd.Series(pd.NA, index=range(count), dtype="string"),
        "commune": pd.Series(leaves["nom"].to_numpy(dtype=object)[leaf], dtype="string"),
        "code_commune": code_commune,
        "code_departement": departements_of_communes(code_commune).astype("string"),
        "types": pd.Series(types, dtype="string"),
        "labels": pd.Series(np.where(fabrique, "Fabrique de territoire",
                                     np.where(manufacture, "Manufacture de proximité", "")),
                            dtype="string").replace("", pd.NA),
        "fabrique_territoire": pd.array(fabrique, dtype="boolean"),
        "manufacture_proximite": pd.array(manufacture & ~fabrique, dtype="boolean"),
        "site_web": pd.Series(pd.NA, index=range(count), dtype="string"),
        "precision_localisation": pd.Series(schema.LOCATION_PROVIDED, index=range(count), dtype="string"),
        "territoire": pd.Series(leaves["territoire"].to_numpy(dtype=object)[leaf], dtype="string"),
        "epsg_metrique": pd.array(epsg, dtype="Int64"),
        "longitude": lon,
        "latitude": lat,
        "is_synthetic": pd.array(np.ones(count, dtype=bool), dtype="boolean"),
    })
    assert list(frame.columns) == list(schema.TIERS_LIEUX)
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat), crs=WGS84)


# --- Generation and cache -------------------------------------------------------------------------


def generate(sizes: Sizes = NATIONAL, seed: int = DEFAULT_SEED, *, communes_path: Path = COMMUNES_PATH) -> NationalData:
    """Generate the four layers (no cache)."""
    rng = np.random.default_rng(seed)
    communes = load_communes(communes_path)
    leaves = _leaf_communes(communes)
    qpv = generate_qpv(rng, leaves, sizes)
    establishments = generate_establishments(rng, leaves, qpv, sizes.establishments, seed)
    tiers_lieux = generate_tiers_lieux(rng, leaves, qpv, sizes.tiers_lieux)
    return NationalData(communes, qpv, establishments, tiers_lieux, sizes, seed)


_LAYERS = ("communes", "qpv", "establishments", "tiers_lieux")


def cache_dir(sizes: Sizes, seed: int, out_dir: Path = OUT_DIR) -> Path:
    return out_dir / f"national-v{GENERATOR_VERSION}-s{seed}-{sizes.key}"


def load_or_generate(sizes: Sizes = NATIONAL, seed: int = DEFAULT_SEED, *, out_dir: Path = OUT_DIR,
                     log=print) -> NationalData:
    """The cached layers for these sizes and seed, generated and cached on first use."""
    folder = cache_dir(sizes, seed, out_dir)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        started = time.perf_counter()
        layers = {name: gpd.read_parquet(folder / f"{name}.parquet") for name in _LAYERS}
        log(f"national data: read from cache {folder.name} in {time.perf_counter() - started:.1f} s")
        return NationalData(**layers, sizes=sizes, seed=seed)
    log(f"national data: generating {sizes} with seed {seed} (cached afterwards in {folder})")
    started = time.perf_counter()
    data = generate(sizes, seed)
    elapsed = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    for name in _LAYERS:
        getattr(data, name).to_parquet(folder / f"{name}.parquet", index=False)
    manifest.write_text(json.dumps({
        "generator_version": GENERATOR_VERSION, "seed": seed, "sizes": asdict(sizes),
        "generation_seconds": round(elapsed, 1), "summary": data.summary(),
    }, indent=2) + "\n", encoding="utf-8")
    log(f"national data: generated in {elapsed:.1f} s: {data.summary()}")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    sizes = sizes_from_env(SMALL if args.small else NATIONAL)
    data = load_or_generate(sizes, args.seed)
    print(json.dumps(data.summary(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
