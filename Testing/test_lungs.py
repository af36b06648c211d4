"""Tests of COVIDSegLib.lungs.segment: training-free lung segmentation, sides, airways, geometry."""
from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib.errors import Cancelled
from COVIDSegLib.io.files import read_volume
from COVIDSegLib.labels import LEFT_LUNG, RIGHT_LUNG
from COVIDSegLib.lungs.segment import LungParams, segment_lungs
from COVIDSegLib.preprocess.intensity import to_hu
from COVIDSegLib.progress import CancelToken
from COVIDSegLib.volume import Volume

from chest_phantom import SPACING, TOP_TRACHEA_SLICES, ChestPhantom, chest_phantom

# MedSeg slices where >= 90 % of the expert infection mask currently lies inside the predicted
# lungs (measured on all 52: 40 reach 0.9; these have large masks, 21k..53k pixels, and 0.98..1.0).
MEDSEG_SUBSET = ("0000", "0011", "0025", "0029", "0051", "0053")

N_Y, N_X = 128, 128
S_X, S_Y, S_Z = SPACING


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


# Orientations of the same physical phantom: (direction, array-from-identity, back-to-identity,
# origin). The origin is chosen so that every voxel keeps its physical position.
ORIENTATIONS: Dict[str, tuple] = {
    "identity": ((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), lambda a: a, (0.0, 0.0, 0.0)),
    "x_flipped": ((-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), lambda a: a[:, :, ::-1], ((N_X - 1) * S_X, 0.0, 0.0)),
    "ras_like": ((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0), lambda a: a[:, ::-1, ::-1],
                 ((N_X - 1) * S_X, (N_Y - 1) * S_Y, 0.0)),
    "z_flipped": ((1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0), lambda a: a[::-1], (0.0, 0.0, 39 * S_Z)),
}


@pytest.fixture(scope="module")
def phantom() -> ChestPhantom:
    return chest_phantom()


@pytest.fixture(scope="module")
def segmented(phantom) -> Dict[str, tuple]:
    """Per orientation: (input volume, label volume, labels mapped back to identity indexing)."""
    out = {}
    for name, (direction, mirror, origin) in ORIENTATIONS.items():
        volume = Volume(array=np.ascontiguousarray(mirror(phantom.hu)), spacing=SPACING,
                        origin=origin, direction=direction)
        labels = segment_lungs(volume)
        out[name] = (volume, labels, np.ascontiguousarray(mirror(labels.array)))  # mirror is its own inverse
    return out


def lps_x_of(mask: np.ndarray, volume: Volume) -> float:
    """Mean physical LPS x (mm) of a (z, y, x) mask in ``volume``'s geometry."""
    zyx = np.nonzero(mask)
    idx = np.stack([a.astype(float) for a in zyx[::-1]])  # (x, y, z) rows
    points = np.asarray(volume.origin)[:, None] + volume.direction_matrix @ (idx * np.asarray(volume.spacing)[:, None])
    return float(points[0].mean())


def test_phantom_is_one_air_component(phantom):
    """The premise of the airway test: trachea, bronchi and both lungs are connected."""
    air = sitk.ConnectedComponent(sitk.GetImageFromArray((phantom.hu < -250).astype(np.uint8) & phantom.body))
    labels = sitk.GetArrayFromImage(air)
    lung_label = labels[phantom.lungs["left"] & ~phantom.blob][0]
    assert np.all(labels[phantom.trachea] == lung_label)
    assert np.all(labels[phantom.lungs["right"]] == lung_label)
    assert not np.any(phantom.lungs["left"][TOP_TRACHEA_SLICES] | phantom.lungs["right"][TOP_TRACHEA_SLICES])


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_phantom_lungs(segmented, phantom, orientation):
    volume, labels, back = segmented[orientation]
    # Output geometry is exactly the input's.
    assert labels.array.shape == volume.array.shape and labels.array.dtype == np.uint8
    assert labels.spacing == volume.spacing and labels.origin == volume.origin
    assert labels.direction == volume.direction
    assert set(np.unique(labels.array)) == {0, LEFT_LUNG, RIGHT_LUNG}
    # The patient's left lung (higher physical LPS x) is label 1, whatever the index order.
    assert lps_x_of(labels.array == LEFT_LUNG, volume) > lps_x_of(labels.array == RIGHT_LUNG, volume)
    assert dice(back == LEFT_LUNG, phantom.lungs["left"]) >= 0.9
    assert dice(back == RIGHT_LUNG, phantom.lungs["right"]) >= 0.9
    # The consolidation against the lateral wall is inside the left lung.
    assert np.mean(back[phantom.blob] == LEFT_LUNG) >= 0.95
    # The trachea is airway, not lung; nothing outside the body (air, table) is labelled.
    assert not np.any(back[TOP_TRACHEA_SLICES][phantom.trachea[TOP_TRACHEA_SLICES]])
    assert np.mean(back[phantom.trachea] > 0) < 0.05
    assert not np.any(back[~phantom.body])
    assert not np.any(back[phantom.table])


