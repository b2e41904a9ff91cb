"""What the dashboard and the exports show for one :class:`~essmap.present.view.MapView`.

:func:`view_data` turns a view and the layers of its territory into a :class:`ViewData`: the
choropleth units with their values and classes, the QPVs with the radius results, the filtered
establishments and tiers-lieux, and the labels. The interactive map and the exported figures
both draw from it, so they show the same classes and colours.

Geometries of the choropleth units are simplified for display only (the map sent to the
browser stays small): the communes are simplified *as a coverage*, so neighbours keep one
shared border, and EPCI, départements and régions are unions of those simplified communes.
Every analysis uses the exact geometries of the layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from essmap.analysis.indicators import (
    INDICATORS_BY_KEY,
    LEVEL_LABELS,
    PARENT_LEVEL,
    Comparison,
    Indicator,
    breakdown,
    compare,
    indicators_by_level,
    parent_codes,
)
from essmap.analysis.proximity import qpv_establishments, qpv_tiers_lieux
from essmap.domain.formatting import format_number, format_percent
from essmap.domain.nomenclature import FAMILY_LABELS, SECTOR_LABELS, SIZE_BAND_LABELS
from essmap.domain.selection import Selection, territory_names
from essmap.geo import points_in_polygons
from essmap.present.classify import Classification, classify
from essmap.present.view import MapView

#: Simplification tolerance of displayed boundaries, in degrees (about 30 m in mainland France):
#: invisible at département zoom, and it keeps a département map well under 3 MB.
DISPLAY_TOLERANCE_DEG = 0.0003

#: Column holding each unit's code, by choropleth level, in the communes layer.
_UNIT_COLUMN: dict[str, str] = {
    "commune": "code_insee",
    "epci": "siren_epci",
    "departement": "code_departement",
    "region": "code_region",
}

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
        :func:`~essmap.analysis.indicators_by_level`, plus ``valeur`` (the indicator in its
        display unit: shares in percent) and ``classe_couleur``; geometry simplified for display.
    classification : Classification
        Classes of ``valeur`` (edges, colours, French labels).
    qpv : GeoDataFrame
        QPVs in view with the radius results of
        :func:`~essmap.analysis.proximity.qpv_tiers_lieux` (``n_tiers_lieux``, ``nearest_nom``,
        ``nearest_distance_m``, ``covered``...), exact geometry.
    etablissements, tiers_lieux : GeoDataFrame
        Filtered establishments (with ``code_qp``: the QPV holding each one, <NA> outside) and
        tiers-lieux in view.
    synthetic : bool
        Whether any simulated row is in view.
    territory_label, filters_label : str
        "Bouches-du-Rhône (13)"; :meth:`Selection.describe` of the view.
    qpv_etablissements : GeoDataFrame
        Per QPV in view: establishments of the chosen families/sectors within the radius
        (:func:`~essmap.analysis.proximity.qpv_establishments`).
    """

    view: MapView
    indicator: Indicator
    areas: gpd.GeoDataFrame
    classification: Classification
    qpv: gpd.GeoDataFrame
    etablissements: gpd.GeoDataFrame
    tiers_lieux: gpd.GeoDataFrame
    synthetic: bool
    territory_label: str
    filters_label: str
    qpv_etablissements: gpd.GeoDataFrame

    @property
    def legend_title(self) -> str:
        """"<label> (<unit>)", the title of the map legend."""
        return f"{self.indicator.label_fr} ({self.indicator.unit_fr})"

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


def computation_key(view: MapView) -> MapView:
    """The part of a view that the heavy computation depends on (the rest is presentation)."""
    default = MapView()
    return view.replace(method=default.method, k=default.k, selected=None, tiles=None)


