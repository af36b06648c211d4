"""Measure the lungs (learned + 3D post-processing, and the training-free method) on real data.

* MedSeg 52 slices: share of the expert-marked infection inside the predicted lungs.
* HU volumes: Dice against the reference lungs of ``totalseg_example_ct_sm`` (each side), lung
  voxels far outside the reference, in soft tissue or outside the body; the DICOM series'
  lungs per slice and side; robustness variants of the reference volume.
* Overlays of every HU volume, old (training-free) and new (learned), in docs/figures.

Writes docs/LUNGS_DATA.json and prints a summary. Usage:
    python scripts/evaluate_lungs.py [../shared/data]
A candidate lung bundle is measured without touching docs (``--lungs CARD --out X.json --figures DIR``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from medseg_pseudo_lungs import inside_shares, slice_ids, summary  # noqa: E402

from COVIDSegLib.io.files import read_volume  # noqa: E402
from COVIDSegLib.lungs.lung_model import load_lung_model  # noqa: E402
from COVIDSegLib.lungs.segment import segment_lungs  # noqa: E402
from COVIDSegLib.preprocess.intensity import to_hu  # noqa: E402
from COVIDSegLib.report.overlay import save_overlay  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("learned", "classic")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b)))


def medseg(data: Path, model) -> dict:
    out = {}
    root = data / "medseg100"
    for method in METHODS:
        start = time.perf_counter()
        shares = inside_shares(root, slice_ids(root), model if method == "learned" else None)
        s = summary(shares)["finding"]
        out[method] = {"slices": s["n"], "inside_mean": s["mean"], "inside_median": s["median"],
                       "inside_min": s["min"], "worst_slice": s["worst_slice"], "slices_ge_95": s["slices_ge_95"],
                       "seconds_per_slice": (time.perf_counter() - start) / s["n"]}
    return out


def outside_body(hu: np.ndarray) -> np.ndarray:
    """Air connected to the image border in each slice."""
    out = np.zeros(hu.shape, bool)
    for z in range(len(hu)):
        labels, _ = ndimage.label(hu[z] < -500)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        out[z] = np.isin(labels, border[border > 0])
    return out


def reference_scores(labels: np.ndarray, ref: np.ndarray, hu: np.ndarray) -> dict:
    lung = labels > 0
    far = lung & ~ndimage.binary_dilation(ref > 0, iterations=2)  # > 2 voxels (6 mm) from the reference
    return {"dice_both": dice(lung, ref > 0), "dice_left": dice(labels == 1, ref == 1),
            "dice_right": dice(labels == 2, ref == 2),
            "share_outside_reference": float((lung & (ref == 0)).sum() / max(1, lung.sum())),
            "voxels_far_outside_reference": int(far.sum()),
            "far_voxels_soft_tissue": int((far & (hu > -300)).sum()),
            "far_voxels_gas_below_-900": int((far & (hu < -900)).sum()),
            "voxels_outside_body": int((lung & outside_body(hu)).sum()),
            "left_ml": 0.0, "right_ml": 0.0}


def hu_volumes(data: Path, model, figures: Path) -> dict:
    root = data / "hu-volumes"
    out = {}
    ref_path = root / "totalseg_example_ct_sm.lungs.nii.gz"
    for path in (root / "totalseg_example_ct_sm.nii.gz", root / "totalseg_dicom_series", data / "chest-ct-dicom"):
        name = path.name
        volume = read_volume(path)
        hu = to_hu(volume).array
        stem = name.split(".nii")[0]
        for method in METHODS:
            start = time.perf_counter()
            labels = segment_lungs(volume, model=model if method == "learned" else None)
            seconds = time.perf_counter() - start
            a = labels.array
            row = reference_scores(a, read_volume(ref_path).array, hu) if stem.endswith("_sm") else {}
            row.update({"left_ml": float((a == 1).sum() * volume.voxel_volume_ml),
                        "right_ml": float((a == 2).sum() * volume.voxel_volume_ml),
                        "slices_with_left": int((a == 1).any(axis=(1, 2)).sum()),
                        "slices_with_right": int((a == 2).any(axis=(1, 2)).sum()),
                        "median_hu_left": float(np.median(hu[a == 1])) if (a == 1).any() else None,
                        "median_hu_right": float(np.median(hu[a == 2])) if (a == 2).any() else None,
                        "seconds": round(seconds, 2)})
            out[f"{stem}/{method}"] = row
            save_overlay(volume, labels, figures / f"lungs_{stem}_{method}.png",
                         title=f"{stem}: {method} lungs", count=12)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--lungs", default="auto", help="lung bundle name or card path (default: the bundled one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "LUNGS_DATA.json")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    args = ap.parse_args(argv)
    model = load_lung_model(args.lungs)
    if model is None:
        sys.exit("no lung model installed")
    result = {"lung_model": model.name, "hu_volumes": hu_volumes(args.data, model, args.figures),
              "medseg52": medseg(args.data, model)}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
