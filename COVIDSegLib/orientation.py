"""Radiological display orientation: SimpleITK "LPS" (rows anterior -> posterior, columns
patient-right -> patient-left, slices inferior -> superior). Permutes/flips only, never resamples;
``from_lps`` is the exact inverse of ``to_lps``."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import SimpleITK as sitk

from .volume import Volume


def _image(array: np.ndarray, volume: Volume) -> sitk.Image:
    return volume.copy_geometry_to(sitk.GetImageFromArray(np.ascontiguousarray(array)))


def orientation_code(volume: Volume) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(volume.direction)


def to_lps(array: np.ndarray, volume: Volume) -> np.ndarray:
    """``array`` (on the volume's grid) in LPS order: every axial plane in radiological display."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(_image(array, volume), "LPS"))


def from_lps(array: np.ndarray, volume: Volume) -> np.ndarray:
    """Inverse of ``to_lps``: an LPS-ordered array back onto the volume's own grid."""
    reference = sitk.DICOMOrient(_image(np.zeros(volume.shape, np.uint8), volume), "LPS")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, orientation_code(volume)))


def orient_lps(volume: Volume) -> Volume:
    """The whole volume (array and geometry) reoriented to LPS."""
    return Volume.from_sitk(sitk.DICOMOrient(volume.to_sitk(), "LPS"), space=volume.space,
                            is_slice=volume.is_slice)


def lps_spacing_zyx(volume: Volume) -> Tuple[float, float, float]:
    """(z, y, x) spacing of the LPS-ordered grid."""
    image = sitk.DICOMOrient(volume.copy_geometry_to(sitk.Image([1, 1, 1], sitk.sitkUInt8)), "LPS")
    return tuple(float(s) for s in reversed(image.GetSpacing()))


def patient_coordinate(volume: Volume, axis: int) -> np.ndarray:
    """Patient coordinate ``axis`` (0 x: towards the patient's left, 1 y: posterior, 2 z: superior;
    mm, LPS) of every voxel, as an array broadcastable to the volume's (z, y, x) shape."""
    d = volume.direction_matrix
    steps = [np.arange(n, dtype=np.float64) * sp for n, sp in zip(volume.shape[::-1], volume.spacing)]
    out = float(volume.origin[axis])
    for j, shape in enumerate(((1, 1, -1), (1, -1, 1), (-1, 1, 1))):  # index axes x, y, z
        out = out + d[axis, j] * steps[j].reshape(shape)
    return out
