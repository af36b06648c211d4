"""Per-image segmentation metrics on numpy masks, on top of MONAI's implementations.

Conventions (all metrics of one image, 2D or 3D; masks are anything ``!= 0``):

* Confusion counts are exact integers (numpy); the ratios come from MONAI's
  ``compute_confusion_matrix_metric`` ("f1 score" = Dice, "threat score" = IoU/Jaccard,
  "precision", "sensitivity" = recall, "specificity").
* F1 equals Dice for binary masks (2TP / (2TP + FP + FN)); ``f1`` is reported under both names
  because papers use both.
* Both masks empty: Dice = IoU = F1 = 1 and HD95 = 0 (a correct "nothing there").
  Exactly one empty: Dice = IoU = F1 = 0 and HD95 = nan (no surface to measure; MONAI gives
  inf/nan there and a warning - we return nan quietly).
* Other 0/0 ratios are nan: precision when the prediction is empty, sensitivity when the
  truth is empty, specificity when the truth covers the whole image. ``summarise`` skips nan.
* ``spacing`` is per array axis, in the array's axis order: for a ``Volume`` (array (z, y, x),
  spacing stored SimpleITK-style (x, y, z)) pass ``volume.spacing[::-1]``. HD95 is then in mm;
  without spacing it is in pixels.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics import compute_confusion_matrix_metric, compute_hausdorff_distance
from monai.utils import OptionalImportError

ClassValue = Union[int, Iterable[int]]

_RATIOS = {"dice": "f1 score", "iou": "threat score", "precision": "precision",
           "sensitivity": "sensitivity", "specificity": "specificity"}
N_THRESHOLDS = 256


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> Tuple[int, int, int, int]:
    """Exact (tp, fp, tn, fn) of two same-shaped masks (non-zero = foreground)."""
    p, t = _masks(pred, truth)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    return tp, fp, p.size - tp - fp - fn, fn


def binary_metrics(pred: np.ndarray, truth: np.ndarray,
                   spacing: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """Dice, IoU, F1, precision, sensitivity, specificity and HD95 of one image (see module doc)."""
    p, t = _masks(pred, truth)
    tp, fp, tn, fn = confusion_counts(p, t)
    cm = torch.tensor([[tp, fp, tn, fn]], dtype=torch.float64)
    out = {k: float(compute_confusion_matrix_metric(m, cm).item()) for k, m in _RATIOS.items()}
    if tp + fp + fn == 0:  # both empty
        out["dice"] = out["iou"] = 1.0
    out["f1"] = out["dice"]
    out["hd95"] = hd95(p, t, spacing)
    return out


def multiclass_metrics(pred_labels: np.ndarray, truth_labels: np.ndarray, classes: Mapping[str, ClassValue],
                       spacing: Optional[Sequence[float]] = None) -> Dict[str, Dict[str, float]]:
    """``binary_metrics`` per named class of two label maps.

    A class value is one label or several, e.g. ``{"GGO": 3, "infection": (3, 4), "lungs": (1, 2, 3, 4)}``.
    """
    out = {}
    for name, value in classes.items():
        values = [int(value)] if np.isscalar(value) else [int(v) for v in value]
        out[name] = binary_metrics(np.isin(pred_labels, values), np.isin(truth_labels, values), spacing)
    return out


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Optional[Sequence[float]] = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance between the mask surfaces (MONAI semantics).

    Surface = mask minus its erosion by the face-connected cross; for each direction the 95th
    percentile (linear interpolation) of the distances from one surface's pixels to the nearest
    pixel of the other surface; the larger of the two. Units of ``spacing`` (pixels if None).
    Both empty -> 0.0, one empty -> nan. Uses ``monai.metrics.compute_hausdorff_distance`` when
    its optional scipy dependency is installed, else an equivalent exact computation (numpy
    surfaces + SimpleITK's Maurer Euclidean distance map).
    """
    p, t = _masks(pred, truth)
    sp = _spacing(spacing, p.ndim)
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return 0.0
    if p_any != t_any:
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = compute_hausdorff_distance(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None, None],
                                               include_background=True, percentile=95, spacing=list(sp))
        return float(value.item())
    except OptionalImportError:
        return _hd95_sitk(p, t, sp)


def _hd95_sitk(p: np.ndarray, t: np.ndarray, spacing: Tuple[float, ...]) -> float:
    box = tuple(slice(idx.min(), idx.max() + 1) for idx in np.nonzero(p | t))  # union bounding box:
    p, t = p[box], t[box]  # surfaces and nearest-surface distances inside it are unchanged
    ep, et = _surface(p), _surface(t)
    d_pt = _distance_to(et, spacing)[ep]
    d_tp = _distance_to(ep, spacing)[et]
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with at least one face neighbour outside (image border counts as outside)."""
    padded = np.pad(mask, 1)
    eroded = mask.copy()
    for ax in range(mask.ndim):
        for lo in (0, 2):  # the neighbour before / after along this axis
            eroded &= padded[tuple(slice(lo, lo + n) if a == ax else slice(1, n + 1)
                                   for a, n in enumerate(mask.shape))]
    return mask & ~eroded


def _distance_to(surface: np.ndarray, spacing: Tuple[float, ...]) -> np.ndarray:
    """Euclidean distance (with spacing) from every pixel to the nearest ``surface`` pixel."""
    img = sitk.GetImageFromArray(surface.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    dist = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    return np.where(surface, 0.0, np.maximum(dist, 0.0))


def threshold_dice_curve(prob: np.ndarray, truth: np.ndarray,
                         n_thresholds: int = N_THRESHOLDS) -> Tuple[np.ndarray, np.ndarray]:
    """(thresholds, Dice per threshold) as in Inf-Net's evaluation toolbox; see ``threshold_averaged_dice``."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    g = np.asarray(truth).ravel() != 0
    if p.shape != g.shape:
        raise ValueError(f"prob has {p.size} pixels, truth {g.size}")
    lo, hi = p.min(), p.max()
    if hi > lo:  # MATLAB mapminmax(x, 0, 1); it leaves a constant map unchanged
        p = (p - lo) / (hi - lo)
    thresholds = np.linspace(0.0, 1.0, n_thresholds)
    all_sorted, fg_sorted = np.sort(p), np.sort(p[g])
    n_pred = p.size - np.searchsorted(all_sorted, thresholds, side="left")  # #(p >= t)
    tp = fg_sorted.size - np.searchsorted(fg_sorted, thresholds, side="left")
    denom = np.maximum(n_pred + fg_sorted.size, 1)
    dice = np.where(tp > 0, 2.0 * tp / denom, 0.0)
    return thresholds, dice


