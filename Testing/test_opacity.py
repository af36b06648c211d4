"""Synthetic lung opacities (training/opacity.py) on real covid19-ct-seg lung slices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from COVIDSegLib.io.files import read_volume
from COVIDSegLib.training.augment import AugmentConfig, augment
from COVIDSegLib.training.opacity import paint_opacities

from conftest import SHARED_DATA


@pytest.fixture(scope="module")
def lung_batch():
    root = SHARED_DATA / "covid19-ct-seg-slices"
    if not root.is_dir():
        pytest.skip(f"{root} is not available")
    paths = sorted((root / "images").glob("*.png"))[100:1100:250]
    images = np.stack([read_volume(p).array[0] for p in paths]).astype(np.float32) / 255
    lungs = np.stack([read_volume(root / "lungs" / p.name).array[0] > 0 for p in paths]).astype(np.int64)
    return torch.from_numpy(images)[:, None], torch.from_numpy(lungs)


def test_paints_only_inside_the_lung_towards_soft_tissue(lung_batch):
    image, target = lung_batch
    out = paint_opacities(image, target, 1.0, torch.Generator().manual_seed(0))
    changed = (out - image).abs()[:, 0] > 1e-6
    lung = target == 1
    assert changed.any() and not (changed & ~lung).any()
    # lung is dark in the lung space; painted lung becomes brighter (denser)
    assert float((out - image)[:, 0][changed].mean()) > 0.1
    for i in range(len(image)):
        painted = changed[i]
        assert 0.02 < float(painted.sum() / lung[i].sum()) <= 1.0


def test_dependent_opacity_lies_in_the_back_of_the_lung(lung_batch):
    image, target = lung_batch
    rows = torch.arange(image.shape[2]).view(1, -1, 1).float()
    backs = []
    for seed in range(6):
        out = paint_opacities(image, target, 1.0, torch.Generator().manual_seed(seed))
        changed = (out - image).abs()[:, 0] > 1e-6
        lung = target == 1
        for i in range(len(image)):
            if changed[i].sum() > 0.05 * lung[i].sum():
                backs.append(float((rows[0] * changed[i]).sum() / changed[i].sum()
                                   - (rows[0] * lung[i]).sum() / lung[i].sum()))
    # most opacities are dependent: their centre lies posterior (larger row) to the lung's
    assert np.mean(np.array(backs) > 0) > 0.5


def test_probability_zero_and_no_lung_leave_the_image(lung_batch):
    image, target = lung_batch
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(paint_opacities(image, target, 0.0, gen), image)
    assert torch.equal(paint_opacities(image, torch.zeros_like(target), 1.0, gen), image)


def test_augment_keeps_old_configs_and_targets(lung_batch):
    image, target = lung_batch
    cfg = AugmentConfig.from_dict({"flip": 0.0, "rotate_deg": 0.0, "scale": [1, 1], "translate": 0.0,
                                   "elastic": 0.0, "window_hu": 0.0, "gamma": [1, 1], "opacity": 1.0})
    assert AugmentConfig.from_dict({}).opacity == 0.0
    out, tgt = augment(image, target, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(tgt, target) and not torch.allclose(out, image)


def test_a_context_input_is_painted_alike_in_every_channel_as_the_centre_slice_alone(lung_batch):
    image, target = lung_batch
    single = paint_opacities(image, target, 1.0, torch.Generator().manual_seed(3))
    stacked = paint_opacities(image.repeat(1, 3, 1, 1), target, 1.0, torch.Generator().manual_seed(3))
    for c in range(3):
        assert torch.allclose(stacked[:, c], single[:, 0], atol=1e-6)
