"""GGO or consolidation by density: the radiological definition, applied to the model's infection.

Ground-glass opacity is a hazy increase of lung density through which vessels and bronchial walls
stay visible; consolidation is denser and hides them (Fleischner Society glossary, Hansell et
al., Radiology 2008). In HU, consolidated lung lies near soft tissue (above about -300 HU) and
ground glass between aerated lung and that. ``split_by_density`` keeps the model's infection
(which voxels are involved) and relabels each infected voxel by the involved lung around it: it is
consolidation when more than half of the involved voxels within an in-plane window are denser than
the threshold (the median of the lesion's HU there is above it). A median, not the voxel, so a
vessel inside ground glass does not make it consolidation and an air bronchogram inside
consolidation does not make it ground glass; over involved voxels only, so the aerated lung
beside a consolidation does not make its edge ground glass. Two box filters, exact. The
threshold and the window are chosen by cross-validation on the expert masks (docs/MODELS.md,
``scripts/choose_density_split.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage

from .. import morphology as morph
from ..labels import CONSOLIDATION, GGO


@dataclass(frozen=True)
class DensitySplit:
    threshold_hu: float = -350.0  # the involved voxels' in-plane median above this: consolidation
    median_mm: float = 15.0       # side of the in-plane window

    def window_px(self, spacing_yx: Tuple[float, float]) -> Tuple[int, int]:
        """Odd window sides in pixels, at least 1, for this in-plane spacing (y, x) in mm."""
        return tuple(max(1, int(round(self.median_mm / s)) // 2 * 2 + 1) for s in spacing_yx)


def dense_share(hu: np.ndarray, involved: np.ndarray, threshold_hu: float, window_px: Tuple[int, int]) -> np.ndarray:
    """For each ``involved`` voxel of the (y, x) slice (a 1D array in their order): the share of
    the involved voxels within ``window_px`` around it that are above ``threshold_hu``."""
    _, rows, cols = morph.bounding_box(involved[None], max(window_px) // 2 + 1)
    box = involved[rows, cols]
    dense = ndimage.uniform_filter((box & (hu[rows, cols] > threshold_hu)).astype(np.float32), window_px, mode="constant")
    total = ndimage.uniform_filter(box.astype(np.float32), window_px, mode="constant")
    return dense[box] / np.maximum(total[box], 1e-6)


def split_by_density(infection: np.ndarray, hu_slice, spacing_yx: Tuple[float, float],
                     split: DensitySplit = DensitySplit()) -> np.ndarray:
    """``infection`` (z, y, x) label values (0, GGO, CONSOLIDATION) relabelled by density.

    ``hu_slice(z)`` gives slice z in HU (called only for slices with infection, so a whole volume
    never has to be held in HU). Voxels that are not infection are left as they are."""
    out = infection.copy()
    window = split.window_px(spacing_yx)
    for z in np.flatnonzero(infection.any(axis=(1, 2))):
        involved = infection[z] > 0
        share = dense_share(np.asarray(hu_slice(z)), involved, split.threshold_hu, window)
        out[z][involved] = np.where(share > 0.5, CONSOLIDATION, GGO)
    return out
