"""Quantification of a label map (values of DESIGN.md): volumes, involvement, zones, severity.

Definitions (all volumes from the voxel count times the voxel volume, in mL):

* **Lung** of a side = voxels labelled that side's lung (1 left, 2 right) plus the infection
  voxels (3, 4) on that side of the thorax midline: the sagittal plane halfway between the
  outermost right-lung and outermost left-lung voxels (patient coordinates, so any array
  orientation works). A whole consolidated lobe, which has no lung label left in its slices,
  still counts for its own side. With only one lung labelled, the medial edge of that lung is
  the boundary (a wholly infected lung keeps its side); with none, the infection's own centre.
* **Involvement** (%) = infection (3 + 4) volume / lung volume x 100, per lung and for both.
* **Zones**: each lung is cut into upper, middle and lower thirds of its own cranio-caudal
  extent (the physical superior-inferior position of its slices, whatever the array order);
  a zone's involvement is its infection over its lung volume.
* **Zone score** (0-5): 0 none (0 %), 1 < 5 %, 2 5-25 %, 3 > 25-< 50 %, 4 50-75 %, 5 > 75 %;
  the **total CT severity score** is the sum over the six zones (0-30).
* **Grade** (the CT-0..CT-4 scale of Morozov et al. 2020, by involvement of both lungs):
  CT-0 none (0 %), CT-1 mild (< 25 %), CT-2 moderate (25-< 50 %), CT-3 severe (50-75 %),
  CT-4 critical (> 75 %).
* **Grading floor** (``Limits.grade_floor_percent``, 1 %): involvement below it, of both lungs
  for the grade and of a zone for its score, is graded as none (CT-0, score 0) and said so with
  a warning; the percentages are reported as measured. Every model marks some healthy lung
  (partial volume at the diaphragm, dependent density), so 0.3 % is not evidence of disease.
* **Not gradable**: when the scan does not hold the whole lungs (``plausibility.coverage``: apex
  or bases not imaged, or lungs cut by the field of view) or the lungs found are too small for a
  whole adult chest (``plausibility.not_gradable_reason``), the report gives the volumes and
  percentages of what was seen, grade "not gradable" with the reason, and no total score; a
  zone without lung has involvement and score None ("n/a"), and so has every zone of a report
  without a grade: thirds of the extent seen are not the lung's thirds.
  ``warnings`` lists every plausibility problem (``plausibility.warnings_for``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import labels as L
from ..io.orientation import lps_spacing_zyx, lps_view, patient_coordinate
from ..preprocess.intensity import to_hu
from ..volume import Volume
from .plausibility import (DENSITY_BANDS, Limits, coverage, density_counts, density_percent, field_edge_outline,
                           holds_patient, not_gradable_reason, warnings_for, with_field_cut)

SIDES = {"left": L.LEFT_LUNG, "right": L.RIGHT_LUNG}
ZONES = ("upper", "middle", "lower")
NOT_GRADABLE = "not gradable"


def zone_score(percent: float, floor: float = 0.0) -> int:
    """0-5 score of one zone's involvement in percent; below ``floor`` 0 (module docstring)."""
    if percent <= 0 or percent < floor:
        return 0
    if percent < 5:
        return 1
    if percent <= 25:
        return 2
    if percent < 50:
        return 3
    if percent <= 75:
        return 4
    return 5


def grade(percent: float, floor: float = 0.0) -> Tuple[str, str]:
    """(code, word) of the CT-0..CT-4 grade for the involvement of both lungs in percent; below
    ``floor`` CT-0 with the figure named."""
    if percent <= 0:
        return "CT-0", "none"
    if percent < floor:
        return "CT-0", f"none above the {floor:g} % floor ({percent:.2f} % marked)"
    if percent < 25:
        return "CT-1", "mild"
    if percent < 50:
        return "CT-2", "moderate"
    if percent <= 75:
        return "CT-3", "severe"
    return "CT-4", "critical"


@dataclass
class LungFigures:
    lung_ml: float
    ggo_ml: float
    consolidation_ml: float
    infection_ml: float
    involvement_percent: float
    zones: Dict[str, Dict[str, float]] = field(default_factory=dict)


@dataclass
class Report:
    lungs: Dict[str, LungFigures]
    both_lung_ml: float
    both_infection_ml: float
    both_involvement_percent: float
    total_severity_score: int
    grade: str
    grade_word: str
    voxel_ml: float
    gradable: bool = True
    warnings: List[str] = field(default_factory=list)
    coverage: Dict[str, object] = field(default_factory=dict)
    density_percent: Optional[Dict[str, float]] = None  # HU bands of the lung voxels (plausibility)

    def to_dict(self) -> dict:
        return asdict(self)


SLAB = 32  # slices per step: memory stays bounded for long volumes


def _slabs(n: int) -> List[slice]:
    return [slice(z, min(n, z + SLAB)) for z in range(0, n, SLAB)]


