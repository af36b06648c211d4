"""U-Net baseline (Ronneberger et al. 2015) and its TV-regularised twin, "tv_unet".

Registered names:

* ``"unet"`` — two (3×3 conv → BN → ReLU) per level, 4 max-pool down-samplings,
  transposed-conv up-sampling, concatenated skips, 1×1 head. Channels ``base·2^i``.
* ``"tv_unet"`` — the *same* network (identical layers and state dict). The
  difference is in training only: the loss adds a total-variation term on the
  predicted probabilities, ``losses.tv_loss(prob)`` = mean ``|∂x p| + |∂y p|``,
  which favours compact, connected lesions. The separate name lets training and
  model cards record which objective produced a set of weights.
"""
from __future__ import annotations

from .blocks import DoubleConv, UNetSkeleton
from .registry import register


@register("unet")
class UNet(UNetSkeleton):
    """Plain 2D U-Net.

    Args:
        in_channels: input channels (1 for a slice, k for 2.5D stacks of k slices).
        out_channels: number of classes; the output is raw logits.
        base: channels at full resolution; level ``i`` has ``base·2^i`` (bottleneck 16·base).
        dropout: ``Dropout2d`` probability after the bottleneck (0 = none).

    ``forward((N, in_channels, H, W)) -> (N, out_channels, H, W)``; H and W must be
    multiples of ``size_multiple`` (= 16) for exact alignment, which ``build_model`` ensures.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, base: int = 32,
                 dropout: float = 0.0):
        super().__init__(in_channels=in_channels, out_channels=out_channels, base=base,
                         depth=4, block_factory=DoubleConv, skip_factory=None,
                         dropout=dropout)


@register("tv_unet")
class TVUNet(UNet):
    """Same architecture as :class:`UNet`; trained with an extra TV term in the loss.

    Nothing differs at inference time; weights are interchangeable with ``"unet"``.
    ``default_tv_weight`` is the TV weight training uses unless its loss config sets one.
    """

    default_tv_weight: float = 0.1
