"""Choropleth classes and colours, shared by the interactive map and the exported figures.

One classification object carries the class edges, the colours and the French legend labels,
so a PNG/PDF export shows exactly the classes of the map on screen. Palettes are ColorBrewer
sequential schemes, safe for colour-blind readers; "no data" has its own grey.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import jenkspy
import numpy as np
import pandas as pd

from essmap.domain.formatting import format_number

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Numba not installed": the pure-Python path is fast enough here
    import mapclassify

Method = Literal["quantiles", "natural_breaks", "equal_interval"]

METHOD_LABELS: dict[str, str] = {
    "quantiles": "Quantiles (effectifs égaux)",
    "natural_breaks": "Seuils naturels (Jenks)",
    "equal_interval": "Intervalles égaux",
}

#: ColorBrewer "YlGnBu" (sequential, colour-blind safe), light to dark, by number of classes.
PALETTE: dict[int, tuple[str, ...]] = {
    3: ("#edf8b1", "#7fcdbb", "#2c7fb8"),
    4: ("#ffffcc", "#a1dab4", "#41b6c4", "#225ea8"),
    5: ("#ffffcc", "#a1dab4", "#41b6c4", "#2c7fb8", "#253494"),
    6: ("#ffffcc", "#c7e9b4", "#7fcdbb", "#41b6c4", "#2c7fb8", "#253494"),
    7: ("#ffffcc", "#c7e9b4", "#7fcdbb", "#41b6c4", "#1d91c0", "#225ea8", "#0c2c84"),
}
NO_DATA_COLOUR = "#d9d9d9"
#: Lines hatching "no data" over :data:`NO_DATA_COLOUR` (``docs/ux.md``: a neutral hatched grey, told apart
#: from the palette's lightest class also in grey print).
NO_DATA_HATCH_COLOUR = "#8c8c8c"
NO_DATA_LABEL = "Pas de données"


#: Natural breaks run Fisher-Jenks (jenkspy, compiled) on at most this many values: exact for
#: every département's communes and every région's but the largest; 0.14 s at 5,000 values (the
#: algorithm takes time in the square of the number of values: 0.7 s at 10,000).
NATURAL_BREAKS_MAX_VALUES = 5000


def natural_breaks_scheme(values: np.ndarray, k: int) -> mapclassify.UserDefined:
    """Fisher-Jenks natural breaks, the same for the same values on every run and in every process.

    Up to :data:`NATURAL_BREAKS_MAX_VALUES` values the breaks are exact (jenkspy's Fisher-Jenks,
    the same breaks as mapclassify's, which without numba took 4 s for 1,000 values). Above, the
    values are sampled as :data:`NATURAL_BREAKS_MAX_VALUES` evenly spaced order statistics of the
    sorted values, from the minimum to the maximum: no randomness (mapclassify's
    ``FisherJenksSampled`` draws from NumPy's global generator, so a shared link and an export
    could show other classes than the screen), the same for any row order, spread over the whole
    distribution like a stratified sample. Class bounds are then values of the sample, so a class
    may end a little below the top of a cluster.
    """
    data = np.sort(np.asarray(values, dtype="float64"))
    if len(data) > NATURAL_BREAKS_MAX_VALUES:
        size = NATURAL_BREAKS_MAX_VALUES
        data = data[np.arange(size) * (len(data) - 1) // (size - 1)]  # integer ranks, first to last
    classes = min(k, len(np.unique(data)))
    bins = jenkspy.jenks_breaks(data, n_classes=classes)[1:] if classes >= 2 else [data[-1]]
    return mapclassify.UserDefined(values, bins=[float(b) for b in bins])


@dataclass(frozen=True)
class Classification:
    """Class edges (``len(colours) + 1`` values, increasing), colours and legend labels;
    ``requested`` is the number of classes asked for (there are fewer when values repeat)."""

    method: str
    edges: tuple[float, ...]
    colours: tuple[str, ...]
    labels: tuple[str, ...]
    unit: str = ""
    requested: int = 0

    @property
    def collapsed(self) -> bool:
        """Whether the values gave fewer classes than asked for (ties merge quantiles, few distinct values)."""
        return 0 < len(self.colours) < self.requested

    def collapse_notice(self, indicator_label: str) -> str | None:
        """The French notice to show when classes collapsed (:attr:`collapsed`), else None."""
        if not self.collapsed:
            return None
        shown = len(self.colours)
        classes = "une seule classe" if shown == 1 else f"{shown} classes"
        return (f"Carte en {classes} au lieu des {self.requested} demandées : les valeurs de « {indicator_label} » "
                f"sont trop peu variées (beaucoup de territoires à la même valeur) pour en former davantage "
                f"avec la méthode « {METHOD_LABELS[self.method]} ».")

    def class_of(self, values: pd.Series) -> pd.Series:
        """Class index of each value (0 = lowest), <NA> for missing values."""
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        inner = np.asarray(self.edges[1:-1], dtype="float64")
        index = np.searchsorted(inner, numbers.to_numpy(), side="left")
        out = pd.Series(index, index=values.index, dtype="Int64")
        return out.mask(numbers.isna())

    def colour_of(self, values: pd.Series) -> pd.Series:
        """Fill colour of each value; missing values get :data:`NO_DATA_COLOUR`."""
        classes = self.class_of(values)
        if not self.colours:
            return pd.Series(NO_DATA_COLOUR, index=values.index)
        palette = np.asarray(self.colours, dtype=object)
        filled = classes.fillna(0).astype("int64").to_numpy()
        return pd.Series(np.where(classes.isna(), NO_DATA_COLOUR, palette[filled]), index=values.index)


def classify(values: pd.Series, *, method: Method = "quantiles", k: int = 5, decimals: int = 1,
             unit: str = "") -> Classification:
    """Classify the non-missing values into at most ``k`` classes (fewer when values repeat)."""
    if method not in METHOD_LABELS:
        raise ValueError(f"méthode de classification inconnue « {method} » ; possibles : {', '.join(METHOD_LABELS)}")
    if k not in PALETTE:
        raise ValueError(f"nombre de classes {k} non pris en charge (de {min(PALETTE)} à {max(PALETTE)})")
    data = pd.to_numeric(values, errors="coerce").dropna().astype("float64").to_numpy()
    if len(data) == 0:
        return Classification(method, (), (), (), unit, k)
    low, high = float(data.min()), float(data.max())
    distinct = len(np.unique(data))
    if distinct <= 1:
        edges = [low, high]
    else:
        classes = min(k, distinct)
        # mapclassify warns when ties merge classes (many communes at 0): fewer classes is the
        # documented result here, not a problem to report
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if method == "quantiles":
                scheme = mapclassify.Quantiles(data, k=classes)
            elif method == "natural_breaks":
                scheme = natural_breaks_scheme(data, classes)
            else:
                scheme = mapclassify.EqualInterval(data, k=classes)
        edges = [low, *sorted(set(float(b) for b in scheme.bins))]
        edges = [e for i, e in enumerate(edges) if i == 0 or e > edges[i - 1]]
        if edges[-1] < high:
            edges.append(high)
    n = max(len(edges) - 1, 1)
    colours = PALETTE[max(n, 3)][-n:] if n < 3 else PALETTE[n]
    labels = tuple(
        format_number(lo, decimals) if lo == hi else f"{format_number(lo, decimals)} – {format_number(hi, decimals)}"
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    )
    return Classification(method, tuple(edges), tuple(colours), labels, unit, k)
