#!/usr/bin/env python3
"""Turn cross-validation results (runs/cv/<arch>/cv_summary.json) into the tables of docs/MODELS.md.

    python scripts/models_table.py runs/cv > docs/MODELS_CV_TABLE.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from COVIDSegLib.models.registry import build_model, count_parameters
from COVIDSegLib.training.trainer import TrainConfig

COLUMNS = ("dice", "iou", "f1", "sensitivity", "specificity", "precision", "hd95", "tad")
HEADERS = ("Dice", "IoU", "F1", "Sensitivity", "Specificity", "Precision", "HD95 (px)", "Thr-avg Dice")


def cell(metrics: dict, key: str) -> str:
    m = metrics.get(key)
    if not m or not m["n"]:
        return "n/a"
    return f"{m['mean']:.3f} ± {m['sd']:.3f}"


def table(run_dir: Path, prefix: str = "") -> str:
    lines = ["| Architecture | Params | " + " | ".join(HEADERS) + " | Epochs × folds | CPU time |",
             "|---" * (len(HEADERS) + 4) + "|"]
    for summary_path in sorted(run_dir.glob("*/cv_summary.json")):
        s = json.loads(summary_path.read_text())
        compute_path = summary_path.parent / "compute.json"
        compute = json.loads(compute_path.read_text()) if compute_path.exists() else {}
        cfg = s["config"]
        params = count_parameters(build_model(TrainConfig.from_dict(cfg).model_config()))
        name = f"{cfg['model']['name']} ({', '.join(f'{k} {v}' for k, v in cfg['model'].items() if k != 'name')})"
        minutes = f"{compute['seconds'] / 60:.0f} min" if compute else "?"
        lines.append(f"| {name} | {params / 1e6:.2f} M | "
                     + " | ".join(cell(s["metrics"], prefix + c) for c in COLUMNS)
                     + f" | {max(s['epochs'])} × {s['k']} | {minutes} |")
    return "\n".join(lines)


def paired(run_dir: Path, best: str) -> str:
    """Per-slice Dice of ``best`` minus each other architecture: mean, wins, Wilcoxon signed-rank p."""
    import csv

    from COVIDSegLib.training.metrics import paired_change

    def dice(arch):
        return {r["id"]: float(r["dice"]) for r in csv.DictReader(open(run_dir / arch / "cv_slices.csv"))}

    ref = dice(best)
    lines = [f"| {best} vs | mean Δ Dice | slices better | Wilcoxon p |", "|---|---|---|---|"]
    for other in sorted(p.parent.name for p in run_dir.glob("*/cv_slices.csv")):
        if other == best:
            continue
        d = dice(other)
        c = paired_change([d[i] for i in sorted(ref)], [ref[i] for i in sorted(ref)])
        lines.append(f"| {other} | {c['mean_change']:+.3f} | {c['better']}/{c['n']} | {c['wilcoxon_p']:.2g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--prefix", default="", help="metric prefix, e.g. GGO_ or consolidation_")
    ap.add_argument("--paired", metavar="ARCH", help="also compare ARCH slice by slice with the others")
    args = ap.parse_args(argv)
    print(table(args.run_dir, args.prefix))
    if args.paired:
        print()
        print(paired(args.run_dir, args.paired))
    return 0


if __name__ == "__main__":
    sys.exit(main())
