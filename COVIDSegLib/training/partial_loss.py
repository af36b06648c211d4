"""A loss for training on the union of datasets with partial labels (issue 12): MedSeg slices
say GGO (class 1) or consolidation (class 2); covid19-ct-seg slices only say "infection". Their
infection pixels carry ``UNION``: the cross-entropy there is that of the infection union (the
log of P(GGO) + P(consolidation)), so the split is left to what the fully labelled slices teach.

``partial_label_loss(logits, target)``: logits (N, 3, ...) for background, GGO, consolidation;
target (N, ...) or (N, 1, ...) with 0, 1, 2 or ``UNION``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

UNION = 3  # "GGO or consolidation, not known which"
_EPS = 1e-5


def _dice_loss(prob: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice pooled over the batch."""
    return 1.0 - (2.0 * (prob * truth).sum() + _EPS) / (prob.sum() + truth.sum() + _EPS)


def partial_label_loss(logits: torch.Tensor, target: torch.Tensor, lambda_dice: float = 1.0) -> torch.Tensor:
    """Cross-entropy over each pixel's allowed classes + ``lambda_dice`` x mean of the Dice losses
    of the infection union (every sample) and of GGO and consolidation (fully labelled samples)."""
    if logits.shape[1] != 3:
        raise ValueError(f"partial_label_loss needs 3 classes (background, GGO, consolidation), got {logits.shape[1]}")
    if target.ndim == logits.ndim:
        target = target[:, 0]
    target = target.to(logits.device).long()
    log_p = F.log_softmax(logits.float(), dim=1)
    known = torch.where(target == UNION, torch.zeros_like(target), target)
    allowed = F.one_hot(known, 3).movedim(-1, 1).bool()
    union = (target == UNION).unsqueeze(1)
    allowed = allowed | (union & torch.tensor([False, True, True], device=logits.device).view(1, 3, *[1] * (logits.ndim - 2)))
    ce = -torch.logsumexp(log_p.masked_fill(~allowed, float("-inf")), dim=1).mean()
    prob = log_p.exp()
    dice = [_dice_loss(prob[:, 1] + prob[:, 2], (target > 0).float())]
    full = ~(target == UNION).reshape(target.shape[0], -1).any(dim=1)  # samples with the split known
    if full.any():
        dice += [_dice_loss(prob[full, c], (target[full] == c).float()) for c in (1, 2)]
    return ce + lambda_dice * torch.stack(dice).mean()
