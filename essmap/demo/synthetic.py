"""Synthetic, clearly labelled ESS establishments and tiers-lieux for the embedded demo.

Why: real establishment positions (SIRENE) and the national tiers-lieux census cannot be
downloaded offline, yet the demo must show a realistic map. So this module writes *files in the
official formats* (INSEE ``StockUniteLegale`` / ``StockEtablissement``, France Tiers-Lieux census)
that then go through the same readers as real files. A manifest (``essmap-synthetic.json``)
lists them, and the readers flag every row of a listed file ``is_synthetic``. Every name carries
the marker "(SIMULÉ)" / "(SIMULÉE)" (tiers-lieux: "(simulé)") so no row can pass for a real
organisation. Output is byte-identical for the same inputs, seed and scale.

Assumptions and numbers (facts from ``docs/domain.md``, the rest labelled as assumptions):

- Employer ESS establishments: 207,894 in France (Observatoire national de l'ESS, INSEE Flores
  2021) for about 68 M inhabitants, i.e. 30.6 per 10,000 inhabitants, times ``scale``.
- Non-employer ESS establishments: 3 times the employer ones (assumption: SIRENE holds many
  more non-employer associations than employer ones; no published figure is used).
- Family mix of employer establishments: associations 76.6 % (published); coopératives 11.9 %,
  mutuelles 5.0 %, fondations 1.5 %, sociétés commerciales de l'ESS 5.0 % (approximations).
  Non-employer mix (assumption): associations 93 %, coopératives 3 %, mutuelles 0.5 %,
  fondations 1 %, sociétés commerciales 2.5 %.
- In QPV: nationally 10,808 of the 207,894 employer establishments (5.2 %); 6 % is used here
  (PACA has more QPV residents than average: assumption), for employers and non-employers.
  Family mix in QPV: associations 88.6 %, coopératives 6.4 %, mutuelles 3.1 %, fondations 1.9 %
  (published); the mix outside QPV is set so that the overall mix meets the targets above.
- Sectors: NAF rév. 2 codes weighted so that action sociale (87-88) is the largest employer
  sector and 94.99Z the largest non-employer one (plausible ESS profile, not published weights).
  0.2 % of establishments carry an old nomenclature (``NAFRev1``, e.g. ``85.3K``).
- Size bands: skewed small; hospitals, nursing homes, ESAT and head offices of mutual insurers
  and cooperative banks get large bands (50 to 999 employees).
- Extra rows so the readers' filters are exercised: 300 non-ESS units (flag 'N') and closed
  establishments (2 % of ESS establishments, ``etatAdministratifEtablissement='F'``), times
  ``scale`` (at least 5 of each).
- Positions: a commune drawn with probability proportional to population (for Paris, Lyon and
  Marseille: the arrondissements, as SIRENE codes them), then a uniform point inside it, outside
  any QPV. In-QPV establishments: a piece "QPV x commune" of the département drawn
  proportionally to its area, then a uniform point inside it. Establishments of one legal unit
  stay in its head office's département. Coordinates in Lambert-93 (or the territory's metric
  CRS), rounded to 0.1 m as SIRENE publishes them; each rounded point is checked to fall back
  inside its polygon once converted to WGS84 as the reader does.
- Legal units: most have one establishment; cooperative banks, mutual insurers and some large
  associations run networks (4 to 30 sites, at most 5 % of their family's establishments).
- Identifiers: SIREN = "0" + 7 random digits + Luhn key, SIRET = SIREN + NIC (4-digit rank + key).
  A collision with a real SIREN cannot be ruled out: the name marker and the manifest, not the
  number, are what identify synthetic rows.
- Postcodes: no postcode table ships with essmap, so a *pseudo* postcode is derived from the
  département and commune code (real ones only for the arrondissements: 13001-13016,
  75001-75020, 69001-69009). It is plausible, not La Poste's.
- Tiers-lieux: 3,757 in France (France Tiers-Lieux map) for 68 M inhabitants, 5.5 per 100,000,
  times ``scale``; communes drawn by population with twice the weight above 10,000 inhabitants
  (assumption: more in urban communes), 12 % inside a QPV (assumption). ANCT labels: Fabrique de
  territoire 407 of 3,757 places (10.8 %), Manufacture de proximité 100 of 3,757 (2.7 %).
- Dates: fixed reference date 2025-11-01, nothing depends on the clock.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from essmap.domain import nomenclature as nom
from essmap.domain.territories import departements_of_communes, territory_of_departement

# --- Published figures and assumptions (see the module docstring) ------------------------------

FRANCE_POPULATION = 68_000_000
FRANCE_EMPLOYER_ESTABLISHMENTS = 207_894
FRANCE_EMPLOYER_IN_QPV = 10_808
FRANCE_TIERS_LIEUX = 3_757
FABRIQUES_DE_TERRITOIRE = 407
MANUFACTURES_DE_PROXIMITE = 100

EMPLOYER_PER_INHABITANT = FRANCE_EMPLOYER_ESTABLISHMENTS / FRANCE_POPULATION
NON_EMPLOYER_RATIO = 3.0
QPV_SHARE = 0.06
NON_ESS_UNITS = 300
CLOSED_SHARE = 0.02
OLD_NOMENCLATURE_SHARE = 0.002
TIERS_LIEUX_PER_INHABITANT = FRANCE_TIERS_LIEUX / FRANCE_POPULATION
TIERS_LIEUX_QPV_SHARE = 0.12
TIERS_LIEUX_URBAN_POPULATION = 10_000
TIERS_LIEUX_URBAN_WEIGHT = 2.0

EMPLOYER_FAMILY_MIX: dict[str, float] = {
    nom.ASSOCIATION: 0.766,
    nom.COOPERATIVE: 0.119,
    nom.MUTUELLE: 0.050,
    nom.FONDATION: 0.015,
    nom.SOCIETE_COMMERCIALE: 0.050,
}
QPV_EMPLOYER_FAMILY_MIX: dict[str, float] = {
    nom.ASSOCIATION: 0.886,
    nom.COOPERATIVE: 0.064,
    nom.MUTUELLE: 0.031,
    nom.FONDATION: 0.019,
    nom.SOCIETE_COMMERCIALE: 0.0,
}
NON_EMPLOYER_FAMILY_MIX: dict[str, float] = {
    nom.ASSOCIATION: 0.930,
    nom.COOPERATIVE: 0.030,
    nom.MUTUELLE: 0.005,
    nom.FONDATION: 0.010,
    nom.SOCIETE_COMMERCIALE: 0.025,
}

REFERENCE_DATE = np.datetime64("2025-11-01")
EFFECTIFS_YEAR = "2023"
CATEGORIE_YEAR = "2022"

UNITE_LEGALE_FILE = "StockUniteLegale_utf8.csv"
ETABLISSEMENT_FILE = "StockEtablissement_utf8.csv"
TIERS_LIEUX_FILE = "tiers_lieux_simules.csv"
MANIFEST_FILE = "essmap-synthetic.json"
NOTICE = (
    "Données simulées : établissements de l'ESS et tiers-lieux fictifs générés par essmap "
    "(module essmap.demo.synthetic) pour la démonstration, faute de positions réelles disponibles "
    "hors ligne. Aucune ligne ne décrit une organisation réelle ; chaque nom porte la mention "
    "« (SIMULÉ) » ou « (SIMULÉE) ». Volumes, familles et secteurs suivent des ordres de grandeur "
    "nationaux publiés ; les positions suivent la population des communes."
)

MARKER_M = "(SIMULÉ)"
MARKER_F = "(SIMULÉE)"
SPECIAL_NAMES = (
    "ESCALE &amp; CO (SIMULÉE)",
    "<script>alert(1)</script> (SIMULÉE)",
    'LES AMIS DU "VIEUX MOULIN", QUARTIER NORD (SIMULÉE)',
)

# --- Activity tables: (legal category, NAF rév. 2, share of establishments, network, bands) ----
# "network" is the profile of establishments per legal unit, "bands" the size-band profile.

_Row = tuple[str, str, float, str, str]
#: (lon, lat, epsg) -> (x, y, lon, lat) as a file will publish them and a reader compute them back.
Quantiser = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

_EMPLOYER_TABLES: dict[str, tuple[_Row, ...]] = {
    nom.ASSOCIATION: (
        ("9220", "88.99B", 12, "few", "small"), ("9220", "88.10A", 4, "few", "medium"),
        ("9220", "88.10B", 2, "few", "medium"), ("9220", "88.10C", 2, "few", "large"),
        ("9220", "88.91A", 4, "few", "medium"), ("9220", "88.91B", 1.5, "few", "medium"),
        ("9220", "88.99A", 1.5, "few", "small"), ("9220", "87.10A", 2.5, "few", "large"),
        ("9220", "87.20A", 1.5, "few", "large"), ("9220", "87.30A", 1, "solo", "medium"),
        ("9220", "87.90B", 1.5, "few", "medium"), ("9230", "87.90A", 1, "few", "medium"),
        ("9230", "88.99B", 1.5, "network", "small"), ("9221", "88.99B", 1.5, "solo", "medium"),
        ("9221", "81.30Z", 0.8, "solo", "medium"), ("9221", "38.32Z", 0.4, "solo", "medium"),
        ("9222", "78.30Z", 0.8, "solo", "small"), ("9223", "78.30Z", 0.6, "solo", "small"),
        ("9220", "85.59A", 5, "few", "small"), ("9220", "85.59B", 4, "solo", "small"),
        ("9220", "85.20Z", 2.5, "solo", "medium"), ("9220", "85.31Z", 2, "solo", "medium"),
        ("9220", "85.10Z", 0.5, "solo", "small"), ("9220", "93.12Z", 8, "solo", "small"),
        ("9220", "93.11Z", 1, "solo", "small"), ("9220", "93.29Z", 3, "solo", "small"),
        ("9220", "90.01Z", 4, "solo", "small"), ("9220", "90.04Z", 1, "solo", "small"),
        ("9220", "91.02Z", 0.5, "solo", "small"), ("9220", "94.99Z", 12, "solo", "small"),
        ("9230", "94.99Z", 0.5, "few", "small"), ("9220", "94.12Z", 1, "solo", "small"),
        ("9220", "86.10Z", 0.5, "few", "large"), ("9220", "86.21Z", 1, "solo", "small"),
        ("9220", "55.20Z", 1, "solo", "small"), ("9220", "56.10A", 0.5, "solo", "small"),
        ("9220", "68.20B", 0.3, "solo", "small"), ("9220", "82.30Z", 0.5, "solo", "small"),
        ("9220", "70.22Z", 0.5, "solo", "small"), ("9220", "01.13Z", 0.3, "solo", "small"),
    ),
    nom.COOPERATIVE: (
        ("5192", "64.19Z", 10, "network", "agency"), ("5194", "64.19Z", 14, "network", "agency"),
        ("5196", "64.19Z", 10, "network", "agency"), ("6317", "11.02B", 8, "solo", "small"),
        ("6317", "46.21Z", 3, "few", "small"), ("6317", "10.41A", 1, "solo", "small"),
        ("6318", "46.21Z", 1.5, "few", "medium"), ("6316", "01.61Z", 3, "solo", "small"),
        ("6316", "01.11Z", 1, "solo", "small"), ("5458", "43.21A", 3, "solo", "small"),
        ("5458", "41.20A", 2, "solo", "small"), ("5458", "71.12B", 2, "solo", "small"),
        ("5458", "62.01Z", 2, "solo", "small"), ("5458", "58.14Z", 0.5, "solo", "small"),
        ("5458", "74.10Z", 1, "solo", "small"), ("5458", "56.10A", 2, "solo", "small"),
        ("5458", "85.59A", 1.5, "solo", "small"), ("5458", "90.01Z", 1, "solo", "small"),
        ("5458", "49.41A", 1, "solo", "small"), ("5558", "43.99C", 1.5, "few", "medium"),
        ("5558", "25.62B", 1, "few", "medium"), ("5658", "33.12Z", 0.5, "few", "medium"),
        ("5460", "70.22Z", 2, "solo", "small"), ("5460", "88.99B", 1, "solo", "small"),
        ("5560", "35.11Z", 1, "solo", "small"), ("5460", "56.10A", 1, "solo", "small"),
        ("5552", "47.11F", 3, "few", "medium"), ("5552", "46.73A", 1, "few", "medium"),
        ("5547", "68.20A", 1.5, "few", "medium"), ("5451", "47.11D", 1, "few", "small"),
        ("5455", "49.41A", 0.5, "solo", "small"), ("5443", "41.10A", 0.5, "solo", "small"),
    ),
    nom.MUTUELLE: (
        ("8210", "65.12Z", 22, "network", "agency"), ("8210", "86.23Z", 6, "few", "small"),
        ("8210", "86.21Z", 4, "few", "small"), ("8210", "47.78A", 5, "few", "small"),
        ("8210", "87.10A", 4, "few", "large"), ("8210", "86.10Z", 3, "few", "large"),
        ("8210", "88.10A", 2, "few", "medium"), ("8250", "65.12Z", 18, "network", "agency"),
        ("6411", "65.12Z", 20, "network", "agency"), ("8290", "65.12Z", 4, "few", "small"),
        ("8290", "66.22Z", 2, "solo", "small"),
    ),
    nom.FONDATION: (
        ("9300", "87.10A", 20, "few", "large"), ("9300", "86.10Z", 12, "few", "large"),
        ("9300", "88.99B", 15, "few", "small"), ("9300", "87.20A", 10, "few", "large"),
        ("9300", "88.10C", 4, "few", "large"), ("9300", "85.59A", 6, "solo", "small"),
        ("9300", "72.19Z", 8, "solo", "medium"), ("9300", "94.99Z", 10, "solo", "small"),
        ("9300", "91.02Z", 4, "solo", "small"), ("9300", "85.31Z", 5, "solo", "medium"),
    ),
    nom.SOCIETE_COMMERCIALE: (
        ("5710", "88.99B", 10, "few", "small"), ("5710", "78.20Z", 6, "few", "small"),
        ("5499", "81.30Z", 6, "solo", "small"), ("5710", "38.32Z", 5, "few", "medium"),
        ("5499", "47.79Z", 5, "solo", "small"), ("5499", "56.10A", 8, "solo", "small"),
        ("5710", "70.22Z", 8, "solo", "small"), ("5710", "62.01Z", 5, "solo", "small"),
        ("5710", "35.11Z", 5, "solo", "small"), ("5499", "43.39Z", 5, "solo", "small"),
        ("5710", "85.59A", 8, "few", "small"), ("5710", "87.30A", 3, "few", "medium"),
        ("5710", "49.42Z", 2, "solo", "small"), ("5710", "10.71C", 2, "solo", "small"),
        ("5499", "90.01Z", 3, "solo", "small"),
    ),
}

_NON_EMPLOYER_TABLES: dict[str, tuple[_Row, ...]] = {
    nom.ASSOCIATION: (
        ("9220", "94.99Z", 40, "solo", ""), ("9220", "93.12Z", 14, "solo", ""),
        ("9220", "93.29Z", 6, "solo", ""), ("9220", "93.19Z", 2, "solo", ""),
        ("9220", "90.01Z", 8, "solo", ""), ("9220", "90.03A", 2, "solo", ""),
        ("9220", "90.02Z", 1, "solo", ""), ("9220", "88.99B", 5, "solo", ""),
        ("9220", "85.59B", 4, "solo", ""), ("9220", "91.02Z", 0.5, "solo", ""),
        ("9220", "55.20Z", 0.5, "solo", ""), ("9220", "01.13Z", 0.5, "solo", ""),
        ("9220", "94.12Z", 1, "solo", ""), ("9220", "68.20B", 0.5, "solo", ""),
        ("9230", "94.99Z", 0.3, "solo", ""), ("9210", "94.99Z", 0.2, "solo", ""),
    ),
    nom.COOPERATIVE: (
        ("6316", "01.61Z", 20, "solo", ""), ("6316", "01.11Z", 10, "solo", ""),
        ("6317", "11.02B", 4, "solo", ""), ("5560", "64.19Z", 12, "solo", ""),
        ("5458", "62.01Z", 5, "solo", ""), ("5458", "43.21A", 4, "solo", ""),
        ("5460", "70.22Z", 8, "solo", ""), ("5443", "41.10A", 3, "solo", ""),
        ("6543", "68.20B", 5, "solo", ""),
    ),
    nom.MUTUELLE: (
        ("8210", "65.12Z", 45, "solo", ""), ("8290", "65.12Z", 25, "solo", ""),
        ("8250", "65.12Z", 20, "solo", ""), ("6411", "65.12Z", 5, "solo", ""),
    ),
    nom.FONDATION: (
        ("9300", "94.99Z", 60, "solo", ""), ("9300", "88.99B", 12, "solo", ""),
        ("9300", "91.02Z", 10, "solo", ""), ("9300", "72.19Z", 8, "solo", ""),
        ("9300", "85.59B", 5, "solo", ""),
    ),
    nom.SOCIETE_COMMERCIALE: (
        ("5710", "70.22Z", 25, "solo", ""), ("5710", "62.01Z", 15, "solo", ""),
        ("5499", "47.79Z", 10, "solo", ""), ("5710", "35.11Z", 15, "solo", ""),
        ("5499", "43.39Z", 10, "solo", ""), ("5710", "85.59A", 10, "solo", ""),
        ("5710", "68.20B", 15, "solo", ""),
    ),
}

#: Non-ESS units (flag 'N'): ordinary companies the reader must drop.
_NON_ESS_TABLE: tuple[_Row, ...] = (
    ("5710", "62.01Z", 3, "solo", "small"), ("5499", "47.11F", 2, "solo", "small"),
    ("5499", "56.10A", 3, "solo", "small"), ("5710", "43.21A", 2, "solo", "small"),
    ("5499", "68.31Z", 2, "solo", "small"), ("5499", "45.20A", 1, "solo", "small"),
)

_OLD_NAF_CODES = ("85.3K", "91.3E", "92.6C")

_NETWORKS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "solo": (np.array([1, 2, 3]), np.array([0.93, 0.05, 0.02])),
    "few": (np.array([1, 2, 3, 4, 5, 6, 8]), np.array([0.55, 0.2, 0.1, 0.06, 0.04, 0.03, 0.02])),
    "network": (np.arange(4, 31), 1.0 / np.arange(4, 31)),
}

_BANDS = np.array(["00", "01", "02", "03", "11", "12", "21", "22", "31", "32", "41"])
_BAND_PROFILES: dict[str, np.ndarray] = {
    "small": np.array([4, 32, 22, 14, 13, 9, 4, 1.5, 0.3, 0.2, 0]),
    "medium": np.array([1, 8, 14, 16, 24, 24, 9, 3, 0.5, 0.4, 0.1]),
    "large": np.array([0, 2, 3, 5, 12, 28, 25, 15, 4, 4, 2]),
    "agency": np.array([0, 10, 35, 30, 20, 5, 0, 0, 0, 0, 0]),
    "head_office": np.array([0, 0, 0, 0, 2, 8, 20, 25, 10, 20, 15]),
}
#: Lower headcount bound of each band, to derive a legal unit's band from its establishments.
_BAND_FLOORS = (
    (10000, "53"), (5000, "52"), (2000, "51"), (1000, "42"), (500, "41"), (250, "32"),
    (200, "31"), (100, "22"), (50, "21"), (20, "12"), (10, "11"), (6, "03"), (3, "02"),
    (1, "01"), (0, "00"),
)

# --- Words for names and addresses -------------------------------------------------------------

_THEMES = (
    "ENTRAIDE", "SOLIDARITÉ", "ACCUEIL ET PARTAGE", "HORIZONS", "LES CIGALES", "L'ESCALE",
    "LE LIEN", "ARC-EN-CIEL", "PASSERELLE", "TREMPLIN", "RENCONTRES", "ÉCHANGES", "AVENIR",
    "LA BOUSSOLE", "L'OLIVIER", "ÉLAN", "LES ALIZÉS", "CŒUR VAILLANT", "L'ÉTOILE", "TERRE D'ACCUEIL",
    "LE FIL D'ARIANE", "MOSAÏQUE", "TOUS ENSEMBLE", "LA RUCHE", "LE PHARE", "CLAIR MATIN",
)
_PLACES = (
    "DU PANIER", "DES CALANQUES", "DU VIEUX PORT", "DE LA DURANCE", "DES OLIVIERS", "DU MISTRAL",
    "DE LA COLLINE", "DU CANAL", "DE L'ÉTANG", "DU MOULIN", "DES LAVANDES", "DU PLATEAU",
    "DU BELVÉDÈRE", "DES QUATRE CHEMINS", "DE LA GARRIGUE", "DU VALLON", "DES PINS", "DU LITTORAL",
)
_STREET_TYPES = np.array(["RUE", "AV", "BD", "CHE", "PL", "ALL", "RTE", "IMP", "QUAI", "CRS", "TRA"])
_STREET_TYPE_WEIGHTS = np.array([40, 18, 8, 10, 5, 4, 5, 4, 1, 2, 3], dtype=float)
_STREET_NAMES = np.array([
    "DE LA REPUBLIQUE", "JEAN JAURES", "DES OLIVIERS", "DU PORT", "PASTEUR", "DES CIGALES",
    "VICTOR HUGO", "DE LA LIBERATION", "GAMBETTA", "DES ECOLES", "DU MOULIN", "DE LA GARE",
    "DES LILAS", "DU CHATEAU", "DES PLATANES", "DE LA FONTAINE", "DES ARTISANS", "DU STADE",
    "DES ROMARINS", "DU FOUR", "DE LA MER", "DES CAPUCINS", "DE L'EGLISE", "DES MIMOSAS",
])
_LIEUX_DITS = np.array(["LES BASTIDES", "LE PLAN", "LES MAYES", "LA BEGUDE", "LES GRANGES", "LE CLOS"])

_STREET_WORDS = {
    "RUE": "rue", "AV": "avenue", "BD": "boulevard", "CHE": "chemin", "PL": "place", "ALL": "allée",
    "RTE": "route", "IMP": "impasse", "QUAI": "quai", "CRS": "cours", "TRA": "traverse", "LD": "lieu-dit",
}
_TIERS_LIEUX_TYPES = np.array([
    "Coworking", "Fablab / atelier partagé", "Friche culturelle", "Tiers-lieu nourricier",
    "Numérique", "Atelier artisanal partagé", "Laboratoire d'innovation sociale",
    "Tiers-lieu de services publics",
])
_TIERS_LIEUX_TYPE_WEIGHTS = np.array([30, 20, 12, 10, 12, 8, 5, 3], dtype=float)
_TIERS_LIEUX_WORDS = (
    "La Fabrique", "Le Hangar", "La Coopérative", "L'Atelier", "La Station", "Le Cargo",
    "La Manufacture", "Le Tiers-Lieu", "La Friche", "Le Quai", "La Serre", "L'Établi",
)
_TIERS_LIEUX_PLACES = (
    "du Panier", "des Calanques", "du Vieux-Port", "de la Durance", "des Oliviers", "du Mistral",
    "de la Colline", "du Canal", "de l'Étang", "du Moulin", "des Lavandes", "du Plateau",
    "de la Gare", "des Quatre-Chemins", "du Vallon", "des Pins",
)
_TIERS_LIEUX_CARRIERS = (
    "Association", "SCIC", "Collectif", "Coopérative", "Association d'éducation populaire",
)


@dataclass(frozen=True)
class DemoFiles:
    """Paths of the synthetic demo inputs written by :func:`write_demo_inputs`."""

    unites_legales: Path
    etablissements: Path
    tiers_lieux: Path
    manifest: Path


# --- Entry point ---------------------------------------------------------------------------------


def write_demo_inputs(
    out_dir: Path,
    communes: gpd.GeoDataFrame,
    qpv: gpd.GeoDataFrame,
    *,
    seed: int,
    scale: float = 1.0,
) -> DemoFiles:
    """Write synthetic SIRENE stocks, a tiers-lieux census and the manifest into ``out_dir``.

    ``communes`` needs ``code_insee``, ``nom``, ``population``, ``geometry`` (and, when present,
    ``type_commune``/``code_commune_parent`` to place Paris/Lyon/Marseille rows in their
    arrondissements, ``code_departement``); ``qpv`` needs a geometry (code in ``code_qp`` or
    ``q``). Same inputs, seed and scale give byte-identical files.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    from essmap.io.readers.sirene import ETABLISSEMENT_COLUMNS, UNITE_LEGALE_COLUMNS
    from essmap.io.readers.tiers_lieux import CENSUS_COLUMNS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    territory = _prepare_territory(communes, qpv)
    # Independent streams, so that changing one output does not reshuffle the others.
    sirene_rng, tiers_lieux_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    units, etabs = _generate_sirene(sirene_rng, territory, scale)
    tiers_lieux = _generate_tiers_lieux(tiers_lieux_rng, territory, scale)

    files = DemoFiles(
        unites_legales=out_dir / UNITE_LEGALE_FILE,
        etablissements=out_dir / ETABLISSEMENT_FILE,
        tiers_lieux=out_dir / TIERS_LIEUX_FILE,
        manifest=out_dir / MANIFEST_FILE,
    )
    _write_csv(units, UNITE_LEGALE_COLUMNS, files.unites_legales)
    _write_csv(etabs, ETABLISSEMENT_COLUMNS, files.etablissements)
    _write_csv(tiers_lieux, CENSUS_COLUMNS, files.tiers_lieux)
    manifest = {
        "generator": "essmap.demo.synthetic",
        "seed": int(seed),
        "scale": float(scale),
        "reference_date": str(REFERENCE_DATE),
        "files": [UNITE_LEGALE_FILE, ETABLISSEMENT_FILE, TIERS_LIEUX_FILE],
        "notice": NOTICE,
    }
    files.manifest.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return files


