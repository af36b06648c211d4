"""The `covidseg` command line: one sub-command per job, one clear line per error."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from tqdm import tqdm

from . import __version__
from .batch import FAILED, BatchRow, format_summary, run_batch
from .cli_models import add_commands as add_model_commands
from .errors import Cancelled, CovidSegError, user_message
from .names import DEFAULT_MODEL
from .signals import Terminated

# Heavy libraries (torch, MONAI, SimpleITK, nibabel) are imported by the commands that use them,
# so that --help, --version and usage errors answer at once.
MEDSEG8 = "medseg8"  # volume.MEDSEG8 (tested equal)
if TYPE_CHECKING:
    from .pipeline import Outputs

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="NIfTI/NRRD/MHA file, DICOM series folder, 2D PNG/JPG slice, or a folder of these "
                             "(each file an input; sub-folders are DICOM series)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder")
    parser.add_argument("--intensity", default="auto", metavar="CAL",
                        help="intensity calibration: auto (default), hu, medseg8, or linear:SLOPE,INTERCEPT "
                             "meaning HU = SLOPE*value + INTERCEPT")
    parser.add_argument("--slice-space", choices=[MEDSEG8, "hu"], default=MEDSEG8,
                        help="intensity space of 2D PNG/JPG slices (default: the 8-bit MedSeg window)")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay PNG")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--lungs", default="auto", metavar="MODEL",
                        help="lung model name or card path; auto (default): the bundled covidseg_lungs when "
                             "installed, else the training-free method; classic: the training-free method")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covidseg",
        description="COVID-19 lung and infection segmentation of chest CT. Labels: 1 left lung, "
                    "2 right lung, 3 ground-glass opacity (or infection), 4 consolidation.",
    )
    parser.add_argument("--version", action="version", version=f"covidseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    lungs = sub.add_parser("lungs", help="lung segmentation (left = 1, right = 2)",
                           description="Segment the lungs (the learned lung model with 3D post-processing; "
                                       "--lungs classic for the training-free method): writes "
                                       "<stem>.labels.nii.gz (1 = left, 2 = right lung) and <stem>.overlay.png per input.")
    _add_common(lungs)
    lungs.set_defaults(run=run_lungs)
    segment = sub.add_parser("segment", help="lungs, GGO and consolidation with a model; reports",
                             description="Per input: <stem>.labels.nii.gz (1 left lung, 2 right lung, 3 GGO or "
                                         "infection, 4 consolidation), <stem>.report.json/.csv/.html, "
                                         "<stem>.seg.nrrd and <stem>.overlay.png.")
    _add_common(segment)
    segment.add_argument("--model", default=DEFAULT_MODEL, help="model name or card path (see `covidseg models`; default: %(default)s)")
    segment.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    segment.add_argument("--batch-size", type=int, default=16, help="slices per model batch (default: %(default)s)")
    segment.add_argument("--tta", action="store_true", help="average with the left-right mirrored prediction")
    segment.add_argument("--min-component-mm3", type=float, default=10.0, help="smaller infection islands are removed (default: %(default)s)")
    segment.add_argument("--lung-margin-mm", type=float, default=None,
                         help="infection is kept within the lungs dilated in-plane by this (default: 5 with "
                              "the learned lungs, 10 with the training-free ones)")
    segment.set_defaults(run=run_segment)
    add_model_commands(sub)
    return parser


def _tqdm_progress(bar: Optional[tqdm]) -> Callable[[int, int, str], None]:
    def progress(done: int, total: int, message: str = "") -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(message, refresh=False)
            bar.update(0)  # redraws, respecting the bar's delay and minimum interval
    return progress


def _file_options(args: argparse.Namespace):
    from .pipeline import FileOptions
    return FileOptions(intensity=args.intensity, slice_space=args.slice_space, overwrite=args.overwrite,
                       overlay=not args.no_overlay, lungs=args.lungs)


def _with_bar(steps: int, job: Callable[..., Outputs]) -> Callable[[str, argparse.Namespace], Outputs]:
    """``job(path, ..., progress=...)`` with a per-volume tqdm bar (hidden when quiet)."""
    def run(path: str, args: argparse.Namespace, *job_args) -> Outputs:
        from .paths import stem_of
        # delay: no bar for quick inputs (one slice) or for inputs that fail at once
        with tqdm(total=steps, desc=stem_of(path), unit="step", leave=False, disable=True if args.quiet else None,
                  delay=2.0, file=sys.stderr) as bar:
            return job(path, args.output, *job_args, _file_options(args), progress=_tqdm_progress(bar))
    return run


def run_segment(args: argparse.Namespace) -> int:
    from .intensity import parse_calibration
    from .paths import SEGMENT_OUTPUTS
    parse_calibration(args.intensity)
    segmenter = []  # loaded once, and only when some input is still to do

    def load() -> None:
        from .bundle import load_bundle
        from .inference import InferenceOptions, Segmenter
        from .predict2d import pick_device
        options = InferenceOptions(device=args.device, batch_size=args.batch_size, calibration=args.intensity,
                                   lungs=args.lungs, tta_flip=args.tta, lung_margin_mm=args.lung_margin_mm,
                                   min_component_mm3=args.min_component_mm3)
        segmenter.append(Segmenter(load_bundle(args.model, pick_device(args.device)), options))

    def job(path: str, a: argparse.Namespace) -> Outputs:
        from .pipeline import segment_file
        return _with_bar(3, segment_file)(path, a, segmenter[0])
    return _run_batch(args, job, SEGMENT_OUTPUTS, load)


def run_lungs(args: argparse.Namespace) -> int:
    from .intensity import parse_calibration
    from .paths import LUNGS_OUTPUTS
    parse_calibration(args.intensity)

    def job(path: str, a: argparse.Namespace) -> Outputs:
        from .pipeline import lungs_file
        return _with_bar(6, lungs_file)(path, a)
    return _run_batch(args, job, LUNGS_OUTPUTS)


def _run_batch(args: argparse.Namespace, job: Callable[[str, argparse.Namespace], Outputs],
               outputs: Sequence[str], prepare: Optional[Callable[[], None]] = None) -> int:
    """Inputs and output folder are checked before any work; ``prepare`` (e.g. loading the model)
    runs only when some input is still to do."""
    from .outputs import check_output_dir, is_done, planned_inputs
    from .paths import expand_inputs
    from .errors import shown
    # a folder: its image files and DICOM series; collisions are refused before any work
    inputs: Sequence[str] = planned_inputs(expand_inputs(args.inputs), args.output, outputs)
    check_output_dir(args.output)
    to_do = {i for i in inputs if args.overwrite or not is_done(i, args.output)}
    if prepare is not None and to_do:
        prepare()
    bar = tqdm(total=len(inputs), desc="inputs", unit="input", file=sys.stderr,
               disable=True if args.quiet or len(inputs) < 2 else None)  # None: no bar unless a terminal

    def report(row: BatchRow) -> None:
        bar.update(1)
        if row.status == FAILED:
            tqdm.write(f"covidseg: error: {shown(row.input)}: {row.error}", file=sys.stderr)
        elif not args.quiet:
            note = ", ".join(shown(p) for p in row.outputs) or "outputs exist, skipped (use --overwrite)"
            tqdm.write(f"{shown(row.input)}: {note}", file=sys.stdout)

    rows = run_batch(inputs, lambda path: job(path, args) if path in to_do else ([], {}), on_row=report)
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
    except Terminated:
        print("covidseg: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("covidseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CovidSegError as error:
        print(f"covidseg: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug: still one line, no traceback for the user
        print(f"covidseg: {user_message(error)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
