"""The joins the store holds, computed at ingest so that a view only reads and aggregates.

After every build or ingest, :func:`refresh` brings the derived columns and tables up to date
with the layers, in the same transaction as the write (nothing in the store is ever stale):

- on every establishment and tiers-lieu: its commune proper (``code_com``: the published commune
  code, arrondissements municipaux rolled up to Paris, Lyon, Marseille; a point in polygon where
  the code is missing or unknown to the communes layer), the EPCI and région of that commune, and
  the QPV holding the point for each loaded generation (``code_qp_2024``, ``code_qp_2015``);
- ``qpv_communes``: the communes each QPV lies in (``insee_com``, rolled up);
- ``qpv_tiers_lieux``: QPV x tiers-lieux pairs within :data:`~essmap.domain.schema.STORED_RADIUS_M`
  with their geodesic distance, and for a QPV with none that near, its nearest tiers-lieu
  (tiers-lieux placed at their commune only are left out), so that coverage at any radius the
  dashboard offers, with any tiers-lieu filter, and the nearest tiers-lieu without one, are SQL
  aggregates;
- ``display_geometry``: boundaries simplified for display (when communes or QPVs changed);
- ``concordance``: establishments whose QPV differs from the one INSEE assigned
  (:mod:`essmap.store.concordance`).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap import geo
from essmap.domain import schema
from essmap.domain.selection import PLM_RANGES
from essmap.geo import simplify
from essmap.store.concordance import refresh_concordance
from essmap.store.read import read_layer
from essmap.store.write import delete_rows

#: Arrondissement code -> commune code, as SQL (the fixed PLM ranges, for codes the communes
#: layer does not list).
_PLM_SQL = "CASE " + " ".join(
    f"WHEN {{code}} BETWEEN '{low}' AND '{high}' THEN '{parent}'" for low, high, parent in PLM_RANGES
) + " END"


def plm_parent_sql(code: str) -> str:
    """SQL giving the commune of an arrondissement code by the PLM ranges (NULL otherwise)."""
    return _PLM_SQL.format(code=code)


#: Commune proper of each commune code of the communes layer.
_ROLLED_UP = (
    "SELECT code_insee, CASE WHEN type_commune = 'ARM' THEN coalesce(code_commune_parent, "
    + plm_parent_sql("code_insee") + ") ELSE code_insee END AS code_com FROM communes"
)


def refresh(con: duckdb.DuckDBPyConnection, *, changed: Iterable[str]) -> None:
    """Recompute what depends on the layers in ``changed`` (table names)."""
    changed = set(changed)
    if changed & {"communes", "qpv"}:
        refresh_qpv_communes(con)
    for table in schema.POINT_LAYERS:
        if changed & {"communes", "qpv", table}:
            refresh_memberships(con, table)
    if changed & {"communes", "qpv", "etablissements"}:
        refresh_concordance(con)
    if changed & {"qpv", "tiers_lieux"}:
        refresh_qpv_tiers_lieux(con)
    if "communes" in changed:
        refresh_display_geometry(con, levels="communes")
    if "qpv" in changed:
        refresh_display_geometry(con, levels="qpv")


def refresh_qpv_communes(con: duckdb.DuckDBPyConnection) -> None:
    delete_rows(con, "qpv_communes")
    con.execute(f"""
        INSERT INTO qpv_communes
        SELECT DISTINCT q.generation, q.code_qp, q.code, coalesce(c.code_com, {plm_parent_sql('q.code')}, q.code)
        FROM (SELECT generation, code_qp, trim(unnest(regexp_split_to_array(insee_com, '[,;[:space:]]+'))) AS code
              FROM qpv WHERE insee_com IS NOT NULL) q
        LEFT JOIN ({_ROLLED_UP}) c ON c.code_insee = q.code
        WHERE q.code <> ''""")


def refresh_memberships(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Fill the :data:`~essmap.domain.schema.MEMBERSHIPS` of every row of a point layer."""
    resets = ", ".join(f'"{c}" = NULL' for c in schema.MEMBERSHIPS)
    con.execute(f'UPDATE "{table}" SET {resets}')
    con.execute(f"""UPDATE "{table}" SET code_com = c.code_com FROM ({_ROLLED_UP}) c
                    WHERE "{table}".code_commune = c.code_insee""")
    con.execute(f"""UPDATE "{table}" SET code_com = {plm_parent_sql('code_commune')}
                    WHERE code_com IS NULL AND {plm_parent_sql('code_commune')} IS NOT NULL""")
    _locate_in_communes(con, table)
    con.execute(f"""UPDATE "{table}" SET siren_epci = c.siren_epci, code_region = c.code_region,
                           code_departement = coalesce("{table}".code_departement, c.code_departement)
                    FROM communes c WHERE "{table}".code_com = c.code_insee""")
    con.execute(f"""UPDATE "{table}" SET code_region = d.code_region FROM departements d
                    WHERE "{table}".code_region IS NULL AND "{table}".code_departement = d.code_departement""")
    for generation in schema.QPV_GENERATIONS:
        _locate_in_qpv(con, table, generation)


