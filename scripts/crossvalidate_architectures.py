#!/usr/bin/env python3
"""5-fold cross-validation of all seven architectures on the 52 MedSeg slices (binary infection).

Resumable (each fold keeps a checkpoint); results per architecture in OUT/<name>/cv_summary.json
and cv_slices.csv. ``scripts/models_table.py`` turns them into docs/MODELS.md.

    python scripts/crossvalidate_architectures.py --data ../shared/data/medseg100 --out runs/cv
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

from COVIDSegLib.training.crossval import cross_validate
from COVIDSegLib.training.datasets import load_filtered
from COVIDSegLib.training.trainer import TrainConfig

# Reduced widths so that all seven fit the CPU budget; the same for every fold.
ARCHITECTURES = {
    "unet": {"name": "unet", "base": 16},
    "tv_unet": {"name": "tv_unet", "base": 16},
    "xr_msf_unet": {"name": "xr_msf_unet", "base": 16},
    "unetpp": {"name": "unetpp", "features": [16, 16, 32, 64, 128, 16]},
    "resnet18_unet": {"name": "resnet18_unet", "width": 32},
    "cbam_pspnet": {"name": "cbam_pspnet", "width": 32},
    "resnet34_scse_mt": {"name": "resnet34_scse_mt", "width": 32},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medseg100"))
    ap.add_argument("--out", type=Path, default=Path("runs/cv"))
    ap.add_argument("--task", default="binary")
    ap.add_argument("--archs", default=",".join(ARCHITECTURES))
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    samples, dropped = load_filtered(args.data, args.task)
    logging.info("%d slices kept, %d dropped %s", len(samples), len(dropped), dropped)
    for name in args.archs.split(","):
        cfg = TrainConfig(task=args.task, model=ARCHITECTURES[name], epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr,
                          input={"size": args.size, "crop_body": True, "clahe": False})
        start = time.time()
        last = [0.0]

        def report(done, total, message, name=name):
            if time.time() - last[0] > 30 or done == total:
                last[0] = time.time()
                logging.info("%s %d/%d %s", name, done, total, message)

        summary = cross_validate(cfg, samples, args.out / name, args.folds, report)
        compute = {"seconds": round(time.time() - start, 1), "device": _device(), "threads": torch.get_num_threads()}
        (args.out / name / "compute.json").write_text(json.dumps(compute))
        m = summary["metrics"]
        logging.info("%s done in %.0f s: Dice %.3f +- %.3f", name, compute["seconds"], m["dice"]["mean"], m["dice"]["sd"])
    return 0


def _device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    sys.exit(main())
