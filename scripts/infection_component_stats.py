#!/usr/bin/env python3
"""Per infection component of the whole `segment` chain: voxels, share aerated (below -500 HU),
share inside the lung masks, median HU and, on MedSeg, the share on the expert's mask. MedSeg
slices are segmented by the fold model that did not see them; each healthy volume by those fold
models and by the shipped model (with the airless rule off, to see what it would remove). With
``--variants`` the shipped model also runs on variants of each volume as the robustness tests make
them: 1.5 and 6 mm slices (linear, -1024 outside), lungs cropped 3 voxels inside their left and right
extremes (needs VOLUME's ``.lungs.nii.gz`` beside it), round fields of view of radius 0.35 and 0.45.

    python scripts/infection_component_stats.py --runs runs/v1_e40/cv --variants \
        ../shared/data/hu-volumes/totalseg_example_ct_sm.nii.gz -o docs/training_logs/airless/component_stats.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_pipeline_cv import fold_bundle, medseg_folds  # noqa: E402

from COVIDSegLib.bundle import load_bundle  # noqa: E402
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter  # noqa: E402
from COVIDSegLib.io.files import read_volume  # noqa: E402
from COVIDSegLib.io.paths import stem_of  # noqa: E402
from COVIDSegLib.preprocess.intensity import to_hu  # noqa: E402
from COVIDSegLib.training.datasets import load_medseg  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402
from COVIDSegLib.volume import MEDSEG8, Volume  # noqa: E402

OPTIONS = InferenceOptions(device="cpu", airless_inside_share=0.0)  # the chain without the rule


def components(seg, volume: Volume, truth=None) -> list:
    result = seg.segment(volume)
    labels, lungs = np.asarray(result.labels.array), np.asarray(result.lungs.array) > 0
    hu = to_hu(volume, result.calibration).array
    found, n = ndimage.label(labels >= 3)
    out = []
    for i in range(1, n + 1):
        c = found == i
        out.append({"voxels": int(c.sum()), "aerated": float((hu[c] < -500).mean()), "inside": float(lungs[c].mean()),
                    "median_hu": float(np.median(hu[c])),
                    "on_expert": None if truth is None else float(truth[c].mean())})
    return out


def variants(path: Path, folder: Path) -> list:
    """The robustness variants of one volume (module docstring), written into ``folder``."""
    image, out = sitk.ReadImage(str(path)), []
    for thickness in (1.5, 6.0):
        spacing = image.GetSpacing()[:2] + (thickness,)
        size = list(image.GetSize()[:2]) + [int(round(image.GetSize()[2] * image.GetSpacing()[2] / thickness))]
        out.append((f"{thickness:g}mm", sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                                                       spacing, image.GetDirection(), -1024)))
    reference = path.with_name(path.name.replace(".nii.gz", ".lungs.nii.gz"))
    if reference.exists():
        xs = np.flatnonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(reference))).any(axis=(0, 1)))
        out.append(("crop3", image[int(xs[0]) + 3:int(xs[-1]) - 3, :, :]))
    a = sitk.GetArrayFromImage(image)
    y, x = np.mgrid[0:a.shape[1], 0:a.shape[2]]
    for radius in (0.35, 0.45):
        ry, rx = radius * a.shape[1], radius * a.shape[2]
        outside = ((y - a.shape[1] / 2) / ry) ** 2 + ((x - a.shape[2] / 2) / rx) ** 2 > 1
        padded = sitk.GetImageFromArray(np.where(outside[None], -2048, a).astype(np.int16))
        padded.CopyInformation(image)
        out.append((f"fov{radius:g}", padded))
    paths = []
    for name, variant in out:
        paths.append(folder / f"{stem_of(path)}_{name}.nii.gz")
        sitk.WriteImage(variant, str(paths[-1]))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volumes", nargs="*", type=Path, help="healthy volumes (and variants of them)")
    ap.add_argument("--runs", type=Path, required=True, help="a v1 CV folder (fold<i>/best.safetensors)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--variants", action="store_true", help="also the shipped model on each volume's variants")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg = TrainConfig.from_dict(json.loads((args.runs / "cv_summary.json").read_text())["config"])
    folds = medseg_folds(args.runs)
    samples = [s for s in load_medseg(args.data, "binary") if s.id in folds]
    rows = {"medseg": [], "healthy": []}
    for fold in sorted(set(folds.values())):
        seg = Segmenter(fold_bundle(args.runs, fold, cfg, "medseg8"), OPTIONS)
        for s in (s for s in samples if folds[s.id] == fold):
            volume = Volume(s.image[None].astype(np.float32), space=MEDSEG8, is_slice=True)
            rows["medseg"] += [{"id": s.id, **c} for c in components(seg, volume, s.target[None] > 0)]
        for path in args.volumes:
            rows["healthy"] += [{"id": f"{stem_of(path)} fold {fold}", **c} for c in components(seg, read_volume(path))]
    shipped = Segmenter(load_bundle("covidseg_multiclass"), OPTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        extra = [v for path in args.volumes for v in variants(path, Path(tmp))] if args.variants else []
        for path in list(args.volumes) + extra:
            rows["healthy"] += [{"id": f"{stem_of(path)} shipped", **c} for c in components(shipped, read_volume(path))]
    args.out.write_text(json.dumps(rows, indent=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
