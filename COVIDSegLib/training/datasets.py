"""Training data: labelled axial slices from MedSeg PNGs or COVID-19-CT-Seg volumes, plus a
quality filter that drops defective slices with a logged reason.

Every sample is one axial slice in the MedSeg 8-bit intensity space (0..255, anterior at the
top, patient's right on the image left) with a class-index target for one task:

* ``binary``: 0 background, 1 infection (any finding)
* ``multiclass``: 0 background, 1 ground-glass opacity, 2 consolidation

``TASK_LABELS`` maps class indices to the project's fixed label values.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import labels
from ..errors import CovidSegError, InputError
from ..io.files import read_volume, write_json
from ..io.orientation import orient_lps
from ..preprocess.intensity import hu_to_medseg8, resolve_calibration, to_hu, to_medseg8

log = logging.getLogger(__name__)

TASK_LABELS: Dict[str, Dict[int, int]] = {
    "binary": {1: labels.GGO},
    "multiclass": {1: labels.GGO, 2: labels.CONSOLIDATION},
    "lungs": {1: labels.LEFT_LUNG},  # one lung class; sides are assigned in 3D (lungs3d)
}
TASK_CLASS_NAMES: Dict[str, Dict[int, str]] = {
    "binary": {1: "infection"},
    "multiclass": {1: "GGO", 2: "consolidation"},
    "lungs": {1: "lungs"},
}
MIN_SIDE, MAX_SIDE = 64, 2048


@dataclass
class Sample:
    """One labelled axial slice: ``image`` (y, x) float32 0..255, ``target`` (y, x) uint8 classes."""

    id: str
    image: np.ndarray
    target: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)


def n_classes(task: str) -> int:
    """Network outputs of a task: background plus its classes."""
    return len(TASK_LABELS[check_task(task)]) + 1


def class_keyed(metrics: dict, task: str) -> dict:
    """Metric keys of ``crossval.score_slice`` with the unprefixed (infection, or lungs for a
    lung model) ones prefixed, as ``evaluate.format_table`` expects; class-prefixed keys stay."""
    if task == "lungs":
        return {f"lungs_{k}": v for k, v in metrics.items()}
    per_class = tuple(f"{name}_" for name in TASK_CLASS_NAMES[task].values())
    return {(k if k.startswith(per_class) else f"infection_{k}"): v for k, v in metrics.items()}


def table_classes(task: str) -> List[str]:
    """Rows of a metric table: infection (or lungs), then the task's own classes."""
    if task == "lungs":
        return ["lungs"]
    return ["infection"] + [n for n in TASK_CLASS_NAMES[task].values() if n != "infection"]


def check_task(task: str) -> str:
    if task not in TASK_LABELS:
        raise CovidSegError(f"unknown task {task!r}; choose {' or '.join(TASK_LABELS)}")
    return task


def _read_png(path: Path) -> np.ndarray:
    return read_volume(path).array[0]


def load_medseg(root: Path, task: str = "binary") -> List[Sample]:
    """The MedSeg layout: images/NNNN.png, masks/NNNN.png (0/1), masks_multiclass/NNNN.png (0/1/2).

    For ``multiclass`` only slices with a multi-class mask are returned (the others are logged).
    """
    root, task = Path(root), check_task(task)
    if task == "lungs":
        raise CovidSegError(f"{root} has no lung masks (MedSeg layout): score lung models on a "
                            "covid19-ct-seg-slices folder (images/, lungs/, infection/, manifest.json)")
    images = sorted((root / "images").glob("*.png"))
    if not images:
        raise InputError(f"No images/*.png under {root}: not a MedSeg-layout folder.")
    mask_dir = root / ("masks" if task == "binary" else "masks_multiclass")
    out = []
    for path in images:
        mask_path = mask_dir / path.name
        if not mask_path.exists():
            log.info("%s: no %s mask, skipped", path.stem, mask_dir.name)
            continue
        out.append(Sample(path.stem, _read_png(path), _read_png(mask_path).astype(np.uint8), str(path)))
    return out


def _case_key(path: Path) -> str:
    """Zenodo names differ between folders: coronacases_org_001 ~ coronacases_001,
    radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm ~ radiopaedia_4_85506_1."""
    name = path.name.split(".nii")[0]
    for noise in ("_org", "covid-19-pneumonia-", "-dcm"):
        name = name.replace(noise, "")
    return name


