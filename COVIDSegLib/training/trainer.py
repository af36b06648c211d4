"""Train one 2D segmentation model: augmentation, LR schedule, mixed precision (fp16 on CUDA, bf16
on CPUs with AMX), early stopping on
validation Dice, checkpoint/resume, per-epoch CSV/JSON metrics and a curve plot.

Files in ``out_dir``: ``checkpoint.pt`` (weights-only torch file, resumable), ``best.safetensors``
(best weights so far; without selection, the last epoch's, written at the end), ``metrics.csv`` / ``metrics.json`` (one row per epoch), ``curves.png``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import CovidSegError
from ..inference.predict2d import cpu_has_amx, pick_device
from ..io.files import atomic_path, write_csv_rows, write_json
from ..models.registry import build_model
from ..names import SCHEDULES
from ..preprocess.slice_prep import InputSpec
from ..progress import CancelToken, ProgressCallback, check, no_progress
from .augment import AugmentConfig, augment
from .datasets import check_task, n_classes
from .losses import build_loss, multitask_loss
from .training_data import PreparedSet


@dataclass
class TrainConfig:
    task: str = "binary"
    model: dict = field(default_factory=lambda: {"name": "unet", "base": 16})
    loss: dict = field(default_factory=dict)
    input: dict = field(default_factory=lambda: {"size": 192, "crop_body": True, "clahe": False})
    augment: dict = field(default_factory=lambda: AugmentConfig().to_dict())
    epochs: int = 60
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"      # cosine annealing to min_lr | exponential (lr_decay per epoch) | constant
    lr_decay: float = 0.95
    min_lr: float = 1e-5
    patience: int = 20            # epochs without a better validation Dice before stopping; 0 = never
    seed: int = 0
    device: str = "auto"
    amp: bool = True              # mixed precision where it is faster: fp16 on CUDA, bf16 on AMX CPUs
    multitask: dict = field(default_factory=lambda: {"w_seg": 1.0, "w_cls": 0.5})
    max_steps: int = 0            # stop after this many optimiser steps (smoke tests); 0 = no limit
    crop: int = 0                 # train on random square crops of this size (pixels); 0 = whole input

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.schedule not in SCHEDULES:
            raise CovidSegError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise CovidSegError("epochs, batch size and learning rate must be positive")
        if self.crop < 0 or (self.crop and self.crop > int(self.input.get("size", 0))):
            raise CovidSegError(f"crop {self.crop} must be between 0 and the input size")

    @property
    def n_classes(self) -> int:
        return n_classes(self.task)

    def model_config(self) -> dict:
        return {**self.model, "in_channels": InputSpec.from_dict(self.input).channels, "out_channels": self.n_classes}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise CovidSegError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**known)


@dataclass
class TrainResult:
    model: torch.nn.Module          # holding the best weights
    best_epoch: int
    best_val_dice: float
    history: List[Dict[str, float]]
    stopped_early: bool


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.min_lr)
    if cfg.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)


def _outputs_fn(model):
    """``outputs(x) -> (segmentation logits, classification logit or None)``."""
    if getattr(model, "multitask", False):
        return model.forward_multitask
    return lambda x: (model(x), None)


def _loss_of_outputs(model, cfg: TrainConfig):
    """``loss((seg, cls), target)``: the segmentation loss, plus the head's for multi-task models."""
    seg_loss = build_loss({"tv_weight": getattr(model, "default_tv_weight", 0.0), **cfg.loss})

    def loss(outputs, y):
        seg, cls = outputs
        if cls is None:
            return seg_loss(seg, y)
        return multitask_loss(seg, cls, y, seg_loss=seg_loss, **cfg.multitask)
    return loss


def _as_float(outputs):
    """Model outputs (a tensor, or a tuple with None) in fp32."""
    return tuple(None if o is None else o.float() for o in outputs)


