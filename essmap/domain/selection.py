"""One filter object, :class:`Selection`, applied the same way by every analysis function.

Its methods are ``filter_establishments``, ``filter_tiers_lieux``, ``filter_qpv`` and
``filter_communes`` (not ``qpv()``/``communes()``: those names are fields of the selection).

A selection combines territory filters (région, départements, EPCI, communes, QPV) and attribute
filters (ESS family, sector, employer, size band, legal category, tiers-lieu type and label,
real or simulated rows, QPV generation). Filters of different fields combine with AND; values
within one field combine with OR.

Territory filters use the canonical code columns of each layer. Where a layer lacks the column a
filter needs (establishments and tiers-lieux carry a commune and a département, not an EPCI nor a
région), pass the communes table (``communes=``): the filter is then resolved to commune codes.
Arrondissements municipaux (Paris, Lyon, Marseille) belong to their commune: selecting
Marseille (13055) selects the establishments coded 13201-13216.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from essmap.domain import nomenclature
from essmap.domain.territories import (
    departements_of_communes,
    normalise_commune_code,
    normalise_departement,
)

SyntheticChoice = Literal["all", "real", "synthetic"]
_SYNTHETIC_CHOICES: tuple[str, ...] = ("all", "real", "synthetic")

#: Arrondissements municipaux and their commune (fixed by the PLM law): the fallback when no
#: communes table (with ``code_commune_parent``) is at hand.
_PLM_RANGES: tuple[tuple[int, int, str], ...] = (
    (75101, 75120, "75056"),  # Paris
    (69381, 69389, "69123"),  # Lyon
    (13201, 13216, "13055"),  # Marseille
)

#: Level names used in :meth:`Selection.describe` name mappings.
NAME_LEVELS: tuple[str, ...] = ("region", "departement", "epci", "commune", "qpv")


# --- Commune roll-up ---------------------------------------------------------------------------


def parent_commune_codes(codes: pd.Series, communes: pd.DataFrame | None = None) -> pd.Series:
    """The commune (``COM``) code of each commune code: arrondissements roll up to their parent.

    Uses ``code_commune_parent`` of ``communes`` when given, else the fixed PLM ranges (Paris
    75101-75120 -> 75056, Lyon 69381-69389 -> 69123, Marseille 13201-13216 -> 13055). Other
    codes are returned unchanged; missing stays missing. Vectorised over the distinct codes.
    """
    labels, uniques = pd.factorize(codes.astype("string"), use_na_sentinel=True)
    parents = _parents_of(pd.Index(uniques, dtype="string"), communes)
    out = _take_codes(parents, labels)
    return pd.Series(out, index=codes.index, name=codes.name)


def _take_codes(values: pd.Series, labels: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[labels]`` as a nullable string array, <NA> where a label is -1."""
    return values.array.astype(pd.StringDtype()).take(labels, allow_fill=True)


