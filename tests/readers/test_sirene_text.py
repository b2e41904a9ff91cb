"""The SIRENE reader cleans text with Arrow (vectorised) and must give exactly what the readers'
shared :func:`~essmap.io.readers.common.clean_text` gives, white space of every kind included."""

from __future__ import annotations

import sys

import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from essmap.io.readers.common import clean_text
from essmap.io.readers.sirene.output import PYTHON_WHITESPACE, clean_sirene_text, fold_spaces


def test_the_whitespace_list_is_exactly_what_python_strips():
    assert sorted(PYTHON_WHITESPACE) == [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


_pieces = st.sampled_from([*PYTHON_WHITESPACE, "&amp;", "&nbsp;", "&#32;", "&", "é", "[ND]", "a", "B", "\u200b"])
_texts = st.lists(st.one_of(_pieces, st.text(max_size=3)), max_size=8).map("".join)


# Each example is a series of about 60 values (lists of a few put end to end; an empty one below):
# more values than 300 examples of a few gave, for a seventh of the pandas calls.
@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), _texts), max_size=20), min_size=10, max_size=20))
@example([])
def test_clean_sirene_text_equals_clean_text(lists):
    values = [value for values in lists for value in values]
    series = pd.Series(values, dtype="string", index=pd.RangeIndex(5, 5 + len(values)))
    pd.testing.assert_series_equal(clean_sirene_text(series), clean_text(series))


def test_fold_spaces_folds_runs_of_any_white_space_and_keeps_the_rest():
    series = pd.Series([" a\u00a0\u2003 b\t", None, "\u3000", "x\u200by"], dtype="string")
    assert fold_spaces(series).tolist() == ["a b", pd.NA, "", "x\u200by"]  # a zero-width space is no space
