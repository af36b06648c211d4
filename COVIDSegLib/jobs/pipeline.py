"""One input file -> all its outputs: the per-input jobs of ``covidseg lungs/segment``, also
used by the Slicer module's folder batch. Labels are written last: their presence marks an
input as done (resumable batches)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .. import __version__
from ..errors import InputError
from ..io.files import read_volume, write_json, write_labels, write_seg_nrrd
from ..io.orientation import axial_slices
from ..io.paths import LUNGS_OUTPUTS, SEGMENT_OUTPUTS, stem_of
from ..io.validate import check_volume
from ..labels import names_for
from ..lungs.lung_model import load_lung_model
from ..lungs.segment import segment_lungs
from ..preprocess.intensity import resolve_calibration
from ..progress import CancelToken, ProgressCallback, check, no_progress
from ..quantify.measure import quantify, summary_columns
from ..report.outputs import OutputSet, is_done
from ..report.overlay import save_overlay
from ..report.per_input import write_csv, write_html
from ..volume import HU, MEDSEG8, Volume

NO_LUNG = "No lung found: is this a chest CT, and are its intensities right (see --intensity)?"
Outputs = Tuple[List[Path], Dict[str, object]]  # written files (none: skipped), summary columns


@dataclass(frozen=True)
class FileOptions:
    intensity: str = "auto"        # calibration: auto, hu, medseg8 or linear:SLOPE,INTERCEPT
    slice_space: str = MEDSEG8     # intensity space of 2D PNG/JPG slices (MEDSEG8 or HU)
    overwrite: bool = False        # redo inputs whose labels exist
    overlay: bool = True           # write the overlay PNG montage
    lungs: str = "auto"            # lung model for `lungs` (lung_model.load_lung_model); "classic"


def _pending(path: str, out_dir: Path, opts: FileOptions) -> Optional[Tuple[str, Volume]]:
    """(stem, checked volume) of an input still to do; None when its output set exists and
    ``opts.overwrite`` is not set."""
    if is_done(path, out_dir) and not opts.overwrite:
        return None
    volume = check_volume(read_volume(path, slice_space=HU if opts.slice_space in (HU, "hu") else MEDSEG8))
    return stem_of(path), volume


_LUNG_MODELS: Dict[str, object] = {}


def lung_model_for(choice: str):
    """The lung model of ``choice`` (loaded once per process), None for the training-free lungs."""
    if choice not in _LUNG_MODELS:
        _LUNG_MODELS[choice] = load_lung_model(choice)
    return _LUNG_MODELS[choice]


def lungs_file(path: str, out_dir: Path, opts: FileOptions = FileOptions(),
               progress: ProgressCallback = no_progress, cancel: Optional[CancelToken] = None) -> Outputs:
    """Lungs of one input (learned when a lung model is installed): labels (1 left, 2 right) and
    the overlay; summary columns with the volumes and plausibility warnings."""
    pending = _pending(path, out_dir, opts)
    if pending is None:
        return [], {}
    stem, volume = pending
    calibration = resolve_calibration(volume, opts.intensity)  # detected once, for the lungs and the overlay
    labels = segment_lungs(volume, calibration=calibration, progress=progress, cancel=cancel,
                           model=lung_model_for(opts.lungs))
    if not labels.array.any():
        raise InputError(NO_LUNG)
    with OutputSet(out_dir, stem, LUNGS_OUTPUTS) as outputs:
        if opts.overlay:
            save_overlay(volume, labels, outputs.path(".overlay.png"), calibration=calibration, title=stem)
        write_labels(labels, outputs.path(".labels.nii.gz"))
        written = outputs.commit()
    report = quantify(labels)
    ml = {side: f.lung_ml for side, f in report.lungs.items()}
    return written, {"left lung mL": round(ml["left"], 1), "right lung mL": round(ml["right"], 1),
                     "warnings": "; ".join(w.removeprefix("not gradable: ") for w in report.warnings) or "none"}


def segment_file(path: str, out_dir: Path, segmenter, opts: FileOptions = FileOptions(),
                 progress: ProgressCallback = no_progress, cancel: Optional[CancelToken] = None) -> Outputs:
    """Lungs, GGO and consolidation of one input with ``segmenter`` (an ``inference.Segmenter``):
    labels, report JSON/CSV/HTML, seg.nrrd and overlay; summary columns from the report."""
    pending = _pending(path, out_dir, opts)
    if pending is None:
        return [], {}
    stem, volume = pending
    start = time.time()
    result = segmenter.segment(volume, progress, cancel)
    check(cancel)
    if not result.lungs.array.any():
        raise InputError(NO_LUNG)
    report = quantify(result.labels, volume, result.calibration)
    names = names_for(segmenter.bundle.card["task"])
    meta = {"input": str(path), "model": segmenter.bundle.name, "model_sha256": segmenter.bundle.card["sha256"],
            "lung_method": segmenter.lung_method_for(axial_slices(volume)),  # "lungs": the per-side figures
            "class_method": segmenter.class_method, "postprocessing": segmenter.postprocessing,
            "device": result.device, "precision": result.precision,
            "slices_segmented": result.slices_run, "seconds": round(time.time() - start, 2),
            "covidseg": __version__, "spacing_mm": list(volume.spacing), "shape_zyx": list(volume.shape)}
    with OutputSet(out_dir, stem, SEGMENT_OUTPUTS) as outputs:
        write_json({**meta, **report.to_dict()}, outputs.path(".report.json"))
        write_csv(report, outputs.path(".report.csv"))
        write_seg_nrrd(result.labels, outputs.path(".seg.nrrd"), names=names)
        overlay = None
        if opts.overlay:
            overlay = save_overlay(volume, result.labels, outputs.path(".overlay.png"), calibration=opts.intensity,
                                   title=stem, names=names)
        write_html(report, outputs.path(".report.html"), f"COVIDSeg report: {stem}", meta, overlay)
        write_labels(result.labels, outputs.path(".labels.nii.gz"))
        written = outputs.commit()
    return written, {**summary_columns(report), "slices": result.slices_run}
