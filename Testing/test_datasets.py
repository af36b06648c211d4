"""Tests of COVIDSegLib.training.datasets: the MedSeg and COVID-19-CT-Seg readers and the quality filter."""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from COVIDSegLib.errors import CovidSegError, InputError
from COVIDSegLib.preprocess.intensity import hu_to_medseg8
from COVIDSegLib.training.datasets import (Sample, filter_quality, load_ct_seg, load_dataset, load_medseg,
                                           quality_problem, write_quality_log)


@lru_cache(maxsize=None)
def _medseg(root: str, task: str):
    return load_medseg(Path(root), task)


# ----------------------------------------------------------------------------- real MedSeg data


def test_load_medseg_real_binary(shared_data):
    samples = _medseg(str(shared_data / "medseg100"), "binary")
    assert len(samples) == 52
    assert [s.id for s in samples] == sorted(s.id for s in samples)
    for s in samples:
        assert s.image.shape == (512, 512) and s.target.shape == (512, 512)
        assert s.target.dtype == np.uint8
        assert set(np.unique(s.target).tolist()) <= {0, 1}
        assert 0 <= s.image.min() and s.image.max() <= 255
    by_id = {s.id: s for s in samples}
    assert not by_id["0048"].target.any()  # the README: 0048 has an empty mask
    assert 0 < int(by_id["0022"].target.sum()) < 1000  # ... and 0022 a tiny one
    assert sum(bool(s.target.any()) for s in samples) == 51


def test_load_medseg_real_multiclass(shared_data):
    samples = _medseg(str(shared_data / "medseg100"), "multiclass")
    ids = {s.id for s in samples}
    assert len(samples) == 50 and not ids & {"0022", "0048"}
    values = set()
    for s in samples:
        assert s.image.shape == s.target.shape == (512, 512)
        values |= set(np.unique(s.target).tolist())
    assert values == {0, 1, 2}  # both GGO and consolidation occur somewhere


def test_quality_filter_keeps_all_real_slices(shared_data):
    for task, n_classes, n in (("binary", 2, 52), ("multiclass", 3, 50)):
        kept, dropped = filter_quality(_medseg(str(shared_data / "medseg100"), task), n_classes)
        assert dropped == [] and len(kept) == n


def test_load_dataset_recognises_medseg(shared_data):
    assert len(load_dataset(shared_data / "medseg100", "binary")) == 52


# ----------------------------------------------------------------------------- quality_problem


