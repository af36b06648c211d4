"""The data preparation of scripts/semi_supervised_cv.py: slice choice, orientation, histogram matching."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from semi_supervised_cv import match_histogram, read_crop, unlabeled_slices  # noqa: E402


def test_every_nth_slice_in_numeric_order_per_volume(tmp_path):
    for volume in ("Data-1_coronacases_org_001", "Data-1_radiopaedia_org_x_1-dcm"):
        for number in (1, 2, 3, 10, 11, 100):
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / f"{volume}_{number}.jpg")
    names = [p.stem for p in unlabeled_slices(tmp_path, every=2)]
    assert names == ["Data-1_coronacases_org_001_1", "Data-1_coronacases_org_001_3", "Data-1_coronacases_org_001_11",
                     "Data-1_radiopaedia_org_x_1-dcm_1", "Data-1_radiopaedia_org_x_1-dcm_3",
                     "Data-1_radiopaedia_org_x_1-dcm_11"]


def test_crops_come_back_transposed_and_coronacases_flipped(tmp_path):
    stored = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4) * 10
    for name in ("Data-1_coronacases_org_001_5.png", "Data-1_radiopaedia_org_x_1-dcm_5.png"):
        Image.fromarray(stored).save(tmp_path / name)  # PNG: lossless, unlike the real JPEGs
    assert np.array_equal(read_crop(tmp_path / "Data-1_radiopaedia_org_x_1-dcm_5.png"), stored.T)
    assert np.array_equal(read_crop(tmp_path / "Data-1_coronacases_org_001_5.png"), stored.T[::-1])


def test_histogram_matching_moves_a_window_onto_the_reference():
    rng = np.random.default_rng(0)
    tissue = rng.choice([20, 100], size=(64, 64), p=[0.6, 0.4]) + rng.normal(0, 3, (64, 64))  # narrow window
    reference = rng.choice([60, 230], size=20000, p=[0.6, 0.4]) + rng.normal(0, 3, 20000)    # MedSeg-like
    matched = match_histogram(np.clip(tissue, 0, 255), np.clip(reference, 0, 255))
    assert matched.dtype == np.uint8
    dark, bright = matched[tissue < 60], matched[tissue >= 60]
    assert abs(np.median(dark) - 60) < 10 and abs(np.median(bright) - 230) < 10
    assert np.all(np.diff([np.median(matched[(tissue >= lo) & (tissue < lo + 20)])
                           for lo in (0, 80)]) > 0)  # monotone: order kept
