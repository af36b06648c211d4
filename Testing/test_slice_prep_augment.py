"""Tests of COVIDSegLib.preprocess.slice_prep (slice -> network input -> full slice) and COVIDSegLib.training.augment."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from COVIDSegLib.preprocess.intensity import MEDSEG_WINDOW_HI_HU, MEDSEG_WINDOW_LO_HU
from COVIDSegLib.preprocess.slice_prep import InputSpec, prepare, prepare_labels, restore
from COVIDSegLib.training.augment import AugmentConfig, augment, intensity, spatial
from COVIDSegLib.training.datasets import load_medseg

W = MEDSEG_WINDOW_HI_HU - MEDSEG_WINDOW_LO_HU
IDENTITY = AugmentConfig(flip=0.0, rotate_deg=0.0, scale=(1.0, 1.0), translate=0.0, elastic=0.0,
                         window_hu=0.0, gamma=(1.0, 1.0), clahe=0.0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def synthetic_slice(size: int = 256, seed: int = 0):
    """An 8-bit slice: body ellipse (~235) in air (~60) with two lungs and a lesion mask."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    img = np.full((size, size), 60.0)
    body = (x / 0.8) ** 2 + ((y - 0.05) / 0.55) ** 2 <= 1
    img[body] = 235
    for cx in (-0.38, 0.38):
        img[((x - cx) / 0.25) ** 2 + (y / 0.4) ** 2 <= 1] = 80
    mask = (((x - 0.38) / 0.15) ** 2 + ((y - 0.1) / 0.2) ** 2 <= 1).astype(np.uint8)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.float32), mask


@pytest.fixture
def real_slice(shared_data):
    """MedSeg slice 0041: a body box well inside the frame and a large finding."""
    sample = next(s for s in load_medseg(shared_data / "medseg100") if s.id == "0041")
    return sample.image, sample.target


# ----------------------------------------------------------------------------- slice_prep


@pytest.mark.parametrize("spec", [InputSpec(64), InputSpec(96, crop_body=False), InputSpec(64, clahe=True)])
def test_prepare_shape_and_range(spec):
    img, _ = synthetic_slice()
    x, geom = prepare(img, spec)
    assert x.shape == (spec.size, spec.size) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    assert geom.shape == (256, 256)
    if spec.crop_body:
        assert geom.box.y0 > 0 and geom.box.y1 < 256  # the air around the body was cropped
    else:
        assert (geom.box.y0, geom.box.y1, geom.box.x0, geom.box.x1) == (0, 256, 0, 256)


def test_prepare_rejects_non_slice():
    with pytest.raises(ValueError):
        prepare(np.zeros((2, 64, 64)), InputSpec(32))


def _roundtrip(image, mask, size):
    x, geom = prepare(image, InputSpec(size))
    labels = prepare_labels(mask, geom)
    assert labels.shape == (size, size) and set(np.unique(labels)) <= set(np.unique(mask))
    onehot = np.stack([labels == c for c in range(int(mask.max()) + 1)]).astype(np.float32)
    full = restore(onehot, geom)
    assert full.shape == (onehot.shape[0],) + mask.shape
    return full, geom


def test_prepare_restore_roundtrip_real(real_slice):
    image, mask = real_slice
    full, geom = _roundtrip(image, mask, 192)
    assert dice(full.argmax(0), mask) > 0.95
    assert geom.box.y0 > 0 and geom.box.x0 > 0  # this slice really is cropped


def test_prepare_restore_roundtrip_synthetic():
    image, mask = synthetic_slice(512)
    full, _ = _roundtrip(image, mask * 2, 128)  # class 2 of a 3-class map
    assert dice(full.argmax(0) == 2, mask) > 0.95


def test_restore_background_outside_box():
    image, _ = synthetic_slice()
    _, geom = prepare(image, InputSpec(64))
    prob = np.random.default_rng(0).dirichlet([1, 1, 1], (64, 64)).transpose(2, 0, 1).astype(np.float32)
    full = restore(prob, geom)
    outside = np.ones(geom.shape, bool)
    outside[geom.box.slices[1:]] = False
    assert outside.any()
    assert np.all(full[0][outside] == 1.0) and np.all(full[1:, outside] == 0.0)
    inside = full[:, ~outside]
    assert np.allclose(inside.sum(0), 1.0, atol=1e-4)  # linear interpolation keeps a distribution


def test_input_spec_dict_roundtrip():
    spec = InputSpec(size=128, crop_body=False, clahe=True)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict() == {"size": 128, "crop_body": False, "clahe": True}
    assert InputSpec.from_dict({"size": 64, "extra": 1}) == InputSpec(64)  # unknown keys ignored
    context = InputSpec(size=128, crop_body=False, context_mm=2.0)
    assert InputSpec.from_dict(context.to_dict()) == context and context.channels == 3 and spec.channels == 1


