"""Shared ground of the spatial queries: input validation (WGS84 only), each feature's
territory and its metric CRS, reprojection, a second thread, a cache of what is built from a
layer, and small array helpers."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from essmap.domain.errors import SpatialInputError
from essmap.domain.territories import TERRITORIES, Territory, territory_of_lonlat

#: The only CRS accepted as input: WGS84, longitude/latitude order.
WGS84_EPSG = 4326

_POINT_TYPE_ID = 0


# --- Validation and territories ----------------------------------------------------------------


def require_wgs84(frame: gpd.GeoDataFrame, name: str) -> None:
    """Raise :class:`SpatialInputError` unless ``frame`` is a GeoDataFrame in EPSG:4326.

    ``name`` is the argument name, quoted in the (French) message with both CRSs.
    """
    if not isinstance(frame, gpd.GeoDataFrame):
        raise SpatialInputError(
            f"« {name} » doit être un GeoDataFrame (reçu : {type(frame).__name__})."
        )
    crs = frame.crs
    if crs is None:
        raise SpatialInputError(
            f"« {name} » n'a pas de système de coordonnées ; attendu EPSG:{WGS84_EPSG} "
            "(WGS84, longitude/latitude). Solution : déclarez-le avec .set_crs(4326) si les "
            "coordonnées sont bien des longitudes/latitudes."
        )
    if CRS.from_user_input(crs).to_epsg() != WGS84_EPSG:
        raise SpatialInputError(
            f"« {name} » est en {_crs_label(crs)} ; attendu EPSG:{WGS84_EPSG} (WGS84, "
            "longitude/latitude). Solution : reprojetez-le avec .to_crs(4326) : les distances "
            "sont ensuite calculées dans le système métrique de chaque territoire."
        )


def _crs_label(crs: object) -> str:
    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    return f"EPSG:{epsg} ({parsed.name})" if epsg else parsed.name


def territory_codes(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Territory code of each row (object array, "" for rows without geometry nor territory).

    The canonical ``territoire`` column wins; rows where it is absent, empty or unknown are
    located by the bounding box of their representative point
    (:func:`essmap.domain.territories.territory_of_lonlat`). A row with a geometry that lies in no
    territory raises :class:`SpatialInputError`: distances there would have no metric CRS.
    """
    names = np.array([*TERRITORIES, ""], dtype=object)
    return names[_territory_labels(frame)]


_TERRITORY_CODES: tuple[str, ...] = tuple(TERRITORIES)


