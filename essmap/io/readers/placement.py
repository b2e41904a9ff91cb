"""Positions for places listed without coordinates, offline: SIRENE establishments, then addresses.

The France Tiers-Lieux census gives a name, an address, a postcode, a commune code and (in
enriched copies) the SIREN of the structure, but no coordinates. :func:`place_places` gives each
place the best position the files at hand allow, and says how it was found
(:data:`~essmap.domain.schema.LOCATION_PRECISIONS`):

1. ``SIRET géolocalisé INSEE``: the structure (SIREN) has exactly one establishment in the place's
   commune in INSEE's geolocation file (active, when a ``StockEtablissement`` file is given too);
   with several, the one at the place's address (house number and street, from the stock file).
   An ambiguous SIREN falls through to the address.
2. ``adresse BAN (numéro)``: the house number on its street in the Base Adresse Nationale
   (per-département CSV ``adresses-<DEP>.csv.gz``, ``;``-separated), within the place's commune;
   ``adresse BAN (voie)``: the street without the number, at the address in the middle of its
   numbers.
3. Nothing found: the place stays at its commune (``commune seulement``); the store gives it the
   commune's centre, and radius queries leave it out.

Streets are compared on a key: lower case, without accents, punctuation or articles, usual
abbreviations written out ("av." = "avenue", "bd" = "boulevard", "st" = "saint"...), see
:func:`street_key_sql`. Matching is always within the commune (a street name exists in many
communes); where two streets of one commune share a key (arrondissements, communes nouvelles),
the postcode and the former commune code decide, else the street is not used. DuckDB does the
scans and the joins; the national files are filtered while read, never loaded whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from essmap.domain import schema
from essmap.domain.errors import InputFileError
from essmap.domain.selection import PLM_RANGES
from essmap.domain.territories import territory_of_lonlat
from essmap.geo.base import transformer
from essmap.io.readers.common import check_is_file, missing_columns_error

#: Columns of the BAN per-département address file that placing needs.
BAN_REQUIRED: tuple[str, ...] = ("numero", "rep", "nom_voie", "code_postal", "code_insee", "lon", "lat")
#: Optional BAN column: the code of the former commune (communes nouvelles).
BAN_FORMER_COMMUNE = "code_insee_ancienne_commune"
#: BAN's number for a position without a house number (lieux-dits).
BAN_NO_NUMBER = 99999

#: Columns of INSEE's geolocation file that placing needs (besides a WGS84 or projected pair).
GEOLOC_REQUIRED: tuple[str, ...] = ("siret",)
#: Columns of ``StockEtablissement`` that placing reads when that file is given.
STOCK_REQUIRED: tuple[str, ...] = ("siret", "etatAdministratifEtablissement", "codeCommuneEtablissement")
_STOCK_ADDRESS = ("numeroVoieEtablissement", "indiceRepetitionEtablissement", "typeVoieEtablissement",
                  "libelleVoieEtablissement")

#: Words written out before streets are compared (French street types and titles, and the codes
#: of SIRENE's ``typeVoieEtablissement``).
ABBREVIATIONS: dict[str, str] = {
    "av": "avenue", "ave": "avenue", "avn": "avenue",
    "bd": "boulevard", "bld": "boulevard", "blvd": "boulevard", "boul": "boulevard", "bv": "boulevard",
    "r": "rue",
    "pl": "place", "pla": "place",
    "st": "saint", "ste": "sainte", "sts": "saints",
    "che": "chemin", "ch": "chemin", "chem": "chemin", "chm": "chemin",
    "rte": "route", "rt": "route",
    "imp": "impasse", "all": "allee", "crs": "cours",
    "qu": "quai", "qua": "quai", "qai": "quai",
    "sq": "square", "fg": "faubourg", "fbg": "faubourg", "pas": "passage", "pass": "passage",
    "lot": "lotissement", "res": "residence", "prom": "promenade", "car": "carrefour", "carr": "carrefour",
    "chs": "chaussee", "rpt": "rond point", "rdpt": "rond point", "esp": "esplanade",
    "mte": "montee", "hle": "halle", "ham": "hameau",
    "gal": "general", "gen": "general", "gl": "general", "mal": "marechal", "mar": "marechal",
    "pdt": "president", "pres": "president", "dr": "docteur", "doc": "docteur", "prof": "professeur",
    "cdt": "commandant", "cne": "capitaine", "lt": "lieutenant", "col": "colonel",
    "nd": "notre dame", "mgr": "monseigneur", "vx": "vieux", "gd": "grand", "gde": "grande",
    "pt": "petit", "pte": "petite",
}
#: Words left out of street keys ("Rue de la Gare" = "rue gare").
STOP_WORDS: frozenset[str] = frozenset({
    "de", "du", "des", "la", "le", "les", "l", "d", "et", "a", "au", "aux", "en",
})
#: Words that start a street name: a segment of an address holding one is a street.
STREET_TYPES: frozenset[str] = frozenset({
    "rue", "avenue", "boulevard", "place", "chemin", "route", "impasse", "allee", "cours", "quai", "square",
    "faubourg", "passage", "lotissement", "residence", "promenade", "carrefour", "chaussee", "cite",
    "esplanade", "montee", "voie", "traverse", "sentier", "parvis", "rond", "quartier", "hameau", "zone",
    "lieu", "mail", "villa", "clos", "cour", "ruelle", "venelle", "galerie", "domaine", "parc", "port",
    "digue", "jardin", "pont", "porte", "ancien", "grande", "grand", "petite", "petit",
})

#: Repetition indexes written in full ("12 b" and "12 bis" are the same address).
_REPETITIONS = {"b": "bis", "t": "ter", "q": "quater", "c": "quinquies"}


@dataclass(frozen=True)
class PlacementFiles:
    """The files that position places listed without coordinates (any of them may be absent).

    ``geolocalisation``: INSEE's ``GeolocalisationEtablissement_Sirene_pour_etudes_statistiques``
    (CSV as published, ``;``-separated, or Parquet). ``ban``: Base Adresse Nationale
    ``adresses-<DEP>.csv.gz`` files, one per département. ``etablissements``: optional
    ``StockEtablissement`` files, to keep active establishments only and to choose, by address,
    between several establishments of a structure in the same commune.
    """

    geolocalisation: tuple[Path, ...] = ()
    ban: tuple[Path, ...] = ()
    etablissements: tuple[Path, ...] = ()

    @classmethod
    def of(cls, *, geolocalisation: Sequence[Path | str] | Path | str | None = None,
           ban: Sequence[Path | str] | Path | str | None = None,
           etablissements: Sequence[Path | str] | Path | str | None = None) -> PlacementFiles:
        """Build from paths, single or several, or None."""
        return cls(_paths(geolocalisation), _paths(ban), _paths(etablissements))

    def names(self) -> list[str]:
        return [p.name for p in (*self.geolocalisation, *self.ban, *self.etablissements)]


def _paths(value: Sequence[Path | str] | Path | str | None) -> tuple[Path, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Path)):
        return (Path(value),)
    return tuple(Path(v) for v in value)


@dataclass
class PlacementResult:
    """Positions of the places, aligned on their index, and what the placing met."""

    longitude: pd.Series
    latitude: pd.Series
    precision: pd.Series  # one of schema.LOCATION_PRECISIONS
    siret: pd.Series  # the establishment used, for ``SIRET géolocalisé INSEE``
    warnings: list[str] = field(default_factory=list)


# --- Street keys -----------------------------------------------------------------------------------


def street_key_sql(column: str) -> str:
    """SQL expression of a street's comparison key (see the module docstring)."""
    cases = " ".join(f"WHEN '{short}' THEN '{full}'" for short, full in ABBREVIATIONS.items())
    stops = ", ".join(f"'{w}'" for w in sorted(STOP_WORDS))
    folded = (f"trim(regexp_replace(strip_accents(replace(replace(lower(coalesce({column}, '')), 'œ', 'oe'), "
              f"'æ', 'ae')), '[^a-z0-9]+', ' ', 'g'))")
    words = f"list_transform(string_split({folded}, ' '), w -> CASE w {cases} ELSE w END)"
    return (f"array_to_string(list_filter(string_split(array_to_string({words}, ' '), ' '), "
            f"w -> w <> '' AND NOT list_contains([{stops}], w)), ' ')")


