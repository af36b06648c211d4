"""Tests of COVIDSegLib.preprocess.transforms: windows, CLAHE, body crop, in-plane resampling, letterbox."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from COVIDSegLib.errors import Cancelled
from COVIDSegLib.preprocess.transforms import (CropBox, body_box, clahe, crop, letterbox, normalise_zscore,
                                               resample_inplane, restore_inplane, uncrop, unletterbox, window)
from COVIDSegLib.progress import CancelToken
from COVIDSegLib.volume import Volume

FAST = settings(max_examples=25, deadline=None)


def local_contrast(image: np.ndarray, radius: int = 3, mask: np.ndarray | None = None) -> float:
    """Mean local standard deviation (sitk.Noise) over ``mask`` (or the whole image)."""
    noise = sitk.GetArrayFromImage(sitk.Noise(sitk.GetImageFromArray(image.astype(np.float32)),
                                              [radius, radius]))
    return float(noise[mask].mean() if mask is not None else noise.mean())


def rotation(a: float, b: float, c: float) -> tuple:
    """A row-major 3x3 rotation matrix (oblique direction) from three angles."""
    (ca, sa), (cb, sb), (cc, sc) = ((math.cos(t), math.sin(t)) for t in (a, b, c))
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return tuple(float(v) for v in (rz @ ry @ rx).ravel())


SAMPLE_CT = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"


def read_png(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


# ----------------------------------------------------------------------------- window / z-score

finite = st.floats(-3000, 3000, allow_nan=False, width=32)


@FAST
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=8),
                 elements=finite),
       st.floats(-1500, 500), st.floats(1, 2000))
def test_window_range_clipping_monotone(a, lo, width):
    hi = lo + width
    out = window(a, lo, hi)
    assert out.dtype == np.float32 and out.shape == a.shape
    assert out.min(initial=0) >= 0.0 and out.max(initial=1) <= 1.0
    assert np.all(out[a <= lo] == 0.0) and np.all(out[a >= hi] == 1.0)
    order = np.argsort(a, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # monotone non-decreasing


def test_window_values_and_bad_window():
    np.testing.assert_allclose(window(np.array([-1350, -592.5, 165, 500]), -1350, 165),
                               [0, 0.5, 1, 1], atol=1e-6)
    with pytest.raises(ValueError):
        window(np.zeros(3), 10, 10)


def test_normalise_zscore_with_and_without_mask():
    rng = np.random.default_rng(0)
    a = rng.normal(50, 7, (4, 30, 30))
    z = normalise_zscore(a)
    assert z.dtype == np.float32
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-4
    mask = np.zeros(a.shape, bool)
    mask[:, :10] = True
    a[~mask] = 1e6  # outside the mask must not influence the statistics
    zm = normalise_zscore(a, mask)
    assert abs(zm[mask].mean()) < 1e-4 and abs(zm[mask].std() - 1) < 1e-4
    assert np.all(normalise_zscore(np.full((3, 3), 5.0)) == 0)
    with pytest.raises(ValueError):
        normalise_zscore(a, np.zeros(a.shape, bool))


# ----------------------------------------------------------------------------- CLAHE

def faint_pattern_image(n: int = 128) -> np.ndarray:
    """A smooth gradient in [0.3, 0.5] with a faint (amplitude 0.01) checker pattern."""
    y, x = np.mgrid[0:n, 0:n] / n
    pattern = 0.01 * np.sign(np.sin(2 * np.pi * 8 * x) * np.sin(2 * np.pi * 8 * y))
    return (0.3 + 0.2 * (x + y) / 2 + pattern).astype(np.float32)


def test_clahe_shape_dtype_range_2d_and_stack():
    img = faint_pattern_image()
    out = clahe(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    stack = np.stack([img, np.full_like(img, 0.7), img[::-1].copy()])
    calls = []
    out3 = clahe(stack, progress=lambda d, t, m: calls.append((d, t)))
    assert out3.shape == stack.shape and out3.dtype == np.float32
    assert calls[-1] == (3, 3)
    np.testing.assert_array_equal(out3[0], out)  # slice-wise: same as the single image
    np.testing.assert_array_equal(out3[1], stack[1])  # a constant slice is left unchanged
    assert np.isfinite(out3).all()


def test_clahe_increases_local_contrast_of_faint_pattern():
    img = faint_pattern_image()
    out = clahe(img, radius=16)
    assert local_contrast(out) > 2 * local_contrast(img)
    # and stays within the input's range
    assert out.min() >= img.min() - 1e-6 and out.max() <= img.max() + 1e-6


def test_clahe_cancel():
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        clahe(np.zeros((2, 16, 16), np.float32), cancel=token)


def test_clahe_real_medseg_slice(shared_data):
    img = read_png(shared_data / "medseg100" / "images" / "0000.png").astype(np.float32) / 255
    out = clahe(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    body = img > 0.5  # soft tissue and fat; lungs are below
    lungs = (img > 0.1) & (img < 0.5)
    assert local_contrast(out, mask=lungs) > 1.2 * local_contrast(img, mask=lungs)
    assert local_contrast(out, mask=body) > local_contrast(img, mask=body)


# ----------------------------------------------------------------------------- body box / crop

def synthetic_body(shape=(120, 160), hu=True) -> tuple[np.ndarray, tuple, tuple]:
    """Air, a body ellipse (with dark lungs inside) and a separate table bar below it.

    Returns the image and the (y0, y1, x0, x1) extents of the ellipse and of the table.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    img = np.full(shape, -1000.0)
    cy, cx, ry, rx = 50, 80, 35, 60
    body = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
    img[body] = 40
    for lx in (55, 105):  # lungs
        img[((y - cy) / 20) ** 2 + ((x - lx) / 18) ** 2 <= 1] = -850
    img[95:100, 10:150] = 300  # table: 10 px of air below the body
    ys, xs = np.nonzero(body)
    return img, (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1), (95, 100, 10, 150)


