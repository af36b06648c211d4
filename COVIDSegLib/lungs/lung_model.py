"""The learned lung model on a whole volume: per-voxel lung probability, slice by slice.

Every axial slice (radiological LPS order) goes to the bundle's space (``lung_space``: HU
clipped, letterboxed to 256 px, per-slice min-max, OpenCV CLAHE), through the 2D network in
batches, and back onto the slice's own grid. Sides, 3D connectivity and plausibility are
``lungs3d``'s job.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..bundle import ModelBundle, companion_bundle, find_bundle, load_bundle
from ..errors import CovidSegError
from ..inference.predict2d import auto_batch_size, batch_probabilities, pick_device, use_bf16
from ..models.fold import fold_batchnorm
from ..names import DEFAULT_LUNG_MODEL
from ..preprocess.lung_space import slices_to_lung_space
from ..preprocess.slice_prep import InputSpec
from ..preprocess.transforms import letterbox, unletterbox
from ..progress import CancelToken, ProgressCallback, check, no_progress


def find_lung_bundle(ref: Optional[str] = None) -> Optional[str]:
    """Path of the lung bundle ``ref`` (default: the bundled ``covidseg_lungs``); None when the
    default is not installed (a named one that is missing is an error)."""
    try:
        return str(find_bundle(ref or DEFAULT_LUNG_MODEL))
    except CovidSegError:
        if ref:
            raise
        return None


def load_lung_model(choice: str = "auto", device: str = "cpu", precision: str = "auto") -> Optional["LungModel"]:
    """``choice``: "auto" (the bundled lung model when installed, else None: training-free),
    "classic" (None), or a lung bundle's name or card path."""
    if choice == "classic":
        return None
    path = find_lung_bundle(None if choice == "auto" else choice)
    return None if path is None else LungModel.load(path, device, precision)


SPACE_CHUNK = 16  # slices taken to the lung space at a time
MIN_CONTEXT_SLICES = 2  # fewer: a model with context hands the volume to its card's single-slice model