def scan(size: int = 128, seed: int = 0, fov: bool = True) -> np.ndarray:
    """A CT-looking 8-bit slice: 0 outside a circular scan field, air ~60, body ~235, lungs ~80."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1  # -1..1
    img = 60 + rng.normal(0, 4, (size, size))
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1
    img[body] = 235 + rng.normal(0, 6, int(body.sum()))
    for cx in (-0.4, 0.4):
        lung = ((x - cx) / 0.28) ** 2 + (y / 0.45) ** 2 <= 1
        img[lung] = 80 + rng.normal(0, 8, int(lung.sum()))
    img = np.clip(img, 2, 255)
    if fov:
        img[x ** 2 + y ** 2 > 0.98 ** 2] = 0
    return img.astype(np.float32)


def lesion(size: int = 128) -> np.ndarray:
    """A small disc inside the image-left lung."""
    y, x = np.mgrid[:size, :size]
    return (((x - 0.3 * size) ** 2 + (y - size / 2) ** 2) <= (size / 16) ** 2).astype(np.uint8)


def test_good_sample_passes():
    assert quality_problem(Sample("ok", scan(), lesion()), 2) is None
    assert quality_problem(Sample("empty", scan(), np.zeros((128, 128), np.uint8)), 2) is None
    assert quality_problem(Sample("mc", scan(), lesion() * 2), 3) is None


@pytest.mark.parametrize("image", [np.zeros((32, 32)), np.zeros((3000, 70)), np.zeros((2, 128, 128))])
def test_wrong_size(image):
    reason = quality_problem(Sample("s", image.astype(np.float32), np.zeros(image.shape, np.uint8)), 2)
    assert reason and reason.startswith("wrong size")


def test_mask_image_shape_mismatch():
    reason = quality_problem(Sample("s", scan(), np.zeros((128, 120), np.uint8)), 2)
    assert reason and "mismatch" in reason and "(128, 120)" in reason


def test_non_finite_image():
    img = scan()
    img[50, 50] = np.nan
    assert "NaN" in quality_problem(Sample("s", img, lesion()), 2)


@pytest.mark.parametrize("image", [np.full((128, 128), 100.0), scan() * 0 + np.where(np.arange(128) < 3, 200, 0)])
def test_constant_image(image):
    reason = quality_problem(Sample("s", image.astype(np.float32), np.zeros((128, 128), np.uint8)), 2)
    assert reason and "constant" in reason


@pytest.mark.parametrize("value,n_classes", [(2, 2), (255, 2), (3, 3)])
def test_bad_mask_values(value, n_classes):
    reason = quality_problem(Sample("s", scan(), lesion() * value), n_classes)
    assert reason and "mask values" in reason and str(value) in reason


def test_annotation_outside_scan_field():
    mask = np.zeros((128, 128), np.uint8)
    mask[3:11, 3:11] = 1  # the corner lies outside the circular scan field (image == 0)
    reason = quality_problem(Sample("s", scan(), mask), 2)
    assert reason and "outside the scan field" in reason
    # The same annotation on a full-frame image (no zero pixels) is fine.
    assert quality_problem(Sample("s", scan(fov=False), mask), 2) is None


def test_finding_cut_by_the_border():
    mask = np.zeros((128, 128), np.uint8)
    mask[0:10, 40:60] = 1  # 20 pixels on the top row
    reason = quality_problem(Sample("s", scan(fov=False), mask), 2)
    assert reason and reason.startswith("truncated field of view")
    mask[:] = 0
    mask[0:10, 40:42] = 1  # 2 border pixels: tolerated
    assert quality_problem(Sample("s", scan(fov=False), mask), 2) is None


def test_filter_quality_and_log(tmp_path, caplog):
    samples = [Sample("a", scan(), lesion()), Sample("b", np.zeros((32, 32), np.float32), np.zeros((32, 32), np.uint8)),
               Sample("c", scan(seed=1), lesion() * 7), Sample("d", scan(seed=2), lesion())]
    with caplog.at_level(logging.WARNING, logger="COVIDSegLib.training.datasets"):
        kept, dropped = filter_quality(samples, 2)
    assert [s.id for s in kept] == ["a", "d"]
    assert [i for i, _ in dropped] == ["b", "c"]
    assert "wrong size" in dropped[0][1] and "mask values" in dropped[1][1]
    assert "dropped b" in caplog.text and "dropped c" in caplog.text
    write_quality_log(dropped, len(kept), tmp_path / "q.json")
    log = json.loads((tmp_path / "q.json").read_text())
    assert log["kept"] == 2 and [d["id"] for d in log["dropped"]] == ["b", "c"]


# ----------------------------------------------------------------------------- COVID-19-CT-Seg layout

NZ, NY, NX = 4, 64, 64
LESION = (slice(1, 3), slice(28, 36), slice(46, 54))  # (z, y, x) in LPS index order: the patient's left


def hu_volume(seed: int = 0) -> np.ndarray:
    """(z, y, x) int16 HU, LPS index order: air outside the body, soft tissue, two lungs, a lesion."""
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[:NZ, :NY, :NX]
    hu = np.full((NZ, NY, NX), -1000.0)
    hu[((y - 32) / 26.0) ** 2 + ((x - 32) / 30.0) ** 2 <= 1] = 40.0
    for cx in (18, 46):
        hu[((y - 32) / 16.0) ** 2 + ((x - cx) / 10.0) ** 2 <= 1] = -850.0
    hu[LESION] = 30.0
    return np.rint(hu + rng.normal(0, 8, hu.shape)).astype(np.int16)


def lesion_mask() -> np.ndarray:
    m = np.zeros((NZ, NY, NX), np.uint8)
    m[LESION] = 1
    return m


def save_nifti(array_zyx: np.ndarray, path: Path, flip_x: bool = False) -> None:
    """Write with a RAS affine: normally index x runs to the patient's left (RAS -x); with
    ``flip_x`` the stored x axis is reversed and the affine says it runs to the patient's right."""
    data = array_zyx.transpose(2, 1, 0)  # nibabel order (x, y, z)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    if flip_x:
        data, affine[0, 0] = data[::-1], 0.8
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


@pytest.fixture
def ct_seg(tmp_path) -> Path:
    root = tmp_path / "COVID-19-CT-Seg"
    save_nifti(hu_volume(0), root / "ct_scans" / "coronacases_org_001.nii.gz")
    save_nifti(lesion_mask(), root / "infection_mask" / "coronacases_001.nii.gz")
    save_nifti((hu_volume(0) < -500).astype(np.uint8), root / "lung_mask" / "coronacases_001.nii.gz")
    # Radiopaedia-style names, stored with the x axis flipped.
    save_nifti(hu_volume(1), root / "ct_scans" / "radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm.nii.gz", True)
    save_nifti(lesion_mask(), root / "infection_mask" / "radiopaedia_4_85506_1.nii.gz", True)
    # A CT without an infection mask is skipped.
    save_nifti(hu_volume(2), root / "ct_scans" / "coronacases_org_009.nii.gz")
    return root


