"""What a view reads: counts per unit, breakdowns, points, QPV coverage, display geometry, names.

Every query aggregates in DuckDB on the memberships stored at ingest (:mod:`essmap.store.joins`)
with the whole selection pushed down (:mod:`essmap.store.filters`): no point in polygon and no
geometry decoding happens at view time, except for the display geometry of the units drawn and
the points shown. Results are plain frames; rates and shares are derived by
:mod:`essmap.analysis.indicators`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import duckdb

from essmap.domain import schema
from essmap.domain.schema import WGS84
from essmap.domain.selection import Selection
from essmap.store import filters
from essmap.store.connection import execute_literal
from essmap.store.read import arrow_frame, frame_from_arrow

# pandas is imported where frames are built (:mod:`essmap.store.read`), geopandas and shapely where geometry
# is: a CLI query that prints rows starts without them
if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

#: Column of the point layers holding each row's unit, by level (QPV: the generation's column).
POINT_UNIT_COLUMN: dict[str, str] = {
    "commune": "code_com",
    "epci": "siren_epci",
    "departement": "code_departement",
    "region": "code_region",
}

#: Table naming the units of each upper level.
_NAME_TABLES: dict[str, tuple[str, str]] = {
    "epci": ("epci", "siren_epci"),
    "departement": ("departements", "code_departement"),
    "region": ("regions", "code_region"),
}

#: Columns of :func:`unit_counts`, besides ``code``, ``nom``, ``population``.
COUNT_COLUMNS: tuple[str, ...] = (
    "n_etablissements", "n_etablissements_employeurs", "n_organisations", "n_etablissements_en_qpv",
    "n_employeurs_en_qpv", "n_tiers_lieux", "n_qpv", "n_qpv_avec_tiers_lieu",
)


def qpv_generations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """QPV generations loaded, newest first."""
    loaded = {r[0] for r in con.execute("SELECT DISTINCT generation FROM qpv").fetchall()}
    return [g for g in schema.QPV_GENERATIONS if g in loaded]


def generation_of(con: duckdb.DuckDBPyConnection, selection: Selection) -> str | None:
    """The selection's QPV generation, else the newest loaded (None without QPV)."""
    if selection.qpv_generation is not None:
        return selection.qpv_generation
    loaded = qpv_generations(con)
    return loaded[0] if loaded else None


def _point_unit(level: str, generation: str | None) -> str:
    if level == "qpv":
        return schema.qpv_column(generation) if generation else "NULL"
    return POINT_UNIT_COLUMN[level]


def _units_sql(level: str, selection: Selection, generation: str | None) -> tuple[str, list[object]]:
    """One row per unit of ``level`` touching the selection's territory: code, nom, population.

    A unit is always whole: an EPCI that spans two départements has the population of all its
    communes, whichever département is selected (the map draws it whole too).
    """
    if level == "qpv":
        where = filters.qpv(selection, generation)
        return (f"SELECT q.code_qp AS code, q.lib_qp AS nom, NULL::BIGINT AS population FROM qpv q "
                f"WHERE {where.sql}", where.params)
    where = filters.communes(selection, alias="c")
    where.add("coalesce(c.type_commune, 'COM') <> 'ARM'")
    if level == "commune":
        return (f"SELECT c.code_insee AS code, c.nom, c.population FROM communes c WHERE {where.sql}",
                where.params)
    table, key = _NAME_TABLES[level]
    return (f"""SELECT c.{key} AS code, any_value(n.nom) AS nom, sum(c.population)::BIGINT AS population
                FROM communes c LEFT JOIN {table} n ON n.{key} = c.{key}
                WHERE coalesce(c.type_commune, 'COM') <> 'ARM'
                  AND c.{key} IN (SELECT c.{key} FROM communes c WHERE {where.sql})
                GROUP BY c.{key}""", where.params)


def _within_units(selection: Selection) -> Selection:
    """The selection without its territory filters but the QPV one: counted rows are those of the units."""
    return dataclasses.replace(selection, region=None, departements=(), epci=(), communes=())


