"""Builders of small canonical layers (``essmap.domain.schema`` columns) for the analysis tests,
and of a store holding them (the store computes its joins at ingest, as for real files).

Geometries are hand-built in lon/lat around real places; distances between them are set with
``pyproj.Geod`` (WGS84 ellipsoid), the independent reference of ``docs/domain.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod

GEOD = Geod(ellps="WGS84")


def square(lon: float, lat: float, half_side_m: float) -> shapely.Polygon:
    """A lon/lat square centred on (lon, lat), ``half_side_m`` metres from centre to side."""
    _, north, _ = GEOD.fwd(lon, lat, 0, half_side_m)
    east, _, _ = GEOD.fwd(lon, lat, 90, half_side_m)
    d_lon, d_lat = east - lon, north - lat
    return shapely.box(lon - d_lon, lat - d_lat, lon + d_lon, lat + d_lat)


def offset(lon: float, lat: float, azimuth: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` metres from (lon, lat) along ``azimuth`` (degrees from north)."""
    x, y, _ = GEOD.fwd(lon, lat, azimuth, distance_m)
    return float(x), float(y)


def qpv_frame(
    geometries: Sequence[shapely.Geometry],
    codes: Sequence[str],
    *,
    territoire: str | None = "metropole",
    insee_dep: Sequence[str] | str = "13",
    insee_com: Sequence[str] | str = "13055",
    generation: str = "2024",
) -> gpd.GeoDataFrame:
    """QPV layer with the canonical columns."""
    n = len(codes)

    def many(value: Sequence[str] | str) -> list[str]:
        return [value] * n if isinstance(value, str) else list(value)

    data = {
        "code_qp": pd.array(list(codes), dtype="string"),
        "lib_qp": pd.array([f"Quartier {c}" for c in codes], dtype="string"),
        "generation": pd.array([generation] * n, dtype="string"),
        "insee_dep": pd.array(many(insee_dep), dtype="string"),
        "insee_com": pd.array(many(insee_com), dtype="string"),
        "lib_com": pd.array([f"Commune {c}" for c in many(insee_com)], dtype="string"),
        "siren_epci": pd.array([pd.NA] * n, dtype="string"),
    }
    if territoire is not None:
        data["territoire"] = pd.array([territoire] * n, dtype="string")
    return gpd.GeoDataFrame(data, geometry=list(geometries), crs=4326)


def points_frame(
    lonlat: Sequence[tuple[float, float]], *, territoire: str | None = "metropole", **columns: object
) -> gpd.GeoDataFrame:
    """Point layer; ``columns`` are extra columns (scalars are broadcast)."""
    n = len(lonlat)
    data: dict[str, object] = {}
    if territoire is not None:
        data["territoire"] = pd.array([territoire] * n, dtype="string")
    for name, value in columns.items():
        many = isinstance(value, (list, tuple, np.ndarray, pd.api.extensions.ExtensionArray))
        data[name] = value if many else [value] * n
    geometry = shapely.points(np.asarray(lonlat, dtype=float).reshape(-1, 2)) if n else []
    return gpd.GeoDataFrame(data, geometry=geometry, crs=4326)


def tiers_lieux_frame(
    lonlat: Sequence[tuple[float, float]],
    *,
    ids: Sequence[str] | None = None,
    synthetic: Sequence[bool] | bool = False,
    code_commune: Sequence[str] | str = "13055",
    code_departement: Sequence[str] | str = "13",
    types: Sequence[str] | str = "coworking",
    labels: Sequence[str | None] | str | None = None,
    territoire: str | None = "metropole",
) -> gpd.GeoDataFrame:
    n = len(lonlat)
    ids = list(ids) if ids is not None else [f"TL{i + 1}" for i in range(n)]

    def many(value: object, dtype: str) -> pd.api.extensions.ExtensionArray:
        values = list(value) if isinstance(value, (list, tuple)) else [value] * n
        return pd.array(values, dtype=dtype)

    return points_frame(
        lonlat,
        territoire=territoire,
        id_tiers_lieu=pd.array(ids, dtype="string"),
        nom=pd.array([f"Tiers-lieu {i}" for i in ids], dtype="string"),
        code_commune=many(code_commune, "string"),
        code_departement=many(code_departement, "string"),
        types=many(types, "string"),
        labels=many(labels, "string"),
        is_synthetic=many(synthetic, "boolean"),
    )


