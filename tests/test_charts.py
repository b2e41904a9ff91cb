"""The fiche's bar charts: every category label whole (wrapped, never cut), counts written in French."""

from __future__ import annotations

import pandas as pd

from essmap.domain.nomenclature import SECTOR_LABELS
from essmap.render import charts


def test_labels_are_wrapped_on_spaces_and_never_cut():
    frame = pd.DataFrame({"libelle": list(SECTOR_LABELS.values()), "n": range(len(SECTOR_LABELS)),
                          "part": [k / 100 for k in range(len(SECTOR_LABELS))]})
    spec = charts.breakdown_bar_chart(frame, category_label="Secteur")
    axis = spec["encoding"]["y"]["axis"]
    assert axis["labelLimit"] == 0  # Vega's default cuts at 180 px with "…"
    rows = spec["data"]["values"]
    for row, label in zip(rows, SECTOR_LABELS.values(), strict=True):
        lines = row["etiquette"].split("\n")
        assert " ".join(lines) == label  # every word kept, in order
        assert all(len(line) <= charts.LABEL_WIDTH_CHARS for line in lines if " " in line)
    longest = max(rows, key=lambda r: len(r["libelle"]))
    assert longest["etiquette"].count("\n") >= 2
    assert rows[3]["valeur"] == "3 (3,0\u202f%)"
    assert spec["height"]["step"] >= 14 * 3  # room for three lines per bar


def test_large_counts_have_french_thousands_separators():
    spec = charts.breakdown_bar_chart(pd.DataFrame({"libelle": ["Associations"], "n": [10102], "part": [0.896]}))
    assert spec["data"]["values"][0]["valeur"] == "10\u202f102 (89,6\u202f%)"
