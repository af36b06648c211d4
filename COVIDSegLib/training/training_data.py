"""Samples -> tensors at the network's input size, ready for batches (all in memory: slices are small)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..preprocess.slice_prep import InputSpec, SliceGeometry, prepare, prepare_both, prepare_labels
from .datasets import Sample


@dataclass
class PreparedSet:
    """``images`` (N, 1, S, S) float32; ``images_alt`` the other CLAHE variant (or None);
    ``targets`` (N, S, S) uint8 class indices; the original samples for full-size evaluation."""

    images: torch.Tensor
    images_alt: Optional[torch.Tensor]
    targets: torch.Tensor
    geometries: List[SliceGeometry]
    samples: List[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, index: torch.Tensor, use_alt: Optional[torch.Tensor] = None):
        """(images, targets) of the samples ``index``; ``use_alt`` (bool per sample) swaps in the
        other CLAHE variant."""
        x = self.images[index]
        if use_alt is not None and self.images_alt is not None and bool(use_alt.any()):
            x = torch.where(use_alt.view(-1, 1, 1, 1), self.images_alt[index], x)
        return x, self.targets[index].long()


def prepare_set(samples: Sequence[Sample], spec: InputSpec, with_alt: bool = False) -> PreparedSet:
    images, alts, targets, geoms = [], [], [], []
    for s in samples:
        if with_alt:
            x, alt, geom = prepare_both(s.image, spec)
            alts.append(alt)
        else:
            x, geom = prepare(s.image, spec)
        images.append(x)
        targets.append(prepare_labels(s.target, geom))
        geoms.append(geom)

    def stack(arrays):
        return torch.from_numpy(np.stack(arrays)[:, None].astype(np.float32))

    return PreparedSet(stack(images), stack(alts) if with_alt else None,
                       torch.from_numpy(np.stack(targets).astype(np.uint8)), geoms, list(samples))