def _write_csv(values: dict[str, np.ndarray], columns, path: Path) -> None:
    """Write the official columns in their official order; unused ones are empty strings.

    Plain ``csv`` (comma, minimal quoting, "\\n" line ends): pandas' writer is several times
    slower on text columns. A value for a column outside the official list is a bug here.
    """
    columns = list(columns)
    unknown = sorted(set(values) - set(columns))
    if unknown:
        raise RuntimeError(f"synthetic generator fills columns absent from the official list: {unknown}")
    n = len(next(iter(values.values())))
    blank = [""] * n
    data = [values[c].tolist() if c in values else blank for c in columns]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*data, strict=True))


# --- Territory: communes to sample from, QPV pieces ------------------------------------------------


@dataclass
class _Territory:
    """Sampling layer: one row per commune (arrondissements instead of their parent)."""

    code: np.ndarray
    name: np.ndarray  # display name for organisation names (parent commune for arrondissements)
    label: np.ndarray  # libelleCommuneEtablissement style: upper case, no accents
    postcode: np.ndarray
    dep: np.ndarray
    epsg: np.ndarray
    population: np.ndarray
    geom: np.ndarray
    piece_geom: np.ndarray  # QPV x commune intersections
    piece_commune: np.ndarray
    piece_area: np.ndarray
    qpv_union: shapely.Geometry | None

    @property
    def departements(self) -> list[str]:
        return sorted(set(self.dep.tolist()))


