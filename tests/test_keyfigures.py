"""The top of a fiche: key figures with their comparison phrase and a one-line reading."""

from __future__ import annotations

import pytest

from essmap.analysis.indicators import REFERENCES_BY_KEY, compare
from essmap.domain.selection import Selection
from essmap.present import keyfigures, viewdata
from essmap.present.view import MapView

FRANCE_RATE = REFERENCES_BY_KEY["france_etablissements_employeurs_pour_10k_hab"].value  # 31,2 for 10 000 hab.


def _row(**values):
    return {"code": "84007", "nom": "Avignon", "rayon_m": 1000.0, **values}


def _figure(key, unit_row, parent_row=None, parent_level="departement"):
    return keyfigures.key_figure(compare(key, unit_row, parent_row), parent_level=parent_level)


def test_rate_reads_against_france_with_value_reference_and_gap():
    figure = _figure("etablissements_employeurs_pour_10k_hab",
                     _row(etablissements_employeurs_pour_10k_hab=FRANCE_RATE + 1.0))
    assert figure.value == "32,2"
    assert figure.comparison == "32,2 · France 31,2 · +1,0"
    assert figure.reading == "Plus d'ESS employeuse que la moyenne nationale"
    below = _figure("etablissements_employeurs_pour_10k_hab", _row(etablissements_employeurs_pour_10k_hab=20.0))
    assert below.comparison == "20,0 · France 31,2 · \u221211,2"
    assert below.reading == "Moins d'ESS employeuse que la moyenne nationale"
    close = _figure("etablissements_employeurs_pour_10k_hab", _row(etablissements_employeurs_pour_10k_hab=31.0))
    assert close.reading == "Autant d'ESS employeuse que la moyenne nationale"
    assert figure.label == "Employeurs de l'ESS pour 10 000 hab."


def test_share_gap_is_in_points_and_without_a_national_figure_the_parent_is_the_reference():
    qpv_share = REFERENCES_BY_KEY["france_part_employeurs_en_qpv"].value
    figure = _figure("part_employeurs_en_qpv", _row(part_employeurs_en_qpv=qpv_share + 0.031))
    assert figure.comparison.endswith(" · +3,1\u00a0pt") and " · France 5,2\u202f% · " in figure.comparison
    assert figure.reading == "Employeurs de l'ESS plus présents en QPV que la moyenne nationale"
    # a radius other than 1 km has no national reference: the département is the reference
    figure = _figure("part_qpv_avec_tiers_lieu", _row(part_qpv_avec_tiers_lieu=0.25, rayon_m=500.0),
                     {"code": "84", "nom": "Vaucluse", "part_qpv_avec_tiers_lieu": 0.5})
    assert figure.comparison == "25,0\u202f% · Vaucluse 50,0\u202f% · \u221225,0\u00a0pt"
    assert figure.reading == "QPV moins souvent proches d'un tiers-lieu que la moyenne du département"


def test_counts_are_shares_of_the_parent_and_missing_values_say_why():
    figure = _figure("n_etablissements", _row(n_etablissements=1234),
                     {"code": "13", "nom": "Bouches-du-Rhône", "n_etablissements": 6856})
    assert figure.comparison == "1\u202f234 · Bouches-du-Rhône 6\u202f856 · 18\u202f%"
    assert figure.reading == "18\u202f% des établissements de l'ESS du département"
    small = _figure("n_tiers_lieux", _row(n_tiers_lieux=3), {"code": "13", "nom": "B", "n_tiers_lieux": 400})
    assert small.reading == "0,8\u202f% des tiers-lieux du département"
    alone = _figure("n_qpv", _row(n_qpv=4))
    assert (alone.comparison, alone.reading) == ("4", "")
    no_population = _figure("etablissements_employeurs_pour_10k_hab", _row())
    assert no_population.value == "–" and no_population.reading.startswith("Population inconnue")


@pytest.mark.parametrize("gap, unit, text", [
    (0.04, "pour 10 000 hab.", "\u00b10,0"), (-0.0004, "%", "\u00b10,0\u00a0pt"), (12, "établissements", "+12"),
    (-1234.0, "établissements", "\u22121\u202f234"),
])
def test_gaps_are_signed_and_never_minus_zero(gap, unit, text):
    assert keyfigures.format_gap(gap, unit) == text


def test_fiche_of_the_demo_store_has_four_to_six_readable_figures(demo_con):
    data = viewdata.view_data(demo_con, MapView(Selection(departements=("13",))))
    for code in ("13055", str(data.qpv["code_qp"].iloc[0])):
        fiche = viewdata.fiche(demo_con, data, code)
        figures = keyfigures.key_figures(fiche)
        assert 4 <= len(figures) <= 6, figures
        assert all(f.comparison.startswith(f.value) for f in figures)
        assert all(len(f.label) <= 40 and "…" not in f.label + f.comparison + f.reading for f in figures)
        if code == "13055":
            assert all(f.reading for f in figures), figures  # Marseille has a département and national figures
            assert any("Bouches-du-Rhône" in f.comparison for f in figures)
