"""Derive the HU <-> MedSeg 8-bit mapping from tissue peaks (writes docs/INTENSITY_DATA.json).

For each MedSeg slice: air = median of in-field pixels outside the body, fat and soft tissue =
histogram modes inside the body in their 8-bit ranges. The same peaks are measured in HU on the
real DICOM slices. A least-squares line through (HU reference, 8-bit peak) gives the window.
Usage: python scripts/derive_medseg_mapping.py [../shared/data]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from COVIDSegLib.preprocess.intensity import tissue_peaks

REFERENCE_HU = {"air": -1000.0, "fat": -100.0, "soft_tissue": 40.0}
RANGES_8BIT = {"air": (30, 100), "fat": (195, 228), "soft_tissue": (224, 252)}
RANGES_HU = {"air": (-1100, -900), "fat": (-200, -40), "soft_tissue": (0, 100)}


def main(data: Path) -> None:
    rows = []
    for path in sorted((data / "medseg100" / "images").glob("*.png")):
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
        peaks = tissue_peaks(img, body_threshold=150, ranges=RANGES_8BIT, bin_width=1)
        rows.append({"id": path.stem, **peaks})
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(data / "chest-ct-dicom")))
    hu = sitk.GetArrayFromImage(reader.Execute()).astype(np.float32)
    hu_peaks = tissue_peaks(hu, body_threshold=-500, ranges=RANGES_HU, bin_width=5)

    med = {k: float(np.nanmedian([r[k] for r in rows])) for k in REFERENCE_HU}
    iqr = {k: [float(q) for q in np.nanpercentile([r[k] for r in rows], [25, 75])] for k in REFERENCE_HU}
    found = {k: int(np.sum(np.isfinite([r[k] for r in rows]))) for k in REFERENCE_HU}
    ref = np.array([REFERENCE_HU[k] for k in REFERENCE_HU])
    obs = np.array([med[k] for k in REFERENCE_HU])
    slope, intercept = np.polyfit(ref, obs, 1)  # v = slope * HU + intercept
    lo, hi = -intercept / slope, (255 - intercept) / slope
    per_slice = []
    for r in rows:
        if not all(np.isfinite(r[k]) for k in REFERENCE_HU):
            continue
        s, i = np.polyfit(ref, [r[k] for k in REFERENCE_HU], 1)
        per_slice.append((-i / s, (255 - i) / s))
    per_slice = np.array(per_slice)
    result = {
        "reference_hu": REFERENCE_HU,
        "medseg_peaks_median": med,
        "medseg_peaks_iqr": iqr,
        "slices_with_peak": found,
        "slices_with_all_peaks": len(per_slice),
        "dicom_peaks_hu": hu_peaks,
        "fit": {"slope_per_hu": slope, "intercept": intercept, "window_lo_hu": lo, "window_hi_hu": hi},
        "residuals_8bit": {k: float(obs[j] - (slope * ref[j] + intercept)) for j, k in enumerate(REFERENCE_HU)},
        "per_slice_window_lo_hu_p10_p50_p90": [float(x) for x in np.percentile(per_slice[:, 0], [10, 50, 90])],
        "per_slice_window_hi_hu_p10_p50_p90": [float(x) for x in np.percentile(per_slice[:, 1], [10, 50, 90])],
        "slices": rows,
    }
    out = Path(__file__).resolve().parents[1] / "docs" / "INTENSITY_DATA.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "slices"}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
