"""Factories for bad inputs: each writes one small bad file (or folder) into ``tmp``.

Every factory returns the path to give to ``read_volume`` / the CLI. ``BAD_INPUTS`` maps a
name to ``(factory, substring expected in the one-line InputError message)``. All but
``2d_nifti`` fail in ``read_volume`` or ``check_volume(v)``; ``2d_nifti`` is a valid slice and
fails only where a 3D volume is required (``check_volume(v, need_3d=True)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import SimpleITK as sitk

SPACING = (0.7, 0.7, 2.5)


def _ct_like(shape=(8, 24, 24)) -> np.ndarray:
    """Deterministic int16 voxels in a CT-like range (z, y, x)."""
    return np.random.default_rng(0).integers(-1024, 400, size=shape).astype(np.int16)


def _write(array: np.ndarray, path: Path, spacing=SPACING) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: image.GetDimension()])
    sitk.WriteImage(image, str(path))
    return path


def make_missing(tmp: Path) -> Path:
    """A path that does not exist."""
    return Path(tmp) / "missing_scan.nii.gz"


def make_empty_dicom_folder(tmp: Path) -> Path:
    """A folder without any DICOM file (only a text note)."""
    folder = Path(tmp) / "empty_dicom"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("no images here\n")
    return folder


def make_truncated_nifti(tmp: Path) -> Path:
    """A .nii.gz cut in the middle of its voxel data (the header is intact)."""
    path = _write(_ct_like((16, 48, 48)), Path(tmp) / "truncated.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_4d(tmp: Path) -> Path:
    """A 4D NIfTI (three 3D time points)."""
    frames = [sitk.GetImageFromArray(_ct_like() + t) for t in range(3)]
    path = Path(tmp) / "timeseries.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    return path


def make_2d_nifti(tmp: Path) -> Path:
    """A 2D NIfTI: one slice where a 3D volume is needed."""
    return _write(_ct_like((1, 32, 32))[0], Path(tmp) / "slice2d.nii.gz")


def make_constant(tmp: Path) -> Path:
    """A 3D volume whose voxels are all -1000."""
    return _write(np.full((8, 24, 24), -1000, np.int16), Path(tmp) / "constant.nii.gz")


def make_nan(tmp: Path) -> Path:
    """A float32 volume with some NaN and infinite voxels."""
    array = _ct_like().astype(np.float32)
    array[2, 3:6, 4] = np.nan
    array[5, 0, 0] = np.inf
    return _write(array, Path(tmp) / "with_nan.nii.gz")


def make_bad_spacing(tmp: Path) -> Path:
    """A MetaImage whose slice spacing is 0 (NIfTI cannot store it; ITK reads .mha as is)."""
    array = _ct_like()
    z, y, x = array.shape
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"DimSize = {x} {y} {z}\nElementSpacing = 0.7 0.7 0\nElementType = MET_SHORT\n"
        "ElementDataFile = LOCAL\n"
    )
    path = Path(tmp) / "zero_spacing.mha"
    path.write_bytes(header.encode("ascii") + array.astype("<i2").tobytes())
    return path


def make_too_large(tmp: Path) -> Path:
    """An NRRD header declaring 4000^3 int16 voxels (128 GB) and no data behind it."""
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 4000 4000 4000\n"
        "space: left-posterior-superior\nspace directions: (0.5,0,0) (0,0.5,0) (0,0,0.5)\n"
        "space origin: (0,0,0)\nendian: little\nencoding: raw\n\n"
    )
    path = Path(tmp) / "huge.nrrd"
    path.write_text(header, encoding="ascii")
    return path


def make_corrupt(tmp: Path) -> Path:
    """Random bytes behind an image extension."""
    path = Path(tmp) / "corrupt.nrrd"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def make_unsupported(tmp: Path) -> Path:
    """A text file with an extension no reader handles."""
    path = Path(tmp) / "scan.txt"
    path.write_text("not an image\n")
    return path


Factory = Callable[[Path], Path]

BAD_INPUTS: Dict[str, Tuple[Factory, str]] = {
    "missing": (make_missing, "not found"),
    "empty_dicom_folder": (make_empty_dicom_folder, "No DICOM series"),
    "truncated_nifti": (make_truncated_nifti, "truncated"),
    "4d": (make_4d, "4D image"),
    "2d_nifti": (make_2d_nifti, "3D volume is needed"),
    "constant": (make_constant, "constant"),
    "nan": (make_nan, "NaN"),
    "bad_spacing": (make_bad_spacing, "spacing"),
    "too_large": (make_too_large, "needs about"),
    "corrupt": (make_corrupt, "Cannot read"),
    "unsupported": (make_unsupported, "Unsupported input"),
}
