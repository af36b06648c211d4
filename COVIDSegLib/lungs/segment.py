"""Training-free lung segmentation of chest CT (HU, or 8-bit MedSeg through the HU mapping).

Steps: body = largest non-air region per slice with holes filled; lung candidates = air-like
voxels inside the body; trachea/main bronchi removed by region growing from a seed in the top
slices; the two largest lung components kept (a single one spanning both sides is split by
erosion); left/right from the LPS direction cosines (label 1 = patient's left); holes filled per
slice and peripheral "bites" (dense consolidation, effusion against the chest wall) closed with
the lung's convex hull except on its mediastinal side; the border smoothed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import morphology as morph
from ..io.orientation import from_lps, lps_spacing_zyx, patient_coordinate, to_lps
from ..labels import BACKGROUND, LEFT_LUNG, RIGHT_LUNG
from ..preprocess.intensity import MEDSEG8, resolve_calibration, to_hu
from ..preprocess.transforms import resample_inplane, restore_inplane
from ..progress import CancelToken, ProgressCallback, check, no_progress
from ..volume import Volume
from .lungs3d import keep_lung_components, lungs_from_mask, split_by_erosion


@dataclass(frozen=True)
class LungParams:
    body_threshold_hu: float = -500.0  # above: body (tissue)
    lung_threshold_hu: float = -250.0  # below, inside the body: lung/air candidate (GGO included)
    airway_thresholds_hu: tuple = (-950.0, -975.0, -1000.0)  # tried until the airway tree stays small
    max_airway_ml: float = 200.0
    min_lung_ml: float = 0.5  # smaller air pockets (bowel gas, bronchi on single slices) are dropped
    keep_share: float = 0.02  # further components are kept if >= this share of the largest
    smoothing_mm: float = 2.0
    table_opening_mm: float = 3.0  # opening that detaches the CT table from the body
    close_bites: bool = True  # classic fallback only; its lung components are first filtered in 3D
    working_pixel_mm: float = 1.25  # finer in-plane grids are segmented at this pixel size (speed); 0 = never


def segment_lungs(
    volume: Volume,
    calibration: str = "auto",
    params: LungParams = LungParams(),
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
    model=None,
) -> Volume:
    """Label map (uint8; 1 = left lung, 2 = right lung) in the input's exact geometry.

    With ``model`` (a ``lung_model.LungModel``) the learned lungs go through the 3D
    post-processing of ``lungs3d``; without, the training-free method below runs (fallback).

    Grids finer than ``params.working_pixel_mm`` in-plane are segmented on a resampled grid of
    that pixel size and the labels mapped back (nearest neighbour): about 4x fewer pixels for
    typical 0.6-0.8 mm CT, with contours within a working pixel.
    """
    calibration = resolve_calibration(volume, calibration)

    def run(grid: Volume) -> np.ndarray:
        if model is not None:
            return _learned(grid, calibration, model, params, progress, cancel)
        return _segment_grid(to_hu(grid, calibration), params, progress, cancel)

    fine = params.working_pixel_mm > 0 and min(volume.spacing[:2]) < 0.9 * params.working_pixel_mm
    if not fine:
        return volume.with_array(run(volume))
    # resample the stored voxels first (slab by slab): no full-size float copy of a large volume
    coarse, info = resample_inplane(volume, params.working_pixel_mm, "linear", keep_dtype=False)  # unrounded
    labels = coarse.with_array(run(coarse))
    return volume.with_array(restore_inplane(labels, info, nearest=True).array)


def _segment_grid(volume: Volume, params: LungParams, progress: ProgressCallback,
                  cancel: Optional[CancelToken]) -> np.ndarray:
    hu = volume.array
    steps = 6
    progress(0, steps, "body")
    body = body_mask(hu, volume, params)
    candidates = (hu < params.lung_threshold_hu) & body
    check(cancel)
    progress(1, steps, "airways")
    candidates &= ~airway_mask(hu, candidates, volume, params)
    spacing = lps_spacing_zyx(volume)  # rule "not wholly below the main lung" needs LPS z
    candidates = from_lps(keep_lung_components(to_lps(candidates, volume), to_lps(hu, volume), spacing), volume)
    check(cancel)
    progress(2, steps, "lung components")
    sides = split_lungs(candidates, body, volume, params)
    check(cancel)
    progress(3, steps, "filling")
    labels = np.zeros(hu.shape, np.uint8)
    for side in (RIGHT_LUNG, LEFT_LUNG):
        lung = morph.closing_inplane(sides == side, _px(params.smoothing_mm, volume))
        lung = morph.fill_holes_per_slice(lung)
        if params.close_bites:
            lung = close_peripheral_bites(lung, body, volume)
        labels[lung & (labels == BACKGROUND)] = side
        check(cancel)
    progress(steps, steps, "done")
    return labels


def _learned(volume: Volume, calibration: str, model, params: LungParams, progress: ProgressCallback,
             cancel: Optional[CancelToken]) -> np.ndarray:
    """Labels of the lung model + ``lungs3d`` on the volume's own grid (LPS inside)."""
    lps = to_lps(volume.array, volume)
    spacing = lps_spacing_zyx(volume)
    hu = to_hu(Volume(np.asarray(lps), space=volume.space), calibration).array  # once, for model and 3D
    is_hu = calibration != MEDSEG8  # 8-bit slices reach the model as they are, as in training
    prob = model.probabilities(hu if is_hu else np.asarray(lps), is_hu, progress, cancel, slice_mm=spacing[0])
    check(cancel)
    grid = Volume(hu, spacing=tuple(reversed(spacing)))  # LPS-ordered, identity direction
    airways = airway_mask(hu, hu < params.lung_threshold_hu, grid, params)
    x_mm = patient_coordinate(grid, 0)
    labels = lungs_from_mask(prob >= 128, hu, x_mm, airways, spacing)
    return np.ascontiguousarray(from_lps(labels, volume))


