"""Reader of tiers-lieux lists: the France Tiers-Lieux census, Commune Mesure, regional lists.

Recognised without any option (column names matched case-insensitively):

- the France Tiers-Lieux census, in its own column names: see :data:`CENSUS_COLUMNS`;
- the Commune Mesure public list (``nom``, ``adresse``, ``latitude``, ``longitude``);
- any list whose columns carry the canonical field names (:data:`CANONICAL_FIELDS`) or a usual
  alias (``lat``, ``lon``, ``code_insee``, ``cp``...).

Other lists are read with a column mapping (canonical field -> file column), which the CLI
parses from ``nom=NOM,latitude=LAT`` with :func:`parse_column_mapping`.

A row without coordinates is quarantined, unless placement files are given
(:class:`~essmap.io.readers.placement.PlacementFiles`): then it is positioned offline from its SIREN
(INSEE's geolocation file) or its address (Base Adresse Nationale), or else kept at its commune
(``commune seulement``, no coordinates: the store gives it the commune's centre). Every row records
how it was positioned in ``precision_localisation``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from essmap.domain import schema
from essmap.domain.errors import EssmapError
from essmap.domain.schema import LOCATION_COMMUNE, LOCATION_PROVIDED
from essmap.domain.territories import (
    departements_of_communes,
    epsg_of_territory_codes,
    is_valid_commune_code,
    normalise_commune_code,
    normalise_departement,
    territory_codes_of_departements,
)
from essmap.io.readers.common import (
    Quarantine,
    SourceMeta,
    SourceRead,
    canonical_frame,
    check_required_columns,
    clean_text,
    missing_columns_error,
    points_from_lonlat,
    read_csv_text,
    sha256_of,
    to_float,
    year_in_file_name,
)
from essmap.io.readers.placement import PlacementFiles, describe_precisions, place_places
from essmap.io.readers.vector import (
    OUTSIDE,
    SWAPPED,
    as_text,
    find_column,
    locate_lonlat,
    map_text,
    read_vector,
)

SOURCE = "tiers_lieux"

#: Columns of the France Tiers-Lieux census as essmap reads (and the synthetic generator
#: writes) them. The first eight are the census's own names (real 2023 extract); the others
#: are optional:
#: ``LATITUDE``/``LONGITUDE`` WGS84 decimal degrees (dot or decimal comma);
#: ``TYPES`` the place's types, several separated by "|" (";" or "," also read), e.g.
#: "Coworking|Fablab / atelier partagé";
#: ``LABELS`` the ANCT labels, same separators: "Fabrique de territoire",
#: "Manufacture de proximité". Columns ``LABEL_FABRIQUE_TERRITOIRE`` and
#: ``LABEL_MANUFACTURE_PROXIMITE`` (oui/non, 1/0, true/false) are also understood.
CENSUS_COLUMNS: tuple[str, ...] = (
    "ID_UNIQUE", "NOM", "Insee", "NOM_STRC_PORT", "ADRESSE", "CODPOST", "VILLE", "INTERNET",
    "LATITUDE", "LONGITUDE", "TYPES", "LABELS",
)

#: Fields a column mapping may name (canonical field -> file column).
CANONICAL_FIELDS: tuple[str, ...] = (
    "id", "nom", "structure_porteuse", "adresse", "code_postal", "commune", "code_commune",
    "latitude", "longitude", "types", "labels", "site_web",
    "fabrique_territoire", "manufacture_proximite", "siren",
)

#: Built-in column names of each field, best first: census names, then usual aliases.
_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("ID_UNIQUE", "id_tiers_lieu", "id", "identifiant"),
    "nom": ("NOM", "nom_tiers_lieu", "name", "nom_lieu"),
    "structure_porteuse": ("NOM_STRC_PORT", "structure_porteuse", "porteur"),
    "adresse": ("ADRESSE", "address"),
    "code_postal": ("CODPOST", "code_postal", "cp", "postcode"),
    "commune": ("VILLE", "commune", "libelle_commune", "nom_commune"),
    "code_commune": ("Insee", "code_commune", "code_insee", "codgeo", "insee_com"),
    "latitude": ("LATITUDE", "lat", "y_wgs84"),
    "longitude": ("LONGITUDE", "lon", "lng", "long", "x_wgs84"),
    "types": ("TYPES", "type", "typologie"),
    "labels": ("LABELS", "label"),
    "site_web": ("INTERNET", "site_web", "site", "url", "website"),
    "fabrique_territoire": ("LABEL_FABRIQUE_TERRITOIRE", "fabrique_territoire"),
    "manufacture_proximite": ("LABEL_MANUFACTURE_PROXIMITE", "manufacture_proximite"),
    "siren": ("siren", "siren_structure", "siren_porteur"),
}

FABRIQUE = "Fabrique de territoire"
MANUFACTURE = "Manufacture de proximité"
NO_COORDINATES = "coordonnées absentes : tiers-lieu non localisable sans géocodage"
SYNTHETIC_MARKER = "essmap-synthetic.json"

_TRUE = {"oui", "o", "1", "true", "vrai", "x", "yes", "y", "1.0"}
_FALSE = {"non", "n", "0", "false", "faux", "no", "0.0", ""}

#: Prefix of the type indicators of the census's "activités" file (``bdftl-2023-04-activites.csv``,
#: ``;``-separated, one row per ``ID_UNIQUE``): one column per type, e.g. ``TYPE_ACT_NUMER``
#: (numérique), true when the place is of that type. Only ``TYPE_ACT_NUMER`` is confirmed by a
#: third-party reader of the real file; the other suffixes are read by the words below.
ACTIVITY_TYPE_PREFIX = "TYPE_ACT_"
#: Type label of a ``TYPE_ACT_*`` column from a word its suffix contains (first match wins), in the
#: typology France Tiers-Lieux publishes (and the demo's labels where they coincide).
ACTIVITY_TYPES: tuple[tuple[str, str], ...] = (
    ("CUISIN", "Cuisine partagée"),
    ("COWORK", "Coworking"), ("BUREAU", "Coworking"),
    ("FAB", "Fablab / atelier partagé"), ("MAKER", "Fablab / atelier partagé"),
    ("HACK", "Fablab / atelier partagé"),
    ("ARTISAN", "Atelier artisanal partagé"), ("ATEL", "Atelier artisanal partagé"),
    ("NOURR", "Tiers-lieu nourricier"), ("AGRI", "Tiers-lieu nourricier"), ("ALIM", "Tiers-lieu nourricier"),
    ("CULT", "Tiers-lieu culturel"), ("FRICHE", "Tiers-lieu culturel"),
    ("NUM", "Numérique"),
    ("LAB", "Laboratoire d'innovation sociale"), ("INNOV", "Laboratoire d'innovation sociale"),
    ("SERV", "Tiers-lieu de services publics"), ("PUBLIC", "Tiers-lieu de services publics"),
    ("SOCIAL", "Espace de vie sociale"),
)


class ColumnMappingError(EssmapError, ValueError):
    """A column mapping given by the user (``nom=NOM,latitude=LAT``) cannot be understood."""


def parse_column_mapping(text: str) -> dict[str, str]:
    """Parse ``"nom=NOM,latitude=LAT"`` into ``{"nom": "NOM", "latitude": "LAT"}``.

    Raises :class:`ColumnMappingError` (French message) for a bad pair or an unknown field.
    """
    mapping: dict[str, str] = {}
    for raw_pair in str(text).split(","):
        pair = raw_pair.strip()
        if not pair:
            continue
        if pair.count("=") != 1:
            raise ColumnMappingError(
                f"Correspondance de colonnes illisible : « {pair} ». "
                "Solution : écrivez champ=COLONNE, séparés par des virgules, ex. nom=NOM,latitude=LAT."
            )
        field, column = (part.strip() for part in pair.split("="))
        field = field.lower()
        if not field or not column:
            raise ColumnMappingError(
                f"Correspondance de colonnes incomplète : « {pair} ». "
                "Solution : indiquez le champ et la colonne, ex. nom=NOM."
            )
        if field not in CANONICAL_FIELDS:
            raise ColumnMappingError(
                f"Champ inconnu « {field} » dans la correspondance de colonnes. "
                f"Solution : utilisez l'un de : {', '.join(CANONICAL_FIELDS)}."
            )
        if field in mapping:
            raise ColumnMappingError(f"Champ « {field} » indiqué deux fois dans la correspondance de colonnes.")
        mapping[field] = column
    if not mapping:
        raise ColumnMappingError(
            "Correspondance de colonnes vide. Solution : écrivez par exemple nom=NOM,latitude=LAT."
        )
    return mapping


def read_tiers_lieux(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    departements: Sequence[str] | None = None,
    is_synthetic: bool | None = None,
    millesime: str | None = None,
    placement: PlacementFiles | None = None,
    activities: Path | None = None,
) -> SourceRead:
    """Read a list of tiers-lieux (CSV or GeoJSON) into ``schema.TIERS_LIEUX`` + WGS84 points.

    Parameters
    ----------
    columns : mapping, optional
        Canonical field -> file column, for lists the built-in layouts do not cover.
    departements : sequence of str, optional
        Keep these départements only, known from the commune code (or, for the filter only,
        the postcode). Rows without département but with coordinates are kept (the store places
        them in a commune by point in polygon); rows with neither are out of scope.
        ``rows_read`` counts the rows in scope.
    is_synthetic : bool, optional
        Default: True when a file ``essmap-synthetic.json`` next to this one lists its name.
    millesime : str, optional
        Year of the list, recorded in ``sources`` and printed on exports; default: a year in
        the file name, else none.
    placement : PlacementFiles, optional
        Position the rows without coordinates that have a commune code (see
        :mod:`essmap.io.readers.placement`) instead of quarantining them; with no file in it, they
        are all kept at their commune. Rows with coordinates keep them (``coordonnées fournies``).
    activities : Path, optional
        The census's "activités" file (:func:`read_census_activities`): the types of each place,
        by ``ID_UNIQUE``, for rows whose own ``types`` is empty (the "fiche identité" has none).

    Quarantined (with a French reason, nothing dropped silently): rows without a name, without
    coordinates ("coordonnées absentes : tiers-lieu non localisable sans géocodage"), with
    unreadable or incomplete coordinates, with latitude and longitude swapped, outside every
    French territory, and repeated identifiers. Lists without an identifier get a stable one
    derived from name and position. ``territoire`` comes from the coordinates (what distances
    are measured from); a disagreement with the commune's département is reported in warnings.
    """
    path = Path(path)
    name = path.name
    mapping = dict(columns or {})
    unknown = [f for f in mapping if f not in CANONICAL_FIELDS]
    if unknown:
        raise ColumnMappingError(
            f"Champ inconnu « {unknown[0]} » dans la correspondance de colonnes. "
            f"Solution : utilisez l'un de : {', '.join(CANONICAL_FIELDS)}."
        )

    lon_geom: np.ndarray | None
    lat_geom: np.ndarray | None
    if path.suffix.lower() in (".geojson", ".json", ".gpkg", ".shp"):
        raw, warnings, lon_geom, lat_geom = _read_geo(path)
        rows = pd.Series(np.arange(1, len(raw) + 1, dtype="int64"))
    else:
        raw, warnings = read_csv_text(path, required=[])
        rows = raw.pop("_row").reset_index(drop=True)
        lon_geom = lat_geom = None
    raw = raw.reset_index(drop=True)

    resolved = _resolve_columns(list(raw.columns), mapping, name)
    if "nom" not in resolved:
        check_required_columns(raw.columns, ["nom"], name)

    def field(key: str) -> pd.Series:
        col = resolved.get(key)
        return as_text(raw[col]) if col else pd.Series(pd.NA, index=raw.index, dtype="string")

    data = pd.DataFrame(index=raw.index)
    data["nom"] = clean_text(field("nom"))
    data["structure_porteuse"] = clean_text(field("structure_porteuse"))
    data["adresse"] = clean_text(field("adresse"))
    data["site_web"] = clean_text(field("site_web"))
    data["siren"] = clean_text(field("siren"))
    postcode = map_text(field("code_postal"), _normalise_postcode)
    found = [_postcode_and_town(a) for a in data["adresse"]]
    address_postcode = pd.Series([f[0] for f in found], index=data.index, dtype="string")
    address_town = pd.Series([f[1] for f in found], index=data.index, dtype="string")
    data["code_postal"] = postcode.fillna(address_postcode)
    data["commune"] = clean_text(field("commune")).fillna(address_town)

    code = map_text(field("code_commune"), normalise_commune_code)
    bad_code = code.notna() & ~code.fillna("").map(is_valid_commune_code).astype(bool)
    if bad_code.any():
        warnings.append(
            f"Fichier « {name} » : {int(bad_code.sum())} code(s) commune invalide(s) ignoré(s) "
            f"(lignes {_rows_text(rows[bad_code])}) ; ces tiers-lieux seront placés dans leur commune "
            "d'après leurs coordonnées."
        )
    data["code_commune"] = code.where(~bad_code)
    data["code_departement"] = departements_of_communes(data["code_commune"]).replace("", pd.NA).astype("string")

    data["types"] = _join_list(field("types"))
    labels, fabrique, manufacture = _labels(field("labels"), field("fabrique_territoire"),
                                            field("manufacture_proximite"), resolved)
    data["labels"], data["fabrique_territoire"], data["manufacture_proximite"] = labels, fabrique, manufacture

    lat_text = field("latitude").str.strip().replace("", pd.NA)
    lon_text = field("longitude").str.strip().replace("", pd.NA)
    lat, lon = to_float(lat_text), to_float(lon_text)
    if lon_geom is not None:
        lon, lat = lon.fillna(pd.Series(lon_geom)), lat.fillna(pd.Series(lat_geom))
        lat_text = lat_text.where(lat_text.notna(), lat.astype("string"))
        lon_text = lon_text.where(lon_text.notna(), lon.astype("string"))
    if "latitude" not in resolved and "longitude" not in resolved and lon_geom is None and placement is None:
        warnings.append(
            f"Fichier « {name} » : aucune colonne de coordonnées (latitude, longitude) ; "
            "les tiers-lieux ne peuvent pas être placés sur la carte sans géocodage."
        )
    data["latitude"], data["longitude"] = lat, lon

    ident = map_text(field("id"), _normalise_id)
    data["id_tiers_lieu"] = ident.fillna(_stable_ids(data["nom"], lat_text, lon_text, data["adresse"]))
    if activities is not None:
        data["types"] = _types_from_activities(data, ident, Path(activities), name, warnings)

    # Département filter (postcode helps for the filter only), before validation.
    if departements:
        wanted = {normalise_departement(d) for d in departements}
        dep_hint = data["code_departement"].fillna(map_text(data["code_postal"], _departement_of_postcode))
        located = lat_text.notna() | lon_text.notna()
        scope = (dep_hint.isin(wanted).fillna(False) | (dep_hint.isna() & located)).to_numpy(dtype=bool)
        data, rows = data[scope].reset_index(drop=True), rows[scope].reset_index(drop=True)
        lat_text, lon_text = lat_text[scope].reset_index(drop=True), lon_text[scope].reset_index(drop=True)

    data["precision_localisation"] = pd.Series(LOCATION_PROVIDED, index=data.index, dtype="string")
    commune_only = np.zeros(len(data), dtype=bool)
    if placement is not None:
        unplaced = (lat_text.isna() & lon_text.isna() & data["code_commune"].notna() & data["nom"].notna()).to_numpy()
        if unplaced.any():
            placed = place_places(data[unplaced], placement)
            rows_to_place = data.index[unplaced]
            data.loc[rows_to_place, "longitude"] = placed.longitude.to_numpy()
            data.loc[rows_to_place, "latitude"] = placed.latitude.to_numpy()
            data.loc[rows_to_place, "precision_localisation"] = placed.precision.to_numpy()
            lat_text.loc[rows_to_place] = placed.latitude.astype("string").to_numpy()
            lon_text.loc[rows_to_place] = placed.longitude.astype("string").to_numpy()
            commune_only = (data["precision_localisation"] == LOCATION_COMMUNE).to_numpy()
            lat_text[commune_only] = pd.NA
            lon_text[commune_only] = pd.NA
            warnings.extend(placed.warnings)
            warnings.append(
                f"Fichier « {name} » : {int(unplaced.sum())} tiers-lieu(x) sans coordonnées placé(s) "
                f"hors ligne ({describe_precisions(placed.precision)}"
                + (f" ; fichiers : {', '.join(placement.names())}" if placement.names() else
                   " ; aucun fichier de géolocalisation SIRENE ni de la Base Adresse Nationale indiqué")
                + "). Ceux placés à la commune seulement ont une localisation approximative : ils sont "
                "montrés mais laissés hors des calculs de rayon."
            )

    quarantine = Quarantine(SOURCE, name)
    rejected = np.zeros(len(data), dtype=bool)

    def reject(mask: np.ndarray, column: str, values, reason) -> None:
        nonlocal rejected
        mask = np.asarray(mask, dtype=bool) & ~rejected
        if not mask.any():
            return
        vals = values[mask] if isinstance(values, pd.Series) else values
        why = np.asarray(reason, dtype=object)[mask] if isinstance(reason, (list, np.ndarray)) else reason
        quarantine.add(rows[mask], column, vals, why)
        rejected |= mask

    reject(data["nom"].isna().to_numpy(), resolved.get("nom", "nom"), data["id_tiers_lieu"],
           "nom du tiers-lieu absent")
    lat_col, lon_col = resolved.get("latitude", "latitude"), resolved.get("longitude", "longitude")
    both_missing = (lat_text.isna() & lon_text.isna()).to_numpy() & ~commune_only
    reject(both_missing, f"{lat_col}, {lon_col}", data["nom"], NO_COORDINATES)
    one_missing = (lat_text.isna() ^ lon_text.isna()).to_numpy()
    reject(one_missing, f"{lat_col}, {lon_col}", lat_text.fillna("") + " ; " + lon_text.fillna(""),
           "coordonnées incomplètes : latitude ou longitude absente")
    unreadable = (data["latitude"].isna() | data["longitude"].isna()).to_numpy() & ~commune_only
    reject(unreadable, f"{lat_col}, {lon_col}", lat_text.fillna("") + " ; " + lon_text.fillna(""),
           "coordonnées illisibles : nombres décimaux attendus (ex. 43.2965)")
    territory, swapped = locate_lonlat(data["longitude"].to_numpy(), data["latitude"].to_numpy())
    coords_text = lat_text.fillna("") + " ; " + lon_text.fillna("")
    swapped = np.asarray(swapped, dtype=bool) & ~commune_only
    reject(swapped, f"{lat_col}, {lon_col}", coords_text, SWAPPED)
    reject((territory == "") & ~commune_only, f"{lat_col}, {lon_col}", coords_text, OUTSIDE)
    # a place known by its commune only belongs to the territory of its département
    territory = np.where(commune_only, territory_codes_of_departements(data["code_departement"].fillna("")).to_numpy(
        dtype=object), territory)
    ids = data["id_tiers_lieu"].where(~rejected)
    duplicate = (ids.notna() & ids.duplicated(keep="first")).to_numpy()
    if duplicate.any():
        first_row = dict(zip(ids[~rejected & ~duplicate], rows[~rejected & ~duplicate], strict=True))
        reasons = [f"identifiant en double : déjà présent ligne {first_row.get(i, '?')}" for i in data["id_tiers_lieu"]]
        reject(duplicate, resolved.get("id", "id"), data["id_tiers_lieu"], reasons)

    keep = ~rejected
    data, rows_kept, territory = data[keep].reset_index(drop=True), rows[keep].reset_index(drop=True), territory[keep]
    has_point = ~commune_only[keep]
    data["territoire"] = pd.Series(territory, dtype="string").replace("", pd.NA)
    data["epsg_metrique"] = epsg_of_territory_codes(pd.Series(territory, dtype=object))
    _warn_territory_mismatch(data, rows_kept, name, warnings)

    synthetic = _is_synthetic(path, warnings) if is_synthetic is None else bool(is_synthetic)
    data["is_synthetic"] = synthetic
    points = points_from_lonlat(data["longitude"], data["latitude"])
    points[~has_point] = None
    frame = canonical_frame(data, schema.TIERS_LIEUX, points)

    meta = SourceMeta(
        source=SOURCE,
        file_name=name,
        sha256=sha256_of(path),
        generation=millesime or year_in_file_name(name),
        rows_read=len(rows),
        rows_kept=len(frame),
        rows_quarantined=len(quarantine.row_numbers()),
        is_synthetic=synthetic,
        warnings=warnings,
    )
    return SourceRead(frame, quarantine.frame(), meta)


# --- The census's "activités" file -----------------------------------------------------------------


def read_census_activities(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Types of each place of the census's "activités" file: ``id_tiers_lieu`` and ``types``
    ("; "-separated labels, <NA> when none), and warnings.

    The types come from the ``TYPE_ACT_*`` indicator columns (``1``/``0``, ``oui``/``non``,
    ``true``/``false``), labelled by :data:`ACTIVITY_TYPES`, and from a text column of types when the
    file has one (``TYPES``, ``typologie``). A file without any of them, or without ``ID_UNIQUE``,
    gives no type and says so (loud warning, not silent nulls); an indicator that is neither true nor
    false, or a ``TYPE_ACT_*`` column of unknown meaning (kept under its own name), is reported.
    """
    path = Path(path)
    name = path.name
    raw, warnings = read_csv_text(path, required=[], expected_delimiter=";")
    columns = [c for c in raw.columns if c != "_row"]
    empty = pd.DataFrame({"id_tiers_lieu": pd.Series(dtype="string"), "types": pd.Series(dtype="string")})
    id_col = find_column(columns, _ALIASES["id"])
    prefix = len(ACTIVITY_TYPE_PREFIX)
    indicators = [c for c in columns if c.upper().startswith(ACTIVITY_TYPE_PREFIX) and len(c) > prefix]
    text_col = find_column([c for c in columns if c not in indicators], _ALIASES["types"])
    if id_col is None or not (indicators or text_col):
        missing = "ID_UNIQUE" if id_col is None else f"{ACTIVITY_TYPE_PREFIX}… (types du tiers-lieu)"
        warnings.append(f"Fichier « {name} » : colonne « {missing} » absente (colonnes présentes : "
                        f"{', '.join(columns[:12])}{'…' if len(columns) > 12 else ''}) — aucun type de tiers-lieu "
                        "n'a pu être lu : le filtre par type du tableau de bord restera vide.")
        return empty, warnings
    labels: dict[str, str] = {}
    unknown: list[str] = []
    for column in indicators:
        suffix = column[prefix:].upper()
        label = next((lab for word, lab in ACTIVITY_TYPES if word in suffix), None)
        if label is None:
            unknown.append(column)
            label = suffix.replace("_", " ").capitalize()
        labels[column] = label
    if unknown:
        warnings.append(f"Fichier « {name} » : colonne(s) de type inconnue(s) {', '.join(unknown)} — types gardés "
                        "sous leur nom de colonne.")
    found: list[list[str]] = [[] for _ in range(len(raw))]
    odd: int = 0
    for column in indicators:
        values = raw[column].fillna("").str.strip().str.lower()
        is_true = values.isin(_TRUE).to_numpy()
        odd = odd + int(np.count_nonzero(~is_true & ~values.isin(_FALSE).to_numpy()))
        for i in np.flatnonzero(is_true):
            if labels[column] not in found[i]:
                found[i].append(labels[column])
    if text_col is not None:
        for row, value in enumerate(clean_text(raw[text_col])):
            for item in _split(value):
                if item not in found[row]:
                    found[row].append(item)
    if odd:
        warnings.append(f"Fichier « {name} » : {odd} valeur(s) de type ni vraie ni fausse (1/0, oui/non attendus), "
                        "lues comme « non ».")
    out = pd.DataFrame({"id_tiers_lieu": map_text(as_text(raw[id_col]), _normalise_id),
                        "types": pd.Series(["; ".join(f) if f else pd.NA for f in found], dtype="string")})
    out = out[out["id_tiers_lieu"].notna()]
    return out.drop_duplicates("id_tiers_lieu").reset_index(drop=True), warnings


