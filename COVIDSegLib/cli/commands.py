"""The `covidseg` command line: one sub-command per job, one clear line per error."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from tqdm import tqdm

from .. import __version__
from ..errors import Cancelled, CovidSegError, user_message
from ..jobs.batch import FAILED, BatchRow, format_summary, run_batch
from ..names import DEFAULT_MODEL, PRECISIONS
from ..runtime import tune_allocator
from ..signals import Terminated, unmasked_stops
from .cli_models import add_commands as add_model_commands
from .cli_models import add_decision_arguments

# Heavy libraries (torch, MONAI, SimpleITK, nibabel) are imported by the commands that use them,
# so that --help, --version and usage errors answer at once.
MEDSEG8 = "medseg8"  # volume.MEDSEG8 (tested equal)
if TYPE_CHECKING:
    from ..jobs.pipeline import Outputs

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
    segment.add_argument("--batch-size", type=int, default=None,
                         help="slices per model batch (default: 16 on a GPU; on a CPU 4-8, by the model's size)")
    segment.add_argument("--tta", action="store_true", help="average with the left-right mirrored prediction")
    segment.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="model arithmetic: auto = bf16 on CUDA and on CPUs with AMX, else fp32 (default: %(default)s)")
    segment.add_argument("--classes", choices=("model", "density"), default="density",
                         help="GGO vs consolidation: density (the model's infection; consolidation where the "
                              "in-plane median of the involved lung is above -350 HU) or the model's own classes "
                              "(default: %(default)s)")
    add_decision_arguments(segment)
    segment.add_argument("--min-component-mm3", type=float, default=10.0, help="smaller infection islands are removed (default: %(default)s)")
    segment.add_argument("--min-inside-share", type=float, default=0.25,
                         help="infection components (3D) with less of their volume inside the lung masks are "
                              "removed: rims along the outline (default: %(default)s; 0 keeps them)")
    segment.add_argument("--airless-inside-share", type=float, default=0.5,
                         help="airless infection components (under 10 %% of voxels below -500 HU) with less of "
                              "their volume inside the lung masks are removed: diaphragm, crus, paraspinal "
                              "tissue (default: %(default)s; 0 keeps them)")
    segment.add_argument("--lung-margin-mm", type=float, default=None,
                         help="infection is kept within the lungs dilated in-plane by this (default: 5 with "
                              "the learned lungs, 10 with the training-free ones)")
    segment.add_argument("--workers", default="auto", metavar="N",
                         help="worker processes, each with the model loaded once and cores/N torch threads "
                              "(default: auto, from the cores and free memory; 1 runs in this process)")
    segment.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                         help="run each input as a task on the Ray cluster at ADDRESS (a new local one when no "
                              "address is given); OUTDIR must be reachable from every node; needs the "
                              "'cluster' extra")
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
    from ..jobs.pipeline import FileOptions
    return FileOptions(intensity=args.intensity, slice_space=args.slice_space, overwrite=args.overwrite,
                       overlay=not args.no_overlay, lungs=args.lungs)


def _with_bar(steps: int, job: Callable[..., Outputs]) -> Callable[[str, argparse.Namespace], Outputs]:
    """``job(path, ..., progress=...)`` with a per-volume tqdm bar (hidden when quiet)."""
    def run(path: str, args: argparse.Namespace, *job_args) -> Outputs:
        from ..io.paths import stem_of

        # delay: no bar for quick inputs (one slice) or for inputs that fail at once
        with tqdm(total=steps, desc=stem_of(path), unit="step", leave=False, disable=True if args.quiet else None,
                  delay=2.0, file=sys.stderr) as bar:
            return job(path, args.output, *job_args, _file_options(args), progress=_tqdm_progress(bar))
    return run


def _inference_options(args: argparse.Namespace):
    from ..inference.segmenter import InferenceOptions
    return InferenceOptions(device=args.device, batch_size=args.batch_size, calibration=args.intensity,
                            lungs=args.lungs, tta_flip=args.tta, precision=args.precision,
                            lung_margin_mm=args.lung_margin_mm,
                            min_component_mm3=args.min_component_mm3, min_inside_share=args.min_inside_share,
                            airless_inside_share=args.airless_inside_share,
                            classes=args.classes, decision=args.decision, lesion_threshold=args.lesion_threshold)


def _worker_count(text: str) -> int:
    from ..jobs.workers import default_workers
    if text == "auto":
        return default_workers()
    if not text.isdigit() or int(text) < 1:
        raise CovidSegError(f"--workers must be a whole number of at least 1 or auto, not '{text}'")
    return int(text)


def run_segment(args: argparse.Namespace) -> int:
    from ..io.paths import SEGMENT_OUTPUTS
    from ..preprocess.intensity import parse_calibration
    parse_calibration(args.intensity)
    workers = _worker_count(args.workers)
    if args.ray is not None or workers > 1:
        return _run_batch(args, None, SEGMENT_OUTPUTS, lambda: _check_model(args),
                          engine=_parallel_engine(args, workers))
    segmenter = []  # loaded once, and only when some input is still to do

    def load() -> None:
        from ..inference.segmenter import Segmenter
        segmenter.append(Segmenter.load(args.model, _inference_options(args)))

    def job(path: str, a: argparse.Namespace) -> Outputs:
        from ..jobs.pipeline import segment_file
        return _with_bar(3, segment_file)(path, a, segmenter[0])
    return _run_batch(args, job, SEGMENT_OUTPUTS, load)


def _check_model(args: argparse.Namespace) -> None:
    """Before starting workers: the model's card and weights check out, the device exists."""
    from ..bundle import find_bundle, read_card, verify_weights
    from ..inference.predict2d import pick_device
    pick_device(args.device)
    card_path = find_bundle(args.model)
    verify_weights(read_card(card_path), card_path)


