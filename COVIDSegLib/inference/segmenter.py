"""Whole-volume segmentation with a model bundle: lungs 1/2, GGO (or infection) 3, consolidation 4.

Steps: lungs (``lungs``) -> intensities to the bundle's space (MedSeg 8-bit, or the lung space of
the v2 models) -> the 2D model on every axial
slice that contains lung, in batches, through the bundle's own preparation and its exact
inverse (``slice_prep``) -> infection kept within the lungs plus a margin, small components
removed -> optionally GGO/consolidation from density (``density_split``) -> labels in the input's
exact geometry. Slices are processed in radiological orientation (SimpleITK "LPS") whatever the
volume's direction, and mapped back.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .. import morphology as morph
from ..bundle import ModelBundle, intensity_space
from ..errors import CovidSegError
from ..io.orientation import from_lps, lps_spacing_zyx, to_lps
from ..lungs.lung_model import load_lung_model
from ..lungs.segment import segment_lungs
from ..models.fold import fold_batchnorm
from ..names import DECISIONS, DEFAULT_DECISION, LESION_THRESHOLD
from ..preprocess.intensity import MEDSEG8, resolve_calibration, to_hu, to_medseg8
from ..preprocess.lung_space import slices_to_lung_space
from ..preprocess.slice_prep import InputSpec, prepare, restore
from ..preprocess.transforms import LetterboxInfo, unletterbox
from ..progress import CancelToken, ProgressCallback, check, no_progress
from ..threads import thread_map
from ..volume import Volume
from .density_split import DensitySplit, split_by_density
from .predict2d import auto_batch_size, batch_probabilities, class_indices, join_batches, pick_device, use_bf16

log = logging.getLogger(__name__)


AERATED_HU, AIRLESS_SHARE = -500.0, 0.1  # an infection component with under 10 % of voxels below -500 HU is airless


@dataclass
class InferenceOptions:
    device: str = "auto"
    batch_size: Optional[int] = None  # slices per model batch; None: predict2d.auto_batch_size
    calibration: str = "auto"
    tta_flip: bool = False           # average with the left-right mirrored prediction
    precision: str = "auto"          # bf16 autocast on CUDA and AMX CPUs ("auto"), or "fp32" / "bf16"
    lung_margin_mm: Optional[float] = None  # infection kept within the lungs dilated in-plane by this;
    # None: 5 mm (two lung-model pixels) with the learned lungs, which hold consolidation; 10 mm with the training-free ones
    lungs: str = "auto"              # lung model name/path; "auto": the bundled one if installed; "classic"
    min_component_mm3: float = 10.0  # smaller infection islands are removed (mm^2 x slice thickness)
    min_inside_share: float = 0.25   # infection components (3D) with less of their volume inside the lung
    # masks are removed: what lies mostly in the margin is partial volume and atelectasis along the outline
    # (0.13.0; MedSeg CV unchanged, docs/MODELS.md)
    airless_inside_share: float = 0.5  # ... and airless ones (under 10 % of voxels below -500 HU) with less
    # than this inside: diaphragm, crus and paraspinal tissue, not pneumonia (0.16.0, docs/MODELS.md); 0: off
    empty_threshold: float = 0.5     # multi-task models: slices whose head says < this are skipped
    keep_probabilities: bool = False  # also return the model's class probabilities (uint8 maps)
    decision: str = DEFAULT_DECISION  # lesion voxels: "union" (the lesion classes together at least
    # lesion_threshold, then the more probable of them; CV-better, docs/MODELS.md) or "argmax"
    lesion_threshold: float = LESION_THRESHOLD  # union only; two-class models take the most probable class
    classes: str = "density"         # GGO vs consolidation: "density" (the network's infection, each voxel's
    # class from the HU around it: density_split; CV-better than the network's own split) or "model"

    def __post_init__(self) -> None:
        if self.lung_margin_mm is not None and not self.lung_margin_mm >= 0:
            raise CovidSegError(f"the lung margin must be 0 mm or more, not {self.lung_margin_mm:g}")
        if not self.min_component_mm3 >= 0:
            raise CovidSegError(f"the smallest infection island must be 0 mm^3 or more, not {self.min_component_mm3:g}")
        if not 0 < self.lesion_threshold < 1:
            raise CovidSegError(f"the lesion threshold must lie between 0 and 1, not {self.lesion_threshold:g}")
        if self.decision not in DECISIONS:
            raise CovidSegError(f"unknown lesion decision {self.decision!r}; choose {', '.join(DECISIONS)}")
        for share in (self.min_inside_share, self.airless_inside_share):
            if not 0 <= share <= 1:
                raise CovidSegError(f"the share inside the lungs must be between 0 and 1, not {share:g}")


@dataclass
class Segmentation:
    labels: Volume                     # uint8 0..4, the input's geometry
    lungs: Volume                      # the lung masks alone (1/2), before infection joins them
    slices_run: int                    # slices the model ran on
    device: str
    # with InferenceOptions.keep_probabilities: label value (3, 4) -> that class's probability
    # x 255 (uint8, input geometry; raw model output: before confinement to the lungs)
    probabilities: Optional[Dict[int, np.ndarray]] = None
    calibration: str = "auto"          # the intensity calibration resolved for the volume (quantify's HU)
    precision: str = "fp32"            # what the models ran in: "bf16" (autocast) or "fp32"


class Segmenter:
    """``Segmenter(bundle, options).segment(volume)``; reusable across volumes."""

    def __init__(self, bundle: ModelBundle, options: InferenceOptions = InferenceOptions()):
        self.bundle, self.options = bundle, options
        self.device = pick_device(options.device)
        # BatchNorm folded into the convolutions, channels-last: ~35 % faster on CPU (docs/BENCHMARKS.md)
        self.model = fold_batchnorm(bundle.model, inplace=True).to(self.device, memory_format=torch.channels_last)
        self.spec = InputSpec.from_dict(bundle.card["preprocessing"]["input"])
        self.lung_space = intensity_space(bundle.card) == "lung"  # v2 models
        self.class_values = np.zeros(max(bundle.class_labels) + 1, np.uint8)
        for index, value in bundle.class_labels.items():
            self.class_values[index] = value
        self.batch_size = max(1, int(options.batch_size or auto_batch_size(self.device, bundle.card)))
        self.lung_model = load_lung_model(options.lungs, options.device, options.precision)
        # GGO/consolidation by density: multi-class models only (a binary model's 3 is "infection")
        self.density_split = (DensitySplit() if options.classes == "density" and bundle.card["task"] == "multiclass"
                              else None)
        margin = options.lung_margin_mm
        self.lung_margin_mm = float(margin if margin is not None else (5.0 if self.lung_model else 10.0))

    @classmethod
    def load(cls, model: str, options: InferenceOptions = InferenceOptions(),
             device: Optional[str] = None) -> "Segmenter":
        """The bundle ``model`` (name or card path) loaded onto ``device`` (default: ``options.device``)."""
        from ..bundle import load_bundle
        return cls(load_bundle(model, pick_device(device or options.device)), options)

    def lung_method_for(self, n_slices: int) -> str:
        """What finds the lungs of a volume of ``n_slices`` axial slices (a 2.5D lung model hands
        single slices to its 2D companion)."""
        if self.lung_model is not None:
            return f"model {self.lung_model.runs_for(n_slices).name}"
        return "training-free (classic)" if self.options.lungs == "classic" else \
            "training-free (fallback: no lung model installed)"

    @property
    def postprocessing(self) -> Dict[str, float]:
        """The infection post-processing that ran, for reports."""
        o = self.options
        return {"lung_margin_mm": self.lung_margin_mm, "min_component_mm3": o.min_component_mm3,
                "min_inside_share": o.min_inside_share, "airless_inside_share": o.airless_inside_share,
                "lesion_decision": o.decision, "lesion_threshold": o.lesion_threshold}

    @property
    def class_method(self) -> str:
        """What told GGO from consolidation (and, with the union decision, lesion from background), for reports."""
        if self.bundle.card["task"] != "multiclass":
            return "none (binary model: infection only)"
        d = self.density_split
        split = "model" if d is None else \
            f"density: in-plane {d.median_mm:g} mm median above {d.threshold_hu:g} HU is consolidation"
        o = self.options
        return split if o.decision == "argmax" else f"{split}; lesion: GGO + consolidation at least {o.lesion_threshold:g}"

    @property
    def bf16(self) -> bool:
        """Whether the infection model runs under bf16 autocast (the device can fall back to the CPU)."""
        return use_bf16(self.device, self.options.precision)

    # ------------------------------------------------------------------ model
    def _forward(self, x: torch.Tensor) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        return batch_probabilities(self.model, x, self.device, self.options.tta_flip, self.bf16)

    def _forward_safely(self, x: torch.Tensor) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """On CUDA out-of-memory: halve the batch, then fall back to the CPU with a warning."""
        while True:
            try:
                return join_batches([self._forward(x[i:i + self.batch_size])
                                     for i in range(0, len(x), self.batch_size)])
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    log.warning("GPU out of memory: batch size lowered to %d", self.batch_size)
                else:
                    log.warning("GPU out of memory even for one slice: continuing on the CPU")
                    self.device = torch.device("cpu")
                    self.model = self.model.to(self.device, memory_format=torch.channels_last)

    # ------------------------------------------------------------------ volume
    def segment(self, volume: Volume, progress: ProgressCallback = no_progress,
                cancel: Optional[CancelToken] = None) -> Segmentation:
        opts = self.options
        progress(0, volume.shape[0] + 2, "lungs")  # integer steps: lungs, one per slice with lung, done
        calibration = resolve_calibration(volume, opts.calibration)
        lungs = segment_lungs(volume, calibration, cancel=cancel, model=self.lung_model)
        check(cancel)
        # LPS views of the stored voxels: slices are converted chunk by chunk (bounded memory)
        stored, lung_lps = to_lps(volume.array, volume), to_lps(lungs.array, volume)
        to_space = _lung_space_slices if self.lung_space else _medseg8_slices
        to_model_space = partial(to_space, space=volume.space, calibration=calibration)
        # probability maps in the input's geometry, filled through their LPS views
        probs = ({int(v): np.zeros(volume.shape, np.uint8) for v in self.class_values[1:]}
                 if opts.keep_probabilities else None)
        probs_lps = None if probs is None else {v: to_lps(p, volume) for v, p in probs.items()}
        spacing = lps_spacing_zyx(volume)
        margin_px = int(round(self.lung_margin_mm / min(spacing[1], spacing[2])))
        infection, run = self._infection(stored, to_model_space, lung_lps, margin_px, probs_lps, progress, cancel)
        hu_slice = partial(_hu_slice, stored, volume.space, calibration)
        infection = self._postprocess(infection, lung_lps, spacing, margin_px, hu_slice)
        if self.density_split is not None:
            infection = split_by_density(infection, hu_slice, spacing[1:], self.density_split)
        labels = compose(lungs.array, from_lps(infection, volume))  # in the input's geometry: one copy
        progress(run + 2, run + 2, "done")
        return Segmentation(volume.with_array(labels), lungs, run, str(self.device), probs, calibration,
                            "bf16" if self.bf16 else "fp32")

    def _infection(self, stored: np.ndarray, to_model_space: Callable[[np.ndarray], Tuple[np.ndarray, Optional[LetterboxInfo]]],
                   lungs: np.ndarray, margin_px: int, probs: Optional[Dict[int, np.ndarray]],
                   progress: ProgressCallback, cancel: Optional[CancelToken]) -> Tuple[np.ndarray, int]:
        """Per-voxel label values (0, 3, 4) of the model on slices with lung, chunk by chunk;
        fills ``probs`` (label value -> uint8 map) when given. Labels are computed within the
        slice's lung box widened by the margin only: post-processing removes all else anyway."""
        out = np.zeros(stored.shape, np.uint8)
        todo = np.flatnonzero(lungs.any(axis=(1, 2)))  # (a reshape would copy a permuted view)
        progress(1, len(todo) + 2, "lungs found")
        chunk = max(self.batch_size, 32)
        for done, zs in _chunks(todo, chunk):
            check(cancel)
            images, outer = to_model_space(stored[zs])
            prepared = thread_map(partial(prepare, spec=self.spec), images)
            x = torch.from_numpy(np.stack([p for p, _ in prepared])[:, None])
            probabilities, head = self._forward_safely(x)
            keep = [i for i in range(len(zs)) if head is None or head[i] >= self.options.empty_threshold]
            thread_map(lambda i: self._fill_slice(out, lungs, margin_px, probs, outer, zs[i], probabilities[i],
                                                  prepared[i][1]), keep)  # distinct slices
            progress(1 + done + len(zs), len(todo) + 2, f"slice {done + len(zs)}/{len(todo)}")
        return out, len(todo)

    def _fill_slice(self, out: np.ndarray, lungs: np.ndarray, margin_px: int, probs: Optional[Dict[int, np.ndarray]],
                    outer: Optional[LetterboxInfo], z: int, probability: np.ndarray, geom) -> None:
        """Label values (and with ``probs`` the probability maps) of slice ``z`` from the model's output."""
        if probs is not None:
            full = _restore(probability, geom, outer)
            out[z] = self._label_values(full)
            for index, value in enumerate(self.class_values[1:], start=1):
                probs[int(value)][z] = np.rint(full[index] * 255.0).astype(np.uint8)
        else:
            _, rows, cols = morph.bounding_box(lungs[z][None], margin_px)
            out[z][rows, cols] = self._label_values(_restore(probability, geom, outer, (rows, cols)))

    def _label_values(self, prob: np.ndarray) -> np.ndarray:
        """Label values of class probabilities (C, H, W) by ``options.decision``."""
        return self.class_values[class_indices(prob, self.options.decision, self.options.lesion_threshold)]

    def _postprocess(self, infection: np.ndarray, lungs: np.ndarray, spacing: Tuple[float, float, float],
                     margin_px: int, hu_slice: Optional[Callable[[int], np.ndarray]] = None) -> np.ndarray:
        """Keep infection within the lungs dilated in-plane by ``margin_px``; drop islands under
        min_component_mm3, components under min_inside_share inside the lungs, and, with
        ``hu_slice`` (slice z in HU), airless components under airless_inside_share inside."""
        infection = infection.copy()
        outside = (infection > 0) & (lungs == 0)
        if outside.any():  # the margin only matters around infection outside the lungs
            box = morph.bounding_box(outside, margin_px)
            allowed = morph.dilate_inplane(lungs[box] > 0, margin_px)
            infection[box][outside[box] & ~allowed] = 0
        voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
        min_voxels = int(np.ceil(self.options.min_component_mm3 / voxel_mm3))
        share, airless = self.options.min_inside_share, self.options.airless_inside_share
        if (min_voxels > 1 or share > 0 or airless > 0) and infection.any():
            box = morph.bounding_box(infection > 0)
            aerated = None
            if hu_slice is not None and airless > 0:
                zs = range(box[0].start, box[0].stop)
                aerated = np.stack([np.asarray(hu_slice(z))[box[1], box[2]] < AERATED_HU for z in zs])
            infection[box][morph.components_to_remove(infection[box] > 0, min_voxels, lungs[box] > 0, share, aerated,
                                                      (AIRLESS_SHARE, airless))] = 0
        return infection


