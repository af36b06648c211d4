"""Quantification on synthetic label maps with answers known exactly from the spacing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from COVIDSegLib.quantify.measure import grade, quantify, report_rows, side_of_each_voxel, zone_score
from COVIDSegLib.quantify.plausibility import Limits
from COVIDSegLib.volume import Volume

IDENTITY = (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
# The phantoms' lungs are millilitres tall and small: their grading arithmetic is tested without
# the adult-size check (``not_gradable_reason``), which has its own test.
PHANTOM = Limits(lung_ml=(0.0, 5000.0), min_height_mm=0.0)


def two_lungs(z: int = 30) -> np.ndarray:
    a = np.zeros((z, 20, 60), np.uint8)
    a[:, 5:15, 2:18] = 2   # right lung: image left (patient's right)
    a[:, 5:15, 42:58] = 1  # left lung, 24 pixels of "mediastinum" away
    return a


def vol(a, spacing=(0.5, 0.5, 2.0), direction=IDENTITY) -> Volume:
    return Volume(a, spacing, (0.0, 0.0, 0.0), direction, "HU")


def whole(a: np.ndarray) -> np.ndarray:
    """The label map with an empty slice above and below: the scan holds the whole lungs."""
    return np.pad(a, ((1, 1), (0, 0), (0, 0)))


def test_volumes_and_involvement_are_exact():
    a = two_lungs()
    a[20:30, 5:15, 42:50] = 3   # GGO in the left lung's top 10 slices: 800 voxels
    a[0:5, 5:15, 2:10] = 4      # consolidation in the right lung's bottom 5 slices: 400 voxels
    r = quantify(vol(whole(a)), limits=PHANTOM)
    voxel = 0.5 * 0.5 * 2.0 / 1000
    assert r.voxel_ml == pytest.approx(voxel)
    assert r.lungs["left"].lung_ml == pytest.approx(30 * 10 * 16 * voxel)
    assert r.lungs["left"].ggo_ml == pytest.approx(800 * voxel)
    assert r.lungs["right"].consolidation_ml == pytest.approx(400 * voxel)
    assert r.lungs["left"].involvement_percent == pytest.approx(100 * 800 / 4800)
    assert r.both_involvement_percent == pytest.approx(100 * 1200 / 9600)
    assert r.grade == "CT-1" and r.grade_word == "mild"


def test_zones_follow_physical_height_not_array_order():
    a = two_lungs()
    a[20:30, 5:15, 42:58] = 3   # the whole top third (by index) of the left lung
    a = whole(a)
    up = quantify(vol(a), limits=PHANTOM)
    assert up.lungs["left"].zones["upper"]["involvement_percent"] == pytest.approx(100.0)
    assert up.lungs["left"].zones["lower"]["involvement_percent"] == 0
    flipped_z = (1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0)  # index z now runs downwards
    down = quantify(vol(a, direction=flipped_z), limits=PHANTOM)
    assert down.lungs["left"].zones["lower"]["involvement_percent"] == pytest.approx(100.0)
    assert down.lungs["left"].zones["upper"]["score"] == 0
    assert up.total_severity_score == down.total_severity_score == 5


def test_infection_outside_the_lung_labels_counts_for_its_side_of_the_midline():
    a = two_lungs()
    a[:, 16:19, 46:50] = 4      # below the left lung, outside both lung labels
    side = side_of_each_voxel(vol(a))
    assert (side[:, 16:19, 46:50] == 1).all()
    r = quantify(vol(a))
    assert r.lungs["left"].consolidation_ml > 0 and r.lungs["right"].consolidation_ml == 0
    mirrored = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)  # index x now runs towards the patient's right
    b = np.where(a == 1, 2, np.where(a == 2, 1, a)).astype(np.uint8)
    assert (side_of_each_voxel(vol(b, direction=mirrored))[:, 16:19, 46:50] == 2).all()


def test_empty_and_healthy_maps():
    r = quantify(vol(np.zeros((3, 8, 8), np.uint8)))
    assert r.both_lung_ml == 0 and r.grade == "not gradable" and r.total_severity_score is None
    assert "left lung not found" in r.warnings and "right lung not found" in r.warnings
    r = quantify(vol(whole(two_lungs())), limits=PHANTOM)
    assert r.both_involvement_percent == 0 and r.grade == "CT-0" and r.gradable
    assert {row["region"] for row in report_rows(r)} >= {"left lung", "right upper", "both lungs"}


def test_partial_coverage_is_not_gradable_and_says_why():
    """Lung on the first or last slice: apex or bases are not in the scan, no grade is given."""
    a = two_lungs()
    a[20:30, 5:15, 42:50] = 3
    r = quantify(vol(a))  # lungs from the first to the last slice
    assert r.grade == "not gradable" and r.total_severity_score is None and not r.gradable
    assert r.warnings[0] == "not gradable: partial lung coverage, 60 mm (apex and bases not in the scan)"
    assert r.lungs["left"].involvement_percent == pytest.approx(100 * 800 / 4800)  # what was seen
    zones = [z for f in r.lungs.values() for z in f.zones.values()]  # thirds of what was seen: no zones
    assert all(z["involvement_percent"] is None and z["score"] is None and z["lung_ml"] > 0 for z in zones)
    top_only = np.pad(a, ((1, 0), (0, 0), (0, 0)))  # an empty slice below: bases in the scan
    assert "(apex not in the scan)" in quantify(vol(top_only)).grade_word
    one_slice = quantify(vol(a[:1]))
    assert one_slice.grade == "not gradable" and one_slice.coverage["extent_mm"] == 2.0


def _chest_hu(a: np.ndarray) -> np.ndarray:
    """HU for a label map: lungs -850 in tissue, air in front and behind (3 voxels of chest wall
    between); the image's left and right edges are tissue, 2 voxels from the lungs."""
    hu = np.full(a.shape, -1000, np.int16)
    hu[:, 2:18, :] = 40
    hu[a > 0] = -850
    return hu


