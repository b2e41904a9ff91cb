"""French number and date formats for everything users read (1 234,5 ; 25/11/2026)."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # frames only pass through: importing this module stays light
    import pandas as pd

NARROW_NBSP = "\u202f"  # the thousands separator of French typography


def format_number(value: float | int | None, decimals: int = 0, *, unit: str = "") -> str:
    """``1234.5`` -> ``"1 234,5"`` (narrow no-break space for thousands, comma for decimals)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:,.{decimals}f}".replace(",", NARROW_NBSP).replace(".", ",")
    return f"{text}{NARROW_NBSP}{unit}" if unit else text


def format_percent(share: float | None, decimals: int = 1) -> str:
    """``0.36`` -> ``"36,0 %"``."""
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "–"
    return format_number(share * 100, decimals, unit="%")


def format_date(value: date | datetime) -> str:
    """``date(2026, 11, 25)`` -> ``"25/11/2026"``."""
    return value.strftime("%d/%m/%Y")


def location_label(precision: object) -> str:
    """How a tiers-lieu was positioned, as tables and popups say it: the precision itself, and
    "commune seulement (localisation approximative)" for a place left out of radius queries."""
    from essmap.domain.schema import APPROXIMATE_LOCATION_FR, LOCATION_COMMUNE, LOCATION_PROVIDED

    if not isinstance(precision, str) or not precision:
        return LOCATION_PROVIDED
    if precision == LOCATION_COMMUNE:
        return f"{LOCATION_COMMUNE} ({APPROXIMATE_LOCATION_FR})"
    return precision


#: How a number column of a table reads: "entier" (1 775), "decimal" (one decimal: 124,6), "part" (a
#: share from 0 to 1 shown as a percentage: 5,0 %). See :mod:`essmap.render.tables`.
NumberFormat = Literal["entier", "decimal", "part"]
NUMBER_FORMATS: tuple[str, ...] = ("entier", "decimal", "part")
_FORMATS_ATTR = "essmap_number_formats"


def with_number_formats(frame: pd.DataFrame, formats: dict[str, NumberFormat]) -> pd.DataFrame:
    """``frame`` (itself) carrying how its number columns read, in pandas ``attrs``: kept by ``head``,
    ``drop``, ``to_crs`` and a GeoDataFrame built from it."""
    unknown = set(formats.values()) - set(NUMBER_FORMATS)
    if unknown:
        raise ValueError(f"formats de nombre inconnus : {sorted(unknown)}")
    frame.attrs[_FORMATS_ATTR] = dict(formats)
    return frame


def number_formats(frame: pd.DataFrame) -> dict[str, NumberFormat]:
    """The formats of :func:`with_number_formats` for the columns ``frame`` has."""
    return {column: kind for column, kind in frame.attrs.get(_FORMATS_ATTR, {}).items() if column in frame.columns}


def format_cell(value: object, kind: NumberFormat) -> str:
    """One table value as the screen shows it: "1 775", "124,6", "5,0 %"; "–" when missing."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    if math.isnan(number):
        return "–"
    if kind == "part":
        return format_percent(number)
    return format_number(number, 1 if kind == "decimal" else 0)