def test_identity_orientation_left_is_higher_column(segmented):
    _, labels, _ = segmented["identity"]
    cols_left = np.nonzero(labels.array == LEFT_LUNG)[2]
    cols_right = np.nonzero(labels.array == RIGHT_LUNG)[2]
    assert cols_left.min() > 64 > cols_right.max()


@pytest.mark.parametrize("orientation", ["x_flipped", "ras_like", "z_flipped"])
def test_result_does_not_depend_on_index_order(segmented, orientation):
    """The same physical image stored in another index order gives the same physical labels."""
    np.testing.assert_array_equal(segmented[orientation][2], segmented["identity"][2])


def test_airway_removal_and_bite_closing_are_what_make_the_phantom_pass(phantom):
    """Guards the phantom itself: without these steps the assertions above would fail."""
    volume = Volume(array=phantom.hu, spacing=SPACING)
    no_airways = segment_lungs(volume, params=LungParams(airway_thresholds_hu=(-2000.0,))).array
    assert np.mean(no_airways[phantom.trachea] > 0) > 0.5
    no_bites = segment_lungs(volume, params=LungParams(close_bites=False)).array
    assert np.mean(no_bites[phantom.blob] > 0) < 0.5


# ----------------------------------------------------------------------------- real data


def body_area_per_slice(hu: np.ndarray) -> np.ndarray:
    """Pixels of the largest > -500 HU component per slice, holes filled (the patient + table)."""
    areas = []
    for z in range(hu.shape[0]):
        mask = sitk.GetImageFromArray((hu[z] > -500).astype(np.uint8))
        largest = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True) == 1
        areas.append(int(sitk.GetArrayFromImage(sitk.BinaryFillhole(largest)).sum()))
    return np.array(areas)


def test_real_dicom_lungs(shared_data):
    volume = read_volume(shared_data / "chest-ct-dicom")
    labels = segment_lungs(volume)
    assert labels.same_geometry(volume, tol=0) and labels.array.dtype == np.uint8
    assert set(np.unique(labels.array)) == {0, LEFT_LUNG, RIGHT_LUNG}
    assert lps_x_of(labels.array == LEFT_LUNG, volume) > lps_x_of(labels.array == RIGHT_LUNG, volume)
    body = body_area_per_slice(volume.array)
    for z in range(volume.shape[0]):
        for side in (LEFT_LUNG, RIGHT_LUNG):
            share = np.count_nonzero(labels.array[z] == side) / body[z]
            assert 0.05 <= share <= 0.40, (z, side, share)
        # Lung voxels are mostly air-like tissue, not soft tissue.
        assert np.median(volume.array[z][labels.array[z] > 0]) < -500


