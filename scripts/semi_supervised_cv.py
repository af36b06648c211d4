#!/usr/bin/env python3
"""Semi-supervised pseudo-labels, cross-validated: does adding pseudo-labelled unlabeled slices
help the v1 multi-class model on held-out MedSeg slices?

For each fold of a finished MedSeg CV run (``--runs``: ``fold<i>/best.safetensors``,
``cv_slices.csv``, ``cv_summary.json``), the fold's model labels every ``--every``-th slice of
each unlabeled volume through the whole ``segment`` chain (learned lungs, 5 mm margin, the
network's GGO/consolidation); a new model of the same configuration is trained from scratch on
the fold's training slices plus those pseudo-labelled slices, and written where
``scripts/evaluate_pipeline_cv.py --runs OUT/cv`` scores it on the held-out fold. The held-out
slices never reach the pseudo-labels or the training. Resumable: finished folds are skipped, an
interrupted one resumes from its checkpoint.

The unlabeled crops (Inf-Net's COVID-19-CT-Seg JPEGs) are stored transposed and in their own 8-bit
windows; each is brought back to radiological display (transposed; the Coronacases ones, whose spine
is then at the top, also flipped up-down: looked at on one middle slice of every volume) and
histogram-matched (SimpleITK) to the MedSeg training slices' lung boxes.

    python scripts/semi_supervised_cv.py --runs runs/v1cv/cv --every 15 -o runs/semi
    python scripts/evaluate_pipeline_cv.py --runs runs/semi/cv --margins 5 --classes density,model
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_pipeline_cv import fold_bundle, medseg_folds  # noqa: E402

from COVIDSegLib.inference.segmenter import InferenceOptions, Segmentation, Segmenter  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig  # noqa: E402
from COVIDSegLib.volume import MEDSEG8, Volume  # noqa: E402

LAYOUT_DIRS = ("images", "masks", "masks_multiclass")


def unlabeled_slices(folder: Path, every: int) -> list:
    """Every ``every``-th slice of each volume (names end in ``_<slice>.jpg``), in slice order."""
    volumes: dict = {}
    for path in folder.glob("*.jpg"):
        volume, number = path.stem.rsplit("_", 1)
        volumes.setdefault(volume, []).append((int(number), path))
    return [p for v in sorted(volumes) for _, p in sorted(volumes[v])[::every]]


def read_crop(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("L")).T
    return image[::-1] if "coronacases" in path.name else image


def lung_box_pixels(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    """The slice's pixels inside the bounding box of the lungs the pipeline finds (labels 1-4)."""
    labels = segment_slice(segmenter, image).labels.array[0]
    rows, cols = np.nonzero(labels)
    return image[rows.min():rows.max() + 1, cols.min():cols.max() + 1].ravel()


def segment_slice(segmenter: Segmenter, image: np.ndarray) -> Segmentation:
    return segmenter.segment(Volume(image[None].astype(np.float32), space=MEDSEG8, is_slice=True))


def pseudo_label(segmenter: Segmenter, image: np.ndarray, union_threshold: float) -> np.ndarray:
    """0 / 1 GGO / 2 consolidation. Without a threshold: the ``segment`` labels. With one: infection
    wherever the network's GGO + consolidation probability reaches it inside the report's lungs or
    its infection (more sensitive than the arg-max), the class by the larger of the two."""
    result = segment_slice(segmenter, image)
    labels = result.labels.array[0]
    if union_threshold <= 0:
        return np.select([labels == 3, labels == 4], [1, 2], 0)
    ggo, cons = (result.probabilities[v][0].astype(np.float32) / 255 for v in (3, 4))
    infected = (ggo + cons >= union_threshold) & (labels > 0)
    return np.where(infected, np.where(cons > ggo, 2, 1), 0)


def match_histogram(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    matcher = sitk.HistogramMatchingImageFilter()
    matcher.SetNumberOfHistogramLevels(256)
    matcher.SetNumberOfMatchPoints(15)
    matcher.ThresholdAtMeanIntensityOff()
    out = matcher.Execute(sitk.GetImageFromArray(image.astype(np.float32)),
                          sitk.GetImageFromArray(reference.astype(np.float32)[None]))
    return np.clip(np.rint(sitk.GetArrayFromImage(out)), 0, 255).astype(np.uint8)


def write_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def build_fold_data(segmenter: Segmenter, args, train_ids: list, reference: np.ndarray, data: Path) -> int:
    """MedSeg-layout folder: the fold's training slices as they are, plus the crops labelled by the
    fold's ``segmenter``."""
    for name in LAYOUT_DIRS:
        for i in train_ids:
            source = args.medseg / name / f"{i}.png"
            if source.exists():
                (data / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, data / name / source.name)
    n = 0
    for path in unlabeled_slices(args.unlabeled, args.every):
        image = match_histogram(read_crop(path), reference)
        multi = pseudo_label(segmenter, image, args.union_threshold)
        stem = "u_" + path.stem
        write_png(image, data / "images" / f"{stem}.png")
        write_png(multi > 0, data / "masks" / f"{stem}.png")
        write_png(multi, data / "masks_multiclass" / f"{stem}.png")
        n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--medseg", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--unlabeled", type=Path, default=Path("../shared/data/covid19-ct-seg-unlabeled"))
    ap.add_argument("--runs", type=Path, default=Path("runs/v1cv/cv"), help="the finished MedSeg CV run")
    ap.add_argument("--every", type=int, default=15, help="take every N-th slice of each unlabeled volume")
    ap.add_argument("--union-threshold", type=float, default=0.0,
                    help="pseudo infection where GGO + consolidation probability >= this (default: the segment labels)")
    ap.add_argument("--folds", default="", help="comma-separated fold numbers (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    summary = json.loads((args.runs / "cv_summary.json").read_text())
    cfg = TrainConfig.from_dict(summary["config"])
    folds = medseg_folds(args.runs)
    wanted = [int(f) for f in args.folds.split(",")] if args.folds else sorted(set(folds.values()))
    (args.out / "cv").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.runs / "cv_slices.csv", args.out / "cv" / "cv_slices.csv")
    shutil.copyfile(args.runs / "cv_summary.json", args.out / "cv" / "cv_summary.json")
    config = args.out / "config_used.json"
    config.write_text(json.dumps(summary["config"], indent=1))
    for fold in wanted:
        done = args.out / "cv" / f"fold{fold}" / "best.safetensors"
        if done.exists():
            continue
        train_ids = sorted(i for i, f in folds.items() if f != fold)
        data, run = args.out / f"fold{fold}" / "data", args.out / f"fold{fold}" / "train"
        if not (data / "done").exists():
            segmenter = Segmenter(fold_bundle(args.runs, fold, cfg, "medseg8"),
                                  InferenceOptions(device="cpu", lung_margin_mm=5.0, min_component_mm3=10.0,
                                                   classes="model", keep_probabilities=True))
            reference = np.concatenate([lung_box_pixels(segmenter, np.asarray(Image.open(args.medseg / "images" / f"{i}.png")))
                                        for i in train_ids])
            n = build_fold_data(segmenter, args, train_ids, reference, data)
            (data / "done").write_text(f"{len(train_ids)} MedSeg + {n} pseudo-labelled slices\n")
        print(f"fold {fold}: {(data / 'done').read_text().strip()}", flush=True)
        subprocess.run([sys.executable, "-m", "COVIDSegLib", "train", str(data), "--config", str(config),
                        "--cv", "0", "--name", "semi", "-o", str(run), "-q"], check=True)
        done.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "semi.safetensors", done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
