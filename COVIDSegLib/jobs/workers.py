"""Local parallel batches: N worker processes, each loading the model once and segmenting one
input at a time through ``pipeline.segment_file`` (so resume, whole output sets and one-line
failures hold per input). A worker that dies is replaced and its input reported as failed.
"""
from __future__ import annotations

import multiprocessing
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Deque, Dict, List, Optional, Sequence

from ..errors import CovidSegError
from ..threads import usable_cores
from .batch import DONE, FAILED, SKIPPED, BatchRow

MEMORY_PER_WORKER = 3 * 1024**3  # a 512x512x300 volume in a worker (docs/BENCHMARKS.md: under 3 GB)


@dataclass(frozen=True)
class WorkerSpec:
    """What each worker needs to build its segmenter and run inputs (picklable)."""
    model: str
    out_dir: str
    inference: object        # inference.InferenceOptions
    files: object            # pipeline.FileOptions
    threads: int = 1


def default_workers(cores: Optional[int] = None, available: Optional[int] = None) -> int:
    """As many workers as there are pairs of cores and as fit in free memory (at least one)."""
    from ..io.validate import available_memory
    cores = cores or usable_cores()
    available = available_memory() if available is None else available
    by_memory = max(int(available // MEMORY_PER_WORKER), 1) if available else cores
    return max(1, min(cores // 2, by_memory))


def threads_per_worker(workers: int, cores: Optional[int] = None) -> int:
    cores = cores or usable_cores()
    return max(1, cores // max(workers, 1))


def _worker(spec: WorkerSpec, conn) -> None:
    """A worker process: the parent decides on Ctrl-C (SIGINT ignored), SIGTERM unwinds cleanly
    (the input in flight discards its staged outputs) and ends the worker without a word."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..signals import handle_stop_signals
    handle_stop_signals(sigint=False)
    try:
        _serve(spec, conn)
    except KeyboardInterrupt:  # SIGTERM from the parent
        pass


def _serve(spec: WorkerSpec, conn) -> None:
    import torch

    from ..errors import user_message
    from ..inference.segmenter import Segmenter
    from .pipeline import segment_file
    torch.set_num_threads(spec.threads)
    try:
        segmenter = Segmenter.load(spec.model, spec.inference)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which stops the batch
        conn.send(("broken", "", [], {}, user_message(error)))
        return
    conn.send(("ready", "", [], {}, ""))
    while (path := conn.recv()) is not None:
        try:
            written, details = segment_file(path, Path(spec.out_dir), segmenter, spec.files)
            conn.send((DONE if written else SKIPPED, path, [str(p) for p in written], details, ""))
        except Exception as error:  # noqa: BLE001 - one input's failure, the worker goes on
            conn.send((FAILED, path, [], {}, user_message(error)))


class _Slot:
    """One worker process, its pipe, and the input it is running."""

    def __init__(self, context, spec: WorkerSpec):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(spec, child), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.current: Optional[str] = None
        self.started = 0.0

    def give(self, path: str) -> None:
        self.current, self.started = path, time.perf_counter()
        self.conn.send(path)

    def stop(self, wait_s: float) -> None:
        self.process.join(wait_s)  # a worker told to stop (None) exits by itself
        if self.process.is_alive():
            self.process.terminate()  # SIGTERM: the worker discards its partial output set
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def run_parallel(inputs: Sequence[str], spec: WorkerSpec, workers: int,
                 on_row: Optional[Callable[[BatchRow], None]] = None) -> List[BatchRow]:
    """Every input on one of ``workers`` processes; rows in input order. Ctrl-C stops the workers
    (their current inputs leave nothing), keeps finished inputs and re-raises KeyboardInterrupt."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    pending: Deque[str] = deque(inputs)
    rows: Dict[str, BatchRow] = {}
    slots = [_Slot(context, spec) for _ in range(min(workers, len(inputs)))]
    idle_deaths, finished = 0, False

    def record(row: BatchRow) -> None:
        rows[row.input] = row
        if on_row is not None:
            on_row(row)

    try:
        while len(rows) < len(inputs):
            for slot in slots:
                if slot.ready and slot.current is None and pending:
                    slot.give(pending.popleft())
            ready = wait([s.conn for s in slots] + [s.process.sentinel for s in slots])
            for slot in list(slots):
                message = None
                if slot.conn in ready:
                    try:
                        message = slot.conn.recv()
                    except (EOFError, OSError):  # the pipe closed: the worker died
                        slot.process.join(5)
                if message is not None:
                    status, path, written, details, error = message
                    if status == "broken":
                        raise CovidSegError(error)
                    if status == "ready":
                        slot.ready = True
                        continue
                    record(BatchRow(path, status, round(time.perf_counter() - slot.started, 2),
                                    [Path(p) for p in written], details, error))
                    slot.current = None
                elif not slot.process.is_alive():
                    _remove_staging(spec.out_dir, slot.process.pid)
                    if slot.current is not None:  # it died on this input: report it, go on
                        record(BatchRow(slot.current, FAILED, round(time.perf_counter() - slot.started, 2),
                                        error=f"the worker process died ({_death(slot.process.exitcode)}) "
                                              "while segmenting this input"))
                    else:
                        idle_deaths += 1
                        if idle_deaths > 2 * workers:
                            raise CovidSegError("worker processes keep dying before they take an input "
                                                f"({_death(slot.process.exitcode)})")
                    slots.remove(slot)
                    slots.append(_Slot(context, spec))
        finished = True
    finally:
        for slot in slots:
            try:
                slot.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for slot in slots:
            slot.stop(10.0 if finished else 0.0)
    return [rows[i] for i in inputs if i in rows]


def _remove_staging(out_dir: str, pid: Optional[int]) -> None:
    """What a killed worker was writing (its staging folder) goes with it."""
    from ..report.outputs import STAGING_PREFIX
    for folder in Path(out_dir).glob(f"{STAGING_PREFIX}{pid}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def _death(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
