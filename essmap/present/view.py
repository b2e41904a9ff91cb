"""What the user is looking at: selection, indicator, level, radius, classes, selected unit.

One frozen object shared by the dashboard (URL query string, caching keys) and the exports (a
snapshot or portrait reproduces the view on screen), so both show the same thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from essmap.analysis.indicators import INDICATORS_BY_KEY, LEVELS
from essmap.domain.formatting import format_number
from essmap.domain.selection import Selection
from essmap.present.basemaps import TILES
from essmap.present.classify import METHOD_LABELS, PALETTE

DEFAULT_INDICATOR = "etablissements_employeurs_pour_10k_hab"

#: Query-string keys of the view itself (the selection adds its own keys).
_VIEW_KEYS = ("indicateur", "niveau", "rayon", "classes", "methode", "selection", "fond", "onglet")

#: The dashboard's tabs: URL value ("onglet=fiche") -> label shown. The first is the default.
TABS: dict[str, str] = {"carte": "Carte", "rayon": "Rayon autour des QPV", "fiche": "Fiche", "exports": "Exports"}


@dataclass(frozen=True)
class MapView:
    """The state of the map, hashable (a cache key) and serialisable to a URL query string.

    Attributes
    ----------
    selection : Selection
        Territory and attribute filters.
    indicator : str
        Column of :func:`essmap.analysis.indicators_by_level` drawn as a choropleth.
    level : str
        Choropleth level: "commune", "epci", "departement", "region" (or "qpv"). Left empty, the level
        a view of the selection's scope opens at (:func:`default_level`: a région by EPCI).
    radius_m : float
        Radius of the QPV x tiers-lieux query, 100 m to 5 km in the dashboard.
    method, k : str, int
        Classification (see :mod:`essmap.present.classify`).
    selected : str, optional
        Code of the commune or QPV whose fiche is open.
    tiles : str, optional
        Name of a tile layer of :data:`essmap.present.basemaps.TILES`; None draws on a plain background.
    tab : str
        The dashboard tab open (a key of :data:`TABS`), so a shared link reopens it.
    """

    selection: Selection = field(default_factory=Selection)
    indicator: str = DEFAULT_INDICATOR
    level: str = ""
    radius_m: float = 1000.0
    method: str = "quantiles"
    k: int = 5
    selected: str | None = None
    tiles: str | None = None
    tab: str = "carte"

    def __post_init__(self) -> None:
        if not self.level:
            object.__setattr__(self, "level", default_level(self.selection))
        if self.indicator not in INDICATORS_BY_KEY:
            raise ValueError(f"indicateur « {self.indicator} » inconnu")
        if self.level not in LEVELS:
            raise ValueError(f"niveau « {self.level} » inconnu ; niveaux possibles : {', '.join(LEVELS)}")
        if self.method not in METHOD_LABELS:
            raise ValueError(f"méthode « {self.method} » inconnue")
        if self.k not in PALETTE:
            raise ValueError(f"nombre de classes {self.k} non pris en charge")
        if not 0 <= float(self.radius_m) <= 50_000:
            raise ValueError(f"rayon {self.radius_m} m hors des bornes (0 à 50 000 m)")
        if self.tiles is not None and self.tiles not in TILES:
            raise ValueError(f"fond de carte « {self.tiles} » inconnu")
        if self.tab not in TABS:
            raise ValueError(f"onglet « {self.tab} » inconnu ; onglets possibles : {', '.join(TABS)}")
        object.__setattr__(self, "radius_m", float(self.radius_m))

    def replace(self, **changes: Any) -> MapView:
        return dataclasses.replace(self, **changes)

    def to_query_params(self) -> dict[str, str]:
        """Selection and view as query parameters; defaults are omitted (short links)."""
        params = self.selection.to_query_params()
        default = MapView()
        values = {
            "indicateur": (self.indicator, default.indicator),
            "niveau": (self.level, default_level(self.selection)),
            "rayon": (f"{self.radius_m:g}", f"{default.radius_m:g}"),
            "classes": (str(self.k), str(default.k)),
            "methode": (self.method, default.method),
            "selection": (self.selected or "", ""),
            "fond": (self.tiles or "", ""),
            "onglet": (self.tab, default.tab),
        }
        params.update({key: value for key, (value, default_value) in values.items() if value != default_value})
        if scope_of(self.selection) == "france":
            params["france"] = "1"  # a link without territory opens France, not the default département
        return params

    @classmethod
    def from_query_params(cls, params: Mapping[str, str]) -> MapView:
        """Inverse of :meth:`to_query_params`; invalid values raise ``ValueError`` (French)."""
        get = {k: str(v) for k, v in params.items()}
        kwargs: dict[str, object] = {"selection": Selection.from_query_params(get)}
        if get.get("indicateur"):
            kwargs["indicator"] = get["indicateur"]
        if get.get("niveau"):
            kwargs["level"] = get["niveau"]
        if get.get("rayon"):
            try:
                kwargs["radius_m"] = float(get["rayon"].replace(",", "."))
            except ValueError as exc:
                raise ValueError(f"rayon « {get['rayon']} » n'est pas un nombre") from exc
        if get.get("classes"):
            if not get["classes"].isdigit():
                raise ValueError(f"classes « {get['classes']} » n'est pas un entier")
            kwargs["k"] = int(get["classes"])
        if get.get("methode"):
            kwargs["method"] = get["methode"]
        kwargs["selected"] = get.get("selection") or None
        kwargs["tiles"] = get.get("fond") or None
        if get.get("onglet"):
            kwargs["tab"] = get["onglet"]
        return cls(**kwargs)  # type: ignore[arg-type]


def scope_of(selection: Selection) -> str:
    """How wide a view is: "france" (no territory), "region" (a région alone) or "local"
    (a département or smaller)."""
    if selection.departements or selection.epci or selection.communes or selection.qpv:
        return "local"
    return "region" if selection.region else "france"


#: Choropleth levels a view of each scope offers, the one it opens at first (France by commune would
#: draw 35,000 polygons). A région opens by EPCI: that is how a CRESS or a regional council reads its
#: région, and its communes are too many for a first map (Auvergne-Rhône-Alpes: 4,020 communes, 1 MB
#: of geometry to send and draw, against about 160 EPCI); the commune level stays one choice away.
LEVELS_BY_SCOPE: dict[str, tuple[str, ...]] = {
    "local": ("commune", "epci", "departement"),
    "region": ("epci", "commune", "departement"),
    "france": ("departement", "epci", "region"),
}


def default_level(selection: Selection) -> str:
    """The choropleth level a view of ``selection`` opens at: commune for a département or smaller,
    EPCI for a région, département for France (see :data:`LEVELS_BY_SCOPE`)."""
    return LEVELS_BY_SCOPE[scope_of(selection)][0]

#: Unit the establishments are counted by on the map of a wide view (points would be hundreds of
#: thousands); None: every establishment is a point. One proportional circle per EPCI reads on a
#: région (Auvergne-Rhône-Alpes: about 160, where 4,000 communes' circles covered the choropleth),
#: one per département on France.
POINT_GROUPS_BY_SCOPE: dict[str, str | None] = {"local": None, "region": "epci", "france": "departement"}


#: Radius the dashboard offers: from, to, step (metres). Stored QPV x tiers-lieux pairs reach the top.
DASHBOARD_RADIUS_M: tuple[int, int, int] = (100, 5_000, 100)


def view_from_link(params: Mapping[str, str], *, departements: Sequence[str]) -> tuple[MapView, list[str]]:
    """The view a dashboard link opens, made valid for the dashboard, and the French notices that
    say what was changed ("Lien invalide : …").

    A link from elsewhere can hold anything: an unknown or malformed value gives the default view;
    a radius outside what the dashboard offers is brought within it; the dashboard shows one
    département of ``departements`` (those of the store) at a time.
    """
    notices: list[str] = []
    tab = str(params.get("onglet") or "")
    if tab and tab not in TABS:  # the rest of the link stays valid: only the tab is dropped
        notices.append(f"Lien invalide : onglet « {tab} » inconnu (onglets possibles : {', '.join(TABS)}) ; "
                       "la carte est affichée.")
        params = {k: v for k, v in params.items() if k != "onglet"}
    try:
        view = MapView.from_query_params(params)
    except ValueError as exc:
        return MapView(), [*notices, f"Lien invalide : {exc}. La vue par défaut est affichée."]
    low, high, step = DASHBOARD_RADIUS_M
    radius = min(max(round(view.radius_m / step) * step, low), high)
    if radius != view.radius_m:
        asked_m = format_number(view.radius_m, 0 if float(view.radius_m).is_integer() else 1)
        notices.append(f"Lien invalide : rayon de {asked_m} m hors de ce que propose le "
                       f"tableau de bord ({format_number(low)} à {format_number(high)} m, par pas de "
                       f"{format_number(step)} m) ; le rayon de {format_number(radius)} m est utilisé.")
        view = view.replace(radius_m=float(radius))
    asked = view.selection.departements
    known = [d for d in asked if d in departements]
    if len(known) < len(asked):
        unknown = [d for d in asked if d not in departements]
        notices.append(f"Lien invalide : département(s) {', '.join(unknown)} absent(s) de la base "
                       f"(départements chargés : {', '.join(sorted(departements))}).")
    if len(known) > 1:
        notices.append(f"Le tableau de bord affiche un département à la fois : le {known[0]} est affiché.")
    if tuple(known[:1]) != asked:
        view = view.replace(selection=dataclasses.replace(view.selection, departements=tuple(known[:1])))
    return view, notices
