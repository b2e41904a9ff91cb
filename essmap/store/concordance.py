"""Concordance of essmap's QPV of each establishment with the one INSEE assigned.

INSEE's geolocation file of SIRENE establishments gives, with each position, the QPV INSEE
assigned (``plg_qp24``, ``plg_qp15``), stored on the establishments as
``code_qp_insee_2024`` / ``code_qp_insee_2015`` (see :mod:`essmap.io.readers.sirene.rows`).
essmap computes its own QPV by point in polygon (``code_qp_2024`` / ``code_qp_2015``, see
:mod:`essmap.store.joins`).

An establishment is **compared**, for a generation, when its position comes from INSEE's
geolocation file (``source_position = 'geolocalisation'``: INSEE's QPV was assigned from that
very position), INSEE's file has a QPV column for the generation (``code_qp_insee_*`` not NULL),
and the store holds QPVs of that generation in the establishment's département (elsewhere
essmap has no polygon to compare with). The two agree when both name the same QPV or both none.

The ``concordance`` table lists every disagreement with the geodesic distance of the point to
the nearest QPV boundary of the generation (a point a few metres from a boundary is a geometry
or rounding matter; one far inside a QPV is not) and INSEE's geocoding quality. It is
recomputed in the same transaction as every write of establishments, QPVs or communes.
"""

from __future__ import annotations

import duckdb
import geopandas as gpd
import pandas as pd
import shapely

from essmap import geo
from essmap.domain import schema
from essmap.domain.formatting import format_number, format_percent
from essmap.io.readers.sirene import POSITION_GEOLOC
from essmap.store.read import arrow_frame, read_layer
from essmap.store.write import delete_rows


def _compared_sql(generation: str) -> str:
    """WHERE clause of the establishments compared for ``generation`` (one parameter: it)."""
    insee = schema.insee_qpv_column(generation)
    return (f"source_position = '{POSITION_GEOLOC}' AND \"{insee}\" IS NOT NULL AND longitude IS NOT NULL "
            "AND code_departement IN (SELECT DISTINCT insee_dep FROM qpv WHERE generation = ?)")


def _agree_sql(generation: str) -> str:
    essmap, insee = schema.qpv_column(generation), schema.insee_qpv_column(generation)
    return (f"coalesce(\"{essmap}\", '{schema.INSEE_OUTSIDE_QPV}') = \"{insee}\"")


def refresh_concordance(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the ``concordance`` table from the establishments and QPVs in the store."""
    delete_rows(con, "concordance")
    for generation in schema.QPV_GENERATIONS:
        essmap, insee = schema.qpv_column(generation), schema.insee_qpv_column(generation)
        rows = arrow_frame(con.execute(
            f'SELECT siret, code_departement, territoire, longitude, latitude, "{essmap}" AS essmap, '
            f'"{insee}" AS insee, qualite_xy FROM etablissements '
            f"WHERE {_compared_sql(generation)} AND NOT ({_agree_sql(generation)}) ORDER BY siret",
            [generation]).arrow())
        if rows.empty:
            continue
        points = gpd.GeoDataFrame(rows[["territoire"]], geometry=shapely.points(
            rows["longitude"].to_numpy(dtype=float), rows["latitude"].to_numpy(dtype=float)), crs=4326)
        qpv = read_layer(con, "qpv", columns=["code_qp", "generation", "territoire"])
        qpv = qpv[(qpv["generation"] == generation).fillna(False).to_numpy(dtype=bool)]
        boundaries = gpd.GeoDataFrame(qpv[["code_qp", "territoire"]], geometry=qpv.geometry.boundary, crs=4326)
        nearest = geo.nearest(points, boundaries.reset_index(drop=True), "code_qp")
        insee_code = rows["insee"].where(rows["insee"] != schema.INSEE_OUTSIDE_QPV, pd.NA)
        table = pd.DataFrame({
            "generation": generation,
            "siret": rows["siret"].astype(str).to_numpy(),
            "code_departement": rows["code_departement"].to_numpy(dtype=object),
            "code_qp_essmap": rows["essmap"].to_numpy(dtype=object),
            "code_qp_insee": insee_code.to_numpy(dtype=object),
            "distance_limite_m": nearest["distance_m"].astype("float64").to_numpy(),
            "qualite_xy": rows["qualite_xy"].to_numpy(dtype=object),
        })
        con.register("_concordance", table)
        try:
            con.execute("INSERT INTO concordance SELECT generation, siret, code_departement, code_qp_essmap, "
                        "code_qp_insee, distance_limite_m, qualite_xy FROM _concordance")
        finally:
            con.unregister("_concordance")


def concordance_by_departement(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Agreement of essmap's QPV with INSEE's, per generation and département.

    Columns ``generation``, ``code_departement``, ``comparés``, ``concordants``, ``discordants``
    and ``taux`` (share of agreeing establishments, 0 to 1); one row per generation and
    département with at least one compared establishment. Empty when no INSEE geolocation file
    was loaded (or no QPV of its generations).
    """
    parts = []
    for generation in schema.QPV_GENERATIONS:
        parts.append(arrow_frame(con.execute(
            f"SELECT ? AS generation, code_departement, count(*) AS comparés, "
            f"count(*) FILTER ({_agree_sql(generation)}) AS concordants FROM etablissements "
            f"WHERE {_compared_sql(generation)} GROUP BY code_departement ORDER BY code_departement",
            [generation, generation]).arrow()))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if out.empty:
        return pd.DataFrame(columns=["generation", "code_departement", "comparés", "concordants", "discordants",
                                     "taux"])
    out["comparés"] = out["comparés"].astype("int64")
    out["concordants"] = out["concordants"].astype("int64")
    out["discordants"] = out["comparés"] - out["concordants"]
    out["taux"] = out["concordants"] / out["comparés"]
    return out.reset_index(drop=True)


def concordance_disagreements(con: duckdb.DuckDBPyConnection, *, limit: int | None = None) -> pd.DataFrame:
    """The ``concordance`` table: disagreements, nearest to a boundary last (the surprising first)."""
    sql = ("SELECT * FROM concordance ORDER BY generation DESC, distance_limite_m DESC NULLS FIRST, siret"
           + (f" LIMIT {int(limit)}" if limit is not None else ""))
    return arrow_frame(con.execute(sql).arrow())


def concordance_sentences(summary: pd.DataFrame) -> list[str]:
    """French lines for a build summary or ``essmap info``, one per generation and département."""
    if summary.empty:
        return ["Concordance avec l'INSEE (QPV) : non calculée — aucun établissement placé par le fichier de "
                "géolocalisation de l'INSEE dans un département dont les QPV sont chargés."]
    lines = []
    for generation, part in summary.groupby("generation", sort=False):
        compared, agreeing = int(part["comparés"].sum()), int(part["concordants"].sum())
        lines.append(f"Concordance avec l'INSEE, QPV {generation} : {format_percent(agreeing / compared)} "
                     f"({format_number(agreeing)} établissement(s) sur {format_number(compared)} classés dans le "
                     "même QPV, ou hors QPV pour les deux).")
        for row in part.itertuples(index=False):
            lines.append(f"  {row.code_departement} : {format_percent(row.taux)} ({format_number(row.concordants)} "
                         f"sur {format_number(row.comparés)} ; {format_number(row.discordants)} désaccord(s))")
    return lines
