"""Reader of QPV boundaries (quartiers prioritaires de la politique de la ville).

Reads the files as users hold them: the ANCT national file of the 2024 generation (GeoJSON,
GeoPackage or shapefile; WGS84 or a projected per-territory version), files of the 2015
generation (``CODE_QP``/``code_qp``, ``NOM_QP``/``nom_qp``..., uppercase or lowercase), and the
renamed-field extract shipped for the demo (``q``, ``n``, ``d``, ``com``; top-level
``"millesime"``). The generation shown to users is always recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from essmap.domain import schema
from essmap.domain.errors import InputFileError
from essmap.domain.territories import (
    epsg_of_territory_codes,
    normalise_commune_code,
    normalise_departement,
    territory_codes_of_departements,
)
from essmap.io.readers.common import (
    WGS84,
    Quarantine,
    SourceMeta,
    SourceRead,
    canonical_frame,
    clean_text,
    sha256_of,
)
from essmap.io.readers.vector import (
    as_text,
    check_polygons,
    columns_evidence,
    find_column,
    kind_of_columns,
    map_text,
    pick_layer,
    read_vector,
    repaired_warning,
    require_geographic_file,
    territory_mismatch,
    vector_layers,
    wrong_kind_error,
)
from essmap.io.text import printable

SOURCE = "qpv"
#: QPV generations essmap knows, by code prefix (QN01301M = 2024, QP066007 = 2015).
GENERATIONS: dict[str, str] = {"QN": "2024", "QP": "2015"}

# Candidate property names, best first (matched case-insensitively).
_CODE = ("code_qp", "q", "code_quartier")
_NAME = ("lib_qp", "nom_qp", "n", "nom_quartier")
_DEP = ("insee_dep", "code_departement", "code_dep", "d")
_COMMUNES = ("insee_com", "code_commune", "code_insee", "com", "codes_communes")
_COMMUNE_NAMES = ("lib_com", "nom_commune", "commune_qp", "commune", "nom_com")
_EPCI = ("siren_epci", "epci")

_MILLESIME_FULL_PARSE_MAX = 60 * 1024 * 1024


def read_qpv(
    path: Path,
    *,
    generation: str | None = None,
    departements: Sequence[str] | None = None,
) -> SourceRead:
    """Read a QPV file into ``schema.QPV`` columns plus a WGS84 MultiPolygon geometry.

    Parameters
    ----------
    path : Path
        GeoJSON, GeoPackage or shapefile, in any CRS the file declares (reprojected to WGS84).
    generation : str, optional
        "2024" or "2015". By default detected from the codes (``QN…`` = 2024, ``QP…`` = 2015).
    departements : sequence of str, optional
        Keep only these départements (``insee_dep``, derived from the code when absent; rows
        whose département is unknown are left out). ``rows_read`` then counts those rows only.

    Invalid geometries are **repaired and kept** (``shapely.make_valid``, polygonal parts only):
    official files rounded to a few decimals often contain self-intersections, and dropping a
    QPV would silently remove a neighbourhood from every count. Each repair is listed in
    ``meta.warnings`` (file, feature number, code, GEOS reason in French). A row goes to the
    quarantine only when nothing polygonal survives the repair, and for: missing code, missing
    geometry, non-polygonal geometry, coordinates that look swapped (lat, lon) or lie outside
    every French territory, a position inconsistent with the département, duplicate code.
    Swapped coordinates are quarantined, not swapped back: a guess could place a QPV wrongly.
    Row numbers are feature index + 1.
    """
    path = Path(path)
    name = path.name
    forced = _normalise_generation(generation, name)
    require_geographic_file(path, "qpv")
    layers = vector_layers(path)
    layer = pick_layer(path, layers, ("qp", "qpv", "quartier"), "une couche de QPV")
    raw, warnings = read_vector(path, layer=layer if len(layers) > 1 else None)
    columns = [c for c in raw.columns if c != raw.geometry.name]

    code_col = find_column(columns, _CODE)
    kind = kind_of_columns(columns, raw)
    if code_col is None and kind not in (None, "qpv"):
        raise wrong_kind_error(path, kind, "qpv", columns_evidence(columns))
    if code_col is None:
        raise InputFileError(
            name,
            "propriété obligatoire absente : code du quartier (code_qp, CODE_QP ou q) ; "
            f"propriétés présentes : {', '.join(printable(c, limit=40) for c in columns[:30]) or 'aucune'}.",
            column="code_qp",
            hint="vérifiez qu'il s'agit bien d'un fichier de QPV de l'ANCT, ou renommez en code_qp "
            "la propriété qui porte le code du quartier.",
        )

    n = len(raw)
    rows = pd.Series(np.arange(1, n + 1, dtype="int64"))
    code = as_text(raw[code_col]).str.strip().str.upper().replace("", pd.NA)
    data = pd.DataFrame({"code_qp": code})
    data["lib_qp"] = _text(raw, _NAME)
    data["lib_com"] = _text(raw, _COMMUNE_NAMES)
    com_col = find_column(columns, _COMMUNES)
    data["insee_com"] = (
        raw[com_col].map(_join_commune_codes).astype("string")
        if com_col else pd.Series(pd.NA, index=raw.index, dtype="string")
    )
    epci_col = find_column(columns, _EPCI)
    data["siren_epci"] = (
        as_text(raw[epci_col]).str.extract(r"(\d{9})", expand=False).astype("string")
        if epci_col else pd.Series(pd.NA, index=raw.index, dtype="string")
    )
    dep_col = find_column(columns, _DEP)
    from_code = map_text(code, departement_of_qpv_code)
    if dep_col:
        dep = map_text(as_text(raw[dep_col]), normalise_departement)
    else:
        dep = pd.Series(pd.NA, index=raw.index, dtype="string")
    data["insee_dep"] = dep.fillna(from_code)
    mismatch = (dep.notna() & from_code.notna() & (dep != from_code)).fillna(False).astype(bool)
    if mismatch.any():
        examples = ", ".join(f"{c} ({d})" for c, d in zip(code[mismatch][:5], dep[mismatch][:5], strict=True))
        warnings.append(
            f"Fichier « {name} » : {int(mismatch.sum())} QPV dont le département ne correspond pas au code "
            f"(ex. {examples}) ; le département du fichier a été gardé."
        )

    # Generation: detected per row from the code, or forced by the caller.
    detected = code.fillna("").str[:2].map(GENERATIONS).astype("string")
    counts = detected.value_counts()
    if forced:
        data["generation"] = forced
        other = counts.drop(forced, errors="ignore")
        if not other.empty:
            warnings.append(
                f"Fichier « {name} » : génération {forced} demandée, mais {int(other.sum())} code(s) "
                f"ressemblent à la génération {', '.join(other.index)} (QN… = 2024, QP… = 2015)."
            )
    else:
        if counts.empty:
            raise InputFileError(
                name, "génération des QPV indéterminable : aucun code ne commence par QN (2024) ou QP (2015) "
                f"(ex. « {code.dropna().iloc[0] if code.notna().any() else ''} »).",
                column=code_col, hint="précisez la génération (option --generation 2024 ou 2015).",
            )
        main = str(counts.index[0])
        data["generation"] = detected.fillna(main)
        if len(counts) > 1:
            warnings.append(
                f"Fichier « {name} » : le fichier mélange deux générations de QPV "
                f"({', '.join(f'{g} : {int(c)}' for g, c in counts.items())}) ; chaque QPV garde la sienne."
            )

    # Département filter before validation: the quarantine covers the rows asked for only.
    file_generations = data["generation"].copy()
    in_scope = pd.Series(True, index=raw.index)
    if departements:
        wanted = {normalise_departement(d) for d in departements}
        in_scope = data["insee_dep"].isin(wanted).fillna(False).astype(bool)
    data = data[in_scope.to_numpy()].reset_index(drop=True)
    rows = rows[in_scope.to_numpy()].reset_index(drop=True)
    geometry = gpd.GeoSeries(raw.geometry[in_scope.to_numpy()].to_numpy(), crs=WGS84)
    if departements and data.empty:
        warnings.append(
            f"Fichier « {name} » : aucun QPV dans les départements demandés "
            f"({', '.join(sorted(wanted))})."
        )

    quarantine = Quarantine(SOURCE, name)
    rejected = pd.Series(False, index=data.index)

    no_code = data["code_qp"].isna()
    quarantine.add(rows[no_code], code_col, "", "code du QPV absent")
    rejected |= no_code

    check = check_polygons(geometry)
    bad_geom = check.problem.notna().to_numpy() & ~rejected.to_numpy()
    quarantine.add(rows[bad_geom], "geometry", data["code_qp"][bad_geom], check.problem[bad_geom].to_numpy())
    rejected |= bad_geom

    found = np.where(rejected.to_numpy(), "", check.territory)
    elsewhere, reasons = territory_mismatch(data["insee_dep"], found)
    quarantine.add(rows[elsewhere], "geometry", data["code_qp"][elsewhere], reasons)
    rejected |= elsewhere

    kept_codes = data["code_qp"].where(~rejected)
    duplicate = kept_codes.notna() & kept_codes.duplicated(keep="first")
    if duplicate.any():
        first_row = dict(zip(kept_codes[~rejected & ~duplicate], rows[~rejected & ~duplicate], strict=True))
        reasons = [
            f"code_qp en double : déjà lu à l'entité {first_row.get(c, '?')}" for c in data["code_qp"][duplicate]
        ]
        quarantine.add(rows[duplicate], code_col, data["code_qp"][duplicate], reasons)
        rejected |= duplicate

    repaired = [
        (int(rows[i]), str(data["code_qp"][i]), reason) for i, reason in check.repaired if not rejected[i]
    ]
    if repaired:
        warnings.append(repaired_warning(name, repaired, "QPV"))

    keep = ~rejected.to_numpy()
    data = data[keep].reset_index(drop=True)
    territory = territory_codes_of_departements(data["insee_dep"].fillna(""))
    territory = territory.where(territory != "", pd.Series(check.territory[keep]))
    data["territoire"] = territory.replace("", pd.NA).astype("string")
    data["epsg_metrique"] = epsg_of_territory_codes(territory.fillna(""))
    frame = canonical_frame(data, schema.QPV, gpd.GeoSeries(check.geometry[keep], crs=WGS84))

    meta = SourceMeta(
        source=SOURCE,
        file_name=name,
        sha256=sha256_of(path),
        generation=_generation_label(file_generations, _millesime(path)),
        rows_read=len(rows),
        rows_kept=len(frame),
        rows_quarantined=len(quarantine.row_numbers()),
        is_synthetic=False,
        warnings=warnings,
    )
    return SourceRead(frame, quarantine.frame(), meta)


def departement_of_qpv_code(code: str) -> str:
    """Département in a QPV code: "QN01354M" -> "13", "QP02A001" -> "2A", "QN97101M" -> "971".

    ANCT codes carry the département on three characters after the prefix ("013", "02A", "971"),
    as contract codes do (CN02A01M). "" when the code does not follow that pattern.
    """
    body = code.strip().upper()[2:5]
    if len(body) < 3:
        return ""
    if body.startswith("97") and body.isdigit():
        return body
    if body[:2] in ("2A", "2B"):  # written without the leading zero
        return body[:2]
    if body[0] == "0" and (body[1:].isdigit() or body[1:] in ("2A", "2B")):
        return body[1:]
    return ""


def _normalise_generation(generation: str | None, file_name: str) -> str | None:
    if generation is None or str(generation).strip() == "":
        return None
    text = str(generation).strip()
    if text not in GENERATIONS.values():
        raise InputFileError(
            file_name, f"génération de QPV « {text} » inconnue.",
            hint=f"indiquez l'une de : {', '.join(sorted(GENERATIONS.values()))}.",
        )
    return text


def _text(raw: pd.DataFrame, candidates: Sequence[str]) -> pd.Series:
    col = find_column([c for c in raw.columns if c != raw.geometry.name], candidates)
    if col is None:
        return pd.Series(pd.NA, index=raw.index, dtype="string")
    return clean_text(as_text(raw[col]))


def _join_commune_codes(value: object) -> object:
    """Commune code(s) as "13055" or "13001,13002", whatever the file stores (list or text)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return pd.NA
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    codes: list[str] = []
    for item in items:
        for token in re.split(r"[\s,;|/\[\]\"']+", str(item)):
            code = normalise_commune_code(token)
            if code and code not in codes:
                codes.append(code)
    return ",".join(codes) if codes else pd.NA


def _millesime(path: Path) -> str:
    """The top-level ``millesime`` member of a GeoJSON (publication year), or ""."""
    if path.suffix.lower() not in (".geojson", ".json"):
        return ""
    try:
        if path.stat().st_size <= _MILLESIME_FULL_PARSE_MAX:
            with open(path, encoding="utf-8-sig") as fh:
                data = json.load(fh)
            value = data.get("millesime") if isinstance(data, dict) else None
        else:  # large national file: look before the features array only
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                head = fh.read(1 << 20).split('"features"', 1)[0]
            match = re.search(r'"millesime"\s*:\s*"?(\d{4})', head)
            value = match.group(1) if match else None
    except (OSError, ValueError):
        return ""
    return str(value).strip() if value not in (None, "") else ""


def _generation_label(generations: pd.Series, millesime: str) -> str:
    found = sorted(generations.dropna().unique(), reverse=True)
    if not found:
        return ""
    label = ", ".join(str(g) for g in found)
    if millesime and len(found) == 1 and millesime != label:
        label += f" (millésime {millesime})"
    return label
