"""Training losses for segmentation logits, built on MONAI's implementations.

Every loss here takes raw network outputs ``logits`` of shape (N, C, H, W) (or (N, C, D, H, W))
and an integer class map ``target`` of shape (N, 1, ...) or (N, ...). Two output layouts:

* C >= 2: multi-class softmax; ``target`` holds class indices 0..C-1 (0 = background).
* C == 1: binary sigmoid; ``target`` > 0 is foreground. ``include_background`` is moot there.

``build_loss(config)`` turns a JSON-able config into ``loss(logits, target) -> scalar``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss, FocalLoss

from ..errors import CovidSegError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_KNOWN_KEYS = {"name", "tv_weight", "include_background", "batch", "lambda_dice", "lambda_ce",
               "gamma", "smooth_nr", "smooth_dr"}


def _target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, ...) or (N, 1, ...) integer map -> (N, 1, ...): long for softmax, float 0/1 for sigmoid."""
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.ndim != logits.ndim or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    target = target.to(logits.device)
    if logits.shape[1] == 1:
        return (target > 0).to(logits.dtype)
    return target.long()


def _dice_kwargs(logits: torch.Tensor, include_background: bool, batch: bool,
                 smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> dict:
    binary = logits.shape[1] == 1
    return dict(include_background=True if binary else include_background, to_onehot_y=not binary,
                sigmoid=binary, softmax=not binary, batch=batch, smooth_nr=smooth_nr, smooth_dr=smooth_dr)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, include_background: bool = False,
                   batch: bool = True, **kw) -> torch.Tensor:
    """MONAI ``DiceLoss`` on softmax (or sigmoid) probabilities against the one-hot target.

    ``batch=True`` pools the whole batch before the Dice ratio, so slices without foreground do
    not each contribute a near-1 loss for a few stray probabilities (MONAI's default is False).
    """
    return DiceLoss(**_dice_kwargs(logits, include_background, batch, **kw))(logits, _target(logits, target))


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, include_background: bool = False,
                 batch: bool = True, lambda_dice: float = 1.0, lambda_ce: float = 1.0, **kw) -> torch.Tensor:
    """MONAI ``DiceCELoss``: ``lambda_dice * Dice + lambda_ce * CE`` (BCE when C == 1).

    ``include_background`` affects the Dice term only; MONAI's cross-entropy always uses all classes.
    """
    fn = DiceCELoss(**_dice_kwargs(logits, include_background, batch, **kw),
                    lambda_dice=lambda_dice, lambda_ce=lambda_ce)
    return fn(logits, _target(logits, target))


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, **_ignored) -> torch.Tensor:
    """MONAI ``FocalLoss`` (softmax focal loss for C >= 2, sigmoid focal loss for C == 1).

    Always over all classes: MONAI drops the background channel *before* its softmax, which for
    a 2-class model would leave a softmax over one channel (constant 1, no gradient). A per-pixel
    loss needs the background term anyway, so ``include_background`` is ignored here.
    """
    binary = logits.shape[1] == 1
    fn = FocalLoss(include_background=True, to_onehot_y=not binary, gamma=gamma, use_softmax=not binary)
    return fn(logits, _target(logits, target))


def tv_loss(prob: torch.Tensor) -> torch.Tensor:
    """2D anisotropic total variation of a probability map ``prob`` (N, C, H, W).

    ``mean over all N*C*H*W pixels of |p[y, x+1] - p[y, x]| + |p[y+1, x] - p[y, x]|`` with forward
    differences and a zero difference past the last column/row (Neumann boundary). A constant map
    gives 0; a vertical 0->1 step across an H x W map gives H / (H * W) = 1 / W per channel.
    """
    if prob.ndim != 4:
        raise ValueError(f"tv_loss expects (N, C, H, W), got shape {tuple(prob.shape)}")
    dx = (prob[..., :, 1:] - prob[..., :, :-1]).abs().sum()
    dy = (prob[..., 1:, :] - prob[..., :-1, :]).abs().sum()
    return (dx + dy) / prob.numel()


