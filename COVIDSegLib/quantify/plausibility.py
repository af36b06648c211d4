"""What a report can claim: lung coverage, plausible volumes, and a density cross-check.

* **Coverage**: the cranio-caudal extent of the lungs found, and whether the scan holds the
  apices and the bases (no lung on its most superior / most inferior slice). With partial
  coverage the figures describe what was seen, and no severity grade is given.
* **Field of view**: lung outline at the edge of the image or of the reconstructed field of view
  (next to the air around the body or to padding: the chest wall always lies between lung and
  outside air) means the lungs were cut in-plane; the figures then describe the part in the
  image, and no severity grade is given either.
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
from ..lungs.lungs3d import outside_air
from ..preprocess.lung_space import unpad

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
    field_cut_percent: float = 1.0                    # lung outline share at the field of view's edge: cut


def coverage(lung_per_slice: np.ndarray, height_mm: np.ndarray, thickness_mm: float,
             imaged: Optional[np.ndarray] = None) -> dict:
    """Extent and completeness from per-slice lung voxel counts and each slice's height (mm,
    superior positive, any slice order). The apex (bases) is in the scan when a slice above
    (below) the lungs holds no lung; with ``imaged`` (per slice: does it hold the patient,
    ``holds_patient``), that slice must also show the patient: a blank slice of padding says
    nothing about the lung beyond it."""
    has = np.asarray(lung_per_slice) > 0
    if not has.any():
        return {"extent_mm": 0.0, "apex_in_scan": False, "bases_in_scan": False, "complete": False}
    h = np.asarray(height_mm, float)
    seen = np.ones(len(h), bool) if imaged is None else np.asarray(imaged, bool)
    top, bottom = h[has].max(), h[has].min()
    apex, bases = bool((seen & (h > top)).any()), bool((seen & (h < bottom)).any())
    extent = float(top - bottom + thickness_mm)
    return {"extent_mm": round(extent, 1), "apex_in_scan": apex, "bases_in_scan": bases,
            "complete": apex and bases}


def holds_patient(hu: np.ndarray, tissue_hu: float = -500.0) -> np.ndarray:
    """Per slice of ``hu`` (z, y, x): whether it shows the patient, i.e. is not one flat value
    (a slice of padding) and has tissue (above ``tissue_hu``) somewhere."""
    flat = hu.reshape(len(hu), -1)
    return (flat.min(axis=1) < flat.max(axis=1)) & (flat > tissue_hu).any(axis=1)


GAS_HU = -950.0     # pure gas: the air around the body, padding beyond the field of view
EDGE_OFFSETS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if 0 < abs(dy) + abs(dx) <= 2]


def field_edge_outline(lung: np.ndarray, hu: Optional[np.ndarray] = None) -> Tuple[int, int, np.ndarray]:
    """(outline voxels, outline voxels at the edge of the field of view, per-slice flag) of
    ``lung`` (z, y, x; add slabs together). The outline is each slice's outermost lung layer; it is
    at the edge when it lies on the image border or, with ``hu``, within 2 pixels of the air around
    the body or of padding (``lungs3d.outside_air`` of the slice with flat padding made air): the
    lung mask stops one pixel short of pure gas. Slices without pure gas near the outline are not
    labelled at all (the usual case: lung meets the chest wall)."""
    outline = lung & ~morph.erode_inplane_cross(lung)
    edge = np.zeros(lung.shape, bool)
    edge[:, [0, -1]] = outline[:, [0, -1]]
    edge[:, :, [0, -1]] |= outline[:, :, [0, -1]]
    if hu is not None and outline.any():
        z, y, x = np.nonzero(outline)
        ny, nx = lung.shape[1:]
        for k in np.unique(z):
            plane = unpad(np.asarray(hu[k], np.float32))
            on = z == k
            yy, xx = y[on], x[on]
            near = [(np.clip(yy + dy, 0, ny - 1), np.clip(xx + dx, 0, nx - 1)) for dy, dx in EDGE_OFFSETS]
            if not any((plane[i, j] < GAS_HU).any() for i, j in near):
                continue
            outside = outside_air(plane[None], GAS_HU)[0]
            edge[k, yy, xx] |= np.logical_or.reduce([outside[i, j] for i, j in near])
    return int(outline.sum()), int(edge.sum()), edge.any(axis=(1, 2))


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


def with_field_cut(cov: dict, outline: int, at_edge: int, slices: int, limits: "Limits") -> dict:
    """``coverage`` plus the in-plane cut (``field_edge_outline`` counts): complete only when the
    share of the outline at the field of view's edge stays under ``limits.field_cut_percent``."""
    percent = round(100.0 * at_edge / outline, 1) if outline else 0.0
    cut = percent >= limits.field_cut_percent
    return {**cov, "field_cut": cut, "field_cut_outline_percent": percent, "field_cut_slices": int(slices),
            "complete": bool(cov["complete"] and not cut)}


def partial_reason(cov: dict) -> str:
    missing = [part for part, key in (("apex", "apex_in_scan"), ("bases", "bases_in_scan")) if not cov[key]]
    parts = []
    if missing:
        parts.append(f"partial lung coverage, {cov['extent_mm']:.0f} mm ({' and '.join(missing)} not in the scan)")
    if cov.get("field_cut"):
        parts.append(f"lungs cut by the field of view on {cov['field_cut_slices']} slices "
                     f"({cov['field_cut_outline_percent']:.0f} % of their outline at its edge)")
    return "; ".join(parts)


def not_gradable_reason(lung_ml: Dict[str, float], cov: dict, limits: Limits = Limits()) -> Optional[str]:
    """Why no grade may be given, or None: partial coverage (``partial_reason``), or lungs that
    a scan of the whole chest cannot hold (shorter than ``min_height_mm``, a lung found under the
    adult range): then the lungs were not all found, or the scan is not a whole adult chest."""
    if not cov["complete"]:
        return partial_reason(cov)
    small = [f"lung height {cov['extent_mm']:.0f} mm"] if cov["extent_mm"] < limits.min_height_mm else []
    small += [f"{side} lung {ml:.0f} mL" for side, ml in lung_ml.items() if 0 < ml < limits.lung_ml[0]]
    return f"lungs too small for a whole adult chest ({', '.join(small)})" if small else None


def warnings_for(lung_ml: Dict[str, float], cov: dict, involvement: float,
                 density: Optional[Dict[str, float]], limits: Limits = Limits()) -> List[str]:
    """One-line warnings (module docstring); the first says why a report is not gradable."""
    out: List[str] = []
    reason = not_gradable_reason(lung_ml, cov, limits)
    if reason:
        out.append(f"not gradable: {reason}")
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
    if reason is None and 0 < involvement < limits.grade_floor_percent:
        out.append(f"{involvement:.2f} % of lung marked, below the {limits.grade_floor_percent:g} % grading "
                   "floor: graded CT-0; look at the overlay")
    if density is not None and found:
        dense = sum(density[b] for b in DENSE_BANDS)
        if abs(dense - involvement) > limits.disagreement_points:
            out.append(f"density disagreement: model {involvement:.1f} % involved, {dense:.1f} % of lung "
                       "at -700..+100 HU")
    return out
