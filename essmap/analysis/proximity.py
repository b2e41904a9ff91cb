"""Proximity between QPVs, tiers-lieux and ESS establishments.

"QPV with a tiers-lieu within 1 km" means: the distance from the tiers-lieu to the QPV
*polygon* (0 inside) is at most 1,000 m, never the distance to a centroid (``docs/domain.md``).
Distances are measured by :mod:`essmap.geo` in the metric CRS of each territory
(EPSG:2154 in metropolitan France and Corsica, UTM-based CRSs overseas). Radius 0 means
"inside the QPV or on its boundary".

Tiers-lieux positioned at their commune only (``precision_localisation`` = "commune seulement",
see :mod:`essmap.io.readers.placement`) never enter a radius computation: a distance from a
commune's centre would be invented. They are counted apart
(:func:`essmap.analysis.coverage.approximate_tiers_lieux`).

All functions are pure: GeoDataFrames in EPSG:4326 in, frames out, inputs left untouched. The same
questions asked of the store (with the pairs stored at ingest) are in :mod:`essmap.analysis.coverage`.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from essmap.domain import schema
from essmap.domain.errors import SpatialInputError
from essmap.domain.formatting import format_number
from essmap.domain.territories import TERRITORIES, territory_of_lonlat
from essmap.geo import (
    WGS84_EPSG,
    distances_to_polygons,
    nearest,
    points_in_polygons,
    require_wgs84,
    take_or_na,
    within_and_nearest,
    within_distance,
)

#: Columns of :func:`qpv_points_within` besides the count column and geometry.
QPV_COLUMNS: tuple[str, ...] = ("code_qp", "lib_qp", "insee_com", "lib_com")

#: CRS of every result, built once (parsing an EPSG code costs more than the rest of a small query).
_WGS84_CRS = CRS.from_epsg(WGS84_EPSG)

STATUS_INSIDE = "dans un QPV"
STATUS_FAR = "plus loin"
#: Status of a tiers-lieu positioned at its commune only: no distance is computed.
STATUS_APPROXIMATE = schema.APPROXIMATE_LOCATION_FR


def precisely_located(tiers_lieux: pd.DataFrame) -> np.ndarray:
    """Rows that radius queries may use: all but those positioned at their commune only."""
    if "precision_localisation" not in tiers_lieux.columns:
        return np.ones(len(tiers_lieux), dtype=bool)
    precision = tiers_lieux["precision_localisation"].astype("string")
    return (precision != schema.LOCATION_COMMUNE).fillna(True).to_numpy(dtype=bool)


def status_near(radius_m: float) -> str:
    """The middle status label, e.g. "à moins de 1 000 m d'un QPV"."""
    return f"à moins de {format_number(radius_m)} m d'un QPV"


# --- Establishments and the QPV they are in or near --------------------------------------------


def establishments_qpv(
    establishments: gpd.GeoDataFrame,
    qpv: gpd.GeoDataFrame,
    *,
    near_radius_m: float | None = None,
    with_nearest: bool = False,
) -> pd.DataFrame:
    """For each establishment, the QPV it lies in, and optionally the QPVs near it.

    This is the expensive spatial join of the indicators: compute it once and pass
    ``result["code_qp"]`` as ``in_qpv`` to :func:`~essmap.analysis.indicators.indicators_by_level`
    and to :class:`~essmap.domain.selection.Selection`.

    Parameters
    ----------
    establishments, qpv : GeoDataFrame
        EPSG:4326. Use the QPVs of one generation: where two overlap, the first code in
        alphabetical order wins.
    near_radius_m : float, optional
        Also list the QPVs within this distance ("à moins de 300 m"), the QPV holding the
        establishment included (distance 0).
    with_nearest : bool
        Also give the nearest QPV and its distance, however far. This reprojects every
        establishment: seconds for millions of rows, so off by default.

    Returns
    -------
    pandas.DataFrame
        Aligned on ``establishments.index``: ``code_qp`` (<NA> outside every QPV), ``in_qpv``;
        with ``near_radius_m``: ``near_qpv_codes`` ("; "-separated, <NA> when none),
        ``n_near_qpv``, ``near_qpv``; with ``with_nearest``: ``nearest_qpv``,
        ``nearest_qpv_distance_m`` (metres).
    """
    code = points_in_polygons(establishments, qpv, "code_qp")
    out = pd.DataFrame({"code_qp": code, "in_qpv": code.notna().to_numpy()}, index=establishments.index)
    if near_radius_m is not None:
        pairs = distances_to_polygons(establishments, qpv, near_radius_m, "code_qp")
        position = _positions(establishments.index, pairs["point_index"], "establishments")
        codes = pd.Series(pairs["code_qp"].to_numpy(dtype=object), index=position)
        joined = codes.groupby(level=0, sort=False).agg("; ".join)
        near = np.full(len(establishments), None, dtype=object)
        near[joined.index.to_numpy()] = joined.to_numpy()
        counts = np.bincount(position, minlength=len(establishments))
        out["near_qpv_codes"] = pd.array(near, dtype="string")
        out["n_near_qpv"] = counts.astype(np.int64)
        out["near_qpv"] = counts > 0
    if with_nearest:
        found = nearest(establishments, qpv, "code_qp")
        out["nearest_qpv"] = found["code_qp"]
        out["nearest_qpv_distance_m"] = found["distance_m"]
    return out


# --- QPVs and the features within a radius -----------------------------------------------------


def qpv_points_within(
    qpv: gpd.GeoDataFrame,
    points: gpd.GeoDataFrame,
    *,
    radius_m: float,
    id_column: str,
    name_column: str,
    count_column: str,
) -> gpd.GeoDataFrame:
    """One row per QPV: how many ``points`` lie within ``radius_m`` of it, and the nearest one.

    The generic form of :func:`qpv_tiers_lieux` and :func:`qpv_establishments`.

    Returns
    -------
    GeoDataFrame
        Aligned on ``qpv.index``, EPSG:4326, columns ``code_qp``, ``lib_qp``, ``insee_com``,
        ``lib_com``, ``count_column`` (points within the radius), ``nearest_id`` and
        ``nearest_nom`` (of the nearest point, even beyond the radius; <NA> when the
        territory has none), ``nearest_distance_m``, ``nearest_localisation`` (when the points
        have ``precision_localisation``), ``covered`` (count > 0),
        ``is_synthetic_involved`` (a counted point, or the nearest one, is simulated),
        ``radius_m`` and the QPV geometry.
    """
    require_wgs84(qpv, "qpv")
    require_wgs84(points, "points")
    for column in (id_column, name_column):
        if column not in points.columns:
            raise KeyError(f"« points » n'a pas de colonne « {column} ».")
    for frame, name in ((qpv, "qpv"), (points, "points")):
        _require_unique_index(frame.index, name)
    found = within_and_nearest(qpv, points, radius_m, id_column)
    q_pos, p_pos = found.source, found.target
    synthetic = _synthetic_flags(points)
    counts = np.bincount(q_pos, minlength=len(qpv)).astype(np.int64)
    involved = np.bincount(q_pos, weights=synthetic[p_pos], minlength=len(qpv)) > 0
    near_pos = found.nearest
    has = near_pos >= 0
    involved[has] |= synthetic[near_pos[has]]

    columns = {
        **{c: _column_or_na(qpv, c) for c in QPV_COLUMNS},
        count_column: counts,
        "nearest_id": take_or_na(points[id_column], near_pos),
        "nearest_nom": _take_string(points[name_column], near_pos),
        "nearest_distance_m": pd.array(found.nearest_distance_m, dtype="Float64"),
        **({"nearest_localisation": _take_string(points["precision_localisation"], near_pos)}
           if "precision_localisation" in points.columns else {}),
        "covered": counts > 0,
        "is_synthetic_involved": involved,
        "radius_m": float(radius_m),
        # a copy: the GeoDataFrame sets its CRS on the array it is given
        "geometry": qpv.geometry.array.copy(),
    }
    # a DataFrame first, then its column as geometry: several times faster than
    # GeoDataFrame(columns, geometry=..., crs=...), which looks up a missing geometry column
    frame = pd.DataFrame(columns, index=qpv.index, copy=False)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=_WGS84_CRS, copy=False)


def qpv_tiers_lieux(
    qpv: gpd.GeoDataFrame, tiers_lieux: gpd.GeoDataFrame, *, radius_m: float = 1000.0
) -> gpd.GeoDataFrame:
    """One row per QPV: tiers-lieux within ``radius_m`` (default 1 km) and the nearest one.

    "36 % des QPV ont un tiers-lieu au sein du quartier ou à moins d'1 km" is
    ``coverage_share(qpv_tiers_lieux(qpv, tiers_lieux, radius_m=1000))``. Without any
    tiers-lieu every QPV is uncovered with nearest <NA>; without QPV the result is empty with
    the same columns. See :func:`qpv_points_within` for the columns (count: ``n_tiers_lieux``).
    Tiers-lieux positioned at their commune only are left out; ``result.attrs["n_commune_seulement"]``
    says how many.
    """
    precise = precisely_located(tiers_lieux)
    result = qpv_points_within(
        qpv, tiers_lieux if precise.all() else tiers_lieux[precise], radius_m=radius_m,
        id_column="id_tiers_lieu", name_column="nom", count_column="n_tiers_lieux",
    )
    result.attrs["n_commune_seulement"] = int((~precise).sum())
    return result


def qpv_establishments(
    qpv: gpd.GeoDataFrame, establishments: gpd.GeoDataFrame, *, radius_m: float
) -> gpd.GeoDataFrame:
    """One row per QPV: ESS establishments within ``radius_m`` and the nearest one.

    Pass the establishments already filtered (e.g. associations intermédiaires and SCOP, read with
    :func:`essmap.store.queries.read_points`) and the QPVs you want rows for. The nearest search is
    unbounded. Count column: ``n_etablissements``; see :func:`qpv_points_within` for the others.
    """
    return qpv_points_within(
        qpv, establishments, radius_m=radius_m, id_column="siret",
        name_column="denomination", count_column="n_etablissements",
    )


def white_zones(result: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The QPVs of a :func:`qpv_points_within` result with nothing within the radius."""
    return result[~result["covered"].to_numpy(dtype=bool)]


