"""`covidseg train`, `covidseg evaluate` and `covidseg models`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from ..errors import CovidSegError
from ..names import DECISIONS, DEFAULT_DECISION, ENCODING_NAMES, LESION_THRESHOLD, SCHEDULES

# the libraries behind each command are imported when it runs (fast --help)


def add_commands(sub) -> None:
    train = sub.add_parser("train", help="train a model (optionally with k-fold cross-validation)",
                           description="Train a 2D model on labelled slices (MedSeg layout: images/, masks/, "
                                       "masks_multiclass/; or COVID-19-CT-Seg: ct_scans/, infection_mask/) and "
                                       "write a model bundle OUTDIR/NAME.{safetensors,json}.")
    train.add_argument("data", type=Path, help="dataset folder")
    train.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR")
    train.add_argument("--name", default=None, help="bundle name (default: <model>_<task>)")
    train.add_argument("--config", type=Path, help="JSON file of training options (command-line options win)")
    train.add_argument("--task", choices=["binary", "multiclass"])
    train.add_argument("--model", help="architecture name (see `covidseg models --architectures`)")
    train.add_argument("--model-options", type=json.loads, metavar="JSON", help='e.g. \'{"base": 16}\'')
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--lr", float), ("--size", int),
                       ("--patience", int), ("--seed", int), ("--max-steps", int)):
        train.add_argument(flag, type=kind)
    train.add_argument("--schedule", choices=SCHEDULES)
    train.add_argument("--clahe", action="store_true", default=None, help="CLAHE on the network input")
    train.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    train.add_argument("--cv", type=int, default=0, metavar="K", help="k-fold cross-validation first (0: none)")
    train.add_argument("--cv-summary", type=Path, metavar="JSON",
                       help="attach an earlier cv_summary.json of this exact configuration to the card")
    train.add_argument("--val-fraction", type=float, default=0.0,
                       help="hold out this share for early stopping of the final model (default 0: all epochs)")
    train.add_argument("-q", "--quiet", action="store_true")
    train.set_defaults(run=run_train)

    ev = sub.add_parser("evaluate", help="metric table of predictions against reference masks",
                        description="Either compare label maps PRED... with same-named masks in --truth, or "
                                    "run a model (--model) on a labelled dataset (--data).")
    ev.add_argument("predictions", nargs="*", type=Path, metavar="PRED")
    ev.add_argument("--truth", type=Path, help="folder of reference masks")
    ev.add_argument("--pred-format", choices=list(ENCODING_NAMES), default="labels")
    ev.add_argument("--truth-format", choices=list(ENCODING_NAMES), default="binary")
    ev.add_argument("--model", help="model name or card path (with --data)")
    ev.add_argument("--data", type=Path, help="labelled dataset folder (with --model)")
    ev.add_argument("--device", default="auto")
    add_decision_arguments(ev, " (with --model)")
    ev.add_argument("-o", "--output", type=Path, help="write rows and summary: .csv or .json")
    ev.set_defaults(run=run_evaluate)

    models = sub.add_parser("models", help="list bundled and user models")
    models.add_argument("--architectures", action="store_true", help="list the architecture names instead")
    models.add_argument("--json", action="store_true")
    models.set_defaults(run=run_models)


def add_decision_arguments(parser: argparse.ArgumentParser, where: str = "") -> None:
    """--decision and --lesion-threshold: how a multi-class model's probabilities become lesions."""
    parser.add_argument("--decision", choices=DECISIONS, default=DEFAULT_DECISION,
                        help="lesion voxels: union (GGO and consolidation together more probable than "
                             f"background) or argmax (the single most probable class){where} (default: %(default)s)")
    parser.add_argument("--lesion-threshold", type=float, default=LESION_THRESHOLD,
                        help="with --decision union: GGO + consolidation probability that makes a lesion "
                             "(default: %(default)s, chosen by cross-validation)")


def check_lesion_threshold(value: float) -> float:
    if not 0 < value < 1:
        raise CovidSegError(f"the lesion threshold must lie between 0 and 1, not {value:g}")
    return value


def _train_config(args: argparse.Namespace):
    from ..training.trainer import TrainConfig
    data = {}
    if args.config:
        try:
            data = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CovidSegError(f"Cannot read training config {args.config}: {exc}") from None
    overrides = {"task": args.task, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "patience": args.patience, "seed": args.seed, "max_steps": args.max_steps,
                 "schedule": args.schedule, "device": args.device}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.model or args.model_options:
        data["model"] = {"name": args.model or data.get("model", {}).get("name", "unet"), **(args.model_options or {})}
    if args.size or args.clahe:
        data["input"] = {**data.get("input", {}), **({"size": args.size} if args.size else {}),
                         **({"clahe": True} if args.clahe else {})}
    return TrainConfig.from_dict(data)


