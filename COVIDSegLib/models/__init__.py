"""Segmentation architectures (2D, 1 or k input channels) built by name: ``build_model(config)``."""
from .registry import available, build_model, count_parameters, register  # noqa: F401
