"""Random augmentation of a training batch, on whatever device the batch is on.

All randomness comes from one ``torch.Generator`` (seeded, saved in checkpoints), so runs are
repeatable. Spatial: left-right flip, rotation, scaling, translation and an elastic
deformation (a coarse random displacement grid, smoothly up-sampled), applied to image and
target together (target nearest-neighbour). Intensity: a random re-windowing of the MedSeg
HU window by +-``window_hu`` at each end (the uncertainty of the HU mapping, docs/INTENSITY.md),
then gamma. CLAHE on/off is chosen per sample by the data loader (both variants prepared).
For the lung model, synthetic opacities may first be painted inside the lung (``opacity.py``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

from ..preprocess.intensity import MEDSEG_WINDOW_HI_HU, MEDSEG_WINDOW_LO_HU
from .opacity import paint_opacities


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5             # probability of a left-right flip
    rotate_deg: float = 15.0      # uniform in +-rotate_deg
    scale: Tuple[float, float] = (0.85, 1.15)
    translate: float = 0.06       # fraction of the image side
    elastic: float = 0.3          # probability of an elastic deformation
    elastic_alpha: float = 0.03   # displacement sd, fraction of the image side
    elastic_grid: int = 6         # control points per side
    window_hu: float = 40.0       # each window end moves uniformly in +-window_hu
    gamma: Tuple[float, float] = (0.8, 1.25)
    clahe: float = 0.0            # probability a sample is shown in its CLAHE variant
    opacity: float = 0.0          # probability of synthetic opacities in the lung (task lungs: opacity.py)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AugmentConfig":
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in (data or {}).items()}
        return cls(**data)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def _affine(n: int, cfg: AugmentConfig, gen: torch.Generator, device) -> torch.Tensor:
    """(n, 2, 3) sampling matrices: flip, rotation, isotropic scale, translation."""
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, gen, device) * math.pi / 180
    scale = _uniform(n, *cfg.scale, gen, device)
    flip = torch.where(torch.rand(n, generator=gen).to(device) < cfg.flip, -1.0, 1.0)
    shift = _uniform(2 * n, -2 * cfg.translate, 2 * cfg.translate, gen, device).view(n, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    return theta


def _elastic(grid: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n, h, w, _ = grid.shape
    k = cfg.elastic_grid
    coarse = torch.randn(n, 2, k, k, generator=gen).to(grid.device) * (2 * cfg.elastic_alpha)
    use = (torch.rand(n, generator=gen) < cfg.elastic).to(grid.device).view(n, 1, 1, 1)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    return grid + field * use


def spatial(image: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig,
            gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Same random warp of ``image`` (N, C, H, W) float and ``target`` (N, H, W) integer."""
    n = image.shape[0]
    grid = F.affine_grid(_affine(n, cfg, gen, image.device), list(image.shape), align_corners=False)
    if cfg.elastic > 0:
        grid = _elastic(grid, cfg, gen)
    img = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    tgt = F.grid_sample(target[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return img, tgt[:, 0].round().to(target.dtype)


def intensity(image: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Re-window (both ends +-window_hu, in the 0..1 MedSeg scale) then gamma, clipped to [0, 1]."""
    n = image.shape[0]
    width = MEDSEG_WINDOW_HI_HU - MEDSEG_WINDOW_LO_HU
    lo = _uniform(n, -cfg.window_hu, cfg.window_hu, gen, image.device).view(n, 1, 1, 1)
    hi = _uniform(n, -cfg.window_hu, cfg.window_hu, gen, image.device).view(n, 1, 1, 1)
    out = ((image * width - lo) / (width + hi - lo)).clamp(0.0, 1.0)
    gamma = _uniform(n, *cfg.gamma, gen, image.device).view(n, 1, 1, 1)
    return out.pow(gamma)


def augment(image: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig,
            gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    if cfg.opacity > 0:
        image = paint_opacities(image, target, cfg.opacity, gen)
    image, target = spatial(image, target, cfg, gen)
    return intensity(image, cfg, gen), target