def test_lungs_cut_by_the_field_of_view_are_not_gradable_and_say_why():
    a = whole(two_lungs())
    hu = _chest_hu(a)
    plain = quantify(vol(a), image=vol(hu), calibration="hu", limits=PHANTOM)
    assert plain.gradable and plain.coverage["field_cut_outline_percent"] == 0.0 and not plain.coverage["field_cut"]
    on_border = quantify(vol(a[:, :, 2:]))  # the right lung now touches the image's edge
    assert not on_border.gradable and on_border.grade == "not gradable"
    assert on_border.grade_word.startswith("lungs cut by the field of view on 30 slices")
    assert on_border.warnings[0] == f"not gradable: {on_border.grade_word}"
    padded = hu.copy()
    padded[:, :, :2] = -2048  # padding beyond a reconstructed field of view, the lung one voxel away
    padded[:, 5:15, 2] = -1000
    a_cut = a.copy()
    a_cut[:, 5:15, 2] = 0
    cut = quantify(vol(a_cut), image=vol(padded), calibration="hu")
    assert cut.coverage["field_cut"] and cut.coverage["field_cut_slices"] == 30 and not cut.gradable


@pytest.mark.parametrize("order", ["PSL", "SAR", "RAI"])
def test_report_does_not_depend_on_the_storage_order(order):
    """A label map and its CT stored sagittally (or flipped) give the axial report: coverage,
    zones and density count axial slices whatever the array order (0.15.0 took the stored first
    axis for the cranio-caudal one: a sagittal basal slab was 3 mm tall and gradable)."""
    import SimpleITK as sitk
    a = whole(two_lungs())
    a[20:30, 5:15, 42:50] = 3
    hu = _chest_hu(a)
    axial = quantify(vol(a), image=vol(hu), calibration="hu").to_dict()
    stored = [sitk.DICOMOrient(vol(x).to_sitk(), order) for x in (a, hu)]
    other = quantify(Volume.from_sitk(stored[0]), image=Volume.from_sitk(stored[1]), calibration="hu").to_dict()
    assert other == axial
    partial = quantify(Volume.from_sitk(sitk.DICOMOrient(vol(two_lungs()).to_sitk(), order)))
    assert partial.grade == "not gradable" and partial.coverage["extent_mm"] == 60.0


