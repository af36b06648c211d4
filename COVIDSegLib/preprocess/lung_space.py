"""The lung model's intensity space: the one the public COVID-19-CT-Seg slices were published in.

Each axial slice -> letterboxed to 256 x 256 -> min-max over the slice's own values -> 8 bits ->
CLAHE exactly as OpenCV's ``createCLAHE(clipLimit=7.0, tileGridSize=(8, 8))``
(``shared/data/README.md``). It is reproducible on any input (HU, 8-bit windows), so real
volumes reach the model in the space it was trained in. HU are clipped to [-1024, 3071] first,
so that padding values (-2048, -3024) do not stretch the range, and a flat non-air padding
outside the field of view (e.g. 0) becomes air (``unpad``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..morphology import body_per_slice, convex_hull_2d
from .transforms import LetterboxInfo, letterbox

SIZE = 256
CLIP_LIMIT = 7.0
TILES = 8
HU_RANGE = (-1024.0, 3071.0)
BODY_HU, TABLE_OPENING_PX = -500.0, 2  # the body whose rows or columns pad a non-square slice


def clahe_opencv(image: np.ndarray, clip_limit: float = CLIP_LIMIT, tiles: int = TILES) -> np.ndarray:
    """OpenCV's CLAHE of a uint8 (y, x) image whose sides are multiples of ``tiles``."""
    a = np.asarray(image, dtype=np.uint8)
    h, w = a.shape
    if h % tiles or w % tiles:
        raise ValueError(f"image sides {a.shape} must be multiples of {tiles}")
    th, tw = h // tiles, w // tiles
    area = th * tw
    limit = max(int(clip_limit * area / 256), 1)
    blocks = a.reshape(tiles, th, tiles, tw).transpose(0, 2, 1, 3).reshape(tiles * tiles, area)
    offsets = (np.arange(tiles * tiles) * 256)[:, None]
    hist = np.bincount((blocks.astype(np.int64) + offsets).ravel(), minlength=256 * tiles * tiles)
    hist = hist.reshape(tiles * tiles, 256)
    excess = np.maximum(hist - limit, 0).sum(axis=1)
    hist = np.minimum(hist, limit) + (excess // 256)[:, None]
    residual = excess % 256
    for t in np.flatnonzero(residual):  # OpenCV spreads the rest over every step-th bin
        step = max(256 // int(residual[t]), 1)
        hist[t, np.arange(0, 256, step)[: residual[t]]] += 1
    lut = np.rint(np.cumsum(hist, axis=1) * np.float32(255.0 / area)).clip(0, 255).astype(np.float32)
    lut = lut.reshape(tiles, tiles, 256)

    def coords(n: int, size: int):
        f = np.arange(n, dtype=np.float32) * np.float32(1.0 / size) - np.float32(0.5)
        lo = np.floor(f).astype(int)
        frac = (f - lo).astype(np.float32)
        return np.clip(lo, 0, tiles - 1), np.clip(lo + 1, 0, tiles - 1), frac

    y1, y2, ya = coords(h, th)
    x1, x2, xa = coords(w, tw)
    v = a.astype(np.intp)
    top = lut[y1[:, None], x1[None, :], v] * (1 - xa) + lut[y1[:, None], x2[None, :], v] * xa
    bottom = lut[y2[:, None], x1[None, :], v] * (1 - xa) + lut[y2[:, None], x2[None, :], v] * xa
    out = top * (1 - ya)[:, None] + bottom * ya[:, None]
    return np.rint(out).clip(0, 255).astype(np.uint8)


def minmax_uint8(image: np.ndarray) -> np.ndarray:
    """Min-max over the image's own range to 0..255 (a constant image becomes 0)."""
    a = np.asarray(image, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def corner_padding(plane: np.ndarray) -> np.ndarray:
    """The padding outside a round field of view: the pixels of exactly the value the four corners
    share, joined to a corner (none where the corners differ, as in measured, noisy air)."""
    corners = plane[[0, 0, -1, -1], [0, -1, 0, -1]]
    if not np.all(corners == corners[0]):
        return np.zeros(plane.shape, bool)
    flat, _ = ndimage.label(plane == corners[0])
    return np.isin(flat, np.unique(flat[[0, 0, -1, -1], [0, -1, 0, -1]]))


def unpad(hu: np.ndarray, air: float = HU_RANGE[0]) -> np.ndarray:
    """A slice whose corners share one non-air value (padding outside a round field of view
    stored as 0 or another tissue-like value): that flat corner region becomes air."""
    if float(hu[0, 0]) <= -900.0:
        return hu
    pad = corner_padding(hu)
    return np.where(pad, air, hu).astype(np.float32) if pad.any() else hu


def to_lung_space(slice_values: np.ndarray, is_hu: bool) -> tuple[np.ndarray, LetterboxInfo]:
    """One (y, x) slice (HU, or any 8-bit window) -> ((256, 256) float32 in 0..255, letterbox)."""
    out, info = slices_to_lung_space(np.asarray(slice_values)[None], is_hu)
    return out[0], info


def slices_to_lung_space(values: np.ndarray, is_hu: bool) -> tuple[np.ndarray, LetterboxInfo]:
    """(n, y, x) slices of one volume -> ((n, 256, 256) float32 in 0..255, their common
    letterbox); then min-max and CLAHE per slice.

    A non-square HU slice is padded by repeating its edge rows or columns where they cross the
    patient (the convex hull of the body), with air elsewhere (0.18.0). A lung cut by a cropped
    field of view then runs on to the border of the network's input, as in the training slices
    zoomed in, instead of meeting "air outside the body" (the lung models dropped such lungs
    along one edge). The table, detached from the body, is not repeated. 8-bit slices are padded
    with air."""
    a = np.asarray(values, dtype=np.float32)
    if is_hu:
        a = np.stack([unpad(s) for s in np.clip(a, *HU_RANGE)])
    boxed, info = letterbox(a, SIZE, order=1, pad_value=np.nan)
    air = a.reshape(len(a), -1).min(axis=1)[:, None, None]
    if is_hu and (info.height, info.width) != (SIZE, SIZE):
        inner = (slice(None), slice(info.top, info.top + info.height), slice(info.left, info.left + info.width))
        pads = ((0, 0), (info.top, SIZE - info.top - info.height), (info.left, SIZE - info.left - info.width))
        patient = np.pad(letterbox(patient_hull(a), SIZE, order=0)[0][inner], pads, mode="edge")
        boxed = np.where(np.isnan(boxed) & ~patient, air, np.pad(boxed[inner], pads, mode="edge"))
    boxed = np.where(np.isnan(boxed), air, boxed)
    out = np.empty(boxed.shape, np.float32)
    for i, plane in enumerate(boxed):
        out[i] = clahe_opencv(minmax_uint8(plane))
    return out, info


def patient_hull(hu: np.ndarray) -> np.ndarray:
    """Per slice, the convex hull of the body (``morphology.body_per_slice``)."""
    body = body_per_slice(hu, BODY_HU, TABLE_OPENING_PX)
    return np.stack([convex_hull_2d(b) if b.any() else b for b in body])


def volume_slices(stored: np.ndarray, is_hu: bool) -> np.ndarray:
    """(n, y, x) stored slices (HU, or 8-bit) -> (n, 256, 256) float32 in the lung space."""
    if not len(stored):
        return np.zeros((0, SIZE, SIZE), np.float32)
    return slices_to_lung_space(stored, is_hu)[0]
