#!/usr/bin/env python3
"""Network-level CV figures of a MedSeg CV run under each lesion decision (``predict2d.class_indices``):
every held-out slice scored by the fold model that did not see it, argmax against union (at
``names.LESION_THRESHOLD``; the committed decision_cv.json was run at 0.5, before the threshold was
chosen), paired slice by slice. The whole-chain figures come from ``evaluate_pipeline_cv.py``.

    python scripts/decision_cv.py --runs runs/v1_e40/cv --out docs/training_logs/.../decision_cv.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_pipeline_cv import fold_bundle, medseg_folds  # noqa: E402

from COVIDSegLib.names import DECISIONS  # noqa: E402
from COVIDSegLib.preprocess.slice_prep import InputSpec  # noqa: E402
from COVIDSegLib.training.crossval import score_model  # noqa: E402
from COVIDSegLib.training.datasets import load_medseg  # noqa: E402
from COVIDSegLib.training.metrics import paired_change, summarise  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg = TrainConfig.from_dict(json.loads((args.runs / "cv_summary.json").read_text())["config"])
    folds = medseg_folds(args.runs)
    samples = [s for s in load_medseg(args.data, cfg.task) if s.id in folds]
    rows = {d: [] for d in DECISIONS}
    for fold in sorted(set(folds.values())):
        model = fold_bundle(args.runs, fold, cfg, "medseg8").model
        held = [s for s in samples if folds[s.id] == fold]
        for d in DECISIONS:
            rows[d] += score_model(model, held, InputSpec.from_dict(cfg.input), cfg.task, torch.device("cpu"),
                                   decision=d)
    out = {d: summarise([{k: v for k, v in r.items() if k != "id"} for r in rows[d]]) for d in DECISIONS}
    keys = [k for k in ("dice", "GGO_dice", "consolidation_dice") if k in rows[DECISIONS[0]][0]]
    for key in keys:
        pairs = np.array([(a[key], b[key]) for a, b in zip(*(rows[d] for d in DECISIONS))])
        pairs = pairs[~np.isnan(pairs).any(axis=1)]
        out[f"{key}_{DECISIONS[1]}_vs_{DECISIONS[0]}"] = paired_change(pairs[:, 0], pairs[:, 1])
    for d in DECISIONS:
        print(d, {k: round(out[d][k]["mean"], 4) for k in keys + ["precision", "sensitivity"]})
    for key in keys:
        print(key, json.dumps(out[f"{key}_{DECISIONS[1]}_vs_{DECISIONS[0]}"]))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
