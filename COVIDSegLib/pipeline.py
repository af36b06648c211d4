"""One input file -> all its outputs: the per-input jobs of ``covidseg lungs/segment``, also
used by the Slicer module's folder batch. Labels are written last: their presence marks an
input as done (resumable batches)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from . import __version__
from .errors import CovidSegError, InputError
from .intensity import resolve_calibration
from .io import read_volume, stem_of, write_json, write_labels, write_seg_nrrd
from .labels import names_for
from .lung_model import load_lung_model
from .lungs import segment_lungs
from .overlay import save_overlay
from .progress import CancelToken, ProgressCallback, check, no_progress
from .quantify import quantify, summary_columns
from .report import write_csv, write_html
from .validate import check_volume
from .volume import HU, MEDSEG8, Volume

def planned_inputs(inputs: Sequence[str], out_dir: Path, suffixes: Sequence[str]) -> List[str]:
    """The batch's inputs, checked before any work: the same file given twice counts once; two
    inputs whose outputs would collide (same stem) or an output that would overwrite an input
    are refused with one line (CovidSegError)."""
    unique: Dict[Path, str] = {}
    for item in inputs:
        unique.setdefault(Path(item).resolve(), str(item))
    by_stem: Dict[str, str] = {}
    for item in unique.values():
        stem = stem_of(item)
        if stem in by_stem:
            raise CovidSegError(f"{by_stem[stem]} and {item} would both write {stem}.*: rename one, "
                                "or run them into different output folders")
        by_stem[stem] = item
    outputs = {(Path(out_dir) / f"{stem}{suffix}").resolve() for stem in by_stem for suffix in suffixes}
    for path, item in unique.items():
        if path in outputs or any(path == parent for parent in {o.parent for o in outputs}):
            raise CovidSegError(f"{item}: an output of this batch would overwrite this input; "
                                "choose another output folder")
    return list(unique.values())


NO_LUNG = "No lung found: is this a chest CT, and are its intensities right (see --intensity)?"
Outputs = Tuple[List[Path], Dict[str, object]]  # written files (none: skipped), summary columns


@dataclass(frozen=True)
class FileOptions:
    intensity: str = "auto"        # calibration: auto, hu, medseg8 or linear:SLOPE,INTERCEPT
    slice_space: str = MEDSEG8     # intensity space of 2D PNG/JPG slices (MEDSEG8 or HU)
    overwrite: bool = False        # redo inputs whose labels exist
    overlay: bool = True           # write the overlay PNG montage
    lungs: str = "auto"            # lung model for `lungs` (lung_model.load_lung_model); "classic"


def _pending(path: str, out_dir: Path, opts: FileOptions) -> Optional[Tuple[str, Path, Volume]]:
    """(stem, labels path, checked volume) of an input still to do; None when its labels exist
    and ``opts.overwrite`` is not set."""
    stem = stem_of(path)
    labels_path = Path(out_dir) / f"{stem}.labels.nii.gz"
    if labels_path.exists() and not opts.overwrite:
        return None
    return stem, labels_path, check_volume(read_volume(path, slice_space=HU if opts.slice_space in (HU, "hu") else MEDSEG8))


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
    stem, labels_path, volume = pending
    calibration = resolve_calibration(volume, opts.intensity)  # detected once, for the lungs and the overlay
    labels = segment_lungs(volume, calibration=calibration, progress=progress, cancel=cancel,
                           model=lung_model_for(opts.lungs))
    if not labels.array.any():
        raise InputError(NO_LUNG)
    written = []
    if opts.overlay:
        written.append(save_overlay(volume, labels, Path(out_dir) / f"{stem}.overlay.png", calibration=calibration,
                                    title=stem))
    written.append(write_labels(labels, labels_path))
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
    stem, labels_path, volume = pending
    out_dir = Path(out_dir)
    start = time.time()
    result = segmenter.segment(volume, progress, cancel)
    check(cancel)
    if not result.lungs.array.any():
        raise InputError(NO_LUNG)
    report = quantify(result.labels, volume, result.calibration)
    names = names_for(segmenter.bundle.card["task"])
    meta = {"input": str(path), "model": segmenter.bundle.name, "model_sha256": segmenter.bundle.card["sha256"],
            "lungs": segmenter.lung_method,
            "device": result.device, "slices_segmented": result.slices_run, "seconds": round(time.time() - start, 2),
            "covidseg": __version__, "spacing_mm": list(volume.spacing), "shape_zyx": list(volume.shape)}
    written = [write_json({**meta, **report.to_dict()}, out_dir / f"{stem}.report.json"),
               write_csv(report, out_dir / f"{stem}.report.csv"),
               write_seg_nrrd(result.labels, out_dir / f"{stem}.seg.nrrd", names=names)]
    overlay = None
    if opts.overlay:
        overlay = save_overlay(volume, result.labels, out_dir / f"{stem}.overlay.png", calibration=opts.intensity,
                               title=stem, names=names)
        written.append(overlay)
    written.append(write_html(report, out_dir / f"{stem}.report.html", f"COVIDSeg report: {stem}", meta, overlay))
    written.append(write_labels(result.labels, labels_path))
    return written, summary_columns(report)
