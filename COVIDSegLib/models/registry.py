"""Build any segmentation model by name from a plain config dict (JSON-serialisable)."""
from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import nn

_BUILDERS: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Class/function decorator: ``@register("unet")`` makes ``build_model({"name": "unet"})`` work."""
    def wrap(builder):
        if name in _BUILDERS:
            raise ValueError(f"model name '{name}' registered twice")
        _BUILDERS[name] = builder
        return builder
    return wrap


def _register_all() -> None:
    from . import architectures  # noqa: F401  (importing registers every architecture)


def available() -> list:
    _register_all()
    return sorted(_BUILDERS)


class PadToMultiple(nn.Module):
    """Pads H, W up to a multiple of ``multiple`` (reflect) and crops the output back."""

    def __init__(self, model: nn.Module, multiple: int):
        super().__init__()
        self.model, self.multiple = model, multiple

    def __getattr__(self, name: str):
        """Attributes of the wrapped model (``multitask``, ``slice_is_empty``...) stay reachable."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    def _pad(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        mode = "reflect" if ph < h and pw < w else "replicate"
        return (F.pad(x, (0, pw, 0, ph), mode=mode) if ph or pw else x), h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self._pad(x)
        return self.model(x)[..., :h, :w]

    def forward_multitask(self, x: torch.Tensor):
        x, h, w = self._pad(x)
        seg, cls = self.model.forward_multitask(x)
        return seg[..., :h, :w], cls


def build_model(config: dict) -> nn.Module:
    """``config["name"]`` picks the architecture; the other keys are its keyword arguments."""
    _register_all()
    params = dict(config)
    name = params.pop("name", None)
    if name not in _BUILDERS:
        raise ValueError(f"unknown model '{name}'; available: {', '.join(available())}")
    model = _BUILDERS[name](**params)
    multiple = getattr(model, "size_multiple", 1)
    return PadToMultiple(model, multiple) if multiple > 1 else model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
