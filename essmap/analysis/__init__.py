"""Analysis: indicators from the store's aggregates, radius queries, reference figures.

Functions that take a DuckDB connection read through :mod:`essmap.store.queries` (SQL on the joins
stored at ingest); the others are pure (GeoDataFrames in EPSG:4326 in, frames out), with geometry
through :mod:`essmap.geo` (topology on WGS84 coordinates, geodesic distances). Modules:

- :mod:`~essmap.analysis.proximity`: QPV x tiers-lieux / establishments, supplier search.
- :mod:`~essmap.analysis.indicators`: indicator tables, breakdowns, comparisons.
- :mod:`~essmap.analysis.references`: national reference figures with their sources.
"""

from essmap.analysis.indicators import (
    INDICATORS,
    Indicator,
    breakdown,
    compare,
    indicators_by_level,
    pivot_breakdown,
    reference_figures,
)
from essmap.analysis.proximity import (
    coverage_share,
    establishments_around_qpv,
    establishments_near_point,
    establishments_qpv,
    qpv_coverage,
    qpv_establishments,
    qpv_tiers_lieux,
    tiers_lieux_qpv_status,
    white_zones,
)
from essmap.domain.selection import Selection

__all__ = [
    "INDICATORS",
    "Indicator",
    "Selection",
    "breakdown",
    "compare",
    "coverage_share",
    "establishments_around_qpv",
    "establishments_near_point",
    "establishments_qpv",
    "indicators_by_level",
    "pivot_breakdown",
    "qpv_coverage",
    "qpv_establishments",
    "qpv_tiers_lieux",
    "reference_figures",
    "tiers_lieux_qpv_status",
    "white_zones",
]
