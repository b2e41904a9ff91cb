"""Settings, in one place.

Every setting is a field of the frozen :class:`Settings` dataclass, with its type, default and
reason. Environment variables are read only by :func:`load_settings`, called once by the CLI or
the app and passed down; library functions take explicit arguments instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Root of the project checkout (the folder holding ``data/``).
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Départements of the embedded demo: Provence-Alpes-Côte d'Azur (région 93).
DEMO_REGION = "93"
DEMO_DEPARTEMENTS: tuple[str, ...] = ("04", "05", "06", "13", "83", "84")


@dataclass(frozen=True)
class Settings:
    """essmap settings.

    Attributes
    ----------
    data_dir : Path
        Folder of the embedded data (``data/``): ``geo/`` real boundaries, ``raw/`` real tables.
        Env: ``ESSMAP_DATA_DIR``.
    db_path : Path
        The DuckDB store. Default ``data/essmap.duckdb``. Env: ``ESSMAP_DB``.
        The app and queries open it read-only; builds write a temporary file then swap it in.
    cache_dir : Path
        Where ``essmap fetch`` keeps downloads (resumable). Default ``data/cache``.
        Env: ``ESSMAP_CACHE_DIR``.
    synthetic_seed : int
        Seed of the synthetic establishment generator: the demo must be identical on every
        machine. Env: ``ESSMAP_SEED``.
    default_radius_m : float
        Radius of the QPV x tiers-lieux query, in metres ("à moins d'1 km" in ANCT publications).
    demo_departements : tuple of str
        Départements of the embedded demo (PACA).
    """

    data_dir: Path = PROJECT_ROOT / "data"
    db_path: Path = PROJECT_ROOT / "data" / "essmap.duckdb"
    cache_dir: Path = PROJECT_ROOT / "data" / "cache"
    synthetic_seed: int = 20240101
    default_radius_m: float = 1000.0
    demo_departements: tuple[str, ...] = field(default=DEMO_DEPARTEMENTS)

    @property
    def geo_dir(self) -> Path:
        """Real boundaries shipped with the project (communes, QPV)."""
        return self.data_dir / "geo"

    @property
    def raw_dir(self) -> Path:
        """Real tabular open data shipped with the project (EPCI, tiers-lieux...)."""
        return self.data_dir / "raw"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build the settings from the environment (the only place it is read)."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("ESSMAP_DATA_DIR", Settings.data_dir))
    return Settings(
        data_dir=data_dir,
        db_path=Path(env.get("ESSMAP_DB", data_dir / "essmap.duckdb")),
        cache_dir=Path(env.get("ESSMAP_CACHE_DIR", data_dir / "cache")),
        synthetic_seed=int(env.get("ESSMAP_SEED", Settings.synthetic_seed)),
    )
