#!/usr/bin/env python3
"""False positives on healthy HU volumes through the whole `segment` chain, held out: each volume
that a union run used as negatives is segmented with the fold model that did not see it
(``<cv>/fold<i>/best.safetensors``; its fold read from ``<cv>/cv_slices.csv``); a volume no fold
trained on is segmented by every fold model (mean involvement reported). A shipped bundle
(``--bundle``) that never saw them can be scored on the same volumes for comparison.

    python scripts/healthy_cv.py --runs runs/cmp128_unet8/cv --bundle covidseg_multiclass \
        ../shared/data/hu-volumes/totalseg_example_ct_sm.nii.gz
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_pipeline_cv import fold_bundle  # noqa: E402

from COVIDSegLib.bundle import load_bundle  # noqa: E402
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter  # noqa: E402
from COVIDSegLib.io.files import read_volume  # noqa: E402
from COVIDSegLib.io.paths import stem_of  # noqa: E402
from COVIDSegLib.names import DECISIONS  # noqa: E402
from COVIDSegLib.quantify.measure import quantify  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402


def unseen_folds(cv: Path, stem: str) -> list:
    """The folds whose models never trained on this volume: the one holding out its negative
    slices, or all of them when it was no negative."""
    with open(cv / "cv_slices.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    folds = {int(r["fold"]) for r in rows if r["id"].startswith(f"neg_{stem}_")}
    if len(folds) > 1:
        raise SystemExit(f"{cv}: {stem} is held out by folds {sorted(folds)} (expected one)")
    return sorted(folds or {int(r["fold"]) for r in rows})


def figures(bundle, path: Path, options: InferenceOptions = InferenceOptions(device="cpu")) -> dict:
    volume = read_volume(path)
    seg = Segmenter(bundle, options).segment(volume)
    report = quantify(seg.labels, volume)
    return {"involvement_percent": round(report.both_involvement_percent, 2),
            "infection_ml": round(report.both_infection_ml, 2), "lung_ml": round(report.both_lung_ml, 1),
            "grade": report.grade}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volumes", nargs="+", type=Path)
    ap.add_argument("--runs", type=Path, action="append", default=[], help="a union run's cv folder")
    ap.add_argument("--bundle", action="append", default=[], help="a shipped bundle that never saw the volumes")
    ap.add_argument("--inside-share", type=float, default=InferenceOptions.min_inside_share,
                    help="InferenceOptions.min_inside_share (infection components mostly outside the lungs "
                         "removed; default: segment's, %(default)s)")
    ap.add_argument("--decision", default=InferenceOptions.decision, choices=DECISIONS,
                    help="InferenceOptions.decision (lesion voxels; default: segment's, %(default)s)")
    ap.add_argument("--lesion-threshold", type=float, default=InferenceOptions.lesion_threshold,
                    help="InferenceOptions.lesion_threshold (union decision; default: segment's, %(default)s)")
    ap.add_argument("--airless-inside-share", type=float, default=InferenceOptions.airless_inside_share,
                    help="InferenceOptions.airless_inside_share (0: off; default: segment's, %(default)s)")
    ap.add_argument("--out", type=Path, help="write the JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    options = InferenceOptions(device="cpu", min_inside_share=args.inside_share, decision=args.decision,
                               lesion_threshold=args.lesion_threshold, airless_inside_share=args.airless_inside_share)
    out = {}
    configs = {cv: TrainConfig.from_dict(json.loads((cv / "cv_summary.json").read_text())["config"]) for cv in args.runs}
    for path in args.volumes:
        stem = stem_of(path)
        for cv, cfg in configs.items():
            runs = {fold: figures(fold_bundle(cv, fold, cfg, "medseg8"), path, options)
                    for fold in unseen_folds(cv, stem)}
            mean = sum(r["involvement_percent"] for r in runs.values()) / len(runs)
            out[f"{cv.parent.name}/{stem}"] = {"mean_involvement_percent": round(mean, 2), "folds": runs}
        for name in args.bundle:
            out[f"{name}/{stem}"] = figures(load_bundle(name), path, options)
    for key, value in out.items():
        print(key, json.dumps(value))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