def establishments_frame(rows: Sequence[dict[str, object]], *, territoire: str = "metropole") -> gpd.GeoDataFrame:
    """Establishments from dicts; missing fields get harmless defaults."""
    defaults: dict[str, object] = {
        "siren": None, "denomination": "Structure", "categorie_juridique": "9220",
        "famille": "association", "secteur": "action_sociale", "employeur": True,
        "tranche_effectifs": "01", "code_commune": "13055", "code_departement": "13",
        "is_synthetic": False, "lon": 5.37, "lat": 43.30,
    }
    full = [{**defaults, **row} for row in rows]
    for i, row in enumerate(full):
        row.setdefault("siret", f"{i:014d}")
        if row["siren"] is None:
            row["siren"] = str(row["siret"])[:9]
    frame = pd.DataFrame(full)
    out = gpd.GeoDataFrame(
        {
            "siret": frame["siret"].astype("string"),
            "siren": frame["siren"].astype("string"),
            "denomination": frame["denomination"].astype("string"),
            "categorie_juridique": frame["categorie_juridique"].astype("string"),
            "famille": frame["famille"].astype("string"),
            "secteur": frame["secteur"].astype("string"),
            "employeur": frame["employeur"].astype("boolean"),
            "tranche_effectifs": frame["tranche_effectifs"].astype("string"),
            "code_commune": frame["code_commune"].astype("string"),
            "code_departement": frame["code_departement"].astype("string"),
            "territoire": pd.array([territoire] * len(frame), dtype="string"),
            "is_synthetic": frame["is_synthetic"].astype("boolean"),
        },
        geometry=shapely.points(frame["lon"].to_numpy(float), frame["lat"].to_numpy(float)) if len(frame) else [],
        crs=4326,
    )
    return out


def communes_frame(rows: Sequence[tuple]) -> gpd.GeoDataFrame:
    """Communes from (code, nom, type, parent, population, dep, region, epci) tuples."""
    columns = ["code_insee", "nom", "type_commune", "code_commune_parent", "population",
               "code_departement", "code_region", "siren_epci"]
    frame = pd.DataFrame(list(rows), columns=columns)
    data = {c: frame[c].astype("string") for c in columns if c != "population"}
    data["population"] = frame["population"].astype("Int64")
    data["territoire"] = pd.array(["metropole"] * len(frame), dtype="string")
    data["epsg_metrique"] = np.full(len(frame), 2154, dtype=np.int32)
    return gpd.GeoDataFrame(data, geometry=[None] * len(frame), crs=4326)


#: Communes of the filter and indicator tests: a commune with arrondissements, EPCIs, two
#: départements of one région and a commune of another région.
SAMPLE_COMMUNES = [
    # code, nom, type, parent, population, dep, region, epci
    ("13055", "Marseille", "COM", None, 870_000, "13", "93", "200054807"),
    ("13201", "Marseille 1er Arrondissement", "ARM", "13055", 40_000, "13", "93", "200054807"),
    ("13202", "Marseille 2e Arrondissement", "ARM", "13055", 25_000, "13", "93", "200054807"),
    ("13001", "Aix-en-Provence", "COM", None, 143_000, "13", "93", "200054807"),
    ("13004", "Arles", "COM", None, 51_000, "13", "93", "241300417"),
    ("84007", "Avignon", "COM", None, 91_000, "84", "93", "248400251"),
    ("69123", "Lyon", "COM", None, 516_000, "69", "84", "200046977"),
]


@pytest.fixture
def sample_communes() -> gpd.GeoDataFrame:
    """:data:`SAMPLE_COMMUNES` as a communes layer (no geometry)."""
    return communes_frame(SAMPLE_COMMUNES)


@pytest.fixture
def build() -> Callable[..., object]:
    """Namespace of the builders above, for tests that prefer a fixture."""

    class Builders:
        pass

    ns = Builders()
    for f in (square, offset, qpv_frame, points_frame, tiers_lieux_frame, establishments_frame, communes_frame,
              make_store):
        setattr(ns, f.__name__, staticmethod(f))
    return ns


# --- A store holding hand-built layers ---------------------------------------------------------


