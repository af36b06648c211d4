"""Process-level settings of the command line (never applied inside a host such as 3D Slicer)."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 64 << 20   # blocks up to 64 MB come from the heap and are reused batch after batch ...
TRIM_THRESHOLD = 256 << 20  # ... and up to 256 MB of freed heap is kept for the next batch


def tune_allocator() -> bool:
    """On glibc, serve the networks' large short-lived tensors from the heap instead of fresh
    zero-filled pages for every batch (glibc raises its mmap threshold only after the first frees,
    so a one-volume process paid the page faults throughout: ~0.5 s of 4.4 s on 64 slices,
    docs/BENCHMARKS.md 0.21.0). Returns whether it applied; elsewhere it does nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no libc by that name, or not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
