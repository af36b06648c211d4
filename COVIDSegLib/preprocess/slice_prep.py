"""Turn one axial slice (MedSeg 8-bit space) into a model input and map outputs back.

The same steps run in training, cross-validation and inference, so a model always sees what
it was trained on: Otsu body box crop (optional) -> letterbox to ``size`` x ``size`` ->
scale 0..255 to 0..1 -> CLAHE (optional). ``restore`` inverts the geometry of a
(C, size, size) probability map back to the full slice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np

from .transforms import CropBox, LetterboxInfo, body_box, clahe, crop, letterbox, unletterbox


@dataclass(frozen=True)
class InputSpec:
    """How a slice becomes a network input; stored in every model card."""

    size: int = 192
    crop_body: bool = True
    clahe: bool = False
    context_mm: float = 0.0  # > 0: the slices this far below and above are two more input channels

    @property
    def channels(self) -> int:
        return 3 if self.context_mm > 0 else 1

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.context_mm:  # a 2D model's card reads as before
            del out["context_mm"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        return cls(**{k: data[k] for k in ("size", "crop_body", "clahe", "context_mm") if k in data})


@dataclass(frozen=True)
class SliceGeometry:
    """Where the network input came from in the full slice."""

    shape: Tuple[int, int]
    box: CropBox
    letterbox: LetterboxInfo


def _scaled(image8: np.ndarray, spec: InputSpec) -> Tuple[np.ndarray, SliceGeometry]:
    """Crop, letterbox and scale to [0, 1] (everything but CLAHE)."""
    a = np.asarray(image8, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"prepare needs a (y, x) slice, got shape {a.shape}")
    box = body_box(a) if spec.crop_body else CropBox.full(a.shape)
    boxed, info = letterbox(crop(a, box), spec.size, order=1, pad_value=0.0)
    return np.clip(boxed / 255.0, 0.0, 1.0).astype(np.float32), SliceGeometry(tuple(a.shape), box, info)


def prepare(image8: np.ndarray, spec: InputSpec) -> Tuple[np.ndarray, SliceGeometry]:
    """(y, x) slice in 0..255 -> ((size, size) float32 in [0, 1], geometry)."""
    x, geometry = _scaled(image8, spec)
    if spec.clahe:
        x = clahe(x).astype(np.float32)
    return x, geometry


def prepare_both(image8: np.ndarray, spec: InputSpec) -> Tuple[np.ndarray, np.ndarray, SliceGeometry]:
    """(input as ``spec`` says, the other CLAHE variant, geometry): one crop for both variants
    (CLAHE on/off augmentation)."""
    x, geometry = _scaled(image8, spec)
    equalised = clahe(x).astype(np.float32)
    return (equalised, x, geometry) if spec.clahe else (x, equalised, geometry)


def prepare_labels(labels: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """A (y, x) integer label map through the same crop and letterbox (nearest neighbour)."""
    boxed = crop(np.asarray(labels), geometry.box)
    out, _ = letterbox(boxed.astype(np.uint8), geometry.letterbox.size, order=0, pad_value=0)
    return out


def restore(prob: np.ndarray, geometry: SliceGeometry,
            window: Optional[Tuple[slice, slice]] = None) -> np.ndarray:
    """(C, size, size) probabilities -> (C, y, x) on the full slice (background outside the crop
    box), or only on ``window`` (row and column slices of the full slice, explicit bounds)."""
    p = np.asarray(prob, dtype=np.float32)
    rows, cols = window or (slice(0, geometry.shape[0]), slice(0, geometry.shape[1]))
    out = np.zeros((p.shape[0], rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
    out[0] = 1.0  # outside the body box: background
    box = geometry.box
    y0, y1 = max(rows.start, box.y0), min(rows.stop, box.y1)
    x0, x1 = max(cols.start, box.x0), min(cols.stop, box.x1)
    if y0 < y1 and x0 < x1:
        inner = unletterbox(p, geometry.letterbox, order=1,
                            window=(slice(y0 - box.y0, y1 - box.y0), slice(x0 - box.x0, x1 - box.x0)))
        out[:, y0 - rows.start:y1 - rows.start, x0 - cols.start:x1 - cols.start] = inner
    return out