def _parents_of(codes: pd.Index, communes: pd.DataFrame | None) -> pd.Series:
    parents = pd.Series(codes.to_numpy(dtype=object), index=codes, dtype="string")
    if communes is not None and "code_commune_parent" in communes.columns:
        known = communes.loc[communes["code_commune_parent"].notna(), ["code_insee", "code_commune_parent"]]
        mapping = dict(zip(known["code_insee"].astype(str), known["code_commune_parent"].astype(str), strict=True))
    else:
        mapping = {}
    numeric = pd.to_numeric(pd.Series(codes.to_numpy(dtype=object)), errors="coerce").to_numpy()
    for low, high, parent in _PLM_RANGES:
        for code in np.asarray(codes, dtype=object)[(numeric >= low) & (numeric <= high)]:
            mapping.setdefault(str(code), parent)
    if mapping:  # vectorised lookup (a per-code lambda cost ~0.1 s on the 35,000 communes)
        parents = pd.Series(mapping, dtype="string").reindex(codes).fillna(parents)
    return parents


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

    # -- filtering -------------------------------------------------------------------------

    def filter_establishments(
        self,
        gdf: pd.DataFrame,
        *,
        communes: pd.DataFrame | None = None,
        in_qpv: pd.Series | None = None,
    ) -> pd.DataFrame:
        """ESS establishments (``schema.ETABLISSEMENTS`` columns) matching the selection.

        Parameters
        ----------
        communes : DataFrame, optional
            The communes table; required for région and EPCI filters.
        in_qpv : Series, optional
            Code of the QPV holding each establishment (``establishments_qpv(...)["code_qp"]``
            or :func:`essmap.geo.points_in_polygons`), aligned on ``gdf.index``; required
            for a QPV filter.

        Returns the rows kept (the frame itself, not a copy, when nothing is filtered).
        """
        mask = self._territory_mask(gdf, communes, in_qpv, "établissements")
        if self.families:
            mask &= _isin(gdf["famille"], self.families)
        if self.sectors:
            mask &= _isin(gdf["secteur"], self.sectors)
        if self.employer_only:
            mask &= gdf["employeur"].fillna(False).to_numpy(dtype=bool)
        if self.size_bands:
            mask &= _isin(gdf["tranche_effectifs"], self.size_bands)
        if self.legal_categories:
            mask &= _isin(gdf["categorie_juridique"], self.legal_categories)
        mask &= self._synthetic_mask(gdf)
        return _subset(gdf, mask)

    def filter_tiers_lieux(
        self,
        gdf: pd.DataFrame,
        *,
        communes: pd.DataFrame | None = None,
        in_qpv: pd.Series | None = None,
    ) -> pd.DataFrame:
        """Tiers-lieux (``schema.TIERS_LIEUX`` columns) matching the selection.

        Same ``communes`` and ``in_qpv`` arguments as :meth:`filter_establishments`. ESS filters
        (families, sectors...) do not apply to tiers-lieux.
        """
        mask = self._territory_mask(gdf, communes, in_qpv, "tiers-lieux")
        if self.tiers_lieu_types:
            mask &= _any_listed(gdf["types"], self.tiers_lieu_types)
        if self.tiers_lieu_labels:
            mask &= _any_listed(gdf["labels"], self.tiers_lieu_labels)
        mask &= self._synthetic_mask(gdf)
        return _subset(gdf, mask)

    def filter_qpv(self, gdf: pd.DataFrame, *, communes: pd.DataFrame | None = None) -> pd.DataFrame:
        """QPVs (``schema.QPV`` columns) matching the selection.

        A QPV spanning several communes is kept when any of them is selected. A région filter
        needs ``communes`` (QPVs carry no région code).
        """
        mask = np.ones(len(gdf), dtype=bool)
        if self.qpv_generation is not None:
            mask &= (gdf["generation"].astype("string") == self.qpv_generation).fillna(False).to_numpy(dtype=bool)
        if self.qpv:
            mask &= _isin(gdf["code_qp"], self.qpv)
        if self.region or self.departements or self.epci or self.communes:
            mask &= self._qpv_territory_mask(gdf, communes)
        return _subset(gdf, mask)

    def filter_communes(self, gdf: pd.DataFrame) -> pd.DataFrame:
        """Communes (``schema.COMMUNES`` columns) matching the territory filters.

        Selecting a commune keeps its arrondissements municipaux too. The QPV filter does not
        restrict communes (a QPV is a part of its communes).
        """
        mask = np.ones(len(gdf), dtype=bool)
        if self.region:
            mask &= _isin(gdf["code_region"], (self.region,))
        if self.departements:
            mask &= _isin(gdf["code_departement"], self.departements)
        if self.epci:
            mask &= _isin(gdf["siren_epci"], self.epci)
        if self.communes:
            mask &= _isin(gdf["code_insee"], self.communes) | _isin(
                gdf["code_commune_parent"], self.communes
            )
        return _subset(gdf, mask)

    # -- internals -------------------------------------------------------------------------

    def _synthetic_mask(self, gdf: pd.DataFrame) -> np.ndarray | bool:
        if self.synthetic == "all":
            return True
        flag = gdf["is_synthetic"].fillna(False).to_numpy(dtype=bool)
        return flag if self.synthetic == "synthetic" else ~flag

    def _territory_mask(
        self,
        gdf: pd.DataFrame,
        communes: pd.DataFrame | None,
        in_qpv: pd.Series | None,
        what: str,
    ) -> np.ndarray:
        """Territory filters on a point layer carrying ``code_commune`` and ``code_departement``."""
        mask = np.ones(len(gdf), dtype=bool)
        if self.departements:
            mask &= _isin(gdf["code_departement"], self.departements)
        if self.region:
            deps = _departements_of_region(_need(communes, "region", what), self.region)
            mask &= _isin(gdf["code_departement"], deps)
        if self.epci or self.communes:
            parent = parent_commune_codes(gdf["code_commune"], communes)
            if self.epci:
                wanted = _communes_of_epci(_need(communes, "epci", what), self.epci)
                mask &= _isin(parent, wanted) | _isin(gdf["code_commune"], wanted)
            if self.communes:
                mask &= _isin(parent, self.communes) | _isin(gdf["code_commune"], self.communes)
        if self.qpv:
            if in_qpv is None:
                raise ValueError(
                    f"Le filtre QPV sur les {what} a besoin de leur QPV : passez in_qpv= "
                    "(résultat de establishments_qpv(...)['code_qp'] ou de points_in_polygons)."
                )
            mask &= _isin(in_qpv.reindex(gdf.index), self.qpv)
        return mask

    def _qpv_territory_mask(self, gdf: pd.DataFrame, communes: pd.DataFrame | None) -> np.ndarray:
        pairs = qpv_commune_pairs(gdf)
        pos = pairs["position"].to_numpy()
        com = pairs["code_commune"]
        parent = parent_commune_codes(com, communes)
        dep_of_qpv = gdf["insee_dep"].astype("string").reset_index(drop=True)

        def any_commune(hit: np.ndarray) -> np.ndarray:
            out = np.zeros(len(gdf), dtype=bool)
            out[pos[hit]] = True
            return out

        def dep_match(deps: Iterable[str]) -> np.ndarray:
            deps = tuple(deps)
            own = _isin(dep_of_qpv, deps)
            return own | any_commune(_isin(departements_of_communes(com), deps))

        mask = np.ones(len(gdf), dtype=bool)
        if self.departements:
            mask &= dep_match(self.departements)
        if self.region:
            mask &= dep_match(_departements_of_region(_need(communes, "region", "QPV"), self.region))
        if self.epci:
            own = _isin(gdf["siren_epci"], self.epci) if "siren_epci" in gdf.columns else False
            via = (
                any_commune(_isin(parent, _communes_of_epci(communes, self.epci)))
                if communes is not None
                else False
            )
            mask &= own | via
        if self.communes:
            mask &= any_commune(_isin(parent, self.communes) | _isin(com, self.communes))
        return mask

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


