"""What every query shares: WGS84 input checks, each feature's territory and metric CRS, and
small helpers for results."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from essmap.domain.errors import SpatialInputError
from essmap.domain.territories import TERRITORIES, Territory, territory_of_lonlat

#: The only CRS accepted as input: WGS84, longitude/latitude order.
WGS84_EPSG = 4326


def require_wgs84(frame: gpd.GeoDataFrame, name: str) -> None:
    """Raise :class:`SpatialInputError` unless ``frame`` is a GeoDataFrame in EPSG:4326.

    ``name`` is the argument name, quoted in the (French) message with both CRSs.
    """
    if not isinstance(frame, gpd.GeoDataFrame):
        raise SpatialInputError(f"« {name} » doit être un GeoDataFrame (reçu : {type(frame).__name__}).")
    if frame.crs is None:
        raise SpatialInputError(
            f"« {name} » n'a pas de système de coordonnées ; attendu EPSG:{WGS84_EPSG} "
            "(WGS84, longitude/latitude). Solution : déclarez-le avec .set_crs(4326) si les "
            "coordonnées sont bien des longitudes/latitudes."
        )
    crs = CRS.from_user_input(frame.crs)
    if crs.to_epsg() != WGS84_EPSG:
        label = f"EPSG:{crs.to_epsg()} ({crs.name})" if crs.to_epsg() else crs.name
        raise SpatialInputError(
            f"« {name} » est en {label} ; attendu EPSG:{WGS84_EPSG} (WGS84, longitude/latitude). "
            "Solution : reprojetez-le avec .to_crs(4326) : les distances sont ensuite mesurées "
            "sur l'ellipsoïde WGS84."
        )


def require_column(frame: pd.DataFrame, column: str, name: str) -> None:
    """Raise ``KeyError`` (French message) unless ``frame`` has ``column``."""
    if column not in frame.columns:
        raise KeyError(f"« {name} » n'a pas de colonne « {column} » (colonnes : {list(frame.columns)}).")


def geometries(frame: gpd.GeoDataFrame) -> np.ndarray:
    """The geometry column as an object array of shapely geometries (the same objects)."""
    return np.asarray(frame.geometry.array, dtype=object)


def territory_codes(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Territory code of each row (object array, "" for rows without geometry nor territory).

    The canonical ``territoire`` column wins; rows where it is absent, empty or unknown are
    located by the bounding box of their representative point
    (:func:`essmap.domain.territories.territory_of_lonlat`). A row with a geometry that lies in no
    territory raises :class:`SpatialInputError`: its distances would have no metric CRS.
    """
    codes = np.full(len(frame), "", dtype=object)
    if "territoire" in frame.columns:
        labels, given = pd.factorize(frame["territoire"])  # -1 where missing: the last "" below
        codes = np.array([code if code in TERRITORIES else "" for code in given] + [""], dtype=object)[labels]
    unknown = np.flatnonzero(codes == "")
    if len(unknown) == 0:
        return codes
    geoms = geometries(frame)[unknown]
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    places = shapely.point_on_surface(geoms[present])  # a point stays itself
    located = territory_of_lonlat(shapely.get_x(places), shapely.get_y(places))
    lost = located == ""
    if lost.any():
        labels = frame.index[unknown[present][lost]][:5].tolist()
        raise SpatialInputError(
            f"{int(lost.sum())} entité(s) hors de tout territoire couvert (index {labels}) : "
            "aucun système métrique pour y chercher les voisins. Solution : vérifiez l'ordre "
            "longitude/latitude des coordonnées, ou renseignez la colonne « territoire »."
        )
    codes[unknown[present]] = located
    return codes


def positions_by_territory(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Row positions of each territory present in ``codes`` (from :func:`territory_codes`), in
    :data:`~essmap.domain.territories.TERRITORIES` order; rows without a territory are left out."""
    labels, present = pd.factorize(codes)
    return {code: np.flatnonzero(labels == list(present).index(code)) for code in TERRITORIES if code in present}


@functools.cache
def transformer(source_epsg: int, target_epsg: int) -> Transformer:
    """The transformer between two CRSs (lon/lat order), built once: building one costs
    milliseconds, and since pyproj 3.1 one transformer may serve several threads."""
    return Transformer.from_crs(source_epsg, target_epsg, always_xy=True)


def to_metric(geoms: np.ndarray, territory: Territory) -> np.ndarray:
    """New geometries reprojected from WGS84 to the territory's metric CRS (``territory.epsg``)."""
    forward = transformer(WGS84_EPSG, territory.epsg)
    return shapely.transform(np.asarray(geoms, dtype=object),
                             lambda xy: np.column_stack(forward.transform(xy[:, 0], xy[:, 1])))


def metric_groups(gdf: gpd.GeoDataFrame) -> Iterator[tuple[Territory, gpd.GeoDataFrame]]:
    """Split a WGS84 frame by territory and yield each part in that territory's metric CRS.

    Parts come in :data:`~essmap.domain.territories.TERRITORIES` order; each keeps the original
    index and columns, with its geometry reprojected (EPSG:2154 for metropolitan France and
    Corsica, 5490 for Guadeloupe and Martinique, 2972 Guyane, 2975 La Réunion, 4471 Mayotte...).
    Rows with neither geometry nor territory are left out.

    Raises
    ------
    SpatialInputError
        If ``gdf`` is not in EPSG:4326, or has features outside every territory.
    """
    require_wgs84(gdf, "gdf")
    for code, positions in positions_by_territory(territory_codes(gdf)).items():
        territory = TERRITORIES[code]
        yield territory, gdf.iloc[positions].to_crs(territory.epsg)


def take_or_na(values: pd.Series | pd.Index, positions: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[positions]`` with <NA> where a position is -1, keeping a nullable dtype (the
    columns of :func:`~essmap.geo.nearest` and :func:`~essmap.geo.points_in_polygons`)."""
    array = pd.Series(values).array
    if isinstance(array, pd.arrays.NumpyExtensionArray):
        array = pd.array(array.to_numpy())
    if isinstance(array.dtype, pd.StringDtype) and array.dtype.na_value is not pd.NA:
        array = array.astype(pd.StringDtype())  # pandas' default "str" misses as NaN, not <NA>
    return array.take(np.asarray(positions, dtype=np.int64), allow_fill=True)


def key_rank(keys: pd.Series) -> np.ndarray:
    """Rank (0, 1, ...) of each key in ascending order, missing keys last, equal keys by
    position: "the first code in alphabetical order" wherever there is a tie."""
    return pd.Series(keys).rank(method="first", na_option="bottom").to_numpy(dtype=np.int64) - 1
