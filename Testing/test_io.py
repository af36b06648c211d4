"""Tests of COVIDSegLib.io.files (reading/writing) and COVIDSegLib.io.validate (input checks)."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib import labels as L
from COVIDSegLib.errors import CovidSegError, InputError
from COVIDSegLib.io.files import (atomic_path, from_nibabel, read_seg_nrrd, read_volume, to_nibabel, write_labels,
                                  write_seg_nrrd)
from COVIDSegLib.io.paths import stem_of
from COVIDSegLib.io.validate import available_memory, check_size, check_volume
from COVIDSegLib.volume import HU, MEDSEG8, Volume

from badinputs import BAD_INPUTS, SPACING, make_2d_nifti
from test_preprocess import rotation

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.fixture
def oblique_labels() -> Volume:
    """A label map with all five values, anisotropic spacing, an oblique direction, an offset."""
    rng = np.random.default_rng(3)
    array = rng.integers(0, 5, size=(6, 9, 11)).astype(np.uint8)
    array[0] = 0  # an empty slice, so extents are not the whole image
    return Volume(
        array=array,
        spacing=(0.7, 0.8, 2.5),
        origin=(-120.5, 33.25, 400.75),
        direction=rotation(0.5, -0.2, 0.3),
    )


def _digest(path: Path) -> str | None:
    """SHA-256 of a file, of every file in a folder, or None for a missing path."""
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(path.rglob("*")):
            h.update(f.name.encode() + (f.read_bytes() if f.is_file() else b""))
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _assert_same_geometry(a: Volume, b: Volume, tol: float) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, atol=tol, rtol=0)
    np.testing.assert_allclose(a.origin, b.origin, atol=tol, rtol=0)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol, rtol=0)


# ----------------------------------------------------------------------------- round trips

# NIfTI stores geometry as float32 (quaternion + sform); NRRD and MetaImage as text.
@pytest.mark.parametrize(
    "suffix, tol", [(".nii.gz", 1e-5), (".nii", 1e-5), (".nrrd", 1e-12), (".mha", 1e-12)]
)
def test_label_round_trip_keeps_geometry(tmp_path, oblique_labels, suffix, tol):
    path = write_labels(oblique_labels, tmp_path / f"case{suffix}")
    back = read_volume(path)
    _assert_same_geometry(back, oblique_labels, tol)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, oblique_labels.array)
    assert back.meta["source"] == str(path)
    assert back.meta["format"] in {"nifti", "nrrd", "metaimage"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"case{suffix}"]  # no temp file left


def test_write_labels_casts_to_uint8_and_rejects_bad_values(tmp_path, oblique_labels):
    wide = oblique_labels.with_array(oblique_labels.array.astype(np.int64))
    assert read_volume(write_labels(wide, tmp_path / "a.nii.gz")).array.dtype == np.uint8
    for bad in (300, -1, 1.5):
        with pytest.raises(ValueError):
            write_labels(oblique_labels.with_array(np.full(wide.shape, bad)), tmp_path / "b.nii.gz")
    with pytest.raises(CovidSegError, match="Cannot write labels"):
        write_labels(oblique_labels, tmp_path / "c.png")
    assert not (tmp_path / "b.nii.gz").exists()


def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as temp:
        assert temp.parent == target.parent and temp.name.endswith("out.json") and temp != target
        temp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_text("partial")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "new"  # the old output is untouched
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


# ----------------------------------------------------------------------------- LPS vs RAS


def test_nibabel_reads_our_nifti_with_the_ras_affine(tmp_path, oblique_labels):
    path = write_labels(oblique_labels, tmp_path / "case.nii.gz")
    img = nib.load(str(path))
    d = oblique_labels.direction_matrix @ np.diag(oblique_labels.spacing)
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = d, oblique_labels.origin
    np.testing.assert_allclose(img.affine, LPS_TO_RAS @ lps, atol=1e-4)
    xyz = oblique_labels.array.transpose(2, 1, 0)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), xyz)

    image = sitk.ReadImage(str(path))
    for index in [(0, 0, 0), (10, 8, 5), (3, 7, 2)]:
        lps_point = np.array(image.TransformIndexToPhysicalPoint(index))
        ras_point = (img.affine @ np.array([*index, 1.0]))[:3]
        np.testing.assert_allclose(ras_point, lps_point * [-1, -1, 1], atol=1e-4)


def test_to_from_nibabel_restores_geometry(tmp_path, oblique_labels):
    img = to_nibabel(oblique_labels)
    assert img.shape == oblique_labels.shape[::-1]
    back = from_nibabel(img)
    _assert_same_geometry(back, oblique_labels, 1e-12)
    np.testing.assert_array_equal(back.array, oblique_labels.array)

    path = tmp_path / "by_nibabel.nii.gz"
    nib.save(img, str(path))  # a file written by nibabel reads back with the same geometry
    _assert_same_geometry(read_volume(path), oblique_labels, 1e-5)
    _assert_same_geometry(from_nibabel(nib.load(str(path))), oblique_labels, 1e-5)


# ----------------------------------------------------------------------------- seg.nrrd


def test_seg_nrrd_has_slicer_header_and_geometry(tmp_path, oblique_labels):
    path = write_labels(oblique_labels, tmp_path / "case.seg.nrrd")
    image = sitk.ReadImage(str(path))
    assert image.GetDimension() == 3 and image.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), oblique_labels.array)
    _assert_same_geometry(Volume.from_sitk(image), oblique_labels, 1e-12)

    meta = {key: image.GetMetaData(key) for key in image.GetMetaDataKeys()}
    assert meta["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert meta["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert meta["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    for index, value in enumerate(sorted(L.NAMES)):
        assert meta[f"Segment{index}_Name"] == L.NAMES[value]
        assert meta[f"Segment{index}_LabelValue"] == str(value)
        assert meta[f"Segment{index}_Layer"] == "0"
        assert meta[f"Segment{index}_ID"]
        assert meta[f"Segment{index}_Tags"] == "|"
        colour = [float(c) for c in meta[f"Segment{index}_Color"].split()]
        np.testing.assert_allclose(colour, L.COLORS[value])
        zs, ys, xs = np.nonzero(oblique_labels.array == value)
        extent = f"{xs.min()} {xs.max()} {ys.min()} {ys.max()} {zs.min()} {zs.max()}"
        assert meta[f"Segment{index}_Extent"] == extent
    assert "Segment4_Name" not in meta
    header = path.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "space: left-posterior-superior" in header and "Segment0_Name:=Left lung" in header

    volume, names = read_seg_nrrd(path)
    assert names == L.NAMES
    np.testing.assert_array_equal(volume.array, oblique_labels.array)


def test_seg_nrrd_lists_absent_segments_with_empty_extent(tmp_path, oblique_labels):
    array = oblique_labels.array
    lungs_only = oblique_labels.with_array(np.where(array > 2, 0, array))
    volume, names = read_seg_nrrd(write_seg_nrrd(lungs_only, tmp_path / "lungs.seg.nrrd"))
    assert names == L.NAMES
    image = sitk.ReadImage(str(tmp_path / "lungs.seg.nrrd"))
    assert image.GetMetaData("Segment3_Extent") == "0 -1 0 -1 0 -1"
    assert image.GetMetaData("Segment0_Extent") != "0 -1 0 -1 0 -1"


# ----------------------------------------------------------------------------- DICOM


def test_real_dicom_series_in_hu(shared_data):
    folder = shared_data / "chest-ct-dicom"
    before = _digest(folder)
    v = read_volume(folder)
    assert v.shape == (2, 512, 512)
    np.testing.assert_allclose(v.spacing, (0.625, 0.625, 1.0), atol=1e-6)
    assert v.space == HU and not v.is_slice and v.meta["format"] == "dicom"
    assert v.array.min() == -2048 and 1000 < v.array.max() < 2000
    assert np.count_nonzero(np.abs(v.array.astype(int) + 800) < 100) > 10_000  # lung parenchyma
    assert stem_of(folder) == "chest-ct-dicom"
    check_volume(v, need_3d=True)
    assert _digest(folder) == before


def _write_series(folder: Path, uid: str, n: int, tag: int, rng: random.Random) -> None:
    """Write n int16 slices of one series, in shuffled order and with reversed InstanceNumber;
    slice k holds the value 100 * tag + k and lies at z = 5 + 2.5 k."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    order = list(range(n))
    rng.shuffle(order)
    for file_index, k in enumerate(order):
        array = np.full((16, 20), 100 * tag + k, np.int16)
        array[0, 0] = -1000
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.7, 0.8))
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{uid}.{k + 1}",
            "0008|0060": "CT", "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": uid, "0020|0013": str(n - k),
            "0020|0032": f"-10\\-20\\{5 + 2.5 * k}", "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": "2.5", "0028|0030": "0.8\\0.7",
        }
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"s{tag}_{file_index:03d}.dcm"))
        writer.Execute(image)


