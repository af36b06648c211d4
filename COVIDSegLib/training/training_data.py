"""Samples -> tensors at the network's input size, ready for batches (all in memory: slices are small).

With context (``InputSpec.context_mm`` > 0) a batch's inputs are three channels: the slice below, the
slice, the slice above, found by each sample's ``meta["volume"]`` and ``meta["z"]`` (the slice
itself where there is none). The training data's slice spacing is not known (PNG slices), so
training draws neighbours 1 to ``CONTEXT_OFFSETS`` slices away, swaps below and above at random
(either storage order) and, with ``CONTEXT_DROP``, gives the slice itself as both neighbours (single
slices, the ends of a volume).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..preprocess.slice_prep import InputSpec, SliceGeometry, prepare, prepare_both, prepare_labels
from .datasets import Sample

CONTEXT_OFFSETS = 3
CONTEXT_DROP = 0.2


@dataclass
class PreparedSet:
    """``images`` (N, 1, S, S) float32; ``images_alt`` the other CLAHE variant (or None);
    ``targets`` (N, S, S) uint8 class indices; the original samples for full-size evaluation;
    ``neighbours`` (N, 2, CONTEXT_OFFSETS): index of the slice k + 1 below / above (None: no context)."""

    images: torch.Tensor
    images_alt: Optional[torch.Tensor]
    targets: torch.Tensor
    geometries: List[SliceGeometry]
    samples: List[Sample]
    neighbours: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, index: torch.Tensor, use_alt: Optional[torch.Tensor] = None,
              gen: Optional[torch.Generator] = None):
        """(images, targets) of the samples ``index``; ``use_alt`` (bool per sample) swaps in the
        other CLAHE variant; ``gen``: random neighbours (training), else the next slices."""
        if self.neighbours is None:
            x = self._pick(index, use_alt)
        else:
            x = torch.cat([self._pick(i, use_alt) for i in self._context(index, gen)], dim=1)
        return x, self.targets[index].long()

    def inputs(self) -> torch.Tensor:
        """Every sample's network input, neighbours the next slices (evaluation)."""
        return self.images if self.neighbours is None else self.batch(torch.arange(len(self)))[0]

    def _pick(self, index: torch.Tensor, use_alt: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.images[index]
        if use_alt is not None and self.images_alt is not None and bool(use_alt.any()):
            x = torch.where(use_alt.view(-1, 1, 1, 1), self.images_alt[index], x)
        return x

    def _context(self, index: torch.Tensor, gen: Optional[torch.Generator]):
        n = len(index)
        if gen is None:
            offset, swap, drop = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.bool), None
        else:
            offset = torch.randint(0, self.neighbours.shape[2], (n,), generator=gen)
            swap = torch.rand(n, generator=gen) < 0.5
            drop = torch.rand(n, generator=gen) < CONTEXT_DROP
        below, above = self.neighbours[index, 0, offset], self.neighbours[index, 1, offset]
        below, above = torch.where(swap, above, below), torch.where(swap, below, above)
        if drop is not None:
            below, above = torch.where(drop, index, below), torch.where(drop, index, above)
        return below, index, above


def context_index(samples: Sequence[Sample], k: int = CONTEXT_OFFSETS) -> torch.Tensor:
    """(N, 2, k): index of each sample's slice j + 1 below and above in the same volume (itself
    where that slice is not in ``samples``, or the sample has no ``volume``/``z``)."""
    keys = [(s.meta["volume"], int(s.meta["z"])) if "volume" in s.meta and "z" in s.meta else None for s in samples]
    where = {}
    for i, key in enumerate(keys):
        if key is not None:
            where.setdefault(key, i)
    out = torch.arange(len(samples)).view(-1, 1, 1).repeat(1, 2, k)
    for i, key in enumerate(keys):
        for j in range(k if key is not None else 0):
            out[i, 0, j] = where.get((key[0], key[1] - j - 1), i)
            out[i, 1, j] = where.get((key[0], key[1] + j + 1), i)
    return out


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
                       torch.from_numpy(np.stack(targets).astype(np.uint8)), geoms, list(samples),
                       context_index(samples) if spec.context_mm > 0 else None)
