"""MedSeg slices as lung-model training data, and the CV check of the lungs on them.

MedSeg has no lung masks. Its pseudo lungs are the shipped lung model's lungs (learned + 3D
post-processing) plus the expert's GGO and consolidation (the multi-class masks, which leave the
pleural effusion of the binary masks out), holes filled: the expert says the lesion is lung, the
model says where the rest of the lung is. Used by ``train_lung_model.py --medseg``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
from scipy import ndimage

from COVIDSegLib.io.files import read_volume
from COVIDSegLib.lungs.lung_model import LungModel, load_lung_model
from COVIDSegLib.lungs.segment import segment_lungs
from COVIDSegLib.training.datasets import Sample, load_medseg
from COVIDSegLib.training.trainer import TrainConfig
from COVIDSegLib.training.union_data import slice_in_lung_space

from evaluate_pipeline_cv import fold_bundle, medseg_folds  # isort: skip (a script beside this one)


def lungs_of_slice(png: Path, model) -> np.ndarray:
    return segment_lungs(read_volume(png), model=model).array[0] > 0


def medseg_lung_samples(root: Path, repeat: int = 1, model=None) -> List[Sample]:
    """The MedSeg slices with a multi-class mask, each with its pseudo lungs (module docstring),
    in the lung space; seen ``repeat`` times per epoch; each slice its own group."""
    model = model or load_lung_model("auto")
    out = []
    for s in load_medseg(root, "multiclass"):
        lesion = s.target > 0
        target = ndimage.binary_fill_holes(lungs_of_slice(Path(s.source), model) | lesion)
        image, boxed, _ = slice_in_lung_space(s.image, target.astype(np.uint8))
        out.append(Sample(f"medseg_{s.id}", image, boxed, s.source,
                          {"space": "lung", "group": f"medseg_{s.id}", "source": "medseg", "repeat": repeat}))
    return out


def inside_shares(root: Path, ids, model) -> Dict[str, Dict[str, float]]:
    """Per slice with a finding: share of the expert's finding (binary mask, effusion included) and
    of its GGO + consolidation (multi-class mask) inside the lungs of ``model`` (None: the
    training-free lungs)."""
    out = {}
    for i in ids:
        binary = read_volume(root / "masks" / f"{i}.png").array[0] > 0
        if not binary.any():
            continue
        lungs = lungs_of_slice(root / "images" / f"{i}.png", model)
        row = {"finding": float(lungs[binary].mean())}
        multi = root / "masks_multiclass" / f"{i}.png"
        if multi.exists() and (lesion := read_volume(multi).array[0] > 0).any():
            row["ggo_consolidation"] = float(lungs[lesion].mean())
        out[i] = row
    return out


def summary(per_slice: Dict[str, Dict[str, float]]) -> dict:
    out = {"slices": len(per_slice)}
    for key in ("finding", "ggo_consolidation"):
        values = {i: r[key] for i, r in per_slice.items() if key in r}
        worst = min(values, key=values.get)
        out[key] = {"mean": float(np.mean(list(values.values()))), "median": float(np.median(list(values.values()))),
                    "min": values[worst], "worst_slice": worst,
                    "slices_ge_95": int(sum(v >= 0.95 for v in values.values())), "n": len(values)}
    return out


def medseg_inside_cv(cv: Path, cfg: TrainConfig, root: Path) -> dict:
    """The held-out MedSeg slices' shares inside the lungs of the fold model that did not see them."""
    folds = medseg_folds(cv)
    per_slice = {}
    for fold in sorted(set(folds.values())):
        model = LungModel(fold_bundle(cv, fold, cfg, "lung"))
        per_slice.update(inside_shares(root, [i for i, f in folds.items() if f == fold], model))
    return {"per_slice": per_slice, **summary(per_slice)}


def slice_ids(root: Path) -> List[str]:
    return sorted(p.stem for p in (Path(root) / "images").glob("*.png"))


if __name__ == "__main__":
    import sys
    data = Path(sys.argv[1])
    print(json.dumps(summary(inside_shares(data, slice_ids(data), load_lung_model("auto"))), indent=1))