def run_train(args: argparse.Namespace) -> int:
    from ..training.datasets import class_keyed, table_classes
    from ..training.evaluate import format_table
    from ..training.train_run import RunOptions, run_training
    cfg = _train_config(args)
    from ..models.registry import available
    if cfg.model.get("name") not in available():
        raise CovidSegError(f"unknown model '{cfg.model.get('name')}'; available: {', '.join(available())}")
    name = args.name or f"{cfg.model['name']}_{cfg.task}"
    opts = RunOptions(args.data, args.output, name, args.cv, args.val_fraction, args.cv_summary)
    if not args.quiet and not sys.stderr.isatty():  # a log file: one plain line per epoch
        card, cv = run_training(cfg, opts, _log_lines)
    else:
        with tqdm(total=1, desc="train", disable=args.quiet, file=sys.stderr) as bar:
            def progress(done, total, message):
                bar.total, bar.n = total, done
                bar.set_postfix_str(message, refresh=True)
            card, cv = run_training(cfg, opts, progress)
    if cv:
        print(format_table(class_keyed(cv["metrics"], cfg.task), table_classes(cfg.task)))
    print(f"model bundle: {card}")
    return 0


def _log_lines(done: int, total: int, message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{done}/{total}] {message}", file=sys.stderr, flush=True)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..training.evaluate import evaluate_files, format_table, pair_files
    if args.model or args.data:
        if not (args.model and args.data) or args.predictions:
            raise CovidSegError("use --model with --data, or PRED... with --truth")
        rows, summary, classes, scored_by = _evaluate_model(args)
    else:
        if not args.predictions or not args.truth:
            raise CovidSegError("give prediction files and --truth FOLDER (or --model with --data)")
        rows, summary = evaluate_files(pair_files(args.predictions, args.truth), args.pred_format, args.truth_format)
        classes, scored_by = None, None
    print(format_table(summary, classes))
    if args.output:
        _write_report(rows, summary, args.output, scored_by)
    return 0


def _evaluate_model(args: argparse.Namespace):
    from ..bundle import bundle_for_space, intensity_space, load_bundle
    from ..inference.predict2d import pick_device
    from ..preprocess.slice_prep import InputSpec
    from ..training.crossval import score_model
    from ..training.datasets import class_keyed, infection_only, load_filtered, table_classes
    from ..training.metrics import summarise
    check_lesion_threshold(args.lesion_threshold)
    device = pick_device(args.device)
    bundle = load_bundle(args.model, device)
    task = bundle.card["task"]
    if task == "multiclass" and infection_only(args.data):
        task = "binary"  # infection masks only: the multi-class model is scored on GGO + consolidation
    samples, _ = load_filtered(args.data, task)
    if task != "lungs" and any(s.meta.get("space") == "lung" for s in samples):
        scorer = bundle_for_space(bundle, "lung", device)  # CLAHE slices cannot enter the 8-bit window
        if scorer is not bundle:
            print(f"{args.data}: slices in the lung space, scored with {scorer.name} "
                  f"(the model {bundle.name}'s card names for them)", file=sys.stderr)
        bundle = scorer
    prep = bundle.card["preprocessing"]
    scored = score_model(bundle.model, samples, InputSpec.from_dict(prep["input"]), task, device,
                         intensity_space(bundle.card), args.decision, args.lesion_threshold)
    rows = [{"case": r.pop("id"), **class_keyed(r, task)} for r in scored]
    return rows, summarise(rows), table_classes(task), bundle.name


def _write_report(rows: List[dict], summary: dict, path: Path, model: Optional[str] = None) -> None:
    from ..io.files import write_csv_rows, write_json
    if path.suffix == ".json":
        write_json({"cases": rows, "summary": summary, **({"model": model} if model else {})}, path)
    else:
        write_csv_rows(rows, path)


def run_models(args: argparse.Namespace) -> int:
    if args.architectures:
        from ..models.registry import available
        print("\n".join(available()))
        return 0
    from ..bundle import list_bundles
    bundles = list_bundles()
    if args.json:
        print(json.dumps(bundles, indent=1))
        return 0
    if not bundles:
        print("no models installed")
    for b in bundles:
        dice = f"{b['cv_dice']:.3f}" if isinstance(b["cv_dice"], float) else "n/a"
        where = "bundled" if b["bundled"] else "user"
        print(f"{b['name']:<28} {b['task']:<11} {b['architecture']:<18} CV Dice {dice:<6} {where:<8} {b['path']}")
    return 0