def _midline(labels: Volume) -> Optional[float]:
    """LPS x (mm) of the left/right boundary for infection voxels (module docstring); None when
    there is no infection."""
    arr = np.asarray(labels.array)
    lo, hi = {}, {}  # extremes of x per class: "left", "right", "infection"
    for zs in _slabs(len(arr)):
        a = np.ascontiguousarray(arr[zs])  # LPS views may be flipped: one copy per slab
        x = np.broadcast_to(patient_coordinate(labels, 0, zs), a.shape)
        for key, mask in (("left", a == L.LEFT_LUNG), ("right", a == L.RIGHT_LUNG), ("infection", a >= L.GGO)):
            if mask.any():
                v = x[mask]
                lo[key], hi[key] = min(lo.get(key, np.inf), v.min()), max(hi.get(key, -np.inf), v.max())
    if "infection" not in lo:
        return None
    if "left" in lo and "right" in lo:
        return (hi["left"] + lo["right"]) / 2.0
    if "left" in lo or "right" in lo:  # one lung wholly infected or missing: the other's medial edge
        return lo["left"] if "left" in lo else hi["right"]
    return (lo["infection"] + hi["infection"]) / 2.0


def _sides(a: np.ndarray, x: np.ndarray, midline: Optional[float]) -> np.ndarray:
    side = np.where((a == L.LEFT_LUNG) | (a == L.RIGHT_LUNG), a, 0).astype(np.uint8)
    if midline is not None:
        infection = a >= L.GGO
        side[infection] = np.where(np.broadcast_to(x, a.shape)[infection] > midline, L.LEFT_LUNG, L.RIGHT_LUNG)
    return side


def side_of_each_voxel(labels: Volume) -> np.ndarray:
    """1 (left) / 2 (right) for every lung or infection voxel, 0 elsewhere (module docstring)."""
    arr = np.asarray(labels.array)
    return _sides(arr, patient_coordinate(labels, 0), _midline(labels))


def _counts_per_slice(labels: Volume) -> Dict[str, Dict[str, np.ndarray]]:
    """Per side: voxel counts of lung, GGO and consolidation in every slice, slab by slab."""
    arr = np.asarray(labels.array)
    midline = _midline(labels)
    counts = {name: {k: np.zeros(len(arr), np.int64) for k in ("lung", "ggo", "cons")} for name in SIDES}
    for zs in _slabs(len(arr)):
        a = np.ascontiguousarray(arr[zs])
        side = _sides(a, patient_coordinate(labels, 0, zs), midline)
        for name, value in SIDES.items():
            in_lung = side == value
            counts[name]["lung"][zs] = in_lung.sum(axis=(1, 2))
            counts[name]["ggo"][zs] = (in_lung & (a == L.GGO)).sum(axis=(1, 2))
            counts[name]["cons"][zs] = (in_lung & (a == L.CONSOLIDATION)).sum(axis=(1, 2))
    return counts


def _zones(lung: np.ndarray, infection: np.ndarray, height: np.ndarray, voxel_ml: float,
           floor: float = 0.0) -> Dict[str, Dict]:
    """Upper/middle/lower thirds of the lung's height from per-slice lung and infection counts."""
    slices = np.flatnonzero(lung)
    out = {}
    if slices.size == 0:
        return {z: {"lung_ml": 0.0, "infection_ml": 0.0, "involvement_percent": None, "score": None} for z in ZONES}
    top, bottom = height[slices].max(), height[slices].min()
    third = (top - bottom) / 3.0
    edges = {"upper": (top - third, np.inf), "middle": (bottom + third, top - third), "lower": (-np.inf, bottom + third)}
    taken = np.zeros(len(lung), bool)
    for name in ZONES:  # upper first: a slice on a boundary belongs to the higher zone
        lo, hi = edges[name]
        rows = (height >= lo) & (height <= hi) & ~taken
        taken |= rows
        lung_v, inf_v = int(lung[rows].sum()), int(infection[rows].sum())
        pct = 100.0 * inf_v / lung_v if lung_v else None  # a zone without lung is n/a, not 0
        out[name] = {"lung_ml": lung_v * voxel_ml, "infection_ml": inf_v * voxel_ml,
                     "involvement_percent": pct, "score": None if pct is None else zone_score(pct, floor)}
    return out