def street_keys(names: Sequence[object]) -> list[str]:
    """The comparison keys of street names, as :func:`street_key_sql` computes them."""
    con = duckdb.connect()
    try:
        frame = pd.DataFrame({"name": pd.array([None if pd.isna(n) else str(n) for n in names], dtype="string")})
        con.register("names", frame)
        return [r[0] for r in con.execute(f"SELECT {street_key_sql('name')} FROM names").fetchall()]
    finally:
        con.close()


@dataclass(frozen=True)
class AddressPart:
    """One reading of an address: house number (or None), repetition index, street text."""

    number: int | None
    repetition: str
    street: str


_NUMBERED = re.compile(
    r"^\s*(?:n[°o]\s*)?(\d{1,5})(?:\s*[-/à]\s*\d{1,5})?\s*(bis|ter|quater|quinquies|[a-h])?(?![a-z0-9])[\s,.]*(.*)$",
    re.IGNORECASE,
)


def address_parts(address: object) -> list[AddressPart]:
    """Readings of an address, best first: numbered segments, then street-like segments.

    "Le Kaléidoscope, 12 rue Ursin Scheid" -> (12, "", "rue Ursin Scheid"); "17-21 avenue
    Chiris" -> (17, "", "avenue Chiris"); "avenue de montpellier / route de lagamas" -> two
    readings without number; "12 bis rue X" -> (12, "bis", "rue X").
    """
    if not isinstance(address, str) or not address.strip():
        return []
    numbered: list[AddressPart] = []
    streets: list[AddressPart] = []
    segments: list[str] = []
    pending = ""  # a number written alone before a comma ("26, rue st père")
    for segment in re.split(r"[,;/]|\s-\s", address):
        segment = segment.strip()
        if re.fullmatch(r"\d{1,5}\s*(bis|ter|[a-h])?", segment, re.IGNORECASE):
            pending = segment
            continue
        if re.search(r"[A-Za-zÀ-ÿ]{2,}", segment):
            segments.append(f"{pending} {segment}".strip())
        pending = ""
    for segment in segments:
        match = _NUMBERED.match(segment)
        if match and re.search(r"[A-Za-zÀ-ÿ]{2,}", match.group(3) or ""):
            rep = (match.group(2) or "").lower()
            numbered.append(AddressPart(int(match.group(1)), _REPETITIONS.get(rep, rep), match.group(3).strip()))
            streets.append(AddressPart(None, "", match.group(3).strip()))
        elif _starts_like_street(segment):
            streets.append(AddressPart(None, "", segment))
    return numbered + [s for s in streets if s not in numbered]


