"""Tests of COVIDSegLib.preprocess.intensity: the HU <-> MedSeg 8-bit mapping, space detection, calibration."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from COVIDSegLib.errors import CovidSegError, IntensityError
from COVIDSegLib.io.files import read_volume
from COVIDSegLib.lungs.segment import segment_lungs
from COVIDSegLib.preprocess.intensity import (MEDSEG_WINDOW_HI_HU, MEDSEG_WINDOW_LO_HU, detect_space, hu_to_medseg8,
                                              medseg8_to_hu, parse_calibration, tissue_peaks, to_hu, to_medseg8)
from COVIDSegLib.volume import HU, MEDSEG8, Volume

from chest_phantom import chest_phantom

FAST = settings(max_examples=200, deadline=None)
INTENSITY_DATA = Path(__file__).resolve().parents[1] / "docs" / "INTENSITY_DATA.json"
REFERENCE_HU = {"air": -1000.0, "fat": -100.0, "soft_tissue": 40.0}
# The measured MedSeg histogram peaks (docs/INTENSITY_DATA.json, medseg_peaks_median).
MEDSEG_PEAKS = {"air": 59.5, "fat": 213.5, "soft_tissue": 236.5}
# Same ranges and thresholds as scripts/derive_medseg_mapping.py.
RANGES_8BIT = {"air": (30, 100), "fat": (195, 228), "soft_tissue": (224, 252)}
BODY_THRESHOLD_8BIT = 150


def medseg_peak_medians() -> dict:
    if INTENSITY_DATA.is_file():
        return json.loads(INTENSITY_DATA.read_text())["medseg_peaks_median"]
    return MEDSEG_PEAKS


@pytest.fixture
def dicom(shared_data) -> Volume:
    """The two real DICOM slices, in HU."""
    return read_volume(shared_data / "chest-ct-dicom")


def unsigned_ct(volume: Volume) -> Volume:
    """The same CT as stored by a scanner without rescale: HU + 1024, clipped at 0 (uint16)."""
    raw = np.clip(volume.array.astype(np.int32) + 1024, 0, None).astype(np.uint16)
    return volume.with_array(raw)


def assert_one_line_mentioning_intensity(error: BaseException) -> None:
    message = str(error)
    assert "\n" not in message and "--intensity" in message


# ----------------------------------------------------------------------------- the mapping


@FAST
@given(st.floats(MEDSEG_WINDOW_LO_HU, MEDSEG_WINDOW_HI_HU))
def test_hu_to_medseg8_round_trip_inside_the_window(hu):
    v = hu_to_medseg8(np.array([hu]))
    assert 0.0 <= v[0] <= 255.0
    assert medseg8_to_hu(v)[0] == pytest.approx(hu, abs=1e-2)


def test_hu_to_medseg8_leaves_a_float32_input_untouched():
    hu = np.array([[-2000.0, -1350.0, -500.0, 146.0, 900.0]], np.float32)
    original = hu.copy()
    out = hu_to_medseg8(hu)
    np.testing.assert_array_equal(hu, original)
    np.testing.assert_allclose(out, np.clip((original - MEDSEG_WINDOW_LO_HU) * 255.0 / (MEDSEG_WINDOW_HI_HU - MEDSEG_WINDOW_LO_HU),
                                            0, 255))


@FAST
@given(st.floats(0.0, 255.0))
def test_medseg8_to_hu_round_trip(value):
    hu = medseg8_to_hu(np.array([value]))
    assert MEDSEG_WINDOW_LO_HU - 1e-3 <= hu[0] <= MEDSEG_WINDOW_HI_HU + 1e-3
    assert hu_to_medseg8(hu)[0] == pytest.approx(value, abs=1e-3)


@FAST
@given(st.floats(-5000, 5000), st.floats(-5000, 5000))
def test_hu_to_medseg8_is_monotone_and_clipped(a, b):
    lo, hi = sorted((a, b))
    va, vb = hu_to_medseg8(np.array([lo, hi]))
    assert va <= vb
    if MEDSEG_WINDOW_LO_HU <= lo < hi <= MEDSEG_WINDOW_HI_HU and hi - lo > 0.1:
        assert va < vb  # strictly increasing inside the window
    assert hu_to_medseg8(np.array([lo]))[0] == pytest.approx(
        min(max((lo - MEDSEG_WINDOW_LO_HU) * 255.0 / (MEDSEG_WINDOW_HI_HU - MEDSEG_WINDOW_LO_HU), 0), 255),
        abs=1e-3,
    )


def test_mapping_clips_and_keeps_float32():
    out = hu_to_medseg8(np.array([-3000, -2048, MEDSEG_WINDOW_LO_HU, MEDSEG_WINDOW_HI_HU, 3000], np.int16))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0, 255, 255], atol=1e-3)
    assert medseg8_to_hu(np.array([0, 255], np.uint8)).dtype == np.float32
    np.testing.assert_allclose(medseg8_to_hu(np.array([0, 255])), [MEDSEG_WINDOW_LO_HU, MEDSEG_WINDOW_HI_HU],
                               atol=1e-3)


@pytest.mark.parametrize("tissue", sorted(REFERENCE_HU))
def test_reference_tissues_land_on_the_measured_medseg_peaks(tissue):
    v = float(hu_to_medseg8(np.array([REFERENCE_HU[tissue]]))[0])
    assert abs(v - MEDSEG_PEAKS[tissue]) <= 3
    assert abs(v - medseg_peak_medians()[tissue]) <= 3


# ----------------------------------------------------------------------------- parse_calibration


@pytest.mark.parametrize("text, expected", [
    ("auto", ("auto", None)),
    ("hu", ("hu", None)),
    (" HU ", ("hu", None)),
    ("medseg8", ("medseg8", None)),
    ("MedSeg8", ("medseg8", None)),
    ("linear:1,-1024", ("linear", (1.0, -1024.0))),
    ("LINEAR: 0.5 , -1000", ("linear", (0.5, -1000.0))),
    ("linear:2.5e-1,0", ("linear", (0.25, 0.0))),
])
def test_parse_calibration_valid(text, expected):
    assert parse_calibration(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("linear:abc", "expected linear:SLOPE,INTERCEPT"),
    ("linear:1", "expected linear:SLOPE,INTERCEPT"),
    ("linear:1,2,3", "expected linear:SLOPE,INTERCEPT"),
    ("linear:", "expected linear:SLOPE,INTERCEPT"),
    ("linear:0,-1024", "slope must be positive"),
    ("linear:-1,0", "slope must be positive"),
    ("linear:nan,0", "slope must be positive"),
    ("linear:inf,0", "slope must be positive"),
    ("linear:1,inf", "finite"),
    ("linear:1,nan", "finite"),
    ("hounsfield", "Unknown intensity calibration"),
    ("", "Unknown intensity calibration"),
    ("8bit", "Unknown intensity calibration"),
])
def test_parse_calibration_errors(text, expected):
    with pytest.raises(IntensityError) as caught:
        parse_calibration(text)
    assert isinstance(caught.value, CovidSegError)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- detect_space


def test_detect_space_real_dicom_is_hu(dicom):
    assert dicom.space == HU
    assert detect_space(dicom.array) == HU


# 0039: cropped to the body (no outside air) and windowed brighter (lung ~130): only 0.4 % of
# its pixels are in the 35..100 air band that detect_space requires (>= 1 %).
MEDSEG_NOT_DETECTED = {"0039"}


def test_detect_space_real_medseg_pngs_are_medseg8(shared_data):
    paths = sorted((shared_data / "medseg100" / "images").glob("*.png"))
    assert len(paths) == 52
    for path in paths:
        if path.stem not in MEDSEG_NOT_DETECTED:
            assert detect_space(read_volume(path).array) == MEDSEG8, path.name


def test_detect_space_bundled_medseg_sample_is_medseg8():
    sample = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "medseg_0000.png"
    volume = read_volume(sample)
    assert volume.space == MEDSEG8 and detect_space(volume.array) == MEDSEG8


def test_detect_space_medseg_slice_0039(shared_data):
    assert detect_space(read_volume(shared_data / "medseg100" / "images" / "0039.png").array) == MEDSEG8


def test_detect_space_refuses_unsigned_ct_without_rescale(dicom):
    raw = unsigned_ct(dicom)
    assert raw.array.min() == 0 and 2000 < raw.array.max() < 4096
    with pytest.raises(IntensityError) as caught:
        detect_space(raw.array)
    assert_one_line_mentioning_intensity(caught.value)
    with pytest.raises(IntensityError):
        to_hu(raw)  # 'auto' detects, and refuses
    with pytest.raises(IntensityError):
        to_medseg8(raw)


def test_linear_calibration_restores_hu_of_unsigned_ct(dicom):
    hu = to_hu(unsigned_ct(dicom), "linear:1,-1024")
    assert hu.space == HU and hu.array.dtype == np.float32 and hu.same_geometry(dicom)
    kept = dicom.array >= -1024  # the clip at 0 loses only the outside-the-field value -2048
    assert kept.mean() > 0.7
    np.testing.assert_array_equal(hu.array[kept], dicom.array[kept].astype(np.float32))
    assert np.all(hu.array[~kept] == -1024)


@pytest.mark.parametrize("name, make", [
    ("float 0..1", lambda rng: rng.random((4, 64, 64)).astype(np.float32)),
    ("float noise 0..255", lambda rng: rng.uniform(0, 255, (4, 64, 64)).astype(np.float32)),
    ("uint16 noise 0..4095", lambda rng: rng.integers(0, 4096, (4, 64, 64)).astype(np.uint16)),
    ("float noise -1..1", lambda rng: rng.uniform(-1, 1, (4, 64, 64))),
])
def test_detect_space_refuses_unrecognisable_intensities(name, make):
    array = make(np.random.default_rng(5))
    with pytest.raises(IntensityError) as caught:
        detect_space(array)
    assert_one_line_mentioning_intensity(caught.value)


@pytest.mark.parametrize("name, make", [
    ("uint8 noise 0..255", lambda rng: rng.integers(0, 256, (4, 64, 64)).astype(np.uint8)),
    ("float noise -2000..2000", lambda rng: rng.uniform(-2000, 2000, (4, 64, 64)).astype(np.float32)),
])
def test_detect_space_refuses_uniform_noise_in_plausible_ranges(name, make):
    with pytest.raises(IntensityError):
        detect_space(make(np.random.default_rng(5)))


def test_declared_calibration_bypasses_detection():
    array = np.random.default_rng(5).random((4, 16, 16)).astype(np.float32)
    volume = Volume(array=array)
    np.testing.assert_allclose(to_hu(volume, "hu").array, array)
    np.testing.assert_allclose(to_hu(volume, "medseg8").array, medseg8_to_hu(array))
    np.testing.assert_allclose(to_hu(volume, "linear:1000,-1000").array, array * 1000 - 1000, rtol=1e-6)
    np.testing.assert_allclose(to_medseg8(volume, "hu").array, hu_to_medseg8(array))


# ----------------------------------------------------------------------------- to_medseg8 on real HU


def test_to_medseg8_of_real_dicom_puts_lung_in_the_medseg_lung_range(dicom):
    m8 = to_medseg8(dicom)
    assert m8.space == MEDSEG8 and m8.same_geometry(dicom)
    assert m8.array.dtype == np.float32 and m8.array.min() >= 0 and m8.array.max() <= 255
    lung = segment_lungs(dicom).array > 0
    values = m8.array[lung]
    hist, edges = np.histogram(values, bins=np.arange(0, 258, 2))
    mode = edges[np.argmax(hist)] + 1
    # Healthy MedSeg lung parenchyma peaks at about 60..100 on the 52 slices (median 80).
    assert 60 <= mode <= 110
    assert np.mean((values >= 40) & (values <= 130)) > 0.5
    # Outside the field of view (-2048 HU) saturates at 0, dense bone at 255.
    assert m8.array[dicom.array == -2048].max() == 0


def test_tissue_peaks_of_mapped_real_dicom_match_medseg(dicom):
    m8 = to_medseg8(dicom).array
    peaks = tissue_peaks(m8, body_threshold=BODY_THRESHOLD_8BIT, ranges=RANGES_8BIT, bin_width=1)
    medians = medseg_peak_medians()
    # Fat: this patient's subcutaneous fat peaks at about -127 HU (27 HU below the -100 HU
    # reference), which alone moves it 4.6 steps; measured 207.5 vs 213.5. Allow 7 there.
    tolerance = {"air": 5.0, "fat": 7.0, "soft_tissue": 5.0}
    for tissue, expected in medians.items():
        assert math.isfinite(peaks[tissue]), tissue
        assert abs(peaks[tissue] - expected) <= tolerance[tissue], (tissue, peaks[tissue], expected)
    assert peaks["air"] < peaks["fat"] < peaks["soft_tissue"]


# ----------------------------------------------------------------------------- never silently empty


def test_segment_lungs_refuses_unrecognisable_volume():
    ph = chest_phantom()
    unit = ((ph.hu.astype(np.float32) + 1024.0) / 4096.0).clip(0, 1)  # the anatomy, scaled to 0..1
    volume = Volume(array=unit, spacing=(1.5, 1.5, 2.5))
    with pytest.raises(IntensityError) as caught:
        segment_lungs(volume)
    assert_one_line_mentioning_intensity(caught.value)
    # Declared, the same voxels do give lungs.
    labels = segment_lungs(volume, calibration="linear:4096,-1024").array
    assert set(np.unique(labels)) == {0, 1, 2}


def test_segment_lungs_refuses_unrecognisable_slice(dicom):
    raw = unsigned_ct(dicom).array[:1]  # 0..~2500, uint16: not 8-bit
    sl = Volume(array=raw, spacing=(0.625, 0.625, 1.0), space=MEDSEG8, is_slice=True)
    with pytest.raises(IntensityError):
        segment_lungs(sl)
