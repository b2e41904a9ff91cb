"""Indicator tables on a store of hand-built layers with known answers; references and comparisons.

The store computes the memberships at ingest (commune roll-up, EPCI, région, QPV by point in
polygon, QPV x tiers-lieux pairs): these tests check the whole path, from layers to indicators.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from essmap.analysis import indicators as ind
from essmap.domain.selection import Selection
from essmap.store import queries

COMMUNES_PARQUET = Path(__file__).resolve().parents[2] / "data" / "geo" / "communes_france.parquet"

MARSEILLE = (5.37, 43.30)
AIX = (5.447, 43.529)
AVIGNON = (4.805, 43.949)


@pytest.fixture
def layers(build, sample_communes):
    communes = sample_communes
    qpv = build.qpv_frame(
        [build.square(*MARSEILLE, 300), build.square(*AIX, 300), build.square(*AVIGNON, 300)],
        ["QN01301M", "QN01302M", "QN08401M"],
        insee_dep=["13", "13", "84"],
        insee_com=["13201,13202", "13001,13004", "84007"],  # spanning several communes
    )
    out_of_qpv = build.offset(*MARSEILLE, 0, 2000)
    etab = build.establishments_frame(
        [
            {"siret": "1", "siren": "A", "code_commune": "13201", "lon": MARSEILLE[0], "lat": MARSEILLE[1]},
            {"siret": "2", "siren": "A", "code_commune": "13202", "lon": MARSEILLE[0] + 0.001, "lat": MARSEILLE[1]},
            {"siret": "3", "siren": "B", "code_commune": "13055", "famille": "cooperative",
             "secteur": "commerce", "employeur": False, "lon": out_of_qpv[0], "lat": out_of_qpv[1]},
            {"siret": "4", "siren": "C", "code_commune": "13001", "famille": "mutuelle",
             "is_synthetic": True, "lon": AIX[0], "lat": AIX[1]},
            {"siret": "5", "siren": "D", "code_commune": "84007", "code_departement": "84",
             "famille": "fondation", "lon": AVIGNON[0] + 0.02, "lat": AVIGNON[1]},
            {"siret": "6", "siren": "E", "code_commune": "69381", "code_departement": "69",
             "famille": "cooperative", "lon": 4.83, "lat": 45.76},
        ]
    )
    tiers_lieux = build.tiers_lieux_frame(
        [MARSEILLE, build.offset(*AIX, 90, 900)],
        synthetic=[False, True],
        code_commune=["13201", "13001"],
    )
    return {"communes": communes, "qpv": qpv, "establishments": etab, "tiers_lieux": tiers_lieux}


@pytest.fixture
def con(layers, store_of):
    return store_of(communes=layers["communes"], qpv=layers["qpv"], establishments=layers["establishments"],
                    tiers_lieux=layers["tiers_lieux"])


@pytest.fixture
def table(con):
    def indicators(level, **kwargs) -> pd.DataFrame:
        return ind.indicators_by_level(con, level, **kwargs).set_index("code")

    return indicators


def test_commune_level(table) -> None:
    t = table("commune")
    assert list(t.index) == ["13001", "13004", "13055", "69123", "84007"]  # COM only, ARM rolled up
    m = t.loc["13055"]
    counts = ("population", "n_etablissements", "n_etablissements_employeurs", "n_organisations")
    assert tuple(m[c] for c in counts) == (870_000, 3, 2, 2)
    assert m["etablissements_pour_10k_hab"] == pytest.approx(3 / 870_000 * 10_000)
    assert m["etablissements_employeurs_pour_10k_hab"] == pytest.approx(2 / 870_000 * 10_000)
    assert m["n_etablissements_en_qpv"] == 2
    assert m["part_etablissements_en_qpv"] == pytest.approx(2 / 3)
    assert m["part_etablissements_hors_qpv"] == pytest.approx(1 / 3)
    assert m["part_employeurs_en_qpv"] == 1.0
    assert (m["n_tiers_lieux"], m["n_qpv"], m["n_qpv_avec_tiers_lieu"], m["part_qpv_avec_tiers_lieu"]) == (1, 1, 1, 1.0)
    assert not m["inclut_donnees_simulees"]
    # Arles: no establishment (shares <NA>), but part of a QPV covered by a simulated tiers-lieu
    arles = t.loc["13004"]
    assert arles["n_etablissements"] == 0 and pd.isna(arles["part_etablissements_en_qpv"])
    assert arles["n_qpv"] == 1 and arles["n_qpv_avec_tiers_lieu"] == 1
    assert arles["inclut_donnees_simulees"]
    assert t.loc["13001", "inclut_donnees_simulees"]
    # an arrondissement missing from the communes table still rolls up (Lyon 69381)
    assert t.loc["69123", "n_etablissements"] == 1
    assert t.loc["84007", "part_qpv_avec_tiers_lieu"] == 0.0
    assert (t["rayon_m"] == 1000.0).all()


def test_higher_levels(table) -> None:
    deps = table("departement")
    assert deps.loc["13", "population"] == 870_000 + 143_000 + 51_000
    assert tuple(deps.loc["13", ["n_etablissements", "n_etablissements_employeurs", "n_organisations"]]) == (4, 3, 3)
    assert tuple(deps.loc["13", ["n_qpv", "n_qpv_avec_tiers_lieu", "n_tiers_lieux"]]) == (2, 2, 2)
    assert deps.loc["84", "part_qpv_avec_tiers_lieu"] == 0.0
    # a département without QPV: no share rather than 0 %
    assert deps.loc["69", "n_qpv"] == 0 and pd.isna(deps.loc["69", "part_qpv_avec_tiers_lieu"])
    assert deps.loc["13", "nom"] == "Bouches-du-Rhône"  # names from the départements table

    epci = table("epci")
    assert epci.loc["200054807", "n_etablissements"] == 4
    assert epci.loc["200054807", "population"] == 870_000 + 143_000
    assert epci.loc["241300417", "n_qpv"] == 1  # Arles' EPCI through the QPV spanning communes
    assert epci.loc["200046977", "n_etablissements"] == 1

    regions = table("region")
    assert regions.loc["93", "n_etablissements"] == 5 and regions.loc["84", "n_etablissements"] == 1
    assert regions.loc["93", "n_qpv"] == 3


def test_qpv_level_has_no_population(table) -> None:
    t = table("qpv")
    assert list(t.index) == ["QN01301M", "QN01302M", "QN08401M"]
    assert t["population"].isna().all()
    assert t["etablissements_pour_10k_hab"].isna().all()
    assert t["n_etablissements"].tolist() == [2, 1, 0]
    assert t["n_tiers_lieux"].tolist() == [1, 0, 0]  # the Aix tiers-lieu is near, not inside
    assert t["n_qpv_avec_tiers_lieu"].tolist() == [1, 1, 0]
    assert t.loc["QN01301M", "nom"] == "Quartier QN01301M"


def test_memberships_are_stored_at_ingest(con) -> None:
    """Each establishment carries its commune proper, EPCI, région and QPV, computed at ingest."""
    rows = con.execute("SELECT siret, code_com, siren_epci, code_region, code_qp_2024 FROM etablissements "
                       "ORDER BY siret").fetchall()
    assert rows == [
        ("1", "13055", "200054807", "93", "QN01301M"),  # arrondissement 13201 rolled up to Marseille
        ("2", "13055", "200054807", "93", "QN01301M"),
        ("3", "13055", "200054807", "93", None),
        ("4", "13001", "200054807", "93", "QN01302M"),
        ("5", "84007", "248400251", "93", None),
        ("6", "69123", "200046977", "84", None),  # an arrondissement the communes table lacks rolls up
    ]
    pairs = con.execute("SELECT code_qp, id_tiers_lieu, distance_m FROM qpv_tiers_lieux ORDER BY ALL").fetchall()
    near = {(q, t): d for q, t, d in pairs}
    assert near[("QN01301M", "TL1")] == 0.0  # inside
    assert 550 < near[("QN01302M", "TL2")] < 650  # 900 m east of the centre of a 600 m square


def test_selection_applies_to_every_layer(table) -> None:
    assoc = table("commune", selection=Selection(families=("association",)))
    assert assoc.loc["13055", "n_etablissements"] == 2 and assoc.loc["13001", "n_etablissements"] == 0
    bdr = table("commune", selection=Selection(departements=("13",)))
    assert list(bdr.index) == ["13001", "13004", "13055"]
    real = table("commune", selection=Selection(synthetic="real"))
    assert real.loc["13001", "n_etablissements"] == 0 and real.loc["13001", "n_tiers_lieux"] == 0
    assert not real["inclut_donnees_simulees"].any()
    assert real.loc["13001", "n_qpv_avec_tiers_lieu"] == 0  # only a simulated tiers-lieu was near
    employers = table("departement", selection=Selection(employer_only=True))
    assert employers.loc["13", "n_etablissements"] == 3
    one_qpv = table("qpv", selection=Selection(qpv=("QN01302M",)))
    assert list(one_qpv.index) == ["QN01302M"] and one_qpv.loc["QN01302M", "n_etablissements"] == 1


def test_radius_is_recorded_and_used(table) -> None:
    t = table("commune", radius_m=500.0)
    assert (t["rayon_m"] == 500.0).all()
    assert t.loc["13001", "n_qpv_avec_tiers_lieu"] == 0  # the Aix tiers-lieu is ~600 m away


def test_qpv_generations_are_never_mixed(layers, store_of) -> None:
    """Two generations overlap: each has its own membership column; the newest is used by default."""
    old = layers["qpv"].copy()
    old["code_qp"] = ["QP013001", "QP013002", "QP084001"]
    old["generation"] = "2015"
    both = pd.concat([layers["qpv"], old], ignore_index=True)
    con = store_of(communes=layers["communes"], qpv=both, establishments=layers["establishments"],
                   tiers_lieux=layers["tiers_lieux"])
    default = ind.indicators_by_level(con, "qpv").set_index("code")
    assert list(default.index) == ["QN01301M", "QN01302M", "QN08401M"]
    old_generation = ind.indicators_by_level(con, "qpv", selection=Selection(qpv_generation="2015")).set_index("code")
    assert list(old_generation.index) == ["QP013001", "QP013002", "QP084001"]
    assert old_generation["n_etablissements"].tolist() == [2, 1, 0]
    communes = ind.indicators_by_level(con, "commune").set_index("code")
    assert communes.loc["13055", "n_qpv"] == 1  # not 2: the 2015 QPV is not added to the 2024 one


def test_breakdown_long_and_wide(con) -> None:
    long = ind.breakdown(con, "departement", "famille")
    assert list(long.columns) == ["code", "nom", "dimension", "categorie", "libelle", "n", "part"]
    bdr = long[long["code"] == "13"].set_index("categorie")
    assert bdr["n"].to_dict() == {
        "association": 2, "cooperative": 1, "mutuelle": 1, "fondation": 0, "societe_commerciale_ess": 0,
    }
    assert bdr.loc["association", "part"] == pytest.approx(0.5)
    assert bdr.loc["association", "libelle"] == "Associations"
    wide = ind.pivot_breakdown(long).set_index("code")
    assert wide.loc["13", "n_famille_association"] == 2 and wide.loc["84", "n_famille_fondation"] == 1
    sectors = ind.breakdown(con, "commune", "secteur")
    assert "n_secteur_action_sociale" in ind.pivot_breakdown(sectors).columns
    in_qpv = ind.breakdown(con, "departement", "famille", only_in_qpv=True,
                           selection=Selection(employer_only=True)).set_index(["code", "categorie"])
    assert in_qpv.loc[("13", "association"), "part"] == pytest.approx(2 / 3)
    by_qpv = ind.breakdown(con, "qpv", "famille")
    assert by_qpv.set_index(["code", "categorie"]).loc[("QN01302M", "mutuelle"), "n"] == 1


def test_catalogue_covers_every_column(con) -> None:
    t = ind.indicators_by_level(con, "commune")
    assert tuple(t.columns) == ind.INDICATOR_COLUMNS
    assert set(t.columns) - {"code", "nom"} == set(ind.INDICATORS_BY_KEY)
    for indicator in ind.INDICATORS:
        assert indicator.label_fr and indicator.unit_fr and indicator.counting_unit and indicator.source_fr
    units = {i.counting_unit for i in ind.INDICATORS}
    assert {"établissement", "organisation (SIREN)"} <= units


def test_france_population_is_the_communes_file_sum() -> None:
    communes = pd.read_parquet(COMMUNES_PARQUET, columns=["type_commune", "population"])
    assert communes.loc[communes["type_commune"] == "COM", "population"].sum() == ind.FRANCE_POPULATION
    per_10k = ind.REFERENCES_BY_KEY["france_etablissements_employeurs_pour_10k_hab"]
    assert per_10k.value == pytest.approx(207_894 / 66_526_267 * 10_000)
    assert "2017" in per_10k.source_fr


def test_reference_figures_have_sources() -> None:
    figures = {r.key: r for r in ind.reference_figures()}
    assert figures["france_etablissements_employeurs"].value == 207_894
    assert figures["france_entreprises"].value == 152_979
    assert figures["qpv_etablissements_employeurs"].value == 10_808
    assert figures["qpv_emplois"].value == 114_708
    assert figures["qpv_part_famille_association"].value == pytest.approx(0.886)
    assert figures["france_part_famille_association"].value == pytest.approx(0.766)
    assert figures["qpv_part_avec_tiers_lieu_1km"].value == pytest.approx(0.36)
    assert all(r.source_fr for r in figures.values())


def test_compare_unit_parent_and_france(table) -> None:
    communes = table("commune").reset_index()
    deps = table("departement").reset_index()
    unit = communes.set_index("code").loc["13055"].to_dict() | {"code": "13055"}
    parent = deps.set_index("code").loc["13"].to_dict() | {"code": "13"}
    card = ind.compare("etablissements_employeurs_pour_10k_hab", unit, parent, parent_name="Bouches-du-Rhône")
    assert card.value == pytest.approx(2 / 870_000 * 10_000)
    assert card.parent_value == pytest.approx(3 / 1_064_000 * 10_000)
    assert card.parent_name == "Bouches-du-Rhône"
    assert card.france_value == pytest.approx(31.25, abs=0.01)
    assert "Flores 2021" in card.france_source_fr
    coverage = ind.compare("part_qpv_avec_tiers_lieu", unit)
    assert coverage.france_value == pytest.approx(0.36)
    other_radius = ind.compare("part_qpv_avec_tiers_lieu", unit | {"rayon_m": 500.0})
    assert other_radius.france_value is None and "1 km" in other_radius.note_fr
    assert ind.compare("n_tiers_lieux", unit).france_value is None


def test_parent_codes(con) -> None:
    def parent(level: str, code: str) -> str | None:
        return queries.parent_code(con, level, code, generation="2024")

    communes = ("13001", "13004", "13055", "69123", "84007")
    assert [parent("commune", c) for c in communes] == ["13", "13", "13", "69", "84"]
    assert [parent("epci", c) for c in ("200054807", "248400251")] == ["13", "84"]
    assert [parent("departement", c) for c in ("13", "69")] == ["93", "84"]
    assert parent("region", "93") is None
    assert parent("qpv", "QN01301M") == "13055"  # its commune, arrondissements rolled up
