"""ResNet-18/34 encoder (BasicBlock) for the segmentation models, written without torchvision.

The layout follows He et al. (2016) and torchvision's ``resnet18``/``resnet34`` exactly at
``width=64`` (same layers, same parameter count apart from the stem, which takes
``in_channels`` instead of 3 inputs), so that a torchvision state dict can be mapped on
by name (``conv1``, ``bn1``, ``layer1.0.conv1`` ...; the 3-channel ``conv1`` weight summed over
its input axis gives the 1-channel stem). Extras for segmentation:

* ``width`` scales every channel count (64 → standard; 16 → a 16× smaller test model);
* ``output_stride`` 8 or 16 replaces the stride of layer 3 and 4 (or 4 only) by dilation,
  as in PSPNet / DeepLab, so the deepest features stay at 1/8 (1/16) of the input;
* ``attention`` is an optional hook that inserts a module after each of the five stages
  (stem, layer1..layer4); the recalibrated map is both returned and fed to the next stage.

Parameter counts of the encoder alone with a 1-channel stem at ``width=64``:
ResNet-18 11,170,240 and ResNet-34 21,278,400 (torchvision without ``fc``: 11,176,512 and
21,284,672 with the 3-channel ``conv1``; the difference is 2·7·7·64 = 6,272).
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNetEncoder", "AttentionFactory", "DEPTHS"]

#: Blocks per layer for the supported depths.
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

#: ``factory(stage_index, channels)`` -> module applied to that stage's output, or ``None``.
AttentionFactory = Callable[[int, int], Optional[nn.Module]]


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3×3 convolution without bias whose padding keeps the size (up to the stride)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation,
                     bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN with an identity (or 1×1 conv + BN projection) shortcut.

    ``dilation_in`` is used by the first convolution and ``dilation`` by the second, so the
    first block of a dilated layer keeps the previous layer's dilation (torchvision/DeepLab).
    """

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1,
                 dilation_in: Optional[int] = None):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride, dilation_in or dilation)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_ch, out_ch, 1, dilation)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: Optional[nn.Module] = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18/34 feature extractor returning five feature maps.

    ``forward(x)`` with ``x`` of shape (N, in_channels, H, W) returns
    ``[stem, layer1, layer2, layer3, layer4]`` at strides 2, 4, 8, 16, 32 (``output_stride``
    32), 2, 4, 8, 16, 16 (16) or 2, 4, 8, 8, 8 (8), with ``channels`` =
    ``[w, w, 2w, 4w, 8w]`` for ``w = width``. The stem is the 7×7 stride-2 convolution +
    BN + ReLU (before the max-pool, which opens layer 1).
    """

    def __init__(self, depth: int = 18, in_channels: int = 1, width: int = 64,
                 output_stride: int = 32, attention: Optional[AttentionFactory] = None):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        self.depth, self.output_stride = depth, output_stride
        w = width
        self.channels: List[int] = [w, w, 2 * w, 4 * w, 8 * w]
        self.conv1 = nn.Conv2d(in_channels, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # Layers 3 and 4 trade their stride for dilation when output_stride < 32.
        dilate = {3: output_stride == 8, 4: output_stride <= 16}
        self._dilation = 1
        blocks = DEPTHS[depth]
        self.layer1 = self._make_layer(w, w, blocks[0], 1, False)
        self.layer2 = self._make_layer(w, 2 * w, blocks[1], 2, False)
        self.layer3 = self._make_layer(2 * w, 4 * w, blocks[2], 2, dilate[3])
        self.layer4 = self._make_layer(4 * w, 8 * w, blocks[3], 2, dilate[4])
        self.attention = nn.ModuleList(self._attention(attention, i, c)
                                       for i, c in enumerate(self.channels))
        self._init_weights()

    def _make_layer(self, in_ch: int, out_ch: int, n_blocks: int, stride: int,
                    dilate: bool) -> nn.Sequential:
        previous = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        layers = [BasicBlock(in_ch, out_ch, stride, self._dilation, dilation_in=previous)]
        layers += [BasicBlock(out_ch, out_ch, 1, self._dilation) for _ in range(n_blocks - 1)]
        return nn.Sequential(*layers)

    @staticmethod
    def _attention(factory: Optional[AttentionFactory], index: int, channels: int) -> nn.Module:
        module = factory(index, channels) if factory is not None else None
        return module if module is not None else nn.Identity()

    def _init_weights(self) -> None:
        """He initialisation for convolutions, unit/zero BN affine (torchvision's choice)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        att = self.attention
        f0 = att[0](self.relu(self.bn1(self.conv1(x))))
        f1 = att[1](self.layer1(self.maxpool(f0)))
        f2 = att[2](self.layer2(f1))
        f3 = att[3](self.layer3(f2))
        f4 = att[4](self.layer4(f3))
        return [f0, f1, f2, f3, f4]