def body_mask(hu: np.ndarray, volume: Volume, params: LungParams = LungParams()) -> np.ndarray:
    """The patient's body per slice: tissue above the threshold, table detached, holes filled."""
    return morph.fill_holes_per_slice(morph.body_per_slice(hu, params.body_threshold_hu,
                                                           _px(params.table_opening_mm, volume)))


def _px(mm: float, volume: Volume) -> int:
    return int(round(mm / min(volume.spacing[0], volume.spacing[1])))


def _voxels(ml: float, volume: Volume) -> int:
    return max(1, int(ml / volume.voxel_volume_ml))


def airway_mask(hu: np.ndarray, candidates: np.ndarray, volume: Volume, params: LungParams) -> np.ndarray:
    """Trachea and main bronchi: grown from a tracheal seed in the most superior lung slices."""
    seed = _trachea_seed(candidates, volume)
    if seed is None:
        return np.zeros(hu.shape, bool)
    image = sitk.GetImageFromArray(np.where(candidates, hu, 0).astype(np.float32, copy=False))
    for threshold in params.airway_thresholds_hu:
        grown = sitk.GetArrayFromImage(sitk.ConnectedThreshold(image, [seed], -3000.0, threshold)) > 0
        if grown.sum() * volume.voxel_volume_ml <= params.max_airway_ml:
            return morph.dilate(grown, 1)
    return np.zeros(hu.shape, bool)