def _types_from_activities(data: pd.DataFrame, ident: pd.Series, activities: Path, census_name: str,
                           warnings: list[str]) -> pd.Series:
    """``data["types"]``, filled from the "activités" file where empty (by the census identifier)."""
    by_id, found = read_census_activities(activities)
    warnings.extend(found)
    types = by_id.set_index("id_tiers_lieu")["types"]
    filled = data["types"].fillna(ident.map(types).astype("string"))
    unmatched = int((ident.notna() & ~ident.isin(types.index)).sum())
    if unmatched and len(types):
        warnings.append(f"Fichier « {activities.name} » : {unmatched} tiers-lieu(x) de « {census_name} » sans ligne "
                        "d'activités (ID_UNIQUE absent) : leurs types restent inconnus.")
    return filled


# --- Columns -----------------------------------------------------------------------------------


def _resolve_columns(present: list[str], mapping: dict[str, str], file_name: str) -> dict[str, str]:
    """Canonical field -> file column: the user's mapping first, then the built-in names."""
    resolved: dict[str, str] = {}
    for key, column in mapping.items():
        found = find_column(present, (column,))
        if found is None:
            raise missing_columns_error(present, [column], file_name)
        resolved[key] = found
    taken = set(resolved.values())
    for key in CANONICAL_FIELDS:
        if key in resolved:
            continue
        found = find_column([c for c in present if c not in taken], (key, *_ALIASES[key]))
        if found is not None:
            resolved[key] = found
            taken.add(found)
    return resolved