def tiers_lieux_qpv_status(
    tiers_lieux: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame, *, radius_m: float = 1000.0
) -> pd.DataFrame:
    """For each tiers-lieu: in a QPV, within ``radius_m`` of one, or farther; nearest QPV.

    Returns
    -------
    pandas.DataFrame
        Aligned on ``tiers_lieux.index``: ``status`` (:data:`STATUS_INSIDE`,
        :func:`status_near`, :data:`STATUS_FAR`; :data:`STATUS_APPROXIMATE` for a tiers-lieu
        positioned at its commune only, whose other columns are <NA>), ``nearest_qpv`` (code, <NA>
        when the territory has no QPV), ``nearest_qpv_nom`` and ``distance_m`` (0 inside).
    """
    require_wgs84(tiers_lieux, "tiers_lieux")
    found = nearest(tiers_lieux, qpv, "code_qp")
    approximate = ~precisely_located(tiers_lieux)
    if approximate.any():
        found = found.copy()
        found.loc[approximate, ["nearest_index", "code_qp", "distance_m"]] = pd.NA
    distance = found["distance_m"].to_numpy(dtype=float, na_value=np.nan)
    status = np.where(
        distance == 0,
        STATUS_INSIDE,
        np.where(distance <= float(radius_m), status_near(radius_m), STATUS_FAR),
    )
    status = np.where(approximate, STATUS_APPROXIMATE, status)
    has = found["nearest_index"].notna().to_numpy()
    q_pos = np.full(len(tiers_lieux), -1, dtype=np.int64)
    q_pos[has] = _positions(qpv.index, found["nearest_index"][has], "qpv")
    return pd.DataFrame(
        {
            "status": pd.array(status, dtype="string"),
            "nearest_qpv": found["code_qp"].array,
            "nearest_qpv_nom": _take_string(_column_or_na(qpv, "lib_qp"), q_pos),
            "distance_m": found["distance_m"].array,
        },
        index=tiers_lieux.index,
    )