def view_data(view: MapView, layers: dict[str, gpd.GeoDataFrame]) -> ViewData:
    """Compute what ``view`` shows from ``layers`` (:func:`essmap.store.read_analysis_layers`).

    ``layers`` must cover the selected territory: communes, QPVs and establishments of its
    départements, tiers-lieux of the départements and their neighbours (a QPV can be covered
    from across a border), and the ``epci``/``departements``/``regions`` tables for names.
    """
    selection = view.selection
    communes, qpv_all = layers["communes"], layers["qpv"]
    establishments = layers["etablissements"]
    in_qpv, tl_in_qpv = _qpv_of_points(layers)
    qpv = selection.filter_qpv(qpv_all, communes=communes)
    reachable = selection.without_territory().filter_tiers_lieux(layers["tiers_lieux"])
    coverage = qpv_tiers_lieux(qpv, reachable, radius_m=view.radius_m)

    indicator = INDICATORS_BY_KEY[view.indicator]
    table = indicators_by_level(
        view.level, communes=communes, establishments=establishments, tiers_lieux=layers["tiers_lieux"],
        qpv=qpv_all, radius_m=view.radius_m, selection=selection, units=_units_layer(view.level, layers),
        in_qpv=in_qpv, qpv_coverage=coverage,
    )
    values = pd.to_numeric(table[view.indicator], errors="coerce").astype("Float64")
    table["valeur"] = values * 100 if indicator.unit_fr == "%" else values
    geometry = _display_geometry(view.level, selection.filter_communes(communes), qpv)
    areas = gpd.GeoDataFrame(
        table, geometry=geometry.reindex(table["code"].astype(str)).to_numpy(), crs=4326
    )
    classification = _classify(areas["valeur"], indicator, view)
    areas["classe_couleur"] = classification.colour_of(areas["valeur"])

    etab = selection.filter_establishments(establishments, communes=communes, in_qpv=in_qpv)
    etab = etab.assign(code_qp=in_qpv.reindex(etab.index).astype("string"))
    tiers_lieux = selection.filter_tiers_lieux(layers["tiers_lieux"], communes=communes, in_qpv=tl_in_qpv)
    near_etab = qpv_establishments(
        qpv, selection.without_territory().filter_establishments(establishments), radius_m=view.radius_m
    )
    names = _names(layers)
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
        ),
        territory_label=territory_label(selection, names),
        filters_label=selection.describe(names),
        qpv_etablissements=near_etab,
    )


def territory_label(selection: Selection, names: dict[str, dict[str, str]]) -> str:
    """The most precise territory of a selection, "Marseille (13055)"; "France" when none."""
    for level, codes in (("commune", selection.communes), ("epci", selection.epci),
                         ("departement", selection.departements),
                         ("region", (selection.region,) if selection.region else ())):
        if codes:
            return ", ".join(f"{names.get(level, {}).get(c, c)} ({c})" for c in codes)
    return "France"


def simplify_coverage(geometries: gpd.GeoSeries, tolerance: float = DISPLAY_TOLERANCE_DEG) -> gpd.GeoSeries:
    """Simplify polygons that tile a territory, keeping one shared border between neighbours."""
    simplified = shapely.coverage_simplify(geometries.to_numpy(), tolerance)
    return gpd.GeoSeries(simplified, index=geometries.index, crs=geometries.crs)


