"""The lung model's intensity space, grouped folds, and the 3D post-processing (synthetic HU)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from COVIDSegLib.labels import LEFT_LUNG, RIGHT_LUNG
from COVIDSegLib.lungs.lungs3d import lungs_from_mask, outside_air
from COVIDSegLib.preprocess.lung_space import SIZE, clahe_opencv, to_lung_space
from COVIDSegLib.training.crossval import group_kfold

# sha256 of cv2.createCLAHE(...).apply(image) (opencv-python-headless 5.0.0) for ``_clahe_image``
OPENCV_CLAHE_7_8 = "d5dab38dd52ed7849d918d2e0cda96cb8c9fbb909e49dee9e82125c59d9a1888"
OPENCV_CLAHE_2_4 = "d639ead1018f639cb3037e50ae5c377fb752b4acc6944d9aca6c05f0e2f8c401"


def _clahe_image() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.random((64, 96)) * 60 + np.linspace(0, 150, 96)[None]).astype(np.uint8)


@pytest.mark.parametrize("clip, tiles, digest", [(7.0, 8, OPENCV_CLAHE_7_8), (2.0, 4, OPENCV_CLAHE_2_4)])
def test_clahe_is_opencvs_bit_for_bit(clip, tiles, digest):
    out = clahe_opencv(_clahe_image(), clip, tiles)
    assert hashlib.sha256(out.tobytes()).hexdigest() == digest


def test_clahe_matches_opencv_on_random_images_when_installed():
    cv2 = pytest.importorskip("cv2", reason="opencv is only a cross-check here, not a dependency")
    rng = np.random.default_rng(0)
    for _ in range(5):
        image = (rng.integers(0, 256, (128, 128)) // rng.integers(1, 8)).astype(np.uint8)
        expected = cv2.createCLAHE(clipLimit=7.0, tileGridSize=(8, 8)).apply(image)
        np.testing.assert_array_equal(clahe_opencv(image), expected)


def test_lung_space_ignores_padding_values_and_keeps_shape():
    hu = np.full((100, 140), -1024.0)
    hu[20:80, 20:120] = 40.0
    hu[30:70, 30:60] = -850.0
    a, info = to_lung_space(hu, is_hu=True)
    padded = hu.copy()
    padded[:5] = -2048.0  # outside the field of view
    b, _ = to_lung_space(padded, is_hu=True)
    assert a.shape == (SIZE, SIZE) and a.dtype == np.float32 and info.shape == (100, 140)
    assert np.array_equal(a, b)  # -2048 is clipped to -1024: the same image


def test_a_cut_lung_runs_on_into_the_letterbox_padding():
    """A non-square slice is padded by repeating its edge columns: a body cut by the right edge runs
    on beyond it, chest wall bright and lung dark, instead of meeting air padding there."""
    hu = np.full((140, 100), -1024.0)
    hu[10:130, 10:] = 40.0  # the body, cut by the right edge
    hu[30:110, 60:] = -850.0  # a lung, cut too
    a, info = to_lung_space(hu, is_hu=True)
    right_pad = a[:, info.left + info.width:]
    assert info.left > 10 and right_pad.shape[1] > 10
    y = lambda r: int(info.top + r / info.scale)  # noqa: E731 (original row -> letterbox row)
    wall, lung = right_pad[y(15):y(25)], right_pad[y(50):y(90)]
    assert wall.min() > 128 and lung.max() < 0.5 * wall.min()
    assert a[:, :info.left].max() < 0.5 * wall.min()  # the uncut left edge is air, as before


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=12, max_size=60), st.integers(2, 4), st.integers(0, 5))
def test_group_folds_never_split_a_patient(groups, k, seed):
    if len(set(groups)) < k:
        return
    folds = group_kfold(groups, k, seed)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(groups)))  # every slice tested once
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}


# ----------------------------------------------------------------------------- 3D post-processing
SPACING_ZYX = (3.0, 2.0, 2.0)


def chest_with_abdomen():
    """(hu, model-like mask, true lungs): z 0-9 abdomen, z 10-29 thorax; lungs x 5-40 (patient's
    right, low LPS x) and x 60-95; a gas-filled bowel loop walled by tissue under the left lung
    that the mask bridges into; a kidney-like airless piece the mask spilled into; a lone gas
    pocket deep in the abdomen."""
    z, y, x = np.mgrid[0:30, 0:80, 0:100]
    hu = np.full(z.shape, 40.0)
    hu[:, :, :2] = hu[:, :, -2:] = -1000.0  # air outside the body at the sides
    right = (z >= 10) & (((y - 40) / 30.0) ** 2 + ((x - 22) / 17.0) ** 2 <= 1)
    left = (z >= 12) & (((y - 40) / 30.0) ** 2 + ((x - 78) / 17.0) ** 2 <= 1)
    hu[right | left] = -850.0
    bowel = (z >= 4) & (z <= 12) & (((y - 25) / 8.0) ** 2 + ((x - 75) / 8.0) ** 2 <= 1)
    hu[bowel] = -1000.0
    kidney = (z >= 3) & (z <= 12) & (((y - 60) / 6.0) ** 2 + ((x - 30) / 6.0) ** 2 <= 1)
    deep_gas = (z <= 2) & (((y - 40) / 5.0) ** 2 + ((x - 50) / 5.0) ** 2 <= 1)
    hu[deep_gas] = -1000.0
    mask = right | left | bowel | kidney | deep_gas | ((z == 12) & (np.abs(x - 75) < 3) & (np.abs(y - 33) < 3))
    return hu, mask, {"right": right, "left": left}


def _x_mm(shape, flip: bool = False):
    x = np.arange(shape[2]) * SPACING_ZYX[2]
    return (x[::-1] if flip else x)[None, None, :]


def test_gas_tissue_and_abdomen_are_not_lung():
    hu, mask, truth = chest_with_abdomen()
    labels = lungs_from_mask(mask, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX)
    lungs = labels > 0
    assert not lungs[:10].any()  # nothing below the lungs' bases: bowel, kidney, deep gas gone
    for side, value in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        found = labels == value
        dice = 2 * (found & truth[side]).sum() / (found.sum() + truth[side].sum())
        assert dice >= 0.95, side


def test_lungs_touching_the_image_edge_are_kept():
    hu, mask, truth = chest_with_abdomen()
    cropped = (slice(None), slice(15, 65), slice(8, 92))  # lungs cut by every side of the image
    labels = lungs_from_mask(mask[cropped], hu[cropped], _x_mm(hu[cropped].shape),
                             np.zeros(hu[cropped].shape, bool), SPACING_ZYX)
    for side, value in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        kept = (labels == value) & truth[side][cropped]
        assert kept.sum() >= 0.95 * truth[side][cropped].sum()
        assert (labels == value)[:, :, [0, -1]].any() or (labels == value)[:, [0, -1]].any()


def test_air_around_the_body_taken_by_the_mask_is_not_lung():
    """A mask that also covers a patch of the air beside the body (as the lung model did on a
    MedSeg slice) keeps the lungs and loses the air, while an emphysematous lung (60 % of it
    below -950 HU, walled by the chest wall) stays."""
    hu, mask, truth = chest_with_abdomen()
    air = np.random.default_rng(1).normal(-1010.0, 50.0, hu[:, :8].shape)
    hu[:, :8, :] = air  # noisy air in front of the body, joined to the image border
    patch = (np.arange(30)[:, None, None] >= 5) & (np.arange(80)[None, :, None] < 5) \
        & (np.abs(np.arange(100) - 50)[None, None, :] < 45)  # as big as half a lung
    emphysema = truth["left"] & (np.random.default_rng(0).random(hu.shape) < 0.6)
    hu[emphysema] = -980.0  # mostly pure gas, but enclosed by the chest wall
    labels = lungs_from_mask(mask | patch, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX)
    assert not (labels[patch] > 0).any()
    for side, value in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        assert (labels[truth[side]] == value).mean() > 0.95, side


def test_lung_dense_material_around_a_body_in_view_is_not_lung_but_a_cut_body_sets_no_bound():
    """A cushion under the back (-870 HU, as dense as lung, not pure gas) that the mask took with
    the lungs is dropped when the body lies wholly in view (the body, its holes filled, bounds the
    lungs); when the field of view (a round one, or the image border) cuts the body, no bound is set
    and the lungs stay whole."""
    z, y, x = np.mgrid[0:30, 0:90, 0:110]
    hu = np.random.default_rng(2).normal(-1000.0, 20.0, z.shape)  # measured air is noisy, padding flat
    body = ((y - 40) / 36.0) ** 2 + ((x - 55) / 50.0) ** 2 <= 1
    hu[body] = 40.0
    truth = {"right": (z >= 10) & (((y - 40) / 26.0) ** 2 + ((x - 30) / 17.0) ** 2 <= 1),
             "left": (z >= 10) & (((y - 40) / 26.0) ** 2 + ((x - 80) / 17.0) ** 2 <= 1)}
    hu[truth["right"] | truth["left"]] = -850.0
    cushion = (z >= 10) & ~body & (y >= 70) & (y <= 80) & (x >= 5) & (x <= 50)
    hu[cushion] = -870.0
    mask = truth["right"] | truth["left"] | (cushion & (x <= 30))
    labels = lungs_from_mask(mask, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX)
    assert not (labels[cushion] > 0).any()
    for side, value in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        assert (labels[truth[side]] == value).mean() > 0.9, side
    fov = ((y - 45) ** 2 + (x - 55) ** 2 > 38 ** 2)  # a round field of view cutting both lungs
    labels = lungs_from_mask(mask & ~fov, np.where(fov, -2048.0, hu), _x_mm(hu.shape), np.zeros(hu.shape, bool),
                             SPACING_ZYX)
    for side, value in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        assert (labels[truth[side] & ~fov] == value).mean() > 0.9, side
    cut = (slice(None), slice(20, 60), slice(22, 88))  # both lungs and the body cut by every side
    labels = lungs_from_mask(mask[cut], hu[cut], _x_mm(hu[cut].shape), np.zeros(hu[cut].shape, bool), SPACING_ZYX)
    for side, value in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        assert (labels[truth[side][cut]] == value).mean() > 0.9, side


def test_outside_air_is_the_gas_joined_to_the_border_within_each_slice():
    hu = np.full((2, 20, 20), 40.0)
    hu[:, :3] = -1000.0   # around the body
    hu[:, 8:12, 8:12] = -1000.0  # enclosed gas (bowel, trachea)
    hu[1, :, 17:] = -1000.0  # slice 1 only: air at the side
    out = outside_air(hu, -950.0)
    assert out[:, :3].all() and not out[:, 8:12, 8:12].any()
    assert out[1, :, 17:].all() and not out[0, 5:, 17:].any()


def test_sides_follow_patient_coordinates():
    """The same voxels with the x axis pointing to the patient's right swap the side labels."""
    hu, mask, _ = chest_with_abdomen()
    plain = lungs_from_mask(mask, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX)
    mirrored = lungs_from_mask(mask, hu, _x_mm(hu.shape, flip=True), np.zeros(hu.shape, bool), SPACING_ZYX)
    swapped = np.where(plain == 1, 2, np.where(plain == 2, 1, 0))
    np.testing.assert_array_equal(mirrored, swapped)