# ----------------------------------------------------------------------------- augment


def batch(n: int = 3, size: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 1, size, size, generator=g)
    target = torch.zeros(n, size, size, dtype=torch.long)
    target[:, 10:30, 5:20] = 1
    target[:, 30:40, 25:45] = 2
    return image, target


def test_spatial_keeps_values_and_shapes():
    image, target = batch()
    cfg = AugmentConfig(flip=0.5, rotate_deg=30, elastic=1.0)
    img, tgt = spatial(image, target, cfg, torch.Generator().manual_seed(1))
    assert img.shape == image.shape and tgt.shape == target.shape and tgt.dtype == target.dtype
    assert set(tgt.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(tgt, target)  # something moved


def test_augment_repeatable_by_seed():
    image, target = batch()
    cfg = AugmentConfig(elastic=1.0)
    a = augment(image, target, cfg, torch.Generator().manual_seed(5))
    b = augment(image, target, cfg, torch.Generator().manual_seed(5))
    c = augment(image, target, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


def test_identity_config_is_identity():
    image, target = batch()
    img, tgt = augment(image, target, IDENTITY, torch.Generator().manual_seed(0))
    assert torch.allclose(img, image, atol=1e-5)
    assert torch.equal(tgt, target)


def test_flip_only_mirrors_left_right():
    image, target = batch()
    img, tgt = augment(image, target, replace(IDENTITY, flip=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(img, image.flip(-1), atol=1e-5)
    assert torch.equal(tgt, target.flip(-1))


def test_rotation_moves_content_but_translation_zero_keeps_centre():
    image, target = batch(1, 49)
    image[:] = 0
    image[0, 0, 24, 24] = 1.0  # a bright centre pixel stays at the centre of a pure rotation
    img, _ = spatial(image, target, replace(IDENTITY, rotate_deg=45.0), torch.Generator().manual_seed(3))
    assert int(img[0, 0].argmax()) == 24 * 49 + 24


def test_intensity_range_default_config():
    image, _ = batch(8)
    out = intensity(image, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == image.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.allclose(out, image)


def test_window_shift_is_bounded():
    """window_hu=40, no gamma: v -> (v*W - lo)/(W + hi - lo) per sample, |lo|, |hi| <= 40 HU."""
    image, _ = batch(16)
    image = image * 0.9 + 0.05  # stay clear of the clamp
    cfg = replace(IDENTITY, window_hu=40.0)
    out = intensity(image, cfg, torch.Generator().manual_seed(2))
    diff = (out - image).abs()
    assert 0 < float(diff.max()) <= 40.0 / (W - 80.0) + 1e-6
    for v, o in zip(image.flatten(1).double(), out.flatten(1).double()):
        a, b = np.polyfit(v.numpy(), o.numpy(), 1)  # exactly affine per sample
        assert np.abs(a * v.numpy() + b - o.numpy()).max() < 1e-5
        d = W / a
        lo = -b * d
        hi = d - W + lo
        assert abs(lo) <= 40.0 + 1e-3 and abs(hi) <= 40.0 + 1e-3


def test_augment_config_from_dict():
    cfg = AugmentConfig.from_dict({"scale": [0.9, 1.1], "gamma": [1, 1], "flip": 0.0})
    assert cfg.scale == (0.9, 1.1) and cfg.gamma == (1, 1) and cfg.flip == 0.0
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    assert AugmentConfig.from_dict(None) == AugmentConfig()
    with pytest.raises(TypeError):
        AugmentConfig.from_dict({"nonsense": 1})


@pytest.mark.parametrize("window", [(slice(100, 300), slice(50, 400)), (slice(0, 512), slice(0, 512)),
                                    (slice(0, 40), slice(0, 512)), (slice(480, 512), slice(490, 512))])
def test_restore_on_a_window_equals_the_full_restore(window):
    """Restoring only a window of the slice (inference: the lungs' box) gives the same values as
    the whole slice restored and then cut, inside and outside the body box."""
    rng = np.random.default_rng(0)
    image = np.zeros((512, 512), np.float32)
    image[60:470, 30:500] = rng.uniform(100, 250, (410, 470))  # a "body" smaller than the slice
    _, geometry = prepare(image, InputSpec(size=128))
    assert geometry.box.y0 > 0 and geometry.box.y1 < 512
    prob = rng.random((3, 128, 128)).astype(np.float32)
    full = restore(prob, geometry)
    np.testing.assert_allclose(restore(prob, geometry, window), full[(slice(None),) + window], atol=1e-5)
