"""The `covidseg` command line: one sub-command per job, one clear line per error."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from tqdm import tqdm

from . import __version__
from .batch import FAILED, BatchRow, format_summary, run_batch
from .bundle import default_model, load_bundle
from .cli_models import add_commands as add_model_commands
from .inference import InferenceOptions, Segmenter
from .predict2d import pick_device
from .quantify import quantify
from .report import write_csv, write_html
from .errors import Cancelled, CovidSegError, InputError
from .intensity import parse_calibration, to_hu
from .labels import names_for
from .io import read_volume, stem_of, write_json, write_labels, write_seg_nrrd
from .lungs import segment_lungs
from .overlay import save_overlay
from .validate import check_volume
from .volume import HU, MEDSEG8, Volume

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="NIfTI/NRRD/MHA file, DICOM series folder, or 2D PNG/JPG slice")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder")
    parser.add_argument("--intensity", default="auto", metavar="CAL",
                        help="intensity calibration: auto (default), hu, medseg8, or linear:SLOPE,INTERCEPT "
                             "meaning HU = SLOPE*value + INTERCEPT")
    parser.add_argument("--slice-space", choices=[MEDSEG8, "hu"], default=MEDSEG8,
                        help="intensity space of 2D PNG/JPG slices (default: the 8-bit MedSeg window)")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay PNG")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covidseg",
        description="COVID-19 lung and infection segmentation of chest CT. Labels: 1 left lung, "
                    "2 right lung, 3 ground-glass opacity (or infection), 4 consolidation.",
    )
    parser.add_argument("--version", action="version", version=f"covidseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    lungs = sub.add_parser("lungs", help="training-free lung segmentation (left = 1, right = 2)",
                           description="Segment the lungs without a model: writes <stem>.labels.nii.gz "
                                       "(1 = left, 2 = right lung) and <stem>.overlay.png per input.")
    _add_common(lungs)
    lungs.set_defaults(run=run_lungs)
    segment = sub.add_parser("segment", help="lungs, GGO and consolidation with a model; reports",
                             description="Per input: <stem>.labels.nii.gz (1 left lung, 2 right lung, 3 GGO or "
                                         "infection, 4 consolidation), <stem>.report.json/.csv/.html, "
                                         "<stem>.seg.nrrd and <stem>.overlay.png.")
    _add_common(segment)
    segment.add_argument("--model", default=default_model(), help="model name or card path (see `covidseg models`)")
    segment.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    segment.add_argument("--batch-size", type=int, default=16, help="slices per model batch")
    segment.add_argument("--tta", action="store_true", help="average with the left-right mirrored prediction")
    segment.add_argument("--min-component-mm3", type=float, default=10.0, help="smaller infection islands are removed")
    segment.add_argument("--lung-margin-mm", type=float, default=10.0,
                         help="infection is kept within the lungs dilated in-plane by this")
    segment.set_defaults(run=run_segment)
    add_model_commands(sub)
    return parser


def _tqdm_progress(bar: Optional[tqdm]) -> Callable[[int, int, str], None]:
    def progress(done: int, total: int, message: str = "") -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(message, refresh=True)
    return progress


def _pending(path: str, args: argparse.Namespace) -> Optional[Tuple[str, Path, Volume]]:
    """(stem, labels path, checked volume) of an input still to do; None when its labels exist
    (written last, they mark it done) and ``--overwrite`` is not given."""
    stem = stem_of(path)
    labels_path = args.output / f"{stem}.labels.nii.gz"
    if labels_path.exists() and not args.overwrite:
        return None
    return stem, labels_path, check_volume(read_volume(path, slice_space=HU if args.slice_space == "hu" else MEDSEG8))


def lungs_one(path: str, args: argparse.Namespace) -> Tuple[List[Path], dict]:
    """Segment the lungs of one input; returns the written files and summary columns."""
    pending = _pending(path, args)
    if pending is None:
        return [], {}
    stem, labels_path, volume = pending
    overlay_path = args.output / f"{stem}.overlay.png"
    show = not args.quiet and volume.shape[0] > 1
    with tqdm(total=1, desc=stem, unit="step", leave=False, disable=not show, file=sys.stderr) as bar:
        labels = segment_lungs(volume, calibration=args.intensity, progress=_tqdm_progress(bar))
    if not labels.array.any():
        raise InputError("No lung found: is this a chest CT, and are its intensities right (see --intensity)?")
    written = []
    if not args.no_overlay:
        written.append(save_overlay(to_hu(volume, args.intensity), labels, overlay_path, title=stem))
    written.append(write_labels(labels, labels_path))  # last: its presence marks the input as done
    ml = {side: float((labels.array == value).sum()) * volume.voxel_volume_ml for side, value in (("left", 1), ("right", 2))}
    return written, {"left lung mL": round(ml["left"], 1), "right lung mL": round(ml["right"], 1)}


def segment_one(path: str, args: argparse.Namespace) -> Tuple[List[Path], dict]:
    """Segment one input with ``args.segmenter``; writes labels last (its presence = done).
    Returns the written files and the summary columns (severity)."""
    pending = _pending(path, args)
    if pending is None:
        return [], {}
    stem, labels_path, volume = pending
    out_dir: Path = args.output
    start = time.time()
    show = not args.quiet and volume.shape[0] > 1
    with tqdm(total=3, desc=stem, unit="step", leave=False, disable=not show, file=sys.stderr) as bar:
        result = args.segmenter.segment(volume, progress=_tqdm_progress(bar))
    report = quantify(result.labels)
    names = names_for(args.segmenter.bundle.card["task"])
    meta = {"input": str(path), "model": args.segmenter.bundle.name, "model_sha256": args.segmenter.bundle.card["sha256"],
            "device": result.device, "slices_segmented": result.slices_run, "seconds": round(time.time() - start, 2),
            "covidseg": __version__, "spacing_mm": list(volume.spacing), "shape_zyx": list(volume.shape)}
    written = [write_json({**meta, **report.to_dict()}, out_dir / f"{stem}.report.json"),
               write_csv(report, out_dir / f"{stem}.report.csv"),
               write_seg_nrrd(result.labels, out_dir / f"{stem}.seg.nrrd", names=names)]
    overlay = None
    if not args.no_overlay:
        overlay = save_overlay(to_hu(volume, args.intensity), result.labels, out_dir / f"{stem}.overlay.png",
                               title=stem, names=names)
        written.append(overlay)
    written.append(write_html(report, out_dir / f"{stem}.report.html", f"COVIDSeg report: {stem}", meta, overlay))
    written.append(write_labels(result.labels, labels_path))
    return written, _severity_columns(report.to_dict())


def _severity_columns(report: dict) -> dict:
    return {"lungs mL": round(report["both_lung_ml"], 1), "involved %": round(report["both_involvement_percent"], 1),
            "score /30": report["total_severity_score"], "grade": report["grade"]}


def run_segment(args: argparse.Namespace) -> int:
    parse_calibration(args.intensity)
    options = InferenceOptions(device=args.device, batch_size=args.batch_size, calibration=args.intensity,
                               tta_flip=args.tta, lung_margin_mm=args.lung_margin_mm,
                               min_component_mm3=args.min_component_mm3)
    device = pick_device(args.device)
    args.segmenter = Segmenter(load_bundle(args.model, device), options)
    return _run_batch(args, segment_one)


def run_lungs(args: argparse.Namespace) -> int:
    parse_calibration(args.intensity)
    return _run_batch(args, lungs_one)


def _run_batch(args: argparse.Namespace, job: Callable[[str, argparse.Namespace], Tuple[List[Path], dict]]) -> int:
    inputs: Sequence[str] = args.inputs
    bar = tqdm(total=len(inputs), desc="inputs", unit="input", disable=args.quiet or len(inputs) < 2, file=sys.stderr)

    def report(row: BatchRow) -> None:
        bar.update(1)
        if row.status == FAILED:
            tqdm.write(f"covidseg: error: {row.input}: {row.error}", file=sys.stderr)
        elif not args.quiet:
            note = ", ".join(str(p) for p in row.outputs) or "outputs exist, skipped (use --overwrite)"
            tqdm.write(f"{row.input}: {note}", file=sys.stdout)

    rows = run_batch(inputs, lambda path: job(path, args), on_row=report)
    bar.close()
    if not args.quiet and len(inputs) > 1:
        print(format_summary(rows), file=sys.stdout)
    return EXIT_FAILED if any(r.status == FAILED for r in rows) else EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Cancelled:
        print("covidseg: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("covidseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CovidSegError as error:
        print(f"covidseg: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug: still one line, no traceback for the user
        print(f"covidseg: internal error ({type(error).__name__}): {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
