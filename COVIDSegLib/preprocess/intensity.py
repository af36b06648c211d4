"""Intensity spaces: Hounsfield units vs the 8-bit windowed MedSeg images, and the mapping.

The MedSeg slices were published as 8-bit images windowed from HU. From the tissue peaks of the
52 slices (air outside the body, subcutaneous fat, soft tissue; scripts/derive_medseg_mapping.py,
docs/INTENSITY.md) the window is linear, v = 255 * (HU - LO) / (HI - LO), clipped to 0..255,
with LO/HI below. Every model trained on the 8-bit slices sees HU volumes only through
``hu_to_medseg8``; every HU method sees 8-bit slices only through ``medseg8_to_hu``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import IntensityError
from ..volume import HU, MEDSEG8, Volume

# Fitted window of the MedSeg 8-bit images (docs/INTENSITY.md): 0 -> LO HU, 255 -> HI HU.
MEDSEG_WINDOW_LO_HU = -1350.0
MEDSEG_WINDOW_HI_HU = 146.0
# Per-slice windows scatter by about this much (10th-90th percentile); augmentation must cover it.
MEDSEG_WINDOW_UNCERTAINTY_HU = 40.0


def hu_to_medseg8(hu: np.ndarray) -> np.ndarray:
    """HU -> MedSeg 8-bit intensities (float32, clipped to 0..255, not rounded)."""
    scale = 255.0 / (MEDSEG_WINDOW_HI_HU - MEDSEG_WINDOW_LO_HU)
    out = np.subtract(np.asarray(hu, np.float32), MEDSEG_WINDOW_LO_HU, dtype=np.float32)  # one new array
    out *= scale
    return np.clip(out, 0.0, 255.0, out=out)


def medseg8_to_hu(values: np.ndarray) -> np.ndarray:
    """MedSeg 8-bit -> HU (float32). Saturated 0/255 map to the window ends."""
    scale = (MEDSEG_WINDOW_HI_HU - MEDSEG_WINDOW_LO_HU) / 255.0
    return np.asarray(values, np.float32) * scale + MEDSEG_WINDOW_LO_HU


def parse_calibration(text: str) -> Tuple[str, Optional[Tuple[float, float]]]:
    """Parse a declared intensity calibration: 'auto', 'hu', 'medseg8' or 'linear:SLOPE,INTERCEPT'
    (HU = SLOPE * value + INTERCEPT, e.g. 'linear:1,-1024' for unsigned CT without rescale)."""
    text = text.strip().lower()
    if text in ("auto", "hu", MEDSEG8):
        return text, None
    if text.startswith("linear:"):
        try:
            slope, intercept = (float(p) for p in text[7:].split(","))
        except ValueError:
            raise IntensityError(f"Bad calibration '{text}': expected linear:SLOPE,INTERCEPT") from None
        if not np.isfinite(slope) or slope <= 0 or not np.isfinite(intercept):
            raise IntensityError(f"Bad calibration '{text}': slope must be positive and finite")
        return "linear", (slope, intercept)
    raise IntensityError(f"Unknown intensity calibration '{text}': use auto, hu, medseg8 or linear:SLOPE,INTERCEPT")


def _share(a: np.ndarray, lo: float, hi: float) -> float:
    return float(np.count_nonzero((a >= lo) & (a <= hi))) / max(a.size, 1)


def _smoothed_histogram(values: np.ndarray, rng: Tuple[float, float],
                        bin_width: float) -> Tuple[np.ndarray, np.ndarray]:
    """Histogram of ``values`` in ``bin_width`` bins over ``rng``, smoothed over 3 bins; its edges."""
    hist, edges = np.histogram(values, bins=np.arange(rng[0], rng[1] + bin_width, bin_width))
    return np.convolve(hist, np.ones(3) / 3.0, mode="same"), edges


def _has_peak(a: np.ndarray, peak: Tuple[float, float], span: Tuple[float, float], bin_width: float) -> bool:
    """A histogram peak in ``peak`` at least twice the median bin of ``span`` (noise has none)."""
    smooth, edges = _smoothed_histogram(a, span, bin_width)
    centres = (edges[:-1] + edges[1:]) / 2
    inside = (centres >= peak[0]) & (centres <= peak[1])
    return bool(inside.any() and smooth[inside].max() >= 2.0 * max(np.median(smooth), 1.0))


def looks_hu(sample: np.ndarray) -> bool:
    """Air/lung voxels in [-1100, -700] and a fat/soft-tissue peak in [-200, 100]."""
    return _share(sample, -1100, -700) >= 0.01 and _has_peak(sample, (-200, 100), (-1100, 300), 10)


def looks_medseg8(sample: np.ndarray) -> bool:
    """Integers in 0..255, lung/air pixels in 30..140 and a fat/soft-tissue peak in 190..250."""
    if sample.min() < 0 or sample.max() > 255 or not np.all(np.mod(sample, 1) == 0):
        return False
    return _share(sample, 30, 140) >= 0.01 and _has_peak(sample, (190, 250), (1, 255), 1)


def _sample(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    return a.ravel()[:: max(1, a.size // 2_000_000)].astype(np.float32)


def _refuse(sample: np.ndarray, claimed: str = "") -> IntensityError:
    p = np.percentile(sample, [1, 50, 99])
    what = f"do not look like {claimed}" if claimed else "are neither Hounsfield units nor 8-bit MedSeg"
    return IntensityError(
        f"Intensities {what} (range {sample.min():g}..{sample.max():g}, 1/50/99th percentiles "
        f"{p[0]:g}/{p[1]:g}/{p[2]:g}); declare them with --intensity hu|medseg8|linear:SLOPE,INTERCEPT"
    )


def detect_space(array: np.ndarray) -> str:
    """Return HU or MEDSEG8 from the histogram, or raise IntensityError (never a guess)."""
    sample = _sample(array)
    if looks_hu(sample):
        return HU
    if looks_medseg8(sample):
        return MEDSEG8
    raise _refuse(sample)


def _auto_space(volume: Volume) -> str:
    """The space ``auto`` means: detected for a volume; a slice's space is declared on reading
    (``read_volume``'s ``slice_space``) and only checked (IntensityError when it is wrong)."""
    if not volume.is_slice:
        return detect_space(volume.array)
    sample = _sample(volume.array)
    if not (looks_medseg8 if volume.space == MEDSEG8 else looks_hu)(sample):
        raise _refuse(sample, "8-bit MedSeg" if volume.space == MEDSEG8 else "Hounsfield units")
    return volume.space


def to_hu(volume: Volume, calibration: str = "auto") -> Volume:
    """The volume in HU (float32), through the detected or declared calibration."""
    kind, coeffs = parse_calibration(calibration)
    if kind == "linear":
        return volume.with_array(np.asarray(volume.array, np.float32) * coeffs[0] + coeffs[1], space=HU)
    space = _auto_space(volume) if kind == "auto" else kind
    if space == MEDSEG8:
        return volume.with_array(medseg8_to_hu(volume.array), space=HU)
    return volume.with_array(np.asarray(volume.array, np.float32), space=HU)


def resolve_calibration(volume: Volume, calibration: str = "auto") -> str:
    """The explicit calibration ('hu', 'medseg8' or 'linear:…') ``to_hu`` applies to this
    volume: detect once, then convert parts of it (chunks, a resampled copy) the same way."""
    kind, _ = parse_calibration(calibration)
    if kind != "auto":
        return calibration
    return MEDSEG8 if _auto_space(volume) == MEDSEG8 else "hu"


def to_medseg8(volume: Volume, calibration: str = "auto") -> Volume:
    """The volume in the MedSeg 8-bit space (float32 0..255), the space the models were trained in."""
    if volume.space == MEDSEG8 and calibration in ("auto", MEDSEG8):
        return volume.with_array(np.asarray(volume.array, np.float32))
    hu = to_hu(volume, calibration)
    return hu.with_array(hu_to_medseg8(hu.array), space=MEDSEG8)


def tissue_peaks(
    image: np.ndarray,
    body_threshold: float,
    ranges: Dict[str, Tuple[float, float]],
    bin_width: float,
) -> Dict[str, float]:
    """Histogram peaks: ``ranges['air']`` outside the body, every other range inside it.

    The body is the largest connected component above ``body_threshold`` with holes filled per
    slice. A peak is a local maximum strictly inside its range; none gives NaN.
    """
    img = np.asarray(image, np.float32)
    img3 = img[None] if img.ndim == 2 else img
    body = sitk.GetImageFromArray((img3 > body_threshold).astype(np.uint8))
    body = sitk.RelabelComponent(sitk.ConnectedComponent(body), sortByObjectSize=True) == 1
    filled = np.stack([sitk.GetArrayFromImage(sitk.BinaryFillhole(body[:, :, z])) for z in range(img3.shape[0])])
    inside, outside = img3[filled > 0], img3[filled == 0]
    return {name: _mode(outside if name == "air" else inside, rng, bin_width) for name, rng in ranges.items()}


def _mode(values: np.ndarray, rng: Tuple[float, float], bin_width: float) -> float:
    """Histogram mode in ``rng`` after light smoothing (3 bins); NaN unless a true interior peak."""
    smooth, edges = _smoothed_histogram(values, rng, bin_width)
    if not smooth.any():  # no value in range (every bin counts in its own smoothed bin)
        return float("nan")
    i = int(np.argmax(smooth))
    if i < 2 or i > len(smooth) - 3:
        return float("nan")
    return float((edges[i] + edges[i + 1]) / 2.0)
