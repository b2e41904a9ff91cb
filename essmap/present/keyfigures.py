"""The top of a fiche, read in ten seconds: a few key figures, each with its comparison as a short
phrase ("32,2 · France 31,2 · +1,0") and a one-line reading ("Plus d'ESS employeuse que la moyenne
nationale").

Pure functions of a :class:`~essmap.present.viewdata.Fiche` (its
:class:`~essmap.analysis.indicators.Comparison` objects): the dashboard only lays them out. Rates and
shares are compared with France when a published figure is comparable, else with the parent unit;
counts are put against the parent unit's ("18 % des établissements de l'ESS du département").
The full figures, with their sources and notes, stay in the fiche's "Sources et méthode" section.
"""

from __future__ import annotations

from dataclasses import dataclass

from essmap.analysis.indicators import PARENT_LEVEL, Comparison
from essmap.domain.formatting import format_number, format_percent
from essmap.present.viewdata import Fiche, format_value

#: Key figures of a fiche by level of the unit, in order (a QPV has no population of its own, and
#: its share of establishments in a QPV is 100 % by definition).
KEY_FIGURES: dict[str, tuple[str, ...]] = {
    "default": ("etablissements_employeurs_pour_10k_hab", "part_employeurs_en_qpv", "part_qpv_avec_tiers_lieu",
                "n_etablissements", "n_tiers_lieux", "n_qpv"),
    "qpv": ("n_etablissements", "n_etablissements_employeurs", "n_tiers_lieux", "part_qpv_avec_tiers_lieu"),
}

#: Short card labels: a card is a quarter of the page wide, the indicator's full label is in the
#: "Sources et méthode" section.
SHORT_LABELS: dict[str, str] = {
    "etablissements_employeurs_pour_10k_hab": "Employeurs de l'ESS pour 10 000 hab.",
    "part_employeurs_en_qpv": "Part des employeurs de l'ESS en QPV",
    "part_qpv_avec_tiers_lieu": "QPV ayant un tiers-lieu proche",
    "n_etablissements": "Établissements de l'ESS",
    "n_etablissements_employeurs": "Établissements employeurs de l'ESS",
    "n_tiers_lieux": "Tiers-lieux",
    "n_qpv": "Quartiers prioritaires (QPV)",
}

#: What a count is a share of, in a reading: "18 % des établissements de l'ESS du département".
_COUNTED: dict[str, str] = {
    "n_etablissements": "des établissements de l'ESS",
    "n_etablissements_employeurs": "des établissements employeurs de l'ESS",
    "n_tiers_lieux": "des tiers-lieux",
    "n_qpv": "des QPV",
}

#: The parent unit as a reading names it.
_OF_PARENT: dict[str, str] = {"departement": "du département", "region": "de la région", "commune": "de la commune"}

#: Readings of the rates and shares: (above, close, below) the reference; "{ref}" is "la moyenne
#: nationale" or "la moyenne du département"...
_READINGS: dict[str, tuple[str, str, str]] = {
    "etablissements_employeurs_pour_10k_hab": (
        "Plus d'ESS employeuse que {ref}", "Autant d'ESS employeuse que {ref}", "Moins d'ESS employeuse que {ref}"),
    "part_employeurs_en_qpv": (
        "Employeurs de l'ESS plus présents en QPV que {ref}",
        "Employeurs de l'ESS autant présents en QPV que {ref}",
        "Employeurs de l'ESS moins présents en QPV que {ref}"),
    "part_qpv_avec_tiers_lieu": (
        "QPV plus souvent proches d'un tiers-lieu que {ref}",
        "QPV aussi souvent proches d'un tiers-lieu que {ref}",
        "QPV moins souvent proches d'un tiers-lieu que {ref}"),
}

#: Within this relative gap of its reference, a value reads as "autant que": the references are
#: figures of other years and sources, a gap of a few hundredths is no finding.
CLOSE_RELATIVE_GAP = 0.025

MINUS = "\u2212"


@dataclass(frozen=True)
class KeyFigure:
    """One card of the top of a fiche.

    ``comparison`` is the value with its reference and the gap ("32,2 · France 31,2 · +1,0"), or the
    value alone when there is nothing to compare with; ``reading`` is one line in plain French, or ""
    when the figure cannot be read against anything.
    """

    key: str
    label: str
    value: str
    comparison: str
    reading: str


