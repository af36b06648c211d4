"""K-fold cross-validation of one training configuration on labelled slices.

Each fold trains on the other folds for the configured epochs (no early stopping and no
epoch selection: the held-out fold is the test fold and must not choose anything) and scores
the last model on its held-out slices at full size (``score_slice``).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import CovidSegError
from ..inference.predict2d import class_indices, forward_probabilities, full_size
from ..io.files import write_csv_rows, write_json
from ..names import DEFAULT_DECISION, LESION_THRESHOLD
from ..preprocess.slice_prep import InputSpec
from ..preprocess.transforms import LetterboxInfo, unletterbox
from ..progress import CancelToken, ProgressCallback, no_progress
from .datasets import TASK_CLASS_NAMES, Sample
from .metrics import binary_metrics, summarise, threshold_averaged_dice
from .partial_loss import UNION
from .trainer import TrainConfig, Trainer
from .training_data import PreparedSet, prepare_set
from .union_data import slice_in_lung_space


def kfold(n: int, k: int, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) of ``k`` folds over ``n`` items after a seeded shuffle;
    every item is tested exactly once and fold sizes differ by at most one."""
    if not 2 <= k <= n:
        raise ValueError(f"need 2 <= k <= n, got k={k}, n={n}")
    order = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(order, k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), np.sort(f)) for i, f in enumerate(folds)]


