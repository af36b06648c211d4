"""Running COVIDSeg on scene volumes and on folders.

``compute`` is the model run: pure computation on a COVIDSegLib ``Volume``, safe in a worker
thread. ``apply_result`` writes its MRML outputs on the main thread and, if anything fails,
leaves the scene as it was. The batch helpers run both per volume and report one summary row
per input; a cancelled or failed input adds nothing to the scene.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from COVIDSegLib.bundle import default_model
from COVIDSegLib.errors import Cancelled, CovidSegError, user_message
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter
from COVIDSegLib.io.paths import stem_of
from COVIDSegLib.io.validate import check_volume
from COVIDSegLib.jobs import batch
from COVIDSegLib.jobs.pipeline import FileOptions, segment_file
from COVIDSegLib.progress import CancelToken, ProgressCallback, check, no_progress
from COVIDSegLib.quantify.measure import Report, quantify, summary_columns
from COVIDSegLib.report.cohort import write_cohort
from COVIDSegLib.volume import Volume

from .report_table import make_table, report_to_table
from .rollback import removed_on_error, restored_on_error
from .segmentation_output import labels_to_segmentation
from .segments import ALL_CLASSES, values_for_classes
from .volume_bridge import volume_from_node

log = logging.getLogger(__name__)

OK, FAILED, CANCELLED, SKIPPED = "ok", "failed", "cancelled", "skipped"
PROGRESS_STEPS = 100  # per input, for batch progress
MODEL_ATTRIBUTE = "COVIDSeg.model"
SUMMARY_COLUMNS = (("Input", "string"), ("Status", "string"), ("Seconds", "double"), ("Grade", "string"),
                   ("Involvement (%)", "double"), ("CT severity score", "double"), ("Message", "string"))


@dataclass
class ProcessOptions:
    model: str = field(default_factory=default_model)   # bundle name or card path
    device: str = "auto"                                 # auto, cpu, cuda, cuda:N
    tta: bool = False                                    # average with the mirrored prediction
    min_component_mm3: float = 10.0                      # smaller infection islands are dropped
    classes: Tuple[str, ...] = ALL_CLASSES               # segments to output (segments.CLASS_VALUES)
    probabilities: bool = False                          # keep the model's class probabilities too

    def inference_options(self) -> InferenceOptions:
        return InferenceOptions(device=self.device, tta_flip=self.tta, min_component_mm3=self.min_component_mm3,
                                keep_probabilities=self.probabilities)


# segmenter_factory(model, device, inference options) -> object with .bundle and
# .segment(volume, progress, cancel) -> Segmentation (COVIDSegLib.inference.segmenter.Segmenter).
SegmenterFactory = Callable[[str, str, InferenceOptions], Any]


def default_segmenter_factory(model: str, device: str, options: InferenceOptions) -> Segmenter:
    return Segmenter.load(model, options, device)


@dataclass
class ProcessResult:
    labels: Volume        # full label map (0..4) on the input's grid
    report: Report        # quantified from the full label map, whatever ``classes`` shows
    task: str
    model: str
    device: str
    slices_run: int
    seconds: float
    classes: Tuple[str, ...]
    probabilities: Optional[Dict[int, Any]] = None  # label value -> uint8 map (ProcessOptions.probabilities)


@dataclass
class SummaryRow:
    name: str
    status: str                        # ok, failed, cancelled, skipped
    seconds: float = 0.0
    grade: str = ""
    involvement_percent: float = math.nan
    total_score: float = math.nan
    message: str = ""
    outputs: Tuple[str, ...] = ()      # node IDs (scene) or written files (folder)


def _internal_error(error: Exception) -> CovidSegError:
    """A bug as a one-line project error (so the batch goes on); the traceback goes to the log."""
    log.exception("COVIDSeg failed")
    return CovidSegError(user_message(error))


def _batch_progress(progress: ProgressCallback, index: int, count: int, name: str) -> ProgressCallback:
    """Map one input's progress onto the whole batch (``PROGRESS_STEPS`` per input)."""
    def report(done: float, total: float, message: str = "") -> None:
        fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
        progress(int(round(PROGRESS_STEPS * (index + fraction))), PROGRESS_STEPS * count,
                 f"{name} ({index + 1}/{count}): {message}")
    return report


