#!/usr/bin/env python3
"""Compare union runs (scripts/train_infection_union.py, one output folder per architecture) in the
tables of docs/MODELS.md: per-source CV figures, parameters, wall time, and the paired per-slice
comparison on the MedSeg slices (Wilcoxon signed-rank).

    python scripts/union_table.py runs/cmp128_unet8 runs/cmp128_xr_msf_unet8 runs/cmp128_unetpp8
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import datetime
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.models.registry import build_model, count_parameters  # noqa: E402
from COVIDSegLib.training.metrics import paired_change  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402

HEADER = ("| model | params | MedSeg infection Dice | thr-avg Dice | GGO Dice | consolidation Dice | precision "
          "| covid19-ct-seg infection Dice | negatives without a false positive | wall time |")


def _file(run: Path, name: str) -> Path:
    """``name`` in the run folder or its ``cv/`` (as train_infection_union writes it)."""
    return run / name if (run / name).exists() else run / "cv" / name


def _mean(s: dict, key: str) -> str:
    m = s.get(key) or {}
    return f"{m['mean']:.3f}" if m.get("n") else "n/a"


def _rows(run: Path) -> list:
    with open(_file(run, "cv_slices.csv"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _minutes(run: Path) -> str:
    """Wall time from the log's stamps; the clock restarts when a run resumes, so runs are summed."""
    log = _file(run, "train.log")
    stamps = [int(t) for t in re.findall(r"^\[\s*(\d+)s\]", log.read_text(), re.M)] if log.exists() else []
    if not stamps and log.exists():  # `covidseg train` logs dates
        dates = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \[", log.read_text(), re.M)
        if dates:
            first, last = (datetime.fromisoformat(d) for d in (dates[0], dates[-1]))
            return f"{(last - first).total_seconds() / 60:.0f} min"
    if not stamps:
        return "?"
    total = sum(a for a, b in zip(stamps, stamps[1:]) if b < a) + stamps[-1]
    return f"{total / 60:.0f} min"


def describe(run: Path) -> str:
    cfg = json.loads(_file(run, "cv_summary.json").read_text())["config"]
    model = cfg["model"]
    params = count_parameters(build_model(TrainConfig.from_dict(cfg).model_config()))
    name = f"{model['name']} ({', '.join(f'{k} {v}' for k, v in model.items() if k != 'name')})"
    name += f", {cfg['input']['size']} px" + (f" ({cfg['crop']} px crops)" if cfg.get("crop") else "")
    name += f", {cfg['epochs']} epochs"
    by_source = _file(run, "cv_by_source.json")  # a MedSeg-only run (v1) has its summary only
    by = json.loads(by_source.read_text()) if by_source.exists() else {
        "medseg": json.loads(_file(run, "cv_summary.json").read_text())["metrics"]}
    neg = [r for r in _rows(run) if r["id"].startswith("neg_")]
    clean = sum(float(r["dice"]) == 1.0 for r in neg)
    cells = [name, f"{params / 1e6:.2f} M", _mean(by["medseg"], "dice"), _mean(by["medseg"], "tad"),
             _mean(by["medseg"], "GGO_dice"), _mean(by["medseg"], "consolidation_dice"),
             _mean(by["medseg"], "precision"), _mean(by.get("ctseg", {}), "dice"), f"{clean} of {len(neg)}" if neg else "not scored",
             _minutes(run)]
    return "| " + " | ".join(cells) + " |"


def paired(runs: list, key: str) -> list:
    """Per MedSeg slice ``key`` of each pair of runs: mean difference, slices better, Wilcoxon p."""
    def values(run):
        return {r["id"].removeprefix("medseg_"): float(r[key]) for r in _rows(run)
                if not r["id"].startswith(("ctseg_", "neg_")) and r[key] not in ("", "nan")}

    lines = [f"| {key}: A vs B | mean Δ | A better / worse | Wilcoxon p |", "|---|---|---|---|"]
    for a, b in combinations(runs, 2):
        va, vb = values(a), values(b)
        ids = sorted(set(va) & set(vb))
        c = paired_change([vb[i] for i in ids], [va[i] for i in ids])  # A against B
        lines.append(f"| {a.name} vs {b.name} | {c['mean_change']:+.3f} | {c['better']} / {c['worse']} "
                     f"| {c['wilcoxon_p']:.2g} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args(argv)
    print("\n".join([HEADER, "|---" * 10 + "|"] + [describe(r) for r in args.runs]))
    for key in ("dice", "GGO_dice", "consolidation_dice"):
        print()
        print("\n".join(paired(args.runs, key)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