def group_kfold(groups: Sequence, k: int, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``kfold`` over groups (patients): each group's items land in one test fold together;
    groups go, largest first (ties in seeded order), to the fold with the fewest items."""
    groups = np.asarray([str(g) for g in groups])
    names, counts = np.unique(groups, return_counts=True)
    if not 2 <= k <= len(names):
        raise CovidSegError(f"grouped {k}-fold cross-validation needs 2 <= k <= {len(names)} (the number of groups)")
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of, load = {}, np.zeros(k, int)
    for i in order:
        f = int(np.argmin(load))
        fold_of[names[i]] = f
        load[f] += counts[i]
    fold = np.array([fold_of[g] for g in groups])
    idx = np.arange(len(groups))
    return [(idx[fold != f], idx[fold == f]) for f in range(k)]


def sample_folds(samples: Sequence[Sample], k: int, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Grouped folds when every sample names its group (patient) in ``meta``, else slice folds."""
    if samples and all("group" in s.meta for s in samples):
        return group_kfold([s.meta["group"] for s in samples], k, seed)
    return kfold(len(samples), k, seed)


def score_slice(prob: np.ndarray, truth: np.ndarray, task: str, decision: str = DEFAULT_DECISION,
                threshold: float = LESION_THRESHOLD) -> Dict[str, float]:
    """Metrics of one full-size probability map (C, y, x) against a class-index mask.

    Keys: ``<metric>`` for infection (any class > 0), ``<class>_<metric>`` per class in a
    multi-class task (nan, not computed, where the truth has ``partial_loss.UNION`` pixels), and
    ``tad`` (Inf-Net's threshold-averaged Dice of the infection map). ``decision``, ``threshold``:
    ``class_indices``.
    """
    pred = class_indices(prob, decision, threshold)
    infection = binary_metrics(pred > 0, truth > 0)
    row = dict(infection)
    row["tad"] = threshold_averaged_dice(1.0 - prob[0], truth > 0)
    if len(TASK_CLASS_NAMES[task]) > 1:
        split_known = not (truth == UNION).any()  # infection-only labels say nothing of the classes
        for index, name in TASK_CLASS_NAMES[task].items():
            scores = binary_metrics(pred == index, truth == index) if split_known else dict.fromkeys(infection, math.nan)
            row.update({f"{name}_{k}": v for k, v in scores.items()})
    return row


def score_model(model, samples: Sequence[Sample], spec: InputSpec, task: str, device,
                space: Optional[str] = None, decision: str = DEFAULT_DECISION,
                threshold: float = LESION_THRESHOLD) -> List[Dict]:
    """Full-size metric rows (``id`` + metrics) of a model on samples. ``space`` "lung" (the
    card's ``intensity_space``): slices not stored in the lung space (MedSeg's 8-bit window) are
    brought into it and the probabilities back onto their own grid, as ``segment`` does."""
    originals: Dict[str, Tuple[np.ndarray, LetterboxInfo]] = {}
    if space == "lung":
        samples = [_in_lung_space(s, originals) for s in samples]
    return score_prepared(model, prepare_set(samples, spec), task, device, originals, decision, threshold)


def _in_lung_space(sample: Sample, originals: Dict[str, Tuple[np.ndarray, LetterboxInfo]]) -> Sample:
    if sample.meta.get("space") == "lung":
        return sample
    image, target, info = slice_in_lung_space(sample.image, sample.target)
    originals[sample.id] = (sample.target, info)
    return replace(sample, image=image, target=target)


def score_prepared(model, data: PreparedSet, task: str, device,
                   originals: Optional[Dict[str, Tuple[np.ndarray, LetterboxInfo]]] = None,
                   decision: str = DEFAULT_DECISION, threshold: float = LESION_THRESHOLD) -> List[Dict]:
    """``score_model`` on samples already prepared at the network's input size; ``originals``:
    id -> (mask, letterbox) of slices scored on their own grid rather than the prepared one."""
    probs, _ = forward_probabilities(model, data.inputs(), device)
    rows = []
    for s, p in zip(data.samples, full_size(probs, data.geometries)):
        target, info = (originals or {}).get(s.id, (s.target, None))
        rows.append({"id": s.id, **score_slice(p if info is None else unletterbox(p, info, order=1), target, task,
                                               decision, threshold)})
    return rows


def cross_validate(cfg: TrainConfig, samples: Sequence[Sample], out_dir: Path, k: int = 5,
                   progress: ProgressCallback = no_progress, cancel: Optional[CancelToken] = None) -> Dict:
    """Run all folds (resumable: each fold folder holds its checkpoint) and write
    ``cv_slices.csv`` (one row per held-out slice) and ``cv_summary.json`` (mean, sd per metric)."""
    out_dir = Path(out_dir)
    if not 2 <= k <= len(samples):
        raise CovidSegError(f"{k}-fold cross-validation needs 2 <= k <= {len(samples)} (the number of slices)")
    spec = InputSpec.from_dict(cfg.input)
    rows: List[Dict] = []
    epochs_run = []
    for i, (train_idx, test_idx) in enumerate(sample_folds(samples, k, cfg.seed)):
        train = [samples[j] for j in train_idx]
        test = [samples[j] for j in test_idx]
        fold_dir = out_dir / f"fold{i}"
        trainer = Trainer(cfg, fold_dir, _fold_progress(progress, i, k), cancel)
        test_set = prepare_set(test, spec)  # monitored during training, then scored at full size
        result = trainer.fit(prepare_set(train, spec, with_alt=trainer.aug.clahe > 0), test_set, select_best=False)
        epochs_run.append(len(result.history))
        rows += [{"fold": i, **r} for r in score_prepared(result.model, test_set, cfg.task, trainer.device)]
        del trainer, result
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    summary = {"k": k, "n_slices": len(samples), "epochs": epochs_run, "config": cfg.to_dict(),
               "metrics": summarise([{m: v for m, v in r.items() if m not in ("fold", "id")} for r in rows])}
    write_csv_rows(rows, out_dir / "cv_slices.csv")
    write_json(summary, out_dir / "cv_summary.json")
    return summary


def _fold_progress(progress: ProgressCallback, fold: int, k: int) -> ProgressCallback:
    def report(done: int, total: int, message: str) -> None:
        progress(fold * total + done, k * total, f"fold {fold + 1}/{k} {message}")
    return report
