"""The shipped lung model with 3D post-processing on variants of a real HU volume.

``totalseg_example_ct_sm`` (lung bases and upper abdomen, 3 mm) with TotalSegmentator's lungs
as the reference: other array orientations, a prone-style header, lungs cut by the image
edge, thick and thin slices, padding values, and an abdomen-only slab. Each variant must give
the same lungs as the plain volume (within a small Dice margin) with the sides right.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib import morphology as morph
from COVIDSegLib.cli.commands import main
from COVIDSegLib.io.files import read_volume
from COVIDSegLib.bundle import load_bundle
from COVIDSegLib.lungs.lung_model import LungModel, load_lung_model
from COVIDSegLib.lungs.lungs3d import outside_air
from COVIDSegLib.lungs.segment import segment_lungs
from COVIDSegLib.preprocess.intensity import to_hu
from COVIDSegLib.quantify.measure import quantify
from COVIDSegLib.volume import Volume

NAME = "totalseg_example_ct_sm"
MARGIN = 0.05  # Dice a variant may lose against the plain volume


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b)))


@pytest.fixture(scope="module")
def model():
    lung_model = load_lung_model("auto")
    if lung_model is None:
        pytest.skip("the lung model bundle is not installed")
    return lung_model


@pytest.fixture(scope="module")
def real(request):
    from conftest import SHARED_DATA
    root = SHARED_DATA / "hu-volumes"
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is not available")
    return sitk.ReadImage(str(root / f"{NAME}.nii.gz")), sitk.ReadImage(str(root / f"{NAME}.lungs.nii.gz"))


def _volume(image: sitk.Image) -> Volume:
    return Volume.from_sitk(image)


def scores(model, image: sitk.Image, reference: sitk.Image) -> dict:
    labels = segment_lungs(_volume(image), model=model).array
    ref = sitk.GetArrayFromImage(reference)
    return {"both": dice(labels > 0, ref > 0), "left": dice(labels == 1, ref == 1),
            "right": dice(labels == 2, ref == 2), "labels": labels}


@pytest.fixture(scope="module")
def plain(model, real):
    return scores(model, *real)


def test_plain_volume_finds_both_lung_bases_and_no_abdomen(plain, real):
    ref = sitk.GetArrayFromImage(real[1])
    assert plain["both"] >= 0.75 and plain["left"] >= 0.6 and plain["right"] >= 0.8  # measured 0.80/0.67/0.88
    below_bases = np.flatnonzero(ref.any(axis=(1, 2)))[0] - 2  # slices well below the reference lungs
    assert not plain["labels"][:below_bases].any()  # no bowel gas, kidney or liver labelled lung


@pytest.mark.parametrize("orientation", ["RAS", "LPI", "RPS", "PLS"])
def test_other_array_orientations_give_the_same_lungs(model, real, plain, orientation):
    image, reference = (sitk.DICOMOrient(x, orientation) for x in real)
    s = scores(model, image, reference)
    for side in ("both", "left", "right"):
        assert s[side] >= plain[side] - MARGIN, side


def test_prone_header_gives_the_same_lungs(model, real, plain):
    """The array rotated 180 degrees in-plane with direction (-1, -1, 1), as a prone scan's
    ImageOrientationPatient (-1 0 0 0 -1 0) stores it: the patient's sides follow the header."""
    out = []
    for x in real:
        a = sitk.GetArrayFromImage(x)[:, ::-1, ::-1]
        rotated = sitk.GetImageFromArray(np.ascontiguousarray(a))
        size = np.array(x.GetSize(), float) - 1
        corner = x.TransformContinuousIndexToPhysicalPoint(tuple(size[:2]) + (0.0,))
        rotated.SetSpacing(x.GetSpacing())
        rotated.SetOrigin(corner)
        d = np.array(x.GetDirection()).reshape(3, 3) @ np.diag([-1.0, -1.0, 1.0])
        rotated.SetDirection(tuple(d.ravel()))
        out.append(rotated)
    s = scores(model, *out)
    for side in ("both", "left", "right"):
        assert s[side] >= plain[side] - MARGIN, side


def test_lungs_cut_by_the_image_edge_are_kept(model, real):
    ref = sitk.GetArrayFromImage(real[1])
    xs = np.flatnonzero(ref.any(axis=(0, 1)))
    crop = [int(xs[0]) + 3, int(xs[-1]) - 3]  # both lungs now run off the left and right edges
    image, reference = (x[crop[0]:crop[1], :, :] for x in real)
    s = scores(model, image, reference)
    assert s["both"] >= 0.7 and s["left"] >= 0.55 and s["right"] >= 0.75
    labels, ref_cut = s["labels"], sitk.GetArrayFromImage(reference)
    for edge in (0, -1):  # lung found along each cut edge (0.17.0's 2.5D model found none along one)
        assert (labels[..., edge] > 0).sum() >= 0.2 * (ref_cut[..., edge] > 0).sum(), edge
    cropped, plain = _volume(image), _volume(real[0])
    cut = quantify(cropped.with_array(labels), cropped, "hu").coverage
    whole_fov = quantify(plain.with_array(segment_lungs(plain, model=model).array), plain, "hu").coverage
    ref_slices = int(((ref_cut[..., 0] > 0) | (ref_cut[..., -1] > 0)).any(axis=1).sum())  # 10
    # measured: 2D lungs 9.3 % of the outline on 11 slices (0.16.0), 2.5D lungs 6 slices (0.18.0)
    assert cut["field_cut"] and cut["field_cut_slices"] >= ref_slices // 2
    assert not whole_fov["field_cut"] and whole_fov["field_cut_outline_percent"] == 0.0


