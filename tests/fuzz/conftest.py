"""Fault injection and fuzzing: Hypothesis profiles and the outcome every input must have.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (default, what ``make test`` runs: few examples, a
minute in all) and ``fuzz`` (``make fuzz``: many more). Both are derandomized, so that a failure in
CI shows again on a developer's machine; ``explore`` draws new inputs at every run. None has a
deadline (DuckDB and GDAL take a variable time on a shared machine).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, derandomize=True, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=8, **_COMMON)
settings.register_profile("fuzz", max_examples=150, **_COMMON)
# new inputs at every run, for a developer hunting bugs (a failure prints its @reproduce_failure)
settings.register_profile("explore", max_examples=300, **{**_COMMON, "derandomize": False})
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

@pytest.fixture
def store_copy(tmp_path, demo_db):
    """A fresh copy of the demo store per call (examples of one test share the tmp_path)."""
    counter = iter(range(10_000))

    def make() -> Path:
        folder = tmp_path / f"store{next(counter)}"
        folder.mkdir()
        path = folder / "essmap.duckdb"
        shutil.copyfile(demo_db, path)
        return path

    return make