def _qpv_unit_sql(level: str) -> str:
    """(code_qp, unit) pairs of the selected QPVs ``sq``: each QPV once per unit it touches."""
    if level == "qpv":
        return "SELECT code_qp, code_qp AS unit FROM sq"
    if level == "departement":
        return "SELECT code_qp, insee_dep AS unit FROM sq"
    if level == "region":
        return ("SELECT sq.code_qp, d.code_region AS unit FROM sq "
                "JOIN departements d ON d.code_departement = sq.insee_dep")
    unit = "qc.code_com" if level == "commune" else "coalesce(c.siren_epci, sq.siren_epci)"
    return (f"SELECT DISTINCT sq.code_qp, {unit} AS unit FROM sq "
            "JOIN qpv_communes qc ON qc.generation = sq.generation AND qc.code_qp = sq.code_qp "
            "LEFT JOIN communes c ON c.code_insee = qc.code_com")


def unit_counts(con: duckdb.DuckDBPyConnection, level: str, selection: Selection, *,
                radius_m: float) -> pd.DataFrame:
    """Counts per unit of ``level`` in the selection: the inputs of every indicator (see :func:`unit_counts_sql`)."""
    sql, params = unit_counts_sql(con, level, selection, radius_m=radius_m)
    return arrow_frame(con.execute(sql, params).arrow())


def unit_counts_sql(con: duckdb.DuckDBPyConnection, level: str, selection: Selection, *,
                    radius_m: float) -> tuple[str, list[object]]:
    """The query of the counts per unit of ``level`` in the selection, and its parameters.

    Units are those touching the selection's territory, each counted whole (see :func:`_units_sql`);
    establishments and tiers-lieux of a unit are those the selection's other filters keep; QPVs those
    of its generation lying in the unit, covered when a tiers-lieu kept by the selection's tiers-lieu filters (any
    territory: a QPV can be covered from across a border) lies within ``radius_m``
    (``radius_m`` at most :data:`~essmap.domain.schema.STORED_RADIUS_M`).

    Returns one row per unit sorted by code: ``code``, ``nom``, ``population``,
    :data:`COUNT_COLUMNS` and ``inclut_donnees_simulees``.
    """
    if radius_m > schema.STORED_RADIUS_M:
        raise ValueError(f"rayon {radius_m} m au-delà des {schema.STORED_RADIUS_M:.0f} m stockés")
    generation = generation_of(con, selection)
    units_sql, params = _units_sql(level, selection, generation)
    unit = _point_unit(level, generation)
    qpv_col = schema.qpv_column(generation) if generation else "NULL"
    est = filters.points(_within_units(selection), "etablissements", generation, alias="e")
    tl = filters.points(_within_units(selection), "tiers_lieux", generation, alias="t")
    sq = filters.qpv(_within_units(selection), generation)
    reach = filters.points(selection.without_territory(), "tiers_lieux", generation, alias="t")
    # without a territory the units are all those of the level: the final join keeps them alone, and
    # restricting the points to them first cost a fifth of the national query
    whole = _within_units(selection) == selection
    in_units = {alias: "" if whole else f" AND {alias}.{unit} IN (SELECT code FROM units)" for alias in "et"}
    sql = f"""
    WITH units AS ({units_sql}),
    est AS (
        SELECT e.{unit} AS code, count(*) AS n_etablissements,
               count(*) FILTER (WHERE e.employeur) AS n_etablissements_employeurs,
               count(DISTINCT e.siren) AS n_organisations,
               count(*) FILTER (WHERE e.{qpv_col} IS NOT NULL) AS n_etablissements_en_qpv,
               count(*) FILTER (WHERE e.employeur AND e.{qpv_col} IS NOT NULL) AS n_employeurs_en_qpv,
               bool_or(coalesce(e.is_synthetic, FALSE)) AS synthetic
        FROM etablissements e WHERE {est.sql}{in_units['e']} GROUP BY 1),
    tl AS (
        SELECT t.{unit} AS code, count(*) AS n_tiers_lieux, bool_or(coalesce(t.is_synthetic, FALSE)) AS synthetic
        FROM tiers_lieux t WHERE {tl.sql}{in_units['t']} GROUP BY 1),
    sq AS (SELECT q.* FROM qpv q WHERE {sq.sql}),
    -- the QPVs of the units only, and their pairs only: every QPV of the country cost most of the query
    qu AS (SELECT * FROM ({_qpv_unit_sql(level)}) WHERE unit IN (SELECT code FROM units)),
    reached AS (
        SELECT p.code_qp, count(*) FILTER (WHERE p.distance_m <= ?) > 0 AS covered,
               coalesce(bool_or(coalesce(t.is_synthetic, FALSE)) FILTER (WHERE p.distance_m <= ?), FALSE)
                 OR arg_min(coalesce(t.is_synthetic, FALSE), (p.distance_m, p.id_tiers_lieu)) AS synthetic
        FROM qpv_tiers_lieux p JOIN tiers_lieux t ON t.id_tiers_lieu = p.id_tiers_lieu
        WHERE p.generation = ? AND p.code_qp IN (SELECT code_qp FROM qu) AND {reach.sql} GROUP BY 1),
    qp AS (
        SELECT qu.unit AS code, count(DISTINCT qu.code_qp) AS n_qpv,
               count(DISTINCT qu.code_qp) FILTER (WHERE r.covered) AS n_qpv_avec_tiers_lieu,
               bool_or(coalesce(r.synthetic, FALSE)) AS synthetic
        FROM qu LEFT JOIN reached r ON r.code_qp = qu.code_qp GROUP BY 1)
    SELECT units.code, units.nom, units.population,
           coalesce(est.n_etablissements, 0) AS n_etablissements,
           coalesce(est.n_etablissements_employeurs, 0) AS n_etablissements_employeurs,
           coalesce(est.n_organisations, 0) AS n_organisations,
           coalesce(est.n_etablissements_en_qpv, 0) AS n_etablissements_en_qpv,
           coalesce(est.n_employeurs_en_qpv, 0) AS n_employeurs_en_qpv,
           coalesce(tl.n_tiers_lieux, 0) AS n_tiers_lieux,
           coalesce(qp.n_qpv, 0) AS n_qpv,
           coalesce(qp.n_qpv_avec_tiers_lieu, 0) AS n_qpv_avec_tiers_lieu,
           coalesce(est.synthetic, FALSE) OR coalesce(tl.synthetic, FALSE) OR coalesce(qp.synthetic, FALSE)
               AS inclut_donnees_simulees
    FROM units LEFT JOIN est ON est.code = units.code LEFT JOIN tl ON tl.code = units.code
    LEFT JOIN qp ON qp.code = units.code
    ORDER BY units.code"""
    r = float(radius_m)
    return sql, [*params, *est.params, *tl.params, *sq.params, r, r, generation, *reach.params]