def _points(con: duckdb.DuckDBPyConnection, table: str, where: str = "TRUE") -> tuple[np.ndarray, gpd.GeoDataFrame]:
    """Row ids and point geometries (from longitude/latitude) of the rows matching ``where``."""
    found = con.execute(
        f'SELECT rowid, longitude, latitude FROM "{table}" '
        f"WHERE longitude IS NOT NULL AND latitude IS NOT NULL AND ({where})"
    ).fetchnumpy()
    lon, lat = np.asarray(found["longitude"], dtype=float), np.asarray(found["latitude"], dtype=float)
    points = gpd.GeoDataFrame(
        geometry=shapely.points(lon, lat),
        crs=4326,
    )
    return np.asarray(found["rowid"], dtype=np.int64), points


def _set_by_rowid(con: duckdb.DuckDBPyConnection, table: str, column: str, rowids: np.ndarray,
                  values: pd.Series) -> None:
    known = values.notna().to_numpy()
    if not known.any():
        return
    update = pd.DataFrame({"rid": rowids[known], "value": values[known].astype(str).to_numpy()})
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


def _locate_in_qpv(con: duckdb.DuckDBPyConnection, table: str, generation: str) -> None:
    qpv = read_layer(con, "qpv", columns=["code_qp", "generation"])
    qpv = qpv[(qpv["generation"] == generation).fillna(False).to_numpy(dtype=bool)]
    if qpv.empty:
        return
    rowids, points = _points(con, table)
    _set_by_rowid(con, table, schema.qpv_column(generation), rowids,
                  geo.points_in_polygons(points, qpv, "code_qp"))


def refresh_qpv_tiers_lieux(con: duckdb.DuckDBPyConnection) -> None:
    delete_rows(con, "qpv_tiers_lieux")
    tiers_lieux = read_layer(con, "tiers_lieux", columns=["id_tiers_lieu", "territoire", "precision_localisation"])
    # a place known by its commune only would invent distances: never paired
    precise = (tiers_lieux["precision_localisation"] != schema.LOCATION_COMMUNE).fillna(True).to_numpy(dtype=bool)
    tiers_lieux = tiers_lieux[tiers_lieux.geometry.notna().to_numpy() & precise].reset_index(drop=True)
    qpv = read_layer(con, "qpv", columns=["code_qp", "generation", "territoire"])
    if tiers_lieux.empty or qpv.empty:
        return
    found = geo.within_and_nearest(qpv, tiers_lieux, schema.STORED_RADIUS_M, "id_tiers_lieu")
    # a QPV with no tiers-lieu within the stored radius keeps its nearest one, farther away
    beyond = np.flatnonzero((found.nearest >= 0) & ~np.isin(np.arange(len(qpv)), found.source))
    source = np.concatenate([found.source, beyond])
    target = np.concatenate([found.target, found.nearest[beyond]])
    rows = pd.DataFrame({
        "generation": qpv["generation"].to_numpy(dtype=object)[source],
        "code_qp": qpv["code_qp"].to_numpy(dtype=object)[source],
        "id_tiers_lieu": tiers_lieux["id_tiers_lieu"].to_numpy(dtype=object)[target],
        "distance_m": np.concatenate([found.distance_m, found.nearest_distance_m[beyond]]),
    })
    con.register("_pairs", rows)
    try:
        con.execute("INSERT INTO qpv_tiers_lieux SELECT generation, code_qp, id_tiers_lieu, distance_m FROM _pairs")
    finally:
        con.unregister("_pairs")


def refresh_display_geometry(con: duckdb.DuckDBPyConnection, *, levels: str) -> None:
    """Simplified boundaries of the commune levels (commune, EPCI, département, région: simplified
    together, borders shared exactly) or of the QPVs (``levels`` "communes" or "qpv")."""
    if levels == "qpv":
        delete_rows(con, "display_geometry", where="level = ?", params=[simplify.QPV_LEVEL])
        shapes = simplify.qpv_geometries(read_layer(con, "qpv", columns=["code_qp"]))
    else:
        delete_rows(con, "display_geometry", where="level <> ?", params=[simplify.QPV_LEVEL])
        shapes = simplify.commune_level_geometries(read_layer(con, "communes"))
    if shapes.empty:
        return
    data = pd.DataFrame({
        "level": shapes["level"].astype(str).to_numpy(),
        "code": shapes["code"].astype(str).to_numpy(),
        "_wkb": shapely.to_wkb(shapes.geometry.to_numpy(), output_dimension=2),
    })
    con.register("_display", data)
    try:
        con.execute("INSERT INTO display_geometry SELECT level, code, ST_GeomFromWKB(_wkb) FROM _display")
    finally:
        con.unregister("_display")
