"""Synthetic lung opacities for the lung model: dense lung stays lung.

The lung model misses dense dependent consolidation (MedSeg 0023: both lower lobes white),
because dense lung is rare in its training slices and looks like the chest wall. This paints,
inside a slice's lung mask, a dependent (posterior) opacity or scattered patches at the
intensity of the slice's own soft tissue, fully (consolidation) or partly (ground glass), with
soft, irregular edges. The target is left as it is: the painted region is still lung. Only the
lung outline (shape, ribs, pleura) can then tell the network where the lung ends, which is what
it must learn to keep consolidation against the chest wall. Images are in the lung space
(0..1, anterior at row 0), as the lung model's inputs are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _smooth_noise(n: int, h: int, w: int, grid: int, gen: torch.Generator, device) -> torch.Tensor:
    """(n, h, w) smooth random field, about unit spread, from a coarse grid up-sampled."""
    coarse = torch.randn(n, 1, grid, grid, generator=gen).to(device)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[:, 0]


def _rows_in_lung(lung: torch.Tensor) -> torch.Tensor:
    """(n, h, w) row position within each sample's lung extent: 0 at its top, 1 at its bottom."""
    n, h, w = lung.shape
    rows = torch.arange(h, device=lung.device, dtype=torch.float32).view(1, h, 1).expand(n, h, w)
    has = lung.any(2)                                        # (n, h) rows holding lung
    top = torch.where(has, rows[:, :, 0], float(h)).amin(1).view(n, 1, 1)
    bottom = torch.where(has, rows[:, :, 0], -1.0).amax(1).view(n, 1, 1)
    return (rows - top) / (bottom - top).clamp(min=1.0)


def _soft_tissue_level(image: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
    """(n,) median intensity of (n, H, W) ``image`` in the ring just outside each sample's lungs
    (chest wall, mediastinum)."""
    near = F.max_pool2d(lung[:, None].float(), 9, 1, 4)[:, 0] > 0
    ring = near & ~lung
    out = []
    for img, r in zip(image, ring):
        out.append(img[r].median() if r.any() else img.new_tensor(0.8))
    return torch.stack(out)


def paint_opacities(image: torch.Tensor, target: torch.Tensor, probability: float,
                    gen: torch.Generator, lung_class: int = 1) -> torch.Tensor:
    """``image`` (N, C, H, W) with synthetic opacities inside ``target == lung_class`` in a
    random ``probability`` share of the samples that have lung; ``target`` is not changed. Every
    channel is painted alike: a context model's neighbouring slices (an opacity spans them)."""
    n, _, h, w = image.shape
    use = (torch.rand(n, generator=gen) < probability).to(image.device)
    lung = (target == lung_class) & use.view(n, 1, 1)
    if probability <= 0 or not bool(lung.any()):
        return image
    dev = image.device
    u = torch.rand(n, 5, generator=gen).to(dev)
    dependent = u[:, 0] < 0.7                                  # else scattered patches
    depth = 0.1 + 0.45 * u[:, 1]                               # share of the lung's height from the back
    edge = _rows_in_lung(lung) + 0.15 * _smooth_noise(n, h, w, 5, gen, dev)
    patches = _smooth_noise(n, h, w, 8, gen, dev) > (0.6 + 0.8 * u[:, 2]).view(n, 1, 1)
    region = torch.where(dependent.view(n, 1, 1), edge > (1 - depth).view(n, 1, 1), patches) & lung
    soft = F.avg_pool2d(region[:, None].float(), 5, 1, 2)[:, 0] * lung
    alpha = torch.where(u[:, 3] < 0.6, 1.0, 0.3 + 0.4 * u[:, 4]).view(n, 1, 1) * soft
    level = _soft_tissue_level(image[:, image.shape[1] // 2], lung).view(n, 1, 1)
    texture = 0.03 * _smooth_noise(n, h, w, 24, gen, dev)
    fill = (level * (0.9 + 0.1 * torch.rand(n, 1, 1, generator=gen).to(dev)) + texture).clamp(0, 1)
    return image * (1 - alpha[:, None]) + (fill * alpha)[:, None]