def _ct_seg_pairs(root: Path) -> List[Tuple[Path, Path]]:
    """(CT, infection mask) pairs of the COVID-19-CT-Seg layout, matched by case name."""
    cts = sorted((root / "ct_scans").glob("*.nii*"))
    if not cts:
        raise InputError(f"No ct_scans/*.nii(.gz) under {root}: not a COVID-19-CT-Seg-layout folder.")
    masks = {_case_key(p): p for p in (root / "infection_mask").glob("*.nii*")}
    pairs = []
    for ct in cts:
        mask = masks.get(_case_key(ct))
        if mask is None:
            log.info("%s: no infection mask, skipped", ct.name)
            continue
        pairs.append((ct, mask))
    return pairs


def load_ct_seg(root: Path, task: str = "binary", every: int = 1, calibration: str = "auto") -> List[Sample]:
    """Axial slices of the 20-case COVID-19-CT-Seg layout: ct_scans/, infection_mask/ (lung_mask/ unused).

    CTs are mapped from HU to the MedSeg space; every ``every``-th slice is kept. That set has
    no GGO/consolidation split, so only the ``binary`` task is possible.
    """
    root, task = Path(root), check_task(task)
    if task != "binary":
        raise CovidSegError("COVID-19-CT-Seg has infection masks only: use --task binary with it.")
    out = []
    for ct_path, mask_path in _ct_seg_pairs(root):
        try:
            ct = orient_lps(to_medseg8(read_volume(ct_path), calibration))
        except CovidSegError as exc:  # unreadable, or neither HU nor the 8-bit window: this case only
            log.warning("%s: skipped (%s)", ct_path.name, exc)
            continue
        mask = orient_lps(read_volume(mask_path))
        if mask.array.shape != ct.array.shape:
            log.warning("%s: mask shape %s differs from CT %s, skipped", ct_path.name, mask.array.shape,
                        ct.array.shape)
            continue
        spacing = float(ct.spacing[0])
        for z in range(0, ct.array.shape[0], max(1, int(every))):
            target = (np.asarray(mask.array[z]) > 0).astype(np.uint8)
            out.append(Sample(f"{ct_path.name.split('.nii')[0]}_z{z:03d}", ct.array[z].astype(np.float32),
                              target, str(ct_path), {"pixel_mm": spacing}))
    if not out:
        raise InputError(f"No usable CT with an infection mask under {root} (see the warnings above).")
    return out


def load_ct_seg_slices(root: Path, task: str = "lungs") -> List[Sample]:
    """The covid19-ct-seg-slices layout: images/, lungs/, infection/ (0/1 PNGs), manifest.json.

    Images stay in their published space (per-slice min-max + CLAHE, ``lung_space``); the
    target is the lung mask (task ``lungs``) or the infection mask (``binary``). ``meta``
    carries the manifest's ``group`` (patient) for grouped cross-validation, and ``volume``/``z``
    (the patient, the slice number) for neighbouring slices.
    """
    root, task = Path(root), check_task(task)
    if task == "multiclass":
        raise CovidSegError(f"{root} has no GGO/consolidation split: use --task binary or lungs with it.")
    try:
        manifest = {str(m["id"]): m for m in json.loads((root / "manifest.json").read_text(encoding="utf-8"))}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{root / 'manifest.json'}: cannot read the slice manifest ({exc})") from None
    mask_dir = root / ("lungs" if task == "lungs" else "infection")
    out = []
    for path in sorted((root / "images").glob("*.png")):
        mask_path = mask_dir / path.name
        if not mask_path.exists():
            log.info("%s: no %s mask, skipped", path.stem, mask_dir.name)
            continue
        group = int(manifest.get(path.stem, {}).get("group", -1))
        meta = {"space": "lung", "group": group, "volume": f"ct-seg_{group}"}
        if path.stem.isdigit():  # a patient's slices are numbered in their order in the volume
            meta["z"] = int(path.stem)
        out.append(Sample(path.stem, _read_png(path), (_read_png(mask_path) > 0).astype(np.uint8), str(path), meta))
    return out