def _prepare_territory(communes: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame) -> _Territory:
    """Sort inputs (determinism), swap Paris/Lyon/Marseille for their arrondissements, cut QPVs."""
    c = _to_wgs84(communes)
    c = c[c.geometry.notna() & ~c.geometry.is_empty]
    code = c["code_insee"].astype(str).str.strip().to_numpy(dtype=object)
    kind = (c["type_commune"].astype(str).to_numpy(dtype=object)
            if "type_commune" in c else np.full(len(c), "COM", dtype=object))
    parent = (c["code_commune_parent"].fillna("").astype(str).to_numpy(dtype=object)
              if "code_commune_parent" in c else np.full(len(c), "", dtype=object))
    population = pd.to_numeric(c["population"], errors="coerce").fillna(0).to_numpy(dtype=float)
    names = c["nom"].fillna("").astype(str).to_numpy(dtype=object)
    if "code_departement" in c:
        dep = c["code_departement"].fillna("").astype(str).to_numpy(dtype=object)
    else:
        dep = departements_of_communes(pd.Series(code)).to_numpy(dtype=object)
    name_of = dict(zip(code.tolist(), names.tolist(), strict=True))
    split_parents = set(parent[kind == "ARM"].tolist())
    keep = ((kind == "ARM") | ~np.isin(code, list(split_parents))) & (population > 0)
    order = np.argsort(code[keep], kind="stable")
    idx = np.flatnonzero(keep)[order]
    if len(idx) == 0:
        raise ValueError("no commune with a population and a geometry to place establishments in")

    code, kind, parent, population, dep = code[idx], kind[idx], parent[idx], population[idx], dep[idx]
    names = names[idx]
    is_arm = kind == "ARM"
    display = np.array(
        [name_of.get(p, n) if a else n for a, p, n in zip(is_arm, parent, names, strict=True)], dtype=object
    )
    label = np.array(
        [f"{_ascii_upper(d)} {_arrondissement_number(k)}" if a else _ascii_upper(n)
         for a, d, k, n in zip(is_arm, display, code, names, strict=True)],
        dtype=object,
    )
    postcode = np.array([_pseudo_postcode(k, d, a) for k, d, a in zip(code, dep, is_arm, strict=True)], dtype=object)
    epsg = np.array([_metric_epsg(d) for d in dep], dtype=np.int64)
    geom = np.asarray(c.geometry.to_numpy()[idx], dtype=object)
    shapely.prepare(geom)

    q = _to_wgs84(qpv)
    q = q[q.geometry.notna() & ~q.geometry.is_empty]
    code_col = "code_qp" if "code_qp" in q else ("q" if "q" in q else None)
    q_order = np.argsort(q[code_col].astype(str).to_numpy(), kind="stable") if code_col else np.arange(len(q))
    qgeom = np.asarray(q.geometry.to_numpy()[q_order], dtype=object)
    piece_geom, piece_commune, piece_area = _qpv_pieces(qgeom, geom)
    shapely.prepare(piece_geom)
    union = shapely.union_all(qgeom) if len(qgeom) else None
    if union is not None:
        shapely.prepare(union)
    return _Territory(code, display, label, postcode, dep, epsg, population, geom,
                      piece_geom, piece_commune, piece_area, union)


