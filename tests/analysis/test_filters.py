"""Selection: normalisation, filtering of every layer, description, URL round trip."""

from __future__ import annotations

import pandas as pd
import pytest
import shapely

from essmap.domain.nomenclature import SCOP_CODES
from essmap.domain.selection import (
    Selection,
    parent_commune_codes,
    qpv_commune_pairs,
    territory_names,
)


@pytest.fixture
def communes(sample_communes):
    return sample_communes


@pytest.fixture
def etab(build):
    return build.establishments_frame(
        [
            {"siret": "1", "code_commune": "13201", "famille": "association", "categorie_juridique": "9222"},
            {"siret": "2", "code_commune": "13055", "famille": "cooperative", "categorie_juridique": "5458",
             "secteur": "commerce", "employeur": False},
            {"siret": "3", "code_commune": "13001", "famille": "mutuelle", "categorie_juridique": "8210",
             "is_synthetic": True, "tranche_effectifs": "12"},
            {"siret": "4", "code_commune": "13004", "famille": "fondation", "categorie_juridique": "9300"},
            {"siret": "5", "code_commune": "84007", "code_departement": "84", "employeur": None},
            {"siret": "6", "code_commune": "69381", "code_departement": "69", "categorie_juridique": "5558",
             "famille": "cooperative"},
        ]
    )


def kept(frame) -> list[str]:
    return frame["siret"].tolist()


def test_normalisation_makes_equal_selections_equal() -> None:
    a = Selection(region="93", departements=["13", "6", "13"], communes=("1004",), families=("mutuelle", "association"))
    b = Selection(region="93", departements=("06", "13"), communes="01004", families=("association", "mutuelle"))
    assert a == b and hash(a) == hash(b)
    assert a.departements == ("06", "13") and a.communes == ("01004",)
    assert Selection(departements="2a").departements == ("2A",)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"synthetic": "fake"}, "synthetic"),
        ({"families": ("associations",)}, "families"),
        ({"sectors": ("social",)}, "sectors"),
        ({"size_bands": ("99",)}, "size_bands"),
        ({"tiers_lieu_types": ("a,b",)}, "virgule"),
    ],
)
def test_invalid_values_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Selection(**kwargs)


def test_query_params_round_trip() -> None:
    selection = Selection(
        region="93", departements=("13", "84"), epci=("200054807",), communes=("13055",),
        qpv=("QN01301M",), families=("association", "cooperative"), sectors=("action_sociale",),
        employer_only=True, size_bands=("11", "12"), legal_categories=("9222", *SCOP_CODES),
        tiers_lieu_types=("Fablab",), tiers_lieu_labels=("Fabrique de territoire",),
        synthetic="real", qpv_generation="2024",
    )
    params = selection.to_query_params()
    assert all(isinstance(v, str) for v in params.values())
    assert params["departements"] == "13,84" and params["employer_only"] == "1"
    assert Selection.from_query_params(params) == selection
    assert Selection().to_query_params() == {}
    assert Selection.from_query_params({"zoom": "12"}) == Selection()
    with pytest.raises(ValueError, match="booléen"):
        Selection.from_query_params({"employer_only": "peut-être"})


def test_describe_in_french() -> None:
    names = {"departement": {"13": "Bouches-du-Rhône"}}
    selection = Selection(departements=("13",), families=("association",), employer_only=True)
    assert selection.describe(names) == "Bouches-du-Rhône · associations · employeurs"
    assert Selection().describe() == "Toutes les données"
    text = Selection(legal_categories=("9222", *SCOP_CODES), synthetic="real", qpv_generation="2024").describe()
    assert text == "SCOP, association intermédiaire · données réelles uniquement · QPV 2024"
    assert Selection(region="93", departements=("84",)).describe() == "région 93 · département 84"


def test_territory_names_from_layers(communes, build) -> None:
    qpv = build.qpv_frame([shapely.box(5.36, 43.29, 5.37, 43.30)], ["QN01301M"])
    names = territory_names(communes=communes, qpv=qpv)
    assert names["commune"]["13055"] == "Marseille"
    assert Selection(communes=("13055",), qpv=("QN01301M",)).describe(names) == (
        "Marseille · QPV Quartier QN01301M"
    )


def test_no_filter_returns_the_frame_itself(etab) -> None:
    assert Selection().filter_establishments(etab) is etab


def test_attribute_filters(etab) -> None:
    assert kept(Selection(families=("cooperative",)).filter_establishments(etab)) == ["2", "6"]
    assert kept(Selection(sectors=("commerce",)).filter_establishments(etab)) == ["2"]
    # employeur <NA> is not an employer
    assert kept(Selection(employer_only=True).filter_establishments(etab)) == ["1", "3", "4", "6"]
    assert kept(Selection(size_bands=("12",)).filter_establishments(etab)) == ["3"]
    iae_scop = Selection(legal_categories=("9222", *SCOP_CODES))
    assert kept(iae_scop.filter_establishments(etab)) == ["1", "2", "6"]
    assert kept(Selection(synthetic="synthetic").filter_establishments(etab)) == ["3"]
    assert kept(Selection(synthetic="real").filter_establishments(etab)) == ["1", "2", "4", "5", "6"]


