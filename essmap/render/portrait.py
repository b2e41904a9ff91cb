"""Portrait de territoire: a 4-page A4 PDF on a commune, an EPCI, a département or a QPV.

Page 1, key figures against the parent level and France with their sources; page 2, ESS
establishments by family and sector, in and outside QPVs; page 3, the map and the tiers-lieux
coverage of the territory's QPVs at the chosen radius; page 4, the largest ESS employers (ranked
by their size band: SIRENE gives bands, not headcounts). Every page carries a footer with the
sources and their millésimes, the export date and the page number, and says "données simulées"
when synthetic rows are used.

The figures come from :func:`essmap.present.viewdata.fiche` and the map from
:func:`essmap.present.viewdata.view_data`, so a portrait shows what the dashboard's "Fiche" tab shows.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from essmap import store
from essmap.analysis.indicators import LEVEL_LABELS, Comparison
from essmap.domain.errors import EssmapError, OutputFileError
from essmap.domain.formatting import format_date, format_number, format_percent
from essmap.domain.nomenclature import (
    FAMILY_LABELS,
    SECTOR_LABELS,
    SIZE_BAND_LABELS,
    SIZE_BAND_MIDPOINT,
)
from essmap.domain.selection import Selection
from essmap.domain.territories import (
    normalise_commune_code,
    normalise_departement,
)
from essmap.present.view import MapView
from essmap.present.viewdata import Fiche, ViewData, fiche, view_data
from essmap.render.maps import SYNTHETIC_NOTICE
from essmap.render.snapshot import (
    distance_label,
    draw_map,
    legend_handles,
    source_line,
    text_block,
    text_style,
    wrap,
)
from essmap.render.tables import checked_output_path, export_file_name
from essmap.store.queries import generation_of, parent_code

PORTRAIT_LEVELS: tuple[str, ...] = ("commune", "epci", "departement", "qpv")
A4_PORTRAIT_IN = (8.27, 11.69)
PAGES = 4
#: Largest employers listed on the last page.
TOP_EMPLOYERS = 25

_SELECTION_FIELD = {"commune": "communes", "epci": "epci", "departement": "departements", "qpv": "qpv"}
_UNKNOWN = {
    "commune": "Commune « {code} » inconnue dans la base{where}. Vérifiez le code INSEE (5 caractères, "
               "ex. 13055).",
    "epci": "EPCI « {code} » inconnu dans la base{where}. Vérifiez le numéro SIREN de l'EPCI (9 chiffres, "
            "ex. 200054807).",
    "departement": "Département « {code} » absent de la base. Départements chargés : {known}.",
    "qpv": "QPV « {code} » inconnu dans la base{where}. Vérifiez le code du quartier (ex. QN01306M).",
}


# --- Scope: which units ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Units to portray."""

    level: str
    codes: tuple[str, ...]


def resolve_scope(con: duckdb.DuckDBPyConnection, level: str, *, departement: str | None = None,
                  code: str | None = None) -> Scope:
    """Units of ``level`` in ``departement`` (batch), or the one unit ``code``.

    Raises :class:`EssmapError` (French) for an unknown level, département or code.
    """
    if level not in PORTRAIT_LEVELS:
        raise EssmapError(f"Niveau « {level} » non pris en charge pour un portrait. "
                          f"Niveaux possibles : {', '.join(PORTRAIT_LEVELS)}.")
    if not departement and not code:
        raise EssmapError("Indiquez --departement (un portrait par territoire du département) ou --code "
                          "(un seul territoire).")
    known_deps = store.departements_present(con, "communes")
    dep = normalise_departement(departement) if departement else None
    if dep is not None and dep not in known_deps:
        raise EssmapError(_UNKNOWN["departement"].format(code=departement, known=", ".join(known_deps) or "aucun"))
    where = f" (département {dep})" if dep else ""
    communes = store.read_layer(con, "communes", departements=[dep] if dep else None,
                                columns=["code_insee", "type_commune", "code_departement", "code_region", "siren_epci"])
    communes = communes[(communes["type_commune"] != "ARM").fillna(True).to_numpy(dtype=bool)]
    if level == "commune":
        available = communes["code_insee"].astype(str)
        wanted = normalise_commune_code(code) if code else None
    elif level == "epci":
        available = communes["siren_epci"].dropna().astype(str)
        wanted = str(code).strip() if code else None
    elif level == "departement":
        available = pd.Series(known_deps if dep is None else [dep], dtype=str)
        wanted = normalise_departement(code) if code else None
    else:
        qpv = store.read_layer(con, "qpv", departements=[dep] if dep else None, columns=["code_qp", "insee_dep"])
        available = qpv["code_qp"].astype(str)
        wanted = str(code).strip().upper() if code else None
    available = sorted(set(available))
    if wanted is not None and wanted not in available:
        raise EssmapError(_UNKNOWN[level].format(code=code, where=where, known=", ".join(known_deps)))
    codes = (wanted,) if wanted else tuple(available)
    if not codes:
        raise EssmapError(f"Aucun territoire de niveau « {level} » dans le département {dep}.")
    return Scope(level, codes)


