"""Overlay PNGs: axial slices in radiological display with label contours."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io.files import atomic_path  # noqa: E402
from ..io.orientation import to_lps  # noqa: E402
from ..labels import COLORS, NAMES  # noqa: E402
from ..preprocess.intensity import MEDSEG_WINDOW_HI_HU, MEDSEG_WINDOW_LO_HU, resolve_calibration, to_hu  # noqa: E402
from ..volume import Volume  # noqa: E402


def pick_slices(labels: np.ndarray, count: int) -> Sequence[int]:
    """Up to ``count`` evenly spaced slices through the labelled z-range (all slices if few)."""
    zs = np.flatnonzero(labels.any(axis=(1, 2)))
    if zs.size == 0:
        zs = np.arange(labels.shape[0])
    picks = np.linspace(zs[0], zs[-1], num=min(count, zs.size)).round().astype(int)
    return sorted(set(int(z) for z in picks))


def save_overlay(image: Volume, labels: Volume, path: Path, count: int = 9, title: str = "",
                 names: Mapping[int, str] = NAMES, calibration: str = "auto") -> Path:
    """Montage of axial slices (lung window) with one contour colour per label value. Only the
    shown slices of ``image`` are converted to HU (``calibration``, as ``to_hu`` takes it)."""
    lab = to_lps(labels.array, labels)
    zs = pick_slices(lab, count)
    shown = to_lps(image.array, image)[zs]
    img = dict(zip(zs, to_hu(Volume(shown, space=image.space), resolve_calibration(image, calibration)).array))
    cols = int(np.ceil(np.sqrt(len(zs))))
    rows = int(np.ceil(len(zs) / cols))
    aspect = shown.shape[1] / max(shown.shape[2], 1)  # panel height / width, so no blank bands
    width = max(4 * cols, 8)  # wide enough for the legend and title even with one slice
    fig, axes = plt.subplots(rows, cols, figsize=(width, rows * 4 * aspect + 0.9), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, z in zip(axes.ravel(), zs):
        ax.imshow(img[z], cmap="gray", vmin=MEDSEG_WINDOW_LO_HU, vmax=MEDSEG_WINDOW_HI_HU, interpolation="nearest")
        for value, color in COLORS.items():
            outline = lab[z] == value
            if outline.any():
                ax.contour(outline, levels=[0.5], colors=[color], linewidths=1.2)
        ax.set_title(f"slice {z}", fontsize=9)
        ax.text(0.01, 0.5, "R", color="w", transform=ax.transAxes, fontsize=9)
        ax.text(0.97, 0.5, "L", color="w", transform=ax.transAxes, fontsize=9)
    present = [v for v in COLORS if (lab == v).any()]
    handles = [plt.Line2D([], [], color=COLORS[v], label=names[v]) for v in present]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png", bbox_inches="tight")
    plt.close(fig)
    return path
