"""National-scale synthetic SIRENE stock files, in INSEE's layout, for the ingest benchmarks.

``write_stock`` writes, once per seed and size (cached under ``bench/out/``), a
``StockUniteLegale_utf8.csv`` and a ``StockEtablissement_utf8.csv`` with INSEE's official
column lists (imported from :mod:`essmap.io.readers.sirene`, in their published order), plus the
``essmap-synthetic.json`` manifest that flags them as simulated. Default: 5 million
establishment rows, of which 1.5 million active establishments of ESS legal units (those of the
national benchmark data, with their positions as Lambert-93 / UTM coordinates), 5 % closed ESS
establishments, and non-ESS establishments (35 % closed) for the rest. Writing is vectorised
(numpy and pandas string operations per chunk of 500,000 rows, pyarrow's CSV writer).

They are loaded with ``essmap ingest sirene``, a measured process (:mod:`national_store`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import national_data as nd  # noqa: E402

from essmap.io.readers.sirene import ETABLISSEMENT_COLUMNS, UNITE_LEGALE_COLUMNS  # noqa: E402

UNITE_LEGALE_FILE = "StockUniteLegale_utf8.csv"
ETABLISSEMENT_FILE = "StockEtablissement_utf8.csv"
MANIFEST_FILE = "essmap-synthetic.json"
STOCK_VERSION = 2
CHUNK = 500_000
CLOSED_ESS_SHARE = 0.05
CLOSED_OTHER_SHARE = 0.35
OTHER_ESTABLISHMENTS_PER_UNIT = 1.6
POSITION_JITTER_M = 30.0
LAST_PROCESSED = "2025-11-01T03:12:45.000"

OTHER_CATEGORIES = (("5710", 0.45), ("5499", 0.25), ("1000", 0.2), ("5720", 0.05), ("6540", 0.05))
OTHER_NAF = (("47.11F", 0.1), ("56.10A", 0.1), ("43.21A", 0.1), ("70.22Z", 0.1), ("68.20B", 0.1),
             ("62.01Z", 0.1), ("46.90Z", 0.1), ("86.21Z", 0.1), ("49.41A", 0.1), ("96.02A", 0.1))
STREET_TYPES = ("RUE", "AV", "BD", "PL", "CHE", "ALL", "RTE", "IMP")
STREET_NAMES = ("DE LA REPUBLIQUE", "VICTOR HUGO", "JEAN JAURES", "DU GENERAL DE GAULLE", "PASTEUR",
                "DES ECOLES", "DE LA GARE", "DU MOULIN", "DE L EGLISE", "DES LILAS", "NATIONALE", "DU STADE")


@dataclass(frozen=True)
class StockSizes:
    """Rows of the synthetic stock."""

    establishments: int = 5_000_000
    ess_active: int = 1_500_000

    @property
    def key(self) -> str:
        return f"e{self.establishments}-ess{self.ess_active}"


NATIONAL_STOCK = StockSizes()
SMALL_STOCK = StockSizes(establishments=250_000, ess_active=75_000)


def stock_sizes_from_env(base: StockSizes, environ: dict[str, str] | None = None) -> StockSizes:
    """``base`` with overrides from ``BENCH_STOCK_ESTABLISHMENTS`` and ``BENCH_STOCK_ESS``."""
    env = os.environ if environ is None else environ
    values = asdict(base)
    for name, var in (("establishments", "BENCH_STOCK_ESTABLISHMENTS"), ("ess_active", "BENCH_STOCK_ESS")):
        if env.get(var):
            values[name] = int(env[var].replace("_", ""))
    return StockSizes(**values)


# --- Writing ---------------------------------------------------------------------------------------


def dates(rng: np.random.Generator, n: int, start: str = "1950-01-01", end: str = "2025-06-30") -> np.ndarray:
    days = rng.integers(np.datetime64(start, "D").astype(int), np.datetime64(end, "D").astype(int), n)
    return days.astype("datetime64[D]").astype(str)


def pick(rng: np.random.Generator, table, n: int) -> np.ndarray:
    labels = np.array([k for k, _ in table], dtype=object)
    p = np.array([w for _, w in table], dtype=float)
    return labels[rng.choice(len(labels), n, p=p / p.sum())]


def digits(values: np.ndarray, width: int) -> pd.Series:
    return pd.Series(values.astype(np.int64).astype(str), dtype="string").str.zfill(width)


def value_or_null(mask: np.ndarray, value: str) -> np.ndarray:
    """``value`` where ``mask``, an empty (null) field elsewhere."""
    out = np.full(len(mask), None, dtype=object)
    out[np.asarray(mask, dtype=bool)] = value
    return out


def official_table(columns: tuple[str, ...], values: dict[str, object], n: int) -> pa.Table:
    """A table with every official column, in order, as text; those not given are empty (null).
    Also used by :mod:`national_mirror`."""
    arrays = []
    for column in columns:
        value = values.get(column)
        if value is None:
            arrays.append(pa.nulls(n, pa.string()))
        elif isinstance(value, str):
            arrays.append(pa.array(np.full(n, value, dtype=object), pa.string()))
        else:
            arrays.append(pa.array(value if isinstance(value, pd.Series) else np.asarray(value),
                                   type=pa.string(), from_pandas=True))
    return pa.Table.from_arrays(arrays, names=list(columns))


@dataclass
class _Rows:
    """One row per establishment of the stock (numeric ids and attributes), before formatting."""

    siren: np.ndarray
    siret: np.ndarray
    state: np.ndarray  # "A" / "F"
    naf: np.ndarray
    employer: np.ndarray
    band: np.ndarray
    x: np.ndarray
    y: np.ndarray
    code_commune: np.ndarray
    commune_name: np.ndarray
    head_office: np.ndarray


def _plan(data: nd.NationalData, sizes: StockSizes, seed: int) -> tuple[_Rows, pd.DataFrame]:
    """Establishment rows (sorted by SIRET like INSEE's file) and one row per legal unit."""
    rng = np.random.default_rng(seed + 7)
    est = data.establishments
    names = dict(zip(data.communes["code_insee"].astype(str), data.communes["nom"].astype(str).str.upper(),
                     strict=True))

    # ESS: whole legal units of the national data, in random order, until ess_active is reached
    siren_all = est["siren"].astype("int64").to_numpy()
    units, first_row, counts = np.unique(siren_all, return_index=True, return_counts=True)
    order = rng.permutation(len(units))
    take = order[: int(np.searchsorted(np.cumsum(counts[order]), sizes.ess_active)) + 1]
    chosen = np.isin(siren_all, units[take])
    ess = est[chosen]
    if len(ess) > sizes.ess_active:  # cut the last unit short
        ess = ess.iloc[: sizes.ess_active]
    n_ess = len(ess)
    ess_siren = ess["siren"].astype("int64").to_numpy()
    ess_units = pd.DataFrame({
        "siren": ess_siren,
        "categorie": ess["categorie_juridique"].to_numpy(dtype=object),
        "naf": ess["activite_naf"].to_numpy(dtype=object),
        "employer": ess["employeur"].to_numpy(dtype=bool),
        "head": ess["siege"].to_numpy(dtype=bool),
        "siret": ess["siret"].astype("int64").to_numpy(),
    })
    ess_units = ess_units.sort_values(["siren", "head"], ascending=[True, False]).drop_duplicates("siren")
    ess_units["ess"] = "O"

    # closed ESS establishments: extra establishments (new NIC) of ESS units
    n_closed_ess = int(round(n_ess * CLOSED_ESS_SHARE))
    closed_units = rng.choice(ess_units["siren"].to_numpy(), n_closed_ess)
    closed_rank = 5_000 + pd.Series(closed_units).groupby(closed_units).cumcount().to_numpy()

    # non-ESS establishments and units, SIREN after the national data's range
    n_other = max(0, sizes.establishments - n_ess - n_closed_ess)
    unit, rank = nd.units_for(rng, n_other)
    n_other_units = int(unit.max()) + 1 if n_other else 0
    n_national_units = len(units)
    other_siren_u = nd.siren_numbers(n_national_units + 1_000, n_other_units, data.seed)
    other_siren = other_siren_u[unit] if n_other else np.zeros(0, dtype=np.int64)
    other_units = pd.DataFrame({
        "siren": other_siren_u,
        "categorie": pick(rng, OTHER_CATEGORIES, n_other_units),
        "naf": pick(rng, OTHER_NAF, n_other_units),
        "employer": rng.random(n_other_units) < 0.3,
        "head": True,
        "siret": nd.siret_numbers(other_siren_u, np.zeros(n_other_units, dtype=np.int64)),
        "ess": "N",
    })

    # positions: ESS rows keep theirs; the others reuse random national positions, jittered
    src = rng.integers(0, len(est), n_other + n_closed_ess)
    jitter = rng.uniform(-POSITION_JITTER_M, POSITION_JITTER_M, (len(src), 2))
    x_src = est["x"].to_numpy(dtype=float)
    y_src = est["y"].to_numpy(dtype=float)
    commune_src = est["code_commune"].to_numpy(dtype=object)

    siren = np.concatenate([ess_siren, closed_units, other_siren])
    siret = np.concatenate([
        ess["siret"].astype("int64").to_numpy(),
        nd.siret_numbers(closed_units, closed_rank),
        nd.siret_numbers(other_siren, rank) if n_other else np.zeros(0, dtype=np.int64),
    ])
    n = len(siren)
    state = np.concatenate([np.full(n_ess, "A", dtype=object), np.full(n_closed_ess, "F", dtype=object),
                            np.where(rng.random(n_other) < CLOSED_OTHER_SHARE, "F", "A").astype(object)])
    naf = np.concatenate([ess["activite_naf"].to_numpy(dtype=object), pick(rng, nd.NAF_CODES, n_closed_ess),
                          pick(rng, OTHER_NAF, n_other)])
    employer = np.concatenate([ess["employeur"].to_numpy(dtype=bool), np.zeros(n_closed_ess, dtype=bool),
                               rng.random(n_other) < 0.3])
    band = np.where(employer, pick(rng, nd.SIZE_BANDS, n), "NN")
    x = np.round(np.concatenate([ess["x"].to_numpy(dtype=float), x_src[src] + jitter[:, 0]]), 1)
    y = np.round(np.concatenate([ess["y"].to_numpy(dtype=float), y_src[src] + jitter[:, 1]]), 1)
    code_commune = np.concatenate([ess["code_commune"].to_numpy(dtype=object), commune_src[src]])
    commune_name = pd.Series(code_commune).map(names).to_numpy(dtype=object)
    head_office = np.concatenate([ess["siege"].to_numpy(dtype=bool), np.zeros(n_closed_ess, dtype=bool), rank == 0])

    order = np.argsort(siret, kind="stable")
    rows = _Rows(siren[order], siret[order], state[order], naf[order], employer[order], band[order],
                 x[order], y[order], code_commune[order], commune_name[order], head_office[order])
    legal_units = pd.concat([ess_units, other_units], ignore_index=True).sort_values("siren", kind="stable")
    return rows, legal_units.reset_index(drop=True)


def _write_unites_legales(path: Path, units: pd.DataFrame, rng: np.random.Generator) -> None:
    schema = pa.schema([(c, pa.string()) for c in UNITE_LEGALE_COLUMNS])
    options = pacsv.WriteOptions(include_header=True, quoting_style="none")
    with pacsv.CSVWriter(path, schema, write_options=options) as writer:
        for start in range(0, len(units), CHUNK):
            part = units.iloc[start:start + CHUNK]
            n = len(part)
            siren = digits(part["siren"].to_numpy(), 9)
            ess = part["ess"].to_numpy(dtype=object) == "O"
            is_association = part["categorie"].astype(str).str.startswith("92").to_numpy()
            label = np.where(ess, np.where(is_association, "ASSOCIATION SIMULEE ", "ENTREPRISE ESS SIMULEE "),
                             "SOCIETE SIMULEE ")
            rna = ("W" + digits(rng.integers(0, 10**9, n), 9)).where(pd.Series(is_association), pd.NA)
            employer = part["employer"].to_numpy(dtype=bool)
            values = {
                "siren": siren,
                "statutDiffusionUniteLegale": "O",
                "dateCreationUniteLegale": dates(rng, n),
                "identifiantAssociationUniteLegale": rna.to_numpy(),
                "trancheEffectifsUniteLegale": np.where(employer, pick(rng, nd.SIZE_BANDS, n), "NN"),
                "anneeEffectifsUniteLegale": value_or_null(employer, "2023"),
                "dateDernierTraitementUniteLegale": LAST_PROCESSED,
                "nombrePeriodesUniteLegale": rng.integers(1, 6, n).astype(str),
                "categorieEntreprise": "PME",
                "anneeCategorieEntreprise": "2022",
                "dateDebut": dates(rng, n, "2000-01-01"),
                "etatAdministratifUniteLegale": "A",
                "denominationUniteLegale": (pd.Series(label, dtype="string") + siren).to_numpy(),
                "categorieJuridiqueUniteLegale": part["categorie"].to_numpy(dtype=object),
                "activitePrincipaleUniteLegale": part["naf"].to_numpy(dtype=object),
                "nomenclatureActivitePrincipaleUniteLegale": "NAFRev2",
                "nicSiegeUniteLegale": digits(part["siret"].to_numpy() % 100_000, 5),
                "economieSocialeSolidaireUniteLegale": part["ess"].to_numpy(dtype=object),
                "societeMissionUniteLegale": "N",
                "caractereEmployeurUniteLegale": np.where(employer, "O", "N"),
            }
            writer.write_table(official_table(UNITE_LEGALE_COLUMNS, values, n))


def _write_etablissements(path: Path, rows: _Rows, rng: np.random.Generator) -> None:
    schema = pa.schema([(c, pa.string()) for c in ETABLISSEMENT_COLUMNS])
    options = pacsv.WriteOptions(include_header=True, quoting_style="none")
    with pacsv.CSVWriter(path, schema, write_options=options) as writer:
        for start in range(0, len(rows.siren), CHUNK):
            sl = slice(start, start + CHUNK)
            n = len(rows.siren[sl])
            siret = digits(rows.siret[sl], 14)
            commune = pd.Series(rows.code_commune[sl], dtype="string")
            postcode = commune.str[:2] + "0" + commune.str[3:5]
            postcode = postcode.where(~commune.str.startswith("97"), commune.str[:3] + commune.str[3:5])
            employer = rows.employer[sl]
            values = {
                "siren": digits(rows.siren[sl], 9),
                "nic": siret.str[9:],
                "siret": siret,
                "statutDiffusionEtablissement": "O",
                "dateCreationEtablissement": dates(rng, n),
                "trancheEffectifsEtablissement": rows.band[sl],
                "anneeEffectifsEtablissement": value_or_null(employer, "2023"),
                "dateDernierTraitementEtablissement": LAST_PROCESSED,
                "etablissementSiege": np.where(rows.head_office[sl], "true", "false"),
                "nombrePeriodesEtablissement": rng.integers(1, 5, n).astype(str),
                "numeroVoieEtablissement": rng.integers(1, 200, n).astype(str),
                "typeVoieEtablissement": pick(rng, tuple((t, 1.0) for t in STREET_TYPES), n),
                "libelleVoieEtablissement": pick(rng, tuple((t, 1.0) for t in STREET_NAMES), n),
                "codePostalEtablissement": postcode.to_numpy(),
                "libelleCommuneEtablissement": rows.commune_name[sl],
                "codeCommuneEtablissement": commune.to_numpy(),
                "coordonneeLambertAbscisseEtablissement": rows.x[sl].astype(str),
                "coordonneeLambertOrdonneeEtablissement": rows.y[sl].astype(str),
                "dateDebut": dates(rng, n, "2000-01-01"),
                "etatAdministratifEtablissement": rows.state[sl],
                "activitePrincipaleEtablissement": rows.naf[sl],
                "nomenclatureActivitePrincipaleEtablissement": "NAFRev2",
                "caractereEmployeurEtablissement": np.where(employer, "O", "N"),
            }
            writer.write_table(official_table(ETABLISSEMENT_COLUMNS, values, n))


def stock_dir(data: nd.NationalData, sizes: StockSizes, out_dir: Path = nd.OUT_DIR) -> Path:
    return out_dir / f"sirene-v{STOCK_VERSION}-s{data.seed}-{data.sizes.key}-{sizes.key}"


def write_stock(data: nd.NationalData, sizes: StockSizes, *, out_dir: Path = nd.OUT_DIR,
                log=print) -> dict[str, object]:
    """Write the two stock files (once: cached) and return their paths and counts."""
    folder = stock_dir(data, sizes, out_dir)
    meta_path = folder / "bench-stock.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        log(f"sirene stock: cached in {folder.name}")
        return meta
    if sizes.ess_active > len(data.establishments):
        raise ValueError(f"ess_active ({sizes.ess_active}) exceeds the national establishments "
                         f"({len(data.establishments)})")
    log(f"sirene stock: writing {sizes} into {folder} (once)")
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rows, units = _plan(data, sizes, data.seed)
    rng = np.random.default_rng(data.seed + 11)
    ul_path, etab_path = folder / UNITE_LEGALE_FILE, folder / ETABLISSEMENT_FILE
    _write_unites_legales(ul_path, units, rng)
    _write_etablissements(etab_path, rows, rng)
    (folder / MANIFEST_FILE).write_text(json.dumps({
        "notice": "Fichiers SIRENE simulés pour les mesures de performance d'essmap (bench/) : aucune ligne réelle.",
        "files": [UNITE_LEGALE_FILE, ETABLISSEMENT_FILE],
    }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    ess_siren = units.loc[units["ess"] == "O", "siren"].to_numpy()
    meta = {
        "unites_legales": str(ul_path),
        "etablissements": str(etab_path),
        "unites_legales_rows": len(units),
        "etablissements_rows": len(rows.siren),
        "ess_active_establishments": int(((rows.state == "A") & np.isin(rows.siren, ess_siren)).sum()),
        "unites_legales_bytes": ul_path.stat().st_size,
        "etablissements_bytes": etab_path.stat().st_size,
        "seconds": round(time.perf_counter() - started, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log(f"sirene stock: written in {meta['seconds']} s ({meta['etablissements_rows']:,} establishments, "
        f"{meta['etablissements_bytes'] / 1e9:.2f} GB; {meta['unites_legales_rows']:,} legal units)")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthetic SIRENE stock for the benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write (or find cached) stock files")
    write.add_argument("--small", action="store_true")
    write.add_argument("--seed", type=int, default=nd.DEFAULT_SEED)
    args = parser.parse_args(argv)
    def log(message: str) -> None:  # stdout holds the JSON answer only
        print(message, file=sys.stderr, flush=True)

    data = nd.load_or_generate(nd.sizes_from_env(nd.SMALL if args.small else nd.NATIONAL), args.seed, log=log)
    meta = write_stock(data, stock_sizes_from_env(SMALL_STOCK if args.small else NATIONAL_STOCK), log=log)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
