"""Sanity checks on input images: each failure raises ``InputError`` with a one-line message.

``COVIDSegLib.io.files.read_volume`` runs the header-level checks (size, geometry) before it loads
any voxels; callers run ``check_volume`` on the loaded image once they know whether they
need a 3D volume or a 2D slice. Label maps are not checked with ``check_volume`` (an empty
label map is constant and still valid).
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..volume import Volume

# The pipeline holds about this many float32 copies of the image at its peak
# (input, normalised, resampled, network input/output, probabilities, labels...).
WORK_COPIES = 12
WORK_BYTES_PER_VOXEL = 4
MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 50.0
MAX_ORIGIN_MM = 1e6
ORTHONORMAL_TOLERANCE = 1e-3
GB = 1024**3


def shape_text(size_xyz: Sequence[int]) -> str:
    """``(512, 512, 300)`` -> ``"512x512x300"`` (sizes in x, y, z order)."""
    return "x".join(str(int(s)) for s in size_xyz)


def _number(value: float) -> str:
    return f"{float(value):g}"


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation, or ``None`` when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_size(
    n_voxels: int,
    bytes_per_voxel: int,
    size_xyz: Optional[Sequence[int]] = None,
    available: Optional[int] = None,
) -> None:
    """Reject an image whose processing would need more memory than is available.

    The working set is ``WORK_COPIES`` copies of at least float32 voxels. ``size_xyz`` only
    names the image in the message; ``available`` (bytes) overrides the system value.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    needed = int(n_voxels) * max(int(bytes_per_voxel), WORK_BYTES_PER_VOXEL) * WORK_COPIES
    if needed > available:
        what = shape_text(size_xyz) if size_xyz is not None else str(int(n_voxels))
        raise InputError(
            f"Image of {what} voxels needs about {needed / GB:.1f} GB of memory, "
            f"only {available / GB:.1f} GB available."
        )


def check_geometry(spacing: Sequence[float], direction: Optional[Sequence[float]] = None,
                   origin: Optional[Sequence[float]] = None) -> None:
    """Reject non-finite, zero, negative or absurd voxel spacing, a direction matrix that is not
    orthonormal (ITK would coerce it when writing) and a non-finite or absurd origin."""
    values = [float(s) for s in spacing]
    if not all(math.isfinite(s) and MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in values):
        raise InputError(
            f"Voxel spacing {' x '.join(_number(s) for s in values)} mm is not usable: "
            f"each spacing must be between {_number(MIN_SPACING_MM)} and "
            f"{_number(MAX_SPACING_MM)} mm."
        )
    if direction is not None:
        matrix = np.asarray(direction, dtype=float)
        n = int(round(math.sqrt(matrix.size)))
        matrix = matrix.reshape(n, n)
        if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-3:
            raise InputError("The image orientation (direction matrix) is invalid or degenerate.")
        with np.errstate(all="ignore"):  # huge entries overflow: not orthonormal either
            error = np.abs(matrix.T @ matrix - np.eye(n)).max()
        if not error <= ORTHONORMAL_TOLERANCE:
            raise InputError("The image orientation (direction matrix) is not orthonormal (sheared or scaled axes): "
                             "resample the image onto an orthogonal grid first.")
    if origin is not None and not all(math.isfinite(float(o)) and abs(float(o)) <= MAX_ORIGIN_MM for o in origin):
        raise InputError(f"The image origin ({', '.join(_number(o) for o in origin)}) mm is not usable: "
                         f"each coordinate must be finite and within {_number(MAX_ORIGIN_MM)} mm.")


def check_finite(array: np.ndarray) -> None:
    """Reject NaN or infinite voxels (only floating-point images can have them)."""
    if np.issubdtype(array.dtype, np.floating):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise InputError(f"Image has {bad} NaN or infinite voxels.")


def check_not_constant(array: np.ndarray) -> None:
    """Reject an image whose voxels all have the same value (nothing to segment)."""
    if array.size and array.min() == array.max():
        raise InputError(
            f"Image is constant (every voxel is {_number(array.flat[0])}): nothing to segment."
        )


def is_2d(volume: Volume) -> bool:
    """A single slice: read from a 2D file, or a volume only one voxel thick."""
    return volume.is_slice or volume.array.shape[0] == 1


def check_dimensionality(volume: Volume, need_3d: Optional[bool]) -> None:
    """Reject a 2D slice where a 3D volume is needed (``need_3d``) and vice versa."""
    size = shape_text(volume.array.shape[::-1])
    if need_3d and is_2d(volume):
        raise InputError(f"A 3D volume is needed, but the input is a single 2D slice ({size}).")
    if need_3d is False and not is_2d(volume):
        raise InputError(f"A single 2D slice is needed, but the input is a 3D volume ({size}).")


def check_volume(volume: Volume, need_3d: Optional[bool] = None) -> Volume:
    """Run every check on a loaded image; return it unchanged when it passes.

    ``need_3d``: True requires a volume, False a single slice, None accepts both.
    """
    if volume.array.ndim != 3 or volume.array.size == 0:
        raise InputError(f"Image has an unusable shape {volume.array.shape}.")
    check_dimensionality(volume, need_3d)
    check_geometry(volume.spacing, volume.direction, volume.origin)
    check_finite(volume.array)
    check_not_constant(volume.array)
    return volume
