"""Run a 2D model on prepared slices and score full-size predictions against their masks."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .datasets import TASK_CLASS_NAMES
from .metrics import binary_metrics, threshold_averaged_dice
from .slice_prep import SliceGeometry, restore


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def forward_probabilities(model: nn.Module, images: torch.Tensor, device: torch.device,
                          batch_size: int = 8) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Softmax maps (N, C, S, S) of (N, 1, S, S) inputs, plus the multi-task head's
    "slice contains infection" probability (N,) when the model has one (else None)."""
    model.eval()
    probs, cls = [], []
    multitask = bool(getattr(model, "multitask", False))
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            if multitask:
                seg, logit = model.forward_multitask(x)
                cls.append(torch.sigmoid(logit.float().reshape(-1)).cpu().numpy())
            else:
                seg = model(x)
        probs.append(torch.softmax(seg.float(), dim=1).cpu().numpy())
    return np.concatenate(probs), (np.concatenate(cls) if multitask else None)


def full_size(probs: np.ndarray, geometries: Sequence[SliceGeometry]) -> List[np.ndarray]:
    """Each (C, S, S) map back on its full slice."""
    return [restore(p, g) for p, g in zip(probs, geometries)]


def score_slice(prob: np.ndarray, truth: np.ndarray, task: str) -> Dict[str, float]:
    """Metrics of one full-size probability map (C, y, x) against a class-index mask.

    Keys: ``<metric>`` for infection (any class > 0), ``<class>_<metric>`` per class in a
    multi-class task, and ``tad`` (Inf-Net's threshold-averaged Dice of the infection map).
    """
    pred = prob.argmax(axis=0)
    row = binary_metrics(pred > 0, truth > 0)
    row["tad"] = threshold_averaged_dice(1.0 - prob[0], truth > 0)
    if len(TASK_CLASS_NAMES[task]) > 1:
        for index, name in TASK_CLASS_NAMES[task].items():
            for k, v in binary_metrics(pred == index, truth == index).items():
                row[f"{name}_{k}"] = v
    return row