def _starts_like_street(segment: str) -> bool:
    first = re.split(r"[\s.']+", segment.strip().lower(), maxsplit=1)[0]
    first = ABBREVIATIONS.get(first, first)
    return first.split(" ")[0] in STREET_TYPES


# --- Commune codes ---------------------------------------------------------------------------------


def commune_proper(code: object) -> object:
    """The commune of an arrondissement municipal code (13201 -> 13055), other codes unchanged."""
    if not isinstance(code, str) or not code.isdigit():
        return code
    for low, high, parent in PLM_RANGES:
        if low <= int(code) <= high:
            return parent
    return code


def _commune_proper_sql(column: str) -> str:
    ranges = " ".join(
        f"WHEN try_cast({column} AS INTEGER) BETWEEN {low} AND {high} THEN '{parent}'"
        for low, high, parent in PLM_RANGES
    )
    return f"CASE {ranges} ELSE {column} END"


# --- Reading the files -----------------------------------------------------------------------------


def _sql_str(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _source(paths: Sequence[Path], delimiter: str) -> str:
    """``read_csv``/``read_parquet`` of files of one kind, every CSV column as text."""
    listed = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
    if all(p.suffix.lower() in (".parquet", ".parq") for p in paths):
        return f"read_parquet({listed}, union_by_name = true)"
    return (f"read_csv({listed}, delim = {_sql_str(delimiter)}, header = true, all_varchar = true, "
            "union_by_name = true, quote = '\"', escape = '\"')")


def _columns(con: duckdb.DuckDBPyConnection, path: Path, delimiter: str, required: Sequence[str],
             any_of: Sequence[Sequence[str]] = ()) -> set[str]:
    """The columns of one file, refused (French message) when one is missing or the file unreadable."""
    check_is_file(path)
    try:
        found = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_source([path], delimiter)}").fetchall()}
    except duckdb.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path.name, f"fichier illisible (détail technique : {detail[:200]}).",
                             hint="fournissez le fichier tel que publié (CSV, éventuellement compressé .gz, "
                             "ou Parquet).") from exc
    missing = [c for c in required if c not in found]
    for group in any_of:
        if not any(all(c in found for c in option.split("+")) for option in group):
            missing.append(" ou ".join(group))
    if missing:
        raise missing_columns_error(sorted(found), missing, path.name)
    return found