@pytest.fixture
def two_series(tmp_path) -> Path:
    folder = tmp_path / "ct_folder"
    folder.mkdir()
    rng = random.Random(7)
    _write_series(folder, "1.2.826.0.1.3680043.2.1125.100", 3, 1, rng)
    _write_series(folder, "1.2.826.0.1.3680043.2.1125.200", 5, 2, rng)
    return folder


def test_dicom_folder_takes_largest_series_sorted_by_position(two_series):
    v = read_volume(two_series)
    assert v.shape == (5, 16, 20) and v.meta["n_files"] == 5
    assert v.meta["series_uid"].endswith(".200")
    np.testing.assert_array_equal(v.array[:, 5, 5], [200, 201, 202, 203, 204])
    np.testing.assert_allclose(v.spacing, (0.7, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(v.origin, (-10, -20, 5), atol=1e-6)


def test_dicom_file_selects_its_own_series(two_series):
    member = sorted(two_series.glob("s1_*.dcm"))[0]
    v = read_volume(member)
    assert v.shape == (3, 16, 20)
    np.testing.assert_array_equal(v.array[:, 5, 5], [100, 101, 102])


# ----------------------------------------------------------------------------- 2D slices


def test_real_medseg_png_is_a_medseg8_slice(shared_data):
    path = shared_data / "medseg100" / "images" / "0000.png"
    v = read_volume(path)
    assert v.shape == (1, 512, 512) and v.is_slice and v.space == MEDSEG8
    assert v.array.dtype == np.uint8 and v.array.max() > 200
    assert v.spacing == (1.0, 1.0, 1.0) and v.meta["format"] == "png"
    assert read_volume(path, slice_space=HU).space == HU
    check_volume(v, need_3d=False)
    with pytest.raises(InputError, match="3D volume is needed"):
        check_volume(v, need_3d=True)


@pytest.mark.parametrize("suffix, tol", [(".png", 0), (".jpg", 3)])
def test_rgb_slice_is_converted_to_grey(tmp_path, suffix, tol):
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16] = (200, 100, 50)  # luminance 124.2
    rgb[:, 16:] = (10, 240, 90)  # luminance 154.1
    image = sitk.GetImageFromArray(rgb, isVector=True)
    image.SetSpacing((0.35, 0.35))  # a DPI-derived pixel size that is no CT spacing
    path = tmp_path / f"colour{suffix}"
    sitk.WriteImage(image, str(path))
    v = read_volume(path)
    assert v.shape == (1, 24, 32) and v.array.dtype == np.uint8 and v.is_slice
    assert v.spacing == (1.0, 1.0, 1.0)
    assert abs(int(v.array[0, 12, 4]) - 124) <= tol and abs(int(v.array[0, 12, 28]) - 154) <= tol


def test_slice_pixel_size_from_dpi_is_ignored(tmp_path):
    image = sitk.GetImageFromArray(np.arange(12 * 10, dtype=np.uint8).reshape(12, 10))
    image.SetSpacing((0.001, 0.001))  # 25400 dpi: would be an absurd CT spacing
    path = tmp_path / "tiny_pixels.png"
    sitk.WriteImage(image, str(path))
    v = check_volume(read_volume(path), need_3d=False)
    assert v.spacing == (1.0, 1.0, 1.0) and v.shape == (1, 12, 10)


def test_colour_volume_is_rejected(tmp_path):
    path = tmp_path / "rgb_volume.nrrd"
    sitk.WriteImage(sitk.Image([8, 8, 4], sitk.sitkVectorUInt8, 3), str(path))
    with pytest.raises(InputError, match="3 values per voxel"):
        read_volume(path)


def test_2d_nifti_becomes_a_one_slice_hu_volume(tmp_path):
    v = read_volume(make_2d_nifti(tmp_path))
    assert v.shape == (1, 32, 32) and v.is_slice and v.space == HU
    np.testing.assert_allclose(v.spacing[:2], SPACING[:2], atol=1e-6)
    check_volume(v, need_3d=False)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name, stem", [
    ("a.nii.gz", "a"), ("x.seg.nrrd", "x"), ("scan.mha", "scan"), ("0000.png", "0000"),
    ("case.labels.nii.gz", "case"), ("patient.001.nii.gz", "patient.001"), ("notes.txt", "notes"),
])
def test_stem_of(name, stem):
    assert stem_of(Path("/some/where") / name) == stem


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_error_and_is_not_modified(tmp_path, name):
    factory, expected = BAD_INPUTS[name]
    path = factory(tmp_path)
    before = _digest(path)
    with pytest.raises(InputError) as caught:
        check_volume(read_volume(path), need_3d=True)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and "Traceback" not in message and ".cxx" not in message
    assert _digest(path) == before


