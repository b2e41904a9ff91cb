"""What the dashboard and the exports show for one :class:`~essmap.present.view.MapView`.

:func:`view_data` reads a view from the store into a :class:`ViewData`: the choropleth units with
their values and classes, the QPVs with the radius results, the filtered establishments and
tiers-lieux, and the labels. The interactive map and the exported figures both draw from it, so
they show the same classes and colours.

Everything heavy was done at ingest (memberships, QPV x tiers-lieux pairs, simplified boundaries):
a view is a few SQL aggregates on the store plus the classes. Unit and QPV boundaries are the
display geometries stored at ingest (simplified as a coverage: neighbours share their borders);
exports of QPV tables carry the exact ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd

from essmap.analysis.coverage import establishments_around_qpv, qpv_coverage
from essmap.analysis.indicators import (
    INDICATORS,
    INDICATORS_BY_KEY,
    LEVEL_LABELS,
    PARENT_LEVEL,
    Comparison,
    Indicator,
    breakdown,
    compare,
    indicators_by_level,
)
from essmap.domain.formatting import (
    NumberFormat,
    format_number,
    format_percent,
    location_label,
    with_number_formats,
)
from essmap.domain.nomenclature import FAMILY_LABELS, SECTOR_LABELS, SIZE_BAND_LABELS
from essmap.domain.selection import Selection
from essmap.present.classify import Classification, classify
from essmap.present.view import POINT_GROUPS_BY_SCOPE, MapView, scope_of
from essmap.store.queries import (
    display_geometry,
    generation_of,
    names,
    parent_code,
    point_groups,
    read_points,
    read_qpv,
    with_point_geometry,
)

#: Columns of the establishments a view reads: what the map popups, the tables, the fiche and the
#: portrait show (reading every column of a large département cost twice as much).
ESTABLISHMENT_COLUMNS: tuple[str, ...] = (
    "siret", "denomination", "famille", "secteur", "employeur", "tranche_effectifs", "adresse", "code_postal",
    "libelle_commune", "code_commune", "territoire", "is_synthetic",
)

#: Indicators of the key-figure cards of a fiche, in order.
FICHE_INDICATORS: tuple[str, ...] = (
    "n_etablissements",
    "n_etablissements_employeurs",
    "etablissements_employeurs_pour_10k_hab",
    "part_employeurs_en_qpv",
    "n_tiers_lieux",
    "n_qpv",
    "part_qpv_avec_tiers_lieu",
)


@dataclass(frozen=True)
class ViewData:
    """Everything drawn for one view (see the module docstring).

    Attributes
    ----------
    view : MapView
        The view these data were computed for.
    indicator : Indicator
        The indicator of the choropleth.
    areas : GeoDataFrame
        One row per unit of ``view.level`` in the selected territory: every column of
        :func:`~essmap.analysis.indicators.indicators_by_level`, plus ``valeur`` (the indicator in
        its display unit: shares in percent) and ``classe_couleur``; display geometry, with its
        GeoJSON text and a point inside it as stored at ingest (``geojson``, ``anchor_lon``,
        ``anchor_lat``: what the map sends).
    classification : Classification
        Classes of ``valeur`` (edges, colours, French labels).
    qpv : GeoDataFrame
        QPVs in view with the radius results of :func:`~essmap.analysis.coverage.qpv_coverage`
        (``n_tiers_lieux``, ``nearest_nom``, ``nearest_distance_m``, ``covered``...), display geometry
        (with ``geojson``, ``anchor_lon``, ``anchor_lat`` as ``areas``).
    etablissements, tiers_lieux : DataFrame
        Filtered establishments and tiers-lieux in view, with ``code_qp`` (the QPV holding each
        one, <NA> outside) and their position (``longitude``, ``latitude``; no geometry objects:
        :func:`~essmap.store.queries.with_point_geometry` makes them where needed). In a région
        or France view, ``etablissements`` is empty and ``groupes_etablissements`` counts them.
    groupes_etablissements : DataFrame, optional
        Establishments per unit of :data:`~essmap.present.view.POINT_GROUPS_BY_SCOPE` in a wide view
        (:func:`~essmap.store.queries.point_groups`: code, nom, n, mean position), else None.
    synthetic : bool
        Whether any simulated row is in view.
    territory_label, filters_label : str
        "Bouches-du-Rhône (13)"; :meth:`Selection.describe` of the view.
    """

    view: MapView
    indicator: Indicator
    areas: gpd.GeoDataFrame
    classification: Classification
    qpv: gpd.GeoDataFrame
    etablissements: pd.DataFrame
    tiers_lieux: pd.DataFrame
    synthetic: bool
    territory_label: str
    filters_label: str
    groupes_etablissements: pd.DataFrame | None = None

    @property
    def n_etablissements(self) -> int:
        """Establishments in view, drawn one by one or counted in groups."""
        if self.groupes_etablissements is not None:
            return int(self.groupes_etablissements["n"].sum())
        return len(self.etablissements)

    @property
    def legend_title(self) -> str:
        """The title of the map legend: the indicator's label, which names what is counted or the rate
        ("... pour 10 000 habitants"); only a share adds its unit, "(%)"."""
        return legend_title(self.indicator)

    def with_view(self, view: MapView) -> ViewData:
        """The same data for a view that differs only in presentation (classes, tiles, selection).

        Cheap: only the classes are recomputed. Lets a cache key on :func:`computation_key`.
        """
        if computation_key(view) != computation_key(self.view):
            raise ValueError("with_view : la sélection, l'indicateur, le niveau ou le rayon diffèrent ; "
                             "appelez view_data().")
        if (view.method, view.k) == (self.view.method, self.view.k):
            return dataclasses.replace(self, view=view)
        classification = _classify(self.areas["valeur"], self.indicator, view)
        areas = self.areas.assign(classe_couleur=classification.colour_of(self.areas["valeur"]))
        return dataclasses.replace(self, view=view, areas=areas, classification=classification)


def legend_title(indicator: Indicator) -> str:
    """"Part des ... (%)", "Tiers-lieux", "Établissements ... pour 10 000 habitants": the unit once."""
    return f"{indicator.label_fr} (%)" if indicator.unit_fr == "%" else indicator.label_fr


def computation_key(view: MapView) -> MapView:
    """The part of a view that the heavy computation depends on (the rest is presentation)."""
    default = MapView()
    return view.replace(method=default.method, k=default.k, selected=None, tiles=None, tab=default.tab)


def view_data(con: duckdb.DuckDBPyConnection, view: MapView) -> ViewData:
    """Read what ``view`` shows from the store (see the module docstring)."""
    # the QPV generation looked up once, not by each query (labels keep the view's own selection)
    selection = dataclasses.replace(view.selection, qpv_generation=generation_of(con, view.selection))
    indicator = INDICATORS_BY_KEY[view.indicator]
    table = indicators_by_level(con, view.level, selection=selection, radius_m=view.radius_m)  # type: ignore[arg-type]
    values = pd.to_numeric(table[view.indicator], errors="coerce").astype("Float64")
    table["valeur"] = values * 100 if indicator.unit_fr == "%" else values
    areas = _with_display_geometry(con, view.level, table, "code")
    classification = _classify(areas["valeur"], indicator, view)
    areas["classe_couleur"] = classification.colour_of(areas["valeur"])

    coverage = _with_display_geometry(con, "qpv", qpv_coverage(con, selection, radius_m=view.radius_m, geometry=None),
                                      "code_qp")
    group_by = POINT_GROUPS_BY_SCOPE[scope_of(selection)]
    groups = point_groups(con, "etablissements", selection, group_by) if group_by else None
    etab = (read_points(con, "etablissements", selection, columns=ESTABLISHMENT_COLUMNS, geometry=False)
            if groups is None else pd.DataFrame(columns=[*ESTABLISHMENT_COLUMNS, "code_qp", "longitude", "latitude"]))
    tiers_lieux = read_points(con, "tiers_lieux", selection, geometry=False)
    known = names(con, _codes_to_name(view.selection))
    return ViewData(
        view=view,
        indicator=indicator,
        areas=areas,
        classification=classification,
        qpv=coverage,
        etablissements=etab,
        tiers_lieux=tiers_lieux,
        synthetic=bool(
            _any_flag(etab, "is_synthetic") or _any_flag(tiers_lieux, "is_synthetic")
            or _any_flag(coverage, "is_synthetic_involved")
            or (groups is not None and _any_flag(groups, "is_synthetic"))
        ),
        territory_label=territory_label(view.selection, known),
        filters_label=view.selection.describe(known),
        groupes_etablissements=groups,
    )



def _with_display_geometry(con: duckdb.DuckDBPyConnection, level: str, frame: pd.DataFrame,
                           code_column: str) -> gpd.GeoDataFrame:
    """``frame`` with the display geometry stored for its units of ``level`` (none where missing),
    and its GeoJSON text and inner point (``geojson``, ``anchor_lon``, ``anchor_lat``: the map sends them).

    QPVs too: the stored boundary alone, not a second read of their attributes (read_qpv's display
    geometry cost twice as much CPU)."""
    shapes = display_geometry(con, level, frame[code_column].astype(str).tolist())
    rows = frame.reset_index(drop=True)
    for column in ("geojson", "anchor_lon", "anchor_lat"):
        rows[column] = shapes[column].array
    return gpd.GeoDataFrame(rows, geometry=shapes.geometry.array)


def establishments_around(con: duckdb.DuckDBPyConnection, data: ViewData) -> gpd.GeoDataFrame:
    """Per QPV in view: establishments of the chosen families/sectors within the radius (on demand)."""
    return establishments_around_qpv(con, data.view.selection, radius_m=data.view.radius_m)


def _codes_to_name(selection: Selection) -> dict[str, tuple[str, ...]]:
    return {"region": (selection.region,) if selection.region else (), "departement": selection.departements,
            "epci": selection.epci, "commune": selection.communes, "qpv": selection.qpv}


def territory_label(selection: Selection, names: dict[str, dict[str, str]]) -> str:
    """The most precise territory of a selection, "Marseille (13055)"; "France" when none."""
    for level, codes in (("commune", selection.communes), ("epci", selection.epci),
                         ("departement", selection.departements),
                         ("region", (selection.region,) if selection.region else ())):
        if codes:
            return ", ".join(f"{names.get(level, {}).get(c, c)} ({c})" for c in codes)
    return "France"


def _classify(values: pd.Series, indicator: Indicator, view: MapView) -> Classification:
    decimals = 1 if indicator.unit_fr in ("%", "pour 10 000 hab.") else 0
    return classify(values, method=view.method, k=view.k, decimals=decimals, unit=indicator.unit_fr)  # type: ignore[arg-type]


def _any_flag(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].fillna(False).to_numpy(dtype=bool).any())


# --- Fiche of a selected unit -------------------------------------------------------------------


@dataclass(frozen=True)
class Fiche:
    """What the "Fiche" tab shows for a selected commune, QPV or choropleth unit.

    ``comparisons`` hold the key figures with their parent and France values and sources;
    ``familles``/``secteurs`` are :func:`~essmap.analysis.indicators.breakdown` rows of the
    unit; ``qpv_hors_qpv`` counts establishments by family inside and outside QPVs.
    """

    code: str
    name: str
    level: str
    level_label: str
    comparisons: tuple[Comparison, ...]
    familles: pd.DataFrame
    secteurs: pd.DataFrame
    qpv_hors_qpv: pd.DataFrame
    etablissements: gpd.GeoDataFrame
    tiers_lieux: gpd.GeoDataFrame
    synthetic: bool


def unit_of(data: ViewData, code: str) -> tuple[str, str] | None:
    """(level, name) of the unit ``code`` a user can select: a unit of the choropleth (at the
    view's level) or a QPV in view; None if the view has no such unit."""
    code = str(code)
    areas = data.areas["code"].astype(str) == code
    if areas.any():
        return data.view.level, str(data.areas.loc[areas.to_numpy(), "nom"].iloc[0])
    qpv = data.qpv["code_qp"].astype(str) == code
    if qpv.any():
        return "qpv", str(data.qpv.loc[qpv.to_numpy(), "lib_qp"].iloc[0])
    return None


def selectable_units(data: ViewData) -> dict[str, str]:
    """Units a user can open a fiche for: {code: "Name (code)"}, choropleth units then QPVs."""
    units = {str(c): f"{n} ({c})" for c, n in zip(data.areas["code"], data.areas["nom"], strict=True)}
    units.update({str(c): f"QPV {n} ({c})" for c, n in zip(data.qpv["code_qp"], data.qpv["lib_qp"], strict=True)})
    return units


def fiche(con: duckdb.DuckDBPyConnection, data: ViewData, code: str) -> Fiche | None:
    """The fiche of unit ``code`` (a unit of the choropleth or a QPV in view); None if unknown.

    Each figure is compared with the parent unit (a département with its région, a commune or an
    EPCI with its département, a QPV with its commune) and France, with the view's attribute
    filters (families, sectors...) applied to all three.
    """
    code = str(code)
    unit = unit_of(data, code)
    if unit is None:
        return None
    level = unit[0]
    radius = data.view.radius_m
    attributes = data.view.selection.without_territory()
    unit_selection = _restrict(attributes, level, code)
    unit_rows = indicators_by_level(con, level, selection=unit_selection, radius_m=radius)  # type: ignore[arg-type]
    unit_rows = unit_rows[unit_rows["code"].astype(str) == code]
    if unit_rows.empty:
        return None
    unit_row = unit_rows.iloc[0].to_dict()
    parent_row = None
    parent_level = PARENT_LEVEL.get(level)
    parent = parent_code(con, level, code, generation=generation_of(con, attributes)) if parent_level else None
    if parent_level and parent:
        rows = indicators_by_level(con, parent_level, selection=_restrict(attributes, parent_level, parent),  # type: ignore[arg-type]
                                   radius_m=radius)
        rows = rows[rows["code"].astype(str) == parent]
        parent_row = None if rows.empty else rows.iloc[0].to_dict()
    comparisons = tuple(compare(key, unit_row, parent_row) for key in FICHE_INDICATORS)
    familles = breakdown(con, level, "famille", selection=unit_selection)  # type: ignore[arg-type]
    secteurs = breakdown(con, level, "secteur", selection=unit_selection)  # type: ignore[arg-type]
    in_qpv_families = breakdown(con, level, "famille", selection=unit_selection, only_in_qpv=True)  # type: ignore[arg-type]
    familles, secteurs, in_qpv_families = (frame[frame["code"].astype(str) == code].reset_index(drop=True)
                                           for frame in (familles, secteurs, in_qpv_families))
    split = pd.DataFrame({
        "Famille": familles["libelle"].to_numpy(),
        "Dans les QPV": in_qpv_families["n"].to_numpy(),
        "Hors QPV": (familles["n"] - in_qpv_families["n"]).to_numpy(),
    })
    etab = read_points(con, "etablissements", unit_selection, columns=ESTABLISHMENT_COLUMNS)
    tl = read_points(con, "tiers_lieux", unit_selection)
    return Fiche(
        code=code,
        name=str(unit_row.get("nom") or code),
        level=level,
        level_label=LEVEL_LABELS[level],
        comparisons=comparisons,
        familles=familles,
        secteurs=secteurs,
        qpv_hors_qpv=split,
        etablissements=etab,
        tiers_lieux=tl,
        synthetic=bool(unit_row.get("inclut_donnees_simulees")) or _any_flag(etab, "is_synthetic")
        or _any_flag(tl, "is_synthetic"),
    )


def _restrict(attributes: Selection, level: str, code: str) -> Selection:
    """``attributes`` (a selection without territory) restricted to one unit of ``level``."""
    field = {"commune": "communes", "epci": "epci", "departement": "departements", "qpv": "qpv"}.get(level)
    if field is None:
        return dataclasses.replace(attributes, region=code)
    changes: dict[str, Any] = {field: (code,)}
    return dataclasses.replace(attributes, **changes)


# --- Tables shown and exported -----------------------------------------------------------------


def format_value(value: object, indicator: Indicator) -> str:
    """An indicator value as users read it: "36,0 %", "32,2", "1 234"; "–" when missing."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.isna(number):
        return "–"
    if indicator.unit_fr == "%":
        return format_percent(float(number))
    return format_number(float(number), 1 if indicator.unit_fr == "pour 10 000 hab." else 0)


def radius_table(result: pd.DataFrame, *, count_label: str, nearest_label: str) -> pd.DataFrame:
    """A :func:`~essmap.analysis.proximity.qpv_points_within` result as the radius tab shows it.

    Columns "QPV", "Code QPV", "Commune", ``count_label``, ``nearest_label``, "Distance (m)",
    "Localisation du plus proche" (how it was positioned, for tiers-lieux), and "Données simulées"
    (oui/non) when a simulated point is involved.
    """
    count_column = next(c for c in ("n_tiers_lieux", "n_etablissements") if c in result.columns)
    table = pd.DataFrame({
        "QPV": result["lib_qp"].astype("string").to_numpy(),
        "Code QPV": result["code_qp"].astype("string").to_numpy(),
        "Commune": result["lib_com"].astype("string").to_numpy(),
        count_label: result[count_column].astype("Int64").to_numpy(),
        nearest_label: result["nearest_nom"].astype("string").to_numpy(),
        "Distance (m)": pd.to_numeric(result["nearest_distance_m"], errors="coerce").round().astype("Int64").to_numpy(),
    })
    if "nearest_localisation" in result.columns:
        table["Localisation du plus proche"] = result["nearest_localisation"].astype("string").to_numpy()
    if _any_flag(result, "is_synthetic_involved"):
        table["Données simulées"] = np.where(result["is_synthetic_involved"].fillna(False).to_numpy(dtype=bool),
                                             "oui", "non")
    return with_number_formats(table, {count_label: "entier", "Distance (m)": "entier"})


def qpv_tiers_lieux_table(data: ViewData) -> pd.DataFrame:
    return radius_table(data.qpv, count_label="Tiers-lieux dans le rayon", nearest_label="Tiers-lieu le plus proche")


def qpv_establishments_table(result: pd.DataFrame) -> pd.DataFrame:
    """An :func:`~essmap.analysis.coverage.establishments_around_qpv` result as the radius tab shows it."""
    return radius_table(result, count_label="Établissements ESS dans le rayon",
                        nearest_label="Établissement ESS le plus proche")


def establishments_table(points: pd.DataFrame) -> pd.DataFrame:
    """ESS establishments with French column names and labels (lists and exports)."""
    employer = points["employeur"].astype("boolean")
    return pd.DataFrame({
        "Dénomination": points["denomination"].astype("string").to_numpy(),
        "Famille": points["famille"].astype("string").map(FAMILY_LABELS).to_numpy(),
        "Secteur": points["secteur"].astype("string").map(SECTOR_LABELS).to_numpy(),
        "Employeur": np.where(employer.fillna(False).to_numpy(dtype=bool), "oui", "non"),
        "Tranche d'effectifs": points["tranche_effectifs"].astype("string").map(SIZE_BAND_LABELS).to_numpy(),
        "Adresse": points["adresse"].astype("string").to_numpy(),
        "Code postal": points["code_postal"].astype("string").to_numpy(),
        "Commune": points["libelle_commune"].astype("string").to_numpy(),
        "SIRET": points["siret"].astype("string").to_numpy(),
        "Données simulées": _yes_no(points, "is_synthetic"),
    }, index=points.index).pipe(_without_unused_synthetic, points)


def tiers_lieux_table(points: pd.DataFrame) -> pd.DataFrame:
    """Tiers-lieux with French column names (lists and exports)."""
    precision = points["precision_localisation"] if "precision_localisation" in points \
        else pd.Series(pd.NA, index=points.index, dtype="object")
    return pd.DataFrame({
        "Nom": points["nom"].astype("string").to_numpy(),
        "Types": points["types"].astype("string").to_numpy(),
        "Labels ANCT": points["labels"].astype("string").to_numpy(),
        "Adresse": points["adresse"].astype("string").to_numpy(),
        "Commune": points["commune"].astype("string").to_numpy(),
        "Localisation": pd.array([location_label(p) for p in precision], dtype="string"),
        "Données simulées": _yes_no(points, "is_synthetic"),
    }, index=points.index).pipe(_without_unused_synthetic, points)


def indicator_number_format(indicator: Indicator) -> NumberFormat:
    """How an indicator's values read: shares as percentages, rates with one decimal, counts whole."""
    if indicator.unit_fr == "%":
        return "part"
    return "decimal" if indicator.unit_fr == "pour 10 000 hab." else "entier"


def indicators_table(data: ViewData) -> pd.DataFrame:
    """The choropleth units and every indicator, titled as in the dashboard ("Code", "Nom", then each
    indicator's label), raw values carrying their number formats (see :mod:`essmap.render.tables`); the
    flag of simulated data only when some unit has any."""
    areas = data.areas
    code_title = f"Code {_in_sentence(LEVEL_LABELS[data.view.level])}"  # "Code commune", "Code intercommunalité (EPCI)"
    columns: dict[str, Any] = {code_title: areas["code"].astype("string").to_numpy(),
                               "Nom": areas["nom"].astype("string").to_numpy()}
    formats: dict[str, NumberFormat] = {}
    for indicator in INDICATORS:
        if indicator.key not in areas:
            continue
        values = areas[indicator.key]
        if indicator.key == "inclut_donnees_simulees":  # only when some unit has simulated data
            flags = values.fillna(False).to_numpy(dtype=bool)
            if flags.any():
                columns[indicator.label_fr] = np.where(flags, "oui", "non")
            continue
        title = f"{indicator.label_fr} (m)" if indicator.unit_fr == "m" else indicator.label_fr
        columns[title] = pd.to_numeric(values, errors="coerce").to_numpy()
        formats[title] = indicator_number_format(indicator)
    return with_number_formats(pd.DataFrame(columns, index=areas.index), formats)


def indicators_table_title(level: str) -> str:
    """"Indicateurs par commune", "Indicateurs par intercommunalité (EPCI)": the table of
    :func:`indicators_table` in the exports (acronyms kept in capitals)."""
    return f"Indicateurs par {_in_sentence(LEVEL_LABELS[level])}"


def _in_sentence(label: str) -> str:
    """A level's label inside a sentence: "Intercommunalité (EPCI)" -> "intercommunalité (EPCI)"."""
    return label[:1].lower() + label[1:]


def export_tables(con: duckdb.DuckDBPyConnection, data: ViewData) -> dict[str, tuple[str, gpd.GeoDataFrame]]:
    """What is on screen, as exportable tables: {label: (file stem, frame with geometry)}.

    Exports carry exact QPV boundaries (the map draws simplified ones); the QPV x establishments
    table is computed here, on demand.
    """
    def geo(frame: pd.DataFrame, geometry: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(frame, geometry=geometry.geometry.to_numpy(), crs=4326)

    qpv = data.qpv.set_geometry(
        read_qpv(con, data.qpv["code_qp"].astype(str).tolist()).set_index("code_qp").geometry
        .reindex(data.qpv["code_qp"].astype(str)).to_numpy())
    around = establishments_around(con, data)
    establishments = data.etablissements if data.groupes_etablissements is None else read_points(
        con, "etablissements", data.view.selection, columns=ESTABLISHMENT_COLUMNS, geometry=False)
    return {
        indicators_table_title(data.view.level): ("indicateurs_" + data.view.level,
                                                   geo(indicators_table(data), data.areas)),
        "QPV et tiers-lieux dans le rayon": ("qpv_tiers_lieux", geo(qpv_tiers_lieux_table(data), qpv)),
        "QPV et établissements ESS dans le rayon": (
            "qpv_etablissements", geo(qpv_establishments_table(around), around)),
        "Établissements ESS": ("etablissements_ess", geo(establishments_table(establishments),
                                                        with_point_geometry(establishments))),
        "Tiers-lieux": ("tiers_lieux", geo(tiers_lieux_table(data.tiers_lieux), with_point_geometry(data.tiers_lieux))),
    }


def _without_unused_synthetic(table: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Drop the "Données simulées" column when no row is simulated: a real store says nothing of it."""
    return table if _any_flag(points, "is_synthetic") else table.drop(columns="Données simulées")


def _yes_no(frame: pd.DataFrame, column: str) -> np.ndarray:
    flags = frame[column].fillna(False).to_numpy(dtype=bool) if column in frame else np.zeros(len(frame), bool)
    return np.where(flags, "oui", "non")
