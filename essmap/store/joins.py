"""The joins the store holds, computed at ingest so that a view only reads and aggregates.

After every build or ingest, :func:`refresh` brings the derived columns and tables up to date
with the layers, in the same transaction as the write (nothing in the store is ever stale):

- on every establishment and tiers-lieu (:mod:`essmap.store.memberships`; the rows an insert adds
  get theirs at the insert, every row gets them again when the communes or the QPVs change): its
  commune proper (``code_com``: the published commune code, arrondissements municipaux rolled up
  to Paris, Lyon, Marseille; a point in polygon where the code is missing or unknown to the
  communes layer), the EPCI and région of that commune, and the QPV holding the point for each
  loaded generation (``code_qp_2024``, ``code_qp_2015``);
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
import numpy as np
import pandas as pd
import shapely

from essmap import geo
from essmap.domain import schema
from essmap.geo import simplify
from essmap.store.concordance import refresh_concordance
from essmap.store.memberships import ROLLED_UP_SQL, fill_memberships, plm_parent_sql
from essmap.store.read import read_layer
from essmap.store.write import delete_rows


def refresh(con: duckdb.DuckDBPyConnection, *, changed: Iterable[str], located: Iterable[str] = (),
            displayed: Iterable[str] = ()) -> None:
    """Recompute what depends on the layers in ``changed`` (table names).

    ``located``: point layers written whole after the communes and QPVs of this same write (full
    builds), whose rows got their memberships at insert from the final polygons: not located twice.
    ``displayed``: ``communes`` and/or ``qpv`` when this same write already computed their display
    geometries (:func:`refresh_display_geometry`) from their final rows: not simplified twice.
    """
    changed, located, displayed = set(changed), set(located), set(displayed)
    if changed & {"communes", "qpv"}:
        refresh_qpv_communes(con)
        # the rows an insert adds come with their memberships (write.insert_rows): only a change of
        # the polygons they are computed from makes every row's memberships stale
        for table in schema.POINT_LAYERS:
            if table not in located:
                fill_memberships(con, table)
    if changed & {"communes", "qpv", "etablissements"}:
        refresh_concordance(con)
    if changed & {"qpv", "tiers_lieux"}:
        refresh_qpv_tiers_lieux(con)
    if "communes" in changed - displayed:
        refresh_display_geometry(con, levels="communes")
    if "qpv" in changed - displayed:
        refresh_display_geometry(con, levels="qpv")


def refresh_qpv_communes(con: duckdb.DuckDBPyConnection) -> None:
    delete_rows(con, "qpv_communes")
    con.execute(f"""
        INSERT INTO qpv_communes
        SELECT DISTINCT q.generation, q.code_qp, q.code, coalesce(c.code_com, {plm_parent_sql('q.code')}, q.code)
        FROM (SELECT generation, code_qp, trim(unnest(regexp_split_to_array(insee_com, '[,;[:space:]]+'))) AS code
              FROM qpv WHERE insee_com IS NOT NULL) q
        LEFT JOIN ({ROLLED_UP_SQL}) c ON c.code_insee = q.code
        WHERE q.code <> ''""")


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
    geometries = shapes.geometry.to_numpy()
    inside = shapely.point_on_surface(geometries)  # a QPV's dot on the map (its bounds' centre can fall outside)
    data = pd.DataFrame({
        "level": shapes["level"].astype(str).to_numpy(),
        "code": shapes["code"].astype(str).to_numpy(),
        "_wkb": shapely.to_wkb(geometries, output_dimension=2),
        # what a view sends, written here once instead of for every view (40 ms of a large département's)
        "geojson": simplify.geojson_texts(geometries),
        "anchor_lon": shapely.get_x(inside),
        "anchor_lat": shapely.get_y(inside),
    })
    con.register("_display", data)
    try:
        con.execute("INSERT INTO display_geometry SELECT level, code, ST_GeomFromWKB(_wkb), geojson, anchor_lon, "
                    "anchor_lat FROM _display")
    finally:
        con.unregister("_display")
