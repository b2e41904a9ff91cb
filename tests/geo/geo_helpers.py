"""Builders of small WGS84 layers around real places, and the independent geodesic reference
(imported by the tests of this folder; the fixtures are in conftest.py).

Distances are set and checked with ``pyproj.Geod`` on the WGS84 ellipsoid, never with the
projections that :mod:`essmap.geo` uses to find candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Geod

GEOD = Geod(ellps="WGS84")
#: Sampling step of the reference distance along each edge, in metres (see geodesic_distance).
SAMPLE_M = 10.0
REPO = Path(__file__).resolve().parents[2]
QPV_PACA = REPO / "data" / "geo" / "qpv2024_paca.geojson"
COMMUNES = REPO / "data" / "geo" / "communes_france.parquet"

#: (territoire, lon, lat, metric EPSG) at real places: Bonifacio (southern Corsica, largest
#: Lambert-93 scale error), Lille (north), Saint-Laurent-du-Maroni (western Guyane, 3° from the
#: UTM 22N central meridian), and a main town of each other overseas département.
PLACES = {
    "bonifacio": ("metropole", 9.1590, 41.3875, 2154),
    "lille": ("metropole", 3.0573, 50.6292, 2154),
    "marseille": ("metropole", 5.3698, 43.2965, 2154),
    "saint_laurent_du_maroni": ("guyane", -54.0311, 5.4983, 2972),
    "mamoudzou": ("mayotte", 45.2279, -12.7806, 4471),
    "saint_denis": ("reunion", 55.4504, -20.8823, 2975),
    "fort_de_france": ("martinique", -61.0588, 14.6161, 5490),
    "pointe_a_pitre": ("guadeloupe", -61.5331, 16.2411, 5490),
}


def offset(lon: float, lat: float, azimuth: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` metres from (lon, lat) along ``azimuth`` (degrees from north)."""
    x, y, _ = GEOD.fwd(lon, lat, azimuth, distance_m)
    return float(x), float(y)


def square(lon: float, lat: float, half_side_m: float) -> shapely.Polygon:
    """A lon/lat square centred on (lon, lat), ``half_side_m`` metres from centre to side."""
    _, north, _ = GEOD.fwd(lon, lat, 0, half_side_m)
    east, _, _ = GEOD.fwd(lon, lat, 90, half_side_m)
    d_lon, d_lat = east - lon, north - lat
    return shapely.box(lon - d_lon, lat - d_lat, lon + d_lon, lat + d_lat)


def blob(lon: float, lat: float, radius_m: float, rng: np.random.Generator, vertices: int = 32) -> shapely.Polygon:
    """A QPV-like lon/lat polygon around (lon, lat): ``vertices`` vertices at ``radius_m`` x 0.55
    to 1 in sorted directions (not convex), edges of tens to a few hundred metres."""
    azimuths = np.sort(rng.uniform(0, 360, vertices))
    x, y, _ = GEOD.fwd(np.full(vertices, lon), np.full(vertices, lat), azimuths,
                       radius_m * rng.uniform(0.55, 1.0, vertices))
    return shapely.Polygon(np.column_stack([x, y]))


def polygon_frame(geometries: Sequence[shapely.Geometry | None], codes: Sequence[str], *,
                  territoire: str | None = "metropole") -> gpd.GeoDataFrame:
    """A QPV-like layer: ``code_qp`` and, unless None, ``territoire``."""
    data = {"code_qp": pd.array(list(codes), dtype="string")}
    if territoire is not None:
        data["territoire"] = pd.array([territoire] * len(codes), dtype="string")
    return gpd.GeoDataFrame(data, geometry=list(geometries), crs=4326)


def points_frame(lonlat: Sequence[tuple[float, float]], *, territoire: str | None = "metropole",
                 **columns: object) -> gpd.GeoDataFrame:
    """A point layer; ``columns`` are extra columns (scalars are broadcast)."""
    n = len(lonlat)
    data: dict[str, object] = {}
    if territoire is not None:
        data["territoire"] = pd.array([territoire] * n, dtype="string")
    for name, value in columns.items():
        data[name] = value if isinstance(value, (list, np.ndarray, pd.api.extensions.ExtensionArray)) else [value] * n
    geometry = shapely.points(np.asarray(lonlat, dtype=float).reshape(-1, 2)) if n else []
    return gpd.GeoDataFrame(data, geometry=geometry, crs=4326)