def compose(lungs: np.ndarray, infection: np.ndarray) -> np.ndarray:
    """Final label map: lungs 1/2, infection values 3/4 on top (also where the lung masks missed
    it, e.g. dependent consolidation). ``quantify`` gives each infection voxel its side."""
    labels = lungs.astype(np.uint8, order="C")  # a new array
    np.copyto(labels, infection, where=infection > 0)
    return labels


def _medseg8_slices(stored: np.ndarray, space: str, calibration: str) -> Tuple[np.ndarray, None]:
    """Some stored slices in the models' 8-bit space (``calibration`` resolved for the volume)."""
    return to_medseg8(Volume(np.asarray(stored), space=space), calibration).array, None


def _lung_space_slices(stored: np.ndarray, space: str, calibration: str) -> Tuple[np.ndarray, LetterboxInfo]:
    """Some stored slices in the lung space (256 px, ``lung_space``) and their letterbox."""
    if calibration == MEDSEG8:  # 8-bit slices enter the lung space as they are, as in training
        return slices_to_lung_space(np.asarray(stored), is_hu=False)
    return slices_to_lung_space(to_hu(Volume(np.asarray(stored), space=space), calibration).array, is_hu=True)


def _hu_slice(stored: np.ndarray, space: str, calibration: str, z: int) -> np.ndarray:
    """One stored slice (LPS view) in HU."""
    return to_hu(Volume(np.asarray(stored[z:z + 1]), space=space), calibration).array[0]


def _restore(prob: np.ndarray, geometry, outer: Optional[LetterboxInfo],
             window: Optional[Tuple[slice, slice]] = None) -> np.ndarray:
    """Class probabilities on the slice (or ``window``); ``outer``: the lung space's letterbox."""
    if outer is None:
        return restore(prob, geometry, window)
    return unletterbox(restore(prob, geometry), outer, order=1, window=window)


def _chunks(indices: np.ndarray, size: int) -> Iterator[Tuple[int, List[int]]]:
    for start in range(0, len(indices), size):
        yield start, [int(z) for z in indices[start:start + size]]
