"""Batch runs driven by the widget.

Scene volumes go one at a time: each is read and its result written on the main thread (MRML),
the model runs in the worker (``JobRunner``), one summary row per volume. Folders go wholly to
the worker through ``SceneProcessor.process_folder``, which touches no MRML; ``folder_inputs``
(``COVIDSegLib.io``, shared with the command line) says what in a folder is an input.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from COVIDSegLib.jobs import batch as library_batch
from COVIDSegLib.quantify.measure import summary_columns
from COVIDSegSlicer.processing import SummaryRow, not_started, summary_row
from COVIDSegSlicer.volume_bridge import volume_from_node

from .job import BackgroundJob, Work, error_message


def _failed(name: str, seconds: float, error: BaseException) -> library_batch.BatchRow:
    return library_batch.BatchRow(name, library_batch.FAILED, seconds, error=error_message(error))


class SceneBatch:
    """``next_work()`` -> (title, work) for the worker, ``finish(job)`` when it ends; repeat
    until ``next_work()`` returns None. ``rows`` is then the summary, built as
    ``SceneProcessor.process_scene_volumes`` builds it (``processing.summary_row``)."""

    def __init__(self, processor, volume_nodes: Sequence, options, show3d: bool = False):
        self.processor, self.options, self.show3d = processor, options, show3d
        self.pending = list(volume_nodes)
        self.count = len(self.pending)
        self.rows: List[SummaryRow] = []
        self.current = None

    def next_work(self) -> Optional[Tuple[str, Work]]:
        """Main thread: read the next volume and return the model run on it."""
        while self.pending:
            node = self.pending.pop(0)
            try:
                volume = volume_from_node(node)
            except Exception as error:  # an unreadable volume is one failed row
                self.rows.append(summary_row(node.GetName(), _failed(node.GetName(), 0.0, error)))
                continue
            self.current = node
            title = f"{len(self.rows) + 1}/{self.count} {node.GetName()}"
            return title, lambda progress, cancel: self.processor.compute(volume, self.options, progress, cancel)
        return None

    def finish(self, job: BackgroundJob) -> SummaryRow:
        """Main thread: add the volume's segmentation and report to the scene, or record why not;
        after a cancel the remaining volumes are not started."""
        node, self.current = self.current, None
        name, error = node.GetName(), job.error
        if error is None:
            try:
                segmentation, table = self.processor.apply_result(node, job.result, show3d=self.show3d)
            except Exception as apply_error:  # apply_result has left the scene as it was
                error = apply_error
        if error is None:
            done = library_batch.BatchRow(name, library_batch.DONE, job.result.seconds,
                                          [segmentation.GetID(), table.GetID()], summary_columns(job.result.report))
        else:
            done = _failed(name, job.elapsed, error)
        row = summary_row(name, done, job.cancelled)
        self.rows.append(row)
        if job.cancelled:
            self.rows += not_started([n.GetName() for n in self.pending])
            self.pending = []
        return row