def _text(found: set[str], column: str) -> str:
    return f"nullif(trim(CAST({column} AS VARCHAR)), '')" if column in found else "CAST(NULL AS VARCHAR)"


# --- Placing ---------------------------------------------------------------------------------------


def place_places(places: pd.DataFrame, files: PlacementFiles) -> PlacementResult:
    """Positions of places from their SIREN, commune and address (see the module docstring).

    ``places`` has the columns ``code_commune`` (INSEE code), ``adresse``, ``code_postal`` and
    ``siren`` (any may be <NA>). Every place gets a precision: the places not found in the files
    get :data:`~essmap.domain.schema.LOCATION_COMMUNE` and no coordinates.
    """
    index = places.index
    lon = pd.Series(np.nan, index=index, dtype="float64")
    lat = pd.Series(np.nan, index=index, dtype="float64")
    precision = pd.Series(schema.LOCATION_COMMUNE, index=index, dtype="string")
    siret = pd.Series(pd.NA, index=index, dtype="string")
    result = PlacementResult(lon, lat, precision, siret)
    if places.empty or not (files.geolocalisation or files.ban):
        return result

    table = _places_table(places)
    con = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "1GB"})
    con.execute("SET enable_progress_bar = false")
    try:
        con.register("places_in", table)
        con.execute("""CREATE TEMP TABLE places AS
            SELECT idx, CAST(code_commune AS VARCHAR) AS code_commune, CAST(code_com AS VARCHAR) AS code_com,
                   CAST(code_postal AS VARCHAR) AS code_postal, CAST(siren AS VARCHAR) AS siren FROM places_in""")
        con.register("parts_in", _parts_table(places))
        con.execute(f"""CREATE TEMP TABLE candidates AS
            SELECT idx, rank, CAST(number AS INTEGER) AS number, CAST(repetition AS VARCHAR) AS repetition,
                   {street_key_sql('CAST(street AS VARCHAR)')} AS street_key FROM parts_in""")
        con.execute("DELETE FROM candidates WHERE street_key = ''")
        if files.geolocalisation:
            _place_by_siret(con, files, result)
        if files.ban:
            _place_by_address(con, files, result)
    finally:
        con.close()
    return result


def _places_table(places: pd.DataFrame) -> pd.DataFrame:
    code = places["code_commune"].astype("string")
    siren = places["siren"].astype("string").str.replace(r"\D", "", regex=True) if "siren" in places \
        else pd.Series(pd.NA, index=places.index, dtype="string")
    siren = siren.where(siren.str.len().between(7, 9)).str.zfill(9)
    return pd.DataFrame({
        "idx": np.arange(len(places), dtype="int64"),
        "code_commune": code.to_numpy(dtype=object, na_value=None),
        "code_com": code.map(commune_proper, na_action="ignore").to_numpy(dtype=object, na_value=None),
        "code_postal": places["code_postal"].astype("string").to_numpy(dtype=object, na_value=None),
        "siren": siren.to_numpy(dtype=object, na_value=None),
    })


def _parts_table(places: pd.DataFrame) -> pd.DataFrame:
    """One row per reading of each place's address (:func:`address_parts`)."""
    rows = [
        (i, rank, part.number, part.repetition, part.street)
        for i, address in enumerate(places["adresse"])
        for rank, part in enumerate(address_parts(address))
    ]
    frame = pd.DataFrame(rows, columns=["idx", "rank", "number", "repetition", "street"])
    return frame.astype({"idx": "int64", "rank": "int64", "number": "Int64", "repetition": "string",
                         "street": "string"})


