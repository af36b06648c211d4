"""The partial-label loss (issue 12 groundwork): union supervision where only "infection" is known."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from COVIDSegLib.training.partial_loss import UNION, partial_label_loss


def _logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed), requires_grad=True)


def test_with_every_label_known_the_cross_entropy_is_the_usual_one():
    logits = _logits()
    target = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    no_dice = partial_label_loss(logits, target, lambda_dice=0.0)
    assert torch.allclose(no_dice, F.cross_entropy(logits, target), atol=1e-6)


def test_on_union_pixels_only_the_infection_total_matters():
    """Moving probability between GGO and consolidation on a UNION pixel changes nothing."""
    target = torch.full((1, 4, 4), UNION)
    base = torch.zeros(1, 3, 4, 4)
    base[:, 0] = -1.0
    a = base.clone()
    a[:, 1], a[:, 2] = 2.0, 0.0
    b = base.clone()
    total = torch.logsumexp(torch.tensor([2.0, 0.0]), 0)
    b[:, 1] = b[:, 2] = total - torch.log(torch.tensor(2.0))  # same P(GGO) + P(consolidation)
    assert torch.allclose(partial_label_loss(a, target), partial_label_loss(b, target), atol=1e-5)


def test_union_pixels_pull_towards_infection_and_known_ones_towards_their_class():
    logits = _logits(2)
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[0, 2:5, 2:5] = UNION  # a covid19-ct-seg slice: infection, type unknown
    target[1, 1:3, 1:3], target[1, 5:7, 5:7] = 1, 2  # a MedSeg slice: GGO and consolidation
    partial_label_loss(logits, target).backward()
    grad = logits.grad
    assert grad[0, 0, 3, 3] > 0 and grad[0, 1:, 3, 3].sum() < 0  # background down, infection up
    assert grad[1, 1, 1, 1] < 0 and grad[1, 2, 6, 6] < 0  # each known class up where it is
    assert torch.isfinite(grad).all()
