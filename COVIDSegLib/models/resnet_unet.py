"""U-Net with a ResNet encoder ("resnet18_unet") and the U-Net decoder shared by its variants.

Encoder: :class:`~COVIDSegLib.models.resnet.ResNetEncoder` (ResNet-18 by default) whose stem is
the 7×7 stride-2 convolution on ``in_channels`` (1 for CT) inputs. Decoder, from the 1/32
bottleneck up: four :class:`~COVIDSegLib.models.blocks.Up` steps (shared with the U-Net family),
each a 2×2 stride-2 transposed convolution to the skip's channel count, concatenation with
the encoder skip of the same resolution (layer3, layer2, layer1, stem) and a 3×3 convolution +
ReLU, with 256, 256, 128, 64 output channels at ``width=64`` (scaled by ``width/64``); the last
block ends at 1/2 resolution, so a bilinear ×2 up-sampling, two 3×3 conv + ReLU (``64/2``
channels) and a 1×1 head give the logits at input size.

:class:`UNetDecoder` takes an optional attention factory applied after every decoder block;
``resnet34_scse_mt`` reuses it (and :class:`ResNetUNet`) with scSE.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BlockFactory, Up
from .registry import register
from .resnet import AttentionFactory, ResNetEncoder

__all__ = ["UNetDecoder", "ResNetUNet", "scaled", "resnet18_unet"]

#: Decoder channels at ``width=64`` (deepest block first).
DECODER_CHANNELS = (256, 256, 128, 64)

#: ``factory(channels)`` -> module applied to a decoder block's output, or ``None``.
DecoderAttentionFactory = Callable[[int], Optional[nn.Module]]


def scaled(channels: int, width: int) -> int:
    """``channels`` given for ``width=64`` scaled to ``width`` (at least 1)."""
    return max(1, channels * width // 64)


def _decoder_conv(attention: Optional[DecoderAttentionFactory]) -> BlockFactory:
    """Block factory for :class:`~COVIDSegLib.models.blocks.Up`: 3×3 conv + ReLU (+ attention)."""
    def factory(in_ch: int, out_ch: int) -> nn.Module:
        att = attention(out_ch) if attention is not None else None
        return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
                             att if att is not None else nn.Identity())
    return factory


class UNetDecoder(nn.Module):
    """Decoder for the five ResNet features ``[stem, layer1, layer2, layer3, layer4]``.

    ``forward(features)`` returns logits (N, out_channels, 2·H_stem, 2·W_stem), i.e. at input
    size for a stride-2 stem. ``encoder_channels`` are the five feature channel counts.
    """

    def __init__(self, encoder_channels: Sequence[int], out_channels: int,
                 decoder_channels: Sequence[int] = DECODER_CHANNELS,
                 attention: Optional[DecoderAttentionFactory] = None):
        super().__init__()
        if len(encoder_channels) != 5 or len(decoder_channels) != 4:
            raise ValueError("UNetDecoder needs 5 encoder and 4 decoder channel counts")
        skips = list(encoder_channels[3::-1])  # layer3, layer2, layer1, stem
        blocks, in_ch, conv = [], encoder_channels[4], _decoder_conv(attention)
        for skip_ch, out_ch in zip(skips, decoder_channels):
            blocks.append(Up(in_ch, skip_ch, out_ch, conv))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        head_ch = max(1, in_ch // 2)
        self.final = nn.Sequential(
            nn.Conv2d(in_ch, head_ch, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(head_ch, head_ch, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(head_ch, out_channels, 1)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        x = features[4]
        for block, skip in zip(self.blocks, features[3::-1]):
            x = block(x, skip)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.head(self.final(x))


class ResNetUNet(nn.Module):
    """ResNet encoder + :class:`UNetDecoder`; input H, W must be multiples of 32.

    ``encoder_attention`` / ``decoder_attention`` are optional hooks (see
    :class:`ResNetEncoder` and :class:`UNetDecoder`); plain U-Net without them.
    """

    size_multiple = 32

    def __init__(self, in_channels: int = 1, out_channels: int = 2, width: int = 64,
                 depth: int = 18, encoder_attention: Optional[AttentionFactory] = None,
                 decoder_attention: Optional[DecoderAttentionFactory] = None):
        super().__init__()
        self.encoder = ResNetEncoder(depth, in_channels, width, output_stride=32,
                                     attention=encoder_attention)
        self.decoder = UNetDecoder(self.encoder.channels, out_channels,
                                   [scaled(c, width) for c in DECODER_CHANNELS],
                                   attention=decoder_attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@register("resnet18_unet")
def resnet18_unet(in_channels: int = 1, out_channels: int = 2, width: int = 64) -> ResNetUNet:
    """U-Net with a ResNet-18 encoder (1-channel 7×7 stride-2 stem by default)."""
    return ResNetUNet(in_channels, out_channels, width, depth=18)
