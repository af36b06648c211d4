"""What a report can claim: lung coverage, plausible volumes, and a density cross-check.

* **Coverage**: the cranio-caudal extent of the lungs found, and whether the scan holds the
  apices and the bases (no lung on its most superior / most inferior slice). With partial
  coverage the figures describe what was seen, and no severity grade is given.
* **Volumes**: each lung within a plausible adult range, left/right ratio, one lung missing.
* **Density** (HU bands of the lung's interior voxels, ``DENSITY_BANDS``): the share of lung that is
  well aerated, ground-glass-like or consolidation-like by attenuation alone, beside the
  model's involvement; a gross disagreement is a warning.

Bands: well aerated -950..-700 HU as in Colombi et al., Radiology 2020;296:E86 ("well-aerated
lung", the CT quantity that predicted outcome in COVID-19); below -950 HU the emphysema index
threshold (Gevenois et al., AJRCCM 1996). The denser range is this project's split into
ground-glass-like (-700..-300) and consolidation-like (-300..+100) attenuation; for comparison
the aeration classes of Gattinoni et al. (NEJM 2006) put poorly aerated lung at -500..-100 and
non-aerated at -100..+100 HU. docs/QUANTIFICATION.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import morphology as morph

DENSITY_BANDS: Dict[str, Tuple[float, float]] = {
    "below_-950": (-np.inf, -950.0),
    "well_aerated_-950_-700": (-950.0, -700.0),
    "ground_glass_like_-700_-300": (-700.0, -300.0),
    "consolidation_like_-300_100": (-300.0, 100.0),
    "above_100": (100.0, np.inf),
}
DENSE_BANDS = ("ground_glass_like_-700_-300", "consolidation_like_-300_100")


@dataclass(frozen=True)
class Limits:
    lung_ml: Tuple[float, float] = (500.0, 5000.0)   # one adult lung, expiration to deep inspiration
    right_left_ratio: Tuple[float, float] = (0.5, 2.0)  # normal about 1.1
    min_height_mm: float = 120.0                      # a whole adult lung is taller
    disagreement_points: float = 25.0                 # |model % - dense-band %| that is "gross"
    grade_floor_percent: float = 1.0                  # involvement below this is graded as none


def coverage(lung_per_slice: np.ndarray, height_mm: np.ndarray, thickness_mm: float) -> dict:
    """Extent and completeness from per-slice lung voxel counts and each slice's height (mm,
    superior positive, any slice order)."""
    has = np.asarray(lung_per_slice) > 0
    if not has.any():
        return {"extent_mm": 0.0, "apex_in_scan": False, "bases_in_scan": False, "complete": False}
    h = np.asarray(height_mm, float)
    top, bottom = int(np.argmax(h)), int(np.argmin(h))
    apex, bases = bool(not has[top]) and len(h) > 1, bool(not has[bottom]) and len(h) > 1
    extent = float(h[has].max() - h[has].min() + thickness_mm)
    return {"extent_mm": round(extent, 1), "apex_in_scan": apex, "bases_in_scan": bases,
            "complete": apex and bases}


def density_counts(hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """Voxel counts of the interior of ``lung`` (z, y, x) in each of ``DENSITY_BANDS`` (add slabs
    together). The outermost in-plane voxel layer is left out: at the pleura and the diaphragm it
    mixes lung with soft tissue (partial volume), and on a thin slab of lung bases it made a third
    of a healthy lung look dense (docs/QUANTIFICATION.md)."""
    values = hu[morph.erode_inplane_cross(lung)]
    return np.array([np.count_nonzero((values >= lo) & (values < hi)) for lo, hi in DENSITY_BANDS.values()],
                    np.int64)


def density_percent(counts: np.ndarray) -> Dict[str, float]:
    total = max(1, int(counts.sum()))
    return {name: round(100.0 * int(c) / total, 2) for name, c in zip(DENSITY_BANDS, counts)}


def partial_reason(cov: dict) -> str:
    missing = [part for part, key in (("apex", "apex_in_scan"), ("bases", "bases_in_scan")) if not cov[key]]
    return f"partial lung coverage, {cov['extent_mm']:.0f} mm ({' and '.join(missing)} not in the scan)"


def warnings_for(lung_ml: Dict[str, float], cov: dict, involvement: float,
                 density: Optional[Dict[str, float]], limits: Limits = Limits()) -> List[str]:
    """One-line warnings (module docstring); the first says why a report is not gradable."""
    out: List[str] = []
    if not cov["complete"]:
        out.append(f"not gradable: {partial_reason(cov)}")
    found = {side: ml for side, ml in lung_ml.items() if ml > 0}
    for side in lung_ml:
        if side not in found:
            out.append(f"{side} lung not found")
    if cov["complete"]:
        lo, hi = limits.lung_ml
        for side, ml in found.items():
            if not lo <= ml <= hi:
                out.append(f"{side} lung {ml:.0f} mL is outside the plausible adult range {lo:.0f}-{hi:.0f} mL")
        if len(found) == 2:
            ratio = found["right"] / found["left"]
            if not limits.right_left_ratio[0] <= ratio <= limits.right_left_ratio[1]:
                out.append(f"right/left lung volume ratio {ratio:.2f} is far from normal (about 1.1)")
        if cov["extent_mm"] < limits.min_height_mm:
            out.append(f"lung height {cov['extent_mm']:.0f} mm is short for an adult chest")
    if cov["complete"] and 0 < involvement < limits.grade_floor_percent:
        out.append(f"{involvement:.2f} % of lung marked, below the {limits.grade_floor_percent:g} % grading "
                   "floor: graded CT-0; look at the overlay")
    if density is not None and found:
        dense = sum(density[b] for b in DENSE_BANDS)
        if abs(dense - involvement) > limits.disagreement_points:
            out.append(f"density disagreement: model {involvement:.1f} % involved, {dense:.1f} % of lung "
                       "at -700..+100 HU")
    return out
