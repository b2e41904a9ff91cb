"""Indicators by territory: counts, densities, QPV shares, tiers-lieux coverage, references.

One row per unit of a level (commune, EPCI, département, région, QPV). Establishments and
tiers-lieux are attributed to units by their *codes* (``code_commune``, ``code_departement``),
not by geometry: a groupby on codes is what keeps the table for 35,000 communes and millions
of establishments well under a second. The only spatial inputs are "which QPV holds each
establishment" (pass ``in_qpv``, computed once by
:func:`~essmap.analysis.proximity.establishments_qpv`, or let the function compute it) and
the QPV x tiers-lieux coverage.

Design choice for the breakdowns: the main table has a fixed set of columns; the breakdown by
family or sector is a separate *long* table (:func:`breakdown`: one row per unit and
category, all categories listed even at zero), which charts use directly and
:func:`pivot_breakdown` widens into ``n_famille_association``-style columns for exports.

Populations are *populations légales* of ``COM`` communes only: arrondissements municipaux
(``ARM``) are already counted in their commune, and establishments coded in an arrondissement
roll up to it (``code_commune_parent``). A unit whose population is unknown (QPVs, Mayotte in
the communes file) gets <NA> per 10,000 inhabitants, never an invented figure. Shares are
fractions in [0, 1] (format them with :func:`essmap.domain.formatting.format_percent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from essmap.analysis.proximity import qpv_tiers_lieux
from essmap.analysis.references import (
    FRANCE_POPULATION,
    FRANCE_POPULATION_LABEL,
    REFERENCE_FIGURES,
    REFERENCES_BY_KEY,
    ReferenceFigure,
    reference_figures,
)
from essmap.domain import nomenclature
from essmap.domain.selection import Selection, parent_commune_codes, qpv_commune_pairs
from essmap.geo import points_in_polygons

__all__ = [  # references are re-exported: cards need indicators and references together
    "FRANCE_POPULATION", "FRANCE_POPULATION_LABEL", "INDICATORS", "INDICATORS_BY_KEY",
    "INDICATOR_COLUMNS", "LEVELS", "LEVEL_LABELS", "PARENT_LEVEL", "REFERENCES_BY_KEY",
    "REFERENCE_FIGURES", "Comparison", "Indicator", "ReferenceFigure", "breakdown", "compare",
    "indicators_by_level", "parent_codes", "pivot_breakdown", "reference_figures",
]

Level = Literal["commune", "epci", "departement", "region", "qpv"]
LEVELS: tuple[str, ...] = ("commune", "epci", "departement", "region", "qpv")

#: Level above each level, for "value / parent / France" cards (région: France itself).
PARENT_LEVEL: dict[str, str | None] = {
    "commune": "departement",
    "epci": "departement",
    "departement": "region",
    "region": None,
    "qpv": "commune",
}

LEVEL_LABELS: dict[str, str] = {
    "commune": "Commune",
    "epci": "Intercommunalité (EPCI)",
    "departement": "Département",
    "region": "Région",
    "qpv": "Quartier prioritaire (QPV)",
}

_UNIT_CODE_COLUMN: dict[str, str] = {
    "epci": "siren_epci",
    "departement": "code_departement",
    "region": "code_region",
}

# --- Catalogue ---------------------------------------------------------------------------------

_SRC_SIRENE = "INSEE, base SIRENE des établissements (unités légales de l'ESS)"
_SRC_POP = "INSEE, populations légales des communes (fichier communes chargé)"
_SRC_QPV = "ANCT, contours des quartiers prioritaires (QPV)"
_SRC_TL = "France Tiers-Lieux, recensement des tiers-lieux ; ANCT (labels)"


@dataclass(frozen=True)
class Indicator:
    """What an indicator column means, for labels, legends and export footnotes.

    ``counting_unit`` says what is counted ("établissement", "organisation (SIREN)"...):
    every ESS figure must say it (``docs/domain.md``).
    """

    key: str
    label_fr: str
    unit_fr: str
    counting_unit: str
    source_fr: str


INDICATORS: tuple[Indicator, ...] = (
    Indicator("population", "Population", "habitants", "habitant", _SRC_POP),
    Indicator("n_etablissements", "Établissements de l'ESS", "établissements", "établissement", _SRC_SIRENE),
    Indicator(
        "n_etablissements_employeurs", "Établissements employeurs de l'ESS", "établissements",
        "établissement employeur", _SRC_SIRENE,
    ),
    Indicator(
        "n_organisations", "Organisations de l'ESS présentes (SIREN distincts)", "organisations",
        "organisation (SIREN)", _SRC_SIRENE,
    ),
    Indicator(
        "etablissements_pour_10k_hab", "Établissements de l'ESS pour 10 000 habitants",
        "pour 10 000 hab.", "établissement", f"{_SRC_SIRENE} ; {_SRC_POP}",
    ),
    Indicator(
        "etablissements_employeurs_pour_10k_hab",
        "Établissements employeurs de l'ESS pour 10 000 habitants", "pour 10 000 hab.",
        "établissement employeur", f"{_SRC_SIRENE} ; {_SRC_POP}",
    ),
    Indicator(
        "n_etablissements_en_qpv", "Établissements de l'ESS situés dans un QPV", "établissements",
        "établissement", f"{_SRC_SIRENE} ; {_SRC_QPV}",
    ),
    Indicator(
        "part_etablissements_en_qpv", "Part des établissements de l'ESS situés dans un QPV", "%",
        "établissement", f"{_SRC_SIRENE} ; {_SRC_QPV}",
    ),
    Indicator(
        "part_etablissements_hors_qpv", "Part des établissements de l'ESS situés hors QPV", "%",
        "établissement", f"{_SRC_SIRENE} ; {_SRC_QPV}",
    ),
    Indicator(
        "n_employeurs_en_qpv", "Établissements employeurs de l'ESS situés dans un QPV",
        "établissements", "établissement employeur", f"{_SRC_SIRENE} ; {_SRC_QPV}",
    ),
    Indicator(
        "part_employeurs_en_qpv", "Part des établissements employeurs de l'ESS situés dans un QPV",
        "%", "établissement employeur", f"{_SRC_SIRENE} ; {_SRC_QPV}",
    ),
    Indicator("n_tiers_lieux", "Tiers-lieux", "tiers-lieux", "tiers-lieu", _SRC_TL),
    Indicator("n_qpv", "Quartiers prioritaires (QPV)", "QPV", "QPV", _SRC_QPV),
    Indicator(
        "n_qpv_avec_tiers_lieu", "QPV ayant un tiers-lieu dans le quartier ou à proximité (rayon)",
        "QPV", "QPV", f"{_SRC_QPV} ; {_SRC_TL}",
    ),
    Indicator(
        "part_qpv_avec_tiers_lieu",
        "Part des QPV ayant un tiers-lieu dans le quartier ou à proximité (rayon)", "%", "QPV",
        f"{_SRC_QPV} ; {_SRC_TL}",
    ),
    Indicator("rayon_m", "Rayon de proximité QPV – tiers-lieux", "m", "mètre", "paramètre de l'analyse"),
    Indicator(
        "inclut_donnees_simulees", "Inclut des données simulées", "oui/non", "–",
        "données de démonstration générées par essmap",
    ),
)

INDICATORS_BY_KEY: dict[str, Indicator] = {i.key: i for i in INDICATORS}

#: Columns of :func:`indicators_by_level`, in order.
INDICATOR_COLUMNS: tuple[str, ...] = ("code", "nom", *(i.key for i in INDICATORS))

#: Indicator column -> reference figure that a card may show as "France".
_FRANCE_REFERENCE_OF: dict[str, str] = {
    "etablissements_employeurs_pour_10k_hab": "france_etablissements_employeurs_pour_10k_hab",
    "part_employeurs_en_qpv": "france_part_employeurs_en_qpv",
    "part_qpv_avec_tiers_lieu": "qpv_part_avec_tiers_lieu_1km",
}


@dataclass(frozen=True)
class Comparison:
    """One indicator for a card: the unit's value, its parent's and France's, with sources.

    ``france_value`` is None when no published figure is comparable (e.g. a QPV coverage
    computed with another radius than 1 km; ``note_fr`` then says why).
    """

    indicator: Indicator
    value: float | None
    parent_value: float | None
    parent_name: str | None
    france_value: float | None
    france_source_fr: str | None
    note_fr: str = ""


def compare(
    key: str,
    unit_row: Mapping[str, object],
    parent_row: Mapping[str, object] | None = None,
    *,
    parent_name: str | None = None,
) -> Comparison:
    """Value of indicator ``key`` for a unit, its parent unit and France.

    ``unit_row`` and ``parent_row`` are rows of :func:`indicators_by_level` tables (the parent
    from the level in :data:`PARENT_LEVEL`, found with :func:`parent_codes`).
    """
    indicator = INDICATORS_BY_KEY[key]
    reference = REFERENCES_BY_KEY.get(_FRANCE_REFERENCE_OF.get(key, ""))
    note = ""
    if reference is not None and key == "part_qpv_avec_tiers_lieu":
        radius = _number(unit_row.get("rayon_m"))
        if radius != 1000.0:
            note = "Pas de référence nationale : elle est calculée avec un rayon de 1 km."
            reference = None
    if parent_row is not None and parent_name is None:
        parent_name = _text(parent_row.get("nom")) or _text(parent_row.get("code"))
    return Comparison(
        indicator=indicator,
        value=_number(unit_row.get(key)),
        parent_value=None if parent_row is None else _number(parent_row.get(key)),
        parent_name=parent_name,
        france_value=None if reference is None else float(reference.value),
        france_source_fr=None if reference is None else reference.source_fr,
        note_fr=note or ("" if reference is None else reference.note_fr),
    )


def _number(value: object) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _text(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


# --- Units and attribution ---------------------------------------------------------------------


def _check_unique_index(frame: pd.DataFrame, name: str) -> None:
    """``in_qpv`` is aligned on the index: duplicated labels would attribute rows twice."""
    if not frame.index.is_unique:
        raise ValueError(f"« {name} » a un index en double. Solution : .reset_index(drop=True).")


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"niveau « {level} » inconnu ; attendu l'un de {list(LEVELS)}.")


def _com_rows(communes: pd.DataFrame) -> pd.DataFrame:
    """Communes proper (``COM``): arrondissements municipaux are already in their commune."""
    kind = communes["type_commune"].astype("string")
    return communes[(kind != "ARM").fillna(True).to_numpy(dtype=bool)]


def _lookup(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """``value`` by ``key`` (first row of each key; rows without key dropped), as strings."""
    known = frame.dropna(subset=[key])
    out = pd.Series(known[value].astype("string").to_numpy(), index=known[key].astype(str).to_numpy())
    return out[~out.index.duplicated()]


def _units(
    level: str, communes: pd.DataFrame, qpv: pd.DataFrame, names: pd.DataFrame | None
) -> pd.DataFrame:
    """One row per unit: ``code``, ``nom``, ``population`` (Int64, <NA> when unknown)."""
    if level == "qpv":
        out = pd.DataFrame(
            {
                "code": qpv["code_qp"].astype("string").to_numpy(),
                "nom": qpv["lib_qp"].astype("string").to_numpy(),
                "population": pd.array([pd.NA] * len(qpv), dtype="Int64"),
            }
        )
        return out.drop_duplicates("code").reset_index(drop=True)
    com = _com_rows(communes)
    population = com["population"].astype("Int64").to_numpy()
    if level == "commune":
        out = pd.DataFrame(
            {
                "code": com["code_insee"].astype("string").to_numpy(),
                "nom": com["nom"].astype("string").to_numpy(),
                "population": population,
            }
        )
        return out.drop_duplicates("code").sort_values("code").reset_index(drop=True)
    column = _UNIT_CODE_COLUMN[level]
    codes = com[column].astype("string").to_numpy()
    grouped = (
        pd.DataFrame({"code": codes, "population": population})
        .dropna(subset=["code"])
        .groupby("code", sort=True)["population"]
        .sum(min_count=1)  # <NA> only when no commune of the unit has a population
    )
    out = pd.DataFrame({"code": grouped.index.astype("string"), "population": grouped.astype("Int64").to_numpy()})
    if names is not None and column in names.columns and "nom" in names.columns:
        nom = out["code"].map(_lookup(names, column, "nom")).astype("string")
    else:
        nom = pd.Series(pd.array([pd.NA] * len(out), dtype="string"))
    out.insert(1, "nom", nom.to_numpy())
    return out


def _communes_to_units(level: str, codes: pd.Series, communes: pd.DataFrame) -> pd.Series:
    """Unit code (commune or EPCI level) of each commune code, <NA> when unknown.

    Arrondissements roll up to their commune first (``code_commune_parent``, else the PLM
    ranges, so an arrondissement missing from the communes table still counts); the EPCI is
    that of the commune.
    """
    parent = parent_commune_codes(codes, communes)
    if level == "commune":
        return parent
    epci_of_commune = _lookup(_com_rows(communes), "code_insee", "siren_epci")
    epci_of_any = _lookup(communes, "code_insee", "siren_epci")
    return parent.map(epci_of_commune).fillna(codes.map(epci_of_any)).astype("string")


def _region_of_departement(communes: pd.DataFrame) -> pd.Series:
    return _lookup(communes.dropna(subset=["code_region"]), "code_departement", "code_region")


def _point_unit_positions(
    level: str,
    frame: pd.DataFrame,
    in_qpv: pd.Series | None,
    unit_codes: pd.Index,
    communes: pd.DataFrame,
) -> np.ndarray:
    """Unit position of each row of a point layer (establishments, tiers-lieux), -1 if none.

    Works on the distinct codes only (factorize, map, take): no per-row Python.
    """
    if level == "qpv":
        if in_qpv is None:
            return np.full(len(frame), -1, dtype=np.int64)
        return _positions_of(in_qpv.reindex(frame.index), unit_codes)
    if level in ("commune", "epci"):
        labels, uniques = pd.factorize(frame["code_commune"], use_na_sentinel=True)
        unit = _communes_to_units(level, pd.Series(uniques, dtype="string"), communes)
    else:
        labels, uniques = pd.factorize(frame["code_departement"], use_na_sentinel=True)
        uniques = pd.Index(uniques, dtype="string")
        unit = pd.Series(uniques.to_numpy(dtype=object), index=uniques)
        if level == "region":
            unit = unit.map(_region_of_departement(communes))
    return _label_positions(labels, unit, unit_codes)


def _positions_of(codes: pd.Series, unit_codes: pd.Index) -> np.ndarray:
    """Position in ``unit_codes`` of each code (-1 when absent or missing)."""
    labels, uniques = pd.factorize(codes, use_na_sentinel=True)
    return _label_positions(labels, pd.Series(uniques, dtype=object), unit_codes)


def _label_positions(labels: np.ndarray, unique_units: pd.Series, unit_codes: pd.Index) -> np.ndarray:
    """Unit position of each row, from factorize labels and the unit of each distinct code."""
    if len(unique_units) == 0:
        return np.full(len(labels), -1, dtype=np.int64)
    unique_pos = unit_codes.get_indexer(pd.Index(unique_units.to_numpy(dtype=object)).astype("string"))
    return np.where(labels >= 0, unique_pos[np.maximum(labels, 0)], -1).astype(np.int64)


def _qpv_unit_pairs(
    level: str, qpv: pd.DataFrame, unit_codes: pd.Index, communes: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """(QPV position, unit position) pairs, each QPV counted once per unit it touches.

    A QPV spanning several communes counts in each of them (``insee_com``).
    """
    if level == "qpv":
        pos = _positions_of(qpv["code_qp"].astype("string"), unit_codes)
        keep = pos >= 0
        return np.flatnonzero(keep), pos[keep]
    if level in ("commune", "epci"):
        pairs = qpv_commune_pairs(qpv)
        unit = _communes_to_units(level, pairs["code_commune"], communes)
        if level == "epci" and "siren_epci" in qpv.columns:
            own = qpv["siren_epci"].astype("string").to_numpy()[pairs["position"].to_numpy()]
            unit = unit.fillna(pd.Series(own, index=unit.index))
        q_pos = pairs["position"].to_numpy()
    else:
        dep = qpv["insee_dep"].astype("string").reset_index(drop=True)
        unit = dep if level == "departement" else dep.map(_region_of_departement(communes))
        q_pos = np.arange(len(qpv))
    u_pos = _positions_of(pd.Series(unit.to_numpy(dtype=object), dtype="string"), unit_codes)
    keep = u_pos >= 0
    combined = np.unique(np.stack([q_pos[keep], u_pos[keep]]), axis=1)
    return combined[0], combined[1]


def _one_generation(qpv: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """QPVs of the selected generation; several generations without a choice is an error
    (they overlap, and their counts must never be added)."""
    if selection.qpv_generation is not None:
        chosen = qpv["generation"].astype("string") == selection.qpv_generation
        return qpv[chosen.fillna(False).to_numpy(dtype=bool)]
    generations = qpv["generation"].dropna().astype(str).unique() if "generation" in qpv.columns else []
    if len(generations) > 1:
        raise ValueError(
            f"Plusieurs générations de QPV chargées ({sorted(generations)}) : choisissez-en une "
            "avec Selection(qpv_generation=...)."
        )
    return qpv


def _float_na(values: np.ndarray, valid: np.ndarray) -> pd.arrays.FloatingArray:
    """Float64 array with <NA> where ``valid`` is False (a share over 0, an unknown population)."""
    return pd.arrays.FloatingArray(np.where(valid, values, 0.0).astype(float), ~np.asarray(valid, dtype=bool))


def _flags(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame[column].fillna(False).to_numpy(dtype=bool)


def _siren_numbers(siren: pd.Series) -> tuple[np.ndarray, int]:
    """Integer code of each SIREN (-1 when missing) and the code range.

    SIRENs are 9-digit numbers: parsed as integers (by Arrow, vectorised) they need no hash
    table, which matters with a million distinct values. Anything else falls back to factorize.
    """
    text = siren.astype(pd.StringDtype("pyarrow"))
    try:
        numbers = pc.fill_null(pc.cast(pa.array(text.array), pa.int64()), -1)
        values = numbers.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if len(values) == 0 or (values.max() < 1_000_000_000 and values.min() >= -1):
            return values, 1_000_000_000
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    return codes.astype(np.int64), max(len(uniques), 1)


def _distinct_per_unit(positions: np.ndarray, siren: pd.Series, size: int) -> np.ndarray:
    """Number of distinct SIRENs (organisations) per unit, by sorting (unit, SIREN) keys."""
    if len(siren) == 0:
        return np.zeros(size, dtype=np.int64)
    numbers, width = _siren_numbers(siren)
    ok = (positions >= 0) & (numbers >= 0)
    combined = np.sort(positions[ok].astype(np.int64) * width + numbers[ok])
    if len(combined) == 0:
        return np.zeros(size, dtype=np.int64)
    distinct = combined[np.r_[True, combined[1:] != combined[:-1]]]
    return np.bincount(distinct // width, minlength=size).astype(np.int64)


def _count(positions: np.ndarray, size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Rows per unit (``positions`` -1: no unit), only rows where ``mask`` is true; integer
    counts (a float-weighted bincount is several times slower)."""
    keep = positions >= 0
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    return np.bincount(positions[keep], minlength=size)