# --- What a portrait shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class Portrait:
    """The computed content of one portrait (map view data, fiche figures)."""

    level: str
    code: str
    name: str
    map_data: ViewData
    fiche: Fiche
    radius_m: float

    @property
    def synthetic(self) -> bool:
        return self.fiche.synthetic or self.map_data.synthetic


def compute_portrait(con: duckdb.DuckDBPyConnection, level: str, code: str, *,
                     radius_m: float = 1000.0) -> Portrait:
    """Figures and map of one unit, from the store."""
    map_view = MapView(selection=_map_selection(con, level, code), level="commune", radius_m=radius_m)
    map_data = view_data(con, map_view)
    fiche_data = map_data
    if level in ("epci", "departement"):
        fiche_data = view_data(con, map_view.replace(level=level))
    unit = fiche(con, fiche_data, code)
    if unit is None:
        raise EssmapError(f"{LEVEL_LABELS[level]} « {code} » : aucune donnée dans la base.")
    if level == "qpv":
        qpv = map_data.qpv[map_data.qpv["code_qp"].astype(str) == code]
        map_data = dataclasses.replace(map_data, qpv=qpv)
    return Portrait(level, code, unit.name, map_data, unit, float(radius_m))


def _map_selection(con: duckdb.DuckDBPyConnection, level: str, code: str) -> Selection:
    if level != "qpv":
        fields: dict[str, Any] = {_SELECTION_FIELD[level]: (code,)}
        return Selection(**fields)
    commune = parent_code(con, "qpv", code, generation=generation_of(con, Selection()))
    if commune is None:
        raise EssmapError(f"QPV « {code} » : sa commune est introuvable dans la base.")
    return Selection(communes=(commune,))


