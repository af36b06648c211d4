"""Test-only: a fast stand-in for COVIDSegLib's Segmenter with known, side-correct output.

Its lungs are the library's real training-free lungs (so left/right come from the image, not
from the fake); its "findings" are the anterior half of each lung (by the array's j index):
ground-glass opacity in the left lung, consolidation in the right one (a binary task: both 3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from COVIDSegLib import labels as L
from COVIDSegLib.inference.segmenter import Segmentation
from COVIDSegLib.lungs.segment import segment_lungs
from COVIDSegLib.progress import CancelToken, ProgressCallback, check, no_progress
from COVIDSegLib.volume import Volume


@dataclass
class FakeBundle:
    task: str = "multiclass"
    name: str = "fake-model"

    @property
    def card(self) -> dict:
        return {"task": self.task, "sha256": "0" * 64}


def fake_labels(lungs: np.ndarray, task: str = "multiclass") -> np.ndarray:
    """Lung labels with the anterior half (lower j) of each lung turned into a finding."""
    labels = lungs.astype(np.uint8).copy()
    for side, finding in ((L.LEFT_LUNG, L.GGO), (L.RIGHT_LUNG, L.GGO if task == "binary" else L.CONSOLIDATION)):
        k, j, i = np.nonzero(lungs == side)
        if j.size:
            front = j < np.median(j)
            labels[k[front], j[front], i[front]] = finding
    return labels


@dataclass
class FakeSegmenter:
    task: str = "multiclass"
    calls: List[tuple] = field(default_factory=list)  # shapes of the volumes segmented

    lung_method: str = "training-free (classic)"
    class_method: str = "model"
    postprocessing: dict = field(default_factory=dict)

    @property
    def bundle(self) -> FakeBundle:
        return FakeBundle(self.task)

    def lung_method_for(self, n_slices: int) -> str:
        return self.lung_method

    def segment(self, volume: Volume, progress: ProgressCallback = no_progress,
                cancel: Optional[CancelToken] = None) -> Segmentation:
        self.calls.append(volume.shape)
        progress(0, 2, "lungs")
        check(cancel)
        lungs = segment_lungs(volume)
        progress(1, 2, "findings")
        check(cancel)
        labels = fake_labels(lungs.array, self.task)
        progress(2, 2, "done")
        return Segmentation(volume.with_array(labels), lungs, volume.shape[0], "cpu")


def factory_of(segmenter: FakeSegmenter, made: Optional[list] = None):
    """A segmenter_factory returning ``segmenter``; records its arguments in ``made``."""
    def factory(model, device, options):
        if made is not None:
            made.append((model, device, options))
        return segmenter
    return factory