def test_lungs_too_small_for_a_whole_chest_are_not_graded():
    """Apex and bases in the scan, but lungs of 2.4 mL, 60 mm tall: not a whole adult chest (or
    the lungs were not all found), so no grade; the volume warnings stay."""
    r = quantify(vol(whole(two_lungs())))
    assert not r.gradable and r.total_severity_score is None
    assert r.grade_word == ("lungs too small for a whole adult chest "
                            "(lung height 60 mm, left lung 2 mL, right lung 2 mL)")
    assert r.warnings[0] == f"not gradable: {r.grade_word}"
    assert any("outside the plausible adult range" in w for w in r.warnings[1:])


def test_blank_padding_slices_do_not_put_the_apex_in_the_scan():
    """A slice of one flat value (padding, e.g. from resampling past the last slice) above the
    lungs shows nothing of the patient: the apex is not known to be in the scan."""
    a = whole(two_lungs())
    hu = _chest_hu(a)
    assert quantify(vol(a), image=vol(hu), calibration="hu", limits=PHANTOM).gradable
    for pad in (-1024, -2048, 0):
        blank = hu.copy()
        blank[-1] = pad
        r = quantify(vol(a), image=vol(blank), calibration="hu", limits=PHANTOM)
        assert not r.gradable and r.grade_word == "partial lung coverage, 60 mm (apex not in the scan)", pad
    assert quantify(vol(a), limits=PHANTOM).gradable  # labels alone: an empty slice is all there is to go by


def test_zone_without_lung_is_na_not_zero():
    a = whole(two_lungs())
    a[:, :, :20] = 0  # no right lung at all
    r = quantify(vol(a))
    assert all(z["involvement_percent"] is None and z["score"] is None for z in r.lungs["right"].zones.values())
    assert r.total_severity_score is None and "right lung not found" in r.warnings
    assert any(row["value"] == "n/a" for row in report_rows(r))


def test_implausible_volumes_and_ratio_are_warned():
    r = quantify(vol(whole(two_lungs())))  # two lungs of 2.4 mL, 60 mm tall
    assert any("outside the plausible adult range" in w for w in r.warnings)
    assert any("short for an adult chest" in w for w in r.warnings)
    a = whole(two_lungs())
    a[:, 5:15, 2:14] = 0  # right lung a quarter of the left
    assert any("ratio" in w for w in quantify(vol(a)).warnings)


def test_density_bands_and_disagreement():
    a = whole(two_lungs())
    hu = np.where(a > 0, -850, 40).astype(np.int16)
    hu[:, 5:15, 42:58] = -100  # the left lung dense, but the labels say no infection
    r = quantify(vol(a), image=vol(hu), calibration="hu")
    assert r.density_percent["well_aerated_-950_-700"] == pytest.approx(50.0)
    assert r.density_percent["consolidation_like_-300_100"] == pytest.approx(50.0)
    assert any(w.startswith("density disagreement") for w in r.warnings)
    b = a.copy()
    b[:, 5:15, 42:58] = 4  # the same voxels called consolidation: figures agree
    assert not any(w.startswith("density") for w in quantify(vol(b), image=vol(hu), calibration="hu").warnings)
    assert {row["region"] for row in report_rows(r)} >= {"left lung", "right upper", "both lungs"}


def test_density_leaves_out_the_partial_volume_rim():
    a = whole(two_lungs())
    hu = np.where(a > 0, -850, 40).astype(np.int16)
    edge = (a > 0) & ~ndimage.binary_erosion(a > 0, np.ones((1, 3, 3), bool))
    hu[edge] = -400  # each slice's outline: lung mixed with chest wall, not disease
    r = quantify(vol(a), image=vol(hu), calibration="hu")
    assert r.density_percent["well_aerated_-950_-700"] == pytest.approx(100.0)
    assert not any(w.startswith("density") for w in r.warnings)
    hu[:, 8:12, 46:54] = -100  # dense lung inside the outline still counts
    dense = quantify(vol(a), image=vol(hu), calibration="hu").density_percent["consolidation_like_-300_100"]
    assert dense == pytest.approx(100.0 * 32 / (8 * 14 * 2), abs=0.01)