def key_figures(fiche: Fiche) -> tuple[KeyFigure, ...]:
    """The key figures at the top of ``fiche``, in the order of :data:`KEY_FIGURES`."""
    by_key = {c.indicator.key: c for c in fiche.comparisons}
    keys = KEY_FIGURES.get(fiche.level, KEY_FIGURES["default"])
    return tuple(key_figure(by_key[k], parent_level=PARENT_LEVEL.get(fiche.level)) for k in keys if k in by_key)


def key_figure(comparison: Comparison, *, parent_level: str | None) -> KeyFigure:
    """The card of one comparison (see :class:`KeyFigure`); ``parent_level`` names the parent unit
    ("departement"...) in readings."""
    indicator = comparison.indicator
    value = format_value(comparison.value, indicator)
    label = SHORT_LABELS.get(indicator.key, indicator.label_fr)
    if comparison.value is None:
        return KeyFigure(indicator.key, label, value, value, _missing_reading(comparison))
    if indicator.key in _COUNTED:
        return _count_figure(comparison, label, value, parent_level)
    reference = _reference(comparison, parent_level)
    if reference is None:
        return KeyFigure(indicator.key, label, value, value, "")
    name, reference_value, reference_phrase = reference
    gap = comparison.value - reference_value
    reference_text = format_value(reference_value, indicator)
    comparison_text = f"{value} · {name} {reference_text} · {format_gap(gap, indicator.unit_fr)}"
    above, close, below = _READINGS.get(indicator.key, ("Supérieur à {ref}", "Proche de {ref}", "Inférieur à {ref}"))
    if abs(gap) <= CLOSE_RELATIVE_GAP * abs(reference_value):
        reading = close
    else:
        reading = above if gap > 0 else below
    return KeyFigure(indicator.key, label, value, comparison_text, reading.format(ref=reference_phrase))


def format_gap(gap: float, unit: str) -> str:
    """A signed difference: "+1,0" (rates), "−2,3 pt" (shares, in percentage points), "+12" (counts);
    "±0,0" when it rounds to nothing."""
    if unit == "%":
        amount, decimals, suffix = gap * 100, 1, "\u00a0pt"
    else:
        amount, decimals, suffix = gap, 1 if unit == "pour 10 000 hab." else 0, ""
    rounded = round(amount, decimals)
    sign = "\u00b1" if rounded == 0 else ("+" if rounded > 0 else MINUS)
    return f"{sign}{format_number(abs(rounded), decimals)}{suffix}"


def _reference(comparison: Comparison, parent_level: str | None) -> tuple[str, float, str] | None:
    """(name shown, value, reading phrase) of the reference: France if comparable, else the parent."""
    if comparison.france_value is not None:
        return "France", comparison.france_value, "la moyenne nationale"
    if comparison.parent_value is not None and comparison.parent_name:
        of_parent = _OF_PARENT.get(parent_level or "", f"de {comparison.parent_name}")
        return comparison.parent_name, comparison.parent_value, f"la moyenne {of_parent}"
    return None


def _count_figure(comparison: Comparison, label: str, value: str, parent_level: str | None) -> KeyFigure:
    key = comparison.indicator.key
    parent = comparison.parent_value
    if parent is None or not comparison.parent_name:
        return KeyFigure(key, label, value, value, "")
    comparison_text = f"{value} · {comparison.parent_name} {format_value(parent, comparison.indicator)}"
    if parent <= 0:
        return KeyFigure(key, label, value, comparison_text, "")
    ratio = float(comparison.value or 0) / parent
    share = format_percent(ratio, 0 if ratio >= 0.1 else 1)
    of_parent = _OF_PARENT.get(parent_level or "", f"de {comparison.parent_name}")
    return KeyFigure(key, label, value, f"{comparison_text} · {share}", f"{share} {_COUNTED[key]} {of_parent}")


def _missing_reading(comparison: Comparison) -> str:
    key = comparison.indicator.key
    if key.endswith("_pour_10k_hab"):
        return "Population inconnue à cette échelle : pas de taux"
    if key == "part_qpv_avec_tiers_lieu":
        return "Aucun QPV dans ce territoire"
    if key == "part_employeurs_en_qpv":
        return "Aucun établissement employeur de l'ESS"
    return ""