@pytest.mark.parametrize("as_3d", [False, True])
def test_body_box_contains_body_excludes_table(as_3d):
    img, (by0, by1, bx0, bx1), (ty0, _, tx0, tx1) = synthetic_body()
    arr = np.stack([img] * 3) if as_3d else img
    box = body_box(arr, margin=3)
    assert box.y0 <= by0 and box.y1 >= by1 and box.x0 <= bx0 and box.x1 >= bx1
    assert box.y1 <= ty0  # the table rows are outside
    assert (box.z0, box.z1) == ((0, 3) if as_3d else (0, 1))
    # the margin is 3 voxels, clamped to the image
    assert (box.y0, box.y1, box.x0, box.x1) == (by0 - 3, by1 + 3, bx0 - 3, bx1 + 3)


def test_body_box_with_padding_value_and_given_threshold():
    img, (by0, by1, bx0, bx1), _ = synthetic_body()
    img[:, :5] = -2048  # outside the scan field of view
    box = body_box(img, margin=0)
    assert (box.y0, box.y1, box.x0, box.x1) == (by0, by1, bx0, bx1)
    box = body_box(img, threshold=200, margin=0)  # only the table is above 200 HU
    assert (box.y0, box.y1) == (95, 100)


def test_body_box_never_empty():
    assert body_box(np.zeros((2, 20, 30))) == CropBox(0, 2, 0, 20, 0, 30)
    assert body_box(np.zeros((20, 30)), threshold=5) == CropBox(0, 1, 0, 20, 0, 30)
    assert body_box(np.zeros((20, 30)), threshold=5).shape == (1, 20, 30)
    with pytest.raises(ValueError):
        CropBox(0, 1, 5, 5, 0, 3)


@st.composite
def arrays_and_boxes(draw):
    ndim = draw(st.sampled_from([2, 3, 4]))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    z, y, x = (1,) + shape if ndim == 2 else shape[-3:]

    def span(n):
        a = draw(st.integers(0, n - 1))
        return a, draw(st.integers(a + 1, n))

    box = CropBox(*span(z), *span(y), *span(x))
    arr = draw(hnp.arrays(np.int16, shape, elements=st.integers(-2048, 3000)))
    return arr, box


@FAST
@given(arrays_and_boxes(), st.integers(-5, 5))
def test_crop_uncrop_restores_exactly(data, fill):
    arr, box = data
    cropped = crop(arr, box)
    expected_shape = box.shape[1:] if arr.ndim == 2 else arr.shape[:-3] + box.shape
    assert cropped.shape == expected_shape
    back = uncrop(cropped, box, arr.shape, fill=fill)
    assert back.shape == arr.shape and back.dtype == arr.dtype
    inside = np.zeros(arr.shape, bool)
    inside[box.slices[1:] if arr.ndim == 2 else (Ellipsis, *box.slices)] = True
    np.testing.assert_array_equal(back, np.where(inside, arr, fill))
    np.testing.assert_array_equal(crop(back, box), cropped)
    full = CropBox.full(arr.shape)
    np.testing.assert_array_equal(uncrop(crop(arr, full), full, arr.shape), arr)