def foreground_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities of classes 1..C-1 (C >= 2), or the sigmoid (C == 1)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:]


def build_loss(config: Optional[dict] = None) -> LossFn:
    """Loss factory from a JSON-able config; returns ``loss(logits, target) -> scalar tensor``.

    Keys (defaults): ``name`` ("ce_dice"; or "dice", "focal"), ``tv_weight`` (0.0: adds
    ``tv_weight * tv_loss(foreground probabilities)`` when > 0, 2D logits only),
    ``include_background`` (False; Dice terms), ``batch`` (True; Dice pooled over the batch),
    ``lambda_dice``/``lambda_ce`` (1.0, "ce_dice"; ``lambda_dice`` also "partial": targets with
    ``partial_loss.UNION`` pixels), ``gamma`` (2.0, "focal"),
    ``smooth_nr``/``smooth_dr`` (1e-5, Dice terms). Unknown names or keys raise CovidSegError.
    """
    cfg = dict(config or {})
    unknown = set(cfg) - _KNOWN_KEYS
    if unknown:
        raise CovidSegError(f"unknown loss option(s): {', '.join(sorted(unknown))}")
    name = cfg.pop("name", "ce_dice")
    tv_weight = float(cfg.pop("tv_weight", 0.0))
    if tv_weight < 0:
        raise CovidSegError(f"tv_weight must be >= 0, got {tv_weight}")
    inc_bg = bool(cfg.pop("include_background", False))
    batch = bool(cfg.pop("batch", True))
    smooth = {k: float(cfg.pop(k)) for k in ("smooth_nr", "smooth_dr") if k in cfg}
    if name == "dice":
        def base(lg, tg):
            return soft_dice_loss(lg, tg, inc_bg, batch, **smooth)
    elif name == "ce_dice":
        ld, lc = float(cfg.pop("lambda_dice", 1.0)), float(cfg.pop("lambda_ce", 1.0))

        def base(lg, tg):
            return ce_dice_loss(lg, tg, inc_bg, batch, ld, lc, **smooth)
    elif name == "partial":  # the union of datasets with partial labels (partial_loss)
        from .partial_loss import partial_label_loss
        ld = float(cfg.pop("lambda_dice", 1.0))

        def base(lg, tg):
            return partial_label_loss(lg, tg, ld)
    elif name == "focal":
        gamma = float(cfg.pop("gamma", 2.0))

        def base(lg, tg):
            return focal_loss(lg, tg, gamma=gamma)
    else:
        raise CovidSegError(f"unknown loss name {name!r}; choose dice, ce_dice, focal or partial")

    if tv_weight == 0.0:
        return base

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return base(logits, target) + tv_weight * tv_loss(foreground_probabilities(logits))

    return loss


def slice_has_foreground(target: torch.Tensor) -> torch.Tensor:
    """(N, ...) integer map -> (N,) float: 1.0 where any pixel of the sample is non-zero."""
    return (target.reshape(target.shape[0], -1) > 0).any(dim=1).float()


def multitask_loss(seg_logits: torch.Tensor, cls_logit: torch.Tensor, target: torch.Tensor,
                   w_seg: float = 1.0, w_cls: float = 0.5, seg_loss: Optional[LossFn] = None) -> torch.Tensor:
    """``w_seg * seg_loss(seg_logits, target) + w_cls * BCEWithLogits(cls_logit, has_foreground)``.

    The classification target of each sample is "the slice contains foreground" (any target
    value > 0), derived from ``target``. ``cls_logit`` is (N,) or (N, 1); ``seg_loss`` defaults to
    ``build_loss({})`` (ce_dice).
    """
    seg_loss = seg_loss or build_loss({})
    cls_target = slice_has_foreground(target).to(cls_logit.device, cls_logit.dtype)
    cls = F.binary_cross_entropy_with_logits(cls_logit.reshape(-1), cls_target)
    return w_seg * seg_loss(seg_logits, target) + w_cls * cls
