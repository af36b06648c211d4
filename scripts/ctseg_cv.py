#!/usr/bin/env python3
"""CV figures of union runs on the covid19-ct-seg slices (ids ``ctseg_*`` in ``cv_slices.csv``):
mean per-slice Dice, Inf-Net's threshold-averaged Dice, and the per-patient pooled Dice (the
volume Dice that 3D methods report, rebuilt from each slice's sensitivity, precision and
reference pixels), per source (Coronacases / Radiopaedia).

    python scripts/ctseg_cv.py --data ../shared/data/covid19-ct-seg-slices runs/lungspace_u16 [-o out.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.training.metrics import pooled_group_dice  # noqa: E402

PIXELS = 256 * 256  # every covid19-ct-seg slice, scored on its own grid


def ctseg_rows(run: Path) -> list:
    path = run / "cv_slices.csv" if (run / "cv_slices.csv").exists() else run / "cv" / "cv_slices.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["id"].startswith("ctseg_")]


def figures(rows: list, manifest: dict) -> dict:
    entries = [manifest[r["id"][len("ctseg_"):]] for r in rows]
    pooled = pooled_group_dice(rows, [e["infection_pixels"] for e in entries], [e["group"] for e in entries], PIXELS)
    by_source = {}
    for source in sorted({e["source"] for e in entries}):
        groups = sorted({str(e["group"]) for e in entries if e["source"] == source}, key=int)
        dice = [float(r["dice"]) for r, e in zip(rows, entries) if e["source"] == source]
        by_source[source] = {"slices": len(dice), "dice": float(np.mean(dice)),
                             "patient_pooled_dice": float(np.mean([pooled[g] for g in groups])), "patients": len(groups)}
    return {"slices": len(rows), "dice": float(np.mean([float(r["dice"]) for r in rows])),
            "tad": float(np.mean([float(r["tad"]) for r in rows])),
            "precision": float(np.nanmean([float(r["precision"]) for r in rows])),
            "sensitivity": float(np.mean([float(r["sensitivity"]) for r in rows])),
            "patient_pooled_dice": float(np.mean(list(pooled.values()))),
            "per_patient": dict(sorted(pooled.items(), key=lambda kv: int(kv[0]))), "by_source": by_source}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="covid19-ct-seg-slices (its manifest)")
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args()
    manifest = {m["id"]: m for m in json.loads((args.data / "manifest.json").read_text(encoding="utf-8"))}
    out = {str(run): figures(ctseg_rows(run), manifest) for run in args.runs}
    for run, f in out.items():
        print(f"{run}: {f['slices']} slices, Dice {f['dice']:.3f}, thr-avg {f['tad']:.3f}, "
              f"patient-pooled {f['patient_pooled_dice']:.3f}; "
              + "; ".join(f"{s} {v['dice']:.3f} / pooled {v['patient_pooled_dice']:.3f}" for s, v in f["by_source"].items()))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
