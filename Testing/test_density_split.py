"""GGO or consolidation from density (COVIDSegLib.inference.density_split) and `segment --classes density`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import SAMPLES

from COVIDSegLib.cli.commands import main
from COVIDSegLib.inference.density_split import DensitySplit, split_by_density
from COVIDSegLib.io.paths import stem_of
from COVIDSegLib.labels import CONSOLIDATION, GGO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lesions():
    """One slice, 1 mm pixels: lung at -850; a ground-glass patch (-600 HU) crossed by 2 px vessels
    (+40 HU); a consolidation (+20 HU) with a 2 px air bronchogram (-900 HU). The model called the
    whole ground glass consolidation and the whole consolidation ground glass."""
    hu = np.full((1, 80, 120), -850.0)
    ggo = np.zeros(hu.shape, bool)
    ggo[0, 20:60, 10:50] = True
    cons = np.zeros(hu.shape, bool)
    cons[0, 20:60, 70:110] = True
    hu[ggo] = -600.0
    hu[0, 20:60, 29:31] = hu[0, 39:41, 10:50] = 40.0  # vessels through the ground glass
    hu[cons] = 20.0
    hu[0, 38:40, 70:105] = -900.0  # the bronchogram
    infection = np.where(ggo, CONSOLIDATION, np.where(cons, GGO, 0)).astype(np.uint8)
    return hu, infection, ggo, cons


def test_density_decides_the_class_despite_vessels_and_bronchograms():
    hu, infection, ggo, cons = _lesions()
    calls = []
    out = split_by_density(infection, lambda z: calls.append(z) or hu[z], (1.0, 1.0))
    assert (out[ggo] == GGO).all()
    assert (out[cons] == CONSOLIDATION).all()
    assert (out[~(ggo | cons)] == 0).all()  # only infection is relabelled; no voxel joins it
    assert calls == [0]


def test_only_slices_with_infection_are_read_and_the_window_follows_the_spacing():
    hu, infection, _, _ = _lesions()
    stack = np.concatenate([np.zeros_like(infection), infection, np.zeros_like(infection)])
    calls = []
    split_by_density(stack, lambda z: calls.append(z) or hu[0], (1.0, 1.0))
    assert calls == [1]
    assert DensitySplit(median_mm=15.0).window_px((1.0, 0.7)) == (15, 21)
    assert DensitySplit(median_mm=15.0).window_px((40.0, 40.0)) == (1, 1)


def test_segment_classes_density_keeps_the_infection_and_says_so_in_the_report(tmp_path):
    ct = SAMPLES / "lungmask_chest_ct_2slices.nii.gz"
    reports, labels = {}, {}
    for classes in ("model", "density"):
        out = tmp_path / classes
        assert main(["segment", "-q", str(ct), "-o", str(out), "--classes", classes, "--no-overlay"]) == 0
        reports[classes] = json.loads((out / f"{stem_of(ct)}.report.json").read_text())
        import SimpleITK as sitk
        labels[classes] = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{stem_of(ct)}.labels.nii.gz")))
    assert reports["model"]["class_method"] == "model; lesion: GGO + consolidation at least 0.4"
    assert reports["density"]["class_method"].startswith("density")
    cohort = (tmp_path / "density" / "cohort.csv").read_text()
    assert "class_method" in cohort.splitlines()[0] and "density: in-plane 15 mm" in cohort
    infected = [np.isin(a, (GGO, CONSOLIDATION)) for a in labels.values()]
    np.testing.assert_array_equal(*infected)  # the same voxels are involved; only their class may differ
