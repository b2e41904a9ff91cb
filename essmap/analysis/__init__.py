"""Pure analysis functions: GeoDataFrames in, DataFrames/GeoDataFrames out.

No I/O and no settings read here; geometry goes through :mod:`essmap.geo` (WGS84 for
topology, the metric CRS of each territory for distances). Modules:

- :mod:`~essmap.domain.selection`: :class:`Selection`, the one filter object.
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
    establishments_near_point,
    establishments_qpv,
    qpv_establishments,
    qpv_tiers_lieux,
    tiers_lieux_qpv_status,
    white_zones,
)
from essmap.domain.selection import Selection, territory_names

__all__ = [
    "INDICATORS",
    "Indicator",
    "Selection",
    "breakdown",
    "compare",
    "coverage_share",
    "establishments_near_point",
    "establishments_qpv",
    "indicators_by_level",
    "pivot_breakdown",
    "qpv_establishments",
    "qpv_tiers_lieux",
    "reference_figures",
    "territory_names",
    "tiers_lieux_qpv_status",
    "white_zones",
]
