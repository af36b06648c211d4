"""The whole `segment` chain on a real healthy HU volume: no grade, and under 1 % involvement.

``totalseg_example_ct_sm`` (healthy lung bases and upper abdomen, 3 mm): partial coverage, so
"not gradable"; the shipped models' false infection there lay in the lung margin at the
posterior bases (partial volume and dependent density). ``min_inside_share`` removes it, and so
does ``airless_inside_share`` (airless components mostly outside the lungs) on its own.
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
    with_rim, rim_voxels = involvement(healthy, min_inside_share=0.0, airless_inside_share=0.0)
    _, left = involvement(healthy, airless_inside_share=0.0)
    assert with_rim.both_involvement_percent > 2.0 and rim_voxels > 100  # the rim is there without the rules
    assert left < rim_voxels / 4
    _, airless_only = involvement(healthy, min_inside_share=0.0)  # 0.16.0: the airless rule alone removes it too
    assert airless_only < rim_voxels / 4


def test_airless_tissue_at_the_bases_of_thin_slices_is_not_infection(healthy):
    """The healthy slab resampled to 1.5 mm slices. With the 2D lungs (``covidseg_lungs_2d``, shipped
    until 0.17.0) the infection model marks 15.9 mL of "consolidation" at the right base without the
    airless rule (11.7 % involved), soft tissue three quarters outside the lung masks; with it,
    0.30 %. The 2.5D lungs of 0.18.0 leave 0.46 % without the rule and 0.31 % with it. Never a grade."""
    import SimpleITK as sitk
    image = healthy.to_sitk()
    size = list(image.GetSize()[:2]) + [int(round(image.GetSize()[2] * image.GetSpacing()[2] / 1.5))]
    thin = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                         image.GetSpacing()[:2] + (1.5,), image.GetDirection(), -1024)
    volume = type(healthy).from_sitk(thin)
    for lungs in ("covidseg_lungs_2d", "auto"):
        off, _ = involvement(volume, airless_inside_share=0.0, lungs=lungs)
        on, _ = involvement(volume, lungs=lungs)
        assert on.both_involvement_percent <= off.both_involvement_percent and on.both_involvement_percent < 1.0
        assert on.grade == off.grade == "not gradable"  # the padding slice on top is no apex
        if lungs == "covidseg_lungs_2d":
            assert off.both_involvement_percent > 5.0  # the rule is what removes it (as in 0.16.0)
