"""The memberships of point rows (commune proper, EPCI, région, QPV of each generation).

Computed on any table with the columns of a point layer: the layer itself when the communes or
the QPVs change (:func:`essmap.store.joins.refresh`), or the staging table of the rows an insert
adds (:func:`essmap.store.write.insert_rows`), so that an ingest of establishments locates its
own rows only, never the whole layer again.
"""

from __future__ import annotations

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from essmap import geo
from essmap.domain import schema
from essmap.domain.selection import PLM_RANGES
from essmap.store.read import read_layer

#: Arrondissement code -> commune code, as SQL (the fixed PLM ranges, for codes the communes
#: layer does not list).
_PLM_SQL = "CASE " + " ".join(
    f"WHEN {{code}} BETWEEN '{low}' AND '{high}' THEN '{parent}'" for low, high, parent in PLM_RANGES
) + " END"


def plm_parent_sql(code: str) -> str:
    """SQL giving the commune of an arrondissement code by the PLM ranges (NULL otherwise)."""
    return _PLM_SQL.format(code=code)


#: Commune proper of each commune code of the communes layer.
ROLLED_UP_SQL = (
    "SELECT code_insee, CASE WHEN type_commune = 'ARM' THEN coalesce(code_commune_parent, "
    + plm_parent_sql("code_insee") + ") ELSE code_insee END AS code_com FROM communes"
)


def fill_memberships(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Fill the :data:`~essmap.domain.schema.MEMBERSHIPS` of every row of ``table`` (a point
    layer, or a staging table with its columns) from the communes, départements and QPV layers."""
    resets = ", ".join(f'"{c}" = NULL' for c in schema.MEMBERSHIPS)
    con.execute(f'UPDATE "{table}" SET {resets}')
    con.execute(f"""UPDATE "{table}" SET code_com = c.code_com FROM ({ROLLED_UP_SQL}) c
                    WHERE "{table}".code_commune = c.code_insee""")
    con.execute(f"""UPDATE "{table}" SET code_com = {plm_parent_sql('code_commune')}
                    WHERE code_com IS NULL AND {plm_parent_sql('code_commune')} IS NOT NULL""")
    _locate_in_communes(con, table)
    con.execute(f"""UPDATE "{table}" SET siren_epci = c.siren_epci, code_region = c.code_region,
                           code_departement = coalesce("{table}".code_departement, c.code_departement)
                    FROM communes c WHERE "{table}".code_com = c.code_insee""")
    con.execute(f"""UPDATE "{table}" SET code_region = d.code_region FROM departements d
                    WHERE "{table}".code_region IS NULL AND "{table}".code_departement = d.code_departement""")
    _locate_in_qpv(con, table)


def _points(con: duckdb.DuckDBPyConnection, table: str, where: str = "TRUE") -> tuple[np.ndarray, gpd.GeoDataFrame]:
    """Row ids and point geometries (from longitude/latitude) of the rows matching ``where``."""
    found = con.execute(
        f'SELECT rowid, longitude, latitude FROM "{table}" '
        f"WHERE longitude IS NOT NULL AND latitude IS NOT NULL AND ({where})"
    ).fetchnumpy()
    lon, lat = np.asarray(found["longitude"], dtype=float), np.asarray(found["latitude"], dtype=float)
    points = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs=4326)
    return np.asarray(found["rowid"], dtype=np.int64), points


def _set_by_rowid(con: duckdb.DuckDBPyConnection, table: str, column: str, rowids: np.ndarray,
                  values: pd.Series) -> None:
    """Set ``column`` of the rows ``rowids`` (of this table, in this transaction) to ``values``
    (text); rows whose value is missing are left as they are."""
    known = values.notna().to_numpy()
    if not known.any():
        return
    update = pa.table({
        "rid": pa.array(rowids[known], type=pa.int64()),
        "value": pa.array(values[known].astype(str).to_numpy(dtype=object), type=pa.string()),
    })
    con.register("_memberships", update)
    try:
        con.execute(f'UPDATE "{table}" SET "{column}" = m.value FROM _memberships m WHERE "{table}".rowid = m.rid')
    finally:
        con.unregister("_memberships")


def _locate_in_communes(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Point in polygon for the rows whose commune code is missing or unknown to the communes layer."""
    rowids, points = _points(con, table, "code_com IS NULL")
    if len(rowids) == 0:
        return
    communes = read_layer(con, "communes", columns=["code_insee", "type_commune"])
    communes = communes[(communes["type_commune"] != "ARM").fillna(True).to_numpy(dtype=bool)]
    if communes.empty:
        return
    _set_by_rowid(con, table, "code_com", rowids, geo.points_in_polygons(points, communes, "code_insee"))


def _locate_in_qpv(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """The QPV holding each point, for each generation loaded (the points are built once)."""
    qpv = read_layer(con, "qpv", columns=["code_qp", "generation"])
    generations = [g for g in schema.QPV_GENERATIONS if (qpv["generation"] == g).fillna(False).any()]
    if not generations:
        return
    rowids, points = _points(con, table)
    if len(rowids) == 0:
        return
    for generation in generations:
        polygons = qpv[(qpv["generation"] == generation).fillna(False).to_numpy(dtype=bool)]
        _set_by_rowid(con, table, schema.qpv_column(generation), rowids,
                      geo.points_in_polygons(points, polygons, "code_qp"))