def threshold_averaged_dice(prob: np.ndarray, truth: np.ndarray, n_thresholds: int = N_THRESHOLDS) -> float:
    """Inf-Net's "mean Dice" of one probability map: Dice averaged over 256 thresholds.

    Reading of Inf-Net's toolbox (EvaluationTool/main.m, Fmeasure_calu.m): the map is min-max
    normalised to [0, 1] (``mapminmax``; a constant map is left as it is), thresholds are
    ``1:-1/255:0`` (= linspace(0, 1, 256)), pred = ``map >= t``, Dice = 2TP / (|pred| + |truth|)
    but 0 whenever TP == 0 (so an empty truth always scores 0 here, unlike ``binary_metrics``).
    The dataset "meanDic" is the mean of this over images (averaging is linear, so the order of
    the two means does not matter); their "maxDic" is the max over thresholds of the per-threshold
    mean over images, see ``threshold_dice_curve``.

    How it differs from plain Dice at 0.5: min-max normalisation rescales even a low-confidence
    map (max prob 0.3 still reaches 1), so it measures ranking, not calibration; averaging over
    thresholds rewards a map whose foreground pixels rank above the background across the whole
    range rather than at one operating point. Even a perfect binary map scores slightly below 1:
    at t = 0 every pixel is predicted, so the score is (255 + 2G / (G + N)) / 256 for G truth
    pixels out of N. A constant map c in [0, 1] predicts everything for the thresholds t <= c
    and nothing above, giving 2G / (G + N) * #(t <= c) / 256 (0 when the truth is empty).
    """
    return float(np.mean(threshold_dice_curve(prob, truth, n_thresholds)[1]))


def summarise(rows: List[Mapping[str, float]]) -> Dict[str, Dict[str, float]]:
    """Per metric over rows: mean, sd (sample, ddof=1; 0 for one value), n (finite values) and n_missing.

    nan/inf values (undefined metrics, e.g. HD95 with an empty mask) are skipped and counted in
    ``n_missing``; a metric with no finite value has mean and sd nan. Non-numeric keys are ignored.
    """
    keys: List[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and _is_number(v)]
    out = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in rows if k in r and _is_number(r[k])], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        n = int(finite.size)
        out[k] = {"mean": float(finite.mean()) if n else math.nan,
                  "sd": float(finite.std(ddof=1)) if n > 1 else (0.0 if n else math.nan),
                  "n": n, "n_missing": int(vals.size - n)}
    return out


def pooled_group_dice(rows: Sequence[Mapping[str, float]], reference_pixels: Sequence[int],
                      groups: Sequence, image_pixels: Optional[int] = None) -> Dict[str, float]:
    """Per-group (patient) Dice over all of a group's slices pooled, the 3D kind of Dice volume
    methods report, rebuilt from per-slice ``sensitivity`` and ``precision`` rows and each
    slice's reference pixel count (TP = sensitivity x reference, prediction = TP / precision).
    With ``image_pixels`` (every slice's size) the prediction is TP + (1 - specificity) x the
    other pixels instead: exact also where precision is 0."""
    sums: Dict[str, List[float]] = {}
    for row, ref, group in zip(rows, reference_pixels, groups):
        tp = float(row["sensitivity"]) * ref
        if image_pixels is not None:
            pred = tp + (1.0 - float(row["specificity"])) * (image_pixels - ref)
        else:
            pred = tp / float(row["precision"]) if float(row["precision"]) > 0 else 0.0
        total = sums.setdefault(str(group), [0.0, 0.0])
        total[0], total[1] = total[0] + tp, total[1] + ref + pred
    return {g: 2 * tp / both if both else 1.0 for g, (tp, both) in sums.items()}


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _masks(pred, truth) -> Tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred) != 0, np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} differs from truth shape {t.shape}")
    return p, t


def _spacing(spacing, ndim: int) -> Tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    sp = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} values for a {ndim}-D mask")
    return sp


def paired_change(before: Sequence[float], after: Sequence[float]) -> Dict[str, float]:
    """``after`` against ``before``, item by item (the same slices): mean change, items better and
    worse, n, two-sided Wilcoxon signed-rank p (1 when nothing changed)."""
    from scipy.stats import wilcoxon

    d = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    return {"mean_change": float(d.mean()), "better": int((d > 0).sum()), "worse": int((d < 0).sum()),
            "n": int(d.size), "wilcoxon_p": float(wilcoxon(d).pvalue) if d.any() else 1.0}