def _set(result: PlacementResult, positions: np.ndarray, lon: np.ndarray, lat: np.ndarray, precision: str,
         sirets: np.ndarray | None = None) -> None:
    """Record positions for the places at ``positions`` that have none yet."""
    open_ = result.precision.iloc[positions].eq(schema.LOCATION_COMMUNE).to_numpy()
    positions, lon, lat = positions[open_], lon[open_], lat[open_]
    result.longitude.iloc[positions] = lon
    result.latitude.iloc[positions] = lat
    result.precision.iloc[positions] = precision
    if sirets is not None:
        result.siret.iloc[positions] = sirets[open_]


def _place_by_siret(con: duckdb.DuckDBPyConnection, files: PlacementFiles, result: PlacementResult) -> None:
    """Step 1: the structure's establishment in the place's commune, positioned by INSEE."""
    wanted = "(SELECT DISTINCT siren FROM places WHERE siren IS NOT NULL)"
    found: set[str] = set()
    for path in files.geolocalisation:
        found |= _columns(con, path, ";", GEOLOC_REQUIRED, [("x_longitude+y_latitude", "x+y+epsg")])
    geo_source = _source(files.geolocalisation, ";")
    con.execute(f"""CREATE TEMP TABLE geo AS
        SELECT siret, {_text(found, 'x_longitude')} AS x_longitude, {_text(found, 'y_latitude')} AS y_latitude,
               {_text(found, 'x')} AS x, {_text(found, 'y')} AS y, {_text(found, 'epsg')} AS epsg,
               {_text(found, 'plg_code_commune')} AS plg_code_commune
        FROM (SELECT *, trim(CAST(siret AS VARCHAR)) AS siret FROM {geo_source})
        WHERE substr(siret, 1, 9) IN {wanted}""")
    in_geo_commune = (f"({_commune_proper_sql('g.plg_code_commune')} = p.code_com "
                      "OR g.plg_code_commune = p.code_commune)")
    if files.etablissements:
        stock: set[str] = set()
        for path in files.etablissements:
            stock |= _columns(con, path, ",", STOCK_REQUIRED)
        street = (f"concat_ws(' ', {_text(stock, 'typeVoieEtablissement')}, "
                  f"{_text(stock, 'libelleVoieEtablissement')})")
        con.execute(f"""CREATE TEMP TABLE establishments AS
            SELECT siret, upper(coalesce(state, '')) AS state, code_commune,
                   {_commune_proper_sql('code_commune')} AS code_com,
                   try_cast(numero AS INTEGER) AS number, lower(coalesce(repetition, '')) AS repetition,
                   {street_key_sql('street')} AS street_key
            FROM (SELECT trim(CAST(siret AS VARCHAR)) AS siret,
                         {_text(stock, 'codeCommuneEtablissement')} AS code_commune,
                         {_text(stock, 'numeroVoieEtablissement')} AS numero,
                         {_text(stock, 'indiceRepetitionEtablissement')} AS repetition, {street} AS street,
                         {_text(stock, 'etatAdministratifEtablissement')} AS state
                  FROM {_source(files.etablissements, ',')})
            WHERE substr(siret, 1, 9) IN {wanted}""")
    else:
        con.execute("""CREATE TEMP TABLE establishments (siret VARCHAR, state VARCHAR, code_commune VARCHAR,
                       code_com VARCHAR, number INTEGER, repetition VARCHAR, street_key VARCHAR)""")
    # the stock, where it lists the establishment, says whether it is active and where it is;
    # otherwise the commune of the geolocation file decides
    candidates = con.execute(f"""
        SELECT p.idx, g.siret, e.number, coalesce(e.repetition, '') AS repetition, e.street_key,
               g.x_longitude, g.y_latitude, g.x, g.y, g.epsg
        FROM places p JOIN geo g ON substr(g.siret, 1, 9) = p.siren
        LEFT JOIN establishments e ON e.siret = g.siret
        WHERE CASE WHEN e.siret IS NULL THEN {in_geo_commune}
                   ELSE e.state = 'A' AND (e.code_com = p.code_com OR e.code_commune = p.code_commune) END
        ORDER BY p.idx, g.siret""").df()
    if candidates.empty:
        return
    candidates = candidates.drop_duplicates(["idx", "siret"])
    lon, lat = _lonlat(candidates)
    candidates["lon"], candidates["lat"] = lon, lat
    candidates = candidates[np.isfinite(lon) & np.isfinite(lat)]
    candidates = candidates[territory_of_lonlat(candidates["lon"].to_numpy(), candidates["lat"].to_numpy()) != ""]
    parts = con.execute("SELECT idx, rank, number, repetition, street_key FROM candidates").df()
    chosen: list[tuple[int, str, float, float]] = []
    ambiguous = 0
    for idx, group in candidates.groupby("idx", sort=True):
        if len(group) == 1:
            row = group.iloc[0]
            chosen.append((int(idx), str(row["siret"]), float(row["lon"]), float(row["lat"])))
            continue
        at_address = _at_address(group, parts[parts["idx"] == idx])
        if at_address is None:
            ambiguous += 1
            continue
        chosen.append((int(idx), str(at_address["siret"]), float(at_address["lon"]), float(at_address["lat"])))
    if ambiguous:
        how = ("aucun ne correspond à son adresse" if files.etablissements else
               "donnez aussi le fichier StockEtablissement pour choisir d'après l'adresse")
        result.warnings.append(
            f"{ambiguous} tiers-lieu(x) dont la structure (SIREN) a plusieurs établissements dans la commune "
            f"({how}) : placé(s) d'après l'adresse (BAN) si possible."
        )
    if chosen:
        idx_arr = np.array([c[0] for c in chosen], dtype="int64")
        _set(result, idx_arr, np.array([c[2] for c in chosen]), np.array([c[3] for c in chosen]),
             schema.LOCATION_SIRET, np.array([c[1] for c in chosen], dtype=object))