def _display_geometry(level: str, communes: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Simplified geometry of each unit of ``level``, indexed by unit code."""
    if level == "qpv":
        return gpd.GeoSeries(
            shapely.simplify(qpv.geometry.to_numpy(), DISPLAY_TOLERANCE_DEG / 3, preserve_topology=True),
            index=qpv["code_qp"].astype(str).to_numpy(), crs=4326,
        )
    com = communes[(communes["type_commune"] == "COM").fillna(False).to_numpy(dtype=bool)]
    com = com[com.geometry.notna().to_numpy()]
    simplified = simplify_coverage(com.geometry)
    codes = com[_UNIT_COLUMN[level]].astype(str).to_numpy()
    if level == "commune":
        return gpd.GeoSeries(simplified.to_numpy(), index=codes, crs=4326)
    groups = pd.Series(np.arange(len(codes))).groupby(codes)
    return gpd.GeoSeries(
        {code: shapely.union_all(simplified.to_numpy()[pos.to_numpy()]) for code, pos in groups},
        crs=4326,
    )


def _classify(values: pd.Series, indicator: Indicator, view: MapView) -> Classification:
    decimals = 1 if indicator.unit_fr in ("%", "pour 10 000 hab.") else 0
    return classify(values, method=view.method, k=view.k, decimals=decimals, unit=indicator.unit_fr)  # type: ignore[arg-type]


def _units_layer(level: str, layers: dict[str, gpd.GeoDataFrame]) -> pd.DataFrame | None:
    table = {"epci": "epci", "departement": "departements", "region": "regions"}.get(level)
    return None if table is None else layers.get(table)


def _names(layers: dict[str, gpd.GeoDataFrame]) -> dict[str, dict[str, str]]:
    return territory_names(
        communes=layers.get("communes"), departements=layers.get("departements"),
        regions=layers.get("regions"), epci=layers.get("epci"), qpv=layers.get("qpv"),
    )


def _qpv_of_points(layers: dict[str, gpd.GeoDataFrame]) -> tuple[pd.Series, pd.Series]:
    """Code of the QPV holding each establishment and each tiers-lieu (<NA> outside any)."""
    return (points_in_polygons(layers["etablissements"], layers["qpv"], "code_qp"),
            points_in_polygons(layers["tiers_lieux"], layers["qpv"], "code_qp"))


def _indicator_inputs(layers: dict[str, gpd.GeoDataFrame], radius_m: float, in_qpv: pd.Series) -> dict:
    """The layers as keyword arguments of :func:`indicators_by_level`."""
    return dict(communes=layers["communes"], establishments=layers["etablissements"],
                tiers_lieux=layers["tiers_lieux"], qpv=layers["qpv"], radius_m=radius_m, in_qpv=in_qpv)


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


def fiche(data: ViewData, layers: dict[str, gpd.GeoDataFrame], code: str, *,
          region_layers: dict[str, gpd.GeoDataFrame] | None = None) -> Fiche | None:
    """The fiche of unit ``code`` (a unit of the choropleth or a QPV in view); None if unknown.

    Each figure is compared with the parent unit and France. The parent of a département is its
    région, which the layers of one département do not cover: ``region_layers`` (the analysis
    layers of the whole région) give that comparison; without them a département is compared with
    France only.
    """
    code = str(code)
    unit = unit_of(data, code)
    if unit is None:
        return None
    level = unit[0]
    communes, establishments, qpv = layers["communes"], layers["etablissements"], layers["qpv"]
    attributes = data.view.selection.without_territory()
    unit_selection = _restrict(attributes, level, code)
    in_qpv, tl_in_qpv = _qpv_of_points(layers)
    common = _indicator_inputs(layers, data.view.radius_m, in_qpv)
    unit_rows = indicators_by_level(level, selection=unit_selection, units=_units_layer(level, layers), **common)
    unit_rows = unit_rows[unit_rows["code"].astype(str) == code]
    if unit_rows.empty:
        return None
    unit_row = unit_rows.iloc[0].to_dict()
    parent_row = _parent_row(level, code, attributes, layers, common, region_layers)
    comparisons = tuple(compare(key, unit_row, parent_row) for key in FICHE_INDICATORS)
    by = dict(communes=communes, establishments=establishments, qpv=qpv, selection=unit_selection,
              units=_units_layer(level, layers), in_qpv=in_qpv)
    familles = breakdown(level, "famille", **by)
    secteurs = breakdown(level, "secteur", **by)
    in_qpv_families = breakdown(level, "famille", only_in_qpv=True, **by)
    split = pd.DataFrame({
        "Famille": familles["libelle"].to_numpy(),
        "Dans les QPV": in_qpv_families["n"].to_numpy(),
        "Hors QPV": (familles["n"] - in_qpv_families["n"]).to_numpy(),
    })
    etab = unit_selection.filter_establishments(establishments, communes=communes, in_qpv=in_qpv)
    tl = unit_selection.filter_tiers_lieux(layers["tiers_lieux"], communes=communes, in_qpv=tl_in_qpv)
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
    return dataclasses.replace(attributes, **{field: (code,)})


def _parent_row(level: str, code: str, attributes: Selection, layers: dict[str, gpd.GeoDataFrame],
                common: dict, region_layers: dict[str, gpd.GeoDataFrame] | None) -> dict | None:
    """Indicators of the parent unit, from layers that cover it entirely (None without them)."""
    parent_level = PARENT_LEVEL.get(level)
    if parent_level is None:
        return None
    parent = parent_codes(level, [code], communes=layers["communes"], qpv=layers["qpv"]).iloc[0]
    if pd.isna(parent):
        return None
    if parent_level == "region":
        if region_layers is None:
            return None
        layers = region_layers
        common = _indicator_inputs(layers, common["radius_m"], _qpv_of_points(layers)[0])
    rows = indicators_by_level(parent_level, selection=_restrict(attributes, parent_level, str(parent)),
                               units=_units_layer(parent_level, layers), **common)
    rows = rows[rows["code"].astype(str) == str(parent)]
    return None if rows.empty else rows.iloc[0].to_dict()


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
    and "Données simulées" (oui/non) when a simulated point is involved.
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
    if _any_flag(result, "is_synthetic_involved"):
        table["Données simulées"] = np.where(result["is_synthetic_involved"].fillna(False).to_numpy(dtype=bool),
                                             "oui", "non")
    return table


def qpv_tiers_lieux_table(data: ViewData) -> pd.DataFrame:
    return radius_table(data.qpv, count_label="Tiers-lieux dans le rayon", nearest_label="Tiers-lieu le plus proche")


def qpv_establishments_table(data: ViewData) -> pd.DataFrame:
    return radius_table(data.qpv_etablissements, count_label="Établissements ESS dans le rayon",
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
    }, index=points.index)


def tiers_lieux_table(points: pd.DataFrame) -> pd.DataFrame:
    """Tiers-lieux with French column names (lists and exports)."""
    return pd.DataFrame({
        "Nom": points["nom"].astype("string").to_numpy(),
        "Types": points["types"].astype("string").to_numpy(),
        "Labels ANCT": points["labels"].astype("string").to_numpy(),
        "Adresse": points["adresse"].astype("string").to_numpy(),
        "Commune": points["commune"].astype("string").to_numpy(),
        "Données simulées": _yes_no(points, "is_synthetic"),
    }, index=points.index)


def indicators_table(data: ViewData) -> pd.DataFrame:
    """The choropleth units and every indicator (code columns as in the analysis tables)."""
    return pd.DataFrame(data.areas.drop(columns=[data.areas.geometry.name, "classe_couleur"]))


def export_tables(data: ViewData) -> dict[str, tuple[str, gpd.GeoDataFrame]]:
    """What is on screen, as exportable tables: {label: (file stem, frame with geometry)}."""
    def geo(frame: pd.DataFrame, geometry: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(frame, geometry=geometry.geometry.to_numpy(), crs=4326)

    level = LEVEL_LABELS[data.view.level].lower()
    return {
        f"Indicateurs par {level}": ("indicateurs_" + data.view.level, geo(indicators_table(data), data.areas)),
        "QPV et tiers-lieux dans le rayon": ("qpv_tiers_lieux", geo(qpv_tiers_lieux_table(data), data.qpv)),
        "QPV et établissements ESS dans le rayon": (
            "qpv_etablissements", geo(qpv_establishments_table(data), data.qpv_etablissements)),
        "Établissements ESS": ("etablissements_ess", geo(establishments_table(data.etablissements),
                                                        data.etablissements)),
        "Tiers-lieux": ("tiers_lieux", geo(tiers_lieux_table(data.tiers_lieux), data.tiers_lieux)),
    }


def _yes_no(frame: pd.DataFrame, column: str) -> np.ndarray:
    flags = frame[column].fillna(False).to_numpy(dtype=bool) if column in frame else np.zeros(len(frame), bool)
    return np.where(flags, "oui", "non")


def filter_choices(tiers_lieux: pd.DataFrame, column: str) -> list[str]:
    """Distinct values of a "; "-separated tiers-lieux column (types, labels), sorted."""
    values = tiers_lieux[column].dropna().astype(str).str.split(";").explode().str.strip()
    return sorted(set(values[values != ""]), key=str.casefold)