def _to_wgs84(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if frame.crs is not None and frame.crs.to_epsg() != 4326:
        return frame.to_crs(4326)
    return frame


def _qpv_pieces(qgeom: np.ndarray, cgeom: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersections of QPVs and communes (a QPV can span several communes or arrondissements).

    Slivers under 2 % of their QPV's area come from boundary simplification: they are dropped.
    Areas are in square degrees scaled by cos(latitude): only their ratios matter.
    """
    empty = (np.array([], dtype=object), np.array([], dtype=np.int64), np.array([], dtype=float))
    if len(qgeom) == 0:
        return empty
    tree = shapely.STRtree(cgeom)
    qi, ci = tree.query(qgeom, predicate="intersects")
    order = np.lexsort((ci, qi))
    qi, ci = qi[order], ci[order]
    inter = shapely.intersection(qgeom[qi], cgeom[ci])
    parts, owner = shapely.get_parts(inter, return_index=True)
    polygonal = shapely.get_type_id(parts) == 3
    parts, owner = parts[polygonal], owner[polygonal]
    if len(parts) == 0:
        return empty
    present = np.unique(owner)
    rebuilt = shapely.multipolygons(parts, indices=np.searchsorted(present, owner))
    qi, ci = qi[present], ci[present]
    lat = shapely.get_y(shapely.centroid(rebuilt))
    area = shapely.area(rebuilt) * np.cos(np.radians(lat))
    qpv_area = shapely.area(qgeom[qi]) * np.cos(np.radians(lat))
    keep = area >= 0.02 * qpv_area
    return np.asarray(rebuilt[keep], dtype=object), ci[keep].astype(np.int64), area[keep]


def _ascii_upper(text: str) -> str:
    """SIRENE-style commune label: upper case without accents ("Saint-Raphaël" -> "SAINT-RAPHAEL")."""
    text = text.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").upper()


def _arrondissement_number(code: str) -> int:
    """13205 -> 5, 75112 -> 12, 69383 -> 3."""
    return int(code[-2:]) - 80 if code.startswith("6938") else int(code[-2:])


def _pseudo_postcode(code: str, dep: str, is_arm: bool) -> str:
    """A plausible postcode; real for arrondissements, derived from the code elsewhere."""
    if is_arm:
        prefix = {"13": "130", "75": "750", "69": "690"}.get(code[:2], code[:3])
        return f"{prefix}{_arrondissement_number(code):02d}"
    if len(dep) == 3:
        return f"{dep}{(int(code[3:]) * 7) % 90 + 10:02d}"
    head = "20" if dep in ("2A", "2B") else dep[:2]
    digits = int(code[2:]) if code[2:].isdigit() else 0
    return f"{head}{(digits * 37) % 89 + 10:02d}0"


def _metric_epsg(dep: str) -> int:
    try:
        return territory_of_departement(dep).epsg
    except KeyError:
        return 2154


# --- Locations -------------------------------------------------------------------------------------


def _draw_departements(
    rng: np.random.Generator, t: _Territory, in_qpv: np.ndarray, weights: np.ndarray | None = None,
) -> np.ndarray:
    """Département of each head office: by population, or by QPV area for in-QPV ones."""
    deps = t.departements
    weights = t.population if weights is None else weights
    pop = np.array([weights[t.dep == d].sum() for d in deps])
    piece_dep = t.dep[t.piece_commune] if len(t.piece_commune) else np.array([], dtype=object)
    qarea = np.array([t.piece_area[piece_dep == d].sum() for d in deps])
    out = np.empty(len(in_qpv), dtype=object)
    n_out = int((~in_qpv).sum())
    out[~in_qpv] = np.asarray(deps, dtype=object)[rng.choice(len(deps), n_out, p=pop / pop.sum())]
    n_in = int(in_qpv.sum())
    if n_in:
        weights = qarea if qarea.sum() > 0 else pop
        out[in_qpv] = np.asarray(deps, dtype=object)[rng.choice(len(deps), n_in, p=weights / weights.sum())]
    return out


def _draw_places(
    rng: np.random.Generator, t: _Territory, dep: np.ndarray, in_qpv: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Commune (and QPV piece, or -1) of each point, within its département.

    Returns (commune index, piece index, in_qpv) where in_qpv is cleared for départements
    without any QPV.
    """
    weights = t.population if weights is None else weights
    n = len(dep)
    commune = np.full(n, -1, dtype=np.int64)
    piece = np.full(n, -1, dtype=np.int64)
    in_qpv = in_qpv.copy()
    piece_dep = t.dep[t.piece_commune] if len(t.piece_commune) else np.array([], dtype=object)
    for d in sorted(set(dep.tolist())):
        here = dep == d
        pieces = np.flatnonzero(piece_dep == d)
        q = np.flatnonzero(here & in_qpv)
        if len(q) and len(pieces) == 0:
            in_qpv[q] = False
        elif len(q):
            w = t.piece_area[pieces]
            chosen = pieces[rng.choice(len(pieces), len(q), p=w / w.sum())]
            piece[q] = chosen
            commune[q] = t.piece_commune[chosen]
        o = np.flatnonzero(here & ~in_qpv)
        candidates = np.flatnonzero(t.dep == d)
        w = weights[candidates]
        commune[o] = candidates[rng.choice(len(candidates), len(o), p=w / w.sum())]
    return commune, piece, in_qpv


def _lambert_quantiser() -> Quantiser:
    """Round to 0.1 m in the metric CRS as SIRENE publishes, and give the WGS84 a reader sees."""
    cache: dict[int, tuple[Transformer, Transformer]] = {}

    def quantise(
        lon: np.ndarray, lat: np.ndarray, epsg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = np.empty(len(lon))
        y = np.empty(len(lon))
        lon_q = np.empty(len(lon))
        lat_q = np.empty(len(lon))
        for code in np.unique(epsg):
            m = epsg == code
            if code not in cache:
                cache[code] = (
                    Transformer.from_crs(4326, int(code), always_xy=True),
                    Transformer.from_crs(int(code), 4326, always_xy=True),
                )
            fwd, inv = cache[code]
            xx, yy = fwd.transform(lon[m], lat[m])
            xx, yy = np.round(xx, 1), np.round(yy, 1)
            x[m], y[m] = xx, yy
            lon_q[m], lat_q[m] = inv.transform(xx, yy)
        return x, y, lon_q, lat_q

    return quantise


def _degree_quantiser(
    lon: np.ndarray, lat: np.ndarray, epsg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Round WGS84 to 6 decimals (about 0.1 m), as written in the tiers-lieux CSV."""
    lon_q, lat_q = np.round(lon, 6), np.round(lat, 6)
    return lon_q, lat_q, lon_q, lat_q


def _sample_points(
    rng: np.random.Generator, geoms: np.ndarray, which: np.ndarray, epsg: np.ndarray, quantise: Quantiser,
    exclude: shapely.Geometry | None = None, max_rounds: int = 400,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uniform points in ``geoms[which]`` by vectorised rejection sampling in their bboxes.

    The test is made on the *quantised* point (what a reader will compute back), so every
    written point falls inside its polygon. Points are kept out of ``exclude`` (the QPVs) while
    that is possible; after half the rounds the exclusion is dropped for the rest.
    """
    n = len(which)
    x = np.empty(n)
    y = np.empty(n)
    lon = np.empty(n)
    lat = np.empty(n)
    bounds = shapely.bounds(geoms) if len(geoms) else np.empty((0, 4))
    todo = np.arange(n)
    for round_no in range(max_rounds):
        if len(todo) == 0:
            break
        g = which[todo]
        b = bounds[g]
        cand_lon = b[:, 0] + rng.random(len(todo)) * (b[:, 2] - b[:, 0])
        cand_lat = b[:, 1] + rng.random(len(todo)) * (b[:, 3] - b[:, 1])
        qx, qy, qlon, qlat = quantise(cand_lon, cand_lat, epsg[todo])
        ok = shapely.contains_xy(geoms[g], qlon, qlat)
        if exclude is not None and round_no < max_rounds // 2:
            ok &= ~shapely.contains_xy(exclude, qlon, qlat)
        done = todo[ok]
        x[done], y[done], lon[done], lat[done] = qx[ok], qy[ok], qlon[ok], qlat[ok]
        todo = todo[~ok]
    if len(todo):
        raise RuntimeError(f"could not place {len(todo)} synthetic points inside their polygons")
    return x, y, lon, lat


def _locate(
    rng: np.random.Generator, t: _Territory, dep: np.ndarray, in_qpv: np.ndarray, quantise: Quantiser,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Commune and coordinates of each point (out of QPVs unless flagged in)."""
    commune, piece, in_qpv = _draw_places(rng, t, dep, in_qpv, weights)
    epsg = t.epsg[commune]
    n = len(dep)
    x, y, lon, lat = (np.empty(n) for _ in range(4))
    q = np.flatnonzero(in_qpv)
    o = np.flatnonzero(~in_qpv)
    if len(q):
        x[q], y[q], lon[q], lat[q] = _sample_points(rng, t.piece_geom, piece[q], epsg[q], quantise)
    if len(o):
        x[o], y[o], lon[o], lat[o] = _sample_points(rng, t.geom, commune[o], epsg[o], quantise, t.qpv_union)
    return {"commune": commune, "in_qpv": in_qpv, "x": x, "y": y, "lon": lon, "lat": lat}


# --- SIRENE ---------------------------------------------------------------------------------------------


def _allocate(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split an integer total by shares, largest remainders first (exact sum)."""
    keys = list(shares)
    w = np.array([shares[k] for k in keys], dtype=float)
    if total <= 0 or w.sum() <= 0:
        return {k: 0 for k in keys}
    raw = total * w / w.sum()
    base = np.floor(raw).astype(int)
    rest = total - base.sum()
    order = np.lexsort((np.arange(len(keys)), -(raw - base)))
    base[order[:rest]] += 1
    return dict(zip(keys, base.tolist(), strict=True))


def _family_counts(n_total: int, n_qpv: int, mix: dict[str, float], qpv_mix: dict[str, float]):
    """Establishments per family in and out of QPVs, meeting the overall mix exactly."""
    total = _allocate(n_total, mix)
    in_qpv = _allocate(n_qpv, qpv_mix)
    in_qpv = {f: min(in_qpv[f], total[f]) for f in total}
    return {f: (total[f] - in_qpv[f], in_qpv[f]) for f in total}


def _qpv_tilted_mix(mix: dict[str, float]) -> dict[str, float]:
    """In-QPV mix of non-employers: their mix tilted like the employers' (published) one."""
    tilted = {f: mix[f] * QPV_EMPLOYER_FAMILY_MIX[f] / EMPLOYER_FAMILY_MIX[f] for f in mix}
    s = sum(tilted.values())
    return {f: v / s for f, v in tilted.items()}


def _build_units(rng: np.random.Generator, table: tuple[_Row, ...], n_estab: int):
    """Group ``n_estab`` establishments into legal units: (table row, size) per unit.

    Table weights are shares of establishments, so unit draws are weighted by share / mean size.
    Network sizes are capped at 5 % of the group (at least 3) to keep small scales realistic.
    """
    if n_estab == 0:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    mean_size = np.array([
        (_NETWORKS[r[3]][0] * _NETWORKS[r[3]][1]).sum() / _NETWORKS[r[3]][1].sum() for r in table
    ])
    w = np.array([r[2] for r in table], dtype=float) / mean_size
    rows = rng.choice(len(table), n_estab, p=w / w.sum())
    sizes = np.ones(n_estab, dtype=np.int64)
    draws = rng.random(n_estab)
    profile_of_row = np.array([r[3] for r in table], dtype=object)[rows]
    for profile, (values, probs) in _NETWORKS.items():
        m = profile_of_row == profile
        cdf = np.cumsum(probs) / probs.sum()
        sizes[m] = values[np.minimum(np.searchsorted(cdf, draws[m], side="right"), len(values) - 1)]
    sizes = np.minimum(sizes, max(3, int(0.05 * n_estab)))
    cum = np.cumsum(sizes)
    k = int(np.searchsorted(cum, n_estab)) + 1
    rows, sizes = rows[:k], sizes[:k].copy()
    sizes[-1] -= int(cum[k - 1] - n_estab)
    return rows, sizes


def _luhn_check_digit(payloads: np.ndarray) -> np.ndarray:
    """Check digit making ``payload + digit`` Luhn-valid (payloads of equal length)."""
    length = len(payloads[0])
    raw = np.frombuffer("".join(payloads).encode("ascii"), dtype=np.uint8)
    digits = raw.reshape(-1, length).astype(np.int64) - 48
    doubled = (length - 1 - np.arange(length)) % 2 == 0
    values = np.where(doubled, digits * 2, digits)
    values = np.where(values > 9, values - 9, values)
    return (10 - values.sum(axis=1) % 10) % 10


def _dates(rng: np.random.Generator, n: int, *, mean_age_years: float = 14.0) -> np.ndarray:
    """Creation dates: mostly recent, none before the 1901 law, none after the reference date."""
    age_days = 120 + np.floor(rng.exponential(mean_age_years * 365.25, n)).astype(np.int64)
    dates = REFERENCE_DATE - age_days.astype("timedelta64[D]")
    return np.maximum(dates, np.datetime64("1901-07-02"))


def _between(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A day uniformly between two arrays of dates (``start`` when the span is empty)."""
    span = np.maximum((end - start).astype(np.int64), 0)
    return start + np.floor(rng.random(len(start)) * (span + 1)).astype(np.int64).astype("timedelta64[D]")


def _day(dates: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(dates, unit="D").astype(object)


def _treatment_stamp(rng: np.random.Generator, since: np.ndarray) -> np.ndarray:
    """dateDernierTraitement: a timestamp after ``since`` (and after 2017) before the reference."""
    start = np.maximum(since, np.datetime64("2017-01-02"))
    day = _between(rng, start, np.full(len(since), REFERENCE_DATE - np.timedelta64(1, "D")))
    seconds = rng.integers(6 * 3600, 22 * 3600, len(since))
    stamp = day.astype("datetime64[s]") + seconds.astype("timedelta64[s]")
    return np.datetime_as_string(stamp, unit="s").astype(object)


def _band_of_headcount(headcount: np.ndarray) -> np.ndarray:
    out = np.full(len(headcount), "00", dtype=object)
    for floor, band in reversed(_BAND_FLOORS):
        out[headcount >= floor] = band
    return out


def _generate_sirene(rng: np.random.Generator, t: _Territory, scale: float):
    """Legal units and establishments as dicts of official column -> string array."""
    population = float(t.population.sum())
    n_employer = int(round(EMPLOYER_PER_INHABITANT * population * scale))
    n_non_employer = int(round(NON_EMPLOYER_RATIO * n_employer))
    groups = []  # (family, employer, table, establishments out of / in QPVs, ESS flag)
    for employer, n, mix, qpv_mix, tables in (
        (True, n_employer, EMPLOYER_FAMILY_MIX, QPV_EMPLOYER_FAMILY_MIX, _EMPLOYER_TABLES),
        (False, n_non_employer, NON_EMPLOYER_FAMILY_MIX, _qpv_tilted_mix(NON_EMPLOYER_FAMILY_MIX),
         _NON_EMPLOYER_TABLES),
    ):
        for family, (n_out, n_in) in _family_counts(n, int(round(QPV_SHARE * n)), mix, qpv_mix).items():
            groups.append((family, employer, tables[family], n_out, n_in, True))
    n_non_ess = max(5, int(round(NON_ESS_UNITS * scale)))
    groups.append((nom.SOCIETE_COMMERCIALE, True, _NON_ESS_TABLE, n_non_ess, 0, False))

    # Units and their establishments, group by group.
    # Per-unit values are gathered in lists, per-establishment ones in one array per group.
    family_rows: list[str] = []
    employer_rows: list[bool] = []
    cat_rows: list[str] = []
    naf_rows: list[str] = []
    band_rows: list[str] = []
    ess_rows: list[bool] = []
    size_parts: list[np.ndarray] = []
    unit_parts: list[np.ndarray] = []
    rank_parts: list[np.ndarray] = []
    qpv_parts: list[np.ndarray] = []
    n_units = 0
    for family, employer, table, n_out, n_in, ess in groups:
        n = n_out + n_in
        if not ess:  # ordinary companies: one establishment each
            rows = rng.choice(len(table), n, p=np.array([r[2] for r in table]) / sum(r[2] for r in table))
            sizes = np.ones(n, dtype=np.int64)
        else:
            rows, sizes = _build_units(rng, table, n)
        k = len(rows)
        family_rows += [family] * k
        employer_rows += [employer] * k
        cat_rows += [table[r][0] for r in rows]
        naf_rows += [table[r][1] for r in rows]
        band_rows += [table[r][4] for r in rows]
        ess_rows += [ess] * k
        size_parts.append(sizes)
        unit_ids = np.repeat(np.arange(n_units, n_units + k), sizes)
        unit_parts.append(unit_ids)
        rank_parts.append(np.arange(len(unit_ids)) - np.repeat(np.cumsum(sizes) - sizes, sizes))
        flag = np.zeros(len(unit_ids), dtype=bool)
        flag[rng.permutation(len(unit_ids))[:n_in]] = True
        qpv_parts.append(flag)
        n_units += k

    U = n_units
    u_family = np.array(family_rows, dtype=object)
    u_employer = np.array(employer_rows, dtype=bool)
    u_cat = np.array(cat_rows, dtype=object)
    u_naf = np.array(naf_rows, dtype=object)
    u_bands = np.array(band_rows, dtype=object)
    u_ess = np.array(ess_rows, dtype=bool)
    u_size = np.concatenate(size_parts)
    e_unit = np.concatenate(unit_parts)
    e_rank = np.concatenate(rank_parts)
    e_in_qpv = np.concatenate(qpv_parts)
    e_closed = np.zeros(len(e_unit), dtype=bool)

    # Closed establishments: extra secondary sites of ESS units.
    ess_units = np.flatnonzero(u_ess)
    n_closed = max(5, int(round(CLOSED_SHARE * int(np.isin(e_unit, ess_units).sum()))))
    closed_units = np.sort(rng.choice(ess_units, n_closed, replace=True))
    extra_rank = u_size[closed_units].copy()
    for i in range(1, len(closed_units)):  # several closed sites of one unit get distinct ranks
        if closed_units[i] == closed_units[i - 1]:
            extra_rank[i] = extra_rank[i - 1] + 1
    e_unit = np.concatenate([e_unit, closed_units])
    e_rank = np.concatenate([e_rank, extra_rank])
    e_in_qpv = np.concatenate([e_in_qpv, np.zeros(n_closed, dtype=bool)])
    e_closed = np.concatenate([e_closed, np.ones(n_closed, dtype=bool)])
    E = len(e_unit)
    head = e_rank == 0
    head_of_unit = np.empty(U, dtype=np.int64)
    head_of_unit[e_unit[head]] = np.flatnonzero(head)

    # Places: head office département first, the unit's other sites stay in it.
    e_dep = np.empty(E, dtype=object)
    e_dep[head] = _draw_departements(rng, t, e_in_qpv[head])
    e_dep[~head] = e_dep[head_of_unit[e_unit[~head]]]
    place = _locate(rng, t, e_dep, e_in_qpv, _lambert_quantiser())
    e_commune = place["commune"]

    # Activity, employer status and size bands.
    e_employer = u_employer[e_unit] & ~e_closed
    e_naf = u_naf[e_unit].copy()
    e_nomenclature = np.full(E, "NAFRev2", dtype=object)
    old_pool = np.flatnonzero((u_family[e_unit] == nom.ASSOCIATION) & ~e_employer & ~e_closed & u_ess[e_unit])
    n_old = min(len(old_pool), max(1, int(round(OLD_NOMENCLATURE_SHARE * E))))
    old = np.sort(rng.choice(old_pool, n_old, replace=False)) if n_old else np.array([], dtype=np.int64)
    e_naf[old] = np.array(_OLD_NAF_CODES, dtype=object)[rng.integers(0, len(_OLD_NAF_CODES), len(old))]
    e_nomenclature[old] = "NAFRev1"

    e_band = np.full(E, "NN", dtype=object)
    draws = rng.random(E)
    profile = u_bands[e_unit].copy()
    big_head = head & (u_size[e_unit] >= 4) & np.isin(u_naf[e_unit], ["64.19Z", "65.12Z"])
    profile[big_head] = "head_office"
    for name, weights in _BAND_PROFILES.items():
        m = e_employer & (profile == name)
        cdf = np.cumsum(weights) / weights.sum()
        e_band[m] = _BANDS[np.minimum(np.searchsorted(cdf, draws[m], side="right"), len(_BANDS) - 1)]

    # Identifiers: SIREN "0" + 7 random digits + key (room for 10 M units); NIC = rank + key.
    siren_payload = np.char.add("0", np.char.zfill(rng.choice(10_000_000, U, replace=False).astype(str), 7))
    u_siren = np.char.add(siren_payload, _luhn_check_digit(siren_payload).astype(str)).astype(object)
    nic_payload = np.char.zfill((e_rank + 1).astype(str), 4)
    siret_payload = np.char.add(u_siren[e_unit].astype(str), nic_payload)
    check = _luhn_check_digit(siret_payload).astype(str)
    e_nic = np.char.add(nic_payload, check).astype(object)
    e_siret = np.char.add(siret_payload, check).astype(object)

    # Dates.
    u_created = _dates(rng, U)
    e_created = u_created[e_unit].copy()
    secondary = ~head

    def until(days: int, n: int) -> np.ndarray:
        return np.full(n, REFERENCE_DATE - np.timedelta64(days, "D"))

    e_created[secondary] = _between(rng, u_created[e_unit[secondary]], until(120, int(secondary.sum())))
    e_created[old] = np.minimum(e_created[old], np.datetime64("2007-12-31"))
    changed = rng.random(E) < 0.3
    e_start = np.where(changed, _between(rng, e_created, until(30, E)), e_created)
    e_start[old] = e_created[old]
    e_start[e_closed] = _between(rng, e_created[e_closed] + np.timedelta64(30, "D"), until(30, n_closed))
    e_periods = np.where(e_start > e_created, "2", "1").astype(object)
    e_treated = _treatment_stamp(rng, e_start)

    # Names.
    u_commune = e_commune[head_of_unit]
    u_name = _unit_names(rng, u_family, u_cat, u_naf, u_ess, _of_all(t.name)[u_commune])
    special_pool = np.flatnonzero(u_ess & u_employer & (u_family == nom.ASSOCIATION))
    # a very small scale may have fewer candidate associations than special names: those get fewer
    for unit, text in zip(special_pool[: len(SPECIAL_NAMES)], SPECIAL_NAMES, strict=False):
        u_name[unit] = text
    e_sign = np.full(E, "", dtype=object)
    finance = np.isin(e_naf, ["64.19Z", "65.12Z"])
    where = _of_all(t.name)[e_commune]
    e_sign[secondary & finance] = "AGENCE " + where[secondary & finance] + " " + MARKER_F
    e_sign[secondary & ~finance] = "ANTENNE " + where[secondary & ~finance] + " " + MARKER_F

    # Addresses.
    address = _addresses(rng, E)

    # Legal-unit aggregates.
    midpoints = np.array([nom.SIZE_BAND_MIDPOINT[b] for b in e_band])
    headcount = np.bincount(e_unit, weights=midpoints, minlength=U)
    any_employer = np.bincount(e_unit, weights=e_employer.astype(float), minlength=U) > 0
    u_band = np.where(any_employer, _band_of_headcount(headcount), "NN").astype(object)
    u_categorie = np.where(headcount >= 5000, "GE", np.where(headcount >= 250, "ETI", "PME")).astype(object)
    u_head_naf = e_naf[head_of_unit]
    u_head_nomenclature = e_nomenclature[head_of_unit]

    e_year = np.where(e_employer, EFFECTIFS_YEAR, "").astype(object)
    etabs = {
        "siren": u_siren[e_unit],
        "nic": e_nic,
        "siret": e_siret,
        "statutDiffusionEtablissement": np.full(E, "O", dtype=object),
        "dateCreationEtablissement": _day(e_created),
        "trancheEffectifsEtablissement": e_band,
        "anneeEffectifsEtablissement": e_year,
        "dateDernierTraitementEtablissement": e_treated,
        "etablissementSiege": np.where(head, "true", "false").astype(object),
        "nombrePeriodesEtablissement": e_periods,
        "complementAdresseEtablissement": address["complement"],
        "numeroVoieEtablissement": address["number"],
        "indiceRepetitionEtablissement": address["repeat"],
        "typeVoieEtablissement": address["type"],
        "libelleVoieEtablissement": address["street"],
        "codePostalEtablissement": t.postcode[e_commune],
        "libelleCommuneEtablissement": t.label[e_commune],
        "codeCommuneEtablissement": t.code[e_commune],
        "coordonneeLambertAbscisseEtablissement": _fixed(place["x"], 1),
        "coordonneeLambertOrdonneeEtablissement": _fixed(place["y"], 1),
        "dateDebut": _day(e_start),
        "etatAdministratifEtablissement": np.where(e_closed, "F", "A").astype(object),
        "enseigne1Etablissement": e_sign,
        "activitePrincipaleEtablissement": e_naf,
        "nomenclatureActivitePrincipaleEtablissement": e_nomenclature,
        "caractereEmployeurEtablissement": np.where(e_employer, "O", "N").astype(object),
    }
    units = {
        "siren": u_siren,
        "statutDiffusionUniteLegale": np.full(U, "O", dtype=object),
        "dateCreationUniteLegale": _day(u_created),
        "trancheEffectifsUniteLegale": u_band,
        "anneeEffectifsUniteLegale": np.where(any_employer, EFFECTIFS_YEAR, "").astype(object),
        "dateDernierTraitementUniteLegale": e_treated[head_of_unit],
        "nombrePeriodesUniteLegale": e_periods[head_of_unit],
        "categorieEntreprise": u_categorie,
        "anneeCategorieEntreprise": np.full(U, CATEGORIE_YEAR, dtype=object),
        "dateDebut": _day(e_start[head_of_unit]),
        "etatAdministratifUniteLegale": np.full(U, "A", dtype=object),
        "denominationUniteLegale": u_name,
        "categorieJuridiqueUniteLegale": u_cat,
        "activitePrincipaleUniteLegale": u_head_naf,
        "nomenclatureActivitePrincipaleUniteLegale": u_head_nomenclature,
        "nicSiegeUniteLegale": e_nic[head_of_unit],
        "economieSocialeSolidaireUniteLegale": np.where(u_ess, "O", "N").astype(object),
        "societeMissionUniteLegale": np.where(np.isin(u_cat, ["5710", "5499"]), "N", "").astype(object),
        "caractereEmployeurUniteLegale": np.where(any_employer, "O", "N").astype(object),
    }
    unit_order = np.argsort(u_siren.astype(str), kind="stable")
    etab_order = np.argsort(e_siret.astype(str), kind="stable")
    return ({k: v[unit_order] for k, v in units.items()}, {k: v[etab_order] for k, v in etabs.items()})


def _fixed(values: np.ndarray, decimals: int) -> np.ndarray:
    """Fixed-point text ("892394.7"): the exact value the quantised sampler checked."""
    fmt = f"{{:.{decimals}f}}"
    return np.array([fmt.format(v) for v in values.tolist()], dtype=object)


def _of(name: str, *, upper: bool = True) -> str:
    """French "de" + commune name with elision and article: "DE NICE", "D'ORANGE", "DU BEAUSSET"."""
    for article, joined in (("Le ", "du "), ("La ", "de la "), ("Les ", "des "), ("L'", "de l'")):
        if name.startswith(article):
            text = joined + name[len(article):]
            break
    else:
        text = f"d'{name}" if name[:1].upper() in "AEIOUYÉÈÊÎÔH" else f"de {name}"
    return text.upper() if upper else text


def _of_all(names: np.ndarray, *, upper: bool = True) -> np.ndarray:
    """:func:`_of` of each commune of the layer (computed once per commune, not per row)."""
    return np.array([_of(n, upper=upper) for n in names.tolist()], dtype=object)


def _prefixes(family: str, cat: str, naf: str, ess: bool) -> list[tuple[str, bool]]:
    """Possible name heads for one kind of unit, with their grammatical gender (True: feminine)."""
    division = naf[:2]
    if not ess:
        return [("SARL", True), ("SAS", True)]
    if family == nom.ASSOCIATION:
        if division == "93":
            return [("ASSOCIATION SPORTIVE", True), ("CLUB", False), ("UNION SPORTIVE", True),
                    ("CERCLE", False)]
        if division in ("90", "91"):
            return [("COMPAGNIE", True), ("COLLECTIF", False), ("ASSOCIATION CULTURELLE", True),
                    ("ATELIER", False)]
        if division == "85":
            return [("ASSOCIATION DE FORMATION", True), ("ÉCOLE", True), ("CENTRE DE FORMATION", False)]
        if division in ("87", "88", "78", "81", "38"):
            return [("ASSOCIATION", True), ("MAISON DES SOLIDARITÉS", True), ("FOYER", False)]
        return [("ASSOCIATION", True), ("COMITÉ", False), ("AMICALE", True), ("ASSOCIATION DES AMIS", True)]
    if family == nom.COOPERATIVE:
        if naf == "64.19Z":
            return [("BANQUE COOPÉRATIVE", True), ("CAISSE DE CRÉDIT SOLIDAIRE", True)]
        if cat == "6316":
            return [("CUMA", True)]
        if naf == "11.02B":
            return [("CAVE COOPÉRATIVE", True)]
        if naf == "10.41A":
            return [("MOULIN COOPÉRATIF", False)]
        if cat in ("6317", "6318"):
            return [("COOPÉRATIVE AGRICOLE", True)]
        if cat in nom.SCOP_CODES:
            return [("SCOP", True)]
        if cat == "5547":
            return [("COOPÉRATIVE D'HABITAT", True)]
        if cat in ("5443", "6543"):
            return [("COOPÉRATIVE DE CONSTRUCTION", True)]
        if cat == "5552":
            return [("COOPÉRATIVE DE COMMERÇANTS", True)]
        return [("COOPÉRATIVE", True), ("SCIC", True)]
    if family == nom.MUTUELLE:
        if cat == "8250":
            return [("ASSURANCE MUTUELLE AGRICOLE", True)]
        if cat == "6411":
            return [("SOCIÉTÉ D'ASSURANCE MUTUELLE", True)]
        return [("MUTUELLE", True)]
    if family == nom.FONDATION:
        return [("FONDATION", True)]
    return [("SAS", True), ("SARL", True)] if cat in ("5710", "5499") else [("SOCIÉTÉ", True)]


def _unit_names(
    rng: np.random.Generator, family: np.ndarray, cat: np.ndarray, naf: np.ndarray, ess: np.ndarray,
    of_commune: np.ndarray,
) -> np.ndarray:
    """Denominations: head + theme + place + marker, e.g. "ASSOCIATION ENTRAIDE DU PANIER (SIMULÉE)"."""
    n = len(family)
    head = np.empty(n, dtype=object)
    fem = np.zeros(n, dtype=bool)
    keys = pd.DataFrame({"f": family, "c": cat, "n": naf, "e": ess}).astype(str)
    combos = keys.drop_duplicates().sort_values(["f", "c", "n", "e"])
    key = keys["f"] + "|" + keys["c"] + "|" + keys["n"] + "|" + keys["e"]
    pick = rng.random(n)
    for f, c, k, e in combos.itertuples(index=False):
        m = (key == f"{f}|{c}|{k}|{e}").to_numpy()
        options = _prefixes(f, c, k, e == "True")
        chosen = np.minimum((pick[m] * len(options)).astype(int), len(options) - 1)
        head[m] = np.array([o[0] for o in options], dtype=object)[chosen]
        fem[m] = np.array([o[1] for o in options])[chosen]
    themes = np.array(_THEMES, dtype=object)[rng.integers(0, len(_THEMES), n)]
    generic = np.array(_PLACES, dtype=object)[rng.integers(0, len(_PLACES), n)]
    local = of_commune
    place = np.where(rng.random(n) < 0.5, generic, local)
    marker = np.where(fem, MARKER_F, MARKER_M)
    return (head + " " + themes + " " + place + " " + marker).astype(object)


def _addresses(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """SIRENE-style address fields (upper case, street-type codes)."""
    p_kind = _STREET_TYPE_WEIGHTS / _STREET_TYPE_WEIGHTS.sum()
    kind = _STREET_TYPES[rng.choice(len(_STREET_TYPES), n, p=p_kind)].astype(object)
    street = _STREET_NAMES[rng.integers(0, len(_STREET_NAMES), n)].astype(object)
    number = np.minimum(rng.geometric(0.04, n), 300).astype(str).astype(object)
    lieu_dit = rng.random(n) < 0.06
    kind[lieu_dit] = "LD"
    street[lieu_dit] = _LIEUX_DITS[rng.integers(0, len(_LIEUX_DITS), int(lieu_dit.sum()))]
    number[lieu_dit] = ""
    repeat = np.where(~lieu_dit & (rng.random(n) < 0.02), "B", "").astype(object)
    building = "BAT " + np.array(list("ABCD"), dtype=object)[rng.integers(0, 4, n)]
    complement = np.where(rng.random(n) < 0.05, building, "").astype(object)
    return {"type": kind, "street": street, "number": number, "repeat": repeat, "complement": complement}


# --- Tiers-lieux --------------------------------------------------------------------------------------


def _generate_tiers_lieux(rng: np.random.Generator, t: _Territory, scale: float) -> dict[str, np.ndarray]:
    """Census rows: places by (urban-weighted) population, several types, ANCT labels."""
    n = max(3, int(round(TIERS_LIEUX_PER_INHABITANT * float(t.population.sum()) * scale)))
    urban = t.population >= TIERS_LIEUX_URBAN_POPULATION
    weights = t.population * np.where(urban, TIERS_LIEUX_URBAN_WEIGHT, 1.0)
    in_qpv = np.zeros(n, dtype=bool)
    in_qpv[rng.permutation(n)[: int(round(TIERS_LIEUX_QPV_SHARE * n))]] = True
    dep = _draw_departements(rng, t, in_qpv, weights)
    place = _locate(rng, t, dep, in_qpv, _degree_quantiser, weights)
    commune = place["commune"]

    n_types = rng.choice([1, 2, 3], n, p=[0.45, 0.35, 0.2])
    p_types = _TIERS_LIEUX_TYPE_WEIGHTS / _TIERS_LIEUX_TYPE_WEIGHTS.sum()
    # Gumbel trick: the k largest of log(p) + noise are k types drawn without replacement.
    keys = np.log(p_types)[None, :] - np.log(-np.log(rng.random((n, len(p_types)))))
    ranked = np.argsort(-keys, axis=1)
    types = np.array(["|".join(_TIERS_LIEUX_TYPES[ranked[i, : n_types[i]]]) for i in range(n)], dtype=object)
    fabrique = rng.random(n) < FABRIQUES_DE_TERRITOIRE / FRANCE_TIERS_LIEUX
    manufacture = rng.random(n) < MANUFACTURES_DE_PROXIMITE / FRANCE_TIERS_LIEUX
    labels = np.where(fabrique & manufacture, "Fabrique de territoire|Manufacture de proximité",
                      np.where(fabrique, "Fabrique de territoire",
                               np.where(manufacture, "Manufacture de proximité", ""))).astype(object)

    word = np.array(_TIERS_LIEUX_WORDS, dtype=object)[rng.integers(0, len(_TIERS_LIEUX_WORDS), n)]
    generic = np.array(_TIERS_LIEUX_PLACES, dtype=object)[rng.integers(0, len(_TIERS_LIEUX_PLACES), n)]
    local = _of_all(t.name, upper=False)[commune]
    where = np.where(rng.random(n) < 0.5, generic, local)
    names = (word + " " + where + " (simulé)").astype(object)
    for i, text in enumerate(("Escale &amp; Co (simulé)", "<script>alert(1)</script> (simulé)")[:n]):
        names[i] = text
    carrier = np.array(_TIERS_LIEUX_CARRIERS, dtype=object)[rng.integers(0, len(_TIERS_LIEUX_CARRIERS), n)]
    carriers = (carrier + " " + word + " (simulée)").astype(object)
    address = _addresses(rng, n)
    street = np.where(address["number"] != "", address["number"] + " ", "") + np.array(
        [_STREET_WORDS.get(k, k.lower()) for k in address["type"]], dtype=object
    ) + " " + np.array([s.lower() for s in address["street"]], dtype=object)
    ids = np.array([str(900_001 + i) for i in range(n)], dtype=object)
    return {
        "ID_UNIQUE": ids,
        "NOM": names,
        "Insee": t.code[commune],
        "NOM_STRC_PORT": carriers,
        "ADRESSE": street.astype(object),
        "CODPOST": t.postcode[commune],
        "VILLE": t.label[commune],
        "INTERNET": np.array([f"https://example.org/tiers-lieux-simules/{i}" for i in ids], dtype=object),
        "LATITUDE": _fixed(place["lat"], 6),
        "LONGITUDE": _fixed(place["lon"], 6),
        "TYPES": types,
        "LABELS": labels,
    }
