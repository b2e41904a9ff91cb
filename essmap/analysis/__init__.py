"""Analysis: indicators from the store's aggregates, radius queries, reference figures.

Functions that take a DuckDB connection read through :mod:`essmap.store.queries` (SQL on the joins
stored at ingest); the others are pure (GeoDataFrames in EPSG:4326 in, frames out), with geometry
through :mod:`essmap.geo` (topology on WGS84 coordinates, geodesic distances). Modules, imported by
name (this package imports none of them, so that a table query does not load the geometry stack):

- :mod:`~essmap.analysis.coverage`: QPV coverage by tiers-lieux and the establishments around QPVs,
  asked of the store.
- :mod:`~essmap.analysis.proximity`: the same questions on GeoDataFrames (QPV x tiers-lieux /
  establishments, supplier search).
- :mod:`~essmap.analysis.indicators`: indicator tables, breakdowns, comparisons.
- :mod:`~essmap.analysis.references`: national reference figures with their sources.
"""
