"""QPV coverage by tiers-lieux asked of the store: the pairs stored at ingest answer in SQL.

Within :data:`~essmap.domain.schema.STORED_RADIUS_M` the counts, and each QPV's nearest tiers-lieu
(stored even beyond that radius), come from :mod:`essmap.store.queries`; only what those pairs
cannot answer (a larger radius, or a nearest tiers-lieu that the selection's tiers-lieu filters
leave out of the stored pairs) is computed on demand with the pure functions of
:mod:`essmap.analysis.proximity` (geodesic metres). This module imports no geometry library itself:
a CLI query answered by the stored pairs starts without geopandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import duckdb

from essmap.domain import schema
from essmap.domain.selection import Selection
from essmap.store import queries

if TYPE_CHECKING:
    import geopandas as gpd
    import numpy as np
    import pandas as pd


def qpv_coverage(con: duckdb.DuckDBPyConnection, selection: Selection, *, radius_m: float,
                 geometry: Literal["display", "exact"] | None = "display") -> pd.DataFrame:
    """:func:`~essmap.analysis.proximity.qpv_tiers_lieux` for the QPVs of a selection, from the store.

    Within :data:`~essmap.domain.schema.STORED_RADIUS_M` everything comes from the QPV x tiers-lieux
    pairs stored at ingest (a SQL aggregate, with the selection's tiers-lieu filters from any
    territory); a QPV's nearest tiers-lieu is searched on demand only when the filters leave out the
    one stored, as is everything for a larger radius. ``geometry``: the simplified boundary (maps),
    the exact one (exports), or none (a plain table: no geometry library is imported). Same columns
    as :func:`~essmap.analysis.proximity.qpv_points_within` (count: ``n_tiers_lieux``).
    """
    import pandas as pd
    if radius_m > schema.STORED_RADIUS_M:
        from essmap.analysis.proximity import qpv_tiers_lieux

        codes = queries.qpv_coverage(con, selection, radius_m=0.0)["code_qp"].astype(str).tolist()
        result = qpv_tiers_lieux(queries.read_qpv(con, codes), _reachable_tiers_lieux(con, selection),
                                 radius_m=radius_m)
        if geometry == "exact":
            return result
        return _with_geometry(con, result, display=True) if geometry else pd.DataFrame(result.drop(columns="geometry"))
    found = queries.qpv_coverage(con, selection, radius_m=radius_m)
    far = found["nearest_id"].isna().to_numpy()
    if far.any():
        _nearest_on_demand(con, selection, found, far)
    return _with_geometry(con, found, display=geometry == "display") if geometry else found


def stored_coverage_rows(con: duckdb.DuckDBPyConnection, selection: Selection, *,
                         radius_m: float) -> tuple[list[str], list[tuple]] | None:
    """:func:`qpv_coverage` without geometry as the column names and the rows DuckDB gives (None where
    <NA>), without pandas, when the stored pairs answer for every QPV: None when ``radius_m`` is beyond
    the stored radius or a QPV's nearest tiers-lieu is to be searched on demand (then ask
    :func:`qpv_coverage`)."""
    if radius_m > schema.STORED_RADIUS_M:
        return None
    found = queries.qpv_coverage_rows(con, selection, radius_m=radius_m)
    columns = [d[0] for d in found.description]
    rows = found.fetchall()
    nearest = columns.index("nearest_id")
    if any(row[nearest] is None for row in rows):
        return None
    return columns, rows


def _reachable_tiers_lieux(con: duckdb.DuckDBPyConnection, selection: Selection) -> gpd.GeoDataFrame:
    """Tiers-lieux the selection's filters keep, from any territory (a QPV is reached across borders)."""
    columns = ["id_tiers_lieu", "nom", "territoire", "is_synthetic", "precision_localisation"]
    return queries.read_points(con, "tiers_lieux", selection.without_territory(), territory=False, columns=columns)


def _nearest_on_demand(con: duckdb.DuckDBPyConnection, selection: Selection, found: pd.DataFrame,
                       far: np.ndarray) -> None:
    """Fill in ``found`` the nearest tiers-lieu of the rows ``far`` (none among the stored pairs)."""
    from essmap.analysis.proximity import precisely_located, qpv_tiers_lieux

    tiers_lieux = _reachable_tiers_lieux(con, selection)
    tiers_lieux = tiers_lieux[precisely_located(tiers_lieux)]
    if tiers_lieux.empty:
        return
    exact = queries.read_qpv(con, found.loc[far, "code_qp"].astype(str).tolist())
    nearest_far = qpv_tiers_lieux(exact, tiers_lieux, radius_m=0.0).set_index("code_qp")
    codes = found.loc[far, "code_qp"].astype(str)
    for column in ("nearest_id", "nearest_nom", "nearest_distance_m", "nearest_localisation"):
        found.loc[far, column] = nearest_far[column].reindex(codes).to_numpy()
    involved = nearest_far["is_synthetic_involved"].reindex(codes).fillna(False).to_numpy(dtype=bool)
    already = found.loc[far, "is_synthetic_involved"].to_numpy(dtype=bool)
    found.loc[far, "is_synthetic_involved"] = already | involved


