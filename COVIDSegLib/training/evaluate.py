"""Compare predicted label maps with reference masks (slices or volumes): the metric table.

Both sides are read as label maps in one of these encodings (``--pred-format``/``--truth-format``):

* ``labels``: the project's fixed labels (3 GGO/infection, 4 consolidation; 1, 2 lungs)
* ``binary``: any non-zero value is infection (e.g. MedSeg ``masks/``, COVID-19-CT-Seg)
* ``medseg-multiclass``: 1 GGO, 2 consolidation (MedSeg ``masks_multiclass/``)

Scored classes: ``infection`` always; ``GGO`` and ``consolidation`` when both sides have them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..io.files import read_volume
from ..io.paths import stem_of
from .metrics import binary_metrics, summarise

# format -> class -> values
ENCODINGS: Dict[str, Dict[str, Tuple[int, ...]]] = {
    "labels": {"infection": (3, 4), "GGO": (3,), "consolidation": (4,)},
    "binary": {"infection": ()},  # () = any non-zero
    "medseg-multiclass": {"infection": (1, 2), "GGO": (1,), "consolidation": (2,)},
}
METRICS = ("dice", "iou", "f1", "precision", "sensitivity", "specificity", "hd95")


def _mask(array: np.ndarray, values: Tuple[int, ...]) -> np.ndarray:
    return array != 0 if not values else np.isin(array, values)


def pair_files(predictions: Sequence[Path], truth_dir: Path) -> List[Tuple[Path, Path]]:
    """Each prediction with the reference of the same stem in ``truth_dir`` (any readable suffix)."""
    truths = {stem_of(p): p for p in Path(truth_dir).iterdir() if p.is_file()} if Path(truth_dir).is_dir() else {}
    if not truths:
        raise InputError(f"No reference masks found in {truth_dir}")
    pairs = []
    for p in predictions:
        match = truths.get(stem_of(p))
        if match is None:
            raise InputError(f"No reference mask named like '{stem_of(p)}' in {truth_dir}")
        pairs.append((Path(p), match))
    return pairs


def score_pair(pred_path: Path, truth_path: Path, pred_format: str = "labels",
               truth_format: str = "binary") -> Dict[str, float]:
    """Metrics of one prediction: ``<class>_<metric>`` per scored class; HD95 in mm (pixels for PNG)."""
    pred, truth = read_volume(pred_path), read_volume(truth_path)
    p, t = np.asarray(pred.array), np.asarray(truth.array)
    if p.shape != t.shape:
        raise InputError(f"{pred_path.name} has shape {p.shape} but its reference {truth_path.name} has {t.shape}")
    spacing = tuple(float(s) for s in truth.spacing[::-1])
    pe, te = ENCODINGS[pred_format], ENCODINGS[truth_format]
    row: Dict[str, float] = {}
    for name in (c for c in pe if c in te):
        for k, v in binary_metrics(_mask(p, pe[name]), _mask(t, te[name]), spacing).items():
            row[f"{name}_{k}"] = v
    return row


def evaluate_files(pairs: Sequence[Tuple[Path, Path]], pred_format: str = "labels",
                   truth_format: str = "binary") -> Tuple[List[dict], Dict[str, Dict[str, float]]]:
    """(rows with ``case`` + metrics, summary mean/sd per metric)."""
    rows = [{"case": stem_of(p), **score_pair(p, t, pred_format, truth_format)} for p, t in pairs]
    return rows, summarise(rows)  # the "case" names are not numbers: summarise skips them


def format_table(summary: Dict[str, Dict[str, float]], classes: Optional[Sequence[str]] = None) -> str:
    """Plain-text table: one line per class, mean +- sd of each metric."""
    names = classes or list(dict.fromkeys(k.split("_", 1)[0] for k in summary))
    lines = [f"{'class':<14}" + "".join(f"{m:>17}" for m in METRICS)]
    for c in names:
        cells = []
        for m in METRICS:
            s = summary.get(f"{c}_{m}")
            cells.append(f"{s['mean']:>9.3f} ± {s['sd']:<5.3f}" if s and s["n"] else f"{'n/a':>17}")
        lines.append(f"{c:<14}" + "".join(cells))
    return "\n".join(lines)
