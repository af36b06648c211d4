"""Write each fold model of a cross-validation run as a model bundle (weights + card with SHA-256),
so that the commands and scripts that take a bundle (``evaluate_lungs.py --lungs CARD``,
``covidseg segment --model CARD``) measure a model on what its fold held out.

    python scripts/export_fold_bundles.py runs/lungs_ctx2/cv -o runs/lungs_ctx2/folds --name lungs_ctx2

Prints, per fold, the card path and the groups it held out (e.g. which lung-free negative volume).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.bundle import save_bundle  # noqa: E402
from COVIDSegLib.models.registry import build_model  # noqa: E402
from COVIDSegLib.training.train_run import make_card  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402


def held_out(cv_dir: Path) -> dict:
    """fold -> the negative volumes among its held-out slices (ids ``neg_<volume>_z…``)."""
    out = defaultdict(set)
    with open(cv_dir / "cv_slices.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["id"].startswith("neg_"):
                out[int(row["fold"])].add(row["id"].rsplit("_z", 1)[0])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cv_dir", type=Path, help="the run's cv/ folder (cv_summary.json, foldN/best.safetensors)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--name", required=True, help="bundle name prefix: NAME_foldN")
    args = ap.parse_args()
    summary = json.loads((args.cv_dir / "cv_summary.json").read_text(encoding="utf-8"))
    cfg = TrainConfig.from_dict(summary["config"])
    negatives = held_out(args.cv_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    for fold_dir in sorted(args.cv_dir.glob("fold*")):
        fold = int(fold_dir.name.removeprefix("fold"))
        model = build_model(cfg.model_config())
        model.load_state_dict(load_file(str(fold_dir / "best.safetensors")))
        card = make_card(cfg, args.cv_dir, 0, [], [], None, {"note": f"fold {fold} of {args.cv_dir}"})
        path = save_bundle(model.eval(), card, args.out, f"{args.name}_fold{fold}")
        print(f"fold {fold}: {path}  held-out negatives: {', '.join(sorted(negatives[fold])) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
