"""Process memory: keep freed memory for the next query instead of handing it back.

A national query allocates and frees a few hundred megabytes of numpy arrays. By default,
glibc maps each large array anew and returns the freed top of its heap to the system, so the
next query touches fresh pages again: on the benchmark machine (a virtual machine, where a page
fault costs about 10 µs), assigning 2 million establishments paid 70,000 faults and 0.2 to
0.9 s of system time per call, and its run time varied by half. A long-running process that
repeats such queries (the dashboard, the benchmark) calls :func:`keep_freed_memory` once at
start. Its resident memory then stays at its peak, which it reaches anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: Arrays below this size come from the heap, and up to this much freed memory stays mapped.
KEPT_BYTES = 1 << 30

# glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(kept_bytes: int = KEPT_BYTES) -> bool:
    """Ask the C allocator to serve arrays up to ``kept_bytes`` from its heap and to keep up to
    ``kept_bytes`` of freed memory. Returns whether it did: False without glibc (macOS, musl),
    where nothing changes."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, kept_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, kept_bytes))
