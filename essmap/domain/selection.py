"""One filter object, :class:`Selection`: what the user selected, applied the same way everywhere.

The store turns it into SQL (:mod:`essmap.store.filters`); the dashboard and the exports turn it
into a URL query string and a French description.

A selection combines territory filters (région, départements, EPCI, communes, QPV) and attribute
filters (ESS family, sector, employer, size band, legal category, tiers-lieu type and label,
real or simulated rows, QPV generation). Filters of different fields combine with AND; values
within one field combine with OR.

Territory filters apply through the memberships the store computes at ingest: arrondissements
municipaux (Paris, Lyon, Marseille) belong to their commune, so selecting Marseille (13055)
selects the establishments coded 13201-13216.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from essmap.domain import nomenclature
from essmap.domain.territories import (
    normalise_commune_code,
    normalise_departement,
)

SyntheticChoice = Literal["all", "real", "synthetic"]
_SYNTHETIC_CHOICES: tuple[str, ...] = ("all", "real", "synthetic")

#: Arrondissements municipaux and their commune (fixed by the PLM law): the fallback for codes the
#: communes layer does not list.
PLM_RANGES: tuple[tuple[int, int, str], ...] = (
    (75101, 75120, "75056"),  # Paris
    (69381, 69389, "69123"),  # Lyon
    (13201, 13216, "13055"),  # Marseille
)

#: Level names used in :meth:`Selection.describe` name mappings.
NAME_LEVELS: tuple[str, ...] = ("region", "departement", "epci", "commune", "qpv")


# --- Selection ---------------------------------------------------------------------------------


def _text_codes(value: object, normalise: Callable[[object], str] = str) -> tuple[str, ...]:
    """A sorted tuple of distinct non-empty codes from a string, an iterable or None."""
    if value is None:
        return ()
    items: Iterable[object] = (value,) if isinstance(value, str) else value  # type: ignore[assignment]
    out = {normalise(v).strip() for v in items if v is not None}
    out.discard("")
    for item in out:
        if "," in item:
            raise ValueError(f"valeur de filtre invalide : « {item} » (la virgule est réservée).")
    return tuple(sorted(out))


def _region_code(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.zfill(2) if text.isdigit() and len(text) == 1 else text


def _check_known(values: tuple[str, ...], known: Mapping[str, str], field: str) -> None:
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(
            f"{field} : valeur(s) inconnue(s) {unknown} ; valeurs possibles : {sorted(known)}."
        )


@dataclass(frozen=True)
class Selection:
    """What the user selected; every analysis function applies it the same way.

    Tuples are normalised on creation (codes padded, sorted, duplicates dropped), so two
    selections of the same things are equal and hash alike (usable as a cache key).

    Attributes
    ----------
    region : str, optional
        Région code ("93").
    departements, epci, communes, qpv : tuple of str
        Territory codes (département "13"/"2A"/"974", EPCI SIREN, commune INSEE code, QPV code).
    families : tuple of str
        ESS families, keys of :data:`essmap.domain.nomenclature.FAMILY_LABELS`.
    sectors : tuple of str
        Sectors, keys of :data:`essmap.domain.nomenclature.SECTOR_LABELS`.
    employer_only : bool
        Keep employer establishments only (the counting unit of published national figures).
    size_bands : tuple of str
        Headcount bands, keys of :data:`essmap.domain.nomenclature.SIZE_BAND_LABELS`.
    legal_categories : tuple of str
        INSEE legal categories, e.g. ``("9222", *nomenclature.SCOP_CODES)``.
    tiers_lieu_types, tiers_lieu_labels : tuple of str
        A tiers-lieu matches when one of its types (labels) is listed (case-insensitive).
    synthetic : {"all", "real", "synthetic"}
        Keep all rows, real rows only, or simulated rows only.
    qpv_generation : str, optional
        "2024" or "2015": which QPV generation to use.
    """

    region: str | None = None
    departements: tuple[str, ...] = ()
    epci: tuple[str, ...] = ()
    communes: tuple[str, ...] = ()
    qpv: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    sectors: tuple[str, ...] = ()
    employer_only: bool = False
    size_bands: tuple[str, ...] = ()
    legal_categories: tuple[str, ...] = ()
    tiers_lieu_types: tuple[str, ...] = ()
    tiers_lieu_labels: tuple[str, ...] = ()
    synthetic: SyntheticChoice = "all"
    qpv_generation: str | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("region", _region_code(self.region))
        put("departements", _text_codes(self.departements, normalise_departement))
        put("epci", _text_codes(self.epci))
        put("communes", _text_codes(self.communes, normalise_commune_code))
        put("qpv", _text_codes(self.qpv, lambda c: str(c).upper()))
        put("families", _text_codes(self.families))
        put("sectors", _text_codes(self.sectors))
        put("size_bands", _text_codes(self.size_bands))
        put("legal_categories", _text_codes(self.legal_categories))
        put("tiers_lieu_types", _text_codes(self.tiers_lieu_types))
        put("tiers_lieu_labels", _text_codes(self.tiers_lieu_labels))
        put("employer_only", bool(self.employer_only))
        generation = None if self.qpv_generation is None else str(self.qpv_generation).strip() or None
        put("qpv_generation", generation)
        if self.synthetic not in _SYNTHETIC_CHOICES:
            raise ValueError(
                f"synthetic : « {self.synthetic} » inconnu ; attendu l'un de {list(_SYNTHETIC_CHOICES)}."
            )
        _check_known(self.families, nomenclature.FAMILY_LABELS, "families")
        _check_known(self.sectors, nomenclature.SECTOR_LABELS, "sectors")
        _check_known(self.size_bands, nomenclature.SIZE_BAND_LABELS, "size_bands")

    # -- structure -------------------------------------------------------------------------

    @property
    def has_territory(self) -> bool:
        """Whether any territory filter (région, départements, EPCI, communes, QPV) is set."""
        return bool(self.region or self.departements or self.epci or self.communes or self.qpv)

    def without_territory(self) -> Selection:
        """The same attribute filters over all territories.

        Used for questions that cross borders: a QPV at the edge of a département can be
        covered by a tiers-lieu of the next one.
        """
        return dataclasses.replace(self, region=None, departements=(), epci=(), communes=(), qpv=())

    # -- description and URLs --------------------------------------------------------------

    def describe(self, names: Mapping[str, Mapping[str, str]] | None = None) -> str:
        """A short French description, e.g. "Bouches-du-Rhône · associations · employeurs".

        ``names`` maps a level ("region", "departement", "epci", "commune", "qpv") to
        {code: name}; see :func:`territory_names`. Codes without a name are shown as codes.
        """
        names = names or {}

        def named(level: str, codes: Iterable[str], fallback: str) -> str:
            table = names.get(level, {})
            return ", ".join(table.get(c) or f"{fallback} {c}".strip() for c in codes)

        parts: list[str] = []
        if self.region:
            parts.append(named("region", (self.region,), "région"))
        if self.departements:
            parts.append(named("departement", self.departements, "département"))
        if self.epci:
            parts.append(named("epci", self.epci, "EPCI"))
        if self.communes:
            parts.append(named("commune", self.communes, "commune"))
        if self.qpv:
            parts.append("QPV " + named("qpv", self.qpv, ""))
        if self.families:
            parts.append(", ".join(_lower_first(nomenclature.FAMILY_LABELS[f]) for f in self.families))
        if self.sectors:
            parts.append(", ".join(_lower_first(nomenclature.SECTOR_LABELS[s]) for s in self.sectors))
        if self.legal_categories:
            parts.append(_describe_legal_categories(self.legal_categories))
        if self.employer_only:
            parts.append("employeurs")
        if self.size_bands:
            parts.append(", ".join(_lower_first(nomenclature.SIZE_BAND_LABELS[b]) for b in self.size_bands))
        if self.tiers_lieu_types:
            parts.append("tiers-lieux : " + ", ".join(self.tiers_lieu_types))
        if self.tiers_lieu_labels:
            parts.append("label : " + ", ".join(self.tiers_lieu_labels))
        if self.synthetic == "real":
            parts.append("données réelles uniquement")
        elif self.synthetic == "synthetic":
            parts.append("données simulées uniquement")
        if self.qpv_generation:
            parts.append(f"QPV {self.qpv_generation}")
        return " · ".join(parts) if parts else "Toutes les données"

    def to_query_params(self) -> dict[str, str]:
        """The selection as URL query parameters (defaults omitted; lists comma-separated)."""
        params: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if isinstance(value, tuple):
                params[f.name] = ",".join(value)
            elif isinstance(value, bool):
                params[f.name] = "1" if value else "0"
            else:
                params[f.name] = str(value)
        return params

    @classmethod
    def from_query_params(cls, params: Mapping[str, str]) -> Selection:
        """Inverse of :meth:`to_query_params`. Unknown keys are ignored (a page URL carries
        other parameters too); invalid values raise ``ValueError``."""
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name not in params:
                continue
            raw = str(params[f.name]).strip()
            if isinstance(f.default, tuple):
                kwargs[f.name] = tuple(v for v in raw.split(",") if v.strip())
            elif isinstance(f.default, bool):
                lowered = raw.lower()
                if lowered not in ("1", "0", "true", "false", "oui", "non", ""):
                    raise ValueError(f"{f.name} : « {raw} » n'est pas un booléen (1 ou 0).")
                kwargs[f.name] = lowered in ("1", "true", "oui")
            else:
                kwargs[f.name] = raw or f.default
        return cls(**kwargs)  # type: ignore[arg-type]


def _describe_legal_categories(codes: tuple[str, ...]) -> str:
    rest = set(codes)
    parts: list[str] = []
    if nomenclature.SCOP_CODES <= rest:
        parts.append("SCOP")
        rest -= nomenclature.SCOP_CODES
    for code in sorted(rest):
        label = nomenclature.NOTABLE_LEGAL_CATEGORIES.get(code)
        parts.append(_lower_first(label) if label else f"catégorie juridique {code}")
    return ", ".join(parts)


def _lower_first(text: str) -> str:
    """"Associations" -> "associations", but "SCOP (SARL)" stays (an acronym)."""
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]