@pytest.mark.parametrize("seed", range(4))
def test_in_plane_interior_equals_binary_erosion(seed):
    from COVIDSegLib.morphology import erode_inplane_cross
    mask = np.random.default_rng(seed).random((4, 23, 31)) > 0.25
    expected = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(2, 1)[None])
    np.testing.assert_array_equal(erode_inplane_cross(mask), expected)


def test_involvement_below_the_floor_is_graded_none_and_said_so():
    a = two_lungs()
    a[25:27, 5:7, 42:44] = 3    # 8 voxels of the 9600 lung voxels: 0.08 %
    r = quantify(vol(whole(a)), limits=PHANTOM)
    assert r.both_involvement_percent == pytest.approx(100 * 8 / 9600)
    assert r.grade == "CT-0" and "floor" in r.grade_word and "0.08 % marked" in r.grade_word
    assert r.total_severity_score == 0 and r.lungs["left"].zones["upper"]["involvement_percent"] > 0
    assert any("grading floor" in w for w in r.warnings)
    strict = quantify(vol(whole(a)), limits=Limits(lung_ml=(0.0, 5000.0), min_height_mm=0.0, grade_floor_percent=0.0))
    assert strict.grade == "CT-1" and strict.total_severity_score == 1
    assert not any("floor" in w for w in strict.warnings)


@pytest.mark.parametrize("pct, floor, code", [(0.99, 1.0, "CT-0"), (1.0, 1.0, "CT-1"), (0.5, 0.0, "CT-1")])
def test_grade_floor_cut_off(pct, floor, code):
    assert grade(pct, floor)[0] == code
    assert zone_score(pct, floor) == (0 if code == "CT-0" else 1)


@pytest.mark.parametrize("pct, score", [(0, 0), (0.1, 1), (4.99, 1), (5, 2), (25, 2), (25.5, 3), (49.9, 3),
                                        (50, 4), (75, 4), (75.1, 5), (100, 5)])
def test_zone_score_cut_offs(pct, score):
    assert zone_score(pct) == score


@pytest.mark.parametrize("pct, code", [(0, "CT-0"), (1, "CT-1"), (24.9, "CT-1"), (25, "CT-2"), (49.9, "CT-2"),
                                       (50, "CT-3"), (75, "CT-3"), (75.1, "CT-4")])
def test_grade_cut_offs(pct, code):
    assert grade(pct)[0] == code


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 16), st.integers(0, 30), st.floats(0.3, 3.0), st.floats(0.5, 5.0))
def test_involvement_matches_the_painted_fraction(width, height, pixel, thickness):
    a = two_lungs()
    a[30 - height:, 5:15, 42:42 + width] = 3
    r = quantify(vol(whole(a), spacing=(pixel, pixel, thickness)), limits=PHANTOM)
    assert r.lungs["left"].involvement_percent == pytest.approx(100.0 * height * width / (30 * 16))
    assert r.lungs["left"].lung_ml == pytest.approx(4800 * pixel * pixel * thickness / 1000)
    assert 0 <= r.total_severity_score <= 30


def test_slab_by_slab_counting_does_not_change_the_report(monkeypatch):
    """quantify works through slabs of slices (bounded memory): the report must be the same for
    any slab size, here on an oblique volume with infection on both sides."""
    import COVIDSegLib.quantify.measure as q

    from test_preprocess import rotation
    a = two_lungs(z=40)
    a[25:40, 5:15, 42:50] = 3
    a[0:7, 5:15, 2:10] = 4
    a[10:12, 5:15, 12:18] = 3
    volume = vol(a, direction=rotation(0.1, 0.05, -0.08))
    reports = []
    for slab in (1, 7, 1000):
        monkeypatch.setattr(q, "SLAB", slab)
        reports.append(quantify(volume).to_dict())
    assert reports[0] == reports[1] == reports[2]
    assert reports[0]["lungs"]["left"]["ggo_ml"] > 0 and reports[0]["lungs"]["right"]["consolidation_ml"] > 0
