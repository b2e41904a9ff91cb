"""Row checks (identity, commune, territory) and positions (stock Lambert or geolocation file)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyproj import Transformer
from pyproj.exceptions import CRSError

from essmap.domain import schema
from essmap.domain.territories import (
    TERRITORIES,
    departements_of_communes,
    epsg_of_territory_codes,
    is_valid_commune_code,
    territory_codes_of_departements,
)
from essmap.io.readers.common import siret_problems, to_float
from essmap.io.readers.sirene.files import Quarantines
from essmap.io.readers.sirene.layouts import LAMBERT
from essmap.io.text import printable

NOT_DIFFUSED = "[ND]"
POSITION_STOCK = "stock_lambert"
POSITION_GEOLOC = "geolocalisation"
REASON_NO_COORDINATES = "coordonnées absentes : établissement non géolocalisé"
REASON_SWAPPED = "latitude et longitude inversées"


def _quarantine_rows(
    quarantines: Quarantines, rows: pd.DataFrame, column: str, values: pd.Series, reason: str | pd.Series
) -> None:
    """Send rows to the quarantine of their file (``_file_name``, ``_line``); ``reason`` may vary per row."""
    if rows.empty:
        return
    reasons = reason if isinstance(reason, pd.Series) else pd.Series(reason, index=rows.index)
    files = rows["_file_name"] if "_file_name" in rows else pd.Series("", index=rows.index)
    for (file_name, text), part in rows.groupby([files, reasons], sort=False):
        quarantines.of(str(file_name)).add(
            part["_line"].to_numpy(), column, values.loc[part.index].to_numpy(), str(text)
        )


@dataclass
class FirstOccurrences:
    """Where the SIRETs that a read holds several times were first seen (file name, line), for a
    read checked part by part in file order: a later part's row with such a SIRET is a duplicate."""

    #: the SIRETs held more than once (the only ones worth remembering)
    repeated: set[str] = field(default_factory=set)
    seen: dict[str, tuple[str, int]] = field(default_factory=dict)


def check_rows(frame: pd.DataFrame, quarantines: Quarantines, first: FirstOccurrences | None = None) -> pd.DataFrame:
    """Identity and place checks; each rejected row is quarantined once, for its first problem.

    ``first``: the first occurrences of repeated SIRETs in the parts checked before (updated)."""
    frame = frame.copy()
    frame["siret"] = frame["siret"].fillna("")
    frame["siren"] = frame["siren"].fillna("")

    problems = siret_problems(frame["siret"])
    mismatch = problems.isna() & (frame["siret"].str[:9] != frame["siren"])
    problems = problems.where(~mismatch, "SIRET invalide : ne commence pas par le SIREN " + frame["siren"])
    bad = problems.notna()
    _quarantine_rows(quarantines, frame[bad], "siret", frame["siret"], problems[bad])
    frame = frame[~bad]

    seen = first.seen if first is not None else {}
    duplicated = frame.duplicated("siret", keep="first")
    if seen:
        duplicated |= frame["siret"].isin(list(seen)).fillna(False)
    if duplicated.any():
        here = frame[~duplicated].drop_duplicates("siret").set_index("siret")

        def where(siret: str) -> str:
            file_name, line = seen[siret] if siret in seen else (here.at[siret, "_file_name"], here.at[siret, "_line"])
            return f"fichier « {file_name} », ligne {line}"

        reasons = ("SIRET en double : seule la première occurrence (" + frame.loc[duplicated, "siret"].map(where)
                   + ") est conservée")
        _quarantine_rows(quarantines, frame[duplicated], "siret", frame["siret"], reasons)
        frame = frame[~duplicated]
    if first is not None and first.repeated:
        firsts = frame[frame["siret"].isin(list(first.repeated)).fillna(False).to_numpy(dtype=bool)]
        seen.update((s, (str(f), int(n))) for s, f, n in zip(firsts["siret"], firsts["_file_name"], firsts["_line"],
                                                             strict=True))

    raw = frame["codeCommuneEtablissement"].fillna("").str.strip().str.upper()
    commune = raw.where(~raw.str.fullmatch(r"\d{4}"), raw.str.zfill(5))
    valid = _per_distinct_value(commune, lambda codes: codes.map(is_valid_commune_code)).astype(bool)
    abroad = ~valid & frame["codePaysEtrangerEtablissement"].notna()
    _quarantine_rows(
        quarantines, frame[abroad], "codePaysEtrangerEtablissement", frame["codePaysEtrangerEtablissement"],
        "établissement situé à l'étranger : hors du champ de la carte",
    )
    invalid = ~valid & ~abroad
    _quarantine_rows(
        quarantines, frame[invalid], "codeCommuneEtablissement", frame["codeCommuneEtablissement"],
        "code commune invalide : 5 caractères attendus (chiffres, ou 2A/2B suivis de 3 chiffres)",
    )
    frame = frame[valid].copy()
    frame["code_commune"] = commune[valid]
    frame["code_departement"] = departements_of_communes(frame["code_commune"])
    frame["territoire"] = _per_distinct_value(frame["code_departement"], territory_codes_of_departements).astype(
        "string")
    uncovered = frame["territoire"] == ""
    _quarantine_rows(
        quarantines, frame[uncovered], "codeCommuneEtablissement", frame["codeCommuneEtablissement"],
        "territoire non couvert par essmap (collectivité d'outre-mer du Pacifique ou code inconnu)",
    )
    return frame[~uncovered]