#: Columns of :func:`unit_indicators`, in order (the catalogue of :mod:`essmap.analysis.indicators`).
INDICATOR_COLUMNS: tuple[str, ...] = (
    "code", "nom", "population", "n_etablissements", "n_etablissements_employeurs", "n_organisations",
    "etablissements_pour_10k_hab", "etablissements_employeurs_pour_10k_hab", "n_etablissements_en_qpv",
    "part_etablissements_en_qpv", "part_etablissements_hors_qpv", "n_employeurs_en_qpv", "part_employeurs_en_qpv",
    "n_tiers_lieux", "n_qpv", "n_qpv_avec_tiers_lieu", "part_qpv_avec_tiers_lieu", "rayon_m",
    "inclut_donnees_simulees",
)


def unit_indicators(con: duckdb.DuckDBPyConnection, level: str, selection: Selection, *,
                    radius_m: float) -> duckdb.DuckDBPyConnection:
    """Every indicator per unit of ``level``, columns :data:`INDICATOR_COLUMNS`, one row per unit sorted by
    code: the counts of :func:`unit_counts_sql` with their rates per 10,000 inhabitants and shares (fractions
    in [0, 1]) derived in the same query, NULL where the denominator is 0 or unknown.

    Returns the executed query: the dashboard makes a frame of it (Arrow), the CLI writes its rows as
    they come, without pandas. The rates are the same IEEE operations in the same order as
    ``n / population * 10000`` on float64 arrays.
    """
    counts_sql, params = unit_counts_sql(con, level, selection, radius_m=radius_m)

    def share(part: str, whole: str) -> str:
        return f"CASE WHEN {whole} > 0 THEN {part}::DOUBLE / {whole}::DOUBLE END"

    def per_10k(count: str) -> str:
        return f"CASE WHEN population > 0 THEN {count}::DOUBLE / population::DOUBLE * 10000.0 END"

    sql = f"""
    WITH counts AS ({counts_sql})
    SELECT code, nom, population, n_etablissements, n_etablissements_employeurs, n_organisations,
           {per_10k("n_etablissements")} AS etablissements_pour_10k_hab,
           {per_10k("n_etablissements_employeurs")} AS etablissements_employeurs_pour_10k_hab,
           n_etablissements_en_qpv,
           {share("n_etablissements_en_qpv", "n_etablissements")} AS part_etablissements_en_qpv,
           CASE WHEN n_etablissements > 0
                THEN 1.0::DOUBLE - n_etablissements_en_qpv::DOUBLE / n_etablissements::DOUBLE END
               AS part_etablissements_hors_qpv,
           n_employeurs_en_qpv,
           {share("n_employeurs_en_qpv", "n_etablissements_employeurs")} AS part_employeurs_en_qpv,
           n_tiers_lieux, n_qpv, n_qpv_avec_tiers_lieu,
           {share("n_qpv_avec_tiers_lieu", "n_qpv")} AS part_qpv_avec_tiers_lieu,
           ?::DOUBLE AS rayon_m, inclut_donnees_simulees
    FROM counts ORDER BY code"""
    return execute_literal(con, sql, [*params, float(radius_m)])