def read_mask(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0


@pytest.mark.parametrize("slice_id", MEDSEG_SUBSET)
def test_medseg_infection_lies_inside_the_lungs(shared_data, slice_id):
    volume = read_volume(shared_data / "medseg100" / "images" / f"{slice_id}.png")
    labels = segment_lungs(volume)
    assert labels.same_geometry(volume, tol=0)
    lab = labels.array[0]
    assert set(np.unique(lab)) == {0, LEFT_LUNG, RIGHT_LUNG}
    infection = read_mask(shared_data / "medseg100" / "masks" / f"{slice_id}.png")
    assert infection.sum() > 10_000
    assert np.mean(lab[infection] > 0) >= 0.9
    # Radiological display: the patient's left is on the image's right (higher column).
    assert np.nonzero(lab == LEFT_LUNG)[1].mean() > np.nonzero(lab == RIGHT_LUNG)[1].mean()
    # Each lung is a plausible share of the body (not a sliver, not the whole patient).
    body = body_area_per_slice(to_hu(volume).array)[0]
    for side in (LEFT_LUNG, RIGHT_LUNG):
        assert 0.05 <= np.count_nonzero(lab == side) / body <= 0.40


# ----------------------------------------------------------------------------- progress, cancel


def test_progress_reports_increasing_counts(phantom):
    calls = []
    segment_lungs(Volume(array=phantom.hu, spacing=SPACING), progress=lambda d, t, m="": calls.append((d, t, m)))
    assert len(calls) >= 3
    done = [d for d, _, _ in calls]
    totals = {t for _, t, _ in calls}
    assert done == sorted(done) and len(set(done)) == len(done)  # strictly increasing
    assert len(totals) == 1 and done[0] == 0 and done[-1] == totals.pop()
    assert all(isinstance(m, str) for _, _, m in calls)


def test_cancelled_beforehand_raises(phantom):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        segment_lungs(Volume(array=phantom.hu, spacing=SPACING), cancel=token)


def test_cancel_during_the_work_stops_it(phantom):
    token = CancelToken()
    calls = []

    def progress(done: int, total: int, message: str = "") -> None:
        calls.append((done, total))
        if done == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        segment_lungs(Volume(array=phantom.hu, spacing=SPACING), progress=progress, cancel=token)
    assert calls and all(done < total for done, total in calls)  # never reached "done"


@pytest.mark.parametrize("seed", range(4))
def test_cropped_inplane_morphology_equals_whole_image(seed):
    """closing_inplane / dilate_inplane work on the mask's bounding box; results must equal the
    whole-image SimpleITK operations, also for masks touching the image border."""
    import SimpleITK as sitk

    from COVIDSegLib import morphology as morph
    rng = np.random.default_rng(seed)
    mask = np.zeros((4, 60, 70), bool)
    mask[1:3, rng.integers(0, 20):rng.integers(30, 60), rng.integers(0, 20):rng.integers(40, 70)] = True
    mask &= rng.random(mask.shape) > 0.3
    img = sitk.GetImageFromArray(np.pad(mask, ((0, 0), (4, 4), (4, 4))).astype(np.uint8))
    closed = sitk.GetArrayFromImage(sitk.BinaryMorphologicalClosing(img, [3, 3, 0], sitk.sitkBall))[:, 4:-4, 4:-4] > 0
    np.testing.assert_array_equal(morph.closing_inplane(mask, 3), closed)
    dilated = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)), [5, 5, 0])) > 0
    np.testing.assert_array_equal(morph.dilate_inplane(mask, 5), dilated)
    assert dilated.sum() > mask.sum() and not morph.dilate_inplane(np.zeros_like(mask), 5).any()


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_rectangle_decomposed_ball_morphology_equals_simpleitk(radius):
    import SimpleITK as sitk

    from COVIDSegLib import morphology as morph
    mask = np.random.default_rng(radius).random((3, 40, 50)) > 0.4
    mask[:, :5] = True  # foreground touching the border: erosion counts outside as foreground
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    for op, fn in ((sitk.BinaryErode, morph.erode_2d), (sitk.BinaryDilate, morph.dilate_2d)):
        expected = sitk.GetArrayFromImage(op(img, [radius, radius, 0], sitk.sitkBall)) > 0
        np.testing.assert_array_equal(fn(mask, radius), expected)
        np.testing.assert_array_equal(fn(mask[1], radius), expected[1])


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_opening_inplane_equals_simpleitk(radius):
    import SimpleITK as sitk

    from COVIDSegLib import morphology as morph
    rng = np.random.default_rng(radius)
    mask = rng.random((3, 50, 60)) > 0.35
    mask[:, :3] = True
    expected = sitk.GetArrayFromImage(sitk.BinaryMorphologicalOpening(
        sitk.GetImageFromArray(mask.astype(np.uint8)), [radius, radius, 0], sitk.sitkBall)) > 0
    np.testing.assert_array_equal(morph.opening_inplane(mask, radius), expected)
    assert expected.sum() < mask.sum()


def test_fill_holes_per_slice_equals_simpleitk_per_slice():
    import SimpleITK as sitk

    from COVIDSegLib import morphology as morph
    rng = np.random.default_rng(5)
    mask = np.zeros((3, 40, 50), bool)
    mask[0, 5:30, 8:40] = rng.random((25, 32)) > 0.25   # many small holes and bays
    mask[1, 0:20, 30:50] = True                          # touches the image border
    mask[1, 5:8, 49] = False                             # a bay open to the border: not a hole
    mask[1, 10:12, 40:42] = False                        # a hole
    expected = np.stack([sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(m.astype(np.uint8)))) > 0
                         for m in mask])
    np.testing.assert_array_equal(morph.fill_holes_per_slice(mask), expected)
    assert expected[1, 10:12, 40:42].all() and not expected[1, 5:8, 49].any() and not expected[2].any()


