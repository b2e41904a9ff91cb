"""French number and date formats for everything users read (1 234,5 ; 25/11/2026)."""

from __future__ import annotations

import math
from datetime import date, datetime

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