def breakdown_counts(con: duckdb.DuckDBPyConnection, level: str, by: str, selection: Selection, *,
                     only_in_qpv: bool = False) -> pd.DataFrame:
    """Establishments per unit and category of ``by`` ("famille" or "secteur"): ``code``,
    ``categorie``, ``n`` (categories absent from a unit have no row)."""
    if by not in ("famille", "secteur"):
        raise ValueError(f"by : « {by} » inconnu ; attendu 'famille' ou 'secteur'.")
    generation = generation_of(con, selection)
    units_sql, params = _units_sql(level, selection, generation)
    est = filters.points(_within_units(selection), "etablissements", generation, alias="e")
    if only_in_qpv:
        est.add(f"e.{schema.qpv_column(generation)} IS NOT NULL" if generation else "FALSE")
    sql = f"""WITH units AS ({units_sql})
              SELECT e.{_point_unit(level, generation)} AS code, e.{by} AS categorie, count(*) AS n
              FROM etablissements e WHERE {est.sql}
                AND e.{_point_unit(level, generation)} IN (SELECT code FROM units)
              GROUP BY ALL ORDER BY ALL"""
    return arrow_frame(con.execute(sql, [*params, *est.params]).arrow())


def read_points(con: duckdb.DuckDBPyConnection, table: str, selection: Selection, *,
                columns: Sequence[str] | None = None, bbox: tuple[float, float, float, float] | None = None,
                territory: bool = True, geometry: bool = True) -> pd.DataFrame:
    """Rows of a point layer that ``selection`` keeps, with ``code_qp`` (the QPV of the selection's
    generation holding each one, <NA> outside), ``longitude`` and ``latitude``; with ``geometry``, a
    GeoDataFrame whose points are built from them (maps need only the numbers: shapely objects for
    50,000 points cost more than the query).

    ``bbox`` (lon_min, lat_min, lon_max, lat_max) restricts to a box; ``territory=False`` ignores
    the territory filters (for radius queries that cross borders).
    """
    if table not in schema.POINT_LAYERS:
        raise ValueError(f"unknown point layer {table!r}")
    generation = generation_of(con, selection)
    wanted = list(columns) if columns is not None else list(schema.LAYERS[table])
    wanted = [c for c in wanted if c not in ("longitude", "latitude")]
    where = filters.points(selection, table, generation, territory=territory)
    where.add("longitude IS NOT NULL AND latitude IS NOT NULL")
    if bbox is not None:
        where.add("longitude BETWEEN ? AND ? AND latitude BETWEEN ? AND ?", bbox[0], bbox[2], bbox[1], bbox[3])
    qpv_col = schema.qpv_column(generation) if generation else "NULL::VARCHAR"
    cols = ", ".join(f'"{c}"' for c in wanted)
    # no ORDER BY: DuckDB keeps the insertion order (preserve_insertion_order), and sorting all the
    # columns of a département's establishments cost more than the rest of the read
    found = con.execute(
        f'SELECT {cols}, {qpv_col} AS code_qp, longitude, latitude FROM "{table}" WHERE {where.sql}', where.params,
    ).arrow()
    frame = arrow_frame(found)
    return with_point_geometry(frame) if geometry else frame


