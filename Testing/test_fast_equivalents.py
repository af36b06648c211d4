"""The fast numpy/scipy implementations in preprocess/morphology against the SimpleITK
formulations they replaced (the models were trained with those): same results."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib.preprocess.transforms import CropBox, body_box, resample_inplane
from COVIDSegLib.volume import Volume

from test_preprocess import SAMPLE_CT, read_png, rotation


def _body_box_sitk(a: np.ndarray, margin: int = 4) -> CropBox:
    """The SimpleITK formulation body_box replicates (Otsu filter, ball erode/dilate, relabel)."""
    img = sitk.GetImageFromArray(a.astype(np.float32))
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetMaskValue(1)
    otsu.Execute(img, sitk.Cast(img > float(a.min()), sitk.sitkUInt8))
    fg = sitk.Cast(img > otsu.GetThreshold(), sitk.sitkUInt8)
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.BinaryErode(fg, [1, 1])), sortByObjectSize=True) == 1
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.BinaryDilate(largest, [2, 2]) & fg)
    x, y, w, h = stats.GetBoundingBox(1)
    return CropBox(0, 1, max(0, y - margin), min(a.shape[0], y + h + margin),
                   max(0, x - margin), min(a.shape[1], x + w + margin))


def test_body_box_equals_simpleitk_formulation_on_real_slices(shared_data):
    """The numpy/scipy body_box gives the very boxes of the SimpleITK pipeline it replaced
    (the crops the shipped models were trained on), on every real MedSeg slice and HU slices."""
    from COVIDSegLib.io.files import read_volume
    from COVIDSegLib.preprocess.intensity import to_medseg8
    slices = [read_png(p).astype(np.float32) for p in sorted((shared_data / "medseg100" / "images").glob("*.png"))]
    sample = to_medseg8(read_volume(SAMPLE_CT))
    slices += list(sample.array) + [sample.array[0] + np.random.default_rng(1).normal(0, 5, sample.shape[1:])]
    dicom = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "chest-ct-dicom" / "0.dcm")))[0]
    slices.append(dicom.astype(np.float32))  # HU with -2048 outside the field of view
    assert len(slices) >= 55
    for a in slices:
        assert body_box(a) == _body_box_sitk(a)


def test_largest_per_slice_equals_simpleitk_relabel():
    """scipy labelling keeps the component SimpleITK's ConnectedComponent + RelabelComponent
    keeps (face connectivity; equal sizes: the first in raster order), slice by slice."""
    from COVIDSegLib.morphology import largest_per_slice
    rng = np.random.default_rng(5)
    masks = [rng.random((12, 17, 23)) < share for share in (0.2, 0.45, 0.6)]
    ties = np.zeros((3, 20, 20), bool)  # equal squares, in varying raster order
    ties[0, 2:4, 12:14] = ties[0, 10:12, 3:5] = True
    ties[1, 15:17, 1:3] = ties[1, 5:7, 16:18] = ties[1, 9:11, 9:11] = True
    ties[2, 0:2, 0:2] = ties[2, 18:20, 18:20] = True
    for mask in masks + [ties]:
        expected = np.stack([sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(
            sitk.GetImageFromArray(plane.astype(np.uint8))), sortByObjectSize=True) == 1) > 0
            for plane in mask])
        np.testing.assert_array_equal(largest_per_slice(mask), expected)


@pytest.mark.parametrize("radius", [1, 2, 4, 7])
def test_inplane_erode_and_dilate_equal_simpleitk(radius):
    """erode_inplane / dilate_inplane (separable filters on the mask's bounding box) equal
    SimpleITK's ball erosion / dilation with radius [r, r, 0], also where the mask touches
    the image border (outside counts as foreground for the erosion, background for the dilation)."""
    from COVIDSegLib.morphology import dilate_inplane, erode_inplane
    rng = np.random.default_rng(radius)
    for share in (0.5, 0.9, 0.99):
        mask = rng.random((4, 31, 26)) < share
        mask[:, 20:] = False  # a box smaller than the image on one side
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        for fast, slow in ((erode_inplane, sitk.BinaryErode), (dilate_inplane, sitk.BinaryDilate)):
            expected = sitk.GetArrayFromImage(slow(image, [radius, radius, 0], sitk.sitkBall)) > 0
            np.testing.assert_array_equal(fast(mask, radius), expected)


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_ball_matches_simpleitk_ball(radius):
    from COVIDSegLib.morphology import ball
    impulse = np.zeros((2 * radius + 1,) * 2, np.uint8)
    impulse[radius, radius] = 1
    dilated = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.GetImageFromArray(impulse), [radius] * 2)) > 0
    np.testing.assert_array_equal(ball(radius), dilated)


@pytest.mark.parametrize("factors,spacing", [((4.0, 4.0), (1.0, 1.0, 1.0)), ((1.8, 2.6), (0.7, 0.7, 2.5)),
                                             ((1.2, 1.0), (1.0, 1.0, 1.0))])
def test_antialias_equals_simpleitk_discrete_gaussian(factors, spacing):
    from COVIDSegLib.preprocess.transforms import _antialias
    a = np.random.default_rng(0).normal(0, 100, (3, 97, 53)).astype(np.float32)
    a[:, :10] += 500  # an edge at the border: the boundary condition matters
    image = sitk.GetImageFromArray(a)
    image.SetSpacing(spacing)
    sigmas = [max(0.0, (f - 1) / 2) for f in factors]
    variance = [(s * sp) ** 2 for s, sp in zip(sigmas, spacing[:2])] + [0.0]
    expected = sitk.GetArrayFromImage(sitk.DiscreteGaussian(image, variance=variance, maximumKernelWidth=64,
                                                            maximumError=0.01, useImageSpacing=True))
    np.testing.assert_allclose(_antialias(a, factors), expected, atol=1e-3)
    assert not np.allclose(expected, a, atol=1.0)  # it did smooth
    np.testing.assert_array_equal(_antialias(a, factors), np.concatenate([_antialias(p[None], factors) for p in a]))
    original = a.copy()
    _antialias(a, factors)
    np.testing.assert_array_equal(a, original)  # the passes write into their own output, never the input


def test_resampling_slab_by_slab_equals_whole_volume():
    """resample_inplane/restore_inplane work in slabs of slices (bounded memory): the result must
    not depend on the slab size (exactly for an axis-aligned volume; for an oblique one up to
    float rounding: +-1 after rounding to int16, nearest-neighbour ties left out)."""
    from COVIDSegLib.preprocess.transforms import _resample_slabs
    rng = np.random.default_rng(3)
    for direction, atol, methods in ((IDENTITY_FLIPPED, 0, ("linear", "nearest")),
                                     (rotation(0.2, -0.1, 0.05), 1, ("linear",))):
        vol = Volume(rng.normal(0, 300, (7, 40, 50)).astype(np.int16), (0.6, 0.7, 2.5), (3.0, -4.0, 10.0), direction)
        coarse, info = resample_inplane(vol, 1.3, "linear")
        for interpolator in methods:
            factors = (1.3 / 0.6, 1.3 / 0.7) if interpolator == "linear" else None
            parts = [_resample_slabs(vol, info.resampled_size, info.resampled_spacing, coarse.origin,
                                     interpolator, factors, slab=slab).astype(int) for slab in (100, 3, 1)]
            for part in parts[1:]:
                np.testing.assert_allclose(part, parts[0], atol=atol, rtol=0)
            if interpolator == "linear":
                np.testing.assert_allclose(coarse.array, parts[0], atol=atol, rtol=0)


IDENTITY_FLIPPED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
