"""Choropleth classes: the same edges, colours and labels for the map and the exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import essmap
from essmap.present.classify import NO_DATA_COLOUR, PALETTE, classify


@pytest.mark.parametrize("method", ["quantiles", "natural_breaks", "equal_interval"])
def test_every_value_gets_a_class_and_missing_values_the_no_data_colour(method):
    values = pd.Series([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, None, 100])
    c = classify(values, method=method, k=5, unit="pour 10 000 hab.")
    assert len(c.colours) == len(c.labels) == len(c.edges) - 1 == 5
    assert list(c.edges) == sorted(c.edges) and c.edges[0] == 1 and c.edges[-1] == 100
    classes = c.class_of(values)
    assert classes.isna().tolist() == [False] * 10 + [True, False]
    assert classes.iloc[-1] == 4 and classes.iloc[0] == 0
    colours = c.colour_of(values)
    assert colours.iloc[10] == NO_DATA_COLOUR
    assert set(colours.drop(10)) <= set(PALETTE[5])


def test_quantile_classes_hold_similar_counts_and_labels_use_french_numbers():
    values = pd.Series(range(1, 101), dtype="float64") * 1.5
    c = classify(values, method="quantiles", k=4, decimals=1)
    counts = c.class_of(values).value_counts().sort_index().tolist()
    assert counts == [25, 25, 25, 25]
    assert c.labels[0] == "1,5 – 38,6"  # 25th percentile, interpolated
    assert c.labels[-1].endswith("150,0")


def test_equal_intervals_and_degenerate_inputs():
    c = classify(pd.Series([0.0, 10.0, 20.0, 30.0, 40.0]), method="equal_interval", k=4)
    assert c.edges == (0.0, 10.0, 20.0, 30.0, 40.0)
    single = classify(pd.Series([3.0, 3.0]))
    assert single.labels == ("3,0",) and len(single.colours) == 1
    empty = classify(pd.Series([None, None], dtype="float64"))
    assert empty.colours == () and empty.colour_of(pd.Series([None], dtype="float64")).tolist() == [NO_DATA_COLOUR]
    with pytest.raises(ValueError, match="méthode de classification inconnue"):
        classify(pd.Series([1.0]), method="kmeans")


def test_ties_merge_classes_quietly():
    """Most communes at 0: quantile edges coincide, so fewer classes, and no warning for users of the CLI."""
    values = pd.Series([0.0] * 80 + [1.0, 2.0, 3.0, 5.0, 8.0] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = classify(values, method="quantiles", k=5)
    assert 2 <= len(result.labels) < 5
    assert result.edges[0] == 0.0 and result.edges[-1] == 8.0


def _skewed_units(n: int) -> pd.Series:
    """``n`` skewed values (like establishments per 10,000 inhabitants), from a fixed seed."""
    return pd.Series(np.random.default_rng(2024).lognormal(3.0, 1.0, n))


@pytest.mark.parametrize("n", [5000, 12_000])  # exact, then sampled (above NATURAL_BREAKS_MAX_VALUES)
def test_natural_breaks_are_the_same_on_every_call_and_any_row_order(n):
    values = _skewed_units(n)
    first = classify(values, method="natural_breaks", k=5)
    assert len(first.edges) == 6
    assert classify(values, method="natural_breaks", k=5).edges == first.edges
    shuffled = values.sample(frac=1.0, random_state=7)
    assert classify(shuffled, method="natural_breaks", k=5).edges == first.edges


@pytest.mark.slow
def test_natural_breaks_are_the_same_in_another_process():
    """The dashboard, the CLI and an export run in different processes (and hash seeds).

    Slow (left out by `make test-unit`): a new interpreter imports the classification stack (5 s)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import test_classify as t; "
            "print(json.dumps([t.classify(t._skewed_units(n), method='natural_breaks', k=5).edges "
            "for n in (5000, 12_000)]))")
    tests, root = Path(__file__).parent, Path(essmap.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    here = [list(classify(_skewed_units(n), method="natural_breaks", k=5).edges) for n in (5000, 12_000)]
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") == "0" else "0"  # another hash seed than this process
    run = subprocess.run([sys.executable, "-c", code, str(tests)], capture_output=True, text=True, check=True,
                         env={**env, "PYTHONHASHSEED": hash_seed}, timeout=300)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == here


def test_sampled_natural_breaks_still_find_the_gaps():
    """Five separate groups of 2,000 units: each class bound closes a group, at its top (a bound is a
    sampled value, so the few values above the group's largest sampled one go to the next class)."""
    rng = np.random.default_rng(3)
    groups = [rng.uniform(low, low + 10, 2000) for low in (0, 100, 200, 300, 400)]
    c = classify(pd.Series(np.concatenate(groups)), method="natural_breaks", k=5)
    for bound, group, above in zip(c.edges[1:-1], groups[:-1], groups[1:], strict=True):
        assert np.quantile(group, 0.98) <= bound < above.min()
    counts = c.class_of(pd.Series(np.concatenate(groups))).value_counts().sort_index().tolist()
    assert len(counts) == 5 and all(1960 <= count <= 2040 for count in counts)


def test_exact_natural_breaks_are_fisher_jenks():
    """Up to NATURAL_BREAKS_MAX_VALUES values the breaks are mapclassify's exact Fisher-Jenks."""
    import mapclassify

    values = _skewed_units(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Numba not installed": slow, fine for 300 values
        expected = mapclassify.FisherJenks(values.to_numpy(), k=5).bins
    assert classify(values, method="natural_breaks", k=5).edges[1:] == pytest.approx(tuple(expected))


def test_collapsed_classes_come_with_a_french_notice():
    # a count where most units have none: quantile edges tie, 5 classes asked, fewer drawn
    counts = pd.Series([0] * 80 + [1] * 12 + [2] * 5 + [8, 30, 73], dtype="float64")
    c = classify(counts, method="quantiles", k=5)
    assert c.requested == 5 and 0 < len(c.colours) < 5 and c.collapsed
    notice = c.collapse_notice("Tiers-lieux")
    assert notice.startswith(f"Carte en {len(c.colours)} classes au lieu des 5 demandées")
    assert "« Tiers-lieux »" in notice and "« Quantiles (effectifs égaux) »" in notice
    # enough distinct values: every class asked for is drawn, no notice
    spread = classify(pd.Series(np.arange(100, dtype="float64")), method="quantiles", k=5)
    assert not spread.collapsed and spread.collapse_notice("Tiers-lieux") is None
    assert classify(pd.Series([3.0] * 10), k=4).collapse_notice("X").startswith("Carte en une seule classe")
