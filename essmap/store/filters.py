"""A :class:`~essmap.domain.selection.Selection` as SQL ``WHERE`` clauses, with parameters.

Every filter of the dashboard is pushed down to DuckDB: the territory through the memberships
stored at ingest (``code_com``, ``siren_epci``, ``code_region``, ``code_qp_<generation>``), the
attributes through the canonical columns. Values always travel as parameters, never in the SQL
text. Filters of different fields combine with AND, values within one field with OR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from essmap.domain import schema
from essmap.domain.selection import Selection


@dataclass
class Where:
    """A conjunction of SQL conditions and their parameters, in order."""

    conditions: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)

    def add(self, condition: str, *params: object) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def extend(self, other: Where) -> None:
        self.conditions.extend(other.conditions)
        self.params.extend(other.params)

    @property
    def sql(self) -> str:
        return " AND ".join(f"({c})" for c in self.conditions) or "TRUE"


def _in(column: str) -> str:
    return f"{column} IN (SELECT unnest(?))"


def _any_listed(column: str) -> str:
    """Whether any item of a "; "-separated list column is in the (lower-cased) parameter list."""
    return f"list_has_any(list_transform(regexp_split_to_array(lower({column}), '[;|]'), x -> trim(x)), ?)"


def points(selection: Selection, table: str, generation: str | None, *, alias: str = "",
           territory: bool = True) -> Where:
    """Rows of a point layer (``etablissements`` or ``tiers_lieux``) that ``selection`` keeps.

    ESS filters (families, sectors...) apply to establishments, tiers-lieu filters to
    tiers-lieux. ``territory=False`` keeps the attribute filters only (a QPV can be covered from
    across a border).
    """
    p = f"{alias}." if alias else ""
    where = Where()
    if territory:
        _add_territory(where, selection, p, "code_com", "code_commune")
        if selection.qpv:
            if generation is None:
                where.add("FALSE")
            else:
                where.add(_in(f"{p}{schema.qpv_column(generation)}"), list(selection.qpv))
    if table == "etablissements":
        if selection.families:
            where.add(_in(f"{p}famille"), list(selection.families))
        if selection.sectors:
            where.add(_in(f"{p}secteur"), list(selection.sectors))
        if selection.employer_only:
            where.add(f"coalesce({p}employeur, FALSE)")
        if selection.size_bands:
            where.add(_in(f"{p}tranche_effectifs"), list(selection.size_bands))
        if selection.legal_categories:
            where.add(_in(f"{p}categorie_juridique"), list(selection.legal_categories))
    else:
        if selection.tiers_lieu_types:
            where.add(_any_listed(f"{p}types"), [t.casefold() for t in selection.tiers_lieu_types])
        if selection.tiers_lieu_labels:
            where.add(_any_listed(f"{p}labels"), [t.casefold() for t in selection.tiers_lieu_labels])
    if selection.synthetic == "real":
        where.add(f"NOT coalesce({p}is_synthetic, FALSE)")
    elif selection.synthetic == "synthetic":
        where.add(f"coalesce({p}is_synthetic, FALSE)")
    return where


def communes(selection: Selection, *, alias: str = "") -> Where:
    """Communes (and arrondissements) in the selection's territory; a QPV filter does not restrict
    communes (a QPV is a part of its communes)."""
    p = f"{alias}." if alias else ""
    where = Where()
    _add_territory(where, selection, p, "code_insee", "code_commune_parent")
    return where


def _add_territory(where: Where, selection: Selection, prefix: str, commune: str, other_commune: str) -> None:
    """Région, départements, EPCI and communes of ``selection``; a commune matches either of its two
    commune columns (COM code and arrondissement/parent code)."""
    if selection.region:
        where.add(f"{prefix}code_region = ?", selection.region)
    if selection.departements:
        where.add(_in(f"{prefix}code_departement"), list(selection.departements))
    if selection.epci:
        where.add(_in(f"{prefix}siren_epci"), list(selection.epci))
    if selection.communes:
        where.add(f"{_in(prefix + commune)} OR {_in(prefix + other_commune)}", list(selection.communes),
                  list(selection.communes))


def qpv(selection: Selection, generation: str | None, *, alias: str = "q") -> Where:
    """QPVs of ``generation`` in the selection's territory.

    A QPV belongs to a territory through its own codes (``insee_dep``, ``siren_epci``) or through any
    of the communes it lies in (``qpv_communes``): a QPV spanning several communes is kept when any
    of them is selected.
    """
    p = f"{alias}."
    where = Where()
    if generation is None:
        where.add("FALSE")
        return where
    where.add(f"{p}generation = ?", generation)
    if selection.qpv:
        where.add(_in(f"{p}code_qp"), list(selection.qpv))

    def via_communes(condition: str) -> str:
        return ("EXISTS (SELECT 1 FROM qpv_communes qc JOIN communes c ON c.code_insee = qc.code_com "
                f"WHERE qc.generation = {p}generation AND qc.code_qp = {p}code_qp AND ({condition}))")

    if selection.departements:
        deps = list(selection.departements)
        where.add(f"{_in(f'{p}insee_dep')} OR {via_communes(_in('c.code_departement'))}", deps, deps)
    if selection.region:
        where.add(f"{p}insee_dep IN (SELECT code_departement FROM departements WHERE code_region = ?) "
                  f"OR {via_communes('c.code_region = ?')}", selection.region, selection.region)
    if selection.epci:
        epci = list(selection.epci)
        where.add(f"{_in(f'{p}siren_epci')} OR {via_communes(_in('c.siren_epci'))}", epci, epci)
    if selection.communes:
        codes = list(selection.communes)
        where.add(via_communes(f"{_in('qc.code_com')} OR {_in('qc.code_commune')}"), codes, codes)
    return where
