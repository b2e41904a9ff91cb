"""Every reader on damaged inputs: each ends in "loaded + quarantined = read" or a French refusal.

Inputs are real files of tests/data damaged by Hypothesis: random bytes, another encoding
(Latin-1, Windows-1252, UTF-16), columns in another order, a file cut anywhere, bytes flipped in
the middle. Any other exception (KeyError, pandas or DuckDB errors...) is a bug these tests find.
"""

from __future__ import annotations

import csv
import io
from functools import cache
from pathlib import Path

import geopandas as gpd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from essmap.io.readers.communes import read_communes
from essmap.io.readers.qpv import read_qpv
from essmap.io.readers.sirene import read_sirene
from essmap.io.readers.tiers_lieux import read_tiers_lieux

from .checks import DATA, outcome

UL = DATA / "sirene" / "unites_legales_ess_extrait.csv"
ETAB = DATA / "sirene" / "StockEtablissement_extrait.csv"
QPV = DATA / "qpv" / "qpv2015_occitanie_extrait.geojson"
COMMUNES = DATA / "communes" / "communes_extrait.parquet"
TIERS_LIEUX = DATA / "tiers_lieux" / "tiers_lieux_commune_mesure.csv"

ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16")


@st.composite
def damaged(draw, original: bytes, *, text: bool = True) -> bytes:
    """``original`` damaged in one of the ways files are: random bytes, another encoding, cut,
    bytes overwritten or inserted, a line duplicated or dropped."""
    kinds = ["random", "cut", "overwrite", "insert", "lines"] + (["encoding"] if text else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "random":
        return draw(st.binary(max_size=3000))
    if kind == "encoding":
        return original.decode("utf-8").encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if kind == "cut":
        return original[: draw(st.integers(0, len(original)))]
    if kind == "overwrite":
        at = draw(st.integers(0, max(len(original) - 1, 0)))
        patch = draw(st.binary(min_size=1, max_size=64))
        return original[:at] + patch + original[at + len(patch):]
    if kind == "insert":
        at = draw(st.integers(0, len(original)))
        return original[:at] + draw(st.binary(min_size=1, max_size=64)) + original[at:]
    lines = original.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    return b"\n".join(lines[:i] + ([lines[i], lines[i]] if draw(st.booleans()) else []) + lines[i + 1:])


def _write(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


# --- SIRENE stock pair ---------------------------------------------------------------------------


@given(data=st.data())
def test_sirene_reader_on_damaged_stocks(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("sirene")
    which = data.draw(st.sampled_from(["etablissements", "unites_legales", "both"]))
    ul, etab = UL.read_bytes(), ETAB.read_bytes()
    if which in ("etablissements", "both"):
        etab = data.draw(damaged(etab))
    if which in ("unites_legales", "both"):
        ul = data.draw(damaged(ul))
    deps = data.draw(st.sampled_from([None, ["13"], ["06", "974"]]))
    outcome(lambda: read_sirene(_write(folder, "StockUniteLegale_utf8.csv", ul),
                                _write(folder, "StockEtablissement_utf8.csv", etab), departements=deps))


def _reordered(path: Path, order: list[int]) -> bytes:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([[row[i] for i in order] for row in rows])
    return buffer.getvalue().encode("utf-8")


def _width(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as fh:
        return len(next(csv.reader(fh)))


@cache
def _as_published(reader, *paths: Path):
    """The reader's result on the files as shipped (the reference of the column-order tests)."""
    return reader(*paths)


@given(ul_order=st.permutations(range(_width(UL))), etab_order=st.permutations(range(_width(ETAB))))
def test_sirene_columns_in_any_order_give_the_same_establishments(tmp_path_factory, ul_order, etab_order):
    folder = tmp_path_factory.mktemp("sirene_order")
    expected = _as_published(read_sirene, UL, ETAB)
    read = outcome(lambda: read_sirene(_write(folder, "ul.csv", _reordered(UL, ul_order)),
                                       _write(folder, "etab.csv", _reordered(ETAB, etab_order))))
    assert read is not None
    assert sorted(read.frame["siret"]) == sorted(expected.frame["siret"])
    assert sorted(read.quarantine["row_number"]) == sorted(expected.quarantine["row_number"])


# --- QPV, communes ----------------------------------------------------------------------------------


@given(data=st.data())
def test_qpv_reader_on_damaged_geojson(tmp_path_factory, data):
    content = data.draw(damaged(QPV.read_bytes()))
    path = _write(tmp_path_factory.mktemp("qpv"), "qpv.geojson", content)
    outcome(lambda: read_qpv(path, departements=data.draw(st.sampled_from([None, ["31"], ["13"]]))))


@pytest.fixture(scope="module")
def communes_geojson(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("communes_src") / "communes.geojson"
    gpd.read_parquet(COMMUNES).to_file(path, driver="GeoJSON")
    return path.read_bytes()


@given(data=st.data())
def test_communes_reader_on_damaged_geojson_and_geoparquet(tmp_path_factory, communes_geojson, data):
    folder = tmp_path_factory.mktemp("communes")
    if data.draw(st.booleans()):
        path = _write(folder, "communes.geojson", data.draw(damaged(communes_geojson)))
    else:
        path = _write(folder, "communes.parquet", data.draw(damaged(COMMUNES.read_bytes(), text=False)))
    outcome(lambda: read_communes(path, departements=data.draw(st.sampled_from([None, ["2A"], ["13", "974"]]))))


# --- Tiers-lieux ------------------------------------------------------------------------------------


@given(data=st.data())
def test_tiers_lieux_reader_on_damaged_lists(tmp_path_factory, data):
    content = data.draw(damaged(TIERS_LIEUX.read_bytes()))
    path = _write(tmp_path_factory.mktemp("tiers_lieux"), "liste.csv", content)
    outcome(lambda: read_tiers_lieux(path, departements=data.draw(st.sampled_from([None, ["13"]]))))


@given(order=st.permutations(range(_width(TIERS_LIEUX))))
def test_tiers_lieux_columns_in_any_order_give_the_same_places(tmp_path_factory, order):
    expected = _as_published(read_tiers_lieux, TIERS_LIEUX)
    path = _write(tmp_path_factory.mktemp("tiers_lieux_order"), "liste.csv", _reordered(TIERS_LIEUX, order))
    read = outcome(lambda: read_tiers_lieux(path))
    assert read is not None
    assert sorted(read.frame["id_tiers_lieu"]) == sorted(expected.frame["id_tiers_lieu"])
