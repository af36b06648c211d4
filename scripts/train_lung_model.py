"""Train the learned lung model (bundle ``covidseg_lungs``): patient-grouped CV, then the final model.

Positives: the covid19-ct-seg-slices lung masks (infection included). Negatives: lung-free axial
slices of real HU volumes (given as VOLUME:FIRST-LAST, LPS slice indices, inferior = 0), with
empty masks, repeated so that the network sees them. Resumable: re-run the same command.

    python scripts/train_lung_model.py --data ../shared/data/covid19-ct-seg-slices \
        --negative ../shared/data/hu-volumes/totalseg_example_ct_sm.nii.gz:0-15 \
        --negative ../shared/data/hu-volumes/totalseg_dicom_series:0-9 -o runs/lungs

The 0.6.0 experiment (measured, not shipped: docs/LUNGS.md) added ``--size 192 --crop 160 --repeat-small 3``.
The 0.17.0 experiment adds ``--context-mm 2``: the slices about 2 mm below and above as input channels (2.5D).
The 0.10.0 experiment adds ``--medseg ../shared/data/medseg100``: MedSeg slices with pseudo lungs
(the shipped lung model's lungs plus the expert's GGO and consolidation), so dense dependent
consolidation is lung to the network; their CV check is the share of the expert's infection inside
the held-out fold model's lungs (``medseg_inside``).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.bundle import save_bundle  # noqa: E402
from COVIDSegLib.io.files import write_json  # noqa: E402
from COVIDSegLib.preprocess.slice_prep import InputSpec  # noqa: E402
from COVIDSegLib.training.crossval import cross_validate  # noqa: E402
from COVIDSegLib.training.datasets import load_ct_seg_slices, lung_free_slices  # noqa: E402
from COVIDSegLib.training.metrics import pooled_group_dice, summarise  # noqa: E402
from COVIDSegLib.training.train_run import compute_description, keep_clean, make_card, stamped_progress  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig, Trainer  # noqa: E402
from COVIDSegLib.training.training_data import prepare_set  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from medseg_pseudo_lungs import medseg_inside_cv, medseg_lung_samples  # noqa: E402

CONFIG = {
    "task": "lungs",
    "model": {"name": "unet", "base": 8},
    "input": {"size": 128, "crop_body": False, "clahe": False},
    # wide zoom and shift: other fields of view, lungs cut by the image edge
    "augment": {"flip": 0.5, "rotate_deg": 15.0, "scale": [0.7, 1.45], "translate": 0.12,
                "elastic": 0.3, "elastic_alpha": 0.03, "elastic_grid": 6, "window_hu": 60.0,
                "gamma": [0.75, 1.35], "clahe": 0.0},
    "epochs": 12, "batch_size": 8, "lr": 2e-3, "schedule": "cosine", "min_lr": 2e-5,
    "patience": 0, "seed": 0, "device": "auto",
}


SMALL_LUNG = 0.06  # lung area below this share of the slice: bases and apices (46 of 1200 slices)


def oversample_small_lungs(samples: list, repeat: int) -> int:
    """Mark lung slices with little lung (bases, apices: rare in the middle-60 % slices) to be
    seen ``repeat`` times per epoch; returns how many were marked."""
    marked = 0
    for s in samples:
        share = float((s.target > 0).mean())
        if 0 < share < SMALL_LUNG:
            s.meta["repeat"] = repeat
            marked += 1
    return marked


def lung_cv_metrics(rows: list, manifest: Optional[dict] = None) -> dict:
    """CV figures from ``cv_slices`` rows: the lung slices (grouped folds), per fold, the
    lung-free negatives (Dice 1 there means an empty prediction) and, with the data's
    ``manifest`` (id -> entry), the per-patient pooled Dice."""
    rows = [{k: (v if k == "id" else float(v)) for k, v in r.items()} for r in rows]  # CSV text
    lung = [r for r in rows if not str(r["id"]).startswith(("neg_", "medseg_"))]
    negatives = [r for r in rows if str(r["id"]).startswith("neg_")]
    folds = sorted({int(r["fold"]) for r in lung})
    return {"lung_slices": summarise([{k: v for k, v in r.items() if k not in ("fold", "id")} for r in lung]),
            "per_fold_dice": {str(f): float(np.mean([float(r["dice"]) for r in lung if int(r["fold"]) == f]))
                              for f in folds},
            "negatives": {"n": len(negatives), "empty_prediction": sum(float(r["dice"]) == 1.0 for r in negatives),
                          "mean_false_positive_share": float(np.mean([1 - float(r["specificity"]) for r in negatives]))
                          if negatives else 0.0},
            **({"per_patient_pooled_dice": pooled_patient_dice(lung, manifest)} if manifest else {})}


def pooled_patient_dice(rows: list, manifest: dict) -> dict:
    """Each patient's Dice over its held-out slices pooled (the manifest gives group and pixels)."""
    per = pooled_group_dice(rows, [manifest[r["id"]]["lung_pixels"] for r in rows],
                            [manifest[r["id"]]["group"] for r in rows])
    per = dict(sorted(per.items(), key=lambda kv: int(kv[0])))
    return {"mean": float(np.mean(list(per.values()))), "median": float(np.median(list(per.values()))),
            "per_patient": per}