def _territory_labels(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Index in :data:`TERRITORIES` of each row's territory, -1 when none (see
    :func:`territory_codes`). Works on the distinct values of ``territoire`` only."""
    n = len(frame)
    labels = np.full(n, -1, dtype=np.int64)
    if "territoire" in frame.columns:
        column_labels, uniques = pd.factorize(frame["territoire"], use_na_sentinel=True)
        lookup = np.array(
            [_TERRITORY_CODES.index(u) if u in TERRITORIES else -1 for u in uniques] + [-1],
            dtype=np.int64,
        )
        labels = lookup[column_labels]  # -1 (missing) picks the trailing -1
    unknown = np.flatnonzero(labels < 0)
    if len(unknown) == 0:
        return labels
    geoms = _geoms(frame)[unknown]
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    lon = np.full(len(geoms), np.nan)
    lat = np.full(len(geoms), np.nan)
    if present.any():
        rep = geoms[present]
        not_point = shapely.get_type_id(rep) != _POINT_TYPE_ID
        if not_point.any():
            rep = rep.copy()
            rep[not_point] = shapely.point_on_surface(rep[not_point])
        lon[present] = shapely.get_x(rep)
        lat[present] = shapely.get_y(rep)
    located = territory_of_lonlat(lon, lat)
    lost = present & (located == "")
    if lost.any():
        labels_lost = frame.index[unknown[lost]][:5].tolist()
        raise SpatialInputError(
            f"{int(lost.sum())} entité(s) hors de tout territoire couvert (index {labels_lost}) : "
            "aucun système métrique pour mesurer leurs distances. Solution : vérifiez l'ordre "
            "longitude/latitude des coordonnées, ou renseignez la colonne « territoire »."
        )
    lookup = {code: k for k, code in enumerate(_TERRITORY_CODES)}
    labels[unknown] = pd.Series(located, dtype=object).map(lookup).fillna(-1).to_numpy(dtype=np.int64)
    return labels


def _positions_by_territory(frame: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    """Row positions of each territory present, in :data:`TERRITORIES` order."""
    labels = _territory_labels(frame)
    counts = np.bincount(labels + 1, minlength=len(_TERRITORY_CODES) + 1)[1:]
    out: dict[str, np.ndarray] = {}
    for k in np.flatnonzero(counts):
        # the usual case, one territory for every row, needs no index array scan
        whole = counts[k] == len(labels)
        out[_TERRITORY_CODES[k]] = np.arange(len(labels)) if whole else np.flatnonzero(labels == k)
    return out


def _shared_territories(
    a: gpd.GeoDataFrame, b: gpd.GeoDataFrame
) -> Iterator[tuple[Territory, np.ndarray, np.ndarray]]:
    """(territory, positions in ``a``, positions in ``b``) for each territory both have:
    features of different territories are never paired."""
    by_b = _positions_by_territory(b)
    for code, pa in _positions_by_territory(a).items():
        pb = by_b.get(code)
        if pb is not None:
            yield TERRITORIES[code], pa, pb


def _geoms(frame: gpd.GeoDataFrame) -> np.ndarray:
    """The geometry column as an object array of shapely geometries (no copy of geometries)."""
    return np.asarray(frame.geometry.array, dtype=object)


_TRANSFORMERS = threading.local()


def _transformer(epsg: int) -> Transformer:
    """WGS84 -> ``epsg`` transformer (lon/lat order), cached per thread (pyproj objects are not
    meant to be shared between threads, and Streamlit serves each session on its own thread)."""
    cache = getattr(_TRANSFORMERS, "cache", None)
    if cache is None:
        cache = _TRANSFORMERS.cache = {}
    if epsg not in cache:
        cache[epsg] = Transformer.from_crs(WGS84_EPSG, epsg, always_xy=True)
    return cache[epsg]


def to_metric(geoms: np.ndarray, territory: Territory) -> np.ndarray:
    """New geometries reprojected from WGS84 to the territory's metric CRS (``territory.epsg``)."""
    transformer = _transformer(territory.epsg)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(np.asarray(geoms, dtype=object), project)


def metric_groups(gdf: gpd.GeoDataFrame) -> Iterator[tuple[Territory, gpd.GeoDataFrame]]:
    """Split a WGS84 frame by territory and yield each part in that territory's metric CRS.

    Parts come in :data:`~essmap.domain.territories.TERRITORIES` order; each keeps the original index
    and columns, with its geometry reprojected (EPSG:2154 for metropolitan France and Corsica,
    5490 for Guadeloupe and Martinique, 2972 Guyane, 2975 La Réunion, 4471 Mayotte...). Rows
    with neither geometry nor territory are left out.

    Raises
    ------
    SpatialInputError
        If ``gdf`` is not in EPSG:4326, or has features outside every territory.
    """
    require_wgs84(gdf, "gdf")
    for code, positions in _positions_by_territory(gdf).items():
        territory = TERRITORIES[code]
        yield territory, gdf.iloc[positions].to_crs(territory.epsg)



def _require_column(frame: pd.DataFrame, column: str, name: str) -> None:
    if column not in frame.columns:
        raise KeyError(
            f"« {name} » n'a pas de colonne « {column} » (colonnes : {list(frame.columns)})."
        )



# --- A second thread ----------------------------------------------------------------------------

#: Logical CPUs this process may use (its affinity mask, not the machine's count).
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="essmap-spatial")

_Here = TypeVar("_Here")
_There = TypeVar("_There")


