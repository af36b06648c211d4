"""The whole `segment` chain on a real healthy HU volume: no grade, and under 1 % involvement.

``totalseg_example_ct_sm`` (healthy lung bases and upper abdomen, 3 mm): partial coverage, so
"not gradable"; the shipped models' false infection there lay in the lung margin at the
posterior bases (partial volume and dependent density). ``min_inside_share`` removes it.
"""
from __future__ import annotations

import numpy as np
import pytest

from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter
from COVIDSegLib.io.files import read_volume
from COVIDSegLib.quantify.measure import quantify


@pytest.fixture(scope="module")
def healthy():
    from conftest import SHARED_DATA
    path = SHARED_DATA / "hu-volumes" / "totalseg_example_ct_sm.nii.gz"
    if not path.is_file():
        pytest.skip(f"real data file {path} is not available")
    return read_volume(path)


def involvement(volume, **options) -> tuple:
    seg = Segmenter.load("covidseg_multiclass", InferenceOptions(device="cpu", **options)).segment(volume)
    report = quantify(seg.labels, volume)
    outside = np.isin(seg.labels.array, (3, 4)) & (seg.lungs.array == 0)
    return report, int(outside.sum())


def test_healthy_bases_are_not_graded_and_under_one_percent(healthy):
    report, _ = involvement(healthy)
    assert report.grade == "not gradable"  # the apex is not in the scan
    assert report.both_involvement_percent < 1.0
    # the lung's partial-volume rim is left out of the density figures: no false disagreement
    assert report.density_percent["well_aerated_-950_-700"] > 80.0
    assert not any(w.startswith("density") for w in report.warnings)


def test_the_margin_rim_is_what_the_inside_share_removes(healthy):
    with_rim, rim_voxels = involvement(healthy, min_inside_share=0.0)
    _, left = involvement(healthy)
    assert with_rim.both_involvement_percent > 2.0 and rim_voxels > 100  # the rim is there without the rule
    assert left < rim_voxels / 4