def test_crop_rejects_box_outside_array():
    with pytest.raises(ValueError):
        crop(np.zeros((2, 4, 4)), CropBox(0, 1, 0, 5, 0, 4))
    with pytest.raises(ValueError):
        uncrop(np.zeros((1, 2, 2)), CropBox(0, 1, 0, 3, 0, 2), (1, 4, 4))


def test_body_box_real_medseg_slice(shared_data):
    img = read_png(shared_data / "medseg100" / "images" / "0000.png")
    box = body_box(img)
    ny, nx = img.shape
    assert box.y0 <= ny // 2 < box.y1 and box.x0 <= nx // 2 < box.x1  # contains the centre
    assert box.shape[1] * box.shape[2] < 0.9 * ny * nx  # smaller than the image
    assert box.shape[1] > ny / 2 and box.shape[2] > nx / 2  # but not a fragment
    # the scanner table is the bright curved line at rows ~476-484 below the patient's back
    assert int((img[481] > 151).sum()) > 100  # (it is there)
    assert box.y1 <= 476
    assert crop(img, box).shape == box.shape[1:]


def test_body_box_real_hu_slice(shared_data):
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "chest-ct-dicom" / "0.dcm")))
    box = body_box(hu)  # -2048 outside the field of view must not decide the threshold
    ny, nx = hu.shape[1:]
    assert box.y0 <= ny // 2 < box.y1 and box.x0 <= nx // 2 < box.x1
    assert box.shape[1] < 0.9 * ny
    assert (crop(hu, box) > -500).mean() > (hu > -500).mean()  # denser in body than the frame


# ----------------------------------------------------------------------------- resampling

def physical_centre(vol: Volume) -> np.ndarray:
    image = vol.to_sitk()
    return np.array(image.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2.0 for n in image.GetSize()]))


@FAST
@given(st.tuples(st.floats(0.5, 1.0), st.floats(0.5, 1.0), st.floats(0.8, 3.0)),
       st.floats(0.6, 1.2),
       st.tuples(st.integers(1, 3), st.integers(5, 40), st.integers(5, 40)),
       st.tuples(*[st.floats(-math.pi, math.pi)] * 3),
       st.tuples(*[st.floats(-200, 200)] * 3))
def test_resample_restore_geometry_exact(spacing, pixel, shape, angles, origin):
    vol = Volume(np.random.default_rng(0).random(shape).astype(np.float32), spacing=spacing,
                 origin=origin, direction=rotation(*angles))
    res, info = resample_inplane(vol, pixel)
    assert res.spacing == (pixel, pixel, spacing[2])
    assert res.shape[0] == shape[0] and res.direction == vol.direction
    for axis, (n, s) in enumerate(zip(shape[:0:-1], spacing[:2])):  # x then y
        assert abs(res.shape[2 - axis] * pixel - n * s) <= pixel / 2 + 1e-9  # same extent
    np.testing.assert_allclose(physical_centre(res), physical_centre(vol), atol=1e-6)
    for nearest in (False, True):
        back = restore_inplane(res, info, nearest=nearest)
        assert back.shape == vol.shape
        assert back.spacing == vol.spacing and back.origin == vol.origin
        assert back.direction == vol.direction
        assert back.array.dtype == vol.array.dtype


def blob_volume(spacing=(0.7, 0.7, 2.0), direction=None) -> Volume:
    z, y, x = np.mgrid[0:6, 0:160, 0:150]  # a lung-sized blob (~85 x 75 mm) with a lesion
    blob = ((y - 78) / 60.0) ** 2 + ((x - 74) / 55.0) ** 2 + ((z - 2.5) / 5.0) ** 2 <= 1
    labels = blob.astype(np.uint8) * 2
    labels[:, 60:85, 50:80] = np.where(blob[:, 60:85, 50:80], 3, 0)
    return Volume(labels, spacing=spacing, origin=(-12.5, 30.0, 100.0),
                  direction=direction or rotation(0.3, 0.1, -0.2))


