"""Multi-task ResNet-34 U-Net with scSE attention and an "infected slice" head ("resnet34_scse_mt").

* Encoder: ResNet-34 (:class:`~COVIDSegLib.models.resnet.ResNetEncoder`, 1-channel 7×7 stride-2
  stem), an scSE block after each of its five stages (stem, layer1..layer4); the recalibrated
  map feeds both the next stage and the skip connection.
* Decoder: the U-Net decoder of ``resnet18_unet`` (:class:`~COVIDSegLib.models.resnet_unet.
  UNetDecoder`) with an scSE block after every decoder block.
* Classification head on the bottleneck (layer-4 output after its scSE): global average pool
  → dropout → linear → one logit, "this slice contains infection".

scSE (Roy et al., 2018): ``cSE(x) = x · σ(W2 ReLU(W1 GAP(x)))`` with reduction ``r`` (16),
``sSE(x) = x · σ(conv1×1(x) → 1 channel)``, and ``scSE(x) = cSE(x) + sSE(x)`` (summed).

Training: ``loss = w_cls · BCEWithLogits(cls_logit, slice_has_infection) + w_seg · seg_loss``
from :meth:`ResNet34SCSE.forward_multitask` (the losses live in ``COVIDSegLib.training.losses``).
Inference: the head is the empty-slice detector — slices for which
:meth:`ResNet34SCSE.slice_is_empty` is true (P(infection) below a configurable threshold) are
skipped, i.e. get no infection label; ``forward`` returns the segmentation logits only, so the
model can also be used as a plain segmenter.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .registry import register
from .resnet_unet import ResNetUNet

__all__ = ["SCSE", "ResNet34SCSE"]


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation; the two recalibrations are summed."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.cse = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1),
                                 nn.Sigmoid())
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cse(x) + x * self.sse(x)


@register("resnet34_scse_mt")
class ResNet34SCSE(ResNetUNet):
    """ResNet-34 scSE U-Net with a slice-level infection classifier (see module docstring).

    ``forward(x)`` → segmentation logits (N, out_channels, H, W);
    ``forward_multitask(x)`` → (segmentation logits, classification logits of shape (N,)).
    """

    multitask = True

    def __init__(self, in_channels: int = 1, out_channels: int = 2, width: int = 64,
                 depth: int = 34, reduction: int = 16, cls_dropout: float = 0.2):
        super().__init__(in_channels, out_channels, width, depth,
                         encoder_attention=lambda index, channels: SCSE(channels, reduction),
                         decoder_attention=lambda channels: SCSE(channels, reduction))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Dropout(cls_dropout),
                                        nn.Linear(self.encoder.channels[4], 1))

    def forward_multitask(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits and the per-slice "contains infection" logit (N,)."""
        features = self.encoder(x)
        return self.decoder(features), self.classifier(features[4]).squeeze(1)

    @staticmethod
    def slice_is_empty(cls_logit: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Boolean tensor: True where P(infection) = sigmoid(logit) is below ``threshold``.

        A higher threshold skips more slices (faster, more missed small lesions); 0 never
        skips. Thresholds outside [0, 1] are rejected.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        return torch.sigmoid(cls_logit) < threshold
