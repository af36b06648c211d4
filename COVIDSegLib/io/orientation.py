"""Radiological display orientation: SimpleITK "LPS" (rows anterior -> posterior, columns
patient-right -> patient-left, slices inferior -> superior). Permutes/flips only, never resamples;
``from_lps`` is the exact inverse of ``to_lps``."""
from __future__ import annotations

import itertools
from dataclasses import replace
from functools import lru_cache
from typing import Tuple

import numpy as np
import SimpleITK as sitk

from ..volume import Volume


@lru_cache(maxsize=64)
def _lps_axes(direction: tuple) -> Tuple[Tuple[int, int, int], Tuple[bool, bool, bool]]:
    """(permutation of the (z, y, x) axes, flip of each permuted axis) that
    ``sitk.DICOMOrient(image, "LPS")`` applies to an image with this direction, found by
    orienting a small probe with distinct axis lengths."""
    probe = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    image = sitk.GetImageFromArray(probe)
    image.SetDirection(direction)
    oriented = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
    perm = tuple(probe.shape.index(n) for n in oriented.shape)
    for flips in itertools.product((False, True), repeat=3):
        if np.array_equal(probe.transpose(perm)[_flip_index(flips)], oriented):
            return perm, flips
    raise AssertionError("DICOMOrient did more than permute and flip axes")  # cannot happen


def _flip_index(flips) -> tuple:
    return tuple(slice(None, None, -1) if f else slice(None) for f in flips)


def to_lps(array: np.ndarray, volume: Volume) -> np.ndarray:
    """``array`` (on the volume's grid) in LPS order: every axial plane in radiological display.
    A view (axes permuted and flipped as ``sitk.DICOMOrient`` does), never a copy."""
    perm, flips = _lps_axes(tuple(volume.direction))
    return np.asarray(array).transpose(perm)[_flip_index(flips)]


def from_lps(array: np.ndarray, volume: Volume) -> np.ndarray:
    """Inverse of ``to_lps`` (also a view): an LPS-ordered array back onto the volume's grid."""
    perm, flips = _lps_axes(tuple(volume.direction))
    return np.asarray(array)[_flip_index(flips)].transpose(np.argsort(perm))


def axial_slices(volume: Volume) -> int:
    """The number of axial slices of a volume stored in any array order."""
    return int(volume.shape[_lps_axes(tuple(volume.direction))[0][0]])


def lps_view(volume: Volume) -> Volume:
    """``orient_lps(volume)`` without copying the voxels: the array is ``to_lps``'s view, the
    geometry the one ``sitk.DICOMOrient(.., "LPS")`` gives (tested equal)."""
    perm, flips = _lps_axes(tuple(volume.direction))
    d, shape = volume.direction_matrix, volume.array.shape
    first = np.zeros(3)  # stored (x, y, z) index of the LPS grid's first voxel
    spacing, columns = [], []
    for lps_xyz in range(3):
        axis = perm[2 - lps_xyz]  # stored numpy axis behind this LPS axis
        flip = flips[2 - lps_xyz]
        if flip:
            first[2 - axis] = shape[axis] - 1
        spacing.append(float(volume.spacing[2 - axis]))
        columns.append((-1.0 if flip else 1.0) * d[:, 2 - axis])
    origin = np.asarray(volume.origin, float) + d @ (np.asarray(volume.spacing, float) * first)
    return replace(volume, array=to_lps(volume.array, volume), spacing=tuple(spacing),
                   origin=tuple(float(o) for o in origin),
                   direction=tuple(float(v) for v in np.stack(columns, axis=1).ravel()))


def orient_lps(volume: Volume) -> Volume:
    """The whole volume (array and geometry) reoriented to LPS."""
    return Volume.from_sitk(sitk.DICOMOrient(volume.to_sitk(), "LPS"), space=volume.space,
                            is_slice=volume.is_slice)


def lps_spacing_zyx(volume: Volume) -> Tuple[float, float, float]:
    """(z, y, x) spacing of the LPS-ordered grid."""
    image = sitk.DICOMOrient(volume.copy_geometry_to(sitk.Image([1, 1, 1], sitk.sitkUInt8)), "LPS")
    return tuple(float(s) for s in reversed(image.GetSpacing()))


def patient_coordinate(volume: Volume, axis: int, z: slice = slice(None)) -> np.ndarray:
    """Patient coordinate ``axis`` (0 x: towards the patient's left, 1 y: posterior, 2 z: superior;
    mm, LPS) of every voxel of slices ``z``, as an array broadcastable to their (z, y, x) shape:
    only the index axes it depends on have their length (e.g. (1, 1, x) for an axial volume)."""
    d = volume.direction_matrix
    nx, ny, nz = volume.shape[::-1]
    steps = [np.arange(nx) * volume.spacing[0], np.arange(ny) * volume.spacing[1],
             np.arange(nz)[z] * volume.spacing[2]]
    out = np.full((1, 1, 1), float(volume.origin[axis]))
    for j, shape in enumerate(((1, 1, -1), (1, -1, 1), (-1, 1, 1))):  # index axes x, y, z
        if d[axis, j] != 0.0:
            out = out + d[axis, j] * steps[j].reshape(shape)
    return out


_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def ras_affine(volume: Volume) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a volume's (LPS) geometry (NIfTI affine, Slicer IJKToRAS)."""
    affine = np.eye(4)
    affine[:3, :3] = volume.direction_matrix @ np.diag(volume.spacing)
    affine[:3, 3] = volume.origin
    return _LPS_TO_RAS @ affine


def geometry_from_ras(ijk_to_ras: np.ndarray) -> dict:
    """Inverse of ``ras_affine``: the ``spacing``, ``origin`` and ``direction`` (LPS, SimpleITK
    order) of a 4x4 IJK-to-RAS matrix, as ``Volume`` keyword arguments."""
    affine = _LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return {"spacing": tuple(float(s) for s in spacing), "origin": tuple(float(o) for o in affine[:3, 3]),
            "direction": tuple(float(d) for d in (affine[:3, :3] / spacing).ravel())}
