"""Portraits de territoire: PDF pages and text, batch from the CLI, French errors (demo store)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from datetime import date

import pandas as pd
import pytest
from click.testing import CliRunner
from test_snapshot import ESCALE, SCRIPT, broken_numbers, overprinted_characters, pdf_text, poppler, save_page_png

from essmap import store
from essmap.cli import app
from essmap.domain.errors import EssmapError
from essmap.domain.nomenclature import FAMILY_LABELS, SECTOR_LABELS, SIZE_BAND_LABELS
from essmap.render import portrait

DAY = date(2026, 11, 25)


def page_count(content: bytes) -> int:
    info = subprocess.run([poppler("pdfinfo"), "-"], input=content, capture_output=True, check=True).stdout.decode()
    return int(re.search(r"Pages:\s+(\d+)", info).group(1))


@pytest.fixture(scope="module")
def commune_scope(demo_con):
    scope = portrait.resolve_scope(demo_con, "commune", code="13055")
    return scope, demo_con, store.sources(demo_con)


@pytest.mark.poppler
def test_commune_portrait_pages_figures_sources_and_footer(commune_scope):
    scope, con, sources = commune_scope
    assert scope.codes == ("13055",)
    unit = portrait.compute_portrait(con, "commune", "13055", radius_m=1000)
    content = portrait.render_portrait(unit, sources=sources, day=DAY)
    assert page_count(content) == 4
    pages = pdf_text(content).split("\f")
    text = " ".join(" ".join(pages).split())
    assert "Marseille (13055)" in text
    assert "Chiffres clés" in text
    # compared with the parent level and France, with the source of the national figure
    assert "Bouches-du-Rhône" in text and "France" in text
    assert "Observatoire national de l'ESS" in text
    establishments = next(c for c in unit.fiche.comparisons if c.indicator.key == "n_etablissements")
    assert portrait.format_number(establishments.value) in text
    assert "Par famille juridique" in text and "Associations" in text
    assert "Par secteur d'activité" in text
    assert "Tiers-lieux à moins de 1 km des QPV" in text
    assert "Les plus grands employeurs de l'ESS" in text
    assert "Ce portrait inclut des données simulées" in text
    assert "2025-10 (données simulées)" in text  # footer: sources with millésimes
    for number, page in enumerate(pages[:4], start=1):
        flat = " ".join(page.split())
        assert f"Page {number} / 4" in flat
        assert "export du 25/11/2026" in flat
        assert "données simulées" in flat
    save_page_png(content, "portrait_commune_marseille", page=1)
    save_page_png(content, "portrait_commune_marseille", page=3)


@pytest.mark.poppler
def test_no_text_is_printed_over_another_even_with_the_longest_labels(commune_scope):
    """Page 4 once printed "Sociétés commerciales de l'ESS" over "Soutien aux entreprises": the largest
    employers here carry the longest family, sector, size band and commune names, and long names."""
    _, con, sources = commune_scope
    unit = portrait.compute_portrait(con, "commune", "13055", radius_m=1000)
    employers = portrait.largest_employers(unit.fiche.etablissements).index
    longest = {column: max(labels, key=lambda code: len(labels[code]))
               for column, labels in (("famille", FAMILY_LABELS), ("secteur", SECTOR_LABELS),
                                      ("tranche_effectifs", SIZE_BAND_LABELS))}
    etablissements = unit.fiche.etablissements.copy()
    for column, code in longest.items():
        etablissements.loc[employers[:3], column] = code
    etablissements.loc[employers[0], "secteur"] = "soutien_entreprises"  # after the longest family
    etablissements.loc[employers[1], "denomination"] = "ASSOCIATION DÉPARTEMENTALE POUR LA SAUVEGARDE DE L'ENFANCE " \
                                                         "ET DE L'ADOLESCENCE DES BOUCHES-DU-RHÔNE"
    etablissements.loc[employers[2], "libelle_commune"] = "SAINTE-MARIE-AUX-MINES-SUR-LE-RHÔNE 12"
    unit = dataclasses.replace(unit, fiche=dataclasses.replace(unit.fiche, etablissements=etablissements))
    content = portrait.render_portrait(unit, sources=sources, day=DAY)
    assert overprinted_characters(content) == []
    assert broken_numbers(content) == []
    text = " ".join(pdf_text(content).split())
    assert "…" not in text  # long names are wrapped, not cut
    assert "Sociétés commerciales" in text and "l'ESS" in text
    save_page_png(content, "portrait_longest_labels", page=4)


@pytest.mark.poppler
@pytest.mark.parametrize("level", ["departement", "epci", "qpv"])
def test_other_levels_print_no_text_over_another(demo_con, level):
    con = demo_con
    code = {"departement": "13", "epci": "200054807"}.get(level) or portrait.resolve_scope(
        con, "qpv", departement="13").codes[0]
    content = portrait.portrait_pdf(con, level, code, day=DAY)
    assert overprinted_characters(content) == []
    assert broken_numbers(content) == []
    # the map's legend title keeps "10 000" whole
    assert "pour 10 000 habitants" in " ".join(pdf_text(content).replace("\u00a0", " ").split())


@pytest.mark.poppler
def test_qpv_coverage_table_follows_the_radius(commune_scope):
    _, con, sources = commune_scope
    near = portrait.compute_portrait(con, "commune", "13055", radius_m=300)
    far = portrait.compute_portrait(con, "commune", "13055", radius_m=5000)
    assert far.map_data.qpv["covered"].sum() >= near.map_data.qpv["covered"].sum()
    text = " ".join(pdf_text(portrait.render_portrait(near, sources=sources, day=DAY)).split())
    covered = int(near.map_data.qpv["covered"].sum())
    assert f"{covered} QPV sur {len(near.map_data.qpv)} ont au moins un tiers-lieu" in text
    assert "à moins de 300 m" in text
    assert "Référence France : 36 %" not in text  # only comparable at 1 km


@pytest.mark.poppler
def test_departement_portrait_compares_with_its_region(demo_con):
    scope = portrait.resolve_scope(demo_con, "departement", code="04")
    sources = store.sources(demo_con)
    assert scope.codes == ("04",)
    unit = portrait.compute_portrait(demo_con, "departement", "04")
    assert all(c.parent_name == "Provence-Alpes-Côte d'Azur" for c in unit.fiche.comparisons)
    text = " ".join(pdf_text(portrait.render_portrait(unit, sources=sources, day=DAY)).split())
    assert "Alpes-de-Haute-Provence (04)" in text
    assert "Provence-Alpes-Côte d'Azur" in text


@pytest.mark.poppler
def test_names_with_html_and_mathtext_characters_are_plain_text(tricky_db):
    con = store.connect(tricky_db)
    try:
        unit = portrait.compute_portrait(con, "commune", "13055")
        sources = store.sources(con)
    finally:
        con.close()
    text = " ".join(pdf_text(portrait.render_portrait(unit, sources=sources, day=DAY)).split())
    assert f"{SCRIPT} $x$ 50 % (13055)" in text
    assert ESCALE in text


def test_largest_employers_are_ranked_by_size_band():
    frame = pd.DataFrame({
        "denomination": ["Petite", "Grande", "Moyenne", "Sans salarié"],
        "employeur": pd.array([True, True, True, False], dtype="boolean"),
        "tranche_effectifs": ["01", "32", "12", "NN"],
    })
    assert portrait.largest_employers(frame)["denomination"].tolist() == ["Grande", "Moyenne", "Petite"]


def test_unknown_codes_and_levels_give_french_errors(demo_db):
    con = store.connect(demo_db)
    try:
        with pytest.raises(EssmapError, match=r"Commune « 99999 » inconnue dans la base"):
            portrait.resolve_scope(con, "commune", code="99999")
        with pytest.raises(EssmapError, match=r"QPV « QN99999Z » inconnu dans la base \(département 13\)"):
            portrait.resolve_scope(con, "qpv", departement="13", code="QN99999Z")
        with pytest.raises(EssmapError, match=r"Département « 77 » absent de la base"):
            portrait.resolve_scope(con, "commune", departement="77")
        with pytest.raises(EssmapError, match=r"Niveau « region » non pris en charge"):
            portrait.resolve_scope(con, "region", departement="13")
    finally:
        con.close()


@pytest.mark.poppler
def test_cli_batch_writes_one_pdf_per_qpv_named_after_territory_and_date(demo_db, tmp_path):
    out = tmp_path / "portraits"
    result = CliRunner().invoke(app, ["export", "portrait", "--departement", "04", "--level", "qpv",
                                      "--out", str(out), "--db", str(demo_db)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.pdf"))
    today = date.today().isoformat()
    assert len(files) == 3  # the three QPV of the Alpes-de-Haute-Provence
    for path in files:
        assert re.fullmatch(rf"portrait_qpv_[a-z0-9-]+-qn004\d\dm_{today}\.pdf", path.name), path.name
        assert page_count(path.read_bytes()) == 4
    assert str(files[0]) in result.output


def test_cli_unknown_code_exits_with_a_french_message(demo_db, tmp_path):
    result = CliRunner().invoke(app, ["export", "portrait", "--level", "commune", "--code", "99999",
                                      "--out", str(tmp_path), "--db", str(demo_db)])
    assert result.exit_code == 1
    assert "Commune « 99999 » inconnue dans la base" in result.output
    assert not list(tmp_path.glob("*.pdf"))
