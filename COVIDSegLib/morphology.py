"""Binary-mask helpers (SimpleITK based) used by the lung and post-processing steps."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import SimpleITK as sitk


def _img(mask: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))


def components(mask: np.ndarray, min_voxels: int = 1) -> Tuple[np.ndarray, List[int]]:
    """Label connected components (face connectivity), largest first; returns (labels, sizes)."""
    relabel = sitk.RelabelComponentImageFilter()
    relabel.SetMinimumObjectSize(int(min_voxels))
    relabel.SetSortByObjectSize(True)
    labels = relabel.Execute(sitk.ConnectedComponent(_img(mask)))
    return sitk.GetArrayFromImage(labels), [int(s) for s in relabel.GetSizeOfObjectsInPixels()]


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, sizes = components(mask)
    return labels == 1 if sizes else np.zeros(mask.shape, bool)


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill 2D holes in every axial slice of a (z, y, x) mask."""
    out = np.zeros(mask.shape, bool)
    for z in range(mask.shape[0]):
        if mask[z].any():
            out[z] = sitk.GetArrayFromImage(sitk.BinaryFillhole(_img(mask[z]))) > 0
    return out


def largest_per_slice(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 2D component of every axial slice."""
    out = np.zeros(mask.shape, bool)
    for z in range(mask.shape[0]):
        if mask[z].any():
            out[z] = largest_component(mask[z][None])[0]
    return out


def closing_inplane(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Binary closing with an in-plane ball (no mixing across slices)."""
    if radius_px < 1 or not mask.any():
        return mask.astype(bool)
    pad = radius_px + 1
    padded = np.pad(mask.astype(np.uint8), ((0, 0), (pad, pad), (pad, pad)))
    closed = sitk.BinaryMorphologicalClosing(_img(padded), [radius_px, radius_px, 0], sitk.sitkBall)
    return sitk.GetArrayFromImage(closed)[:, pad:-pad, pad:-pad] > 0


def opening_inplane(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Binary opening with an in-plane ball (detaches thin structures such as the CT table)."""
    if radius_px < 1:
        return mask.astype(bool)
    opened = sitk.BinaryMorphologicalOpening(_img(mask), [radius_px, radius_px, 0], sitk.sitkBall)
    return sitk.GetArrayFromImage(opened) > 0


def erode_inplane(mask: np.ndarray, radius_px: int) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.BinaryErode(_img(mask), [radius_px, radius_px, 0], sitk.sitkBall)) > 0


def dilate_inplane(mask: np.ndarray, radius_px: int) -> np.ndarray:
    if radius_px <= 0:
        return np.asarray(mask, bool)
    return sitk.GetArrayFromImage(sitk.BinaryDilate(_img(mask), [radius_px, radius_px, 0], sitk.sitkBall)) > 0


def dilate(mask: np.ndarray, radius_px: int) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.BinaryDilate(_img(mask), [radius_px] * 3, sitk.sitkBall)) > 0


def nearest_label(mask: np.ndarray, seeds: List[np.ndarray], spacing) -> np.ndarray:
    """Assign each voxel of ``mask`` the 1-based index of the nearest seed mask (Euclidean, mm)."""
    dists = []
    for seed in seeds:
        img = _img(seed)
        img.SetSpacing(tuple(float(s) for s in spacing))
        dmap = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
        dists.append(sitk.GetArrayFromImage(dmap))
    return np.where(mask, np.argmin(np.stack(dists), axis=0) + 1, 0).astype(np.uint8)


def convex_hull_2d(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of a 2D mask (pixel centres), computed on its bounding box."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros(mask.shape, bool)
    pts = []
    for r in rows:  # the leftmost and rightmost pixel of each row hold every hull vertex
        cols = np.flatnonzero(mask[r])
        pts += [(cols[0], r), (cols[-1], r)]
    hull = _monotone_chain(np.array(pts, dtype=float))
    y0, y1 = rows[0], rows[-1] + 1
    cols_any = np.flatnonzero(mask.any(axis=0))
    x0, x1 = cols_any[0], cols_any[-1] + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = np.ones(yy.shape, bool)
    for (ax, ay), (bx, by) in zip(hull, np.roll(hull, -1, axis=0)):
        inside &= (bx - ax) * (yy - ay) - (by - ay) * (xx - ax) >= -1e-9
    out = mask.astype(bool).copy()
    out[y0:y1, x0:x1] |= inside
    return out


def _monotone_chain(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise (in x-right, y-down pixel axes: clockwise on screen) convex hull."""
    pts = sorted(set(map(tuple, points)))
    if len(pts) < 3:
        return np.array(pts)

    def half(seq):
        chain: list = []
        for p in seq:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(reversed(pts))
    return np.array(lower[:-1] + upper[:-1])


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