def territory_names(
    *,
    communes: pd.DataFrame | None = None,
    departements: pd.DataFrame | None = None,
    regions: pd.DataFrame | None = None,
    epci: pd.DataFrame | None = None,
    qpv: pd.DataFrame | None = None,
) -> dict[str, dict[str, str]]:
    """Names by level and code, from the layers at hand, for :meth:`Selection.describe`."""
    sources = (
        ("commune", communes, "code_insee", "nom"),
        ("departement", departements, "code_departement", "nom"),
        ("region", regions, "code_region", "nom"),
        ("epci", epci, "siren_epci", "nom"),
        ("qpv", qpv, "code_qp", "lib_qp"),
    )
    out: dict[str, dict[str, str]] = {}
    for level, frame, code, name in sources:
        if frame is None:
            continue
        known = frame[[code, name]].dropna()
        out[level] = dict(zip(known[code].astype(str), known[name].astype(str), strict=True))
    return out


def qpv_commune_pairs(qpv: pd.DataFrame) -> pd.DataFrame:
    """One row per (QPV position, commune code) from ``insee_com`` ("13001,13002").

    Columns ``position`` (row position in ``qpv``) and ``code_commune``. QPVs without
    commune codes have no row.
    """
    codes = qpv["insee_com"].astype("string").reset_index(drop=True)
    split = codes.str.split(r"[,;\s]+", regex=True).explode()
    split = split[split.notna() & (split != "")]
    return pd.DataFrame(
        {
            "position": split.index.to_numpy(dtype=np.int64),
            "code_commune": split.astype("string").map(normalise_commune_code).astype("string").to_numpy(),
        }
    )


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


def _isin(values: pd.Series | pd.Index, allowed: Iterable[str]) -> np.ndarray:
    return pd.Series(values).isin(list(allowed)).to_numpy(dtype=bool)


def _any_listed(values: pd.Series, wanted: tuple[str, ...]) -> np.ndarray:
    """Whether any item of a "; "-separated list is in ``wanted`` (case-insensitive)."""
    wanted_folded = {w.casefold() for w in wanted}
    items = values.astype("string").reset_index(drop=True).str.split(r"[;|]", regex=True).explode()
    items = items.str.strip().str.casefold()
    hit = items.isin(wanted_folded).fillna(False).to_numpy(dtype=bool)
    out = np.zeros(len(values), dtype=bool)
    out[items.index.to_numpy()[hit]] = True
    return out


def _subset(gdf: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    return gdf if bool(np.all(mask)) else gdf[mask]


def _need(communes: pd.DataFrame | None, field: str, what: str) -> pd.DataFrame:
    if communes is None:
        raise ValueError(
            f"Le filtre « {field} » sur les {what} a besoin de la table des communes : "
            "passez communes=."
        )
    return communes


def _departements_of_region(communes: pd.DataFrame, region: str) -> tuple[str, ...]:
    deps = communes.loc[_isin(communes["code_region"], (region,)), "code_departement"]
    return tuple(sorted(deps.dropna().astype(str).unique()))


def _communes_of_epci(communes: pd.DataFrame, epci: tuple[str, ...]) -> tuple[str, ...]:
    codes = communes.loc[_isin(communes["siren_epci"], epci), "code_insee"]
    return tuple(codes.dropna().astype(str).unique())
