"""The synthetic demo inputs: official formats, determinism, and a realistic read-back.

Everything goes through the real readers, as the embedded demo does: what is tested is what the
map will show. The whole of PACA at a small scale keeps the module fast.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from essmap.demo import synthetic
from essmap.demo.synthetic import DemoFiles, write_demo_inputs
from essmap.domain import nomenclature as nom
from essmap.domain.config import DEMO_DEPARTEMENTS
from essmap.io.readers.common import luhn_valid
from essmap.io.readers.communes import read_communes
from essmap.io.readers.qpv import read_qpv
from essmap.io.readers.sirene import (
    ETABLISSEMENT_COLUMNS,
    UNITE_LEGALE_COLUMNS,
    read_sirene,
)
from essmap.io.readers.tiers_lieux import CENSUS_COLUMNS, read_tiers_lieux

GEO = Path(__file__).resolve().parent.parent / "data" / "geo"
SEED = 20240101
SCALE = 0.05


@pytest.fixture(scope="module")
def inputs():
    communes = read_communes(GEO / "communes_france.parquet", departements=DEMO_DEPARTEMENTS).frame
    qpv = read_qpv(GEO / "qpv2024_paca.geojson").frame
    return communes, qpv


@pytest.fixture(scope="module")
def demo(tmp_path_factory, inputs) -> DemoFiles:
    communes, qpv = inputs
    return write_demo_inputs(tmp_path_factory.mktemp("synthetic"), communes, qpv, seed=SEED, scale=SCALE)


@pytest.fixture(scope="module")
def raw(demo):
    """The two SIRENE files as written (strings, blanks kept)."""
    read = lambda p: pd.read_csv(p, dtype=str, keep_default_na=False)  # noqa: E731
    return read(demo.unites_legales), read(demo.etablissements)


@pytest.fixture(scope="module")
def sirene(demo):
    return read_sirene(demo.unites_legales, demo.etablissements)


@pytest.fixture(scope="module")
def tiers_lieux(demo):
    return read_tiers_lieux(demo.tiers_lieux)


@pytest.fixture(scope="module")
def commune_shapes(inputs) -> dict[str, shapely.Geometry]:
    communes, _ = inputs
    return dict(zip(communes["code_insee"].astype(str), communes.geometry, strict=True))


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh))


def _files(files: DemoFiles) -> list[Path]:
    return [files.unites_legales, files.etablissements, files.tiers_lieux, files.manifest]


def _spearman(a: pd.Series, b: pd.Series) -> float:
    return float(np.corrcoef(a.rank().to_numpy(), b.rank().to_numpy())[0, 1])


# --- Determinism and format --------------------------------------------------------------------


def test_same_inputs_and_seed_give_identical_bytes_whatever_the_row_order(tmp_path, inputs, demo):
    communes, qpv = inputs
    shuffled = write_demo_inputs(
        tmp_path, communes.sample(frac=1, random_state=3), qpv.sample(frac=1, random_state=4),
        seed=SEED, scale=SCALE,
    )
    for first, again in zip(_files(demo), _files(shuffled), strict=True):
        assert first.name == again.name
        assert first.read_bytes() == again.read_bytes(), first.name


def test_another_seed_gives_other_files(tmp_path, inputs, demo):
    other = write_demo_inputs(tmp_path, *inputs, seed=SEED + 1, scale=SCALE)
    for first, again in zip(_files(demo)[:3], _files(other)[:3], strict=True):
        assert first.read_bytes() != again.read_bytes(), first.name


def test_files_have_exactly_the_official_columns_in_order(demo):
    assert _header(demo.unites_legales) == list(UNITE_LEGALE_COLUMNS)
    assert _header(demo.etablissements) == list(ETABLISSEMENT_COLUMNS)
    assert _header(demo.tiers_lieux) == list(CENSUS_COLUMNS)
    assert demo.unites_legales.name == "StockUniteLegale_utf8.csv"
    assert demo.etablissements.name == "StockEtablissement_utf8.csv"


def test_manifest_lists_the_files_and_the_readers_flag_every_row(demo, sirene, tiers_lieux):
    manifest = json.loads(demo.manifest.read_text(encoding="utf-8"))
    assert manifest["generator"] == "essmap.demo.synthetic"
    assert manifest["seed"] == SEED and manifest["scale"] == SCALE
    assert manifest["files"] == [demo.unites_legales.name, demo.etablissements.name, demo.tiers_lieux.name]
    assert manifest["notice"].startswith("Données simulées")
    for read in (sirene, tiers_lieux):
        assert read.meta.is_synthetic
        assert read.frame["is_synthetic"].all()
        assert len(read.quarantine) == 0, read.quarantine.head().to_dict()


def test_scale_must_be_positive(tmp_path, inputs):
    with pytest.raises(ValueError):
        write_demo_inputs(tmp_path, *inputs, seed=SEED, scale=0)


# --- SIRENE content ----------------------------------------------------------------------------


def test_identifiers_are_valid_unique_and_consistent(raw):
    units, etabs = raw
    assert units["siren"].str.fullmatch(r"\d{9}").all()
    assert luhn_valid(units["siren"]).all()
    assert units["siren"].is_unique
    assert etabs["siret"].str.fullmatch(r"\d{14}").all()
    assert luhn_valid(etabs["siret"]).all()
    assert etabs["siret"].is_unique
    assert (etabs["siret"] == etabs["siren"] + etabs["nic"]).all()
    assert set(etabs["siren"]) == set(units["siren"])
    heads = etabs[etabs["etablissementSiege"] == "true"]
    assert heads["siren"].is_unique and len(heads) == len(units)
    nic_siege = units.set_index("siren")["nicSiegeUniteLegale"]
    assert (heads["nic"].to_numpy() == nic_siege.loc[heads["siren"]].to_numpy()).all()
    assert etabs["siren"].value_counts().max() >= 4, "some units must have several establishments"


def test_reader_keeps_exactly_the_active_establishments_of_ess_units(raw, sirene):
    units, etabs = raw
    ess = set(units.loc[units["economieSocialeSolidaireUniteLegale"] == "O", "siren"])
    non_ess = units["economieSocialeSolidaireUniteLegale"] == "N"
    closed = etabs["etatAdministratifEtablissement"] == "F"
    assert non_ess.sum() >= 5 and closed.sum() >= 5
    expected = set(etabs.loc[etabs["siren"].isin(ess) & ~closed, "siret"])
    assert set(sirene.frame["siret"]) == expected
    assert len(sirene.frame) == len(expected)


def test_employer_flags_and_size_bands_are_consistent(raw):
    _, etabs = raw
    active = etabs[etabs["etatAdministratifEtablissement"] == "A"]
    employer = active["caractereEmployeurEtablissement"] == "O"
    assert set(active["caractereEmployeurEtablissement"]) == {"O", "N"}
    assert (active.loc[~employer, "trancheEffectifsEtablissement"] == "NN").all()
    bands = active.loc[employer, "trancheEffectifsEtablissement"]
    assert bands.isin(set(nom.SIZE_BAND_LABELS) - {"NN"}).all()
    assert (active.loc[employer, "anneeEffectifsEtablissement"] != "").all()
    assert bands.isin(["21", "22", "31", "32", "41"]).any(), "a few large employers expected"
    assert bands.isin(["01", "02"]).mean() > 0.3, "employer sizes skewed small"


def test_positions_are_lambert_93_as_published(raw):
    _, etabs = raw
    for column in ("coordonneeLambertAbscisseEtablissement", "coordonneeLambertOrdonneeEtablissement"):
        assert etabs[column].str.fullmatch(r"\d{6,7}\.\d").all(), column
    x = etabs["coordonneeLambertAbscisseEtablissement"].astype(float)
    y = etabs["coordonneeLambertOrdonneeEtablissement"].astype(float)
    assert x.between(800_000, 1_100_000).all() and y.between(6_200_000, 6_500_000).all()  # PACA


def test_every_establishment_lies_in_its_declared_commune_or_arrondissement(sirene, commune_shapes):
    frame = sirene.frame
    codes = frame["code_commune"].astype(str)
    assert codes.isin(set(commune_shapes)).all()
    shapes = np.array([commune_shapes[c] for c in codes], dtype=object)
    inside = shapely.contains_xy(shapes, frame["longitude"].to_numpy(), frame["latitude"].to_numpy())
    assert inside.all(), frame.loc[~inside, ["siret", "code_commune", "longitude", "latitude"]].head()
    marseille = codes.str.startswith("132")
    assert marseille.sum() > 50, "Marseille is coded by arrondissement, as in SIRENE"
    assert not (codes == "13055").any()
    labels = frame.loc[marseille, "libelle_commune"]
    assert labels.str.fullmatch(r"MARSEILLE \d{1,2}").all()


def test_density_follows_population(sirene, inputs):
    communes, _ = inputs
    layer = communes[communes["type_commune"].eq("ARM") | ~communes["code_insee"].eq("13055")]
    population = layer.set_index("code_insee")["population"].astype(float)
    counts = sirene.frame["code_commune"].value_counts().reindex(population.index, fill_value=0)
    per_dep_pop = population.groupby(layer.set_index("code_insee")["code_departement"]).sum()
    per_dep = sirene.frame["code_departement"].value_counts().reindex(per_dep_pop.index, fill_value=0)
    ratio = (per_dep / per_dep_pop) / (per_dep.sum() / per_dep_pop.sum())
    assert ratio.between(0.6, 1.4).all(), ratio.to_dict()
    assert _spearman(population, counts.astype(float)) > 0.6
    expected = synthetic.EMPLOYER_PER_INHABITANT * population.sum() * SCALE
    employers = sirene.frame["employeur"].sum()
    assert abs(employers - expected) / expected < 0.05


def test_employer_family_mix_is_close_to_the_national_one(sirene):
    employers = sirene.frame[sirene.frame["employeur"]]
    mix = employers["famille"].value_counts(normalize=True)
    for family, target in synthetic.EMPLOYER_FAMILY_MIX.items():
        assert abs(mix.get(family, 0.0) - target) < 0.02, (family, mix.get(family, 0.0))


def test_sectors_look_like_the_ess(sirene):
    frame = sirene.frame
    assert frame.loc[frame["employeur"], "secteur"].value_counts().index[0] == "action_sociale"
    assert frame.loc[~frame["employeur"], "secteur"].value_counts().index[0] == "non_classes"
    assert (frame["nomenclature_naf"] == "NAFRev2").mean() > 0.99
    old = frame[frame["nomenclature_naf"] != "NAFRev2"]
    assert len(old) >= 1 and (old["secteur"] == nom.OLD_NOMENCLATURE).all()


def test_qpv_share_and_its_association_skew(sirene, inputs):
    _, qpv = inputs
    union = shapely.union_all(qpv.geometry.to_numpy())
    frame = sirene.frame
    in_qpv = shapely.contains_xy(union, frame["longitude"].to_numpy(), frame["latitude"].to_numpy())
    employer = frame["employeur"].to_numpy()
    assert 0.03 <= in_qpv.mean() <= 0.12
    assert 0.03 <= in_qpv[employer].mean() <= 0.12
    associations = (frame["famille"] == nom.ASSOCIATION).to_numpy()
    in_share = associations[employer & in_qpv].mean()
    out_share = associations[employer & ~in_qpv].mean()
    assert in_share > out_share


def test_every_name_is_marked_synthetic_including_awkward_ones(raw, sirene):
    units, etabs = raw
    assert sirene.frame["denomination"].str.contains("SIMUL", regex=False).all()
    assert units["denominationUniteLegale"].str.contains(r"\(SIMULÉE?\)").all()
    signs = etabs.loc[etabs["enseigne1Etablissement"] != "", "enseigne1Etablissement"]
    assert len(signs) and signs.str.contains("SIMUL", regex=False).all()
    names = set(units["denominationUniteLegale"])
    assert "ESCALE &amp; CO (SIMULÉE)" in names  # HTML entity left for the readers to decode
    shown = set(sirene.frame["denomination"])
    assert "ESCALE & CO (SIMULÉE)" in shown
    assert "<script>alert(1)</script> (SIMULÉE)" in shown
    assert any("'" in n for n in names) and any(re.search("[ÉÈÊÀÇÔŒ]", n) for n in names)
    assert any('"' in n and "," in n for n in names)


# --- Tiers-lieux -------------------------------------------------------------------------------


def test_tiers_lieux_read_back_in_their_communes(tiers_lieux, commune_shapes, inputs):
    frame = tiers_lieux.frame
    communes, _ = inputs
    population = communes.loc[communes["type_commune"] == "COM", "population"].sum()
    assert len(frame) == max(3, round(synthetic.TIERS_LIEUX_PER_INHABITANT * population * SCALE))
    assert frame["nom"].str.contains("simul", case=False, regex=False).all()
    assert frame["structure_porteuse"].str.contains("simul", case=False, regex=False).all()
    assert frame["types"].notna().all()
    shapes = np.array([commune_shapes[c] for c in frame["code_commune"]], dtype=object)
    assert shapely.contains_xy(shapes, frame["longitude"].to_numpy(), frame["latitude"].to_numpy()).all()


def test_tiers_lieux_types_labels_and_qpv_share(inputs):
    """Shares need more places than the small demo has: the census part alone, at scale 4."""
    communes, qpv = inputs
    territory = synthetic._prepare_territory(communes, qpv)
    rows = pd.DataFrame(synthetic._generate_tiers_lieux(np.random.default_rng(SEED), territory, 4.0))
    assert 1000 < len(rows) < 1300
    labels = rows["LABELS"]
    assert 0.08 < labels.str.contains("Fabrique de territoire").mean() < 0.14
    assert 0.01 < labels.str.contains("Manufacture de proximité").mean() < 0.05
    n_types = rows["TYPES"].str.count(r"\|") + 1
    assert 0.3 < (n_types > 1).mean() < 0.8
    assert rows["TYPES"].str.contains("Coworking").mean() > 0.2
    union = shapely.union_all(qpv.geometry.to_numpy())
    in_qpv = shapely.contains_xy(union, rows["LONGITUDE"].astype(float), rows["LATITUDE"].astype(float))
    assert 0.08 < in_qpv.mean() < 0.2
    urban = rows["Insee"].map(communes.set_index("code_insee")["population"]).astype(float) >= 10_000
    assert urban.mean() > 0.6
