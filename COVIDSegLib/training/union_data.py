"""The union training set of the infection models v2 (issue 12), in one of two spaces.

``space="lung"``: every slice is brought into the space the public covid19-ct-seg slices were
published in (``lung_space``: letterbox to 256, per-slice min-max, CLAHE), so MedSeg's 8-bit
window, the covid19-ct-seg slices and real HU volumes look alike to the network.
``space="medseg8"``: MedSeg slices and the HU negatives stay in (or go to) the MedSeg 8-bit
window the v1 models use, and the covid19-ct-seg slices, which cannot be brought there (CLAHE is
not invertible), are added in their own space as extra anatomy and lesions. Targets (3 classes):

* MedSeg slices with a multi-class mask: 0 background, 1 GGO, 2 consolidation (fully labelled);
* MedSeg slices with a binary mask only, and covid19-ct-seg slices: infection pixels carry
  ``partial_loss.UNION`` ("GGO or consolidation, not known which");
* lung-free slices of HU volumes (below the lung bases): all background.

``meta``: ``group`` (patient; each MedSeg slice its own, as its patients are not recorded),
``source`` (medseg, ctseg, negative) and ``space`` (``lung`` or ``medseg8``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..preprocess.lung_space import SIZE, to_lung_space
from ..preprocess.transforms import LetterboxInfo, letterbox
from .datasets import Sample, load_ct_seg_slices, load_medseg, lung_free_slices
from .partial_loss import UNION

N_CLASSES = 3  # background, GGO, consolidation (UNION is a target value, not an output)
SPACES = ("lung", "medseg8")


def slice_in_lung_space(image: np.ndarray, target: np.ndarray) -> Tuple[np.ndarray, np.ndarray, LetterboxInfo]:
    """An 8-bit slice and its class mask in the lung space (256 px), with the letterbox back."""
    spaced, info = to_lung_space(image, is_hu=False)
    boxed, _ = letterbox(np.asarray(target, np.uint8), SIZE, order=0, pad_value=0)
    return spaced, boxed.astype(np.uint8), info


def _medseg_sample(sample: Sample, target: np.ndarray, space: str) -> Sample:
    image, target = sample.image, np.asarray(target, np.uint8)
    if space == "lung":
        image, target, _ = slice_in_lung_space(image, target)
    return Sample(f"medseg_{sample.id}", image, target, sample.source,
                  {"space": space, "group": f"medseg_{sample.id}", "source": "medseg"})


def medseg_samples(root: Path, space: str = "lung") -> List[Sample]:
    """MedSeg slices: the multi-class mask where there is one, else the binary mask as UNION."""
    multi = {s.id: s for s in load_medseg(root, "multiclass")}
    out = []
    for s in load_medseg(root, "binary"):
        target = multi[s.id].target if s.id in multi else np.where(s.target > 0, UNION, 0)
        out.append(_medseg_sample(s, target, space))
    return out


def ct_seg_samples(root: Path) -> List[Sample]:
    """covid19-ct-seg slices (already in the lung space): infection as UNION, grouped by patient."""
    out = []
    for s in load_ct_seg_slices(root, "binary"):
        out.append(Sample(f"ctseg_{s.id}", s.image, np.where(s.target > 0, UNION, 0).astype(np.uint8),
                          s.source, {"space": "lung", "group": f"ctseg_{s.meta['group']}", "source": "ctseg"}))
    return out


def union_samples(medseg: Path, ct_seg: Optional[Path], negatives: Iterable[str] = (),
                  repeat_negatives: int = 1, space: str = "lung") -> List[Sample]:
    """MedSeg + covid19-ct-seg (None: MedSeg alone, for ablations) + lung-free negatives."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    out = medseg_samples(medseg, space) + (ct_seg_samples(ct_seg) if ct_seg else [])
    for spec in negatives:
        out += lung_free_slices(spec, repeat_negatives, space)
    return out


def thin_and_weight(samples: Sequence[Sample], ct_seg_every: int = 1, repeat_medseg: int = 1) -> List[Sample]:
    """Every Nth covid19-ct-seg slice (neighbours are near copies), MedSeg seen K times per epoch."""
    kept, seen = [], {}
    for s in samples:
        source = s.meta["source"]
        if source == "ctseg":
            seen[s.meta["group"]] = n = seen.get(s.meta["group"], -1) + 1
            if n % ct_seg_every:
                continue
        if source == "medseg" and repeat_medseg > 1:
            s.meta["repeat"] = repeat_medseg
        kept.append(s)
    return kept


def rows_of(rows: Sequence[dict], source: str) -> List[dict]:
    """CV rows (``id`` prefixed by source) of one source, e.g. the MedSeg slices the targets use."""
    prefix = {"medseg": "medseg_", "ctseg": "ctseg_", "negative": "neg_"}[source]
    return [r for r in rows if str(r["id"]).startswith(prefix)]