def test_small_components_with_many_components():
    """uint16 labelling falls back to int32 beyond 65535 components; sizes are face-connected."""
    from COVIDSegLib.morphology import small_components
    many = np.zeros((1, 600, 600), bool)
    many[0, ::2, ::2] = True  # 90000 isolated voxels
    assert small_components(many, 2).sum() == many.sum()
    mask = np.zeros((2, 10, 10), bool)
    mask[0, 1:4, 1:4] = True   # 9 voxels
    mask[1, 7, 7] = True       # 1 voxel
    mask[1, 2, 2] = True       # touches the 9 through the face below: 10 voxels
    small = small_components(mask, 5)
    assert small.sum() == 1 and small[1, 7, 7]


def _hull_reference(mask: np.ndarray) -> np.ndarray:
    """Independent formulation: Andrew's monotone chain on every mask pixel, then the half-plane
    test of every pixel centre against each hull edge (exact in integers)."""
    pts = sorted(set((int(x), int(y)) for y, x in zip(*np.nonzero(mask))))
    if not pts:
        return np.zeros(mask.shape, bool)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(seq):
        chain = []
        for p in seq:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain
    hull = pts if len(pts) < 3 else half(pts)[:-1] + half(pts[::-1])[:-1]
    yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
    inside = np.ones(mask.shape, bool)
    for a, b in zip(hull, hull[1:] + hull[:1]):
        inside &= (b[0] - a[0]) * (yy - a[1]) - (b[1] - a[1]) * (xx - a[0]) >= 0
    ys, xs = np.nonzero(mask)  # a degenerate (2-vertex) hull is a line: keep its segment
    inside &= (yy >= ys.min()) & (yy <= ys.max()) & (xx >= xs.min()) & (xx <= xs.max())
    return inside | mask


def test_convex_hull_matches_an_independent_formulation():
    from COVIDSegLib.morphology import convex_hull_2d
    rng = np.random.default_rng(11)
    cases = [rng.random((30, 40)) > 0.97 for _ in range(40)]
    cases += [np.eye(12, dtype=bool), np.eye(12, dtype=bool)[:, ::-1], np.zeros((5, 6), bool)]
    line = np.zeros((9, 9), bool)
    line[2:7, 4] = True
    single = np.zeros((4, 4), bool)
    single[1, 2] = True
    cases += [line, single]
    from test_preprocess import SAMPLE_CT
    lungs = segment_lungs(read_volume(SAMPLE_CT)).array
    cases += [lungs[z] == side for z in range(len(lungs)) for side in (1, 2)]
    phantom = chest_phantom()
    cases += [m for m in phantom.lungs["left"][::5] if m.any()]  # the blob's bite included
    for mask in cases:
        np.testing.assert_array_equal(convex_hull_2d(mask), _hull_reference(mask))


@pytest.mark.parametrize("name", ["lungmask_chest_ct_2slices.nii.gz", "medseg_0000.png"])
def test_resampling_stored_voxels_first_gives_the_same_lungs(name):
    """segment_lungs resamples the stored voxels (slab by slab, unrounded) and converts the coarse
    grid to HU, instead of converting the whole volume first: the same lungs."""
    from pathlib import Path

    from COVIDSegLib.lungs.segment import _segment_grid
    from COVIDSegLib.preprocess.transforms import resample_inplane, restore_inplane
    from COVIDSegLib.progress import no_progress
    volume = read_volume(Path(__file__).resolve().parents[1] / "Resources" / "Samples" / name)
    if name.endswith(".png"):
        volume.spacing = (0.7, 0.7, 1.0)  # a fine grid, so that the working grid is used
    params = LungParams()
    coarse, info = resample_inplane(to_hu(volume), params.working_pixel_mm, "linear")
    expected = restore_inplane(coarse.with_array(_segment_grid(coarse, params, no_progress, None)), info, nearest=True)
    lungs = segment_lungs(volume).array
    np.testing.assert_array_equal(lungs, expected.array)
    assert (lungs == LEFT_LUNG).any() and (lungs == RIGHT_LUNG).any()