def _parallel_engine(args: argparse.Namespace, workers: int):
    from ..jobs.workers import WorkerSpec, threads_per_worker
    spec = WorkerSpec(model=str(args.model), out_dir=str(args.output), inference=_inference_options(args),
                      files=_file_options(args), threads=threads_per_worker(workers))
    if args.ray is not None:
        from ..jobs.ray_batch import run_ray
        return lambda inputs, on_row: run_ray(inputs, spec, None if args.ray == "local" else args.ray, on_row)
    from ..jobs.workers import run_parallel
    return lambda inputs, on_row: run_parallel(inputs, spec, workers, on_row)


def run_lungs(args: argparse.Namespace) -> int:
    from ..io.paths import LUNGS_OUTPUTS
    from ..preprocess.intensity import parse_calibration
    parse_calibration(args.intensity)

    def job(path: str, a: argparse.Namespace) -> Outputs:
        from ..jobs.pipeline import lungs_file
        return _with_bar(6, lungs_file)(path, a)
    return _run_batch(args, job, LUNGS_OUTPUTS)


def _run_batch(args: argparse.Namespace, job: Optional[Callable[[str, argparse.Namespace], Outputs]],
               outputs: Sequence[str], prepare: Optional[Callable[[], None]] = None, engine=None) -> int:
    """Inputs and output folder are checked before any work; ``prepare`` (e.g. loading the model)
    runs only when some input is still to do. ``engine(inputs, on_row)``: several processes or Ray
    instead of ``job`` here. `segment` ends with the cohort table and page."""
    from ..errors import shown
    from ..io.paths import expand_inputs
    from ..jobs.batch import SKIPPED
    from ..report.outputs import check_output_dir, is_done, planned_inputs

    # a folder: its image files and DICOM series; collisions are refused before any work
    inputs: Sequence[str] = planned_inputs(expand_inputs(args.inputs), args.output, outputs)
    check_output_dir(args.output)
    to_do = [i for i in inputs if args.overwrite or not is_done(i, args.output)]
    if prepare is not None and to_do:
        prepare()
    bar = tqdm(total=len(inputs), desc="inputs", unit="input", file=sys.stderr,
               disable=True if args.quiet or len(inputs) < 2 else None)  # None: no bar unless a terminal
    rows: List[BatchRow] = []
    start, slices = time.perf_counter(), [0]

    def report(row: BatchRow) -> None:
        rows.append(row)
        slices[0] += int(row.details.get("slices", 0) or 0)
        bar.update(1)
        bar.set_postfix_str(f"{slices[0] / max(time.perf_counter() - start, 1e-6):.1f} slices/s")
        if row.status == FAILED:
            tqdm.write(f"covidseg: error: {shown(row.input)}: {row.error}", file=sys.stderr)
        elif not args.quiet:
            note = ", ".join(shown(p) for p in row.outputs) or "outputs exist, skipped (use --overwrite)"
            tqdm.write(f"{shown(row.input)}: {note}", file=sys.stdout)

    order = {path: i for i, path in enumerate(inputs)}
    try:
        for path in sorted(set(inputs) - set(to_do), key=order.get):
            report(BatchRow(path, SKIPPED, 0.0))
        if engine is not None:
            engine(to_do, report)
        else:
            run_batch(to_do, lambda path: job(path, args), on_row=report)
    finally:  # also after Ctrl-C: the cohort table shows what was finished
        bar.close()
        rows.sort(key=lambda r: order[r.input])
        # a lone input that failed leaves the output folder as it was (nothing to tabulate)
        if args.command == "segment" and rows and (len(inputs) > 1 or rows[0].status != FAILED):
            from ..report.cohort import write_cohort
            write_cohort(rows, args.output)
    if not args.quiet and len(inputs) > 1:
        print(format_summary(rows), file=sys.stdout)
    return EXIT_FAILED if any(r.status == FAILED for r in rows) else EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    tune_allocator()
    args = build_parser().parse_args(argv)
    try:
        with unmasked_stops():
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