def with_point_geometry(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """A frame of :func:`read_points` with its points as geometry (WGS84)."""
    import geopandas as gpd
    import shapely

    geometry = shapely.points(frame["longitude"].to_numpy(dtype=float), frame["latitude"].to_numpy(dtype=float))
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84)


def point_groups(con: duckdb.DuckDBPyConnection, table: str, selection: Selection, level: str) -> pd.DataFrame:
    """The rows of a point layer that ``selection`` keeps, counted per unit of ``level`` (commune,
    EPCI, département): ``code``, ``nom``, ``n``, the mean position (``longitude``, ``latitude``)
    and ``is_synthetic`` (any simulated row). A région or France shows groups, not 300,000 points.
    By EPCI, the rows of a commune outside any EPCI (a few islands) form their commune's group.
    """
    if table not in schema.POINT_LAYERS:
        raise ValueError(f"unknown point layer {table!r}")
    generation = generation_of(con, selection)
    column = POINT_UNIT_COLUMN[level]
    where = filters.points(selection, table, generation, alias="p")
    where.add("p.longitude IS NOT NULL AND p.latitude IS NOT NULL")
    name_table, key = ("communes", "code_insee") if level == "commune" else _NAME_TABLES[level]
    unit = "coalesce(p.siren_epci, p.code_com)" if level == "epci" else f"p.{column}"
    commune_name = ("(SELECT any_value(c.nom) FROM communes c WHERE c.code_insee = g.code)" if level == "epci"
                    else "NULL")
    sql = f"""
        WITH g AS (SELECT {unit} AS code, count(*) AS n, avg(p.longitude) AS longitude,
                          avg(p.latitude) AS latitude, coalesce(bool_or(p.is_synthetic), FALSE) AS is_synthetic
                   FROM "{table}" p WHERE {where.sql} AND {unit} IS NOT NULL GROUP BY 1)
        SELECT g.code, coalesce((SELECT any_value(u.nom) FROM {name_table} u WHERE u.{key} = g.code), {commune_name},
                                g.code) AS nom,
               g.n, g.longitude, g.latitude, g.is_synthetic
        FROM g ORDER BY g.code"""
    return arrow_frame(con.execute(sql, where.params).arrow())


def qpv_coverage(con: duckdb.DuckDBPyConnection, selection: Selection, *, radius_m: float) -> pd.DataFrame:
    """:func:`qpv_coverage_rows` as a frame."""
    return arrow_frame(qpv_coverage_rows(con, selection, radius_m=radius_m).arrow())


def qpv_coverage_rows(con: duckdb.DuckDBPyConnection, selection: Selection, *,
                      radius_m: float) -> duckdb.DuckDBPyConnection:
    """Per QPV of the selection: tiers-lieux within ``radius_m`` and the nearest one within the stored
    radius, from the stored pairs; the tiers-lieu filters of the selection apply (any territory).

    Columns ``code_qp``, ``lib_qp``, ``insee_com``, ``lib_com``, ``n_tiers_lieux``, ``nearest_id``,
    ``nearest_nom``, ``nearest_distance_m`` (<NA> when no tiers-lieu lies within
    :data:`~essmap.domain.schema.STORED_RADIUS_M`), ``nearest_localisation`` (how the nearest one was
    positioned), ``covered``, ``is_synthetic_involved``, ``radius_m``, sorted by code. Tiers-lieux known
    by their commune only are not in the stored pairs: they never count.

    Returns the executed query (a frame with :func:`qpv_coverage`; the CLI writes its rows as they come).
    """
    generation = generation_of(con, selection)
    sq = filters.qpv(selection, generation)
    reach = filters.points(selection.without_territory(), "tiers_lieux", generation, alias="t")
    # the pairs of the selected QPVs only: aggregating every stored pair cost more than the rest of the query
    sql = f"""
    WITH q AS (SELECT q.code_qp, q.lib_qp, q.insee_com, q.lib_com FROM qpv q WHERE {sq.sql}),
    p AS (
        SELECT p.code_qp, p.distance_m, t.id_tiers_lieu, t.nom, t.precision_localisation,
               coalesce(t.is_synthetic, FALSE) AS synthetic
        FROM qpv_tiers_lieux p JOIN tiers_lieux t ON t.id_tiers_lieu = p.id_tiers_lieu
        WHERE p.generation = ? AND p.code_qp IN (SELECT code_qp FROM q) AND {reach.sql})
    SELECT q.code_qp, q.lib_qp, q.insee_com, q.lib_com,
           count(p.code_qp) FILTER (WHERE p.distance_m <= ?) AS n_tiers_lieux,
           arg_min(p.id_tiers_lieu, (p.distance_m, p.id_tiers_lieu)) AS nearest_id,
           arg_min(p.nom, (p.distance_m, p.id_tiers_lieu)) AS nearest_nom,
           min(p.distance_m) AS nearest_distance_m,
           arg_min(p.precision_localisation, (p.distance_m, p.id_tiers_lieu)) AS nearest_localisation,
           count(p.code_qp) FILTER (WHERE p.distance_m <= ?) > 0 AS covered,
           coalesce(bool_or(p.synthetic) FILTER (WHERE p.distance_m <= ?), FALSE)
             OR coalesce(arg_min(p.synthetic, (p.distance_m, p.id_tiers_lieu)), FALSE) AS is_synthetic_involved,
           ?::DOUBLE AS radius_m
    FROM q LEFT JOIN p ON p.code_qp = q.code_qp
    GROUP BY q.code_qp, q.lib_qp, q.insee_com, q.lib_com ORDER BY q.code_qp"""
    r = float(radius_m)
    return execute_literal(con, sql, [*sq.params, generation, *reach.params, r, r, r, r])


