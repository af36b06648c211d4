"""Overlay PNGs: the legend and title fit inside the picture, even on a one-slice montage."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib.report.overlay import save_overlay
from COVIDSegLib.volume import HU, Volume


def _slice_with_all_labels(slices: int) -> tuple:
    hu = np.full((slices, 96, 128), 40.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 30:70, 10:50] = 2  # right lung on the image's left (radiological display)
    labels[:, 30:70, 78:118] = 1
    labels[:, 40:50, 20:30] = 3
    labels[:, 40:50, 90:100] = 4
    hu[labels > 0] = -850.0
    spacing = (1.0, 1.0, 1.0)
    return Volume(hu, spacing=spacing, space=HU), Volume(labels, spacing=spacing)


def _ink_columns(path) -> np.ndarray:
    """Columns of the picture's bottom band (the legend) that hold non-white pixels."""
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[..., :3].astype(int)
    band = rgb[int(rgb.shape[0] * 0.9):]
    return np.flatnonzero((band < 200).any(axis=(0, 2)))


@pytest.mark.parametrize("slices", [1, 2, 9])
def test_legend_is_not_cut_by_the_picture_edge(tmp_path, slices):
    image, labels = _slice_with_all_labels(slices)
    path = save_overlay(image, labels, tmp_path / "o.png", title="a title", calibration="hu")
    width = sitk.ReadImage(str(path)).GetWidth()
    ink = _ink_columns(path)
    assert ink.size, "no legend drawn"
    assert ink[0] > 0 and ink[-1] < width - 1, f"legend touches the edge: columns {ink[0]}..{ink[-1]} of {width}"
