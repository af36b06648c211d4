"""Inference-only speed-up: fold each BatchNorm2d into the Conv2d just before it."""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """A copy of ``model`` (in eval mode) where every ``Conv2d -> BatchNorm2d`` pair inside a
    ``Sequential`` is one convolution with the BN's running statistics folded into its weights
    and bias. Same outputs up to float rounding; fewer passes over memory. Training is not
    possible on the result (the BN layers are gone). ``inplace``: fold ``model`` itself (no copy;
    ~0.2 s per model load of the infection network)."""
    folded = (model if inplace else copy.deepcopy(model)).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            _fold_in_sequential(module)
    return folded


def _fold_in_sequential(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        conv, bn = seq._modules[first], seq._modules[second]
        if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                and bn.running_var is not None and conv.out_channels == bn.num_features):
            seq._modules[first] = _folded_conv(conv, bn)
            seq._modules[second] = nn.Identity()


@torch.no_grad()
def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0.0)
    bias = conv.bias * scale + shift if conv.bias is not None else shift
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, True, conv.padding_mode, conv.weight.device, conv.weight.dtype)
    out.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    out.bias.copy_(bias)
    return out
