"""The canonical ``etablissements`` frame and the millésime of a read."""

from __future__ import annotations

import html

import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from essmap.domain import schema
from essmap.domain.nomenclature import family_of_legal_category, sector_of_naf
from essmap.io.readers.common import canonical_frame, points_from_lonlat
from essmap.io.readers.sirene.rows import without_not_diffused

#: Every character Python's ``\s`` and ``str.strip()`` take for white space (``str.isspace()``).
PYTHON_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                     "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
#: A run of them, for Arrow's regular expressions (RE2, whose ``\s`` is ASCII only).
_WHITESPACE_RUN = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PYTHON_WHITESPACE) + "]+"


def fold_spaces(values: pd.Series) -> pd.Series:
    r"""Runs of white space as one space, none at either end: ``.str.replace(r"\s+", " ",
    regex=True).str.strip()`` done by Arrow (pandas runs that regex in Python, value by value:
    half a minute on the national stock)."""
    folded = pc.utf8_trim(pc.replace_substring_regex(pa.array(values.astype("string")), _WHITESPACE_RUN, " "),
                          characters=" ")
    return pd.Series(pd.array(folded, dtype="string"), index=values.index)


def clean_sirene_text(values: pd.Series) -> pd.Series:
    """:func:`essmap.io.readers.common.clean_text` (HTML entities decoded, spaces folded, blank as
    <NA>) with the folding vectorised by :func:`fold_spaces`: same result, for millions of rows."""
    text = values.astype("string")
    entity = text.str.contains("&", regex=False).fillna(False).to_numpy(dtype=bool)
    if entity.any():
        text = text.copy()
        text[entity] = text[entity].map(html.unescape).astype("string")
    text = fold_spaces(text)
    return text.where(text != "", pd.NA).astype("string")


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    return clean_sirene_text(without_not_diffused(frame[column]))


def canonical_etablissements(frame: pd.DataFrame, synthetic: bool) -> gpd.GeoDataFrame:
    """The canonical ``etablissements`` columns (schema.ETABLISSEMENTS) with point geometry."""
    out = pd.DataFrame(index=frame.index)
    out["siret"] = frame["siret"]
    out["siren"] = frame["siren"]
    # natural persons have no denomination: first name and (usage) name
    person = _join_words(
        _text(frame, "prenomUsuelUniteLegale").fillna(_text(frame, "prenom1UniteLegale")),
        _text(frame, "nomUsageUniteLegale").fillna(_text(frame, "nomUniteLegale")),
    )
    out["denomination"] = (
        _text(frame, "denominationUniteLegale")
        .fillna(person)
        .fillna(_text(frame, "denominationUsuelleEtablissement"))
        .fillna(_text(frame, "enseigne1Etablissement"))
    )
    out["enseigne"] = _text(frame, "enseigne1Etablissement").fillna(_text(frame, "denominationUsuelleEtablissement"))
    out["categorie_juridique"] = frame["categorieJuridiqueUniteLegale"]
    out["famille"] = family_of_legal_category(frame["categorieJuridiqueUniteLegale"])
    out["activite_naf"] = frame["activitePrincipaleEtablissement"]
    out["nomenclature_naf"] = frame["nomenclatureActivitePrincipaleEtablissement"]
    out["secteur"] = sector_of_naf(
        frame["activitePrincipaleEtablissement"], frame["nomenclatureActivitePrincipaleEtablissement"]
    )
    out["employeur"] = frame["caractereEmployeurEtablissement"].fillna("").str.upper().eq("O").astype(bool)
    out["tranche_effectifs"] = frame["trancheEffectifsEtablissement"]
    out["siege"] = frame["etablissementSiege"].fillna("").str.lower().isin(["true", "1", "o", "oui"]).astype(bool)
    out["date_creation"] = frame["dateCreationEtablissement"].str[:10]
    number = frame["numeroVoieEtablissement"].fillna("") + frame["indiceRepetitionEtablissement"].fillna("")
    out["adresse"] = _join_words(
        clean_sirene_text(without_not_diffused(number)),
        _text(frame, "typeVoieEtablissement"),
        _text(frame, "libelleVoieEtablissement"),
    )
    out["code_postal"] = without_not_diffused(frame["codePostalEtablissement"])
    out["libelle_commune"] = _text(frame, "libelleCommuneEtablissement")
    out["code_commune"] = frame["code_commune"]
    out["code_departement"] = frame["code_departement"]
    for col in ("x", "y", "epsg", "source_position", "code_qp_insee_2024", "code_qp_insee_2015", "qualite_xy",
                "territoire", "epsg_metrique", "longitude", "latitude"):
        out[col] = frame[col]
    out["is_synthetic"] = synthetic
    geometry = points_from_lonlat(out["longitude"], out["latitude"])
    return canonical_frame(out, schema.ETABLISSEMENTS, geometry)


def _join_words(*parts: pd.Series) -> pd.Series:
    """Space-joined non-empty parts (vectorised); <NA> when all are empty."""
    joined = parts[0].astype("string").fillna("")
    for part in parts[1:]:
        joined = joined + " " + part.astype("string").fillna("")
    joined = fold_spaces(joined)
    return joined.where(joined != "", pd.NA).astype("string")


def generation_of(frame: pd.DataFrame) -> str:
    """Millésime: month (YYYY-MM) of the latest ``dateDernierTraitementEtablissement`` read."""
    dates = frame["dateDernierTraitementEtablissement"].dropna().str[:7]
    dates = dates[dates.str.fullmatch(r"\d{4}-\d{2}").fillna(False)]
    return str(dates.max()) if len(dates) else ""
