#!/usr/bin/env python3
"""GGO or consolidation from density, the network, or both, cross-validated on the 50 held-out
MedSeg slices through the whole ``segment`` chain (each slice by the fold model that did not see it).

The chain runs once per fold with the network's own classes; the split is then redone offline for a
grid of rules. A rule marks an involved voxel consolidation where ``(1 - w) * dense + w * network``
exceeds one half: ``dense`` is the share of involved voxels within the in-plane window above the HU
threshold (``density_split``), ``network`` the share the network calls consolidation in the same
window. ``w = 0`` is the shipped density split, ``w = 1`` the network's split smoothed. The rule is
chosen by nested CV (mean of GGO and consolidation Dice on the other folds).

    python scripts/class_split_cv.py --runs runs/v1_e40/cv -o docs/training_logs/class_split/class_split_cv.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_pipeline_cv import fold_bundle, medseg_folds  # noqa: E402

from COVIDSegLib.inference.density_split import DensitySplit, dense_share  # noqa: E402
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter  # noqa: E402
from COVIDSegLib.preprocess.intensity import to_hu  # noqa: E402
from COVIDSegLib.training.datasets import load_medseg  # noqa: E402
from COVIDSegLib.training.metrics import binary_metrics, paired_change  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402
from COVIDSegLib.volume import MEDSEG8, Volume  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
THRESHOLDS = (-400.0, -350.0, -300.0)


def split(labels: np.ndarray, hu: np.ndarray, weight: float, threshold: float, window: tuple) -> np.ndarray:
    """Labels (0..4) with the involved voxels (3, 4) relabelled by the rule."""
    involved = np.isin(labels, (3, 4))
    out = labels.copy()
    if not involved.any():
        return out
    dense = dense_share(hu, involved, threshold, window)
    network = dense_share((labels == 4).astype(np.float32), involved, 0.5, window)
    out[involved] = np.where((1 - weight) * dense + weight * network > 0.5, 4, 3)
    return out


def scores(labels: np.ndarray, truth: np.ndarray) -> dict:
    return {name: binary_metrics(labels == value, truth == index)["dice"]
            for name, value, index in (("GGO", 3, 1), ("consolidation", 4, 2))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict(json.loads((args.runs / "cv_summary.json").read_text())["config"])
    folds = medseg_folds(args.runs)
    samples = [s for s in load_medseg(args.data, "multiclass") if s.id in folds]
    window = DensitySplit().window_px((1.0, 1.0))  # MedSeg PNGs: 1 mm pixels assumed, as the chain does
    grid = list(itertools.product(WEIGHTS, THRESHOLDS))
    rows = []  # per slice: id, fold, {rule: scores}
    for fold in sorted(set(folds.values())):
        seg = Segmenter(fold_bundle(args.runs, fold, cfg, "medseg8"), InferenceOptions(device="cpu", classes="model"))
        for s in (s for s in samples if folds[s.id] == fold):
            volume = Volume(s.image[None].astype(np.float32), space=MEDSEG8, is_slice=True)
            labels = seg.segment(volume).labels.array[0]
            hu = to_hu(volume, MEDSEG8).array[0]
            rules = {f"w{w:g}_t{t:g}": scores(split(labels, hu, w, t, window), s.target) for w, t in grid}
            rules["network"] = scores(labels, s.target)
            rows.append({"id": s.id, "fold": fold, "rules": rules})
        print(f"fold {fold} done", flush=True)
    names = list(rows[0]["rules"])

    def mean(rule: str, subset: list, key: str = None) -> float:
        keys = (key,) if key else ("GGO", "consolidation")
        return float(np.mean([np.mean([r["rules"][rule][k] for k in keys]) for r in subset]))

    table = {n: {k: mean(n, rows, k) for k in ("GGO", "consolidation")} for n in names}
    chosen, nested = {}, []
    for fold in sorted(set(folds.values())):
        inner = [r for r in rows if r["fold"] != fold]
        best = max((n for n in names if n != "network"), key=lambda n: mean(n, inner))
        chosen[fold] = best
        nested += [{"id": r["id"], **r["rules"][best]} for r in rows if r["fold"] == fold]
    shipped = "w0_t-350"
    result = {"rules": table, "chosen_per_fold": chosen,
              "nested": {k: float(np.mean([r[k] for r in nested])) for k in ("GGO", "consolidation")},
              "nested_vs_shipped": {k: paired_change([r["rules"][shipped][k] for r in rows], [r[k] for r in nested])
                                    for k in ("GGO", "consolidation")},
              "per_slice": rows}
    for n in names:
        print(f"{n:12s} GGO {table[n]['GGO']:.3f} consolidation {table[n]['consolidation']:.3f}")
    print("chosen per fold:", chosen)
    print("nested:", result["nested"], "vs shipped:", json.dumps(result["nested_vs_shipped"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