def tiers_lieux_by_precision(con: duckdb.DuckDBPyConnection, selection: Selection) -> dict[str, int]:
    """How many tiers-lieux of the selection were positioned each way (``precision_localisation``)."""
    where = filters.points(selection, "tiers_lieux", generation_of(con, selection))
    rows = execute_literal(
        con, f"SELECT coalesce(precision_localisation, ?), count(*) FROM tiers_lieux WHERE {where.sql} GROUP BY 1",
        [schema.LOCATION_PROVIDED, *where.params],
    ).fetchall()
    return {str(k): int(n) for k, n in rows}


def tiers_lieux_near_qpv(con: duckdb.DuckDBPyConnection, selection: Selection, *,
                         radius_m: float) -> tuple[int, int, bool]:
    """Tiers-lieux of the selection in or within ``radius_m`` (at most the stored radius) of a QPV of its
    generation, from the stored pairs: ``(near, total, any simulated)``; places known by their commune
    only are left out of both counts."""
    if radius_m > schema.STORED_RADIUS_M:
        raise ValueError(f"radius {radius_m} beyond the stored pairs ({schema.STORED_RADIUS_M} m)")
    generation = generation_of(con, selection)
    where = filters.points(selection, "tiers_lieux", generation, alias="t")
    row = execute_literal(con, f"""
        SELECT count(*),
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM qpv_tiers_lieux p WHERE p.id_tiers_lieu = t.id_tiers_lieu
                                              AND p.generation = ? AND p.distance_m <= ?)),
               coalesce(bool_or(coalesce(t.is_synthetic, FALSE)), FALSE)
        FROM tiers_lieux t
        WHERE {where.sql} AND t.longitude IS NOT NULL AND t.latitude IS NOT NULL
          AND coalesce(t.precision_localisation, '') <> ?""",
        [generation, float(radius_m), *where.params, schema.LOCATION_COMMUNE]).fetchone()
    total, near, synthetic = row if row else (0, 0, False)
    return int(near), int(total), bool(synthetic)


def read_qpv(con: duckdb.DuckDBPyConnection, codes: Sequence[str], *, display: bool = False) -> gpd.GeoDataFrame:
    """QPVs by code with their exact geometry (radius queries, exports) or the display one."""
    geometry = ("(SELECT d.geometry FROM display_geometry d WHERE d.level = 'qpv' AND d.code = q.code_qp)"
                if display else "q.geometry")
    columns = ", ".join(f'q."{c}"' for c in schema.QPV)
    found = con.execute(
        f"SELECT {columns}, ST_AsWKB({geometry}) AS _wkb FROM qpv q WHERE q.code_qp IN (SELECT unnest(?)) "
        "ORDER BY q.code_qp", [list(codes)],
    ).arrow()
    return frame_from_arrow(found)