class LungModel:
    """``LungModel(bundle).probabilities(lps_slices, is_hu)``; reusable across volumes.

    A model with context (2.5D) whose card names ``preprocessing.single_slice_model`` hands
    one-slice inputs to that 2D model: with no neighbour, all three input channels would be the
    slice itself, which the 2.5D network saw in only a fifth of its training (docs/LUNGS.md).
    A card naming ``preprocessing.ensemble_with`` (lung models of the same kind) averages their
    probabilities with its own on the inputs it runs on (docs/LUNGS.md, 0.20.0)."""

    def __init__(self, bundle: ModelBundle, device: str = "cpu", batch_size: Optional[int] = None,
                 precision: str = "auto"):
        if bundle.card.get("task") != "lungs":
            raise CovidSegError(f"{bundle.card_path}: model {bundle.name!r} is not a lung model (task "
                                f"{bundle.card.get('task')!r})")
        self.bundle, self.device = bundle, pick_device(device)
        self.model = fold_batchnorm(bundle.model, inplace=True).to(self.device, memory_format=torch.channels_last)
        self.spec = InputSpec.from_dict(bundle.card["preprocessing"]["input"])
        self.batch_size = max(1, int(batch_size or auto_batch_size(self.device, bundle.card)))
        self.bf16 = use_bf16(self.device, precision)
        self.single: Optional[LungModel] = None
        single = bundle.card["preprocessing"].get("single_slice_model")
        if single and self.spec.context_mm > 0:
            self.single = LungModel(companion_bundle(bundle, single), device, batch_size, precision)
            if self.single.spec.context_mm > 0:
                raise CovidSegError(f"{bundle.card_path}: single-slice model {single!r} has context itself")
        self.members = [LungModel(companion_bundle(bundle, other), device, batch_size, precision)
                        for other in bundle.card["preprocessing"].get("ensemble_with") or []]
        for member in self.members:
            if member.members or member.single or (member.spec.context_mm > 0) != (self.spec.context_mm > 0):
                raise CovidSegError(f"{bundle.card_path}: ensemble member {member.name!r} must be a plain lung "
                                    f"model {'with' if self.spec.context_mm > 0 else 'without'} context")

    @classmethod
    def load(cls, ref: str, device: str = "cpu", precision: str = "auto") -> "LungModel":
        return cls(load_bundle(ref, "cpu"), device, precision=precision)

    @property
    def name(self) -> str:
        """The bundle's name, with its ensemble members' ("a+b")."""
        return "+".join([self.bundle.name] + [m.name for m in self.members])

    def runs_for(self, n_slices: int) -> "LungModel":
        """The model that segments a volume of ``n_slices`` axial slices: this one, or its single-slice model."""
        return self.single if self.single is not None and n_slices < MIN_CONTEXT_SLICES else self

    def probabilities(self, lps: np.ndarray, is_hu: bool, progress: ProgressCallback = no_progress,
                      cancel: Optional[CancelToken] = None, slice_mm: float = 0.0) -> np.ndarray:
        """Lung probability (uint8, x 255) of every voxel of ``lps`` (LPS order; HU, or 8-bit
        values when not ``is_hu``); ``slice_mm``: the slice spacing, for a model with context."""
        if self.runs_for(len(lps)) is not self:
            return self.single.probabilities(lps, is_hu, progress, cancel, slice_mm)
        if not len(lps):
            return np.zeros(lps.shape, np.uint8)
        spaced = []  # the lung space (256 px) once for every member; one letterbox for all slices
        for zs in _batches(len(lps), SPACE_CHUNK):
            check(cancel)
            batch, info256 = slices_to_lung_space(np.asarray(lps[zs]), is_hu)
            spaced.append((batch.astype(np.uint8), info256))  # CLAHE output: whole numbers 0..255
        models, n = [self, *self.members], len(lps)
        maps = [model._network(spaced, lps.shape, _shifted(progress, k * n, len(models) * n), cancel, slice_mm)
                for k, model in enumerate(models)]  # one progress run over all members
        if len(maps) == 1:
            return maps[0]
        return np.rint(np.sum(maps, axis=0, dtype=np.uint16) / len(maps)).astype(np.uint8)

    def _network(self, spaced: list, shape: tuple, progress: ProgressCallback, cancel: Optional[CancelToken],
                 slice_mm: float) -> np.ndarray:
        """This network's probabilities from the lung-space batches ``spaced`` of a volume of ``shape``."""
        xs = []
        for batch, info256 in spaced:
            x, info = letterbox(batch.astype(np.float32), self.spec.size, order=1, pad_value=0.0)  # as slice_prep.prepare
            xs.append(np.clip(x / 255.0, 0.0, 1.0).astype(np.float32))
        inputs, info256 = np.concatenate(xs), spaced[0][1]  # one slice shape: the same letterbox for all
        out = np.zeros(shape, np.uint8)
        near = neighbour_slices(shape[0], self.spec.context_mm, slice_mm)
        for zs in _batches(shape[0], self.batch_size):
            check(cancel)
            x = torch.from_numpy(inputs[zs][:, None] if near is None else inputs[near[zs]])
            prob, _ = batch_probabilities(self.model, x, self.device, bf16=self.bf16)
            full = unletterbox(unletterbox(prob[:, 1], info, order=1), info256, order=1)
            out[zs] = np.rint(np.clip(full, 0.0, 1.0) * 255.0).astype(np.uint8)
            progress(zs.stop, shape[0], f"lung model {self.bundle.name} {zs.stop}/{shape[0]}")
        return out


def _shifted(progress: ProgressCallback, offset: int, total: int) -> ProgressCallback:
    """``progress`` for one part of a longer run: steps ``offset`` on, out of ``total``."""
    return lambda done, _, message="": progress(offset + done, total, message)


def _batches(n: int, size: int):
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


MAX_CONTEXT_GAP_MM = 5.0  # neighbours further apart share too little anatomy: the slice itself instead
# (9 mm slices: the thin left lung lost with them, docs/LUNGS.md 0.21.0)


def neighbour_slices(n: int, context_mm: float, slice_mm: float,
                     max_gap_mm: float = MAX_CONTEXT_GAP_MM) -> Optional[np.ndarray]:
    """(n, 3) slice indices (below, itself, above) for a model with ``context_mm`` > 0: the slices
    nearest ``context_mm`` away, at least the next ones, the end slices at the volume's ends; the
    slice itself thrice when the next one lies more than ``max_gap_mm`` away (the single-slice
    mode the network also trained in); None without context."""
    if context_mm <= 0:
        return None
    step = max(1, int(round(context_mm / slice_mm))) if slice_mm > 0 else 1
    if step * slice_mm > max_gap_mm:
        step = 0
    z = np.arange(n)
    return np.stack([np.clip(z - step, 0, n - 1), z, np.clip(z + step, 0, n - 1)], axis=1)