def read_manifest(data: Path) -> dict:
    return {m["id"]: m for m in json.loads((Path(data) / "manifest.json").read_text(encoding="utf-8"))}


def card_with_cv(card: dict, cv_dir: Path, data: Path) -> dict:
    """The card's CV metrics from ``cv_dir/cv_slices.csv`` (lung slices only) and the split."""
    with open(cv_dir / "cv_slices.csv", newline="", encoding="utf-8") as f:
        figures = lung_cv_metrics(list(csv.DictReader(f)), read_manifest(data))
    card["metrics"] = {"cv": figures["lung_slices"], "cv_folds": 5,
                       "cv_per_patient_pooled_dice": figures["per_patient_pooled_dice"],
                       "cv_per_fold_dice": figures["per_fold_dice"], "cv_negatives": figures["negatives"],
                       "cv_data": "covid19-ct-seg-slices lung slices; folds grouped by patient"}
    return card


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--negative", action="append", default=[])
    ap.add_argument("--repeat-negatives", type=int, default=4)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--bundle-dir", type=Path, default=Path("Resources/Models"))
    ap.add_argument("--name", default="covidseg_lungs")
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat-small", type=int, default=1, help="epoch repeats of small-lung slices")
    ap.add_argument("--size", type=int, default=CONFIG["input"]["size"], help="network input (px)")
    ap.add_argument("--base", type=int, default=CONFIG["model"]["base"], help="U-Net base width")
    ap.add_argument("--crop", type=int, default=0, help="train on random windows of this size (px)")
    ap.add_argument("--context-mm", type=float, default=0.0,
                    help="> 0: the slices below and above as two more input channels (training/training_data.py)")
    ap.add_argument("--medseg", type=Path, help="add MedSeg slices with pseudo lungs (module docstring)")
    ap.add_argument("--repeat-medseg", type=int, default=3, help="epoch repeats of the MedSeg slices")
    ap.add_argument("--opacity", type=float, default=0.0,
                    help="probability of synthetic opacities painted inside the lung (training/opacity.py)")
    ap.add_argument("--seed", type=int, default=CONFIG["seed"], help="initialisation and augmentation seed")
    ap.add_argument("--no-final", action="store_true", help="cross-validation only")
    ap.add_argument("--card-only", type=Path, help="rewrite this bundle card's CV metrics from OUT/cv and stop")
    args = ap.parse_args()
    if args.card_only:
        card = card_with_cv(json.loads(args.card_only.read_text(encoding="utf-8")), args.out / "cv", args.data)
        write_json(card, args.card_only)
        print(json.dumps(card["metrics"]["cv"]["dice"]), card["metrics"]["cv_per_fold_dice"])
        return 0
    torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict({**CONFIG, "epochs": args.epochs, "crop": args.crop, "seed": args.seed,
                                 "model": {**CONFIG["model"], "base": args.base},
                                 "augment": {**CONFIG["augment"], "opacity": args.opacity},
                                 "input": {**CONFIG["input"], "size": args.size, "context_mm": args.context_mm}})
    samples = load_ct_seg_slices(args.data, "lungs")
    for spec in args.negative:
        samples += lung_free_slices(spec, args.repeat_negatives)
    if args.medseg:
        samples += medseg_lung_samples(args.medseg, args.repeat_medseg)
    kept, dropped = keep_clean(samples, 2, args.out)
    if args.repeat_small > 1:
        print(f"small-lung slices seen {args.repeat_small}x per epoch: {oversample_small_lungs(kept, args.repeat_small)}")
    start = time.time()
    report = stamped_progress()
    cv = cross_validate(cfg, kept, args.out / "cv", args.cv, report) if args.cv else None
    if cv:
        print(json.dumps({k: v for k, v in cv["metrics"].items() if "dice" in k}), flush=True)
        if args.medseg:
            write_json(medseg_inside_cv(args.out / "cv", cfg, args.medseg), args.out / "cv" / "medseg_inside.json")
    if args.no_final:
        return 0
    trainer = Trainer(cfg, args.out / "final", report)
    result = trainer.fit(prepare_set(kept, InputSpec.from_dict(cfg.input)), None)
    card = make_card(cfg, args.data, len(kept), dropped, result.history, cv,
                     compute_description(time.time() - start, trainer))
    card["training"]["negatives"] = args.negative
    card["training"]["small_lung_repeat"] = args.repeat_small
    if args.medseg:
        card["training"]["medseg_pseudo_lungs"] = {"data": str(args.medseg), "repeat": args.repeat_medseg}
    card["training"]["cv_split"] = "grouped by patient (manifest group); negatives by volume"
    if cv:
        card = card_with_cv(card, args.out / "cv", args.data)
    print("bundle:", save_bundle(result.model, card, args.bundle_dir, args.name), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