def test_truncated_uncompressed_nifti_is_rejected(tmp_path):
    # SimpleITK itself would return the missing half as zeros.
    path = tmp_path / "cut.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 16, 16), np.int16)), str(path))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match=r"truncated \(2000 of 4448 bytes present\)"):
        read_volume(path)


def _nrrd_with_header_field(path: Path, field: str, data: np.ndarray) -> Path:
    z, y, x = data.shape
    header = (f"NRRD0004\ntype: {'float' if data.dtype == np.float32 else 'short'}\n"
              f"dimension: 3\nsizes: {x} {y} {z}\nendian: little\nencoding: raw\n{field}\n\n")
    path.write_bytes(header.encode() + data.tobytes())
    return path


def test_negative_spacing_is_rejected_from_the_header(tmp_path):
    # SimpleITK would load this image with spacing 1 silently: the header check must catch it.
    data = np.arange(4 * 5 * 6, dtype="<i2").reshape(4, 5, 6)
    path = _nrrd_with_header_field(tmp_path / "neg.nrrd", "spacings: -1 1 1", data)
    with pytest.raises(InputError, match="spacing"):
        read_volume(path)


def test_nan_in_nrrd_is_rejected_by_check_volume(tmp_path):
    data = np.linspace(-1000, 100, 4 * 5 * 6, dtype="<f4").reshape(4, 5, 6)
    data[1, 2, 3] = np.nan
    v = read_volume(_nrrd_with_header_field(tmp_path / "nan.nrrd", "spacings: 1 1 1", data))
    with pytest.raises(InputError, match="1 NaN or infinite"):
        check_volume(v)


def test_check_volume_rules():
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    ok = Volume(array=array, spacing=(0.7, 0.7, 2.5))
    assert check_volume(ok, need_3d=True) is ok
    with pytest.raises(InputError, match="single 2D slice is needed"):
        check_volume(ok, need_3d=False)
    bad_spacings = [(0.7, 0.7, 0.0), (0.7, -0.7, 1), (0.7, 0.7, 80), (0.005, 1, 1), (np.nan, 1, 1)]
    for spacing in bad_spacings:
        with pytest.raises(InputError, match="spacing"):
            check_volume(Volume(array=ok.array, spacing=spacing))
    with pytest.raises(InputError, match="direction"):
        check_volume(Volume(array=ok.array, direction=(1, 0, 0, 1, 0, 0, 0, 0, 1)))


def test_check_size_against_memory():
    assert available_memory() and available_memory() > 0
    check_size(512 * 512 * 300, 2, (512, 512, 300), available=8 * 1024**3)
    expected = r"Image of 512x512x2000 voxels needs about 23\.4 GB.*only 8\.0 GB"
    with pytest.raises(InputError, match=expected):
        check_size(512 * 512 * 2000, 2, (512, 512, 2000), available=8 * 1024**3)