def test_lungs_joined_at_the_anterior_junction_are_split():
    hu, mask, truth = chest_with_abdomen()
    bridge = (np.arange(30)[:, None, None] >= 14) & (np.abs(np.arange(80) - 12)[None, :, None] < 3) \
        & (np.abs(np.arange(100) - 50)[None, None, :] < 14)
    hu[bridge] = -850.0
    labels = lungs_from_mask(mask | bridge, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX)
    assert (labels[truth["left"]] == LEFT_LUNG).mean() > 0.97
    assert (labels[truth["right"]] == RIGHT_LUNG).mean() > 0.97


def test_no_mask_gives_no_lungs():
    hu, _, _ = chest_with_abdomen()
    empty = np.zeros(hu.shape, bool)
    assert not lungs_from_mask(empty, hu, _x_mm(hu.shape), empty, SPACING_ZYX).any()


def test_flat_tissue_like_padding_becomes_air():
    """A round field of view padded with 0 instead of air looks like -1024 padding to the model."""
    y, x = np.mgrid[0:128, 0:128]
    inside = (y - 64) ** 2 + (x - 64) ** 2 < 60 ** 2
    body = np.where(((y - 64) / 40.0) ** 2 + ((x - 64) / 50.0) ** 2 < 1, 40.0, -1000.0)
    body[(np.abs(y - 64) < 15) & (np.abs(x - 45) < 10)] = -850.0
    air_pad, zero_pad = (np.where(inside, body, pad) for pad in (-1024.0, 0.0))
    np.testing.assert_array_equal(to_lung_space(zero_pad, True)[0], to_lung_space(air_pad, True)[0])
    from COVIDSegLib.preprocess.lung_space import unpad
    mixed = zero_pad.copy()
    mixed[0, 0] = -1000.0  # corners that are not one flat value: left as they are
    np.testing.assert_array_equal(unpad(mixed), mixed)