class SceneProcessor:
    """COVIDSeg on an MRML scene; the segmenter (one model loaded at a time) is reused."""

    def __init__(self, scene, segmentations_logic, segmenter_factory: SegmenterFactory = default_segmenter_factory):
        self.scene, self.segmentations_logic, self._factory = scene, segmentations_logic, segmenter_factory
        self._cached: Optional[Tuple[tuple, Any]] = None
        self._lock = threading.Lock()

    def segmenter(self, options: ProcessOptions):
        key = (options.model, options.device, options.tta, options.min_component_mm3, options.probabilities)
        with self._lock:
            if self._cached is None or self._cached[0] != key:
                self._cached = None  # free the old model first
                self._cached = (key, self._factory(options.model, options.device, options.inference_options()))
            return self._cached[1]

    # ------------------------------------------------------------------ one volume
    def compute(self, volume: Volume, options: ProcessOptions, progress: ProgressCallback = no_progress,
                cancel: Optional[CancelToken] = None) -> ProcessResult:
        """Segment and quantify; touches no MRML (make ``volume`` with ``volume_from_node`` on the
        main thread), so it may run in a worker thread."""
        start = time.perf_counter()
        values_for_classes(options.classes)  # unknown class names fail before the model runs
        check_volume(volume)
        check(cancel)
        segmenter = self.segmenter(options)
        segmentation = segmenter.segment(volume, progress, cancel)
        check(cancel)
        report = quantify(segmentation.labels, volume, segmentation.calibration)
        return ProcessResult(segmentation.labels, report, segmenter.bundle.card["task"],
                             segmenter.bundle.name, segmentation.device, segmentation.slices_run,
                             time.perf_counter() - start, tuple(options.classes), segmentation.probabilities)

    def apply_result(self, volume_node, result: ProcessResult, segmentation_node=None, show3d: bool = False,
                     table_node=None):
        """Main thread: the segmentation and report table nodes of ``result``. On any exception
        the nodes it added are removed and the given nodes get their content back."""
        with removed_on_error(self.scene), restored_on_error(segmentation_node, table_node):
            segmentation = labels_to_segmentation(self.scene, self.segmentations_logic, volume_node, result.labels,
                                                  result.task, segmentation_node, show3d, result.classes)
            segmentation.SetAttribute(MODEL_ATTRIBUTE, result.model)
            table = report_to_table(self.scene, result.report, table_node, f"{volume_node.GetName()} COVIDSeg report",
                                    result.task, beside=volume_node)
        return segmentation, table

    def process_volume(self, volume_node, options: ProcessOptions, progress: ProgressCallback = no_progress,
                       cancel: Optional[CancelToken] = None, segmentation_node=None, show3d: bool = False):
        """``compute`` then ``apply_result`` (main thread); returns (segmentation, table)."""
        result = self.compute(volume_from_node(volume_node), options, progress, cancel)
        return self.apply_result(volume_node, result, segmentation_node, show3d)

    # ------------------------------------------------------------------ batches
    def process_scene_volumes(self, volume_nodes: Sequence, options: ProcessOptions,
                              progress: ProgressCallback = no_progress, cancel: Optional[CancelToken] = None,
                              show3d: bool = False) -> List[SummaryRow]:
        """Every volume in turn (main thread); a failure is reported and the batch goes on, a
        cancel marks the current and remaining volumes cancelled. Outputs' node IDs in rows."""
        def job(index: int, report: ProgressCallback) -> Tuple[List[str], Dict[str, object]]:
            node = volume_nodes[index]
            result = self.compute(volume_from_node(node), options, report, cancel)
            segmentation, table = self.apply_result(node, result, show3d=show3d)
            return [segmentation.GetID(), table.GetID()], summary_columns(result.report)
        return _run_batch([node.GetName() for node in volume_nodes], job, progress, cancel)

    def process_folder(self, paths: Sequence[Union[str, Path]], out_dir: Union[str, Path], options: ProcessOptions,
                       progress: ProgressCallback = no_progress, cancel: Optional[CancelToken] = None,
                       overwrite: bool = False, overlay: bool = True) -> List[SummaryRow]:
        """Files or DICOM folders through the library's per-input job (``pipeline.segment_file``:
        the CLI's outputs, labels written last). Inputs whose outputs exist are skipped unless
        ``overwrite``. Ends, like the CLI, with ``cohort.csv`` and ``index.html`` in ``out_dir``.
        Touches no MRML."""
        file_options = FileOptions(overwrite=overwrite, overlay=overlay)
        finished: List[batch.BatchRow] = []

        def job(index: int, report: ProgressCallback) -> Tuple[List[Path], Dict[str, object]]:
            return segment_file(str(paths[index]), Path(out_dir), self.segmenter(options), file_options, report, cancel)
        rows = _run_batch([stem_of(p) for p in paths], job, progress, cancel, finished.append)
        if finished:
            write_cohort([replace(r, input=str(paths[int(r.input)])) for r in finished], Path(out_dir))
        return rows