def test_load_ct_seg_pairs_and_slices(ct_seg):
    samples = load_ct_seg(ct_seg)
    assert len(samples) == 2 * NZ
    ids = [s.id for s in samples]
    assert ids[:NZ] == [f"coronacases_org_001_z{z:03d}" for z in range(NZ)]
    assert all(i.startswith("radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm_z") for i in ids[NZ:])
    for s in samples:
        assert s.image.shape == s.target.shape == (NY, NX)
        assert set(np.unique(s.target).tolist()) <= {0, 1}
        assert s.meta["pixel_mm"] == pytest.approx(0.8)
    expected = lesion_mask()
    for z in range(NZ):
        np.testing.assert_array_equal(samples[z].target, expected[z])  # same pixels as written
        np.testing.assert_array_equal(samples[NZ + z].target, expected[z])  # flipped file, re-oriented


def test_cli_evaluate_the_multiclass_model_on_the_volume_layout(ct_seg, tmp_path, capsys):
    """Infection masks only: the multi-class model is scored on GGO + consolidation together
    (before 0.14.0 this layout asked for a --task that evaluate does not have)."""
    from COVIDSegLib.cli.commands import main
    rc = main(["evaluate", "--model", "covidseg_multiclass", "--data", str(ct_seg), "-o", str(tmp_path / "e.json")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads((tmp_path / "e.json").read_text())["summary"]
    assert summary["infection_dice"]["n"] == 2 * NZ and "GGO_dice" not in summary


def test_load_ct_seg_skips_a_case_that_is_not_ct_and_goes_on(ct_seg, caplog):
    rng = np.random.default_rng(3)
    save_nifti(rng.uniform(0, 900, (NZ, NY, NX)).astype(np.float32), ct_seg / "ct_scans" / "coronacases_org_005.nii.gz")
    save_nifti(lesion_mask(), ct_seg / "infection_mask" / "coronacases_005.nii.gz")
    with caplog.at_level(logging.WARNING):
        samples = load_ct_seg(ct_seg)
    assert len(samples) == 2 * NZ and not any(s.id.startswith("coronacases_org_005") for s in samples)
    assert any("coronacases_org_005.nii.gz: skipped (Intensities are neither" in r.getMessage() for r in caplog.records)
    for name in ("coronacases_org_001.nii.gz", "radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm.nii.gz"):
        (ct_seg / "ct_scans" / name).write_bytes(b"not a NIfTI file")
    with pytest.raises(InputError, match="No usable CT"):
        load_ct_seg(ct_seg)


def test_load_ct_seg_maps_hu_to_medseg8(ct_seg):
    s = load_ct_seg(ct_seg)[1]
    assert s.image.dtype == np.float32 and 0 <= s.image.min() and s.image.max() <= 255
    hu = hu_volume(0)[1]
    np.testing.assert_allclose(s.image, hu_to_medseg8(hu), atol=1e-3)
    air = float(np.median(s.image[:4, :4]))
    tissue = float(np.median(s.image[32, 28:32]))
    assert air == pytest.approx(255 * (-1000 + 1350) / 1496, abs=2)  # ~60, MedSeg's air peak
    assert tissue == pytest.approx(255 * (40 + 1350) / 1496, abs=3)  # ~237, soft tissue


def test_orientation_flipped_volume_is_radiological(ct_seg):
    """The lesion sits in the patient's left lung: after orient_lps it is on the image right
    (columns run patient-right -> patient-left), whatever the stored x direction."""
    samples = load_ct_seg(ct_seg)
    for s in (samples[1], samples[NZ + 1]):
        cols = np.nonzero(s.target)[1]
        assert cols.size and cols.min() > NX // 2
    flipped = samples[NZ + 1].image
    assert flipped[LESION[1:]].mean() > 200  # the lesion's soft-tissue density moved with it
    assert flipped[28:36, 10:18].mean() < 100  # the mirror position is aerated lung


def test_every_subsamples(ct_seg):
    ids = [s.id for s in load_ct_seg(ct_seg, every=2)]
    assert len(ids) == 4
    assert ids[:2] == ["coronacases_org_001_z000", "coronacases_org_001_z002"]
    assert len(load_ct_seg(ct_seg, every=10)) == 2  # only z = 0 of each volume


def test_load_dataset_recognises_ct_seg(ct_seg):
    assert len(load_dataset(ct_seg, "binary", every=1)) == 2 * NZ


def test_ct_seg_multiclass_refused(ct_seg):
    with pytest.raises(CovidSegError, match="binary"):
        load_ct_seg(ct_seg, "multiclass")
    with pytest.raises(CovidSegError):
        load_dataset(ct_seg, "multiclass")


def test_unknown_layout_and_task(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(InputError, match="neither"):
        load_dataset(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError):
        load_dataset(tmp_path)  # a MedSeg folder without any image
    with pytest.raises(CovidSegError, match="unknown task"):
        load_dataset(tmp_path, "lobes")
    with pytest.raises(CovidSegError, match="no lung masks"):
        load_dataset(tmp_path, "lungs")  # MedSeg has no lung masks