def test_thin_basal_crescent_missed_by_the_mask_is_grown_into():
    """The mask stops 3 slices above the true base; the aerated crescent below belongs to the lung."""
    hu, mask, truth = chest_with_abdomen()
    short = mask & (np.arange(30)[:, None, None] >= 13)
    labels = lungs_from_mask(short, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX)
    found = labels == RIGHT_LUNG
    assert found[10:13][truth["right"][10:13]].mean() > 0.95  # the base slices regained
    assert not (labels > 0)[:10].any()  # not into the bowel gas or below the lungs


def test_growth_stops_at_tissue_and_airways_and_can_be_off():
    hu, mask, truth = chest_with_abdomen()
    short = mask & (np.arange(30)[:, None, None] >= 13)
    airway = np.zeros(hu.shape, bool)
    airway[10:13] = truth["right"][10:13]  # declared airway: never grown into
    labels = lungs_from_mask(short, hu, _x_mm(hu.shape), airway, SPACING_ZYX)
    assert not (labels[10:13] == RIGHT_LUNG).any()
    from COVIDSegLib.lungs.lungs3d import Lungs3DParams
    none = lungs_from_mask(short, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX,
                           Lungs3DParams(grow=False))
    assert not (none[10:13] == RIGHT_LUNG).any()  # growth off: the mask as it was
    assert set(np.unique(labels[hu > -400.0])) <= {0}  # tissue (40 HU) never added


