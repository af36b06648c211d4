"""Train an infection model v2 (issue 12) on the union of MedSeg, covid19-ct-seg slices and
lung-free HU slices, in the lung space (or MedSeg's 8-bit window, ``--space medseg8``), with partial labels (``partial_loss``): grouped CV, then
the final model and its bundle. Resumable: re-run the same command (each fold and the final
model keep a checkpoint). CV is reported per source: the targets are measured on MedSeg slices.

    python scripts/train_infection_union.py --medseg ../shared/data/medseg100 \
        --ct-seg ../shared/data/covid19-ct-seg-slices \
        --negative ../shared/data/hu-volumes/totalseg_example_ct_sm.nii.gz:0-15 \
        --negative ../shared/data/hu-volumes/totalseg_dicom_series:0-9 \
        --model '{"name": "unet", "base": 16}' --size 256 --crop 192 --epochs 40 -o runs/union_unet
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.bundle import save_bundle  # noqa: E402
from COVIDSegLib.io.files import write_json  # noqa: E402
from COVIDSegLib.preprocess.slice_prep import InputSpec  # noqa: E402
from COVIDSegLib.training.crossval import cross_validate  # noqa: E402
from COVIDSegLib.training.metrics import summarise  # noqa: E402
from COVIDSegLib.training.train_run import compute_description, keep_clean, make_card, stamped_progress  # noqa: E402
from COVIDSegLib.training.trainer import TrainConfig, Trainer  # noqa: E402
from COVIDSegLib.training.training_data import prepare_set  # noqa: E402
from COVIDSegLib.training.union_data import N_CLASSES, SPACES, rows_of, thin_and_weight, union_samples  # noqa: E402

AUGMENT = {"flip": 0.5, "rotate_deg": 15.0, "scale": [0.8, 1.25], "translate": 0.08, "elastic": 0.3,
           "elastic_alpha": 0.03, "elastic_grid": 6, "window_hu": 60.0, "gamma": [0.75, 1.35], "clahe": 0.0}

NO_INTENSITY_AUG = {"window_hu": 0.0, "gamma": [1.0, 1.0]}  # ablation: geometric augmentation only


def config(args) -> TrainConfig:
    return TrainConfig.from_dict({
        "task": "multiclass", "model": json.loads(args.model), "loss": {"name": "partial"},
        "input": {"size": args.size, "crop_body": args.crop_body, "clahe": False}, "crop": args.crop,
        "augment": {**AUGMENT, **(NO_INTENSITY_AUG if args.no_intensity_aug else {})},
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "schedule": "cosine", "min_lr": args.lr / 100, "patience": 0, "seed": 0, "device": args.device,
        "max_steps": args.max_steps})


def cv_by_source(cv_dir: Path) -> dict:
    """CV figures per source (MedSeg: infection, GGO, consolidation; covid19-ct-seg: infection)."""
    with open(cv_dir / "cv_slices.csv", newline="", encoding="utf-8") as f:
        rows = [{k: (v if k == "id" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
    out = {}
    for source in ("medseg", "ctseg", "negative"):
        part = rows_of(rows, source)
        if part:
            out[source] = summarise([{k: v for k, v in r.items() if k not in ("fold", "id")} for r in part])
    write_json(out, cv_dir / "cv_by_source.json")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--medseg", type=Path, required=True)
    ap.add_argument("--ct-seg", type=Path, help="covid19-ct-seg-slices (omit: MedSeg alone, an ablation)")
    ap.add_argument("--negative", action="append", default=[], help="VOLUME:FIRST-LAST lung-free slices")
    ap.add_argument("--repeat-negatives", type=int, default=2)
    ap.add_argument("--ct-seg-every", type=int, default=1, help="keep every Nth covid19-ct-seg slice of a patient")
    ap.add_argument("--repeat-medseg", type=int, default=1, help="epoch repeats of the MedSeg slices")
    ap.add_argument("--model", default='{"name": "unet", "base": 16}', help="architecture JSON")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--space", choices=SPACES, default="lung",
                    help="lung: everything in the CLAHE lung space; medseg8: MedSeg and negatives in the 8-bit window")
    ap.add_argument("--no-intensity-aug", action="store_true", help="no re-windowing or gamma (ablation)")
    ap.add_argument("--crop-body", action="store_true", help="Otsu body box of each slice, letterboxed to --size")
    ap.add_argument("--crop", type=int, default=0, help="train on random crops of this size (0: whole input)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop each run after this many steps (smoke tests)")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--no-final", action="store_true")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--name", default="covidseg_v2_multiclass")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config(args)
    samples = thin_and_weight(union_samples(args.medseg, args.ct_seg, args.negative, args.repeat_negatives, args.space),
                              args.ct_seg_every, args.repeat_medseg)
    kept, dropped = keep_clean(samples, N_CLASSES + 1, args.out)  # + the UNION target value
    start = time.time()
    report = stamped_progress()
    cv = cross_validate(cfg, kept, args.out / "cv", args.cv, report) if args.cv else None
    by_source = cv_by_source(args.out / "cv") if cv else None
    if cv:
        print(json.dumps({s: {k: round(v["mean"], 4) for k, v in m.items() if k.endswith("dice") or k == "tad"}
                          for s, m in by_source.items()}), flush=True)
    if args.no_final:
        return 0
    trainer = Trainer(cfg, args.out / "final", report)
    result = trainer.fit(prepare_set(kept, InputSpec.from_dict(cfg.input)), None)
    card = make_card(cfg, args.ct_seg or args.medseg, len(kept), dropped, result.history, cv,
                     compute_description(time.time() - start, trainer),
                     space="lung" if args.space == "lung" else "")
    card["training"]["data"] = "union: medseg100 (GGO/consolidation), covid19-ct-seg-slices (infection), lung-free HU slices"
    card["training"]["negatives"] = args.negative
    card["training"]["ct_seg_every"] = args.ct_seg_every
    card["training"]["medseg_repeat"] = args.repeat_medseg
    if cv:
        card["metrics"]["cv_by_source"] = by_source
    print("bundle:", save_bundle(result.model, card, args.out / "bundle", args.name), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