def geodesic_distance(lon: float, lat: float, geometry: shapely.Geometry, *, edges: str = "geodesic") -> float:
    """Reference: the geodesic distance (WGS84) from (lon, lat) to ``geometry``, 0 when the
    point is covered.

    Each edge is sampled every :data:`SAMPLE_M` metres, along the geodesic between its vertices
    (``edges="geodesic"``) or along the straight line in lon/lat (``"lonlat"``, as Shapely draws
    it: the two differ by millimetres on edges of a few hundred metres, by metres on edges of
    20 km). The distance moves by at most the step between two samples, so an edge whose best
    sample is farther than the overall best plus one step cannot hold the minimum; the others are
    searched to a micrometre (golden section between the neighbours of their best sample; the
    distance to a segment is unimodal along it)."""
    if geometry.geom_type == "Point":
        return float(GEOD.inv(lon, lat, geometry.x, geometry.y)[2])
    if geometry.intersects(shapely.Point(lon, lat)):
        return 0.0
    coords = np.concatenate([np.asarray(ring.coords) for ring in shapely.get_rings(shapely.get_parts(geometry))])
    rings = np.concatenate([np.full(len(ring.coords), k)
                            for k, ring in enumerate(shapely.get_rings(shapely.get_parts(geometry)))])
    starts = np.flatnonzero(rings[:-1] == rings[1:])  # an edge from each vertex to the next of its ring

    # azimuth and length of every edge (from its vertex), for the samples along it
    azimuth_of, length_of = np.full(len(coords), np.nan), np.full(len(coords), np.nan)
    azimuth_of[starts], _, length_of[starts] = GEOD.inv(*coords[starts].T, *coords[starts + 1].T)

    def distances(k: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Distances to the points at fractions ``s`` (0 to 1) of edges ``k`` (an edge per fraction)."""
        (x1, y1), (x2, y2) = coords[k].T, coords[k + 1].T
        if edges == "lonlat":
            x, y = x1 + s * (x2 - x1), y1 + s * (y2 - y1)
        else:
            x, y, _ = GEOD.fwd(x1, y1, azimuth_of[k], s * length_of[k])
        return GEOD.inv(np.full(len(s), lon), np.full(len(s), lat), x, y)[2]

    # one call to pyproj for the samples of every edge, then for a step of every search at once
    fractions = [np.linspace(0.0, 1.0, max(2, math.ceil(length_of[k] / SAMPLE_M)) + 1) for k in starts.tolist()]
    sizes = np.array([len(f) for f in fractions])
    sampled = np.split(distances(np.repeat(starts, sizes), np.concatenate(fractions)), np.cumsum(sizes)[:-1])
    best = min(float(d.min()) for d in sampled)
    searched = [(k, s, int(np.argmin(d))) for k, s, d in zip(starts.tolist(), fractions, sampled, strict=True)
                if float(d.min()) <= best + SAMPLE_M]
    edge = np.array([k for k, _, _ in searched])
    low = np.array([s[max(i - 1, 0)] for _, s, i in searched])
    high = np.array([s[min(i + 1, len(s) - 1)] for _, s, i in searched])
    ratio = (math.sqrt(5) - 1) / 2
    while (going := np.flatnonzero((high - low) * length_of[edge] > 1e-4)).size:  # a tenth of a millimetre
        left = high[going] - ratio * (high[going] - low[going])
        right = low[going] + ratio * (high[going] - low[going])
        d_left, d_right = np.split(distances(np.tile(edge[going], 2), np.concatenate([left, right])), 2)
        closer_left = d_left < d_right
        high[going] = np.where(closer_left, right, high[going])
        low[going] = np.where(closer_left, low[going], left)
    return min(best, float(distances(edge, (low + high) / 2).min()))