# --- Supplier search around a site -------------------------------------------------------------


def establishments_near_point(
    establishments: gpd.GeoDataFrame, lon: float, lat: float, radius_m: float
) -> gpd.GeoDataFrame:
    """ESS establishments within ``radius_m`` of a site, nearest first, with ``distance_m``.

    The site's territory (found from its longitude/latitude) decides where candidates are searched;
    distances are geodesic metres. Pass the establishments already filtered (e.g. SIAE legal
    categories, employers only).

    Raises
    ------
    SpatialInputError
        When the site lies in no French territory (swapped longitude/latitude are detected
        and named in the message).
    """
    require_wgs84(establishments, "establishments")
    code = str(territory_of_lonlat(np.array([float(lon)]), np.array([float(lat)]))[0])
    if not code:
        swapped = str(territory_of_lonlat(np.array([float(lat)]), np.array([float(lon)]))[0])
        hint = (
            " Les valeurs semblent inversées : longitude d'abord, puis latitude."
            if swapped else ""
        )
        raise SpatialInputError(
            f"Le point (longitude {lon}, latitude {lat}) n'est dans aucun territoire couvert.{hint}"
        )
    site = gpd.GeoDataFrame(
        {"territoire": [code]}, geometry=[shapely.Point(float(lon), float(lat))], crs=WGS84_EPSG
    )
    pairs = within_distance(site, establishments, radius_m)
    position = _positions(establishments.index, pairs["target_index"], "establishments")
    out = establishments.iloc[position].copy()
    out["distance_m"] = pairs["distance_m"].to_numpy()
    out.attrs["territoire"] = TERRITORIES[code].name
    return out


# --- helpers -----------------------------------------------------------------------------------


def _positions(index: pd.Index, labels: pd.Series | pd.Index, name: str) -> np.ndarray:
    """Row positions of index labels (the index must be unique)."""
    _require_unique_index(index, name)
    return index.get_indexer(pd.Index(labels)).astype(np.int64)


def _require_unique_index(index: pd.Index, name: str) -> None:
    """Results are aligned on the index: a duplicated label would be ambiguous."""
    if not index.is_unique:
        raise ValueError(
            f"« {name} » a un index en double ; les résultats sont alignés sur l'index. "
            "Solution : .reset_index(drop=True)."
        )


def _synthetic_flags(frame: pd.DataFrame) -> np.ndarray:
    if "is_synthetic" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame["is_synthetic"].to_numpy(dtype=bool, na_value=False)


def _column_or_na(frame: pd.DataFrame, column: str) -> pd.api.extensions.ExtensionArray:
    if column in frame.columns:
        return pd.array(frame[column], dtype="string")
    return pd.array([pd.NA] * len(frame), dtype="string")


def _take_string(
    values: pd.Series | pd.api.extensions.ExtensionArray, positions: np.ndarray
) -> pd.api.extensions.ExtensionArray:
    """``values[positions]`` as nullable strings, <NA> where a position is -1."""
    return pd.array(values, dtype="string").take(positions, allow_fill=True)
