#!/usr/bin/env python3
"""Cross-validated end-to-end figures: the whole `segment` pipeline (lungs, model, confinement to
the lungs plus a margin, small-island removal) on each held-out MedSeg slice, with the model of
the fold that did not see it (runs/cv/<arch>/fold<i>/best.safetensors from
scripts/crossvalidate_architectures.py).

    python scripts/evaluate_pipeline_cv.py --runs runs/cv/xr_msf_unet --margins 0,10,1000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from COVIDSegLib.bundle import ModelBundle
from COVIDSegLib.training.crossval import kfold
from COVIDSegLib.training.datasets import TASK_CLASS_NAMES, TASK_LABELS, load_filtered
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter
from COVIDSegLib.training.metrics import binary_metrics, summarise
from COVIDSegLib.models.registry import build_model
from COVIDSegLib.training.trainer import TrainConfig
from COVIDSegLib.volume import MEDSEG8, Volume


def fold_bundle(run_dir: Path, fold: int, cfg: TrainConfig) -> ModelBundle:
    model = build_model(cfg.model_config())
    model.load_state_dict(load_file(str(run_dir / f"fold{fold}" / "best.safetensors")))
    names = TASK_CLASS_NAMES[cfg.task]
    card = {"task": cfg.task, "sha256": "cv-fold", "preprocessing": {"input": cfg.input},
            "labels": {str(k): {"value": v, "name": names[k]} for k, v in TASK_LABELS[cfg.task].items()}}
    return ModelBundle(f"fold{fold}", card, model.eval(), run_dir)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--runs", type=Path, default=Path("runs/cv/xr_msf_unet"))
    ap.add_argument("--margins", default="0,10,1000", help="lung margins in mm (1 mm pixels assumed)")
    ap.add_argument("--out", type=Path, help="write the summary JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    summary = json.loads((args.runs / "cv_summary.json").read_text())
    cfg = TrainConfig.from_dict(summary["config"])
    samples, _ = load_filtered(args.data, cfg.task)
    results = {}
    for margin in (float(m) for m in args.margins.split(",")):
        rows = []
        for fold, (_, test_idx) in enumerate(kfold(len(samples), summary["k"], cfg.seed)):
            seg = Segmenter(fold_bundle(args.runs, fold, cfg),
                            InferenceOptions(device="cpu", lung_margin_mm=margin, min_component_mm3=10.0))
            for j in test_idx:
                s = samples[j]
                volume = Volume(s.image[None].astype(np.float32), space=MEDSEG8, is_slice=True)
                labels = seg.segment(volume).labels.array[0]
                rows.append(binary_metrics(np.isin(labels, (3, 4)), s.target > 0))
        results[f"margin_{margin:g}mm"] = summarise(rows)
        m = results[f"margin_{margin:g}mm"]
        print(f"margin {margin:g} mm: Dice {m['dice']['mean']:.3f} ± {m['dice']['sd']:.3f}, "
              f"precision {m['precision']['mean']:.3f}, sensitivity {m['sensitivity']['mean']:.3f}, "
              f"specificity {m['specificity']['mean']:.4f}, HD95 {m['hd95']['mean']:.1f} px", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