def _at_address(establishments: pd.DataFrame, parts: pd.DataFrame) -> pd.Series | None:
    """The one establishment at the place's address (number and street), or None."""
    for part in parts.sort_values("rank").itertuples():
        if pd.isna(part.number):
            continue
        same = establishments[(establishments["street_key"] == part.street_key)
                              & (pd.to_numeric(establishments["number"], errors="coerce") == part.number)]
        if len(same) > 1 and part.repetition:
            same = same[same["repetition"].map(lambda r: _REPETITIONS.get(r, r)) == part.repetition]
        if len(same) == 1:
            return same.iloc[0]
    return None


def _lonlat(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 positions of geolocation rows: ``x_longitude``/``y_latitude``, else ``x``/``y`` in ``epsg``."""
    def number(column: str) -> np.ndarray:
        text = frame[column].astype("string").str.replace(",", ".", regex=False)
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)

    lon, lat = number("x_longitude"), number("y_latitude")
    x, y = number("x"), number("y")
    epsg = pd.to_numeric(frame["epsg"].astype("string").str.extract(r"(\d+)\s*$")[0], errors="coerce")
    epsg_arr = epsg.to_numpy(dtype="float64", na_value=np.nan)
    missing = ~(np.isfinite(lon) & np.isfinite(lat)) & np.isfinite(x) & np.isfinite(y) & np.isfinite(epsg_arr)
    for code in np.unique(epsg_arr[missing]):
        rows = missing & (epsg_arr == code)
        try:
            plon, plat = transformer(int(code), 4326).transform(x[rows], y[rows])
        except Exception:  # an EPSG code pyproj does not know: the row has no position
            continue
        lon[rows], lat[rows] = plon, plat
    return lon, lat


def _place_by_address(con: duckdb.DuckDBPyConnection, files: PlacementFiles, result: PlacementResult) -> None:
    """Step 2: the address on the Base Adresse Nationale, within the place's commune."""
    found: set[str] = set()
    for path in files.ban:
        found |= _columns(con, path, ";", BAN_REQUIRED)
    former = _text(found, BAN_FORMER_COMMUNE)
    con.execute(f"""CREATE TEMP TABLE ban_rows AS
        SELECT * FROM (SELECT {_text(found, 'code_insee')} AS code_insee, {former} AS former,
                              {_text(found, 'code_postal')} AS code_postal, {_text(found, 'nom_voie')} AS nom_voie,
                              {_text(found, 'numero')} AS numero, {_text(found, 'rep')} AS rep,
                              {_text(found, 'lon')} AS lon, {_text(found, 'lat')} AS lat
                       FROM {_source(files.ban, ';')})
        WHERE ({_commune_proper_sql('code_insee')} IN (SELECT code_com FROM places)
               OR former IN (SELECT code_commune FROM places))""")
    # the street key once per street name, not once per address (a street has tens of numbers):
    # folding accents, abbreviations and stop words cost more than reading the files
    con.execute(f"""CREATE TEMP TABLE ban AS
        WITH keys AS (SELECT nom_voie, {street_key_sql('nom_voie')} AS street_key
                      FROM (SELECT DISTINCT nom_voie FROM ban_rows))
        SELECT code_insee, {_commune_proper_sql('code_insee')} AS code_com, former, code_postal, k.street_key,
               try_cast(numero AS INTEGER) AS number, lower(coalesce(rep, '')) AS repetition,
               try_cast(replace(lon, ',', '.') AS DOUBLE) AS lon, try_cast(replace(lat, ',', '.') AS DOUBLE) AS lat
        FROM ban_rows JOIN keys k USING (nom_voie)""")  # no street name, no key: such rows are dropped below anyway
    con.execute("DROP TABLE ban_rows")
    con.execute("DELETE FROM ban WHERE lon IS NULL OR lat IS NULL OR street_key = ''")
    con.execute("UPDATE ban SET repetition = CASE repetition " + " ".join(
        f"WHEN '{short}' THEN '{full}'" for short, full in _REPETITIONS.items()) + " ELSE repetition END")
    # one row per street of a commune (or former commune): its postcodes, and the address in the
    # middle of its numbers
    con.execute(f"""CREATE TEMP TABLE streets AS
        WITH numbered AS (
            SELECT *, row_number() OVER w AS r, count(*) OVER (PARTITION BY code_insee, former, street_key) AS n
            FROM ban WINDOW w AS (PARTITION BY code_insee, former, street_key
                                  ORDER BY number = {BAN_NO_NUMBER}, number, repetition, lon, lat))
        SELECT code_insee, code_com, former, street_key, list(DISTINCT code_postal) AS postcodes,
               any_value(lon) FILTER (WHERE r = (n + 1) // 2) AS lon,
               any_value(lat) FILTER (WHERE r = (n + 1) // 2) AS lat
        FROM numbered GROUP BY code_insee, code_com, former, street_key""")
    in_commune = "(b.code_com = p.code_com OR b.former = p.code_commune)"
    numbers = con.execute(f"""
        SELECT c.idx, c.rank, b.code_insee, b.former, b.street_key, b.lon, b.lat,
               (b.repetition = c.repetition) AS same_repetition, (b.code_postal = p.code_postal) AS same_postcode,
               (b.former = p.code_commune OR b.code_insee = p.code_commune) AS same_code
        FROM candidates c JOIN places p USING (idx)
        JOIN ban b ON b.street_key = c.street_key AND b.number = c.number AND {in_commune}
        WHERE c.number IS NOT NULL AND c.number <> {BAN_NO_NUMBER}""").df()
    chosen = _best(numbers, ["same_repetition", "same_postcode", "same_code"])
    _set(result, chosen["idx"].to_numpy(dtype="int64"), chosen["lon"].to_numpy(), chosen["lat"].to_numpy(),
         schema.LOCATION_BAN_NUMBER)
    streets = con.execute(f"""
        WITH exact AS (
            SELECT c.idx, c.rank, b.code_insee, b.former, b.street_key, b.lon, b.lat, 0 AS fuzzy,
                   list_contains(b.postcodes, p.code_postal) AS same_postcode,
                   (b.former = p.code_commune OR b.code_insee = p.code_commune) AS same_code
            FROM candidates c JOIN places p USING (idx)
            JOIN streets b ON b.street_key = c.street_key AND {in_commune}),
        partial AS (  -- every word of the listed street in a longer street name ("av. de Lattre de Tassigny")
            SELECT c.idx, c.rank, b.code_insee, b.former, b.street_key, b.lon, b.lat, 1 AS fuzzy,
                   list_contains(b.postcodes, p.code_postal) AS same_postcode,
                   (b.former = p.code_commune OR b.code_insee = p.code_commune) AS same_code
            FROM candidates c JOIN places p USING (idx)
            JOIN streets b ON {in_commune} AND b.street_key <> c.street_key
                 AND len(string_split(c.street_key, ' ')) >= 2
                 AND split_part(b.street_key, ' ', 1) = split_part(c.street_key, ' ', 1)
                 AND list_has_all(string_split(b.street_key, ' '), string_split(c.street_key, ' '))
            WHERE c.idx NOT IN (SELECT idx FROM exact))
        SELECT * FROM exact UNION ALL SELECT * FROM partial""").df()
    streets["exact"] = streets["fuzzy"] == 0
    chosen = _best(streets, ["exact", "same_postcode", "same_code"])
    _set(result, chosen["idx"].to_numpy(dtype="int64"), chosen["lon"].to_numpy(), chosen["lat"].to_numpy(),
         schema.LOCATION_BAN_STREET)
    ambiguous = _ambiguous_count(streets, ["exact", "same_postcode", "same_code"])
    if ambiguous:
        result.warnings.append(
            f"{ambiguous} adresse(s) dont la voie existe plusieurs fois dans la commune sans que le code postal "
            "les départage : ces tiers-lieux n'ont pas été placés sur cette voie."
        )


def _ranked(matches: pd.DataFrame, preferences: list[str]) -> pd.DataFrame:
    """Matches of each place's first usable reading, with ``tier``: how many preferences they miss."""
    if matches.empty:
        return matches.assign(tier=pd.Series(dtype="int64"))
    matches = matches.copy()
    for column in preferences:
        matches[column] = matches[column].fillna(False).astype(bool)
    matches["score"] = sum(matches[c].astype(int) * 2 ** (len(preferences) - i) for i, c in enumerate(preferences))
    first_rank = matches.groupby("idx")["rank"].transform("min")
    matches = matches[matches["rank"] == first_rank]
    best = matches.groupby("idx")["score"].transform("max")
    return matches[matches["score"] == best]


def _best(matches: pd.DataFrame, preferences: list[str]) -> pd.DataFrame:
    """One match per place: the best by ``preferences``; a place whose best matches lie on
    different streets is left unplaced (never a guess between two streets)."""
    top = _ranked(matches, preferences)
    if top.empty:
        return pd.DataFrame({"idx": pd.Series(dtype="int64"), "lon": pd.Series(dtype="float64"),
                             "lat": pd.Series(dtype="float64")})
    streets = top.groupby("idx")[["code_insee", "former", "street_key"]].nunique(dropna=False).max(axis=1)
    single = streets[streets == 1].index
    # same street, several rows (e.g. "12" and "12 bis" when the listed address has no index): the first
    kept = top[top["idx"].isin(single)].sort_values(["idx", "lon", "lat"]).drop_duplicates("idx")
    return kept[["idx", "lon", "lat"]]


def _ambiguous_count(matches: pd.DataFrame, preferences: list[str]) -> int:
    top = _ranked(matches, preferences)
    if top.empty:
        return 0
    streets = top.groupby("idx")[["code_insee", "former", "street_key"]].nunique(dropna=False).max(axis=1)
    return int((streets > 1).sum())


def describe_precisions(precision: pd.Series) -> str:
    """French summary of how places were positioned, e.g. "3 SIRET géolocalisé INSEE, 1 commune seulement"."""
    counts = precision.value_counts()
    return ", ".join(f"{int(counts[p])} {p}" for p in schema.LOCATION_PRECISIONS if p in counts)


__all__ = [
    "ABBREVIATIONS",
    "BAN_REQUIRED",
    "AddressPart",
    "PlacementFiles",
    "PlacementResult",
    "address_parts",
    "commune_proper",
    "describe_precisions",
    "place_places",
    "street_key_sql",
    "street_keys",
]