def _read_geo(path: Path) -> tuple[pd.DataFrame, list[str], np.ndarray, np.ndarray]:
    """Properties of a point file, and the lon/lat of its point geometries (NaN elsewhere)."""
    frame, warnings = read_vector(path)
    geoms = frame.geometry
    is_point = (geoms.geom_type == "Point").to_numpy() & ~geoms.is_empty.to_numpy()
    lon = np.full(len(frame), np.nan)
    lat = np.full(len(frame), np.nan)
    lon[is_point] = geoms[is_point].x.to_numpy()
    lat[is_point] = geoms[is_point].y.to_numpy()
    others = int((geoms.notna() & ~is_point).sum())
    if others:
        warnings.append(
            f"Fichier « {path.name} » : {others} géométrie(s) non ponctuelle(s) ignorée(s) ; seules les "
            "coordonnées de points (ou les colonnes latitude/longitude) sont lues."
        )
    props = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    return props, warnings, lon, lat


# --- Values ------------------------------------------------------------------------------------


def _normalise_id(value: str) -> str:
    """"8.0" -> "8" (census identifiers exported as floats); other text kept."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d+)\.0+", text)
    return match.group(1) if match else text


def _normalise_postcode(value: str) -> object:
    """"29600.0" -> "29600", "7400" -> "07400"; anything else that is not 5 digits -> <NA>."""
    text = str(value).strip()
    text = re.sub(r"\.0+$", "", text).replace(" ", "")
    if text.isdigit() and len(text) == 4:
        text = text.zfill(5)
    return text if text.isdigit() and len(text) == 5 else pd.NA


_POSTCODE_TOWN = re.compile(r"(?<!\d)(\d{5})(?!\d)\s*([^,\d][^,]*)?")


def _postcode_and_town(address: object) -> tuple[object, object]:
    """Postcode and town written in an address ("…, 13001 Marseille 1er Arrondissement")."""
    if not isinstance(address, str):
        return (pd.NA, pd.NA)
    matches = list(_POSTCODE_TOWN.finditer(address))
    if not matches:
        return (pd.NA, pd.NA)
    last = matches[-1]
    town = (last.group(2) or "").strip()
    return (last.group(1), town or pd.NA)


def _departement_of_postcode(postcode: str) -> object:
    """Likely département of a postcode (used to filter only: postcodes cross borders)."""
    code = str(postcode)
    if code.startswith("97"):
        return code[:3]
    if code.startswith("20"):
        return "2A" if code < "20200" else "2B"
    return code[:2]


def _split(value: object) -> list[str]:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return []
    text = str(value)
    separator = r"[;|]" if re.search(r"[;|]", text) else ","
    return [part.strip() for part in re.split(separator, text) if part.strip()]


def _join_list(values: pd.Series) -> pd.Series:
    """Several values in one cell ("a|b", "a; b", "a, b") -> "a; b"."""
    cleaned = clean_text(values)
    return map_text(cleaned, lambda v: "; ".join(dict.fromkeys(_split(v))))


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def _labels(labels: pd.Series, fabrique_flag: pd.Series, manufacture_flag: pd.Series,
            resolved: dict[str, str]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """ANCT labels as text ("; "-separated) and as two booleans (<NA> when the file has no label info)."""
    has_info = any(k in resolved for k in ("labels", "fabrique_territoire", "manufacture_proximite"))
    out_labels, out_fab, out_man = [], [], []
    cleaned = clean_text(labels)
    for text, fab, man in zip(cleaned, fabrique_flag, manufacture_flag, strict=True):
        items: list[str] = []
        for item in _split(text):
            folded = _fold(item)
            canonical = FABRIQUE if "fabrique" in folded else MANUFACTURE if "manufacture" in folded else item
            if canonical not in items:
                items.append(canonical)
        for flag, label in ((fab, FABRIQUE), (man, MANUFACTURE)):
            if isinstance(flag, str) and flag.strip().lower() in _TRUE and label not in items:
                items.append(label)
        out_labels.append("; ".join(items) if items else pd.NA)
        out_fab.append(FABRIQUE in items if has_info else pd.NA)
        out_man.append(MANUFACTURE in items if has_info else pd.NA)
    index = labels.index
    return (pd.Series(out_labels, index=index, dtype="string"),
            pd.Series(out_fab, index=index, dtype="boolean"),
            pd.Series(out_man, index=index, dtype="boolean"))


def _stable_ids(names: pd.Series, lat: pd.Series, lon: pd.Series, address: pd.Series) -> pd.Series:
    """Identifier for lists without one: same place, same id, whatever the row order."""
    parts = names.fillna("") + "|" + lat.fillna("") + "|" + lon.fillna("") + "|" + address.fillna("")
    return parts.map(lambda s: "tl-" + hashlib.sha1(s.encode("utf-8")).hexdigest()[:12]).astype("string")


def _rows_text(rows: pd.Series, limit: int = 10) -> str:
    values = [str(int(r)) for r in rows[:limit]]
    return ", ".join(values) + (" …" if len(rows) > limit else "")


def _warn_territory_mismatch(data: pd.DataFrame, rows: pd.Series, name: str, warnings: list[str]) -> None:
    expected = territory_codes_of_departements(data["code_departement"].fillna(""))
    mismatch = ((expected != "") & (expected != data["territoire"].fillna(""))).to_numpy()
    if mismatch.any():
        warnings.append(
            f"Fichier « {name} » : {int(mismatch.sum())} tiers-lieu(x) dont les coordonnées ne sont pas "
            f"dans le territoire de leur commune (lignes {_rows_text(rows[mismatch])}) ; vérifiez les "
            "coordonnées ou le code commune."
        )


def _is_synthetic(path: Path, warnings: list[str]) -> bool:
    """True when ``essmap-synthetic.json`` next to the file lists it in ``"files"``."""
    marker = path.parent / SYNTHETIC_MARKER
    if not marker.exists():
        return False
    try:
        listed = json.loads(marker.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError) as exc:
        warnings.append(f"Fichier « {marker.name} » illisible ({exc}) : « {path.name} » est considéré comme réel.")
        return False
    return path.name in {Path(str(f)).name for f in listed}
