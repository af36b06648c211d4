"""UNet++ (Zhou et al. 2018) — MONAI's ``BasicUNetPlusPlus`` in 2D, wrapped to return one Tensor.

Not a re-implementation: the network is ``monai.networks.nets.BasicUNetPlusPlus`` with
``spatial_dims=2`` and MONAI's own defaults (instance norm, LeakyReLU 0.1, transposed-conv
up-sampling). The wrapper only adapts the output:

* ``deep_supervision=False`` (default): MONAI returns ``[logits of node X0,4]``; the
  three unused side heads (``final_conv_0_1..0_3``) are replaced by ``nn.Identity`` so the
  model has no parameters that never receive a gradient.
* ``deep_supervision=True``: ``forward`` returns the *mean* of the four heads' logits
  (the paper's "accurate mode"); :meth:`UNetPlusPlus.forward_all` returns the list of
  the four heads for a trainer that wants one loss per head.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .registry import register


@register("unetpp")
class UNetPlusPlus(nn.Module):
    """2D UNet++ with a single-Tensor output.

    Args:
        in_channels: input channels (1, or k for 2.5D).
        out_channels: number of classes (logits).
        features: MONAI's six widths: five encoder levels, then the last up-sampling.
        deep_supervision: keep and average all four nested heads (see module docstring).
        dropout: dropout ratio inside MONAI's conv blocks.

    ``forward((N, in_channels, H, W)) -> (N, out_channels, H, W)``; H, W multiples of 16.
    """

    size_multiple: int = 16

    def __init__(self, in_channels: int = 1, out_channels: int = 2,
                 features: Sequence[int] = (32, 32, 64, 128, 256, 32),
                 deep_supervision: bool = False, dropout: float = 0.0):
        super().__init__()
        features = tuple(int(f) for f in features)
        if len(features) != 6:
            raise ValueError(f"features must be six integers, got {features!r}")
        self.deep_supervision = bool(deep_supervision)
        from monai.networks.nets import BasicUNetPlusPlus  # here: importing MONAI costs a process ~1 s
        self.net = BasicUNetPlusPlus(spatial_dims=2, in_channels=in_channels,
                                     out_channels=out_channels, features=features,
                                     deep_supervision=self.deep_supervision, dropout=dropout)
        if not self.deep_supervision:
            for name in ("final_conv_0_1", "final_conv_0_2", "final_conv_0_3"):
                setattr(self.net, name, nn.Identity())

    def forward_all(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Logits of every active head (four with deep supervision, else one)."""
        return list(self.net(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) → logits (N, out_channels, H, W)."""
        outputs = self.net(x)
        if len(outputs) == 1:
            return outputs[0]
        return torch.stack(list(outputs), dim=0).mean(dim=0)
