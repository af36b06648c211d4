"""Threads for per-slice work that releases the GIL (SimpleITK filters, scipy.ndimage): the cores
the network leaves idle between its batches. Results are the same as one after another."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, List, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def thread_map(fn: Callable[[T], R], items: Iterable[T]) -> List[R]:
    """``[fn(x) for x in items]``, spread over ``THREADS`` threads (in order; exceptions propagate)."""
    items = list(items)
    if THREADS == 1 or len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(THREADS, len(items))) as pool:
        return list(pool.map(fn, items))