def _trachea_seed(candidates: np.ndarray, volume: Volume):
    """(x, y, z) index of a small round air component near the middle of the most superior slices."""
    if volume.shape[0] < 8:
        return None  # too few slices to tell a trachea from a small lung section
    zs = np.flatnonzero(candidates.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    superior_last = volume.direction_matrix[2, 2] * volume.spacing[2] > 0  # LPS +z is superior
    top = zs[-max(1, zs.size // 5):] if superior_last else zs[: max(1, zs.size // 5)]
    area_px = 1.0 / (volume.spacing[0] * volume.spacing[1])
    for z in (top[::-1] if superior_last else top):
        labels, sizes = morph.components(candidates[z][None])
        for i, size in enumerate(sizes, start=1):
            if 50 * area_px <= size <= 900 * area_px:
                ys, xs = np.nonzero(labels[0] == i)
                if abs(xs.mean() - candidates.shape[2] / 2) < candidates.shape[2] / 6:
                    return (int(np.median(xs)), int(np.median(ys)), int(z))
    return None


def split_lungs(candidates: np.ndarray, body: np.ndarray, volume: Volume, params: LungParams) -> np.ndarray:
    """Lung components labelled by side (1 left, 2 right); small ones dropped.

    Diseased lungs fall apart into several air components, so every component of at least
    ``keep_share`` of the largest is kept and given the side of its centroid; a component spanning
    both sides of the body midline (lungs touching at the anterior junction) is split by erosion.
    """
    labels, sizes = morph.components(candidates, _voxels(params.min_lung_ml, volume))
    out = np.zeros(candidates.shape, np.uint8)
    mid = _body_midline_x(body, volume)
    for i, size in enumerate(sizes, start=1):
        if size < params.keep_share * sizes[0]:
            break
        part = labels == i
        split = i == 1 and _spans_midline(part, volume, mid)
        for piece in split_by_erosion(part, tuple(reversed(volume.spacing))) if split else (part,):
            if piece.any():
                out[piece] = LEFT_LUNG if _lps_x(piece, volume) > mid else RIGHT_LUNG
    return out


def _lps_x(mask: np.ndarray, volume: Volume) -> float:
    """Mean LPS x (mm) of a mask; +x is the patient's left."""
    return float(np.broadcast_to(patient_coordinate(volume, 0), mask.shape)[mask].mean())


def _body_midline_x(body: np.ndarray, volume: Volume) -> float:
    return _lps_x(body, volume) if body.any() else _lps_x(np.ones_like(body), volume)


def _spans_midline(mask: np.ndarray, volume: Volume, mid: float) -> bool:
    """True when a real share of the mask lies on each side of the body midline."""
    x = np.broadcast_to(patient_coordinate(volume, 0), mask.shape)[mask]
    left = float(np.mean(x > mid))
    return 0.15 < left < 0.85


def close_peripheral_bites(lung: np.ndarray, body: np.ndarray, volume: Volume) -> np.ndarray:
    """Per slice, add the parts of the lung's convex hull that are not on its mediastinal side.

    Dense disease against the chest wall leaves a bite out of the air-based mask; the hull spans
    it. Hull additions whose centre lies medially (towards the body's centre) and not mainly
    posteriorly are the heart/mediastinum concavity and are left out.
    """
    out = lung.copy()
    posterior_sign = np.sign(volume.direction_matrix[1, 1]) or 1.0
    for z in np.flatnonzero(lung.any(axis=(1, 2))):
        sl = lung[z]
        added = morph.convex_hull_2d(sl) & ~sl & body[z]
        if not added.any():
            continue
        ly, lx = (a.mean() for a in np.nonzero(sl))
        medial = np.sign(np.nonzero(body[z])[1].mean() - lx) or 1.0
        parts, n = ndimage.label(added)  # face connectivity, as morph.components
        ys, xs = np.nonzero(parts)
        index = parts[ys, xs]
        count = np.bincount(index, minlength=n + 1)[1:]
        cy, cx = (np.bincount(index, c, minlength=n + 1)[1:] / count for c in (ys, xs))
        dx, dy = (cx - lx) * medial, (cy - ly) * posterior_sign  # dx > 0: medial, dy > 0: posterior
        keep = np.flatnonzero((dx <= 0) | (dy >= np.abs(dx))) + 1
        out[z] |= np.isin(parts, keep)
    return out
