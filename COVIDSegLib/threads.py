"""Threads for per-slice work that releases the GIL (SimpleITK filters, scipy.ndimage): the cores
the network leaves idle between its batches. Results are the same as one after another."""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, List, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 4


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_count() -> int:
    """Usable cores, at most ``MAX_THREADS``, and no more than torch's own thread count when torch is
    loaded (a batch worker process set to 2 threads uses 2 here too)."""
    cores = usable_cores()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        cores = min(cores, torch.get_num_threads())
    return max(1, min(MAX_THREADS, cores))


def thread_map(fn: Callable[[T], R], items: Iterable[T]) -> List[R]:
    """``[fn(x) for x in items]``, spread over ``thread_count()`` threads (in order; exceptions propagate)."""
    items = list(items)
    threads = min(thread_count(), len(items))
    if threads < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))
