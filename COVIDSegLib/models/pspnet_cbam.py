"""PSPNet on a dilated ResNet with CBAM attention ("cbam_pspnet").

Architecture (input (N, C_in, H, W), H and W multiples of 32 — the registry pads):

1. Stem of the ResNet (7×7 stride-2 conv + BN + ReLU, 1/2 resolution), then **CBAM #1 on the
   stem output** — after the stem's ReLU and before the max-pool that opens layer 1. (CBAM
   on the raw 1-channel CT slice would make its channel attention meaningless, so "CBAM
   before the backbone" means on the first feature map the backbone computes.)
2. Dilated ResNet-18 (``depth=34`` allowed), output stride 8: layers 3 and 4 use dilation 2
   and 4 instead of stride 2, so layer 4 gives ``8·width`` channels at 1/8 resolution.
3. **CBAM #2 on the layer-4 output** (after the backbone).
4. Pyramid pooling module, bins 1, 2, 3, 6: adaptive average pool → 1×1 conv (``C/4``
   channels) + BN + ReLU per bin, bilinear up-sampling to the feature size, concatenation
   with the features (2·C channels). The 1-bin branch has **no BN** (a 1×1 conv with bias +
   ReLU): its map holds one value per channel and sample, so BatchNorm there would fail in
   training at batch size 1 and be noisy at small batches; bins ≥ 2 keep BN.
5. 3×3 conv (C/2 channels) + BN + ReLU, dropout (``Dropout2d``, p=0.1), 1×1 classifier,
   logits bilinearly up-sampled ×8 to the input size.

CBAM (Woo et al., 2018): channel attention = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))) with
a shared 2-layer MLP of reduction ``r`` (16), then spatial attention = sigmoid(conv7×7(
[mean_c(x), max_c(x)])); each multiplies the features.

Trained with cross-entropy + soft Dice (the combined loss lives in ``COVIDSegLib.training.losses``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SpatialAttention  # the CBAM spatial gate, shared with XR-MSF-UNet
from .registry import register
from .resnet import ResNetEncoder

__all__ = ["ChannelAttention", "SpatialAttention", "CBAM", "PyramidPooling", "CBAMPSPNet"]


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared MLP on avg- and max-pooled vectors, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + mx)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class PyramidPooling(nn.Module):
    """PSP pyramid pooling: returns ``cat([x, up(branch_b(pool_b(x))) for b in bins])``.

    Output channels: ``in_ch + len(bins) * (in_ch // len(bins))``. Branches of bin 1 have no
    BatchNorm (see the module docstring).
    """

    def __init__(self, in_ch: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        branch_ch = max(1, in_ch // len(bins))
        self.branches = nn.ModuleList()
        for b in bins:
            if b == 1:
                layers = [nn.Conv2d(in_ch, branch_ch, 1), nn.ReLU(inplace=True)]
            else:
                layers = [nn.Conv2d(in_ch, branch_ch, 1, bias=False), nn.BatchNorm2d(branch_ch),
                          nn.ReLU(inplace=True)]
            self.branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(int(b)), *layers))
        self.out_channels = in_ch + len(bins) * branch_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
                  for branch in self.branches]
        return torch.cat([x, *pooled], dim=1)


@register("cbam_pspnet")
class CBAMPSPNet(nn.Module):
    """PSPNet with CBAM on the stem and on the dilated ResNet's output (see module docstring)."""

    size_multiple = 32

    def __init__(self, in_channels: int = 1, out_channels: int = 2, width: int = 64,
                 depth: int = 18, reduction: int = 16, bins: Sequence[int] = (1, 2, 3, 6),
                 dropout: float = 0.1):
        super().__init__()

        def cbam_at(index: int, channels: int) -> Optional[nn.Module]:
            return CBAM(channels, reduction) if index in (0, 4) else None

        self.encoder = ResNetEncoder(depth, in_channels, width, output_stride=8,
                                     attention=cbam_at)
        feat_ch = self.encoder.channels[4]
        self.ppm = PyramidPooling(feat_ch, tuple(bins))
        mid_ch = max(1, feat_ch // 2)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(self.ppm.out_channels, mid_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid_ch), nn.ReLU(inplace=True), nn.Dropout2d(dropout))
        self.classifier = nn.Conv2d(mid_ch, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = self.encoder(x)[4]
        logits = self.classifier(self.bottleneck(self.ppm(features)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