def quantify(labels: Volume, image: Optional[Volume] = None, calibration: str = "auto",
             limits: Limits = Limits()) -> Report:
    """The report of a label map (values 0-4) with its geometry. With ``image`` (the CT the
    labels belong to) the lung's HU bands are added; ``plausibility`` decides the warnings and
    whether a grade may be given (never from partial lung coverage). Any storage order: the
    counting runs over axial slices (LPS views, no copy)."""
    labels = lps_view(labels)
    image = lps_view(image) if image is not None else None
    voxel_ml = labels.voxel_volume_ml
    height = np.broadcast_to(patient_coordinate(labels, 2), labels.shape)[:, 0, 0]  # per slice, at its first voxel
    lungs: Dict[str, LungFigures] = {}
    per_slice = np.zeros(labels.shape[0], np.int64)
    for name, c in _counts_per_slice(labels).items():
        lung_v, g, k = (int(c[key].sum()) for key in ("lung", "ggo", "cons"))
        per_slice += c["lung"]
        lungs[name] = LungFigures(lung_v * voxel_ml, g * voxel_ml, k * voxel_ml, (g + k) * voxel_ml,
                                  100.0 * (g + k) / lung_v if lung_v else 0.0,
                                  _zones(c["lung"], c["ggo"] + c["cons"], height, voxel_ml,
                                         limits.grade_floor_percent))
    both_lung = sum(f.lung_ml for f in lungs.values())
    both_inf = sum(f.infection_ml for f in lungs.values())
    pct = 100.0 * both_inf / both_lung if both_lung else 0.0
    scores = [z["score"] for f in lungs.values() for z in f.zones.values()]
    total = None if None in scores else int(sum(scores))
    density, (outline, at_edge, cut_slices), imaged = _hu_figures(labels, image, calibration)
    cov = coverage(per_slice, height, lps_spacing_zyx(labels)[0], imaged)
    cov = with_field_cut(cov, outline, at_edge, cut_slices, limits)
    warnings = warnings_for({k: f.lung_ml for k, f in lungs.items()}, cov, pct, density, limits)
    code, word = grade(pct, limits.grade_floor_percent)
    reason = not_gradable_reason({k: f.lung_ml for k, f in lungs.items()}, cov, limits)
    if reason:
        code, word, total = NOT_GRADABLE, reason, None
        for f in lungs.values():
            for z in f.zones.values():
                z["involvement_percent"] = z["score"] = None
    return Report(lungs, both_lung, both_inf, pct, total, code, word, voxel_ml, reason is None, warnings,
                  cov, density)


def _hu_figures(labels: Volume, image: Optional[Volume], calibration: str
                ) -> Tuple[Optional[Dict[str, float]], Tuple[int, int, int], Optional[np.ndarray]]:
    """Slab by slab: the lung's HU bands, the outline at the edge of the field of view (outline
    voxels, those at the edge, slices with some) and which slices show the patient; without
    ``image`` no bands, the image border only, and None."""
    counts = np.zeros(len(DENSITY_BANDS), np.int64)
    edge = np.zeros(3, np.int64)
    arr = np.asarray(labels.array)
    imaged = None if image is None else np.zeros(len(arr), bool)
    for zs in _slabs(len(arr)):
        lung = np.ascontiguousarray(arr[zs]) > 0
        hu = None
        if image is not None:
            slab = Volume(np.ascontiguousarray(image.array[zs]), space=image.space, is_slice=image.is_slice)
            hu = to_hu(slab, calibration).array
            imaged[zs] = holds_patient(hu)
        if not lung.any():
            continue
        if hu is not None:
            counts += density_counts(hu, lung)
        outline, at_edge, cut = field_edge_outline(lung, hu)
        edge += (outline, at_edge, int(cut.sum()))
    return (density_percent(counts) if image is not None else None), tuple(int(v) for v in edge), imaged


def summary_columns(report: Report) -> Dict[str, object]:
    """The few figures of a batch summary row (stable keys)."""
    return {"lungs mL": round(report.both_lung_ml, 1), "involved %": round(report.both_involvement_percent, 1),
            "score /30": "n/a" if report.total_severity_score is None else report.total_severity_score,
            "grade": report.grade, "warnings": len(report.warnings)}


def report_rows(report: Report) -> List[Dict[str, object]]:
    """Flat rows (region, measure, value) for a CSV."""
    rows: List[Dict[str, object]] = []
    for side, f in report.lungs.items():
        for key in ("lung_ml", "ggo_ml", "consolidation_ml", "infection_ml", "involvement_percent"):
            rows.append({"region": f"{side} lung", "measure": key, "value": getattr(f, key)})
        for zone, z in f.zones.items():
            for key, value in z.items():
                rows.append({"region": f"{side} {zone}", "measure": key, "value": value})
    for key in ("both_lung_ml", "both_infection_ml", "both_involvement_percent", "total_severity_score", "grade"):
        rows.append({"region": "both lungs", "measure": key, "value": getattr(report, key)})
    for key, value in report.coverage.items():
        rows.append({"region": "coverage", "measure": key, "value": value})
    for key, value in (report.density_percent or {}).items():
        rows.append({"region": "density % of lung", "measure": key, "value": value})
    rows += [{"region": "warning", "measure": str(i + 1), "value": w} for i, w in enumerate(report.warnings)]
    return [{**r, "value": "n/a" if r["value"] is None else r["value"]} for r in rows]