def _per_distinct_value(values: pd.Series, function: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``function(values)``, computed once per distinct value (a few thousand commune or
    département codes among millions of rows) and spread back to the rows."""
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    result = function(pd.Series(distinct, dtype=values.dtype))
    return pd.Series(result.to_numpy()[codes], index=values.index, dtype=result.dtype)


_TRANSFORMERS: dict[int, Transformer | None] = {}


def _transformer(epsg: int) -> Transformer | None:
    if epsg not in _TRANSFORMERS:
        try:
            _TRANSFORMERS[epsg] = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
        except CRSError:
            _TRANSFORMERS[epsg] = None
    return _TRANSFORMERS[epsg]


def _to_lonlat(x: np.ndarray, y: np.ndarray, epsg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised projection to WGS84, one transformer per EPSG code (NaN when impossible)."""
    lon = np.full(len(x), np.nan)
    lat = np.full(len(x), np.nan)
    usable = np.isfinite(x) & np.isfinite(y) & (epsg > 0)
    for code in np.unique(epsg[usable]):
        transformer = _transformer(int(code))
        if transformer is None:
            continue
        rows = usable & (epsg == code)
        if code == 4326:
            lon[rows], lat[rows] = x[rows], y[rows]
        else:
            lon[rows], lat[rows] = transformer.transform(x[rows], y[rows], errcheck=False)
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    lon[bad] = np.nan
    lat[bad] = np.nan
    return lon, lat


def _inside(territories: pd.Series, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(lon), dtype=bool)
    codes = territories.to_numpy(dtype=object)
    for code, territory in TERRITORIES.items():
        rows = codes == code
        if rows.any():
            inside[rows] = territory.contains_lonlat(lon[rows], lat[rows])
    return inside


def place_rows(
    frame: pd.DataFrame, geo: pd.DataFrame | None, quarantines: Quarantines, warnings: list[str],
    unexpected: UnexpectedQpv | None = None,
) -> pd.DataFrame:
    """Positions from the geolocation file when it has the SIRET, else from the stock's Lambert
    coordinates; rows without a position or outside their territory are quarantined.

    A problem with a position taken from the geolocation file is reported on that file's line.
    ``unexpected`` collects INSEE's QPV values of unexpected form over several parts (the caller
    then adds its warnings); without it, they are warned about here.
    """
    own = unexpected is None
    unexpected = UnexpectedQpv() if unexpected is None else unexpected
    frame = frame.copy()
    frame["epsg_metrique"] = _per_distinct_value(frame["territoire"], epsg_of_territory_codes).to_numpy()
    raw_x = frame["coordonneeLambertAbscisseEtablissement"]
    raw_y = frame["coordonneeLambertOrdonneeEtablissement"]
    x = to_float(without_not_diffused(raw_x)).to_numpy(copy=True)
    y = to_float(without_not_diffused(raw_y)).to_numpy(copy=True)
    epsg = frame["epsg_metrique"].to_numpy(dtype="int64").copy()
    lon, lat = _to_lonlat(x, y, epsg)
    source = np.where(np.isfinite(x) & np.isfinite(y), POSITION_STOCK, "")
    # where a problem with the position is reported
    where_file = frame["_file_name"].copy()
    where_line = frame["_line"].to_numpy(dtype="int64").copy()
    where_column = pd.Series(LAMBERT[0], index=frame.index, dtype="string")
    where_value = ("x=" + raw_x.fillna("") + " ; y=" + raw_y.fillna("")).astype("string")
    from_wgs84 = np.zeros(len(frame), dtype=bool)

    if geo is not None and len(geo):
        dup = geo.duplicated("siret", keep="first")
        if dup.any():
            warnings.append(
                f"Géolocalisation : {int(dup.sum())} SIRET présents plusieurs fois ; "
                "seule la première ligne de chacun a été utilisée."
            )
        g = geo[~dup].set_index("siret").reindex(frame["siret"].to_numpy())
        g.index = frame.index
        glon, glat = to_float(g["x_longitude"]).to_numpy(), to_float(g["y_latitude"]).to_numpy()
        gx, gy = to_float(g["x"]).to_numpy(), to_float(g["y"]).to_numpy()
        # "2154", or "EPSG:2154" in some exports
        gepsg = pd.to_numeric(g["epsg"].str.extract(r"(\d+)\s*$")[0], errors="coerce").fillna(0).to_numpy(dtype="int64")
        has_wgs84 = np.isfinite(glon) & np.isfinite(glat)
        has_projected = np.isfinite(gx) & np.isfinite(gy) & (gepsg > 0)
        use = has_wgs84 | has_projected
        plon, plat = _to_lonlat(gx, gy, gepsg)
        lon = np.where(has_wgs84, glon, np.where(use, plon, lon))
        lat = np.where(has_wgs84, glat, np.where(use, plat, lat))
        # x, y, epsg as published by the geolocation file (its WGS84 pair when x/y are missing)
        x = np.where(has_projected, gx, np.where(use, glon, x))
        y = np.where(has_projected, gy, np.where(use, glat, y))
        epsg = np.where(has_projected, gepsg, np.where(use, 4326, epsg))
        source = np.where(use, POSITION_GEOLOC, source)
        from_wgs84 = has_wgs84
        where_file = where_file.where(~use, g["_geo_file"])
        where_line = np.where(use, g["_geo_line"].fillna(0).to_numpy(dtype="int64"), where_line)
        where_column = where_column.where(~use, np.where(has_wgs84, "x_longitude", "x"))
        geo_value = np.where(
            has_wgs84,
            "x_longitude=" + g["x_longitude"].fillna("") + " ; y_latitude=" + g["y_latitude"].fillna(""),
            "x=" + g["x"].fillna("") + " ; y=" + g["y"].fillna("") + " ; epsg=" + g["epsg"].fillna(""),
        )
        where_value = where_value.where(~use, geo_value)

    frame["code_qp_insee_2024"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["code_qp_insee_2015"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["qualite_xy"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    if geo is not None and len(geo):
        for generation, codes in insee_qpv_codes(g, unexpected).items():
            frame[schema.insee_qpv_column(generation)] = codes.where(use, pd.NA)
        quality = g["qualite_xy"].astype("string").str.strip() if "qualite_xy" in g else frame["qualite_xy"]
        frame["qualite_xy"] = quality.where(use & quality.notna() & (quality != ""), pd.NA)
    if own:
        warnings.extend(unexpected.warnings())
    frame["x"], frame["y"], frame["epsg"] = x, y, epsg
    frame["longitude"], frame["latitude"] = lon, lat
    frame["source_position"] = pd.Series(source, index=frame.index, dtype="string")
    report = frame[[]].assign(_file_name=where_file, _line=where_line)

    missing = source == ""
    # (reasons of the rows without a position only: a text per row of the stock is 0.5 GB)
    not_diffused = raw_x[missing].fillna("").str.strip().eq(NOT_DIFFUSED).to_numpy()
    reasons = pd.Series(
        np.where(not_diffused, REASON_NO_COORDINATES + " (coordonnées non diffusibles [ND])", REASON_NO_COORDINATES),
        index=frame.index[missing],
    )
    _quarantine_rows(quarantines, report[missing], LAMBERT[0], where_value, reasons)

    inside = _inside(frame["territoire"], lon, lat) & ~missing
    outside = ~missing & ~inside
    if outside.any():
        rows = frame[outside]
        o_lon, o_lat, o_x, o_y, o_epsg = lon[outside], lat[outside], x[outside], y[outside], epsg[outside]
        names = rows["territoire"].map(lambda t: TERRITORIES[t].name if t in TERRITORIES else t)
        computed = np.isfinite(o_lon)
        reason = pd.Series(
            [
                f"coordonnées hors du territoire du département ({name}) : point calculé en lon/lat {a:.6f}, {b:.6f}"
                if ok else f"coordonnées inutilisables (EPSG {code} inconnu ou valeurs invalides)"
                for name, a, b, ok, code in zip(names, o_lon, o_lat, computed, o_epsg, strict=True)
            ],
            index=rows.index,
        )
        # swapped axes: the point falls inside its territory once the two values are exchanged
        swapped_lonlat = _inside(rows["territoire"], o_lat, o_lon) & from_wgs84[outside]
        s_lon, s_lat = _to_lonlat(o_y, o_x, o_epsg)
        swapped_xy = _inside(rows["territoire"], s_lon, s_lat) & ~from_wgs84[outside] & ~swapped_lonlat
        reason[swapped_lonlat] = REASON_SWAPPED + " (x_longitude et y_latitude échangées) : corrigez le fichier"
        reason[swapped_xy] = "abscisse et ordonnée inversées (x et y échangés) : corrigez le fichier"
        for column, part in report[outside].groupby(where_column[outside], sort=False):
            _quarantine_rows(quarantines, part, str(column), where_value, reason[part.index])
    return frame[inside]


_QPV_CODE = r"Q[NP][0-9A-Z]{6}"
#: Code prefix of each QPV generation.
_QPV_PREFIX = {"2024": "QN", "2015": "QP"}


@dataclass
class UnexpectedQpv:
    """INSEE QPV values of unexpected form met in a read (by generation): how many, and the first
    three distinct ones in file order, for one warning per generation."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, generation: str, values: pd.Series) -> None:
        """Count ``values`` (the unexpected ones of a part, in file order)."""
        self.counts[generation] = self.counts.get(generation, 0) + len(values)
        examples = self.examples.setdefault(generation, [])
        for value in values.drop_duplicates():
            if len(examples) >= 3:
                break
            if value not in examples:
                examples.append(str(value))

    def warnings(self) -> list[str]:
        """One French warning per generation with unexpected values."""
        out = []
        for generation in _QPV_PREFIX:  # newest generation first, whatever the order met
            count = self.counts.get(generation, 0)
            if not count:
                continue
            examples = ", ".join(f"« {printable(v, limit=20)} »" for v in self.examples[generation])
            out.append(
                f"Géolocalisation : {count} QPV {generation} attribué(s) par l'INSEE de forme inattendue "
                f"({examples}) : gardés tels quels, ils compteront comme désaccords dans la concordance."
            )
        return out


def insee_qpv_codes(geo: pd.DataFrame, unexpected: UnexpectedQpv) -> dict[str, pd.Series]:
    """INSEE's QPV of each row of the geolocation file, for each generation.

    ``plg_qp24`` and ``plg_qp15`` name their generation; ``plg_qp`` (edition of 2024) is the
    current generation when the file also has ``plg_qp15``, the 2015 one in older files. Values:
    a QPV code; :data:`~essmap.domain.schema.INSEE_OUTSIDE_QPV` for an empty value or a short
    marker (INSEE's "not in a QPV"); <NA> where the file has no column for the generation. A
    value that is none of those (or a code of the other generation) is kept as published and
    counted in ``unexpected``: it will show as a disagreement.
    """
    def column(name: str) -> pd.Series:
        return geo[name].astype("string") if name in geo else pd.Series(pd.NA, index=geo.index, dtype="string")

    qp24, qp, qp15 = column("plg_qp24"), column("plg_qp"), column("plg_qp15")
    raw = {
        "2024": qp24.fillna(qp.where(qp15.notna())),
        "2015": qp15.fillna(qp.where(qp15.isna() & qp24.isna())),
    }
    out: dict[str, pd.Series] = {}
    for generation, values in raw.items():
        text = values.str.strip().str.upper()
        code = text.str.fullmatch(_QPV_CODE).fillna(False) & text.str.startswith(_QPV_PREFIX[generation]).fillna(False)
        marker = text.str.fullmatch(r"[A-Z]{0,3}").fillna(False)
        result = values.str.strip().where(~code, text).where(~marker, schema.INSEE_OUTSIDE_QPV)
        odd = text.notna() & ~code & ~marker
        if odd.any():
            unexpected.add(generation, values[odd])
        out[generation] = result.astype("string")
    return out


def without_not_diffused(values: pd.Series) -> pd.Series:
    return values.where(values.fillna("").str.strip() != NOT_DIFFUSED, pd.NA)
