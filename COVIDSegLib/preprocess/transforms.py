"""Normalise images for the models: intensity windows, CLAHE, body crop, resampling, letterbox.

Arrays are indexed (z, y, x) (or (y, x) for one slice); geometry follows SimpleITK (x, y, z).
Every geometric step returns the information needed to map a result back exactly onto the
input grid (``uncrop``, ``restore_inplane``, ``unletterbox``). All resampling goes through
SimpleITK with the same conventions: pixel centres, ``sitk.Resample`` with a nearest-neighbour
extrapolator at the borders, and Gaussian anti-aliasing before smooth downsampling.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import morphology as morph
from ..progress import CancelToken, ProgressCallback, check, no_progress
from ..threads import thread_count, thread_map
from ..volume import Mat3, Vec3, Volume

__all__ = [
    "window", "normalise_zscore", "clahe",
    "CropBox", "body_box", "crop", "uncrop",
    "ResampleInfo", "resample_inplane", "restore_inplane",
    "LetterboxInfo", "letterbox", "unletterbox",
]

_INTERPOLATORS = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear,
                  "bspline": sitk.sitkBSpline, "label_gaussian": sitk.sitkLabelGaussian}
_ORDERS = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}


# ----------------------------------------------------------------------------- intensity

def window(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` (e.g. an HU window) linearly onto ``[0, 1]``, clipping outside; float32."""
    if not hi > lo:
        raise ValueError(f"window needs hi > lo, got [{lo}, {hi}]")
    a = np.asarray(array, dtype=np.float32)
    out = (a - np.float32(lo)) / np.float32(hi - lo)
    np.clip(out, 0.0, 1.0, out=out)
    out[a >= np.float32(hi)] = 1.0  # exact ends despite float32 rounding
    out[a <= np.float32(lo)] = 0.0
    return out


