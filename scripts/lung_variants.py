"""Lung bundles side by side on variants of the real reference volume: slice thickness (resampled),
storage order, a crop through the lungs. Dice of each against the reference lungs (resampled alike).

    python scripts/lung_variants.py Resources/Models/covidseg_lungs.json runs/x/covidseg_lungs.json \
        -o docs/training_logs/lungs_ctx2/variants.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_lungs import dice  # noqa: E402

from COVIDSegLib.lungs.lung_model import LungModel  # noqa: E402
from COVIDSegLib.lungs.segment import segment_lungs  # noqa: E402
from COVIDSegLib.volume import Volume  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hu-volumes"


def resampled(image: sitk.Image, thickness: float, interpolator) -> sitk.Image:
    spacing = (*image.GetSpacing()[:2], thickness)
    size = [*image.GetSize()[:2], int(round(image.GetSize()[2] * image.GetSpacing()[2] / thickness))]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                         image.GetDirection(), -1024.0 if interpolator != sitk.sitkNearestNeighbor else 0.0)


def variants(ct: sitk.Image, ref: sitk.Image) -> dict:
    out = {"native 3 mm": (ct, ref)}
    for mm in (1.5, 6.0, 9.0):
        out[f"{mm:g} mm slices"] = (resampled(ct, mm, sitk.sitkLinear), resampled(ref, mm, sitk.sitkNearestNeighbor))
    for code in ("LPS", "PLS"):
        out[f"stored {code}"] = (sitk.DICOMOrient(ct, code), sitk.DICOMOrient(ref, code))
    lungs = sitk.GetArrayViewFromImage(ref) > 0
    xs = np.flatnonzero(lungs.any(axis=(0, 1)))
    lo, hi = int(xs[0]) + 3, int(xs[-1]) - 3  # both lungs cut by the image edge
    out["cropped through the lungs"] = (ct[lo:hi + 1, :, :], ref[lo:hi + 1, :, :])
    return out


def score(model: LungModel, ct: sitk.Image, ref: sitk.Image) -> dict:
    volume = Volume(sitk.GetArrayFromImage(ct), ct.GetSpacing(), ct.GetOrigin(), ct.GetDirection())
    labels = segment_lungs(volume, model=model).array
    truth = sitk.GetArrayFromImage(ref)
    return {"dice": round(dice(labels > 0, truth > 0), 4), "left": round(dice(labels == 1, truth == 1), 4),
            "right": round(dice(labels == 2, truth == 2), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cards", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args()
    ct = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.nii.gz"))
    ref = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.lungs.nii.gz"))
    models = {str(c): LungModel.load(str(c)) for c in args.cards}
    result = {name: {m: score(model, *pair) for m, model in models.items()} for name, pair in variants(ct, ref).items()}
    for name, row in result.items():
        print(f"{name:<28}" + "  ".join(f"{r['dice']:.3f} (L {r['left']:.3f} R {r['right']:.3f})" for r in row.values()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