Job = Callable[[int, ProgressCallback], Tuple[Sequence, Dict[str, object]]]


def _run_batch(names: Sequence[str], job: Job, progress: ProgressCallback, cancel: Optional[CancelToken],
               on_row: Optional[Callable[[batch.BatchRow], None]] = None) -> List[SummaryRow]:
    """``job(index, progress)`` for every input through the library's batch engine
    (``COVIDSegLib.jobs.batch.run_batch``), with batch progress and one ``SummaryRow`` per input."""
    cancelled, rows = set(), []

    def one(key: str):
        index = int(key)  # run_batch's inputs are the indices: names may repeat
        try:
            return job(index, _batch_progress(progress, index, len(names), names[index]))
        except Cancelled:
            cancelled.add(index)
            raise
        except (CovidSegError, MemoryError):
            raise
        except Exception as error:  # a bug: this input fails, the batch goes on
            raise _internal_error(error) from error

    def record(row: batch.BatchRow) -> None:
        if on_row is not None:
            on_row(row)
        index = int(row.input)
        rows.append(summary_row(names[index], row, index in cancelled))
        progress(PROGRESS_STEPS * (index + 1), PROGRESS_STEPS * len(names), f"{names[index]}: {rows[-1].status}")

    try:
        batch.run_batch([str(i) for i in range(len(names))], one, record, cancel)
    except Cancelled:  # raised between inputs: the rest never started
        pass
    return rows + not_started(names[len(rows):])


def not_started(names: Sequence[str]) -> List[SummaryRow]:
    """The rows of inputs a cancel stopped before they began."""
    return [SummaryRow(name, CANCELLED, message="not started") for name in names]


def summary_row(name: str, row: "batch.BatchRow", cancelled: bool = False) -> SummaryRow:
    """One input's summary row from the library batch engine's row (its details are
    ``quantify.summary_columns``); also used by the widget's scene batch (COVIDSegGUI.batch)."""
    status = CANCELLED if cancelled else {batch.DONE: OK, batch.SKIPPED: SKIPPED, batch.FAILED: FAILED}[row.status]
    details = row.details
    message = "outputs exist" if status == SKIPPED else ("" if cancelled else row.error)
    return SummaryRow(name, status, row.seconds, str(details.get("grade", "")),
                      _number(details.get("involved %")), _number(details.get("score /30")),
                      message, tuple(str(o) for o in row.outputs))


def _number(value) -> float:
    """A summary figure as a float; missing or "n/a" (no score without a grade) is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summary_to_table(scene, rows: Sequence[SummaryRow], table_node=None, name: str = "COVIDSeg batch summary"):
    """The batch summary as a table node (one row per input)."""
    return make_table(scene, SUMMARY_COLUMNS,
                      [(r.name, r.status, r.seconds, r.grade, r.involvement_percent, r.total_score, r.message)
                       for r in rows], table_node, name)