def normalise_zscore(array: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Zero mean, unit standard deviation (statistics over ``mask`` if given); float32.

    A constant image (standard deviation 0) is only centred.
    """
    a = np.asarray(array, dtype=np.float32)
    values = a if mask is None else a[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise ValueError("normalise_zscore: the mask is empty")
    mean, std = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
    return ((a - mean) / (std if std > 0 else 1.0)).astype(np.float32)


def clahe(image: np.ndarray, alpha: float = 0.3, beta: float = 0.3,
          radius: Optional[int] = None, tiles: int = 8,
          progress: ProgressCallback = no_progress,
          cancel: Optional[CancelToken] = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a (y, x) image or each slice of a
    (z, y, x) stack, with ``sitk.AdaptiveHistogramEqualizationImageFilter``.

    Input is expected in ``[0, 1]``; the output is float32 with the same shape, clipped to
    ``[0, 1]`` (the ITK filter keeps each slice within its own input range).

    Mapping to classic CLAHE (e.g. skimage ``equalize_adapthist(kernel_size, clip_limit)``):
    - ``radius`` is the half-width of the local window in pixels; classic CLAHE's tile grid of
      ``tiles`` x ``tiles`` corresponds to ``radius = min(y, x) // (2 * tiles)`` (the default).
    - ITK has no histogram clip limit. Contrast is limited instead by ``alpha``: 0 gives full
      local histogram equalisation (like a high clip limit), 1 an unsharp mask (like a low
      clip limit). ``beta`` (with ``alpha=1``) blends from unsharp mask (0) to identity (1).
      ``alpha=beta=0.3`` is a moderate enhancement comparable to ``clip_limit~0.01-0.02``.
    Constant slices are returned unchanged.
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim not in (2, 3):
        raise ValueError(f"clahe expects a (y, x) image or (z, y, x) stack, got shape {a.shape}")
    stack = a[None] if a.ndim == 2 else a
    r = int(radius) if radius is not None else max(1, min(stack.shape[1:]) // (2 * max(1, tiles)))
    flt = sitk.AdaptiveHistogramEqualizationImageFilter()
    flt.SetAlpha(float(alpha))
    flt.SetBeta(float(beta))
    flt.SetRadius([r, r])
    out = np.empty_like(stack)
    for k, plane in enumerate(stack):
        check(cancel)
        if float(plane.max()) > float(plane.min()):
            out[k] = sitk.GetArrayFromImage(flt.Execute(sitk.GetImageFromArray(plane)))
        else:
            out[k] = plane
        progress(k + 1, len(stack), "CLAHE")
    np.clip(out, 0.0, 1.0, out=out)
    return out[0] if a.ndim == 2 else out


# ----------------------------------------------------------------------------- body crop

@dataclass(frozen=True)
class CropBox:
    """Half-open voxel box ``[z0, z1) x [y0, y1) x [x0, x1)`` in (z, y, x) index order."""

    z0: int
    z1: int
    y0: int
    y1: int
    x0: int
    x1: int

    def __post_init__(self) -> None:
        if not (0 <= self.z0 < self.z1 and 0 <= self.y0 < self.y1 and 0 <= self.x0 < self.x1):
            raise ValueError(f"empty or negative crop box {self}")

    @classmethod
    def full(cls, shape: Sequence[int]) -> "CropBox":
        """The box covering a whole (z, y, x) or (y, x) array."""
        z, y, x = _shape3(shape)
        return cls(0, z, 0, y, 0, x)

    @property
    def slices(self) -> Tuple[slice, slice, slice]:
        return slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0


def _shape3(shape: Sequence[int]) -> Tuple[int, int, int]:
    """(z, y, x) of an array shape; a (y, x) shape is one slice."""
    if len(shape) == 2:
        return 1, int(shape[0]), int(shape[1])
    if len(shape) < 2:
        raise ValueError(f"need at least a 2D shape, got {tuple(shape)}")
    return int(shape[-3]), int(shape[-2]), int(shape[-1])


def _box_index(box: CropBox, shape: Sequence[int]) -> tuple:
    """Index into the last 3 axes (or the 2 axes of a (y, x) array) of ``shape``."""
    z, y, x = _shape3(shape)
    if box.z1 > z or box.y1 > y or box.x1 > x:
        raise ValueError(f"{box} does not fit in an array of shape {tuple(shape)}")
    return box.slices[1:] if len(shape) == 2 else (Ellipsis, *box.slices)


def body_box(array: np.ndarray, threshold: Optional[float] = None,
             margin: Union[int, Tuple[int, int, int]] = 4, open_radius: int = 1) -> CropBox:
    """Bounding box (plus ``margin`` voxels, clamped) of the body in a (z, y, x) or (y, x) image.

    Foreground is ``array > threshold``; by default the threshold is Otsu's, computed over the
    voxels above the image minimum (so an outside-the-field padding value such as -2048 HU or
    0 does not pull it down to the air level). The largest connected component after an
    in-plane erosion by ``open_radius`` (which cuts thin bridges) is kept: the body, not the
    table; a dilation by twice that radius, within the foreground, restores its outline.
    Never empty: returns the full image when nothing is found.
    """
    a = np.asarray(array)
    full = CropBox.full(a.shape)
    vol = a.reshape(full.shape).astype(np.float32, copy=False)
    image = vol[0] if vol.shape[0] == 1 else vol  # a slice as 2D: 2D morphology is faster
    if threshold is None:
        lowest = float(vol.min())
        if not float(vol.max()) > lowest:
            return full
        threshold = morph.otsu_threshold(image[image > lowest])
    fg = image > float(threshold)
    seeds = morph.erode_2d(fg, open_radius) if open_radius > 0 else fg
    largest = morph.largest_face_component(seeds)
    if open_radius > 0:  # give back what the erosion took, but not what it cut off
        largest = morph.dilate_2d(largest, 2 * open_radius) & fg
    if not largest.any():
        return full
    (bz, ez), (by, ey), (bx, ex) = ((b.start, b.stop) for b in morph.bounding_box(largest.reshape(full.shape)))
    mz, my, mx = (margin,) * 3 if isinstance(margin, int) else margin
    return CropBox(
        max(0, bz - mz), min(full.z1, ez + mz),
        max(0, by - my), min(full.y1, ey + my),
        max(0, bx - mx), min(full.x1, ex + mx),
    )


def crop(array: np.ndarray, box: CropBox) -> np.ndarray:
    """The part of ``array`` inside ``box`` (last 3 axes; a (y, x) array needs z range [0, 1))."""
    return np.asarray(array)[_box_index(box, np.shape(array))]


def uncrop(cropped: np.ndarray, box: CropBox, full_shape: Sequence[int], fill=0) -> np.ndarray:
    """Put ``cropped`` back at ``box`` in a new array of ``full_shape`` filled with ``fill``."""
    index = _box_index(box, full_shape)
    expected = tuple(full_shape[:-3]) + box.shape if len(full_shape) > 2 else box.shape[1:]
    if tuple(cropped.shape) != expected:
        raise ValueError(f"cropped shape {cropped.shape} does not match {box} ({expected})")
    out = np.full(tuple(full_shape), fill, dtype=cropped.dtype)
    out[index] = cropped
    return out


# ----------------------------------------------------------------------------- resampling

def _sitk_array(array: np.ndarray, smooth: bool) -> Tuple[np.ndarray, bool]:
    """An array SimpleITK accepts, and whether it was bool (a mask: resampled as uint8, or as
    float32 for a ``smooth`` interpolator; either way thresholded back at 0.5)."""
    a = np.asarray(array)
    if a.dtype == bool:
        return a.astype(np.float32 if smooth else np.uint8), True
    return a, False


def _pixel_id(arr: np.ndarray) -> int:
    """SimpleITK's pixel type for ``arr``'s dtype."""
    return sitk.GetImageFromArray(np.zeros((1, 1, 1), arr.dtype)).GetPixelID()


def _smooth_type(arr: np.ndarray, smooth: bool) -> int:
    """Output pixel type of a resampling: float32 for integers under a smooth interpolator."""
    own = _pixel_id(arr)
    return sitk.sitkFloat32 if smooth and own not in (sitk.sitkFloat32, sitk.sitkFloat64) else own


def _cast_back(out: np.ndarray, dtype: np.dtype, was_bool: bool) -> np.ndarray:
    """Resampled voxels in the input's type: masks thresholded at 0.5, integers rounded."""
    if was_bool:
        return out > 0.5
    if np.issubdtype(dtype, np.integer) and out.dtype != dtype:
        limits = np.iinfo(dtype)
        return np.clip(np.rint(out), limits.min, limits.max).astype(dtype)
    return out


def _antialias(planes: np.ndarray, factors_xy: Tuple[float, float]) -> np.ndarray:
    """Gaussian pre-filter in x, y of (n, y, x) ``planes`` for downsampling by ``factors_xy``
    (sigma = (f - 1) / 2 px); float32 (unchanged when no filtering is needed).

    The filter of ``sitk.DiscreteGaussian`` (maximum error 0.01, kernel at most 64 wide, edge
    pixels extended), applied as two 1D correlations (scipy): same values, ~4x faster; several
    planes are split between threads (``threads.thread_map``; same values)."""
    sigmas = [max(0.0, (f - 1.0) / 2.0) for f in factors_xy]
    if max(sigmas) < 0.05:
        return planes
    a = planes.astype(np.float32, copy=False)
    out = np.empty(a.shape, np.float32)  # the only new array: each pass writes into it

    def smooth(part: slice) -> None:
        source = a[part]
        for axis, sigma in ((-1, sigmas[0]), (-2, sigmas[1])):
            if sigma > 0:
                ndimage.correlate1d(source, _gaussian_kernel(round(sigma, 6)), axis=axis, mode="nearest",
                                    output=out[part])
                source = out[part]

    if a.ndim != 3 or len(a) < 2:
        smooth(slice(None))
    else:
        bounds = np.linspace(0, len(a), min(thread_count(), len(a)) + 1).astype(int)
        thread_map(smooth, [slice(b0, b1) for b0, b1 in zip(bounds[:-1], bounds[1:])])
    return out


@lru_cache(maxsize=512)
def _gaussian_kernel(sigma_px: float) -> np.ndarray:
    """The 1D kernel of ``sitk.DiscreteGaussian`` for ``sigma_px``: its impulse response."""
    impulse = np.zeros((1, 129), np.float32)
    impulse[0, 64] = 1.0
    response = sitk.DiscreteGaussian(sitk.GetImageFromArray(impulse), variance=[sigma_px ** 2, 0.0],
                                     maximumKernelWidth=64, maximumError=0.01, useImageSpacing=True)
    kernel = sitk.GetArrayFromImage(response)[0].astype(np.float64)
    nonzero = np.flatnonzero(kernel)
    return kernel[nonzero[0]:nonzero[-1] + 1]


def _resample(image: sitk.Image, size, spacing, origin, direction, interpolator: int,
              pixel_type: int, default: float = 0.0) -> sitk.Image:
    """Resample onto a grid with identity transform; borders extrapolate nearest-neighbour."""
    flt = sitk.ResampleImageFilter()
    flt.SetSize([int(s) for s in size])
    flt.SetOutputSpacing([float(s) for s in spacing])
    flt.SetOutputOrigin([float(o) for o in origin])
    flt.SetOutputDirection([float(d) for d in direction])
    flt.SetInterpolator(interpolator)
    flt.SetOutputPixelType(pixel_type)
    flt.SetDefaultPixelValue(float(default))
    flt.SetUseNearestNeighborExtrapolator(True)
    return flt.Execute(image)


@dataclass(frozen=True)
class ResampleInfo:
    """The original grid (to restore) and the resampled one (to check), SimpleITK order."""

    size: Tuple[int, int, int]
    spacing: Vec3
    origin: Vec3
    direction: Mat3
    resampled_size: Tuple[int, int, int]
    resampled_spacing: Vec3


def resample_inplane(volume: Volume, pixel_size: float, interpolator: str = "linear",
                     antialias: bool = True, keep_dtype: bool = True) -> Tuple[Volume, ResampleInfo]:
    """Resample x and y to square ``pixel_size`` mm pixels; z (slices) stays untouched.

    The new grid covers the same physical extent, centred on the original one (same centre,
    same direction; the number of pixels is the rounded extent / ``pixel_size``). Smooth
    interpolators are preceded by Gaussian anti-aliasing when downsampling. The dtype is
    kept: integers are interpolated in float and rounded, bool masks thresholded at 0.5 (with
    ``keep_dtype=False`` a smooth interpolator returns its float32 values unrounded).
    ``interpolator``: nearest, linear, bspline or label_gaussian.
    """
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    size, spacing = tuple(reversed(volume.shape)), tuple(volume.spacing)
    new_size = [max(1, int(round(n * s / pixel_size))) for n, s in zip(size[:2], spacing[:2])]
    new_size.append(size[2])
    new_spacing = (float(pixel_size), float(pixel_size), float(spacing[2]))
    shift = [((n - 1) * s - (m - 1) * pixel_size) / 2.0
             for n, s, m in zip(size[:2], spacing[:2], new_size[:2])] + [0.0]
    new_origin = tuple(float(o) for o in
                       np.asarray(volume.origin, float) + volume.direction_matrix @ shift)
    factors = (pixel_size / spacing[0], pixel_size / spacing[1]) if antialias else None
    out_arr = _resample_slabs(volume, new_size, new_spacing, new_origin, interpolator, factors, keep_dtype)
    result = Volume(out_arr, new_spacing, new_origin,
                    tuple(volume.direction), volume.space, volume.is_slice, dict(volume.meta))
    info = ResampleInfo(tuple(size), tuple(volume.spacing), tuple(volume.origin),
                        tuple(volume.direction), tuple(new_size), new_spacing)
    return result, info


def restore_inplane(resampled: Volume, info: ResampleInfo, nearest: bool = False,
                    interpolator: Optional[str] = None) -> Volume:
    """Map a volume on the ``resample_inplane`` grid back onto the exact original grid.

    ``nearest=True`` for label maps, else linear (probabilities, images); ``interpolator``
    overrides both (e.g. ``label_gaussian`` for smoother label boundaries).
    """
    grid = tuple(reversed(resampled.shape))
    if grid != info.resampled_size or not np.allclose(resampled.spacing, info.resampled_spacing):
        raise ValueError(
            f"volume grid {grid} / {resampled.spacing} is not the resampled grid "
            f"{info.resampled_size} / {info.resampled_spacing} of this ResampleInfo")
    name = interpolator or ("nearest" if nearest else "linear")
    out_arr = _resample_slabs(resampled, info.size, info.spacing, info.origin, name, None)
    return Volume(out_arr, info.spacing, info.origin,
                  info.direction, resampled.space, resampled.is_slice, dict(resampled.meta))


def _resample_slabs(volume: Volume, size, spacing, origin, interpolator: str,
                    antialias_xy: Optional[Tuple[float, float]], keep_dtype: bool = True,
                    slab: int = 32) -> np.ndarray:
    """In-plane resampling of ``volume`` onto the grid (size, spacing, origin; same direction and
    slices), ``slab`` slices at a time so that a large volume never needs a full float copy.
    ``antialias_xy``: downsampling factors for the Gaussian pre-filter (None: none)."""
    if interpolator not in _INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {sorted(_INTERPOLATORS)}")
    smooth = interpolator in ("linear", "bspline")
    out = None
    step = volume.direction_matrix[:, 2] * volume.spacing[2]
    for z0 in range(0, volume.shape[0], slab):
        arr, was_bool = _sitk_array(volume.array[z0:z0 + slab], smooth)
        pixel_type = _smooth_type(arr, smooth)
        source = sitk.GetImageFromArray(_antialias(arr, antialias_xy) if antialias_xy and smooth else arr)
        source.SetSpacing(volume.spacing)
        source.SetOrigin(tuple(np.asarray(volume.origin, float) + z0 * step))
        source.SetDirection(volume.direction)
        part = _resample(source, (size[0], size[1], len(arr)), spacing, tuple(np.asarray(origin, float) + z0 * step),
                         volume.direction, _INTERPOLATORS[interpolator], pixel_type)
        part = sitk.GetArrayFromImage(part)
        if keep_dtype or was_bool:
            part = _cast_back(part, volume.array.dtype, was_bool)
        if out is None:
            out = np.empty((volume.shape[0],) + part.shape[1:], part.dtype)
        out[z0:z0 + len(part)] = part
    return out


# ----------------------------------------------------------------------------- letterbox

@dataclass(frozen=True)
class LetterboxInfo:
    """How a (y, x) image was placed in a ``size`` x ``size`` square.

    ``scale`` is the original-pixel size of one letterbox pixel (>1 means shrunk); the
    content occupies rows ``[top, top + height)`` and columns ``[left, left + width)``.
    """

    shape: Tuple[int, int]
    size: int
    scale: float
    top: int
    left: int
    height: int
    width: int
    pad_value: float


def _planes(array: np.ndarray) -> np.ndarray:
    """(y, x) or (n, y, x) as (n, y, x)."""
    if array.ndim not in (2, 3):
        raise ValueError(f"expected a (y, x) image or an (n, y, x) batch, got shape {array.shape}")
    return array[None] if array.ndim == 2 else array


def _check_order(order: int) -> None:
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {sorted(_ORDERS)}")


def _unchanged(planes: np.ndarray, order: int) -> np.ndarray:
    """Resampling onto the same grid: a copy (float32 for integer input with ``order`` > 0)."""
    _check_order(order)
    keep = order == 0 or planes.dtype == bool or np.issubdtype(planes.dtype, np.floating)
    return planes.copy() if keep else planes.astype(np.float32)


def _resize_planes(planes: np.ndarray, out_hw: Tuple[int, int], spacing: float,
                   origin_yx: Tuple[float, float], order: int, antialias: bool) -> np.ndarray:
    """Resample each plane of (n, y, x) ``planes`` (unit pixels, origin 0) onto a grid of
    ``out_hw`` pixels of ``spacing`` whose first pixel centre is at ``origin_yx``."""
    _check_order(order)
    arr, was_bool = _sitk_array(planes, order > 0)
    if order > 0 and not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    pixel_type = _pixel_id(arr)
    source = sitk.GetImageFromArray(_antialias(arr, (spacing, spacing)) if antialias and order > 0 else arr)
    out = _resample(source, (out_hw[1], out_hw[0], len(arr)), (spacing, spacing, 1.0),
                    (origin_yx[1], origin_yx[0], 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1),
                    _ORDERS[order], pixel_type)
    return _cast_back(sitk.GetArrayFromImage(out), arr.dtype, was_bool)


def letterbox(image: np.ndarray, size: int, order: int = 1, pad_value: float = 0.0,
              antialias: bool = True) -> Tuple[np.ndarray, LetterboxInfo]:
    """Resize a (y, x) image (or (n, y, x) batch) without distortion so that its longer side is
    ``size``, and centre it in a ``size`` x ``size`` square padded with ``pad_value``.

    ``order``: 0 nearest (labels), 1 linear, 3 B-spline. The dtype is kept, except integers
    with ``order`` > 0 become float32 (bool masks stay bool, thresholded at 0.5). An image
    already ``size`` x ``size`` is returned unchanged (a copy).
    """
    a = np.asarray(image)
    planes = _planes(a)
    h, w = planes.shape[1:]
    scale = max(h, w) / float(size)
    height, width = (min(size, max(1, int(round(n / scale)))) for n in (h, w))
    top, left = (size - height) // 2, (size - width) // 2
    info = LetterboxInfo((h, w), int(size), scale, top, left, height, width, float(pad_value))
    if (h, w) == (size, size):
        out = _unchanged(planes, order)
        return (out[0] if a.ndim == 2 else out), info
    origin = tuple((n - 1) / 2.0 - (p + (m - 1) / 2.0) * scale
                   for n, p, m in ((h, top, height), (w, left, width)))
    out = _resize_planes(planes, (size, size), scale, origin, order, antialias)
    content = np.zeros(out.shape[1:], dtype=bool)
    content[top:top + height, left:left + width] = True
    out[:, ~content] = pad_value
    return (out[0] if a.ndim == 2 else out), info


def unletterbox(array: np.ndarray, info: LetterboxInfo, order: int = 1,
                antialias: bool = True, window: Optional[Tuple[slice, slice]] = None) -> np.ndarray:
    """Inverse of ``letterbox``: drop the padding and resize back to the original (y, x) shape.

    Works on (size, size) or (n, size, size); ``order`` 0 for labels, 1 for probabilities.
    ``window`` (row and column slices of the original shape, with explicit bounds) computes
    only that part: the same samples, fewer of them.
    """
    rows, cols = window or (slice(0, info.shape[0]), slice(0, info.shape[1]))
    a = np.asarray(array)
    planes = _planes(a)
    if planes.shape[1:] != (info.size, info.size):
        raise ValueError(f"expected ({info.size}, {info.size}) planes, got {planes.shape[1:]}")
    content = planes[:, info.top:info.top + info.height, info.left:info.left + info.width]
    h, w = info.shape
    if (h, w) == (info.size, info.size):
        out = _unchanged(content[:, rows, cols], order)
    else:
        # Centres aligned: original pixel i lies at content coordinate
        # (m - 1) / 2 + (i - (n - 1) / 2) / scale.
        origin = tuple(((m - 1) / 2.0 + (start - (n - 1) / 2.0) / info.scale)
                       for n, m, start in ((h, info.height, rows.start), (w, info.width, cols.start)))
        size = (rows.stop - rows.start, cols.stop - cols.start)
        out = _resize_planes(content, size, 1.0 / info.scale, origin, order, antialias)
    return out[0] if a.ndim == 2 else out
