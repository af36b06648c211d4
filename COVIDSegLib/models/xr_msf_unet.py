"""XR-MSF-UNet: U-Net with multi-branch residual (XR) blocks and MSF attention on the skips.

The encoder/decoder wiring is :class:`~.blocks.UNetSkeleton` (same as ``"unet"``); this
module only supplies the level block (:class:`XRBlock`, replacing every double-conv,
bottleneck and decoder included) and the skip plug-in (:class:`MSFAttention`).

The exact layer widths and orderings below are this project's reading of the
architecture's description (parallel multi-kernel residual block; multi-scale fusion
followed by global and local attention, each refined by spatial attention); they are
documented per class so the numbers can be checked against the code.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from .blocks import ConvBNReLU, SpatialAttention, UNetSkeleton
from .registry import register


class XRBlock(nn.Module):
    """Multi-branch residual block (replaces U-Net's double conv).

    Reading used here, for ``C_in → C`` channels:

    * branch a: 1×1 conv(C_in→C) + BN + ReLU;
    * branch b: 3×3 conv(C_in→C) + BN + ReLU;
    * branch c: "5×5" receptive field as two stacked 3×3 (C_in→C→C), each + BN + ReLU;
    * fusion: concat(a, b, c) (3C) → 1×1 conv(3C→C) + BN (no ReLU yet);
    * shortcut: identity when ``C_in == C``, else 1×1 conv(C_in→C) + BN;
    * output: ReLU(fusion + shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        c = out_channels
        self.branch1 = ConvBNReLU(in_channels, c, 1)
        self.branch3 = ConvBNReLU(in_channels, c, 3)
        self.branch5 = nn.Sequential(ConvBNReLU(in_channels, c, 3), ConvBNReLU(c, c, 3))
        self.fuse = ConvBNReLU(3 * c, c, 1, relu=False)
        self.shortcut = (nn.Identity() if in_channels == c
                         else ConvBNReLU(in_channels, c, 1, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.branch1(x), self.branch3(x), self.branch5(x)], dim=1)
        return self.relu(self.fuse(y) + self.shortcut(x))


class MSFAttention(nn.Module):
    """Multi-scale fusion + global/local attention, a residual plug-in on a skip (C → C).

    Reading used here (``r`` = ``reduction``, hidden width ``h = max(C // r, 8)``):

    1. Multi-scale fusion ``F``: parallel 3×3, 5×5 and 7×7 convs (C→C each, true kernels)
       each + BN + ReLU; concatenated (3C) → 1×1 conv(3C→C) + BN + ReLU.
    2. Global branch: ``w_g = σ(conv1×1(h→C)(ReLU(conv1×1(C→h)(GAP(F)))))`` (one weight
       per channel, SE-style), ``G = SA_g(F · w_g)``.
    3. Local branch: ``w_l = σ(BN(conv1×1(h→C)(ReLU(BN(conv1×1(C→h)(F))))))`` (one weight
       per channel *and* pixel), ``L = SA_l(F · w_l)``.
       ``SA_g`` and ``SA_l`` are two separate :class:`SpatialAttention` modules.
    4. Output: ``x + (α·G + β·L)`` with ``(α, β) = weights`` (default 1:1).
    """

    def __init__(self, channels: int, reduction: int = 4,
                 weights: Tuple[float, float] = (1.0, 1.0)):
        super().__init__()
        c, h = channels, max(channels // reduction, 8)
        self.scales = nn.ModuleList([ConvBNReLU(c, c, k) for k in (3, 5, 7)])
        self.fuse = ConvBNReLU(3 * c, c, 1)
        self.global_att = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, h, 1), nn.ReLU(inplace=True),
            nn.Conv2d(h, c, 1), nn.Sigmoid())
        self.local_att = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c), nn.Sigmoid())
        self.global_spatial = SpatialAttention()
        self.local_spatial = SpatialAttention()
        if len(weights) != 2:
            raise ValueError(f"msf_weights must be two numbers, got {weights!r}")
        self.weights = (float(weights[0]), float(weights[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fuse(torch.cat([branch(x) for branch in self.scales], dim=1))
        g = self.global_spatial(f * self.global_att(f))
        loc = self.local_spatial(f * self.local_att(f))
        return x + self.weights[0] * g + self.weights[1] * loc


@register("xr_msf_unet")
class XRMSFUNet(UNetSkeleton):
    """U-Net skeleton with :class:`XRBlock` at every level and :class:`MSFAttention` skips.

    Args:
        in_channels: input channels (1, or k for 2.5D).
        out_channels: number of classes (logits).
        base: channels at full resolution; level ``i`` has ``base·2^i``.
        msf_levels: skip levels (0 = full resolution … 3 = deepest skip) that get an MSF
            module; the others are plain skips. ``()`` disables MSF entirely.
        msf_weights: ``(α, β)`` weights of the global and local attention branches.
        msf_reduction: bottleneck ratio ``r`` of both attention branches.
        dropout: ``Dropout2d`` probability after the bottleneck (0 = none).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, base: int = 32,
                 msf_levels: Sequence[int] = (0, 1, 2, 3),
                 msf_weights: Tuple[float, float] = (1.0, 1.0), msf_reduction: int = 4,
                 dropout: float = 0.0):
        levels = {int(level) for level in msf_levels}
        if not levels <= {0, 1, 2, 3}:
            raise ValueError(f"msf_levels must be within 0..3, got {sorted(levels)}")
        if len(msf_weights) != 2:
            raise ValueError(f"msf_weights must be two numbers, got {msf_weights!r}")
        weights = (float(msf_weights[0]), float(msf_weights[1]))

        def skip_factory(level: int, channels: int):
            return (MSFAttention(channels, reduction=msf_reduction, weights=weights)
                    if level in levels else None)

        super().__init__(in_channels=in_channels, out_channels=out_channels, base=base,
                         depth=4, block_factory=XRBlock, skip_factory=skip_factory,
                         dropout=dropout)
        self.msf_levels = tuple(sorted(levels))
