"""Territories of France: which metric CRS measures distances where, and codes (INSEE COG).

Distances are never measured in degrees nor in one projection for all of France: each feature
carries the code of its territory and that territory's metric CRS (see ``docs/domain.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

# numpy and pandas only where arrays are handled: importing this module (any essmap command) stays light
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Territory:
    """A territory with its own metric CRS.

    ``bbox`` is (lon_min, lat_min, lon_max, lat_max) in WGS84, generous by a few kilometres: it
    catches coordinates that are swapped or belong elsewhere, not points near a border.
    """

    code: str
    name: str
    epsg: int
    departements: tuple[str, ...]
    bbox: tuple[float, float, float, float]

    def contains_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Vectorised bounding-box test."""
        lon_min, lat_min, lon_max, lat_max = self.bbox
        return (lon >= lon_min) & (lon <= lon_max) & (lat >= lat_min) & (lat <= lat_max)


_METRO_DEPS = tuple(
    [f"{i:02d}" for i in range(1, 20)] + ["2A", "2B"] + [f"{i:02d}" for i in range(21, 96)]
)

TERRITORIES: dict[str, Territory] = {
    t.code: t
    for t in (
        Territory("metropole", "France métropolitaine", 2154, _METRO_DEPS, (-5.6, 41.2, 10.0, 51.3)),
        Territory("guadeloupe", "Guadeloupe", 5490, ("971",), (-61.95, 15.80, -60.95, 16.55)),
        Territory("martinique", "Martinique", 5490, ("972",), (-61.30, 14.35, -60.75, 14.92)),
        Territory("guyane", "Guyane", 2972, ("973",), (-54.65, 2.05, -51.55, 5.85)),
        Territory("reunion", "La Réunion", 2975, ("974",), (55.18, -21.42, 55.87, -20.84)),
        Territory("mayotte", "Mayotte", 4471, ("976",), (44.95, -13.05, 45.35, -12.60)),
        Territory(
            "saint_pierre_miquelon", "Saint-Pierre-et-Miquelon", 4467, ("975",),
            (-56.45, 46.70, -56.10, 47.17),
        ),
        Territory("saint_barthelemy", "Saint-Barthélemy", 5490, ("977",), (-62.92, 17.85, -62.78, 17.97)),
        Territory("saint_martin", "Saint-Martin", 5490, ("978",), (-63.17, 18.00, -62.96, 18.14)),
    )
}

_BY_DEPARTEMENT: dict[str, Territory] = {
    dep: t for t in TERRITORIES.values() for dep in t.departements
}

#: Metric CRS by EPSG code of every territory (the SIRENE geolocation file gives one per row).
METRIC_EPSG: frozenset[int] = frozenset(t.epsg for t in TERRITORIES.values())


def territory_of_departement(code_departement: str) -> Territory:
    """The territory of a département code ("13", "2A", "974").

    Raises ``KeyError`` for an unknown code.
    """
    return _BY_DEPARTEMENT[normalise_departement(code_departement)]


def normalise_departement(code: object) -> str:
    """Canonical département code: "1" -> "01", "2a" -> "2A", "974" stays; blanks give ""."""
    text = "" if code is None or (isinstance(code, float) and math.isnan(code)) else str(code).strip()
    text = text.upper()
    if text.endswith(".0"):
        text = text[:-2]
    if text.isdigit() and len(text) == 1:
        return text.zfill(2)
    return text


def departement_of_commune(code_insee: str) -> str:
    """Département of a commune code: "13055" -> "13", "2A004" -> "2A", "97411" -> "974"."""
    code = code_insee.strip().upper()
    return code[:3] if code.startswith("97") else code[:2]


def departements_of_communes(codes: pd.Series) -> pd.Series:
    """Vectorised :func:`departement_of_commune` (empty for missing codes)."""
    codes = codes.fillna("").astype(str).str.strip().str.upper()
    return codes.str[:2].where(~codes.str.startswith("97"), codes.str[:3])


def normalise_commune_code(code: object) -> str:
    """Canonical 5-character commune code ("1004" -> "01004", "13055.0" -> "13055")."""
    text = "" if code is None or (isinstance(code, float) and math.isnan(code)) else str(code).strip()
    text = text.upper()
    if text.endswith(".0"):
        text = text[:-2]
    if text.isdigit() and len(text) == 4:
        return text.zfill(5)
    return text


def is_valid_commune_code(code: str) -> bool:
    """Five characters: digits, or 2A/2B followed by three digits (Corsica)."""
    return len(code) == 5 and (code.isdigit() or (code[:2] in ("2A", "2B") and code[2:].isdigit()))


def territory_codes_of_departements(departements: pd.Series) -> pd.Series:
    """Territory code for each département code ("" where unknown)."""
    return departements.map(lambda d: _BY_DEPARTEMENT[d].code if d in _BY_DEPARTEMENT else "")


def epsg_of_territory_codes(territories: pd.Series) -> pd.Series:
    """Metric EPSG code for each territory code (0 where unknown)."""
    return territories.map(lambda t: TERRITORIES[t].epsg if t in TERRITORIES else 0).astype("int32")


def territory_of_lonlat(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Territory code of each WGS84 point by bounding box ("" when in none)."""
    import numpy as np
    out = np.full(len(lon), "", dtype=object)
    for t in TERRITORIES.values():
        out[(out == "") & t.contains_lonlat(lon, lat)] = t.code
    return out
