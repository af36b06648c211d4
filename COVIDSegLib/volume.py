"""The in-memory image type: a (z, y, x) array plus SimpleITK (LPS) geometry."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Tuple

import numpy as np
import SimpleITK as sitk

Vec3 = Tuple[float, float, float]
Mat3 = Tuple[float, float, float, float, float, float, float, float, float]

IDENTITY: Mat3 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

# Intensity spaces a volume can be in (see COVIDSegLib.preprocess.intensity).
HU = "HU"
MEDSEG8 = "medseg8"


@dataclass
class Volume:
    """Image array indexed (z, y, x) with spacing/origin/direction in SimpleITK order (x, y, z).

    ``direction`` is the row-major 3x3 matrix whose columns are the LPS directions of the
    x, y and z index axes. ``space`` names the intensity space (``HU`` or ``MEDSEG8``).
    ``is_slice`` marks a volume read from a single 2D image (array shape (1, y, x)).
    """

    array: np.ndarray
    spacing: Vec3 = (1.0, 1.0, 1.0)
    origin: Vec3 = (0.0, 0.0, 0.0)
    direction: Mat3 = IDENTITY
    space: str = HU
    is_slice: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def with_array(self, array: np.ndarray, space: str | None = None) -> "Volume":
        """Same geometry, new voxels (e.g. a label map)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from {self.array.shape}")
        return replace(self, array=array, space=space or self.space, meta=dict(self.meta))

    def same_geometry(self, other: "Volume", tol: float = 1e-6) -> bool:
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def to_sitk(self) -> sitk.Image:
        return self.copy_geometry_to(sitk.GetImageFromArray(self.array))

    @classmethod
    def from_sitk(cls, image: sitk.Image, space: str = HU, is_slice: bool = False) -> "Volume":
        if image.GetDimension() != 3:
            raise ValueError("from_sitk expects a 3D image")
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(image.GetSpacing()),
            origin=tuple(image.GetOrigin()),
            direction=tuple(image.GetDirection()),
            space=space,
            is_slice=is_slice,
        )

    def copy_geometry_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction))
        return image