def test_partial_volume_rim_is_peeled_but_consolidation_and_image_edges_are_kept():
    """The mask overshoots the lungs by one voxel of partial-volume tissue (-100 HU) all round; a
    consolidation (+30 HU) 4 voxels deep lies against the chest wall; the left lung is cut by the
    image edge, where dense voxels are not a boundary."""
    hu, mask, truth = chest_with_abdomen()
    lungs = truth["right"] | truth["left"]
    from scipy import ndimage
    rim = ndimage.binary_dilation(lungs, ndimage.generate_binary_structure(3, 1)) & ~lungs & (hu > 0)
    hu[rim] = -100.0
    consolidation = truth["right"] & (np.arange(100)[None, None, :] < 9)  # its lateral 4 voxels
    hu[consolidation] = 30.0
    labels = lungs_from_mask(mask | rim, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX)
    above_kidney = np.arange(30)[:, None, None] >= 13  # below, the kidney the mask spilled into covers some rim
    assert not (labels > 0)[rim & above_kidney].any()  # the rim is gone
    inner = consolidation & ndimage.binary_erosion(truth["right"], ndimage.generate_binary_structure(3, 1))
    assert (labels[inner] == RIGHT_LUNG).all()  # consolidation loses at most its outermost voxels
    from COVIDSegLib.lungs.lungs3d import Lungs3DParams, peel_partial_volume_rim
    cut = (mask | rim)[:, :, :60]  # the image edge cuts the left lung and its rim
    np.testing.assert_array_equal(peel_partial_volume_rim(cut, np.full(cut.shape, 40.0), Lungs3DParams())[:, :, -1],
                                  cut[:, :, -1])  # dense voxels on the image edge are not a boundary
    off = lungs_from_mask(mask | rim, hu, _x_mm(hu.shape), np.zeros(hu.shape, bool), SPACING_ZYX,
                          Lungs3DParams(peel_rim=False))
    assert (off > 0)[rim & above_kidney].mean() > 0.5  # off: the rim stays


def _base_tip(slices_above: int, tip_slices: int = 4, gas_beside: bool = False):
    """Soft tissue with a 0.6 mL aerated lung-base tip (4 slices of 6 x 8 voxels at 2 x 1.25 x
    1.25 mm) under ``slices_above`` further slices of the scan: the tip of a lung cut by the scan;
    with ``gas_beside``, pure gas along one side (a sliver of bowel wall beside its lumen)."""
    n = 6 + tip_slices + slices_above
    hu = np.full((n, 40, 40), 40.0)
    mask = np.zeros(hu.shape, bool)
    mask[6:6 + tip_slices, 20:26, 10:18] = True
    hu[mask] = -800.0
    if gas_beside:
        hu[6:6 + tip_slices, 26:32, 10:18] = -1000.0
    return hu, mask


@pytest.mark.parametrize("slices_above, tip_slices, gas_beside, kept",
                         [(0, 4, False, True), (4, 4, False, False), (0, 2, False, False), (0, 4, True, False)])
def test_a_small_lung_tip_is_kept_only_where_the_scan_cuts_it(slices_above, tip_slices, gas_beside, kept):
    """Under the 1 mL noise floor, a piece is still lung when the scan's last slice cuts it over
    at least 3 slices (a lung base seen in an abdominal scan), not when it lies wholly in the scan,
    shows on only 2 slices, or borders pure gas (bowel)."""
    spacing = (2.0, 1.25, 1.25)
    hu, mask = _base_tip(slices_above, tip_slices, gas_beside)
    labels = lungs_from_mask(mask, hu, (np.arange(40) * 1.25)[None, None, :], np.zeros(hu.shape, bool), spacing)
    assert (labels > 0).any() == kept
    flipped = lungs_from_mask(mask[::-1], hu[::-1], (np.arange(40) * 1.25)[None, None, :],
                              np.zeros(hu.shape, bool), spacing)  # an apex cut by the first slice
    assert (flipped > 0).any() == kept
