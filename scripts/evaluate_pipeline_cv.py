#!/usr/bin/env python3
"""Cross-validated end-to-end figures: the whole `segment` pipeline (lungs, model, confinement to
the lungs plus a margin, small-island removal) on each held-out MedSeg slice, with the model of
the fold that did not see it (``<runs>/fold<i>/best.safetensors``; the fold of each slice is read
from ``<runs>/cv_slices.csv``). Works for the v1 runs (scripts/crossvalidate_architectures.py,
8-bit space) and the v2 union runs (scripts/train_infection_union.py, ``--space lung``).

    python scripts/evaluate_pipeline_cv.py --runs runs/cv/xr_msf_unet --margins 0,10,1000
    python scripts/evaluate_pipeline_cv.py --runs runs/union_v2/cv --space lung --margins 10
    python scripts/evaluate_pipeline_cv.py --runs runs/union_m8/cv --margins 5 --classes model,density
With several margins, each is also compared slice by slice with the first one listed; ``--out``
keeps every slice's figures (``per_slice``), and ``--against OTHER.json`` pairs them with another run's.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.bundle import ModelBundle  # noqa: E402
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter  # noqa: E402
from COVIDSegLib.models.registry import build_model  # noqa: E402
from COVIDSegLib.names import DECISIONS, DEFAULT_DECISION, LESION_THRESHOLD, PRECISIONS  # noqa: E402
from COVIDSegLib.training.datasets import TASK_CLASS_NAMES, TASK_LABELS, load_medseg  # noqa: E402
from COVIDSegLib.training.metrics import binary_metrics, paired_change, summarise  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402
from COVIDSegLib.volume import MEDSEG8, Volume  # noqa: E402


def fold_bundle(run_dir: Path, fold: int, cfg: TrainConfig, space: str) -> ModelBundle:
    model = build_model(cfg.model_config())
    model.load_state_dict(load_file(str(run_dir / f"fold{fold}" / "best.safetensors")))
    names = TASK_CLASS_NAMES[cfg.task]
    card = {"task": cfg.task, "sha256": "cv-fold", "preprocessing": {"input": cfg.input, "intensity_space": space},
            "labels": {str(k): {"value": v, "name": names[k]} for k, v in TASK_LABELS[cfg.task].items()}}
    return ModelBundle(f"fold{fold}", card, model.eval(), run_dir)


def medseg_folds(run_dir: Path) -> dict:
    """MedSeg slice id -> the fold that held it out. Runs that mix sources prefix MedSeg ids with
    ``medseg_`` (the union, the lung model's pseudo lungs); a MedSeg-only run's ids are bare."""
    with open(run_dir / "cv_slices.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    prefixed = [r for r in rows if r["id"].startswith("medseg_")]
    return {r["id"].removeprefix("medseg_"): int(r["fold"])
            for r in prefixed or [r for r in rows if not r["id"].startswith(("ctseg_", "neg_"))]}


def score(labels: np.ndarray, binary: np.ndarray, multi) -> dict:
    """Infection (3 + 4) against the binary mask; GGO (3) and consolidation (4) where split; the
    share of the expert's infection inside the lungs the report measures (labels 1-4)."""
    row = dict(binary_metrics(np.isin(labels, (3, 4)), binary > 0))
    if binary.any():
        row["expert_inside_report_lungs"] = float(np.mean(labels[binary > 0] > 0))
    if multi is not None:
        for name, value, truth in (("GGO", 3, 1), ("consolidation", 4, 2)):
            row.update({f"{name}_{k}": v for k, v in binary_metrics(labels == value, multi == truth).items()})
    return row


def min_inside(rows: list) -> float:
    return min(r["expert_inside_report_lungs"] for r in rows if "expert_inside_report_lungs" in r)


def paired(first: list, second: list) -> dict:
    """Slice-by-slice comparison of two runs over the same slices (``metrics.paired_change``; GGO
    and consolidation over the slices that have them)."""
    out = {}
    for key in ("dice", "GGO_dice", "consolidation_dice"):
        pairs = np.array([(a[key], b[key]) for a, b in zip(first, second) if key in a and key in b])
        if len(pairs):
            out[key] = paired_change(pairs[:, 0], pairs[:, 1])
    return out


def variant_key(margin: float, classes: str, tta: str, share: float = 0.0) -> str:
    return (f"margin_{margin:g}mm" + ("" if classes == "model" else f"_{classes}")
            + ("" if tta == "off" else f"_tta_{tta}") + ("" if not share else f"_inside{share:g}"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--runs", type=Path, default=Path("runs/cv/xr_msf_unet"))
    ap.add_argument("--space", default="medseg8", choices=("medseg8", "lung"), help="the models' intensity space")
    ap.add_argument("--margins", default="0,10,1000", help="lung margins in mm (1 mm pixels assumed)")
    ap.add_argument("--classes", default="model", help="comma-separated: model (the network's GGO/consolidation), "
                                                       "density (its infection split by density)")
    ap.add_argument("--lungs", default="auto", help="lung bundle name or card path (default: the bundled one)")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS, help="model arithmetic")
    ap.add_argument("--tta", default="off", help="comma-separated: off, flip (left-right mirrored average)")
    ap.add_argument("--inside-shares", default=f"{InferenceOptions.min_inside_share:g}",
                    help="comma-separated InferenceOptions.min_inside_share values (infection components mostly "
                         "outside the lungs removed; default: segment's, %(default)s)")
    ap.add_argument("--airless-inside-share", type=float, default=InferenceOptions.airless_inside_share,
                    help="InferenceOptions.airless_inside_share (0: off; default: segment's, %(default)s)")
    ap.add_argument("--decision", default=DEFAULT_DECISION, choices=DECISIONS, help="InferenceOptions.decision (lesion voxels)")
    ap.add_argument("--lesion-threshold", type=float, default=LESION_THRESHOLD,
                    help="InferenceOptions.lesion_threshold (union decision)")
    ap.add_argument("--out", type=Path, help="write the summary JSON here")
    ap.add_argument("--against", type=Path, help="an earlier --out JSON: pair each variant with its slices there")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg = TrainConfig.from_dict(json.loads((args.runs / "cv_summary.json").read_text())["config"])
    folds = medseg_folds(args.runs)
    multi = {s.id: s.target for s in load_medseg(args.data, "multiclass")}
    samples = [s for s in load_medseg(args.data, "binary") if s.id in folds]
    results, per_slice = {}, {}
    margins = [float(m) for m in args.margins.split(",")]
    shares = [float(v) for v in args.inside_shares.split(",")]
    for margin, classes, tta, share in itertools.product(margins, args.classes.split(","), args.tta.split(","), shares):
        rows = []
        for fold in sorted(set(folds.values())):
            seg = Segmenter(fold_bundle(args.runs, fold, cfg, args.space),
                            InferenceOptions(device="cpu", lung_margin_mm=margin, min_component_mm3=10.0,
                                             classes=classes, lungs=args.lungs, tta_flip=tta == "flip",
                                             precision=args.precision, min_inside_share=share,
                                             decision=args.decision, lesion_threshold=args.lesion_threshold,
                                             airless_inside_share=args.airless_inside_share))
            for s in (s for s in samples if folds[s.id] == fold):
                volume = Volume(s.image[None].astype(np.float32), space=MEDSEG8, is_slice=True)
                rows.append({"id": s.id, **score(seg.segment(volume).labels.array[0], s.target, multi.get(s.id))})
        per_slice[(margin, classes, tta, share)] = rows
        results[variant_key(margin, classes, tta, share)] = m = summarise(rows)
        split = "".join(f", {c} {m[c + '_dice']['mean']:.3f}" for c in ("GGO", "consolidation") if c + "_dice" in m)
        print(f"margin {margin:g} mm, classes {classes}, tta {tta}, inside share {share:g} ({len(rows)} slices): infection Dice {m['dice']['mean']:.3f} ± {m['dice']['sd']:.3f}"
              f"{split}, precision {m['precision']['mean']:.3f}, sensitivity {m['sensitivity']['mean']:.3f}, "
              f"specificity {m['specificity']['mean']:.4f}, HD95 {m['hd95']['mean']:.1f} px, expert infection inside the "
              f"report's lungs {m['expert_inside_report_lungs']['mean']:.3f} (worst {min_inside(rows):.3f})", flush=True)
    comparisons = {f"{variant_key(m, 'density', t, a)}_vs_model": ((m, "model", t, a), (m, "density", t, a))
                   for m, _, t, a in per_slice}
    comparisons.update({f"{variant_key(m, c, t, a)}_vs_{margins[0]:g}mm": ((margins[0], c, t, a), (m, c, t, a))
                        for m, c, t, a in per_slice if m != margins[0]})  # each margin against the first one listed
    comparisons.update({f"{variant_key(m, c, t, a)}_vs_off": ((m, c, "off", a), (m, c, t, a))
                        for m, c, t, a in per_slice if t != "off"})
    comparisons.update({f"{variant_key(m, c, t, a)}_vs_inside{shares[0]:g}": ((m, c, t, shares[0]), (m, c, t, a))
                        for m, c, t, a in per_slice if a != shares[0]})  # each share against the first one listed
    for key, (first, second) in comparisons.items():
        if first in per_slice and second in per_slice:
            results[key] = paired(per_slice[first], per_slice[second])
            print(f"{key}:", json.dumps(results[key]))
    if args.against:
        other = json.loads(args.against.read_text())["per_slice"]
        for v, rows in per_slice.items():
            if variant_key(*v) in other:
                theirs = {r["id"]: r for r in other[variant_key(*v)]}
                results[f"{variant_key(*v)}_vs_{args.against.stem}"] = change = paired(
                    [theirs[r["id"]] for r in rows], rows)
                print(f"{variant_key(*v)} against {args.against}:", json.dumps(change))
    if args.out:  # with each variant's per-slice rows, for paired comparisons between runs
        results["per_slice"] = {variant_key(*v): rows for v, rows in per_slice.items()}
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