@pytest.mark.parametrize("pixel,keep", [(0.5, 0.99), (0.83, 0.99), (1.0, 0.99), (1.2, 0.98)])
def test_label_round_trip_keeps_blob(pixel, keep):
    """Nearest-neighbour down/up sampling only loses boundary voxels; 0.7 -> 1.2 mm drops
    more than half of the original samples, hence the lower bound there."""
    vol = blob_volume()
    res, info = resample_inplane(vol, pixel, interpolator="nearest")
    assert res.array.dtype == np.uint8 and set(np.unique(res.array)) == {0, 2, 3}
    back = restore_inplane(res, info, nearest=True)
    assert back.same_geometry(vol)
    blob = vol.array > 0
    assert (back.array[blob] == vol.array[blob]).mean() >= keep
    assert (back.array == vol.array).mean() >= keep


def test_bool_mask_and_label_gaussian_round_trip():
    vol = blob_volume()
    mask = vol.with_array(vol.array > 0)
    res, info = resample_inplane(mask, 1.1, interpolator="nearest")
    assert res.array.dtype == bool
    back = restore_inplane(res, info, interpolator="label_gaussian")
    assert back.array.dtype == bool and (back.array == mask.array).mean() >= 0.99
    smooth, info = resample_inplane(mask, 1.1)  # linear on a mask: thresholded at 0.5
    assert smooth.array.dtype == bool
    ratio = smooth.array.sum() * smooth.voxel_volume_ml / (mask.array.sum() * mask.voxel_volume_ml)
    assert abs(ratio - 1) < 0.01
    back = restore_inplane(smooth, info)
    assert back.array.dtype == bool and (back.array == mask.array).mean() >= 0.99
    boxed, binfo = letterbox(mask.array[2], 64)
    assert boxed.dtype == bool and unletterbox(boxed, binfo).dtype == bool


@pytest.mark.parametrize("pixel", [0.6, 1.2])
def test_marker_stays_in_place(pixel):
    arr = np.zeros((3, 61, 47), np.float32)
    index = (1, 22, 31)  # (z, y, x)
    arr[index] = 1000.0
    vol = Volume(arr, spacing=(0.73, 0.91, 2.5), origin=(10.0, -20.0, 5.0),
                 direction=rotation(0.4, -0.2, 0.7))
    where = np.array(vol.to_sitk().TransformIndexToPhysicalPoint(index[::-1]))
    res, info = resample_inplane(vol, pixel)
    peak = np.unravel_index(np.argmax(res.array), res.shape)
    moved = np.array(res.to_sitk().TransformIndexToPhysicalPoint([int(i) for i in peak[::-1]]))
    assert np.linalg.norm(moved - where) <= pixel  # within one resampled voxel
    back = restore_inplane(res, info)
    peak_back = np.unravel_index(np.argmax(back.array), back.shape)
    assert np.abs(np.subtract(peak_back, index)).max() <= 1
    assert peak_back[0] == index[0]


def test_antialias_suppresses_aliasing_and_types_are_kept():
    stripes = np.zeros((1, 64, 64), np.float32)
    stripes[..., ::2] = 1.0  # highest frequency along x
    vol = Volume(stripes, spacing=(0.5, 0.5, 1.0))
    smooth, _ = resample_inplane(vol, 1.3)
    raw, _ = resample_inplane(vol, 1.3, antialias=False)
    assert smooth.array.std() < 0.5 * raw.array.std()
    assert abs(smooth.array.mean() - 0.5) < 0.05
    hu = Volume(np.full((2, 30, 30), -700, np.int16), spacing=(0.7, 0.7, 1.0))
    res, info = resample_inplane(hu, 1.0)
    assert res.array.dtype == np.int16 and np.all(res.array == -700)
    assert np.all(restore_inplane(res, info).array == -700)
    # integers are interpolated in float and rounded (not truncated)
    ramp = np.broadcast_to(np.arange(40, dtype=np.int16) * 3 - 1000, (1, 25, 40)).copy()
    as_int, _ = resample_inplane(Volume(ramp, spacing=(0.8, 0.8, 1.0)), 1.1)
    as_float, _ = resample_inplane(Volume(ramp.astype(np.float32), spacing=(0.8, 0.8, 1.0)), 1.1)
    assert as_int.array.dtype == np.int16
    np.testing.assert_array_equal(as_int.array, np.rint(as_float.array))


