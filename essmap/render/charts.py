"""Charts of the dashboard as Vega-Lite specifications (plain dictionaries, drawn by
``st.vega_lite_chart``).

Category names are long ("Non classés (organisations fonctionnant par adhésion volontaire)"): Vega
cuts axis labels at 180 pixels with "…" by default. Here labels are wrapped on spaces into lines
and never cut (``labelLimit: 0``), and each bar carries its count and share written in French
("1 234 (36,0 %)"), so no axis in English number format is needed.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pandas as pd

from essmap.domain.formatting import format_number, format_percent

#: Characters per line of a category label (about 150 pixels at the axis font size).
LABEL_WIDTH_CHARS = 26
BAR_COLOUR = "#2c7fb8"
_LINE_PX = 14


def wrap_label(text: str, width: int = LABEL_WIDTH_CHARS) -> list[str]:
    """``text`` as lines of at most ``width`` characters, cut on spaces only (a longer word stays whole)."""
    return textwrap.wrap(str(text), width=width, break_long_words=False, break_on_hyphens=False) or [str(text)]


def breakdown_bar_chart(frame: pd.DataFrame, *, count_label: str = "Établissements",
                        category_label: str = "Catégorie") -> dict[str, Any]:
    """Horizontal bars of a :func:`~essmap.analysis.indicators.breakdown` table (``libelle``, ``n``,
    ``part``), in the frame's order, every label whole (see the module docstring)."""
    counts = pd.to_numeric(frame["n"], errors="coerce").fillna(0).astype(float)
    shares = pd.to_numeric(frame["part"], errors="coerce").astype(float)
    rows: list[dict[str, Any]] = [
        {
            "libelle": str(label),
            "etiquette": "\n".join(wrap_label(str(label))),
            "n": float(n),
            "valeur": f"{format_number(n)} ({format_percent(share)})" if pd.notna(share) else format_number(n),
        }
        for label, n, share in zip(frame["libelle"], counts, shares, strict=True)
    ]
    lines = max((str(r["etiquette"]).count("\n") + 1 for r in rows), default=1)
    high = max(float(counts.max()) if len(counts) else 0.0, 1.0)
    # a screen reader reads this French description; Vega's own ARIA labels (English) are off
    description = "; ".join(f"{r['libelle']} : {r['valeur']}" for r in rows)
    return {
        "description": f"{count_label} par {category_label.lower()} : {description}",
        "config": {"aria": False},
        "data": {"values": rows},
        "height": {"step": max(_LINE_PX * lines + 10, 24)},
        "encoding": {
            "y": {
                "field": "etiquette", "type": "nominal", "sort": None, "title": None,
                # an array of lines is a multi-line label
                "axis": {"labelLimit": 0, "labelExpr": "split(datum.label, '\\n')", "labelFontSize": 12,
                         "labelLineHeight": _LINE_PX, "ticks": False, "labelPadding": 6, "aria": False},
            },
            "tooltip": [{"field": "libelle", "type": "nominal", "title": category_label},
                        {"field": "valeur", "type": "nominal", "title": count_label}],
        },
        "layer": [
            {"mark": {"type": "bar", "color": BAR_COLOUR, "aria": False},
             "encoding": {"x": {"field": "n", "type": "quantitative", "title": None, "axis": None,
                                "scale": {"domain": [0, high * 1.45]}}}},
            {"mark": {"type": "text", "align": "left", "baseline": "middle", "dx": 4, "fontSize": 12,
                      "aria": False},
             "encoding": {"x": {"field": "n", "type": "quantitative"}, "text": {"field": "valeur"}}},
        ],
    }
