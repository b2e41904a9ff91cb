"""The embedded default store (région PACA): real boundaries and QPV, a few real tiers-lieux, synthetic
establishments and most tiers-lieux synthetic."""

from __future__ import annotations

import tempfile
from pathlib import Path

from essmap import store
from essmap.demo.synthetic import write_demo_inputs
from essmap.domain import schema
from essmap.domain.config import Settings
from essmap.io.readers.communes import read_communes
from essmap.io.readers.qpv import read_qpv
from essmap.io.readers.sirene import read_sirene
from essmap.io.readers.tiers_lieux import read_tiers_lieux
from essmap.store.ingest import (
    LoadReport,
    Progress,
    finish_write,
    no_progress,
    write_admin,
    write_establishments,
    write_qpv,
    write_tiers_lieux,
)

#: Millésimes of the shipped files whose names do not say it (see data/README.md).
DEMO_MILLESIMES = {
    "communes_france.parquet": "populations légales 2017",
    "tiers_lieux_commune_mesure.csv": "2022",
}


def build_demo(settings: Settings, *, db_path: Path | None = None, scale: float = 1.0,
               progress: Progress | None = None) -> LoadReport:
    """Build the embedded default database (région PACA) from the files under ``data/``.

    Real: communes and population, QPV 2024 polygons, tiers-lieux of the shipped lists that fall
    in the region. Synthetic (``is_synthetic``): ESS establishments and extra tiers-lieux, written
    by :mod:`essmap.demo.synthetic` in the official schemas and read back by the same readers.
    """
    progress = progress or no_progress
    db_path = Path(db_path or settings.db_path)
    deps = list(settings.demo_departements)
    geo, raw = settings.geo_dir, settings.raw_dir
    report = LoadReport(db_path)

    progress("Communes", 0.05)
    communes = read_communes(geo / "communes_france.parquet", departements=deps,
                             millesime=DEMO_MILLESIMES["communes_france.parquet"])
    progress("QPV 2024", 0.15)
    qpv = read_qpv(geo / "qpv2024_paca.geojson", departements=deps)
    progress("Tiers-lieux réels", 0.2)
    real_tiers_lieux = [
        read_tiers_lieux(raw / "tiers_lieux_commune_mesure.csv",
                         millesime=DEMO_MILLESIMES["tiers_lieux_commune_mesure.csv"]),
        read_tiers_lieux(raw / "france_tiers_lieux_2023_numerique_extrait.csv", departements=deps),
    ]
    with tempfile.TemporaryDirectory(prefix="essmap-demo-") as tmp:
        progress("Données simulées (établissements ESS, tiers-lieux)", 0.3)
        files = write_demo_inputs(Path(tmp), communes.frame, qpv.frame,
                                  seed=settings.synthetic_seed, scale=scale)
        progress("Lecture SIRENE simulée", 0.5)
        sirene = read_sirene(files.unites_legales, files.etablissements, departements=deps)
        synthetic_tiers_lieux = read_tiers_lieux(files.tiers_lieux, departements=deps)

    progress("Écriture de la base", 0.8)
    with store.atomic_update(db_path, start_empty=True) as con:
        report.replacements = [
            write_admin(con, communes, settings), write_qpv(con, qpv), write_establishments(con, sirene),
            *(write_tiers_lieux(con, read, communes.frame, keep_departements=deps)
              for read in [*real_tiers_lieux, synthetic_tiers_lieux]),
        ]
        progress("Jointures (communes, EPCI, QPV) et géométries d'affichage", 0.9)
        # the points were written after the communes and QPVs: located at insert, not again
        finish_write(con, changed=list(schema.FILE_LAYERS), located=schema.POINT_LAYERS)
        report.sources = [communes.meta, qpv.meta, sirene.meta,
                          *(r.meta for r in real_tiers_lieux), synthetic_tiers_lieux.meta]
    progress("Terminé", 1.0)
    return report
