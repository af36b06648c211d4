"""Cross-validated figures of lung-model ensembles from runs that share their folds.

Each run is a ``train_lung_model.py`` output whose ``cv/foldN/best.safetensors`` were trained on the
same patient-grouped folds (same data, negatives and seed). For every fold, the held-out slices are
scored with each run's fold model and with the average of their probabilities, so the ensemble is
measured on patients none of its members saw. Prints the mean per-slice lung Dice of each, paired.

    python scripts/lung_ensemble_cv.py runs/lungs_2d runs/lungs_ctx2 --data ../shared/data/covid19-ct-seg-slices \
        --negative ../shared/data/hu-volumes/totalseg_example_ct_sm.nii.gz:0-15 \
        --negative ../shared/data/hu-volumes/totalseg_dicom_series:0-9 -o docs/training_logs/lungs_ctx2/ensemble_cv.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.inference.predict2d import forward_probabilities, full_size  # noqa: E402
from COVIDSegLib.models.registry import build_model  # noqa: E402
from COVIDSegLib.preprocess.slice_prep import InputSpec  # noqa: E402
from COVIDSegLib.training.crossval import sample_folds, score_slice  # noqa: E402
from COVIDSegLib.training.datasets import load_ct_seg_slices, lung_free_slices  # noqa: E402
from COVIDSegLib.training.train_run import keep_clean  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402
from COVIDSegLib.training.training_data import prepare_set  # noqa: E402


def run_config(run: Path) -> TrainConfig:
    return TrainConfig.from_dict(json.loads((run / "cv" / "cv_summary.json").read_text(encoding="utf-8"))["config"])


def fold_probabilities(run: Path, cfg: TrainConfig, fold: int, test, bf16: bool = False) -> list:
    """Full-size probability maps of ``run``'s fold model on the held-out samples ``test``."""
    model = build_model(cfg.model_config())
    model.load_state_dict(load_file(str(run / "cv" / f"fold{fold}" / "best.safetensors")))
    data = prepare_set(test, InputSpec.from_dict(cfg.input))
    probs, _ = forward_probabilities(model.eval(), data.inputs(), torch.device("cpu"), bf16=bf16)
    return full_size(probs, data.geometries)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--negative", action="append", default=[])
    ap.add_argument("--repeat-negatives", type=int, default=4)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("-o", "--out", type=Path)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="network arithmetic (CPU)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    samples = load_ct_seg_slices(args.data, "lungs")
    for spec in args.negative:
        samples += lung_free_slices(spec, args.repeat_negatives)
    kept, _ = keep_clean(samples, 2, Path("runs") / "ensemble_cv")
    configs = [run_config(run) for run in args.runs]
    names = [r.name for r in args.runs] + ["ensemble"]
    dice = {n: [] for n in names}
    ids = []
    for fold, (_, test_idx) in enumerate(sample_folds(kept, args.k, 0)):
        test = [kept[j] for j in test_idx if not kept[j].id.startswith("neg_")]
        per_run = [fold_probabilities(run, cfg, fold, test, args.precision == "bf16")
                   for run, cfg in zip(args.runs, configs)]
        for i, s in enumerate(test):
            maps = [p[i] for p in per_run] + [np.mean([p[i] for p in per_run], axis=0)]
            for n, m in zip(names, maps):
                dice[n].append(score_slice(m, s.target, "lungs")["dice"])
            ids.append(s.id)
        print(f"fold {fold}: " + "  ".join(f"{n} {np.mean(dice[n][-len(test):]):.4f}" for n in names), flush=True)
    result = {"slices": len(ids), "mean_dice": {n: float(np.mean(v)) for n, v in dice.items()}, "paired": {}}
    for n in names[:-1]:
        d = np.array(dice["ensemble"]) - np.array(dice[n])
        result["paired"][f"ensemble - {n}"] = {"mean": float(d.mean()), "better": int((d > 0).sum()),
                                               "worse": int((d < 0).sum()), "wilcoxon_p": float(wilcoxon(d).pvalue)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps({**result, "per_slice": {n: dict(zip(ids, v)) for n, v in dice.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