def lung_free_slices(spec: str, repeat: int = 1, space: str = "lung") -> List[Sample]:
    """Negatives: the slices ``VOLUME:FIRST-LAST`` (LPS indices, inferior = 0) of a real HU volume
    below the lung bases, with empty targets, each ``repeat`` times; ``space`` "lung" (the lung
    space, 256 px) or "medseg8" (the MedSeg 8-bit window, the slice's own grid)."""
    from ..preprocess.lung_space import volume_slices  # the lung space only where negatives are made
    path, _, zs = spec.rpartition(":")
    try:
        first, last = (int(v) for v in zs.split("-"))
    except ValueError:
        raise CovidSegError(f"negative slices {spec!r}: expected VOLUME:FIRST-LAST") from None
    volume = orient_lps(read_volume(path))
    hu = to_hu(volume, resolve_calibration(volume)).array[first:last + 1]
    images = volume_slices(hu, is_hu=True) if space == "lung" else hu_to_medseg8(hu)
    name = Path(path).name.split(".nii")[0]
    return [Sample(f"neg_{name}_z{first + i:03d}_r{r}", image, np.zeros(image.shape, np.uint8), path,
                   {"space": space, "group": f"neg_{name}", "source": "negative", "volume": f"neg_{name}",
                    "z": first + i})
            for r in range(repeat) for i, image in enumerate(images)]


def infection_only(root: Path) -> bool:
    """True for the layouts with infection masks only (no GGO/consolidation split): the
    covid19-ct-seg-slices folder and the 20-case COVID-19-CT-Seg volumes (``ct_scans/``)."""
    return is_ct_seg_slices(root) or (Path(root) / "ct_scans").is_dir()


def is_ct_seg_slices(root: Path) -> bool:
    root = Path(root)
    return (root / "images").is_dir() and (root / "lungs").is_dir() and (root / "manifest.json").is_file()


def load_dataset(root: Path, task: str = "binary", **kw) -> List[Sample]:
    """MedSeg, covid19-ct-seg-slices or COVID-19-CT-Seg layout, recognised by its folders."""
    root = Path(root)
    if (root / "ct_scans").is_dir():
        return load_ct_seg(root, task, **kw)
    if is_ct_seg_slices(root):
        return load_ct_seg_slices(root, task)
    if (root / "images").is_dir():
        return load_medseg(root, task)
    raise InputError(f"{root} is neither a MedSeg folder (images/, masks/) nor a COVID-19-CT-Seg folder "
                     "(ct_scans/, infection_mask/).")


# ----------------------------------------------------------------------------- quality


def quality_problem(sample: Sample, n_classes: int) -> Optional[str]:
    """Why a sample is unusable for training, or None. Checks, in order: size, mask/image
    mismatch, constant image, label values, annotation outside the scan field, and a finding
    cut by the image border (truncated field of view)."""
    img, tgt = np.asarray(sample.image), np.asarray(sample.target)
    if img.ndim != 2 or not all(MIN_SIDE <= n <= MAX_SIDE for n in img.shape):
        return f"wrong size {img.shape} (need a 2D slice, sides {MIN_SIDE}..{MAX_SIDE})"
    if tgt.shape != img.shape:
        return f"mask/image mismatch: mask {tgt.shape}, image {img.shape}"
    if not np.isfinite(img).all():
        return "image has NaN/inf values"
    values, counts = np.unique(np.round(img), return_counts=True)
    if img.std() < 2.0 or counts.max() > 0.95 * img.size:
        return f"constant or nearly constant image (sd {img.std():.2f})"
    bad = sorted(set(np.unique(tgt).tolist()) - set(range(n_classes)))
    if bad:
        return f"mask values {bad} not in 0..{n_classes - 1}"
    finding = tgt > 0
    n = int(finding.sum())
    if n and np.count_nonzero(finding & (img <= 1.0)) > 0.01 * n:
        return "mask/image mismatch: over 1% of the annotation lies outside the scan field"
    border = np.concatenate([finding[0], finding[-1], finding[:, 0], finding[:, -1]])
    if np.count_nonzero(border) >= 5:
        return "truncated field of view: the annotated finding is cut by the image border"
    return None


def filter_quality(samples: Sequence[Sample], n_classes: int) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """(kept samples, [(id, reason)] dropped); each drop is logged."""
    kept, dropped = [], []
    for s in samples:
        reason = quality_problem(s, n_classes)
        if reason is None:
            kept.append(s)
        else:
            log.warning("dropped %s: %s", s.id, reason)
            dropped.append((s.id, reason))
    return kept, dropped


def load_filtered(root: Path, task: str = "binary") -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """``load_dataset`` then ``filter_quality``: (kept samples, [(id, reason)] dropped)."""
    return filter_quality(load_dataset(root, task), n_classes(task))


def write_quality_log(dropped: Sequence[Tuple[str, str]], kept: int, path: Path) -> None:
    write_json({"kept": kept, "dropped": [{"id": i, "reason": r} for i, r in dropped]}, path)
