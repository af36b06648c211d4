"""A whole training run: data -> quality filter -> (cross-validation) -> final model -> bundle."""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import labels
from ..bundle import save_bundle
from ..errors import CovidSegError
from ..preprocess.intensity import MEDSEG_WINDOW_HI_HU, MEDSEG_WINDOW_LO_HU
from ..preprocess.lung_space import HU_RANGE
from ..preprocess.slice_prep import InputSpec
from ..progress import CancelToken, ProgressCallback, no_progress
from .crossval import cross_validate
from .datasets import TASK_CLASS_NAMES, TASK_LABELS, Sample, filter_quality, load_filtered, write_quality_log
from .trainer import TrainConfig, Trainer
from .training_data import prepare_set


@dataclass
class RunOptions:
    data: Path
    out_dir: Path
    name: str
    cv_folds: int = 0          # 0: no cross-validation
    val_fraction: float = 0.0  # > 0: hold out this share for early stopping of the final model
    cv_summary: Optional[Path] = None  # an earlier CV of the same configuration, for the card


def load_clean(data: Path, task: str, out_dir: Path) -> Tuple[List[Sample], list]:
    kept, dropped = load_filtered(data, task)
    write_quality_log(dropped, len(kept), Path(out_dir) / "quality.json")
    return kept, dropped


def keep_clean(samples: Sequence[Sample], n_classes: int, out_dir: Path) -> Tuple[List[Sample], list]:
    """Quality-filtered samples of a training script, the drops logged in ``out_dir/quality.json``
    and a summary line printed."""
    kept, dropped = filter_quality(samples, n_classes)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_quality_log(dropped, len(kept), Path(out_dir) / "quality.json")
    print(f"{len(kept)} slices ({len(dropped)} dropped), groups: {len({s.meta.get('group') for s in kept})}", flush=True)
    return kept, dropped


def stamped_progress() -> ProgressCallback:
    """Progress lines prefixed by the seconds since this call (training scripts' logs)."""
    start = time.time()
    return lambda done, total, msg: print(f"[{time.time() - start:7.0f}s] {msg}", flush=True)


def split_validation(samples: Sequence[Sample], fraction: float, seed: int) -> Tuple[list, list]:
    if fraction <= 0:
        return list(samples), []
    order = np.random.default_rng(seed + 1).permutation(len(samples))
    n_val = max(1, int(round(fraction * len(samples))))
    return [samples[i] for i in sorted(order[n_val:])], [samples[i] for i in sorted(order[:n_val])]


def compute_description(seconds: float, trainer: Trainer) -> dict:
    device = trainer.device
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU {platform.machine()}"
    return {"device": name, "torch_threads": torch.get_num_threads(), "precision": trainer.precision,
            "seconds": round(seconds, 1)}


def preprocessing_card(cfg: TrainConfig, space: str = "") -> dict:
    """How inputs reach the network, for the card (lung models and ``space`` "lung": ``lung_space``)."""
    common = {"input": InputSpec.from_dict(cfg.input).to_dict(),
              "slices": "2D axial, radiological display (anterior up, patient's right on the image left)"}
    if cfg.task == "lungs" or space == "lung":
        return {"intensity_space": "lung", "hu_clip": list(HU_RANGE),
                "mapping": "per slice: letterbox to 256 px, min-max over the slice, OpenCV CLAHE "
                           "(clip 7, 8x8 tiles), then letterboxed to input.size (COVIDSegLib.preprocess.lung_space)",
                "pixel_size": "not resampled: the whole slice is letterboxed", **common}
    return {"intensity_space": "medseg8", "hu_window": [MEDSEG_WINDOW_LO_HU, MEDSEG_WINDOW_HI_HU],
            "mapping": "HU volumes are mapped linearly from hu_window to 0..255 (docs/INTENSITY.md); "
                       "MedSeg 8-bit slices are used as they are",
            "pixel_size": "not resampled to a fixed size: the Otsu body box is letterboxed to input.size",
            **common}


def make_card(cfg: TrainConfig, data: Path, n_slices: int, dropped: list, history: list,
              cv: Optional[dict], compute: dict, space: str = "") -> dict:
    names = TASK_CLASS_NAMES[cfg.task]
    return {
        "task": cfg.task,
        "architecture": {"name": cfg.model["name"], "config": cfg.model_config()},
        "preprocessing": preprocessing_card(cfg, space),
        "labels": {str(k): {"value": v, "name": names[k], "label_name": labels.NAMES[v]}
                   for k, v in TASK_LABELS[cfg.task].items()},
        "training": {"data": str(Path(data).name), "n_slices": n_slices,
                     "dropped": [{"id": i, "reason": r} for i, r in dropped],
                     "epochs_run": len(history), "config": cfg.to_dict(), "compute": compute,
                     "final_train_loss": history[-1]["train_loss"] if history else None},
        "metrics": {"cv": cv["metrics"] if cv else None, "cv_folds": cv["k"] if cv else 0},
    }


def read_cv_summary(path: Path, cfg: TrainConfig) -> dict:
    """An earlier ``cv_summary.json``; refused unless it was made with this configuration."""
    try:
        summary = json.loads(Path(path).read_text())
        same = TrainConfig.from_dict(summary["config"]).to_dict() == cfg.to_dict()
    except (OSError, ValueError, KeyError, TypeError, CovidSegError) as exc:
        raise CovidSegError(f"Cannot use {path} as a CV summary: {exc}") from None
    if not same:
        raise CovidSegError(f"{path} was made with another training configuration; it cannot describe this model")
    return summary


def run_training(cfg: TrainConfig, opts: RunOptions, progress: ProgressCallback = no_progress,
                 cancel: Optional[CancelToken] = None) -> Tuple[Path, Optional[dict]]:
    """Returns (card path of the trained bundle, CV summary or None)."""
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples, dropped = load_clean(opts.data, cfg.task, out)
    start = time.time()
    cv = cross_validate(cfg, samples, out / "cv", opts.cv_folds, progress, cancel) if opts.cv_folds else None
    if cv is None and opts.cv_summary:
        cv = read_cv_summary(opts.cv_summary, cfg)
    train, val = split_validation(samples, opts.val_fraction, cfg.seed)
    spec = InputSpec.from_dict(cfg.input)
    trainer = Trainer(cfg, out / "final", progress, cancel)
    result = trainer.fit(prepare_set(train, spec, with_alt=trainer.aug.clahe > 0),
                         prepare_set(val, spec) if val else None)
    card = make_card(cfg, opts.data, len(samples), dropped, result.history, cv,
                     compute_description(time.time() - start, trainer))
    return save_bundle(result.model, card, out, opts.name), cv
