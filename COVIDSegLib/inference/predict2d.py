"""Run a 2D model on prepared slices: devices, precision, batched probabilities, class decisions."""
from __future__ import annotations

from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import CovidSegError
from ..names import DEFAULT_DECISION, LESION_THRESHOLD, PRECISIONS
from ..preprocess.slice_prep import SliceGeometry, restore


def pick_device(name: str = "auto") -> torch.device:
    """auto (CUDA when available, else the CPU), cpu, cuda or cuda:N; anything else, or CUDA on a
    machine without it, is a one-line project error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = str(name).partition(":")
    if kind not in ("cpu", "cuda") or (index and not (kind == "cuda" and index.isdigit())):
        raise CovidSegError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise CovidSegError("CUDA is not available on this machine (no NVIDIA GPU, or a CPU-only PyTorch): "
                            "use --device cpu or auto, or install a CUDA build of PyTorch")
    if index and int(index) >= torch.cuda.device_count():
        raise CovidSegError(f"no GPU {name}: this machine has {torch.cuda.device_count()}")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (with them, oneDNN runs bf16 convolutions ~2.5x faster than fp32)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    """``auto``: bf16 autocast on CUDA and on CPUs with AMX, fp32 elsewhere; ``fp32`` / ``bf16``: as named.
    With AVX512-BF16 alone the networks run ~2x faster in bf16 too, but a whole ``segment`` process only
    7-12 % (docs/training_logs/bf16_avx512): ``auto`` keeps fp32 there."""
    if precision not in PRECISIONS:
        raise CovidSegError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_amx())


GPU_BATCH = 16
CPU_BATCH_ACTIVATIONS = 2_400_000  # first-layer values per CPU batch (~10 MB): larger batches spill the caches


def auto_batch_size(device: torch.device, card: dict) -> int:
    """Slices per forward pass: ``GPU_BATCH`` on a GPU; on a CPU the largest power of two (at most
    16) whose first-layer activations (width x size^2 per slice) stay within ``CPU_BATCH_ACTIVATIONS``:
    8 for the 128 px infection and 192 px lung networks, 4 for the 256 px one, 15-40 % faster than 16
    (docs/BENCHMARKS.md, 0.21.0)."""
    if device.type != "cpu":
        return GPU_BATCH
    size = int(card["preprocessing"]["input"]["size"])
    width = int(card.get("architecture", {}).get("config", {}).get("base", 16))
    fit = max(1, CPU_BATCH_ACTIVATIONS // (width * size * size))
    return min(GPU_BATCH, 1 << (fit.bit_length() - 1))


def batch_probabilities(model: nn.Module, x: torch.Tensor, device: torch.device, tta_flip: bool = False,
                        bf16: Optional[bool] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """One batch (N, 1, S, S) -> softmax maps (N, C, S, S) and the multi-task head's
    "slice contains infection" probability (N,), or None for single-task models.
    Channels-last input; bf16 autocast as ``use_bf16(device)`` says unless ``bf16`` is given;
    ``tta_flip`` averages with the mirrored image."""
    x = x.to(device, memory_format=torch.channels_last)
    bf16 = use_bf16(device) if bf16 is None else bf16
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if getattr(model, "multitask", False):
            seg, logit = model.forward_multitask(x)
            head = torch.sigmoid(logit.float().reshape(-1)).cpu().numpy()
        else:
            seg, head = model(x), None
        prob = torch.softmax(seg.float(), dim=1)
        if tta_flip:
            prob = (prob + torch.softmax(model(x.flip(-1)).float(), dim=1).flip(-1)) / 2
    return prob.cpu().numpy(), head


def forward_probabilities(model: nn.Module, images: torch.Tensor, device: torch.device,
                          batch_size: int = 8, bf16: Optional[bool] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``batch_probabilities`` over all ``images`` in batches of ``batch_size``."""
    model.eval()
    return join_batches([batch_probabilities(model, images[i:i + batch_size], device, bf16=bf16)
                         for i in range(0, len(images), batch_size)])


def join_batches(parts: List[Tuple[np.ndarray, Optional[np.ndarray]]]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Concatenate (probabilities, head) pairs of consecutive batches."""
    heads = [h for _, h in parts if h is not None]
    return np.concatenate([p for p, _ in parts]), (np.concatenate(heads) if heads else None)


def full_size(probs: np.ndarray, geometries: Sequence[SliceGeometry]) -> List[np.ndarray]:
    """Each (C, S, S) map back on its full slice."""
    return [restore(p, g) for p, g in zip(probs, geometries)]


def class_indices(prob: np.ndarray, decision: str = DEFAULT_DECISION,
                  threshold: float = LESION_THRESHOLD) -> np.ndarray:
    """Class index per pixel of probabilities (C, H, W): the most probable class ("argmax"), or
    ("union") a lesion where the lesion classes together reach ``threshold``, of the more probable
    lesion class. Two-class models always take the most probable class."""
    if decision == "argmax" or prob.shape[0] <= 2:
        return prob.argmax(axis=0)
    index = 1 + prob[1:].argmax(axis=0)
    index[prob[0] > 1.0 - threshold] = 0
    return index
