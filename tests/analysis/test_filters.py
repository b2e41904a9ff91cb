"""Selection: normalisation, filtering of every layer in the store (SQL), description, URL round trip."""

from __future__ import annotations

import pytest
import shapely

from essmap.domain.nomenclature import SCOP_CODES
from essmap.domain.selection import Selection
from essmap.store import filters, queries


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


@pytest.fixture
def qpv(build):
    return build.qpv_frame(
        [shapely.box(5.365, 43.295, 5.375, 43.305), shapely.box(5.44, 43.52, 5.45, 43.53),
         shapely.box(4.80, 43.94, 4.81, 43.95)],
        ["QN01301M", "QN01302M", "QN08401M"],
        insee_dep=["13", "13", "84"], insee_com=["13201,13202", "13001", "84007"],
    )


@pytest.fixture
def con(store_of, communes, etab, qpv):
    return store_of(communes=communes, establishments=etab, qpv=qpv)


@pytest.fixture
def kept(con):
    """SIRETs of the establishments a selection keeps, read from the store."""
    def sirets(selection: Selection) -> list[str]:
        return sorted(queries.read_points(con, "etablissements", selection, columns=["siret"])["siret"])

    return sirets


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


def test_names_from_the_store(con) -> None:
    names = queries.names(con, {"commune": ["13055"], "qpv": ["QN01301M"], "departement": ["13", "99"]})
    assert names["commune"]["13055"] == "Marseille" and names["departement"] == {"13": "Bouches-du-Rhône"}
    assert Selection(communes=("13055",), qpv=("QN01301M",)).describe(names) == (
        "Marseille · QPV Quartier QN01301M"
    )


def test_attribute_filters(kept) -> None:
    assert kept(Selection()) == ["1", "2", "3", "4", "5", "6"]
    assert kept(Selection(families=("cooperative",))) == ["2", "6"]
    assert kept(Selection(sectors=("commerce",))) == ["2"]
    # employeur <NA> is not an employer
    assert kept(Selection(employer_only=True)) == ["1", "3", "4", "6"]
    assert kept(Selection(size_bands=("12",))) == ["3"]
    assert kept(Selection(legal_categories=("9222", *SCOP_CODES))) == ["1", "2", "6"]
    assert kept(Selection(synthetic="synthetic")) == ["3"]
    assert kept(Selection(synthetic="real")) == ["1", "2", "4", "5", "6"]


def test_territory_filters_on_establishments(kept) -> None:
    assert kept(Selection(departements=("13",))) == ["1", "2", "3", "4"]
    # Marseille includes its arrondissements; Lyon's 69381 rolls up though the communes table lacks it
    assert kept(Selection(communes=("13055",))) == ["1", "2"]
    assert kept(Selection(communes=("69123",))) == ["6"]
    assert kept(Selection(communes=("13201",))) == ["1"]
    assert kept(Selection(epci=("200054807",))) == ["1", "2", "3"]
    assert kept(Selection(region="93")) == ["1", "2", "3", "4", "5"]


def test_qpv_filter_uses_the_stored_membership(kept) -> None:
    # every establishment of the fixture sits at the builder's default point, 5.37, 43.30: in QN01301M
    assert kept(Selection(qpv=("QN01301M",))) == ["1", "2", "3", "4", "5", "6"]
    assert kept(Selection(qpv=("QN08401M",))) == []
    assert kept(Selection(qpv=("QN01301M",), qpv_generation="2015")) == []


def test_tiers_lieux_filters(build, store_of) -> None:
    tl = build.tiers_lieux_frame(
        [(5.37, 43.30), (5.38, 43.31), (4.80, 43.95)],
        types=["Coworking; Fablab", "friche culturelle", "coworking"],
        labels=["Fabrique de territoire", None, "Manufacture de proximité"],
        synthetic=[False, True, False],
        code_commune=["13201", "13055", "84007"], code_departement=["13", "13", "84"],
    )
    con = store_of(tiers_lieux=tl)

    def ids(selection: Selection) -> list[str]:
        return sorted(queries.read_points(con, "tiers_lieux", selection, columns=["id_tiers_lieu"])["id_tiers_lieu"])

    assert ids(Selection(tiers_lieu_types=("fablab",))) == ["TL1"]
    assert ids(Selection(tiers_lieu_types=("COWORKING",))) == ["TL1", "TL3"]
    assert ids(Selection(tiers_lieu_labels=("Fabrique de territoire",))) == ["TL1"]
    assert ids(Selection(synthetic="real")) == ["TL1", "TL3"]
    assert ids(Selection(communes=("13055",))) == ["TL1", "TL2"]
    # ESS filters do not apply to tiers-lieux
    assert ids(Selection(families=("mutuelle",))) == ["TL1", "TL2", "TL3"]


def test_qpv_layer_filters(con) -> None:
    def codes(selection: Selection) -> list[str]:
        where = filters.qpv(selection, selection.qpv_generation or "2024")
        return [r[0] for r in con.execute(f"SELECT code_qp FROM qpv q WHERE {where.sql} ORDER BY 1",
                                          where.params).fetchall()]

    assert codes(Selection(communes=("13055",))) == ["QN01301M"]
    assert codes(Selection(communes=("13202",))) == ["QN01301M"]
    assert codes(Selection(departements=("84",))) == ["QN08401M"]
    assert codes(Selection(epci=("200054807",))) == ["QN01301M", "QN01302M"]
    assert codes(Selection(region="93")) == ["QN01301M", "QN01302M", "QN08401M"]
    assert codes(Selection(qpv=("QN01302M",))) == ["QN01302M"]
    assert codes(Selection(qpv_generation="2015")) == []
    pairs = con.execute("SELECT code_qp, code_commune, code_com FROM qpv_communes ORDER BY ALL").fetchall()
    assert pairs == [("QN01301M", "13201", "13055"), ("QN01301M", "13202", "13055"),  # rolled up
                     ("QN01302M", "13001", "13001"), ("QN08401M", "84007", "84007")]


def test_communes_layer_filters(con) -> None:
    def codes(selection: Selection) -> list[str]:
        where = filters.communes(selection)
        return [r[0] for r in con.execute(f"SELECT code_insee FROM communes WHERE {where.sql} ORDER BY 1",
                                          where.params).fetchall()]

    assert codes(Selection(communes=("13055",))) == ["13055", "13201", "13202"]
    assert codes(Selection(departements=("84",))) == ["84007"]
    assert codes(Selection(epci=("241300417",))) == ["13004"]
    assert len(codes(Selection(region="93"))) == 6
    assert len(codes(Selection(qpv=("QN01301M",)))) == 7  # a QPV filter does not restrict communes


def test_values_travel_as_parameters(kept) -> None:
    """A code holding SQL is a value compared, never SQL run."""
    assert kept(Selection(departements=("13') OR TRUE --",))) == []