def render_portrait(portrait: Portrait, *, sources: pd.DataFrame, day: date | None = None) -> bytes:
    """The portrait as a PDF (4 A4 pages)."""
    day = day or date.today()
    footer = _Footer(portrait, source_line(sources, synthetic=portrait.synthetic), day)
    buffer = io.BytesIO()
    with text_style(), PdfPages(buffer, metadata={"Title": f"Portrait de territoire – {portrait.name}",
                                                  "Creator": "essmap"}) as pdf:
        for number, page in enumerate((_key_figures_page, _breakdown_page, _map_page, _employers_page), start=1):
            fig = Figure(figsize=A4_PORTRAIT_IN, facecolor="white")
            page(fig, portrait, day)
            footer.draw(fig, number)
            pdf.savefig(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Footer:
    portrait: Portrait
    sources: str
    day: date

    def draw(self, fig: Figure, number: int) -> None:
        fig.add_artist(_rule(0.075))
        fig.text(0.06, 0.068, wrap(self.sources, 150), ha="left", va="top", fontsize=5.8, color="#444444")
        fig.text(0.06, 0.02, f"Portrait de territoire – {self.portrait.name} · essmap, export du "
                 f"{format_date(self.day)}", ha="left", va="bottom", fontsize=7, color="#444444")
        fig.text(0.94, 0.02, f"Page {number} / {PAGES}", ha="right", va="bottom", fontsize=7, color="#444444")


def _rule(y: float):
    from matplotlib.lines import Line2D

    return Line2D([0.06, 0.94], [y, y], color="#999999", linewidth=0.5)


def _header(fig: Figure, portrait: Portrait, subtitle: str) -> float:
    top = text_block(fig, 0.965, "Portrait de territoire", A4_PORTRAIT_IN[1], fontsize=9, x=0.06, color="#2c7fb8",
                     fontweight="bold")
    top = text_block(fig, top, wrap(f"{portrait.name} ({portrait.code})", 40), A4_PORTRAIT_IN[1], fontsize=18,
                     x=0.06, fontweight="bold")
    top = text_block(fig, top - 0.004, subtitle, A4_PORTRAIT_IN[1], fontsize=10.5, x=0.06, color="#333333")
    if portrait.synthetic:
        fig.text(0.06, top - 0.006, wrap(f"Ce portrait inclut des {SYNTHETIC_NOTICE} (démonstration) : "
                                         "les établissements ESS et une partie des tiers-lieux ne décrivent pas "
                                         "la réalité.", 110),
                 ha="left", va="top", fontsize=8.5,
                 bbox={"boxstyle": "square,pad=0.5", "facecolor": "#fff3cd", "edgecolor": "#b58900"})
        top -= 0.05
    fig.add_artist(_rule(top - 0.004))
    return top - 0.02


def _key_figures_page(fig: Figure, portrait: Portrait, day: date) -> None:
    unit = portrait.fiche
    top = _header(fig, portrait, f"{unit.level_label} · chiffres clés · rayon QPV – tiers-lieux : "
                                 f"{distance_label(portrait.radius_m)} · {format_date(day)}")
    parent_name = next((c.parent_name for c in unit.comparisons if c.parent_name), None)
    columns = ["Indicateur", wrap(unit.name, 15), wrap(parent_name or "Niveau parent", 15), "France"]
    rows, notes = [], []
    sources: list[str] = []
    for comparison in unit.comparisons:
        france = _value(comparison, comparison.france_value)
        if comparison.france_value is not None and comparison.france_source_fr:
            if comparison.france_source_fr not in sources:
                sources.append(comparison.france_source_fr)
            france += f" ({sources.index(comparison.france_source_fr) + 1})"
        rows.append([comparison.indicator.label_fr, _value(comparison, comparison.value),
                     _value(comparison, comparison.parent_value), france])
        if comparison.note_fr:
            notes.append(f"{comparison.indicator.label_fr} : {comparison.note_fr}")
    top = text_block(fig, top, "Chiffres clés", A4_PORTRAIT_IN[1], fontsize=12, x=0.06, fontweight="bold")
    compared = f"{parent_name} (niveau supérieur) et la France" if parent_name else "la France"
    top = text_block(fig, top, f"{unit.name} comparé à {compared}.", A4_PORTRAIT_IN[1], fontsize=8.5, x=0.06,
                     color="#333333") - 0.006
    top, _ = _table(fig, top - 0.005, columns, rows, (0.06, 0.62, 0.79, 0.94), widths=(52, None, None, None),
                    fontsize=8.5)
    counting = sorted({c.indicator.counting_unit for c in unit.comparisons})
    lines = [f"Unités de compte : {', '.join(counting)}."]
    lines += [f"({k}) France : {s}" for k, s in enumerate(sources, start=1)]
    lines += notes
    indicator_sources = dict.fromkeys(part.strip() for c in unit.comparisons
                                      for part in c.indicator.source_fr.split(" ; "))
    lines.append("Sources des indicateurs : " + " ; ".join(indicator_sources) + ".")
    if not any(c.parent_value is not None for c in unit.comparisons):
        lines.append("Niveau parent : non disponible pour ce territoire.")
    top -= 0.01
    for line in lines:
        top = text_block(fig, top, wrap(line, 120), A4_PORTRAIT_IN[1], fontsize=7.5, x=0.06, color="#333333")
        top -= 0.004


def _value(comparison: Comparison, value: float | None) -> str:
    if value is None:
        return "–"
    unit = comparison.indicator.unit_fr
    if unit == "%":
        return format_percent(value)
    if unit == "pour 10 000 hab.":
        return format_number(value, 1)
    return format_number(value)


def _table(fig: Figure, top: float, columns: Sequence[str], rows: Sequence[Sequence[str]],
           x: Sequence[float], *, widths: Sequence[int | None], fontsize: float, align: str | None = None,
           bottom: float = 0.1) -> tuple[float, int]:
    """A simple text table at anchors ``x``; returns the height below it and the number of rows drawn.

    ``widths`` gives each column's width in characters: its cells are wrapped on spaces to it (None:
    never wrapped), so no cell runs into the next column and none is cut. ``align`` gives each
    column's alignment on its anchor ("l" or "r"; default: first left, the others right). Rows that
    would go below ``bottom`` are not drawn.
    """
    align = align or "l" + "r" * (len(columns) - 1)
    height = A4_PORTRAIT_IN[1]
    line = fontsize * 1.35 / 72 / height
    for k, name in enumerate(columns):
        right = align[k] == "r"
        fig.text(x[k], top, name, ha="right" if right else "left", va="top",
                 fontsize=fontsize, fontweight="bold")
    top -= line * (max(str(c).count("\n") for c in columns) + 1.3)
    fig.add_artist(_rule_between(x[0], 0.94, top + line * 0.25))
    drawn = 0
    for row in rows:
        cells = [str(cell) if width is None else wrap(str(cell), width)
                 for cell, width in zip(row, widths, strict=True)]
        n_lines = max(cell.count("\n") + 1 for cell in cells)
        if top - line * n_lines < bottom:
            break
        for k, cell in enumerate(cells):
            fig.text(x[k], top, cell, ha="right" if align[k] == "r" else "left", va="top", fontsize=fontsize)
        top -= line * n_lines + line * 0.35
        drawn += 1
    return top, drawn


def _rule_between(x0: float, x1: float, y: float):
    from matplotlib.lines import Line2D

    return Line2D([x0, x1], [y, y], color="#bbbbbb", linewidth=0.4)


def _breakdown_page(fig: Figure, portrait: Portrait, day: date) -> None:
    unit = portrait.fiche
    top = _header(fig, portrait, f"{unit.level_label} · établissements de l'ESS par famille et par secteur")
    families = unit.familles.sort_values("n", ascending=True)
    sectors = unit.secteurs[unit.secteurs["n"] > 0].sort_values("n", ascending=True)
    total = int(unit.familles["n"].sum())
    unit_note = f"Unité de compte : établissement ({format_number(total)} établissements de l'ESS au total)."
    top = text_block(fig, top, unit_note, A4_PORTRAIT_IN[1], fontsize=8, x=0.06, color="#333333") - 0.03
    family_height = 0.025 * len(families) + 0.04
    ax = fig.add_axes((0.36, top - family_height - 0.01, 0.48, family_height))
    _bars(ax, families, "Par famille juridique")
    top = top - family_height - 0.06
    sector_height = max(min(0.022 * len(sectors) + 0.04, top - 0.32), 0.08)
    ax = fig.add_axes((0.36, top - sector_height, 0.48, sector_height))
    _bars(ax, sectors, "Par secteur d'activité (NAF rév. 2)")
    top = top - sector_height - 0.045
    split = unit.qpv_hors_qpv
    rows = [[str(r["Famille"]), format_number(int(r["Dans les QPV"])), format_number(int(r["Hors QPV"]))]
            for _, r in split.iterrows()]
    rows.append(["Total", format_number(int(split["Dans les QPV"].sum())), format_number(int(split["Hors QPV"].sum()))])
    top = text_block(fig, top, "Dans les QPV et hors QPV (établissements)", A4_PORTRAIT_IN[1], fontsize=10,
                     x=0.06, fontweight="bold")
    _table(fig, top - 0.004, ["Famille", "Dans les QPV", "Hors QPV"], rows, (0.06, 0.77, 0.94),
           widths=(60, None, None), fontsize=8)


def _bars(ax, frame: pd.DataFrame, title: str) -> None:
    labels = [wrap(str(v), 44) for v in frame["libelle"]]
    counts = frame["n"].to_numpy(dtype=float)
    shares = frame["part"].to_numpy(dtype=float, na_value=np.nan)
    ax.barh(np.arange(len(frame)), counts, color="#2c7fb8", height=0.65)
    ax.set_yticks(np.arange(len(frame)), labels, fontsize=7.5)
    ax.set_title(title, fontsize=10, loc="left", fontweight="bold", x=-0.62)
    ax.tick_params(axis="x", labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(lambda v, _pos: format_number(v))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    high = counts.max() if len(counts) and counts.max() > 0 else 1.0
    ax.set_xlim(0, high * 1.3)
    for y, (n, share) in enumerate(zip(counts, shares, strict=True)):
        ax.text(n + high * 0.02, y, f"{format_number(n)} ({format_percent(share)})", va="center", fontsize=7)


def _map_page(fig: Figure, portrait: Portrait, day: date) -> None:
    data = portrait.map_data
    top = _header(fig, portrait, f"Carte · {data.indicator.label_fr} · tiers-lieux et QPV")
    map_ax = fig.add_axes((0.06, top - 0.42, 0.58, 0.42))
    focus = data.qpv if portrait.level == "qpv" else None
    draw_map(map_ax, data, focus=focus, focus_margin_m=max(portrait.radius_m * 1.2, 500.0))
    legend_ax = fig.add_axes((0.66, top - 0.42, 0.30, 0.42))
    legend_ax.set_axis_off()
    legend_ax.legend(handles=legend_handles(data), loc="upper left", frameon=False, fontsize=6.5,
                     title=wrap(data.legend_title, 38), title_fontsize=7.5, alignment="left")
    top -= 0.46
    qpv = data.qpv
    radius = distance_label(portrait.radius_m)
    top = text_block(fig, top, f"Tiers-lieux à moins de {radius} des QPV", A4_PORTRAIT_IN[1], fontsize=11,
                     x=0.06, fontweight="bold")
    if qpv.empty:
        text_block(fig, top - 0.004, "Aucun quartier prioritaire (QPV) dans ce territoire.", A4_PORTRAIT_IN[1],
                   fontsize=9, x=0.06)
        return
    covered = int(qpv["covered"].fillna(False).astype(bool).sum())
    summary = (f"{covered} QPV sur {len(qpv)} ont au moins un tiers-lieu dans le quartier ou à moins de {radius} "
               f"({format_percent(covered / len(qpv))}).")
    if portrait.radius_m == 1000:
        summary += " Référence France : 36 % des QPV (ANCT / France Tiers-Lieux)."
    top = text_block(fig, top - 0.004, wrap(summary, 110), A4_PORTRAIT_IN[1], fontsize=8.5, x=0.06)
    ordered = qpv.sort_values(["covered", "nearest_distance_m"], ascending=[True, False])
    line = 7 * 1.35 / 72 / A4_PORTRAIT_IN[1]
    shown = ordered.head(max(int((top - 0.02 - 2.5 * line - 0.12) / (1.35 * line)), 1))
    rows = [[f"{r['lib_qp']} ({r['code_qp']})", format_number(int(r["n_tiers_lieux"])),
             str(r["nearest_nom"]) if pd.notna(r["nearest_nom"]) else "–",
             format_number(float(r["nearest_distance_m"])) if pd.notna(r["nearest_distance_m"]) else "–"]
            for _, r in shown.iterrows()]
    top, drawn = _table(fig, top - 0.008, ["QPV", "Tiers-lieux dans le rayon", "Tiers-lieu le plus proche",
                                           "Distance (m)"],
                        rows, (0.06, 0.56, 0.58, 0.94), widths=(55, None, 34, None), fontsize=7, align="lrlr")
    if len(qpv) > drawn:
        text_block(fig, top, f"Et {len(qpv) - drawn} autres QPV (liste complète : essmap query qpv-radius).",
                   A4_PORTRAIT_IN[1], fontsize=7, x=0.06, color="#444444")


def largest_employers(establishments: pd.DataFrame, n: int = TOP_EMPLOYERS) -> pd.DataFrame:
    """Employer establishments ranked by size band (largest first), then by name."""
    employers = establishments[establishments["employeur"].fillna(False).to_numpy(dtype=bool)]
    rank = employers["tranche_effectifs"].astype("string").map(SIZE_BAND_MIDPOINT).astype("Float64").fillna(0)
    return (employers.assign(_rank=rank.to_numpy())
            .sort_values(["_rank", "denomination"], ascending=[False, True], kind="stable")
            .head(n).drop(columns="_rank"))


def _employers_page(fig: Figure, portrait: Portrait, day: date) -> None:
    top = _header(fig, portrait, "Les plus grands employeurs de l'ESS (par tranche d'effectifs salariés)")
    employers = largest_employers(portrait.fiche.etablissements)
    note = ("Classement par tranche d'effectifs salariés déclarée dans SIRENE (les effectifs exacts ne sont pas "
            "publiés) ; unité de compte : établissement employeur.")
    if "is_synthetic" in employers.columns and employers["is_synthetic"].fillna(False).astype(bool).any():
        note += f" Établissements : {SYNTHETIC_NOTICE}."
    top = text_block(fig, top, wrap(note, 115), A4_PORTRAIT_IN[1], fontsize=8, x=0.06, color="#333333")
    if employers.empty:
        text_block(fig, top - 0.01, "Aucun établissement employeur de l'ESS dans ce territoire.", A4_PORTRAIT_IN[1],
                   fontsize=9, x=0.06)
        return
    rows = [[str(r["denomination"]),
             FAMILY_LABELS.get(str(r["famille"]), str(r["famille"])),
             SECTOR_LABELS.get(str(r["secteur"]), str(r["secteur"])),
             SIZE_BAND_LABELS.get(str(r["tranche_effectifs"]), "–"),
             wrap(str(r["libelle_commune"]), 13, hyphens=True) if pd.notna(r["libelle_commune"]) else "–"]
            for _, r in employers.iterrows()]
    _table(fig, top - 0.01, ["Établissement", "Famille", "Secteur", "Effectifs", "Commune"], rows,
           (0.06, 0.40, 0.53, 0.72, 0.84), widths=(42, 18, 28, 18, None), fontsize=6.5, align="lllll")


# --- Entry points --------------------------------------------------------------------------------


def portrait_pdf(con: duckdb.DuckDBPyConnection, level: str, code: str, *, radius_m: float = 1000.0,
                 day: date | None = None) -> bytes:
    """One portrait straight from the store, as PDF content (the dashboard button)."""
    scope = resolve_scope(con, level, code=code)
    portrait = compute_portrait(con, level, scope.codes[0], radius_m=radius_m)
    return render_portrait(portrait, sources=store.sources(con), day=day)



def portrait_file_name(level: str, name: str, code: str, day: date | None = None) -> str:
    """``portrait_commune_marseille-13055_2026-12-03.pdf``."""
    return export_file_name(f"portrait_{level}", f"{name} {code}", "pdf", day=day)


def write_portraits(con: duckdb.DuckDBPyConnection, scope: Scope, out_dir: Path, *,
                    sources: pd.DataFrame, radius_m: float = 1000.0, day: date | None = None,
                    progress: Callable[[str, float], None] | None = None, force: bool = False) -> list[Path]:
    """One PDF per unit of ``scope`` in ``out_dir`` (created); returns the files written.

    An existing PDF is replaced only with ``force`` (:func:`~essmap.render.tables.checked_output_path`).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFileError(f"Impossible de créer le dossier « {out_dir} » ({exc.strerror or exc}). "
                              "Solution : choisissez un dossier accessible en écriture avec --out.") from exc
    written: list[Path] = []
    for k, code in enumerate(scope.codes):
        portrait = compute_portrait(con, scope.level, code, radius_m=radius_m)
        if progress:
            progress(f"{k + 1}/{len(scope.codes)} {portrait.name} ({code})", k / len(scope.codes))
        path = checked_output_path(out_dir / portrait_file_name(portrait.level, portrait.name, portrait.code, day),
                                   force=force, protect=None)
        path.write_bytes(render_portrait(portrait, sources=sources, day=day))
        written.append(path)
    if progress:
        progress("Terminé", 1.0)
    return written