def _side_by_side(here: Callable[[], _Here], there: Callable[[], _There]) -> tuple[_Here, _There]:
    """``(here(), there())``, ``there`` offered to the shared worker thread: Shapely, numpy and
    pyproj release the GIL, so two free cores compute both at once. If the worker has not
    started ``there`` when ``here`` is done (it serves another query), it runs on this thread:
    a busy machine costs no waiting, and nested calls cannot deadlock."""
    pending = _WORKER.submit(there)
    first = here()
    return first, (there() if pending.cancel() else pending.result())


# --- What is built once per layer ------------------------------------------------------------

_Built = TypeVar("_Built")


class LayerCache(Generic[_Built]):
    """A small least-recently-used cache of what a query builds from a layer's geometries
    (reprojections, spatial indexes), keyed by the identity of those geometries.

    Shapely geometries are immutable and each entry keeps the array it was built from, so equal
    identities mean equal shapes: a frame changed in place (a geometry replaced) is another
    layer. The dashboard asks the same QPVs, communes and tiers-lieux again and again; this is
    what a database's index is to its table. Safe to use from several threads (an entry is
    published only once built; two threads may build the same one, the last one is kept).
    """

    def __init__(self, size: int, max_geometries: int) -> None:
        #: Entries kept, and the largest layer kept (bounds the memory).
        self.size = size
        self.max_geometries = max_geometries
        self._entries: dict[bytes, _Built] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, geoms: np.ndarray, build: Callable[[np.ndarray], _Built], *, extra: bytes = b"") -> _Built:
        """The entry for ``geoms`` (and ``extra``, anything else the entry depends on), built
        by ``build(copy of geoms)`` when missing: the entry must hold that copy."""
        key = _identities(geoms).tobytes() + extra
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._entries[key] = entry  # now the most recently used
                return entry
        entry = build(geoms.copy())
        if len(geoms) <= self.max_geometries:
            with self._lock:
                while len(self._entries) >= self.size:
                    del self._entries[next(iter(self._entries))]
                self._entries[key] = entry
        return entry


def _identities(objects: np.ndarray) -> np.ndarray:
    """``id`` of each element of an object array, read from the array's memory: in CPython an
    object array holds the addresses of its elements, which are their ids (a hundred times
    faster than ``map(id, ...)``, which costs most of a cache look-up otherwise)."""
    objects = np.ascontiguousarray(objects, dtype=object)
    addresses = (ctypes.c_int64 * len(objects)).from_address(objects.ctypes.data)
    return np.ctypeslib.as_array(addresses).copy()


# --- Small array helpers -----------------------------------------------------------------------


def _key_rank(keys: pd.Series | pd.api.extensions.ExtensionArray) -> np.ndarray:
    """Rank of each row in ascending key order (missing keys last, ties by position).

    Sorted by the array itself (pyarrow for the usual string keys): several times faster than a
    pandas sort of Python objects, which mattered for the dashboard's repeated radius query."""
    array = keys.array if isinstance(keys, pd.Series) else keys
    order = array.argsort(kind="stable", na_position="last")
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys), dtype=np.int64)
    return rank


def take_or_na(values: pd.Series | pd.Index, positions: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[positions]`` with <NA> where a position is -1, keeping a nullable dtype (the
    columns of :func:`nearest` and :func:`points_in_polygons`)."""
    array = pd.Series(values).array
    if isinstance(array, pd.arrays.NumpyExtensionArray):
        array = pd.array(array.to_numpy())
    if isinstance(array.dtype, pd.StringDtype) and array.dtype.na_value is not pd.NA:
        array = array.astype(pd.StringDtype())  # pandas' default "str" misses as NaN, not <NA>
    return array.take(np.asarray(positions, dtype=np.int64), allow_fill=True)


def _first_per_group(group: np.ndarray, *sort_keys: np.ndarray) -> np.ndarray:
    """Positions (into the inputs) of the first element of each group by ``sort_keys``."""
    order = np.lexsort(tuple(reversed(sort_keys)) + (group,))
    sorted_group = group[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_group[1:] != sorted_group[:-1]
    return order[first]


def _part(geoms: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``geoms[positions]``, without a copy when the positions are all rows in order."""
    return geoms if len(positions) == len(geoms) else geoms[positions]


def _usable(geoms: np.ndarray) -> np.ndarray:
    return ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
