#!/usr/bin/env python3
"""Two lung models side by side, slice by slice: CV lung Dice of two runs over the same
covid19-ct-seg slices (``cv_slices.csv`` of each), and optionally the MedSeg finding inside the
lungs of two bundles (Wilcoxon, ``metrics.paired_change``). The figures behind docs/LUNGS.md.

    python scripts/compare_lung_models.py docs/training_logs/lungs docs/training_logs/lungs_e24_experiment \\
        --medseg ../shared/data/medseg100 --bundles auto runs/lungs_e24/bundle/covidseg_lungs.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from medseg_pseudo_lungs import inside_shares, slice_ids  # noqa: E402
from train_lung_model import lung_cv_metrics, read_manifest  # noqa: E402

from COVIDSegLib.lungs.lung_model import load_lung_model  # noqa: E402
from COVIDSegLib.training.metrics import paired_change  # noqa: E402


def cv_rows(run: Path) -> list:
    with open(run / "cv_slices.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def paired_on(first: dict, second: dict) -> dict:
    """``paired_change`` over the keys both id -> value maps hold."""
    ids = sorted(set(first) & set(second))
    return paired_change(np.array([first[i] for i in ids]), np.array([second[i] for i in ids]))


def compare_cv(runs: list, manifest: dict) -> dict:
    rows = [cv_rows(r) for r in runs]
    dice = [{r["id"]: float(r["dice"]) for r in rs if r["id"] in manifest} for rs in rows]
    return {"runs": [str(r) for r in runs], "metrics": [lung_cv_metrics(rs, manifest) for rs in rows],
            "dice_below_0.5": [sum(v < 0.5 for v in d.values()) for d in dice],
            "paired_dice": paired_on(*dice)}


def compare_medseg(root: Path, bundles: list) -> dict:
    shares = [inside_shares(root, slice_ids(root), load_lung_model(b)) for b in bundles]
    return {key: paired_on(*({i: r[key] for i, r in s.items() if key in r} for s in shares))
            for key in ("finding", "ggo_consolidation")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs=2, type=Path, help="two folders with cv_slices.csv")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/covid19-ct-seg-slices"))
    ap.add_argument("--medseg", type=Path, help="MedSeg folder: also pair the finding inside the lungs")
    ap.add_argument("--bundles", nargs=2, help="the two lung bundles (name or card path) for --medseg")
    args = ap.parse_args(argv)
    if args.medseg and not args.bundles:
        ap.error("--medseg needs --bundles A B")
    result = {"cv": compare_cv(args.runs, read_manifest(args.data))}
    if args.medseg:
        result["medseg_inside"] = compare_medseg(args.medseg, args.bundles)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
