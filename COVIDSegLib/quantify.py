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
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from . import labels as L
from .orientation import patient_coordinate
from .volume import Volume

SIDES = {"left": L.LEFT_LUNG, "right": L.RIGHT_LUNG}
ZONES = ("upper", "middle", "lower")


def zone_score(percent: float) -> int:
    """0-5 score of one zone's involvement in percent (module docstring)."""
    if percent <= 0:
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


def grade(percent: float) -> Tuple[str, str]:
    """(code, word) of the CT-0..CT-4 grade for the involvement of both lungs in percent."""
    if percent <= 0:
        return "CT-0", "none"
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

    def to_dict(self) -> dict:
        return asdict(self)


def side_of_each_voxel(labels: Volume) -> np.ndarray:
    """1 (left) / 2 (right) for every lung or infection voxel, 0 elsewhere (module docstring)."""
    arr = np.asarray(labels.array)
    side = np.where(np.isin(arr, (L.LEFT_LUNG, L.RIGHT_LUNG)), arr, 0).astype(np.uint8)
    infection = np.isin(arr, (L.GGO, L.CONSOLIDATION))
    if not infection.any():
        return side
    left, right = arr == L.LEFT_LUNG, arr == L.RIGHT_LUNG
    x = np.broadcast_to(patient_coordinate(labels, 0), arr.shape)
    if left.any() and right.any():
        midline = (x[left].max() + x[right].min()) / 2.0
    elif left.any() or right.any():  # one lung wholly infected or missing: the other's medial edge
        midline = x[left].min() if left.any() else x[right].max()
    else:
        midline = (x[infection].min() + x[infection].max()) / 2.0
    side[infection] = np.where(x[infection] > midline, L.LEFT_LUNG, L.RIGHT_LUNG)
    return side


def _zones(in_lung: np.ndarray, infection: np.ndarray, height: np.ndarray, voxel_ml: float) -> Dict[str, Dict]:
    slices = np.flatnonzero(in_lung.reshape(len(in_lung), -1).any(axis=1))
    out = {}
    if slices.size == 0:
        return {z: {"lung_ml": 0.0, "infection_ml": 0.0, "involvement_percent": 0.0, "score": 0} for z in ZONES}
    top, bottom = height[slices].max(), height[slices].min()
    third = (top - bottom) / 3.0
    edges = {"upper": (top - third, np.inf), "middle": (bottom + third, top - third), "lower": (-np.inf, bottom + third)}
    taken = np.zeros(len(in_lung), bool)
    for name in ZONES:  # upper first: a slice on a boundary belongs to the higher zone
        lo, hi = edges[name]
        rows = (height >= lo) & (height <= hi) & ~taken
        taken |= rows
        lung_v = int(np.count_nonzero(in_lung[rows]))
        inf_v = int(np.count_nonzero(infection[rows] & in_lung[rows]))
        pct = 100.0 * inf_v / lung_v if lung_v else 0.0
        out[name] = {"lung_ml": lung_v * voxel_ml, "infection_ml": inf_v * voxel_ml,
                     "involvement_percent": pct, "score": zone_score(pct)}
    return out


def quantify(labels: Volume) -> Report:
    """The report of a label map (values 0-4) with its geometry."""
    arr = np.asarray(labels.array)
    voxel_ml = labels.voxel_volume_ml
    side = side_of_each_voxel(labels)
    height = np.broadcast_to(patient_coordinate(labels, 2), arr.shape)[:, 0, 0]  # per slice, at its first voxel
    ggo, cons = arr == L.GGO, arr == L.CONSOLIDATION
    lungs: Dict[str, LungFigures] = {}
    for name, value in SIDES.items():
        in_lung = side == value
        lung_v = int(np.count_nonzero(in_lung))
        g, c = int(np.count_nonzero(ggo & in_lung)), int(np.count_nonzero(cons & in_lung))
        lungs[name] = LungFigures(lung_v * voxel_ml, g * voxel_ml, c * voxel_ml, (g + c) * voxel_ml,
                                  100.0 * (g + c) / lung_v if lung_v else 0.0,
                                  _zones(in_lung, ggo | cons, height, voxel_ml))
    both_lung = sum(f.lung_ml for f in lungs.values())
    both_inf = sum(f.infection_ml for f in lungs.values())
    pct = 100.0 * both_inf / both_lung if both_lung else 0.0
    total = sum(z["score"] for f in lungs.values() for z in f.zones.values())
    code, word = grade(pct)
    return Report(lungs, both_lung, both_inf, pct, int(total), code, word, voxel_ml)


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
    return rows
