"""National reference figures of ``docs/domain.md``, each with its source.

Used by key-figure cards ("value / parent / France") through
:func:`essmap.analysis.indicators.compare`. Shares are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

_SRC_OBS = "Observatoire national de l'ESS (ESS France), d'après INSEE Flores 2021"
_SRC_QPV_STUDY = "ESS France pour l'ANCT, l'ESS dans les quartiers prioritaires"

#: Population used for national per-10,000 figures: sum of the populations légales of the
#: ``COM`` rows of ``data/geo/communes_france.parquet`` (2017 vintage per its README; Mayotte
#: has no population there, so it is left out). Checked by the tests against that file.
FRANCE_POPULATION = 66_526_267
FRANCE_POPULATION_LABEL = (
    "66 526 267 habitants : somme des populations légales des communes du fichier communes "
    "d'essmap (millésime 2017, Mayotte non renseignée)"
)


@dataclass(frozen=True)
class ReferenceFigure:
    """A published national figure, for "value / parent / France" cards."""

    key: str
    label_fr: str
    value: float
    unit_fr: str
    counting_unit: str
    scope_fr: str
    source_fr: str
    note_fr: str = ""


_EMPLOYER_ESTABLISHMENTS = 207_894
_QPV_EMPLOYER_ESTABLISHMENTS = 10_808

REFERENCE_FIGURES: tuple[ReferenceFigure, ...] = (
    ReferenceFigure(
        "france_etablissements_employeurs", "Établissements employeurs de l'ESS",
        _EMPLOYER_ESTABLISHMENTS, "établissements", "établissement employeur", "France", _SRC_OBS,
    ),
    ReferenceFigure(
        "france_entreprises", "Entreprises de l'ESS", 152_979, "entreprises",
        "entreprise (organisation)", "France", _SRC_OBS,
    ),
    ReferenceFigure(
        "france_salaries", "Salariés de l'ESS", 2_700_000, "salariés", "salarié", "France", _SRC_OBS,
    ),
    ReferenceFigure("france_part_emploi", "Part de l'ESS dans l'emploi", 0.106, "%", "emploi", "France", _SRC_OBS),
    ReferenceFigure(
        "france_part_emploi_prive", "Part de l'ESS dans l'emploi privé", 0.137, "%", "emploi",
        "France", _SRC_OBS,
    ),
    ReferenceFigure(
        "france_etablissements_employeurs_pour_10k_hab",
        "Établissements employeurs de l'ESS pour 10 000 habitants",
        _EMPLOYER_ESTABLISHMENTS / FRANCE_POPULATION * 10_000, "pour 10 000 hab.",
        "établissement employeur", "France", f"{_SRC_OBS} ; population : {FRANCE_POPULATION_LABEL}",
        "Calcul essmap : établissements de 2021 rapportés à la population légale 2017.",
    ),
    ReferenceFigure(
        "qpv_etablissements_employeurs", "Établissements employeurs de l'ESS dans les QPV",
        _QPV_EMPLOYER_ESTABLISHMENTS, "établissements", "établissement employeur", "QPV de France",
        _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "qpv_emplois", "Emplois de l'ESS dans les QPV", 114_708, "emplois", "emploi",
        "QPV de France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "france_part_employeurs_en_qpv", "Part des établissements employeurs de l'ESS situés en QPV",
        _QPV_EMPLOYER_ESTABLISHMENTS / _EMPLOYER_ESTABLISHMENTS, "%", "établissement employeur",
        "France", f"{_SRC_QPV_STUDY} ; {_SRC_OBS}",
        "Calcul essmap : 10 808 / 207 894, deux publications distinctes (ordre de grandeur).",
    ),
    ReferenceFigure(
        "qpv_part_emploi", "Part de l'ESS dans l'emploi en QPV", 0.170, "%", "emploi",
        "QPV de France", _SRC_QPV_STUDY, "Même étude : 10,4 % en France.",
    ),
    ReferenceFigure(
        "qpv_part_emploi_france", "Part de l'ESS dans l'emploi en France (étude QPV)", 0.104, "%",
        "emploi", "France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "qpv_part_emploi_prive", "Part de l'ESS dans l'emploi privé en QPV", 0.270, "%", "emploi",
        "QPV de France", _SRC_QPV_STUDY, "Même étude : 13,9 % en France.",
    ),
    ReferenceFigure(
        "qpv_part_emploi_prive_france", "Part de l'ESS dans l'emploi privé en France (étude QPV)",
        0.139, "%", "emploi", "France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "qpv_part_famille_association", "Associations parmi les établissements employeurs de l'ESS en QPV",
        0.886, "%", "établissement employeur", "QPV de France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "qpv_part_famille_cooperative", "Coopératives parmi les établissements employeurs de l'ESS en QPV",
        0.064, "%", "établissement employeur", "QPV de France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "qpv_part_famille_mutuelle", "Mutuelles parmi les établissements employeurs de l'ESS en QPV",
        0.031, "%", "établissement employeur", "QPV de France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "qpv_part_famille_fondation", "Fondations parmi les établissements employeurs de l'ESS en QPV",
        0.019, "%", "établissement employeur", "QPV de France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "france_part_famille_association", "Associations parmi les établissements employeurs de l'ESS",
        0.766, "%", "établissement employeur", "France", _SRC_QPV_STUDY,
    ),
    ReferenceFigure(
        "tiers_lieux_part_en_qpv_1km",
        "Part des tiers-lieux situés dans un QPV ou à moins d'1 km", 0.31, "%", "tiers-lieu",
        "France", "ANCT / France Tiers-Lieux (publication sur les tiers-lieux et les QPV)",
        "Comparable seulement avec un rayon de 1 000 m.",
    ),
    ReferenceFigure(
        "qpv_part_avec_tiers_lieu_1km",
        "Part des QPV ayant un tiers-lieu au sein du quartier ou à moins d'1 km", 0.36, "%", "QPV",
        "QPV de France", "ANCT / France Tiers-Lieux (publication sur les tiers-lieux et les QPV)",
        "Comparable seulement avec un rayon de 1 000 m.",
    ),
)

REFERENCES_BY_KEY: dict[str, ReferenceFigure] = {r.key: r for r in REFERENCE_FIGURES}


def reference_figures() -> tuple[ReferenceFigure, ...]:
    """The national reference figures of ``docs/domain.md``, each with its source."""
    return REFERENCE_FIGURES