def canonical(frame: gpd.GeoDataFrame, table: str) -> gpd.GeoDataFrame:
    """``frame`` with every canonical column of ``table`` (missing ones <NA>), positions of points
    copied into longitude/latitude."""
    from essmap.domain import schema
    from essmap.domain.territories import TERRITORIES

    out = frame.copy()
    for column, sql_type in schema.LAYERS[table].items():
        if column in out.columns:
            continue
        if column in ("longitude", "latitude"):
            geometry = out.geometry
            out[column] = geometry.x if column == "longitude" else geometry.y
        elif column == "epsg_metrique" and "territoire" in out.columns:
            out[column] = out["territoire"].map(lambda t: TERRITORIES[t].epsg if t in TERRITORIES else None)
        else:
            dtype = {"VARCHAR": "string", "BOOLEAN": "boolean", "DOUBLE": "Float64"}.get(sql_type, "Int64")
            out[column] = pd.array([pd.NA] * len(out), dtype=dtype)
    return out


#: The layers :func:`make_store` takes (keyword arguments of the same names).
STORE_LAYERS = ("communes", "qpv", "establishments", "tiers_lieux")


def make_store(path: Path, *, communes: gpd.GeoDataFrame | None = None, qpv: gpd.GeoDataFrame | None = None,
               establishments: gpd.GeoDataFrame | None = None,
               tiers_lieux: gpd.GeoDataFrame | None = None) -> Path:
    """A store at ``path`` holding the layers given, with its joins computed as an ingest does."""
    from essmap import store
    from essmap.domain import schema
    from essmap.store import joins

    layers = {"communes": communes, "qpv": qpv, "etablissements": establishments, "tiers_lieux": tiers_lieux}
    with store.atomic_update(path, start_empty=True) as con:
        for table, frame in layers.items():
            if frame is not None:
                store.insert_rows(con, table, canonical(frame, table), source_file=f"{table}.test")
        if communes is not None:
            deps = communes[["code_departement", "code_region"]].drop_duplicates("code_departement")
            names = {"13": "Bouches-du-Rhône", "84": "Vaucluse", "69": "Rhône"}
            departements = gpd.GeoDataFrame(
                {"code_departement": deps["code_departement"].astype("string").to_numpy(),
                 "nom": pd.array([names.get(d) for d in deps["code_departement"]], dtype="string"),
                 "code_region": deps["code_region"].astype("string").to_numpy()},
                geometry=[None] * len(deps), crs=4326)
            store.insert_rows(con, "departements", canonical(departements, "departements"))
        joins.refresh(con, changed=schema.FILE_LAYERS)
    return path


def layers_fingerprint(layers: dict[str, gpd.GeoDataFrame | None]) -> str:
    """A digest of the layers' content (column names and types, values, geometries as WKB, CRS):
    equal layers, equal digest."""
    digest = hashlib.sha256()
    for table, frame in sorted(layers.items()):
        digest.update(f"{table}:{frame is None}:{frame.crs if frame is not None else ''}".encode())
        if frame is None:
            continue
        digest.update(pd.util.hash_pandas_object(frame.index).to_numpy().tobytes())
        for column in frame.columns:
            values = frame[column]
            digest.update(f"{column}:{values.dtype}".encode())
            if isinstance(values.dtype, gpd.array.GeometryDtype):
                for wkb in shapely.to_wkb(values.to_numpy()):
                    digest.update(b"-" if wkb is None else len(wkb).to_bytes(8, "little") + wkb)
            else:
                digest.update(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def _built_stores(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """Stores already built this session, by :func:`layers_fingerprint` of their layers."""
    return tmp_path_factory.mktemp("analysis_stores"), {}


@pytest.fixture
def store_of(_built_stores) -> Iterator[Callable[..., object]]:
    """``store_of(communes=..., qpv=..., establishments=..., tiers_lieux=...)``: a read-only connection
    to a store holding those layers.

    A store costs about a second to build (schema, inserts, joins): the tests that ask for the same
    layers share one file, built once per session, each with its own read-only connection."""
    from essmap import store

    folder, built = _built_stores
    opened = []

    def build(**layers: gpd.GeoDataFrame | None):
        key = layers_fingerprint({table: layers.get(table) for table in STORE_LAYERS})
        if key not in built:
            built[key] = make_store(folder / f"store{len(built)}.duckdb", **layers)
        con = store.connect(built[key])
        opened.append(con)
        return con

    yield build
    for con in opened:
        con.close()
