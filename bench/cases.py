"""The command-line cases on the national store, each a whole process, with same-run baselines.

- ``essmap query qpv-radius --radius 1000 --out FILE``: target < 1 s and < 500 MB peak;
- ``essmap query indicators --level commune --out FILE``: target < 1.5 s;

beside, in the same run and on the same store: ``python -c "import essmap.cli"`` (what any essmap
command pays before it starts), and the library recipes of :mod:`baselines` (a DuckDB ``GROUP BY``
of the same counts; GeoPandas for the radius). Each command runs once unmeasured (warm-up: the
operating system's file cache), then ``runs`` times; medians, min and max are reported with the
load average before and after. The answers of essmap and of the baselines are compared.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from measure import ESSMAP, HERE, OUT_DIR, Series, child_env, log, repeat_process

TARGET_QPV_RADIUS_S = 1.0
TARGET_QPV_RADIUS_MB = 500.0
TARGET_INDICATORS_S = 1.5
RADIUS_M = 1000

#: Counts compared between ``essmap query indicators`` and the DuckDB baseline.
INDICATOR_COUNTS = ("n_etablissements", "n_etablissements_employeurs", "n_organisations", "n_etablissements_en_qpv",
                    "n_employeurs_en_qpv", "n_tiers_lieux", "n_qpv", "n_qpv_avec_tiers_lieu")


def commands(db: Path, out_dir: Path) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "qpv_radius.essmap": [str(ESSMAP), "query", "qpv-radius", "--radius", str(RADIUS_M), "--force",
                              "--out", str(out_dir / "qpv_radius_essmap.csv"), "--db", str(db)],
        "qpv_radius.geopandas": [python, str(HERE / "baselines.py"), "qpv-radius", "--radius", str(RADIUS_M),
                                 "--db", str(db), "--out", str(out_dir / "qpv_radius_geopandas.csv")],
        "indicators.essmap": [str(ESSMAP), "query", "indicators", "--level", "commune", "--force",
                              "--out", str(out_dir / "indicators_essmap.csv"), "--db", str(db)],
        "indicators.duckdb": [python, str(HERE / "baselines.py"), "indicators", "--radius", str(RADIUS_M),
                              "--db", str(db), "--out", str(out_dir / "indicators_duckdb.csv")],
        "import_essmap_cli": [python, "-c", "import essmap.cli"],
    }


def run(db: Path, *, runs: int) -> dict[str, Any]:
    """Every command measured (``runs`` times after one warm-up), then the answers compared."""
    out_dir = OUT_DIR / "cli"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"runs": runs, "db": str(db)}
    for name, command in commands(db, out_dir).items():
        log(f"cli: {name} ({runs} runs after a warm-up)")
        wall, peak, _done = repeat_process(command, runs=runs, env=child_env())
        results[name] = {"wall": wall.to_dict(), "peak_mb": peak.to_dict()}
        log(f"cli: {name}: median {wall.median:.2f} s [{wall.low:.2f}, {wall.high:.2f}], peak {peak.median:.0f} MB "
            f"(load {wall.load_before[0]:.2f} -> {wall.load_after[0]:.2f})")
    results["agreement"] = {
        "indicators": compare_indicators(out_dir / "indicators_essmap.csv", out_dir / "indicators_duckdb.csv"),
        "qpv_radius": compare_qpv_radius(out_dir / "qpv_radius_essmap.csv", out_dir / "qpv_radius_geopandas.csv"),
    }
    return results


def _read(path: Path, key: str) -> pd.DataFrame:
    return pd.read_csv(path, dtype={key: str}, encoding="utf-8-sig").set_index(key)


def compare_indicators(essmap_csv: Path, baseline_csv: Path) -> dict[str, object]:
    """Communes whose count agrees, per column."""
    ours, theirs = _read(essmap_csv, "code"), _read(baseline_csv, "code")
    theirs = theirs.reindex(ours.index)
    same = {c: float((ours[c].fillna(-1).to_numpy() == theirs[c].fillna(-1).to_numpy()).mean())
            for c in INDICATOR_COUNTS}
    return {"rows_essmap": len(ours), "rows_baseline": int(theirs["nom"].notna().sum()), "same_share": same}


def compare_qpv_radius(essmap_csv: Path, baseline_csv: Path) -> dict[str, object]:
    """QPVs with the same covered flag, count and nearest tiers-lieu; largest distance gap (geodesic vs planar)."""
    ours, theirs = _read(essmap_csv, "code_qp"), _read(baseline_csv, "code_qp")
    theirs = theirs.reindex(ours.index)
    gap = np.abs(ours["nearest_distance_m"].to_numpy(dtype=float) - theirs["nearest_distance_m"].to_numpy(dtype=float))
    return {
        "rows_essmap": len(ours), "rows_baseline": int(theirs["n_tiers_lieux"].notna().sum()),
        "same_covered": float((ours["covered"].astype(bool).to_numpy() == theirs["covered"].fillna(False).astype(bool)
                               .to_numpy()).mean()),
        "same_count": float((ours["n_tiers_lieux"].to_numpy() == theirs["n_tiers_lieux"].fillna(-1).to_numpy()).mean()),
        "same_nearest": float((ours["nearest_id"].astype(str).to_numpy() == theirs["nearest_id"].astype(str)
                               .to_numpy()).mean()),
        "max_distance_gap_m": float(np.nanmax(gap)) if len(gap) else 0.0,
        "covered_essmap": int(ours["covered"].astype(bool).sum()),
    }


def series(results: dict[str, Any], name: str, what: str = "wall") -> Series:
    """A measured series back from the results dictionary (JSON)."""
    data = results[name][what]
    return Series(list(data["values"]), tuple(data["load_before"]), tuple(data["load_after"]), data["unit"])
