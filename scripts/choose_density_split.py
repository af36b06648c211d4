#!/usr/bin/env python3
"""Choose the density split's threshold and median size (``inference.density_split``) by 5-fold
cross-validation on the MedSeg slices with expert GGO/consolidation masks.

The rule (``dense_share`` over half) is applied to the expert infection (GGO or consolidation) of each slice, so this measures
how well density alone tells the two apart: on each fold the candidate with the best mean of GGO
and consolidation Dice on the other folds is chosen and scored on the held-out slices. The final
choice is the best candidate on all slices. Writes the table and the choice as JSON.

    python scripts/choose_density_split.py --data ../shared/data/medseg100 --out docs/training_logs/density_split.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.inference.density_split import DensitySplit, dense_share  # noqa: E402
from COVIDSegLib.labels import CONSOLIDATION, GGO  # noqa: E402
from COVIDSegLib.preprocess.intensity import medseg8_to_hu  # noqa: E402
from COVIDSegLib.training.crossval import kfold  # noqa: E402
from COVIDSegLib.training.datasets import load_medseg  # noqa: E402
from COVIDSegLib.training.metrics import binary_metrics  # noqa: E402

THRESHOLDS = tuple(range(-550, -49, 50))
MEDIANS_MM = (1.0, 3.0, 5.0, 9.0, 15.0, 25.0)


def dice_table(samples) -> dict:
    """(threshold, window mm) -> (n, 2) GGO and consolidation Dice of the split applied to each
    slice's expert infection."""
    table = {(float(t), m): np.zeros((len(samples), 2)) for t, m in itertools.product(THRESHOLDS, MEDIANS_MM)}
    for i, s in enumerate(samples):
        hu, involved = medseg8_to_hu(s.image.astype(np.float32)), s.target > 0
        for t, m in itertools.product(THRESHOLDS, MEDIANS_MM):
            share = dense_share(hu, involved, t, DensitySplit(median_mm=m).window_px((1.0, 1.0)))
            labels = np.zeros(involved.shape, np.uint8)
            labels[involved] = np.where(share > 0.5, CONSOLIDATION, GGO)
            table[(float(t), m)][i] = (binary_metrics(labels == GGO, s.target == 1)["dice"],
                                       binary_metrics(labels == CONSOLIDATION, s.target == 2)["dice"])
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    samples = load_medseg(args.data, "multiclass")
    scores = {DensitySplit(t, m): dice for (t, m), dice in dice_table(samples).items()}
    candidates = list(scores)
    held_out = np.zeros((len(samples), 2))
    chosen = []
    for train, test in kfold(len(samples), args.folds, 0):
        best = max(candidates, key=lambda c: scores[c][train].mean())
        held_out[test] = scores[best][test]
        chosen.append({"threshold_hu": best.threshold_hu, "median_mm": best.median_mm})
    final = max(candidates, key=lambda c: scores[c].mean())
    result = {"slices": len(samples), "folds": args.folds, "chosen_per_fold": chosen,
              "cv_GGO_dice": float(held_out[:, 0].mean()), "cv_consolidation_dice": float(held_out[:, 1].mean()),
              "final": {"threshold_hu": final.threshold_hu, "median_mm": final.median_mm,
                        "GGO_dice": float(scores[final][:, 0].mean()),
                        "consolidation_dice": float(scores[final][:, 1].mean())},
              "table": [{"threshold_hu": c.threshold_hu, "median_mm": c.median_mm,
                         "GGO_dice": float(scores[c][:, 0].mean()), "consolidation_dice": float(scores[c][:, 1].mean())}
                        for c in candidates]}
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
