"""Same-run baselines of the command-line cases: what an analyst would write with the libraries alone.

Each runs as a whole process, like ``essmap query``, on the same store and writes the same kind of
CSV, so that the two can be timed side by side and their answers compared:

- ``indicators``: the commune counts of ``essmap query indicators --level commune`` as one DuckDB
  ``GROUP BY`` over the memberships stored at ingest (establishments, employers, organisations, in a
  QPV, tiers-lieux, QPVs and QPVs with a tiers-lieu within the radius), fetched into pandas and
  written with ``to_csv``: the floor of what that command can cost on this store;
- ``qpv-radius``: for each QPV, the tiers-lieux within the radius and the nearest one, with
  GeoPandas on the QPV and tiers-lieu layers read from the store: per territory, ``to_crs`` to its
  metric CRS, ``sjoin(predicate="dwithin")`` and ``sjoin_nearest`` (planar distances in that CRS,
  where essmap reports geodesic ones).

Run: ``python bench/baselines.py indicators|qpv-radius --db STORE --out FILE [--radius 1000]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb

INDICATORS_SQL = """
WITH latest AS (SELECT max(generation) AS generation FROM qpv),
e AS (
    SELECT code_com, count(*) AS n, count(*) FILTER (WHERE employeur) AS n_emp, count(DISTINCT siren) AS n_org,
           count(*) FILTER (WHERE code_qp_2024 IS NOT NULL) AS n_in_qpv,
           count(*) FILTER (WHERE employeur AND code_qp_2024 IS NOT NULL) AS n_emp_in_qpv
    FROM etablissements GROUP BY code_com
), t AS (
    SELECT code_com, count(*) AS n_tl FROM tiers_lieux GROUP BY code_com
), covered AS (
    SELECT code_qp FROM qpv_tiers_lieux WHERE distance_m <= ? AND generation = (SELECT generation FROM latest)
    GROUP BY code_qp
), q AS (
    SELECT qc.code_com, count(DISTINCT qc.code_qp) AS n_qpv,
           count(DISTINCT qc.code_qp) FILTER (WHERE cv.code_qp IS NOT NULL) AS n_cov
    FROM qpv_communes qc LEFT JOIN covered cv USING (code_qp)
    WHERE qc.generation = (SELECT generation FROM latest)
    GROUP BY qc.code_com
)
SELECT c.code_insee AS code, c.nom, c.population,
       coalesce(e.n, 0) AS n_etablissements, coalesce(e.n_emp, 0) AS n_etablissements_employeurs,
       coalesce(e.n_org, 0) AS n_organisations,
       coalesce(e.n, 0) * 10000.0 / nullif(c.population, 0) AS etablissements_pour_10k_hab,
       coalesce(e.n_in_qpv, 0) AS n_etablissements_en_qpv, coalesce(e.n_emp_in_qpv, 0) AS n_employeurs_en_qpv,
       e.n_in_qpv / nullif(e.n, 0) AS part_etablissements_en_qpv,
       coalesce(t.n_tl, 0) AS n_tiers_lieux, coalesce(q.n_qpv, 0) AS n_qpv,
       coalesce(q.n_cov, 0) AS n_qpv_avec_tiers_lieu, q.n_cov / nullif(q.n_qpv, 0) AS part_qpv_avec_tiers_lieu
FROM communes c
LEFT JOIN e ON e.code_com = c.code_insee
LEFT JOIN t ON t.code_com = c.code_insee
LEFT JOIN q ON q.code_com = c.code_insee
WHERE c.type_commune = 'COM'
ORDER BY c.code_insee
"""


def _open(db: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"ATTACH '{db.resolve()}' AS store (READ_ONLY)")
    con.execute("USE store")
    return con


def indicators(db: Path, out: Path, radius_m: float) -> None:
    con = _open(db)
    try:
        frame = con.execute(INDICATORS_SQL, [radius_m]).df()
    finally:
        con.close()
    frame.to_csv(out, index=False)


def qpv_radius(db: Path, out: Path, radius_m: float) -> None:
    import geopandas as gpd
    import pandas as pd
    import shapely

    con = _open(db)
    try:
        qpv = con.execute("SELECT code_qp, epsg_metrique, ST_AsWKB(geometry) AS wkb FROM qpv "
                          "WHERE generation = (SELECT max(generation) FROM qpv)").df()
        tiers_lieux = con.execute("SELECT id_tiers_lieu, epsg_metrique, ST_AsWKB(geometry) AS wkb FROM tiers_lieux "
                                  "WHERE geometry IS NOT NULL").df()
    finally:
        con.close()
    qpv = gpd.GeoDataFrame(qpv.drop(columns="wkb"), geometry=shapely.from_wkb(qpv["wkb"].map(bytes)), crs=4326)
    tiers_lieux = gpd.GeoDataFrame(tiers_lieux.drop(columns="wkb"),
                                   geometry=shapely.from_wkb(tiers_lieux["wkb"].map(bytes)), crs=4326)
    parts = []
    for epsg, q in qpv.groupby("epsg_metrique", sort=True):
        q_m = q[["code_qp", "geometry"]].to_crs(int(epsg))
        t_m = tiers_lieux.loc[tiers_lieux["epsg_metrique"] == epsg, ["id_tiers_lieu", "geometry"]].to_crs(int(epsg))
        within = gpd.sjoin(q_m, t_m, how="inner", predicate="dwithin", distance=radius_m)
        counts = within.groupby("code_qp").size()
        nearest = gpd.sjoin_nearest(q_m, t_m, how="left", distance_col="nearest_distance_m")
        nearest = nearest[~nearest.index.duplicated(keep="first")]
        parts.append(pd.DataFrame({
            "code_qp": q_m["code_qp"].to_numpy(),
            "n_tiers_lieux": q_m["code_qp"].map(counts).fillna(0).astype(int).to_numpy(),
            "nearest_id": nearest["id_tiers_lieu"].to_numpy(),
            "nearest_distance_m": nearest["nearest_distance_m"].to_numpy(),
        }))
    result = pd.concat(parts, ignore_index=True).sort_values("code_qp")
    result["covered"] = result["n_tiers_lieux"] > 0
    result.to_csv(out, index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("case", choices=("indicators", "qpv-radius"))
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--radius", type=float, default=1000.0)
    args = parser.parse_args(argv)
    (indicators if args.case == "indicators" else qpv_radius)(args.db, args.out, args.radius)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
