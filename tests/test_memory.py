"""keep_freed_memory: a process that repeats large queries reuses its freed memory."""

from __future__ import annotations

import subprocess
import sys

#: Allocates and frees two 40 MB arrays five times, after two warm-up rounds, and prints the page
#: faults of those five rounds (a fresh page costs one fault, or one per huge page).
_CHILD = """
import resource, sys
import numpy as np
from essmap.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is sys.platform.startswith("linux")
def round_trip():
    a = np.ones(5_000_000)
    b = np.ones(5_000_000)
    del a, b
round_trip(); round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    round_trip()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    """By default every round faults its arrays in again (thousands of pages); kept, the heap
    serves them from the memory the previous round freed."""
    default, kept = _faults("default"), _faults("keep")
    assert default > 1_000
    assert kept < default / 20