def _with_geometry(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, *, display: bool) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import pandas as pd

    codes = frame["code_qp"].astype(str).tolist()
    shapes = queries.read_qpv(con, codes, display=display).set_index("code_qp").geometry
    geometry = shapes.reindex(pd.Index(codes)).to_numpy()
    out = pd.DataFrame(frame.drop(columns=[c for c in ("geometry",) if c in frame.columns])).reset_index(drop=True)
    return gpd.GeoDataFrame(out, geometry=geometry, crs=schema.WGS84)


def establishments_around_qpv(con: duckdb.DuckDBPyConnection, selection: Selection, *,
                              radius_m: float) -> gpd.GeoDataFrame:
    """:func:`~essmap.analysis.proximity.qpv_establishments` for the QPVs of a selection: establishments
    kept by its attribute filters (any territory: a QPV at a border counts its neighbours) within
    ``radius_m``, computed on demand (geodesic metres) on the establishments of the QPVs' surroundings
    only."""
    import numpy as np

    from essmap.analysis.proximity import qpv_establishments

    codes = queries.qpv_coverage(con, selection, radius_m=0.0)["code_qp"].astype(str).tolist()
    qpv = queries.read_qpv(con, codes)
    columns = ["siret", "denomination", "territoire", "is_synthetic"]
    if qpv.empty:
        points = queries.read_points(con, "etablissements", selection, columns=columns).iloc[0:0]
        return qpv_establishments(qpv, points, radius_m=radius_m)
    lon_min, lat_min, lon_max, lat_max = qpv.total_bounds
    margin_lat = (radius_m + 100.0) / 110_000.0
    margin_lon = margin_lat / max(np.cos(np.radians(max(abs(lat_min), abs(lat_max)))), 0.1)
    bbox = (lon_min - margin_lon, lat_min - margin_lat, lon_max + margin_lon, lat_max + margin_lat)
    points = queries.read_points(con, "etablissements", selection.without_territory(), columns=columns, bbox=bbox,
                                 territory=False)
    return qpv_establishments(qpv, points, radius_m=radius_m)


def approximate_tiers_lieux(con: duckdb.DuckDBPyConnection, selection: Selection) -> int:
    """Tiers-lieux of the selection positioned at their commune only: shown, left out of radius queries."""
    return queries.tiers_lieux_by_precision(con, selection).get(schema.LOCATION_COMMUNE, 0)


def tiers_lieux_near_qpv_share(con: duckdb.DuckDBPyConnection, selection: Selection, *,
                               radius_m: float = 1000.0) -> tuple[float, int, int, bool]:
    """Share of the selection's tiers-lieux in or within ``radius_m`` of a QPV ("31 % des tiers-lieux"),
    with the counts behind it and whether simulated rows are involved: ``(share, near, total, synthetic)``.

    Tiers-lieux positioned at their commune only are in neither count. Beyond the stored radius the
    distances are computed on demand (to the QPVs of any territory).
    """
    import pandas as pd
    if radius_m <= schema.STORED_RADIUS_M:
        near, total, synthetic = queries.tiers_lieux_near_qpv(con, selection, radius_m=radius_m)
    else:
        from essmap.analysis.proximity import precisely_located, tiers_lieux_qpv_status

        tiers_lieux = queries.read_points(con, "tiers_lieux", selection)
        tiers_lieux = tiers_lieux[precisely_located(tiers_lieux)].reset_index(drop=True)
        codes = queries.qpv_coverage(con, selection.without_territory(), radius_m=0.0)["code_qp"]
        qpv = queries.read_qpv(con, codes.astype(str).tolist())
        status = tiers_lieux_qpv_status(tiers_lieux, qpv, radius_m=radius_m)
        distance = pd.to_numeric(status["distance_m"], errors="coerce")
        near, total = int((distance <= radius_m).sum()), len(tiers_lieux)
        synthetic = bool(tiers_lieux["is_synthetic"].to_numpy(dtype=bool, na_value=False).any())
    return (near / total if total else float("nan")), near, total, synthetic


def coverage_share(result: pd.DataFrame) -> float:
    """Share (0-1) of QPVs covered in a radius result (``covered`` column); NaN when empty."""
    return covered_share(int(result["covered"].to_numpy(dtype=bool).sum()), len(result))


def covered_share(covered: int, total: int) -> float:
    """Share (0-1) of ``total`` QPVs that the ``covered`` ones are; NaN when there is none."""
    return covered / total if total else float("nan")