def test_territory_filters_on_establishments(etab, communes) -> None:
    assert kept(Selection(departements=("13",)).filter_establishments(etab)) == ["1", "2", "3", "4"]
    # Marseille includes its arrondissements; Lyon's 69381 rolls up without a communes table
    assert kept(Selection(communes=("13055",)).filter_establishments(etab)) == ["1", "2"]
    assert kept(Selection(communes=("69123",)).filter_establishments(etab)) == ["6"]
    assert kept(Selection(communes=("13201",)).filter_establishments(etab, communes=communes)) == ["1"]
    epci = Selection(epci=("200054807",))
    assert kept(epci.filter_establishments(etab, communes=communes)) == ["1", "2", "3"]
    region = Selection(region="93")
    assert kept(region.filter_establishments(etab, communes=communes)) == ["1", "2", "3", "4", "5"]
    with pytest.raises(ValueError, match="communes="):
        epci.filter_establishments(etab)
    with pytest.raises(ValueError, match="communes="):
        region.filter_establishments(etab)


def test_qpv_filter_needs_the_qpv_of_each_point(etab) -> None:
    selection = Selection(qpv=("QN01301M",))
    with pytest.raises(ValueError, match="in_qpv"):
        selection.filter_establishments(etab)
    in_qpv = pd.Series(["QN01301M", None, "QN01302M", None, None, None], index=etab.index, dtype="string")
    assert kept(selection.filter_establishments(etab, in_qpv=in_qpv)) == ["1"]


def test_tiers_lieux_filters(build) -> None:
    tl = build.tiers_lieux_frame(
        [(5.37, 43.30), (5.38, 43.31), (4.80, 43.95)],
        types=["Coworking; Fablab", "friche culturelle", "coworking"],
        labels=["Fabrique de territoire", None, "Manufacture de proximité"],
        synthetic=[False, True, False],
        code_commune=["13201", "13055", "84007"], code_departement=["13", "13", "84"],
    )
    ids = lambda frame: frame["id_tiers_lieu"].tolist()  # noqa: E731
    assert ids(Selection(tiers_lieu_types=("fablab",)).filter_tiers_lieux(tl)) == ["TL1"]
    assert ids(Selection(tiers_lieu_types=("COWORKING",)).filter_tiers_lieux(tl)) == ["TL1", "TL3"]
    assert ids(Selection(tiers_lieu_labels=("Fabrique de territoire",)).filter_tiers_lieux(tl)) == ["TL1"]
    assert ids(Selection(synthetic="real").filter_tiers_lieux(tl)) == ["TL1", "TL3"]
    assert ids(Selection(communes=("13055",)).filter_tiers_lieux(tl)) == ["TL1", "TL2"]
    # ESS filters do not apply to tiers-lieux
    assert ids(Selection(families=("mutuelle",)).filter_tiers_lieux(tl)) == ["TL1", "TL2", "TL3"]


def test_qpv_layer_filters(build, communes) -> None:
    polygons = [shapely.box(5.36, 43.29, 5.37, 43.30)] * 3
    qpv = build.qpv_frame(
        polygons, ["QN01301M", "QN01302M", "QN08401M"],
        insee_dep=["13", "13", "84"], insee_com=["13201,13202", "13001", "84007"],
    )
    codes = lambda frame: frame["code_qp"].tolist()  # noqa: E731
    assert codes(Selection(communes=("13055",)).filter_qpv(qpv)) == ["QN01301M"]
    assert codes(Selection(communes=("13202",)).filter_qpv(qpv)) == ["QN01301M"]
    assert codes(Selection(departements=("84",)).filter_qpv(qpv)) == ["QN08401M"]
    assert codes(Selection(epci=("200054807",)).filter_qpv(qpv, communes=communes)) == ["QN01301M", "QN01302M"]
    assert codes(Selection(region="93").filter_qpv(qpv, communes=communes)) == codes(qpv)
    assert codes(Selection(qpv=("QN01302M",)).filter_qpv(qpv)) == ["QN01302M"]
    assert codes(Selection(qpv_generation="2015").filter_qpv(qpv)) == []
    assert qpv_commune_pairs(qpv)["code_commune"].tolist() == ["13201", "13202", "13001", "84007"]


def test_communes_layer_filters(communes) -> None:
    codes = lambda frame: frame["code_insee"].tolist()  # noqa: E731
    assert codes(Selection(communes=("13055",)).filter_communes(communes)) == ["13055", "13201", "13202"]
    assert codes(Selection(departements=("84",)).filter_communes(communes)) == ["84007"]
    assert codes(Selection(epci=("241300417",)).filter_communes(communes)) == ["13004"]
    assert len(Selection(region="93").filter_communes(communes)) == 6
    assert len(Selection(qpv=("QN01301M",)).filter_communes(communes)) == len(communes)


def test_parent_commune_codes(communes) -> None:
    codes = pd.Series(["13201", "75112", "69385", "13055", None, "99999"], dtype="string")
    assert parent_commune_codes(codes).tolist() == ["13055", "75056", "69123", "13055", pd.NA, "99999"]
    assert parent_commune_codes(codes, communes).tolist()[0] == "13055"