def test_restore_rejects_wrong_grid_and_bad_arguments():
    vol = blob_volume()
    res, info = resample_inplane(vol, 1.0, interpolator="nearest")
    with pytest.raises(ValueError):
        restore_inplane(vol, info)
    with pytest.raises(ValueError):
        resample_inplane(vol, 0.0)
    with pytest.raises(ValueError):
        resample_inplane(vol, 1.0, interpolator="cubic")


# ----------------------------------------------------------------------------- letterbox

@FAST
@given(st.integers(3, 150), st.integers(3, 150), st.sampled_from([32, 64, 97]),
       st.integers(1, 3), st.sampled_from([0, 1]))
def test_letterbox_shapes(h, w, size, n, order):
    img = np.random.default_rng(h * w).random((n, h, w)).astype(np.float32)
    boxed, info = letterbox(img, size, order=order, pad_value=-1.0)
    assert boxed.shape == (n, size, size)
    assert max(info.height, info.width) == size
    # aspect ratio kept up to the rounding of each side to whole pixels
    tolerance = (h / w) * (1 / info.height + 1 / info.width) + 1e-9
    assert abs(info.height / info.width - h / w) <= tolerance
    assert info.top == (size - info.height) // 2 and info.left == (size - info.width) // 2
    content = np.zeros((size, size), bool)
    content[info.top:info.top + info.height, info.left:info.left + info.width] = True
    assert np.all(boxed[:, ~content] == -1.0)
    assert np.all(boxed[:, content] >= 0)  # no pad value leaks into the content
    back = unletterbox(boxed, info, order=order)
    assert back.shape == (n, h, w)
    single, info1 = letterbox(img[0], size, order=order, pad_value=-1.0)
    assert info1 == info
    np.testing.assert_array_equal(single, boxed[0])
    assert unletterbox(single, info1, order=order).shape == (h, w)


@pytest.mark.parametrize("shape,size", [((60, 150), 128), ((150, 60), 64), ((40, 30), 200)])
def test_letterbox_keeps_circles_round(shape, size):
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    r = min(h, w) * 0.4
    disc = ((y - (h - 1) / 2) ** 2 + (x - (w - 1) / 2) ** 2 <= r * r).astype(np.float32)
    boxed, info = letterbox(disc, size)
    ys, xs = np.nonzero(boxed > 0.5)
    height, width = np.ptp(ys) + 1, np.ptp(xs) + 1
    assert abs(height - width) <= 1
    ys0, xs0 = np.nonzero(disc)
    assert abs(height - (np.ptp(ys0) + 1) / info.scale) <= 2  # the size scales as expected
    # centred: the disc centre lands in the centre of the square (up to a pixel)
    assert abs(ys.mean() - (size - 1) / 2) <= 1 and abs(xs.mean() - (size - 1) / 2) <= 1


@pytest.mark.parametrize("shape,size", [((60, 150), 128), ((150, 60), 256), ((120, 90), 64)])
def test_letterbox_round_trip_smooth_image(shape, size):
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    smooth = (0.5 + 0.25 * np.sin(2 * np.pi * x / w) * np.cos(np.pi * y / h)).astype(np.float32)
    boxed, info = letterbox(smooth, size)
    back = unletterbox(boxed, info)
    assert back.shape == shape and back.dtype == np.float32
    assert np.abs(back - smooth).max() < 0.03
    assert np.abs(back - smooth).mean() < 0.005


def test_letterbox_exact_for_square_target_and_labels():
    img = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    boxed, info = letterbox(img, 64)
    np.testing.assert_array_equal(boxed, img)
    np.testing.assert_array_equal(unletterbox(boxed, info), img)
    labels = np.zeros((50, 80), np.uint8)
    labels[10:40, 10:30], labels[20:30, 50:70] = 1, 4
    boxed, info = letterbox(labels, 96, order=0)
    assert boxed.dtype == np.uint8 and set(np.unique(boxed)) == {0, 1, 4}
    back = unletterbox(boxed, info, order=0)
    assert back.dtype == np.uint8 and (back == labels).mean() > 0.98
    with pytest.raises(ValueError):
        unletterbox(np.zeros((50, 50)), info)
    with pytest.raises(ValueError):
        letterbox(img, 32, order=2)

