"""Reusable building blocks for the U-Net family (U-Net, TV-U-Net, XR-MSF-UNet).

The encoder/decoder wiring lives once, in :class:`UNetSkeleton`; an architecture only
says which block sits at each level (``block_factory``) and what, if anything, is
applied to the skip connections (``skip_factory``).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

#: ``block_factory(in_channels, out_channels) -> module`` mapping (N, in, H, W) to (N, out, H, W).
BlockFactory = Callable[[int, int], nn.Module]
#: ``skip_factory(level, channels) -> module or None``; ``None`` leaves that skip untouched.
SkipFactory = Callable[[int, int], Optional[nn.Module]]


class ConvBNReLU(nn.Sequential):
    """``k×k`` convolution ("same" padding, no bias) → BatchNorm → ReLU (optional)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 relu: bool = True):
        layers: list = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """The classic U-Net level: two (3×3 conv → BN → ReLU)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(ConvBNReLU(in_channels, out_channels, 3),
                         ConvBNReLU(out_channels, out_channels, 3))


class Up(nn.Module):
    """Decoder step: 2×2 transposed-conv up-sampling, concatenation with the skip, block.

    ``in_channels`` (deeper level) is up-sampled to ``skip_channels`` channels, concatenated
    with the skip features (``2·skip_channels`` in total) and passed through
    ``block_factory(2·skip_channels, out_channels)``. When the skip is larger than the
    up-sampled map (odd sizes) the latter is zero-padded bottom/right to match.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 block_factory: BlockFactory = DoubleConv):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        self.block = block_factory(2 * skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:
            x = F.pad(x, (0, dw, 0, dh))
        return self.block(torch.cat([skip, x], dim=1))


class UNetSkeleton(nn.Module):
    """Generic 2D U-Net: ``depth`` max-pool down-samplings, transposed-conv up-sampling.

    Level ``i`` (0 = full resolution, ``depth`` = bottleneck) has ``base·2^i`` channels.
    Encoder: ``block(in, c0)``, then for each level ``maxpool → block(c_{i-1}, c_i)``.
    Each encoder output ``i < depth`` goes through ``skip_factory(i, c_i)`` (identity when
    it returns ``None``) before it is concatenated in the decoder. Decoder:
    ``Up(c_{i+1}, c_i, c_i)`` per level; head: 1×1 conv to ``out_channels`` logits.
    ``dropout`` > 0 adds ``Dropout2d`` after the bottleneck block (as in the original U-Net).

    Inputs must be divisible by ``2^depth`` for exact shapes (``size_multiple``;
    ``build_model`` pads to it); other sizes still work via padding in :class:`Up`.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, base: int = 32,
                 depth: int = 4, block_factory: BlockFactory = DoubleConv,
                 skip_factory: Optional[SkipFactory] = None, dropout: float = 0.0):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or base < 1 or depth < 1:
            raise ValueError("in_channels, out_channels, base and depth must all be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        ch = [base * 2 ** i for i in range(depth + 1)]
        self.depth = depth
        self.size_multiple = 2 ** depth
        self.encoder = nn.ModuleList(
            [block_factory(in_channels, ch[0])]
            + [block_factory(ch[i - 1], ch[i]) for i in range(1, depth + 1)])
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        skips = [skip_factory(i, ch[i]) if skip_factory is not None else None
                 for i in range(depth)]
        self.skips = nn.ModuleList([s if s is not None else nn.Identity() for s in skips])
        # decoder[i] produces level i from level i+1
        self.decoder = nn.ModuleList(
            [Up(ch[i + 1], ch[i], ch[i], block_factory) for i in range(depth)])
        self.head = nn.Conv2d(ch[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) → logits (N, out_channels, H, W)."""
        feats = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        x = self.dropout(feats.pop())
        for i in reversed(range(self.depth)):
            x = self.decoder[i](x, self.skips[i](feats[i]))
        return self.head(x)


class SpatialAttention(nn.Module):
    """CBAM-style spatial attention: ``x · σ(conv7×7([mean_c(x), max_c(x)]))``."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(desc))