def display_geometry(con: duckdb.DuckDBPyConnection, level: str, codes: Sequence[str]) -> gpd.GeoDataFrame:
    """The display geometry of units (stored at ingest) row by row in the order of ``codes`` (missing
    units: empty row), with what a map sends of it, also stored: ``geojson`` (its GeoJSON text) and
    a point inside it (``anchor_lon``, ``anchor_lat``)."""
    found = con.execute(
        "SELECT d.geojson, d.anchor_lon, d.anchor_lat, ST_AsWKB(d.geometry) AS _wkb "
        "FROM unnest(?) WITH ORDINALITY AS w(code, position) "
        "LEFT JOIN display_geometry d ON d.level = ? AND d.code = w.code ORDER BY w.position",
        [list(codes), level],
    ).arrow()
    return frame_from_arrow(found)


def names(con: duckdb.DuckDBPyConnection, codes: Mapping[str, Sequence[str]]) -> dict[str, dict[str, str]]:
    """Names of some units by level ("commune", "departement", "region", "epci", "qpv") and code."""
    tables = {"commune": ("communes", "code_insee", "nom"), "departement": ("departements", "code_departement", "nom"),
              "region": ("regions", "code_region", "nom"), "epci": ("epci", "siren_epci", "nom"),
              "qpv": ("qpv", "code_qp", "lib_qp")}
    out: dict[str, dict[str, str]] = {}
    for level, wanted in codes.items():
        if not wanted:
            continue
        table, key, name = tables[level]
        rows = con.execute(f"SELECT {key}, any_value({name}) FROM {table} WHERE {key} IN (SELECT unnest(?)) "
                           f"AND {name} IS NOT NULL GROUP BY 1", [list(wanted)]).fetchall()
        out[level] = {str(k): str(v) for k, v in rows}
    return out


def parent_code(con: duckdb.DuckDBPyConnection, level: str, code: str, *, generation: str | None) -> str | None:
    params: list[object]
    """The unit above ``code`` (commune -> département; EPCI -> the département holding most of its
    population; département -> région; QPV -> its first commune; région -> None: France)."""
    if level == "commune":
        sql, params = "SELECT code_departement FROM communes WHERE code_insee = ?", [code]
    elif level == "epci":
        sql = ("SELECT code_departement FROM communes WHERE siren_epci = ? AND coalesce(type_commune, 'COM') <> 'ARM' "
               "GROUP BY code_departement ORDER BY sum(coalesce(population, 0)) DESC, code_departement LIMIT 1")
        params = [code]
    elif level == "departement":
        sql, params = "SELECT code_region FROM departements WHERE code_departement = ?", [code]
    elif level == "qpv":
        sql = ("SELECT code_com FROM qpv_communes WHERE code_qp = ? AND generation = ? ORDER BY code_com LIMIT 1")
        params = [code, generation]
    else:
        return None
    row = con.execute(sql, params).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def tiers_lieux_choices(con: duckdb.DuckDBPyConnection, column: str) -> list[str]:
    """Distinct items of a "; "-separated tiers-lieux column (``types``, ``labels``), sorted."""
    if column not in ("types", "labels"):
        raise ValueError(f"unknown list column {column!r}")
    rows = con.execute(
        f"SELECT DISTINCT trim(x) FROM (SELECT unnest(regexp_split_to_array({column}, '[;|]')) AS x FROM tiers_lieux) "
        "WHERE trim(x) <> ''"
    ).fetchall()
    return sorted((str(r[0]) for r in rows), key=str.casefold)


def read_attributes(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> pd.DataFrame:
    """Some columns of a table, without geometry (names and codes for menus)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    return arrow_frame(con.execute(f'SELECT {cols} FROM "{table}" ORDER BY ALL').arrow())


def catalogue(con: duckdb.DuckDBPyConnection) -> dict:
    """Names and choices of the dashboard's menus: communes, départements, régions, EPCI, tiers-lieu
    types and labels, QPV generations."""
    return {
        "communes": read_attributes(con, "communes", ["code_insee", "nom", "type_commune", "code_departement",
                                                      "code_region", "siren_epci"]),
        "departements": read_attributes(con, "departements", ["code_departement", "nom", "code_region"]),
        "regions": read_attributes(con, "regions", ["code_region", "nom"]),
        "epci": read_attributes(con, "epci", ["siren_epci", "nom"]),
        "types_tl": tiers_lieux_choices(con, "types"),
        "labels_tl": tiers_lieux_choices(con, "labels"),
        "generations": qpv_generations(con),
    }