@pytest.mark.parametrize("thickness", [1.5, 6.0, 9.0])
def test_thin_and_thick_slices(model, real, plain, thickness):
    def resample(image: sitk.Image, interpolator) -> sitk.Image:
        spacing = (image.GetSpacing()[0], image.GetSpacing()[1], thickness)
        size = [image.GetSize()[0], image.GetSize()[1],
                int(round(image.GetSize()[2] * image.GetSpacing()[2] / thickness))]
        return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                             image.GetDirection(), -1024 if interpolator == sitk.sitkLinear else 0)
    s = scores(model, resample(real[0], sitk.sitkLinear), resample(real[1], sitk.sitkNearestNeighbor))
    # each side: the thin left lung by the stomach fell to 0.72 at 9 mm with context across the gaps (0.20.0)
    for side in ("both", "left", "right"):
        assert s[side] >= plain[side] - 2 * MARGIN, side


@pytest.mark.parametrize("pad", [-1024, -2048, 0])
def test_padding_values_outside_the_field_of_view(model, real, plain, pad):
    a = sitk.GetArrayFromImage(real[0])
    _, ny, nx = a.shape
    y, x = np.mgrid[0:ny, 0:nx]
    outside = ((y - ny / 2) / (0.62 * ny)) ** 2 + ((x - nx / 2) / (0.62 * nx)) ** 2 > 1  # a round field of view
    padded = sitk.GetImageFromArray(np.where(outside[None], pad, a).astype(np.int16))
    padded.CopyInformation(real[0])
    s = scores(model, padded, real[1])
    for side in ("both", "left", "right"):
        assert s[side] >= plain[side] - MARGIN, side


def _dicom_series_lungs(model):
    from conftest import SHARED_DATA
    volume = read_volume(SHARED_DATA / "hu-volumes" / "totalseg_dicom_series")
    return volume, segment_lungs(volume, model=model).array  # DICOM: z, y (anterior->posterior), x (right->left)


def _only_the_right_base_sliver(volume, labels) -> None:
    """Lung, if any, is right lung in the series' top slices, in the trunk (not the arm), posterior."""
    assert set(np.unique(labels)) <= {0, 2}
    if not labels.any():
        return
    zs, ys, xs = np.nonzero(labels)
    assert zs.min() >= 10 and len(zs) * volume.voxel_volume_ml <= 3.0
    tissue = to_hu(volume).array > -500
    trunk = morph.fill_holes_per_slice(morph.largest_per_slice(tissue))  # not the arms
    assert trunk[labels > 0].all()
    body_x = np.nonzero(trunk[zs.min():].any(axis=(0, 1)))[0]
    assert xs.max() < body_x.mean() and ys.mean() > labels.shape[1] / 2  # patient's right, posterior


def test_dicom_series_has_no_lung_in_the_arm_or_the_abdomen(model, real):
    """The DICOM series (upper abdomen, 2 mm) shows only a sliver of the right lung base in its top
    slices. The shipped ensemble labels nothing else (the sliver itself: docs/LUNGS.md)."""
    _only_the_right_base_sliver(*_dicom_series_lungs(model))


def test_a_lung_tip_cut_by_the_scan_is_kept_under_the_noise_floor(real):
    """The 192 px network alone sees the sliver (0.6 mL once peeled): under the 1 mL floor for pieces
    wholly in the scan, kept because the scan's top slice cuts it."""
    bundle = load_bundle("covidseg_lungs")
    bundle.card["preprocessing"].pop("ensemble_with", None)  # the network without its ensemble member
    volume, labels = _dicom_series_lungs(LungModel(bundle))
    assert 0.2 <= np.count_nonzero(labels) * volume.voxel_volume_ml < 1.0
    _only_the_right_base_sliver(volume, labels)


def test_abdomen_only_slab_is_a_clear_error(real, model, tmp_path, capsys):
    """Slices below the lung bases only: `covidseg lungs` refuses with one line, writes nothing."""
    path = tmp_path / "abdomen.nii.gz"
    sitk.WriteImage(real[0][:, :, :12], str(path))
    before = path.read_bytes()
    assert main(["lungs", str(path), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No lung found" in err[0] and "abdomen.nii.gz" in err[0]
    assert not any((tmp_path / "out").glob("*")) and path.read_bytes() == before
    assert read_volume(path).shape[0] == 12


def test_no_medseg_slice_has_lung_in_the_air_around_the_body(model, shared_data):
    """On MedSeg 0028 the lung model took 4,110 pixels of noisy air beside the body for lung
    (0.15.0); the 3D rules now drop a mostly-gas piece joined to the air around the body."""
    paths = sorted((shared_data / "medseg100" / "images").glob("*.png"))
    if not paths:
        pytest.skip("medseg100 is not available")
    for path in paths:
        volume = read_volume(path)
        lungs = segment_lungs(volume, model=model).array > 0
        assert lungs.any(), path.name
        outside = outside_air(to_hu(volume, "medseg8").array, -950.0)
        assert not (lungs & outside).any(), path.name
