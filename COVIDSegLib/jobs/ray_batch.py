"""Cohorts on a Ray cluster: each input is one Ray task (declared CPUs/GPUs, retried when its
worker or node dies) running ``pipeline.segment_file`` into an output folder every node can
reach. Each Ray worker process loads the model once. Ray is the optional ``cluster`` extra."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import CovidSegError
from .batch import DONE, FAILED, SKIPPED, BatchRow
from .workers import WorkerSpec

RETRIES = 3  # a task whose worker process or node dies runs again, up to this many times
_SEGMENTERS: Dict[str, object] = {}  # per Ray worker process: model -> Segmenter


def segment_task(path: str, spec: WorkerSpec) -> tuple:
    """One input on a Ray worker: (status, written paths, summary columns, error, seconds)."""
    import torch

    from ..errors import user_message
    from ..inference.segmenter import Segmenter
    from .pipeline import segment_file
    start = time.perf_counter()
    try:
        if spec.model not in _SEGMENTERS:
            torch.set_num_threads(spec.threads)
            _SEGMENTERS[spec.model] = Segmenter.load(spec.model, spec.inference)
        written, details = segment_file(path, Path(spec.out_dir), _SEGMENTERS[spec.model], spec.files)
        return (DONE if written else SKIPPED), [str(p) for p in written], details, "", time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - a project error is this input's result, not a retry
        return FAILED, [], {}, user_message(error), time.perf_counter() - start


def connect(address: Optional[str]):
    """Ray, connected to the cluster at ``address`` or to a new local one (None)."""
    try:
        import ray
    except ImportError:
        raise CovidSegError("--ray needs Ray: pip install -e \".[cluster]\" (or pip install ray)") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=True)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise CovidSegError(f"Cannot connect to the Ray cluster at {address}: {str(error).splitlines()[0]}") from None
    return ray


def run_ray(inputs: Sequence[str], spec: WorkerSpec, address: Optional[str] = None,
            on_row: Optional[Callable[[BatchRow], None]] = None) -> List[BatchRow]:
    """Every input as a Ray task; rows in input order. A task that still fails after ``RETRIES``
    (its worker keeps dying) is reported as failed with Ray's reason."""
    ray = connect(address)
    gpus = 0 if spec.inference.device == "cpu" else int(bool(ray.cluster_resources().get("GPU", 0)))
    task = ray.remote(num_cpus=spec.threads, num_gpus=gpus, max_retries=RETRIES)(segment_task)
    refs = {task.remote(path, spec): path for path in inputs}
    started = time.perf_counter()
    rows: Dict[str, BatchRow] = {}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            path = refs.pop(ready[0])
            try:
                status, written, details, error, seconds = ray.get(ready[0])
                row = BatchRow(path, status, round(seconds, 2), [Path(p) for p in written], details, error)
            except ray.exceptions.RayError as error:  # the worker or node died on every try
                row = BatchRow(path, FAILED, round(time.perf_counter() - started, 2),
                               error=f"Ray task failed after {RETRIES} retries: {str(error).splitlines()[0]}")
            rows[path] = row
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return [rows[i] for i in inputs if i in rows]
