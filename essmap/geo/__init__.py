"""Vectorised geometry primitives: point in polygon, pairs within a radius, nearest feature.

Every input is a GeoDataFrame in EPSG:4326 (longitude/latitude order), as
:func:`essmap.store.read_layer` returns them; anything else raises
:class:`~essmap.domain.errors.SpatialInputError` naming both CRSs.

Two rules, from ``docs/domain.md``:

- **Topology on WGS84 coordinates.** "Is this point in that QPV?" is answered on the lon/lat
  coordinates themselves. Official polygons are *defined* by their lon/lat vertices, so testing
  against those vertices is the standard choice; reprojecting first would only move points that
  sit exactly on a boundary by floating-point noise. (Edges are straight in lon/lat here and
  straight in the metric CRS for distances: on QPV-sized edges the two differ by millimetres.)
- **Distances in the metric CRS of each feature's territory**, never in degrees and never in one
  projection for all of France: Lambert-93 (EPSG:2154) for metropolitan France and Corsica,
  RGAF09 / UTM 20N (EPSG:5490) for Guadeloupe and Martinique, RGFG95 / UTM 22N (EPSG:2972) for
  Guyane, RGR92 / UTM 40S (EPSG:2975) for La Réunion, RGM04 / UTM 38S (EPSG:4471) for Mayotte
  (see :data:`essmap.domain.territories.TERRITORIES`). Features of different territories are never
  paired: they are hundreds of kilometres apart.

A feature's territory is its canonical ``territoire`` column; where that is missing or unknown,
the territory whose bounding box holds the feature's representative point.

The two rules meet at distance 0: a point that *intersects* a polygon in WGS84 (inside or exactly
on its boundary) is at distance 0, whatever floating-point noise the reprojection adds. So
"distance 0" and "in the polygon" always agree, and radius 0 means "inside or on the boundary".

Performance: radius queries find candidate pairs on WGS84 bounding boxes widened by a
conservative number of degrees, then reproject and measure only those pairs, so a query against
the ~1,600 QPVs costs little even for millions of points. Point-in-polygon queries of points
against polygons use an adaptive grid (:func:`_points_in_polygon_pairs`): whole cells inside
or outside a polygon are decided by one test at their centre, and only points in cells that a
polygon edge crosses are tested one by one, with prepared polygons built once per polygon layer
and cached. Other geometry pairs use an STRtree for candidate boxes, then a prepared test on the
candidate pairs.
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