# --- The indicator table -----------------------------------------------------------------------


def indicators_by_level(
    level: Level,
    *,
    communes: pd.DataFrame,
    establishments: pd.DataFrame,
    tiers_lieux: gpd.GeoDataFrame,
    qpv: gpd.GeoDataFrame,
    radius_m: float = 1000.0,
    selection: Selection | None = None,
    units: pd.DataFrame | None = None,
    in_qpv: pd.Series | None = None,
    qpv_coverage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per unit of ``level`` with the indicators of :data:`INDICATORS`.

    Parameters
    ----------
    level : {"commune", "epci", "departement", "region", "qpv"}
        Communes are ``COM`` rows (arrondissements roll up); EPCI, département and région
        units are those of the selected communes, their population the sum of those communes.
    communes, establishments, tiers_lieux, qpv : DataFrame
        Canonical layers (``essmap.domain.schema``), unfiltered: ``selection`` filters them here.
        ``establishments`` may be a plain DataFrame (codes suffice) when ``in_qpv`` is given.
    radius_m : float
        Radius of the QPV x tiers-lieux coverage, metres (metric CRS of each territory).
    selection : Selection, optional
        Applied to every layer. QPV coverage ignores its territory filters for the
        tiers-lieux (a QPV can be covered from across a border).
    units : DataFrame, optional
        The EPCI, départements or régions layer, for unit names (``nom``).
    in_qpv : Series, optional
        Code of the QPV holding each establishment, aligned on ``establishments.index``
        (``establishments_qpv(...)["code_qp"]``): the expensive spatial join, done once
        by the caller. Computed here when missing (``establishments`` must then be a
        GeoDataFrame in EPSG:4326).
    qpv_coverage : DataFrame, optional
        A :func:`~essmap.analysis.proximity.qpv_tiers_lieux` result (``code_qp``,
        ``covered``, ``is_synthetic_involved``) computed with the same radius.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`INDICATOR_COLUMNS`, one row per unit sorted by code. Counts are
        integers, shares fractions in [0, 1] or <NA> when the denominator is 0 or unknown.
    """
    _check_level(level)
    _check_unique_index(establishments, "establishments")
    selection = selection or Selection()
    qpv_gen = _one_generation(qpv, selection)
    if in_qpv is None:
        in_qpv = points_in_polygons(establishments, qpv_gen, "code_qp")
    com = selection.filter_communes(communes)
    est = selection.filter_establishments(establishments, communes=communes, in_qpv=in_qpv)
    tl_in_qpv = points_in_polygons(tiers_lieux, qpv_gen, "code_qp")
    tl = selection.filter_tiers_lieux(tiers_lieux, communes=communes, in_qpv=tl_in_qpv)
    q = selection.filter_qpv(qpv_gen, communes=communes)
    if qpv_coverage is None:
        reachable = selection.without_territory().filter_tiers_lieux(tiers_lieux)
        qpv_coverage = qpv_tiers_lieux(q, reachable, radius_m=radius_m)

    table = _units(level, com, q, units)
    unit_codes = pd.Index(table["code"], dtype="string")
    size = len(table)

    est_pos = _point_unit_positions(level, est, in_qpv, unit_codes, communes)
    employer = _flags(est, "employeur")
    est_in_qpv = in_qpv.reindex(est.index).notna().to_numpy(dtype=bool)
    n = _count(est_pos, size).astype(np.int64)
    n_employers = _count(est_pos, size, employer).astype(np.int64)
    n_in_qpv = _count(est_pos, size, est_in_qpv).astype(np.int64)
    n_employers_in_qpv = _count(est_pos, size, employer & est_in_qpv).astype(np.int64)
    synthetic = _count(est_pos, size, _flags(est, "is_synthetic")) > 0

    n_org = (
        _distinct_per_unit(est_pos, est["siren"], size)
        if "siren" in est.columns
        else np.zeros(size, dtype=np.int64)
    )

    tl_pos = _point_unit_positions(level, tl, tl_in_qpv, unit_codes, communes)
    n_tl = _count(tl_pos, size).astype(np.int64)
    synthetic |= _count(tl_pos, size, _flags(tl, "is_synthetic")) > 0

    coverage = qpv_coverage.drop_duplicates("code_qp").set_index("code_qp")
    q_codes = q["code_qp"].astype("string")
    covered = q_codes.map(coverage["covered"]).fillna(False).to_numpy(dtype=bool)
    q_synthetic = (
        q_codes.map(coverage["is_synthetic_involved"]).fillna(False).to_numpy(dtype=bool)
        if "is_synthetic_involved" in coverage.columns
        else np.zeros(len(q), dtype=bool)
    )
    qp, up = _qpv_unit_pairs(level, q, unit_codes, communes)
    n_qpv = np.bincount(up, minlength=size).astype(np.int64)
    n_covered = np.bincount(up, weights=covered[qp].astype(float), minlength=size).astype(np.int64)
    synthetic |= np.bincount(up, weights=q_synthetic[qp].astype(float), minlength=size) > 0

    population = table["population"].to_numpy(dtype=float, na_value=np.nan)
    has_population = np.isfinite(population) & (population > 0)
    per_10k = np.where(has_population, population, 1.0)
    share_in = _float_na(n_in_qpv / np.maximum(n, 1), n > 0)

    out = pd.DataFrame(
        {
            "code": table["code"].astype("string").to_numpy(),
            "nom": table["nom"].astype("string").to_numpy(),
            "population": table["population"].astype("Int64").to_numpy(),
            "n_etablissements": n,
            "n_etablissements_employeurs": n_employers,
            "n_organisations": n_org,
            "etablissements_pour_10k_hab": _float_na(n / per_10k * 10_000, has_population),
            "etablissements_employeurs_pour_10k_hab": _float_na(n_employers / per_10k * 10_000, has_population),
            "n_etablissements_en_qpv": n_in_qpv,
            "part_etablissements_en_qpv": share_in,
            "part_etablissements_hors_qpv": _float_na(1.0 - n_in_qpv / np.maximum(n, 1), n > 0),
            "n_employeurs_en_qpv": n_employers_in_qpv,
            "part_employeurs_en_qpv": _float_na(
                n_employers_in_qpv / np.maximum(n_employers, 1), n_employers > 0
            ),
            "n_tiers_lieux": n_tl,
            "n_qpv": n_qpv,
            "n_qpv_avec_tiers_lieu": n_covered,
            "part_qpv_avec_tiers_lieu": _float_na(n_covered / np.maximum(n_qpv, 1), n_qpv > 0),
            "rayon_m": float(radius_m),
            "inclut_donnees_simulees": synthetic,
        }
    )
    return out[list(INDICATOR_COLUMNS)]


# --- Breakdowns (long format) ------------------------------------------------------------------

_CATEGORIES: dict[str, dict[str, str]] = {
    "famille": nomenclature.FAMILY_LABELS,
    "secteur": nomenclature.SECTOR_LABELS,
}


def breakdown(
    level: Level,
    by: Literal["famille", "secteur"],
    *,
    communes: pd.DataFrame,
    establishments: pd.DataFrame,
    qpv: gpd.GeoDataFrame | None = None,
    selection: Selection | None = None,
    units: pd.DataFrame | None = None,
    in_qpv: pd.Series | None = None,
    only_in_qpv: bool = False,
) -> pd.DataFrame:
    """Establishments by unit and ESS family (or sector), long format.

    One row per unit and category, every category listed even at 0 (stable shape for charts
    and for :func:`pivot_breakdown`). ``part`` is the category's share of the unit's
    establishments. ``only_in_qpv`` counts only establishments located in a QPV (e.g. to set
    the families of ESS employers in QPVs, 88.6 % associations nationally, against a
    territory: use ``Selection(employer_only=True)``).

    ``qpv`` or ``in_qpv`` is needed for the QPV level, for ``only_in_qpv`` and for a QPV
    filter.

    Returns
    -------
    pandas.DataFrame
        Columns ``code``, ``nom``, ``dimension`` (``by``), ``categorie``, ``libelle``, ``n``,
        ``part``.
    """
    _check_level(level)
    _check_unique_index(establishments, "establishments")
    if by not in _CATEGORIES:
        raise ValueError(f"by : « {by} » inconnu ; attendu 'famille' ou 'secteur'.")
    selection = selection or Selection()
    needs_qpv = level == "qpv" or only_in_qpv or bool(selection.qpv)
    q = qpv
    if q is not None:
        q = _one_generation(q, selection)
    if needs_qpv and in_qpv is None:
        if q is None:
            raise ValueError("breakdown : passez qpv= ou in_qpv= (niveau QPV, filtre QPV ou only_in_qpv).")
        in_qpv = points_in_polygons(establishments, q, "code_qp")
    est = selection.filter_establishments(establishments, communes=communes, in_qpv=in_qpv)
    if only_in_qpv:
        est = est[in_qpv.reindex(est.index).notna().to_numpy(dtype=bool)]
    com = selection.filter_communes(communes)
    q_units = selection.filter_qpv(q, communes=communes) if q is not None else pd.DataFrame(
        {"code_qp": pd.Series(dtype="string"), "lib_qp": pd.Series(dtype="string")}
    )
    table = _units(level, com, q_units, units)
    unit_codes = pd.Index(table["code"], dtype="string")
    est_pos = _point_unit_positions(level, est, in_qpv, unit_codes, communes)

    labels = _CATEGORIES[by]
    keys = list(labels)
    category = pd.Categorical(est[by].astype("string"), categories=keys).codes.astype(np.int64)
    size, n_cat = len(table), len(keys)
    ok = (est_pos >= 0) & (category >= 0)
    counts = np.bincount(est_pos[ok] * n_cat + category[ok], minlength=size * n_cat).reshape(size, n_cat)
    totals = np.repeat(_count(est_pos, size), n_cat)
    text = {"code": "string", "nom": "string", "dimension": "string", "categorie": "string", "libelle": "string"}
    return pd.DataFrame(
        {
            "code": np.repeat(table["code"].astype("string").to_numpy(), n_cat),
            "nom": np.repeat(table["nom"].astype("string").to_numpy(), n_cat),
            "dimension": by,
            "categorie": np.tile(np.array(keys, dtype=object), size),
            "libelle": np.tile(np.array([labels[k] for k in keys], dtype=object), size),
            "n": counts.ravel().astype(np.int64),
            "part": _float_na(counts.ravel() / np.maximum(totals, 1), totals > 0),
        }
    ).astype(text)


def pivot_breakdown(long: pd.DataFrame) -> pd.DataFrame:
    """Widen a :func:`breakdown` table: one row per unit, columns ``n_<dimension>_<categorie>``
    (e.g. ``n_famille_association``, ``n_secteur_action_sociale``), for exports."""
    column = "n_" + long["dimension"].astype(str) + "_" + long["categorie"].astype(str)
    wide = long.assign(column=column).pivot_table(
        index="code", columns="column", values="n", aggfunc="sum", sort=False, observed=True
    )
    wide = wide.reindex(columns=list(dict.fromkeys(column))).fillna(0).astype(np.int64)
    wide.columns.name = None
    return wide.reset_index()


# --- Parents -----------------------------------------------------------------------------------


def parent_codes(
    level: Level,
    codes: pd.Series | list[str],
    *,
    communes: pd.DataFrame,
    qpv: pd.DataFrame | None = None,
) -> pd.Series:
    """Code of the parent unit (level :data:`PARENT_LEVEL`) of each code, <NA> when unknown.

    Commune -> département; EPCI -> the département holding most of its population; département
    -> région; région -> <NA> (France is the parent: see :func:`reference_figures`); QPV ->
    its first commune (``qpv`` needed).
    """
    _check_level(level)
    codes = pd.Series(codes, dtype="string")
    com = _com_rows(communes)
    if level == "commune":
        mapping = _lookup(com, "code_insee", "code_departement")
    elif level == "epci":
        frame = pd.DataFrame(
            {
                "epci": com["siren_epci"].astype("string").to_numpy(),
                "dep": com["code_departement"].astype("string").to_numpy(),
                "pop": com["population"].astype("Float64").fillna(0).to_numpy(dtype=float),
            }
        ).dropna(subset=["epci", "dep"])
        totals = frame.groupby(["epci", "dep"], sort=True)["pop"].sum().reset_index()
        totals = totals.sort_values(["epci", "pop", "dep"], ascending=[True, False, True], kind="stable")
        first = totals.drop_duplicates("epci")
        mapping = pd.Series(first["dep"].to_numpy(), index=first["epci"].to_numpy())
    elif level == "departement":
        mapping = _region_of_departement(communes)
    elif level == "region":
        return pd.Series(pd.array([pd.NA] * len(codes), dtype="string"), index=codes.index)
    else:
        if qpv is None:
            raise ValueError("parent_codes('qpv') : passez qpv=.")
        pairs = qpv_commune_pairs(qpv).drop_duplicates("position")
        first = parent_commune_codes(pairs["code_commune"], communes)
        mapping = pd.Series(
            first.to_numpy(), index=qpv["code_qp"].astype("string").to_numpy()[pairs["position"].to_numpy()]
        )
    mapping = mapping[~mapping.index.duplicated()]
    return codes.map(mapping).astype("string")
