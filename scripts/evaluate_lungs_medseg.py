"""Measure the training-free lung segmentation on the 52 real MedSeg slices; write docs/LUNGS.md.

Per slice: share of expert-marked infection pixels inside the predicted lungs, lung area as a
share of the body area, and time. Also saves overlays of the best and worst slices.
Usage: python scripts/evaluate_lungs_medseg.py [../shared/data]
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from COVIDSegLib.intensity import to_hu
from COVIDSegLib.io import read_volume
from COVIDSegLib.lungs import body_mask, segment_lungs
from COVIDSegLib.overlay import save_overlay

ROOT = Path(__file__).resolve().parents[1]


def evaluate(data: Path):
    rows = []
    for image in sorted((data / "medseg100" / "images").glob("*.png")):
        volume = read_volume(image)
        start = time.perf_counter()
        labels = segment_lungs(volume)
        seconds = time.perf_counter() - start
        lung = labels.array[0] > 0
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "medseg100" / "masks" / image.name))) > 0
        body = body_mask(to_hu(volume).array, volume)[0]
        inside = float((mask & lung).sum() / mask.sum()) if mask.any() else None
        rows.append({"id": image.stem, "infection_px": int(mask.sum()), "inside": inside,
                     "lung_share_of_body": float(lung.sum() / max(body.sum(), 1)),
                     "left_px": int((labels.array == 1).sum()), "right_px": int((labels.array == 2).sum()),
                     "seconds": seconds, "volume": volume, "labels": labels})
    return rows


def write_report(rows, out: Path) -> dict:
    scored = [r for r in rows if r["inside"] is not None]
    inside = np.array([r["inside"] for r in scored])
    share = np.array([r["lung_share_of_body"] for r in rows])
    pooled = sum(r["inside"] * r["infection_px"] for r in scored) / sum(r["infection_px"] for r in scored)
    summary = {
        "slices": len(rows), "slices_with_infection": len(scored),
        "inside_mean": float(inside.mean()), "inside_median": float(np.median(inside)),
        "inside_min": float(inside.min()), "inside_pooled": float(pooled),
        "slices_inside_ge_95": int((inside >= 0.95).sum()), "slices_inside_ge_99": int((inside >= 0.99).sum()),
        "lung_share_mean": float(share.mean()), "lung_share_min": float(share.min()), "lung_share_max": float(share.max()),
        "both_lungs_found": int(sum(1 for r in rows if r["left_px"] and r["right_px"])),
        "seconds_per_slice_mean": float(np.mean([r["seconds"] for r in rows])),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
    }
    figs = out / "figures"
    ordered = sorted(scored, key=lambda r: r["inside"])
    for r in ordered[:3] + ordered[-2:]:
        save_overlay(r["volume"], r["labels"], figs / f"lungs_medseg_{r['id']}.png",
                     title=f"MedSeg {r['id']}: {100 * r['inside']:.1f} % of infection inside lungs")
    table = "\n".join(_row(r) for r in rows)
    (out / "LUNGS_DATA.json").write_text(json.dumps(
        {"summary": summary, "slices": [{k: v for k, v in r.items() if k not in ("volume", "labels")} for r in rows]},
        indent=1))
    return summary, table


def _row(r) -> str:
    inside = "" if r["inside"] is None else f"{100 * r['inside']:.1f}"
    both = "yes" if r["left_px"] and r["right_px"] else "NO"
    return f"| {r['id']} | {r['infection_px']} | {inside} | {100 * r['lung_share_of_body']:.1f} | {both} |"


def main(data: Path) -> None:
    rows = evaluate(data)
    summary, table = write_report(rows, ROOT / "docs")
    print(json.dumps(summary, indent=1))
    (ROOT / "docs" / "LUNGS_TABLE.md").write_text(
        "| slice | infection px | % infection inside lungs | lung % of body | both lungs |\n"
        "|---|---|---|---|---|\n" + table + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
