"""Geometry on the libraries: point in polygon, pairs within a radius, nearest feature.

Every input is a GeoDataFrame in EPSG:4326 (longitude/latitude order), as
:func:`essmap.store.read_layer` returns them; anything else raises
:class:`~essmap.domain.errors.SpatialInputError` naming both CRSs. Three modules:
:mod:`~essmap.geo.base` (input checks, territories, reprojection), :mod:`~essmap.geo.contains`
(point in polygon: a Shapely STRtree and prepared polygons) and :mod:`~essmap.geo.distance`
(radius and nearest queries).

Two rules, from ``docs/domain.md``:

- **Topology on WGS84 coordinates.** "Is this point in that QPV?" is answered on the lon/lat
  coordinates themselves: official polygons are defined by their lon/lat vertices. A point on
  the boundary is in the polygon (``intersects``); where polygons of one layer overlap, the
  first key in ascending order wins.
- **Distances are geodesic** (``pyproj.Geod`` on the WGS84 ellipsoid); **candidates are found in
  the metric CRS of each feature's territory**: Lambert-93 (EPSG:2154) for metropolitan France
  and Corsica, RGAF09 / UTM 20N (EPSG:5490) for Guadeloupe and Martinique, RGFG95 / UTM 22N
  (EPSG:2972) for Guyane, RGR92 / UTM 40S (EPSG:2975) for La Réunion, RGM04 / UTM 38S
  (EPSG:4471) for Mayotte (:data:`essmap.domain.territories.TERRITORIES`). Planar distances in
  those projections are off by up to 2.8 m per km (southern Corsica); the search radius is
  widened to cover that, and every reported distance is measured on the ellipsoid. Features of
  different territories are never paired.

A feature's territory is its canonical ``territoire`` column; where that is missing or unknown,
the territory whose bounding box holds the feature's representative point.

The two rules meet at distance 0: a pair that intersects in WGS84 (inside or exactly on the
boundary) is at distance 0, so "distance 0" and "in the polygon" agree, and radius 0 means
"inside or on the boundary".

Nothing is cached between calls, and the caller's geometries are never modified (prepared
polygons are private copies): every function may be called from several threads at once.
"""

from essmap.geo.base import (
    WGS84_EPSG,
    metric_groups,
    require_wgs84,
    take_or_na,
    territory_codes,
    to_metric,
)
from essmap.geo.contains import points_in_polygon_layers, points_in_polygons
from essmap.geo.distance import (
    RadiusAndNearest,
    distances_to_polygons,
    nearest,
    within_and_nearest,
    within_distance,
)

__all__ = [
    "WGS84_EPSG",
    "RadiusAndNearest",
    "distances_to_polygons",
    "metric_groups",
    "nearest",
    "points_in_polygon_layers",
    "points_in_polygons",
    "require_wgs84",
    "take_or_na",
    "territory_codes",
    "to_metric",
    "within_and_nearest",
    "within_distance",
]