def _dice_per_image(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Foreground (any class > 0) Dice per image; 1 where both are empty."""
    p, t = (pred > 0).flatten(1).float(), (truth > 0).flatten(1).float()
    inter, total = (p * t).sum(1), p.sum(1) + t.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


@torch.no_grad()
def validate(outputs_fn, loss_of, data: PreparedSet, device, batch_size: int) -> Dict[str, float]:
    """Loss and mean infection Dice at the network's input size (fast; CV scores full size);
    one forward pass per batch serves both."""
    losses, dices = [], []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        x, y = data.batch(idx)
        x, y = x.to(device), y.to(device)
        outputs = outputs_fn(x)
        losses.append(float(loss_of(outputs, y)) * len(idx))
        dices.append(_dice_per_image(outputs[0].argmax(1), y).cpu())
    return {"val_loss": sum(losses) / len(data), "val_dice": float(torch.cat(dices).mean())}


class Trainer:
    """``Trainer(cfg, out_dir).fit(train, val)``; ``val`` None trains all epochs without stopping."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, progress: ProgressCallback = no_progress,
                 cancel: Optional[CancelToken] = None):
        self.cfg, self.out = cfg, Path(out_dir)
        self.progress, self.cancel = progress, cancel
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model_config()).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = _scheduler(self.opt, cfg)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.autocast = self.amp or (cfg.amp and self.device.type == "cpu" and cpu_has_amx())
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.aug = AugmentConfig.from_dict(cfg.augment)
        self.outputs_fn = _outputs_fn(self.model)
        self.loss_of = _loss_of_outputs(self.model, cfg)
        self.loss_fn = self._loss  # (x, y) -> the training loss
        self.history: List[Dict[str, float]] = []
        self.best = (-math.inf, 0)  # (val Dice, epoch)
        self.steps = 0

    # ------------------------------------------------------------------ checkpoint
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def _save_checkpoint(self, epoch: int) -> None:
        state = {"epoch": epoch, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                 "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                 "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(), "history": self.history, "best": list(self.best),
                 "steps": self.steps, "config": json.dumps(self.cfg.to_dict(), sort_keys=True)}
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def _resume(self) -> int:
        """Epoch to start from (0 without a matching checkpoint)."""
        if not self.checkpoint_path.exists():
            return 0
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if state["config"] != json.dumps(self.cfg.to_dict(), sort_keys=True):
            raise CovidSegError(f"{self.checkpoint_path} was written with another configuration; "
                                "use a new output folder or delete it.")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"].cpu())  # dropout draws from the global generator
        self.history, self.best, self.steps = state["history"], tuple(state["best"]), state["steps"]
        return int(state["epoch"]) + 1

    @property
    def precision(self) -> str:
        """What the forward passes ran in, for cards."""
        if self.amp:
            return "fp16 autocast (CUDA)"
        return "bf16 autocast (CPU with AMX)" if self.autocast else "fp32"

    # ------------------------------------------------------------------ training
    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model under autocast (CPU: bf16, CUDA: fp16) when enabled; the loss in fp32."""
        with torch.autocast(self.device.type, enabled=self.autocast):
            outputs = self.outputs_fn(x)
        return self.loss_of(_as_float(outputs), y)

    def _train_epoch(self, data: PreparedSet) -> float:
        self.model.train()
        order = epoch_order(data, self.gen)
        bs, total, seen = self.cfg.batch_size, 0.0, 0
        for start in range(0, len(order), bs):
            check(self.cancel)
            idx = order[start:start + bs]
            x, y = data.batch(idx, torch.rand(len(idx), generator=self.gen) < self.aug.clahe, self.gen)
            x, y = augment(x.to(self.device), y.to(self.device), self.aug, self.gen)
            if self.cfg.crop:
                x, y = random_crops(x, y, self.cfg.crop, self.gen)
            loss = self.loss_fn(x, y)
            value = float(loss.detach())  # the step's one device sync: the check and the epoch mean
            if not math.isfinite(value):
                raise CovidSegError("training diverged (loss is NaN/inf); lower the learning rate")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            total += value * len(idx)
            seen += len(idx)
            self.steps += 1
            if self.cfg.max_steps and self.steps >= self.cfg.max_steps:
                break
        return total / max(1, seen)

    def fit(self, train: PreparedSet, val: Optional[PreparedSet] = None, select_best: bool = True) -> TrainResult:
        """Train; with ``select_best`` the weights of the best validation Dice are kept and training
        stops early after ``patience`` epochs without progress. ``select_best=False`` only monitors
        ``val`` (cross-validation, where the validation fold is the test fold) and keeps the last epoch."""
        if len(train) == 0:
            raise CovidSegError("no training samples left after the quality filter")
        self.out.mkdir(parents=True, exist_ok=True)
        start = self._resume()
        monitoring = val is not None and len(val) > 0
        selecting = select_best and monitoring
        stopped = False
        for epoch in range(start, self.cfg.epochs):
            row = {"epoch": epoch, "lr": self.opt.param_groups[0]["lr"], "train_loss": self._train_epoch(train)}
            self.sched.step()
            if monitoring:
                self.model.eval()
                row.update(validate(self.outputs_fn, self.loss_of, val, self.device, self.cfg.batch_size))
            self.history.append(row)
            if selecting and row["val_dice"] > self.best[0]:
                self.best = (row["val_dice"], epoch)
                self._save_best()
            self._save_checkpoint(epoch)
            self._write_logs()
            self.progress(epoch + 1, self.cfg.epochs, _describe(row))
            done_steps = self.cfg.max_steps and self.steps >= self.cfg.max_steps
            stopped = bool(selecting and self.cfg.patience and epoch - self.best[1] >= self.cfg.patience)
            if stopped or done_steps:
                break
        self._write_logs(plot=True)
        if selecting:
            self._load_best()
            return TrainResult(self.model, self.best[1], self.best[0], self.history, stopped)
        self._save_best()  # no selection: the last epoch is the result
        return TrainResult(self.model, len(self.history) - 1, math.nan, self.history, stopped)

    def _save_best(self) -> None:
        with atomic_path(self.out / "best.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}, str(tmp))

    def _load_best(self) -> None:
        path = self.out / "best.safetensors"
        if path.exists():
            self.model.load_state_dict(load_file(str(path), device=str(self.device)))

    def _write_logs(self, plot: bool = False) -> None:
        write_history(self.history, self.out)
        if plot:
            plot_curves(self.history, self.out / "curves.png")


def epoch_order(data: PreparedSet, gen: torch.Generator) -> torch.Tensor:
    """A shuffled epoch: each sample ``meta["repeat"]`` times (1 by default)."""
    repeats = torch.tensor([max(1, int(s.meta.get("repeat", 1))) for s in data.samples])
    index = torch.repeat_interleave(torch.arange(len(data)), repeats)
    return index[torch.randperm(len(index), generator=gen)]


def random_crops(x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator):
    """One random ``size`` x ``size`` window per sample of images (N, C, H, W) and targets (N, H, W)."""
    h, w = x.shape[-2:]
    tops = torch.randint(0, h - size + 1, (len(x),), generator=gen).tolist()
    lefts = torch.randint(0, w - size + 1, (len(x),), generator=gen).tolist()
    xs = [x[i, :, t:t + size, s:s + size] for i, (t, s) in enumerate(zip(tops, lefts))]
    ys = [y[i, t:t + size, s:s + size] for i, (t, s) in enumerate(zip(tops, lefts))]
    return torch.stack(xs).contiguous(), torch.stack(ys).contiguous()


def _describe(row: Dict[str, float]) -> str:
    text = f"epoch {row['epoch'] + 1} loss {row['train_loss']:.3f}"
    return text + (f" val Dice {row['val_dice']:.3f}" if "val_dice" in row else "")


def write_history(history: List[Dict[str, float]], out: Path) -> None:
    write_csv_rows(history, out / "metrics.csv")
    write_json(history, out / "metrics.json")


def plot_curves(history: List[Dict[str, float]], path: Path) -> None:
    """Loss (train, validation) and validation Dice per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = np.array([r["epoch"] + 1 for r in history])
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, [r["train_loss"] for r in history], label="train")
    if history and "val_loss" in history[0]:
        a.plot(epochs, [r["val_loss"] for r in history], label="validation")
        b.plot(epochs, [r["val_dice"] for r in history], color="C2")
    a.set(xlabel="epoch", ylabel="loss", title="Loss")
    a.legend()
    b.set(xlabel="epoch", ylabel="Dice", title="Validation infection Dice", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
