"""Indicators by territory: counts, densities, QPV shares, tiers-lieux coverage, references.

One row per unit of a level (commune, EPCI, département, région, QPV). The counts come from the
store (:func:`essmap.store.queries.unit_counts`: a SQL ``GROUP BY`` on the memberships computed at
ingest, with every filter pushed down); this module derives the rates and shares from them and
holds the catalogue of indicators, their sources and the comparisons shown on cards.

Design choice for the breakdowns: the main table has a fixed set of columns; the breakdown by
family or sector is a separate *long* table (:func:`breakdown`: one row per unit and category, all
categories listed even at zero), which charts use directly and :func:`pivot_breakdown` widens into
``n_famille_association``-style columns for exports.

Populations are *populations légales* of ``COM`` communes only: arrondissements municipaux
(``ARM``) are already counted in their commune, and establishments coded in an arrondissement
roll up to it. A unit whose population is unknown (QPVs, Mayotte in the communes file) gets <NA>
per 10,000 inhabitants, never an invented figure. Shares are fractions in [0, 1] (format them
with :func:`essmap.domain.formatting.format_percent`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import duckdb

from essmap.analysis.references import (
    FRANCE_POPULATION,
    FRANCE_POPULATION_LABEL,
    REFERENCE_FIGURES,
    REFERENCES_BY_KEY,
    ReferenceFigure,
    reference_figures,
)
from essmap.domain import nomenclature
from essmap.domain.selection import Selection
from essmap.store import queries
from essmap.store.read import arrow_frame

# numpy and pandas are imported where frames are built: the command line writes the rows without them
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [  # references are re-exported: cards need indicators and references together
    "FRANCE_POPULATION", "FRANCE_POPULATION_LABEL", "INDICATORS", "INDICATORS_BY_KEY",
    "INDICATOR_COLUMNS", "LEVELS", "LEVEL_LABELS", "PARENT_LEVEL", "REFERENCES_BY_KEY",
    "REFERENCE_FIGURES", "Comparison", "Indicator", "ReferenceFigure", "breakdown", "compare",
    "indicator_rows", "indicators_by_level", "pivot_breakdown", "reference_figures",
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
INDICATOR_COLUMNS: tuple[str, ...] = queries.INDICATOR_COLUMNS
if INDICATOR_COLUMNS != ("code", "nom", *(i.key for i in INDICATORS)):  # the query and the catalogue agree
    raise RuntimeError("essmap.store.queries.INDICATOR_COLUMNS and INDICATORS disagree")

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
    import pandas as pd

    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _text(value: object) -> str | None:
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


# --- The indicator table -----------------------------------------------------------------------


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"niveau « {level} » inconnu ; attendu l'un de {list(LEVELS)}.")


def _float_na(values: np.ndarray, valid: np.ndarray) -> pd.arrays.FloatingArray:
    """Float64 array with <NA> where ``valid`` is False (a share over 0, an unknown population)."""
    import numpy as np
    import pandas as pd

    return pd.arrays.FloatingArray(np.where(valid, values, 0.0).astype(float), ~np.asarray(valid, dtype=bool))


#: pandas types of the columns of :func:`indicators_by_level` (integers without <NA> but the population,
#: rates and shares with <NA>).
_FRAME_TYPES: dict[str, str] = {
    "population": "Int64", "rayon_m": "float64", "inclut_donnees_simulees": "bool",
    **{c: "int64" for c in INDICATOR_COLUMNS if c.startswith("n_")},
    **{c: "Float64" for c in INDICATOR_COLUMNS if c.startswith("part_") or c.endswith("_pour_10k_hab")},
}


def indicators_by_level(con: duckdb.DuckDBPyConnection, level: Level, *, selection: Selection | None = None,
                        radius_m: float = 1000.0) -> pd.DataFrame:
    """One row per unit of ``level`` in the selection with every indicator, columns :data:`INDICATOR_COLUMNS`.

    EPCI, département and région units are those of the selected communes, their population the
    sum of those communes. QPV coverage counts the tiers-lieux kept by the selection's tiers-lieu
    filters within ``radius_m`` (geodesic metres), from any territory. Counts are integers, rates per
    10,000 inhabitants and shares fractions in [0, 1], <NA> when the denominator is 0 or unknown: all
    computed in DuckDB (:func:`essmap.store.queries.unit_indicators`), the query :func:`indicator_rows`
    gives as plain rows.
    """
    _check_level(level)
    return arrow_frame(queries.unit_indicators(con, level, selection or Selection(), radius_m=radius_m).arrow(),
                       types={**_FRAME_TYPES, "code": "str", "nom": "str"})


def indicator_rows(con: duckdb.DuckDBPyConnection, level: Level, *, selection: Selection | None = None,
                   radius_m: float = 1000.0) -> tuple[list[str], list[tuple]]:
    """:func:`indicators_by_level` as the column names and the rows DuckDB gives (None where <NA>),
    without pandas: what the command line writes."""
    _check_level(level)
    found = queries.unit_indicators(con, level, selection or Selection(), radius_m=radius_m)
    return [d[0] for d in found.description], found.fetchall()


# --- Breakdowns (long format) ------------------------------------------------------------------

_CATEGORIES: dict[str, dict[str, str]] = {
    "famille": nomenclature.FAMILY_LABELS,
    "secteur": nomenclature.SECTOR_LABELS,
}


def breakdown(con: duckdb.DuckDBPyConnection, level: Level, by: Literal["famille", "secteur"], *,
              selection: Selection | None = None, only_in_qpv: bool = False) -> pd.DataFrame:
    """Establishments by unit and ESS family (or sector), long format.

    One row per unit and category, every category listed even at 0 (stable shape for charts and
    for :func:`pivot_breakdown`). ``part`` is the category's share of the unit's establishments.
    ``only_in_qpv`` counts only establishments located in a QPV (e.g. to set the families of ESS
    employers in QPVs, 88.6 % associations nationally, against a territory: use
    ``Selection(employer_only=True)``).

    Returns
    -------
    pandas.DataFrame
        Columns ``code``, ``nom``, ``dimension`` (``by``), ``categorie``, ``libelle``, ``n``, ``part``.
    """
    import numpy as np
    import pandas as pd
    _check_level(level)
    if by not in _CATEGORIES:
        raise ValueError(f"by : « {by} » inconnu ; attendu 'famille' ou 'secteur'.")
    selection = selection or Selection()
    units = queries.unit_counts(con, level, selection, radius_m=0.0)[["code", "nom", "n_etablissements"]]
    counts = queries.breakdown_counts(con, level, by, selection, only_in_qpv=only_in_qpv)
    labels = _CATEGORIES[by]
    keys = list(labels)
    grid = pd.MultiIndex.from_product([units["code"].astype(str), keys], names=["code", "categorie"])
    n = (counts.assign(code=counts["code"].astype(str), categorie=counts["categorie"].astype(str))
         .set_index(["code", "categorie"])["n"].reindex(grid).fillna(0).astype(np.int64))
    totals = n.groupby(level="code", sort=False).transform("sum").to_numpy()
    text = {"code": "string", "nom": "string", "dimension": "string", "categorie": "string", "libelle": "string"}
    return pd.DataFrame({
        "code": np.repeat(units["code"].astype("string").to_numpy(), len(keys)),
        "nom": np.repeat(units["nom"].astype("string").to_numpy(), len(keys)),
        "dimension": by,
        "categorie": np.tile(np.array(keys, dtype=object), len(units)),
        "libelle": np.tile(np.array([labels[k] for k in keys], dtype=object), len(units)),
        "n": n.to_numpy(),
        "part": _float_na(n.to_numpy() / np.maximum(totals, 1), totals > 0),
    }).astype(text)


def pivot_breakdown(long: pd.DataFrame) -> pd.DataFrame:
    """Widen a :func:`breakdown` table: one row per unit, columns ``n_<dimension>_<categorie>``
    (e.g. ``n_famille_association``, ``n_secteur_action_sociale``), for exports."""
    import numpy as np
    column = "n_" + long["dimension"].astype(str) + "_" + long["categorie"].astype(str)
    wide = long.assign(column=column).pivot_table(
        index="code", columns="column", values="n", aggfunc="sum", sort=False, observed=True
    )
    wide = wide.reindex(columns=list(dict.fromkeys(column))).fillna(0).astype(np.int64)
    wide.columns.name = None
    return wide.reset_index()
