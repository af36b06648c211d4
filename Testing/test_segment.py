"""Whole-volume inference (COVIDSegLib.inference.segmenter) and `covidseg segment` with the bundled model."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from test_cli import SAMPLES, assert_one_error_line, assert_same_geometry, assert_valid_png, digest, run

from COVIDSegLib.bundle import load_bundle
from COVIDSegLib.cli.commands import main
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter
from COVIDSegLib.io.files import read_seg_nrrd, read_volume
from COVIDSegLib.io.orientation import axial_slices, from_lps, lps_view, orient_lps, to_lps
from COVIDSegLib.io.paths import stem_of
from COVIDSegLib.training.metrics import binary_metrics

CT = SAMPLES / "lungmask_chest_ct_2slices.nii.gz"
SLICE = SAMPLES / "medseg_0000.png"
MODEL = "covidseg_binary"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(load_bundle(MODEL), InferenceOptions(device="cpu", batch_size=4))


def test_labels_in_the_input_geometry(segmenter):
    volume = read_volume(CT)
    result = segmenter.segment(volume)
    assert_same_geometry(result.labels, volume)
    values = set(np.unique(result.labels.array).tolist())
    assert {1, 2} <= values <= {0, 1, 2, 3, 4}
    assert result.slices_run == 2
    lungs = np.isin(result.lungs.array, (1, 2))
    assert (np.isin(result.labels.array, (1, 2)) <= lungs).all()  # lungs only lose voxels to infection


def test_real_slice_end_to_end(segmenter):
    """medseg_0000 was a training slice: this checks the chain, not the accuracy."""
    result = segmenter.segment(read_volume(SLICE))
    truth = read_volume(SAMPLES / "medseg_0000_mask.png").array > 0
    assert binary_metrics(np.isin(result.labels.array, (3, 4)), truth)["dice"] > 0.7


def test_orientation_round_trip_and_invariance(segmenter):
    volume = read_volume(CT)
    flipped_image = sitk.Flip(volume.to_sitk(), [True, True, False])  # same anatomy, mirrored index axes
    flipped = type(volume).from_sitk(flipped_image)
    assert not np.array_equal(flipped.array, volume.array)
    np.testing.assert_array_equal(to_lps(flipped.array, flipped), to_lps(volume.array, volume))
    np.testing.assert_array_equal(from_lps(to_lps(flipped.array, flipped), flipped), flipped.array)
    a, b = segmenter.segment(volume).labels, segmenter.segment(flipped).labels
    np.testing.assert_array_equal(to_lps(a.array, a), to_lps(b.array, b))


def test_out_of_memory_halves_the_batch_then_falls_back(monkeypatch, segmenter):
    volume = read_volume(CT)
    expected = segmenter.segment(volume).labels.array
    real = Segmenter._forward
    calls = []

    def flaky(self, x):
        calls.append(len(x))
        if len(calls) <= 3:  # fail at batch 2 and at batch 1: the CPU fallback must take over
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(self, x)

    seg = Segmenter(load_bundle(MODEL), InferenceOptions(device="cpu", batch_size=2))
    monkeypatch.setattr(Segmenter, "_forward", flaky)
    np.testing.assert_array_equal(seg.segment(volume).labels.array, expected)
    assert calls[:3] == [2, 1, 1] and seg.batch_size == 1


def test_cli_segment_outputs_and_resume(capsys, tmp_path):
    before = digest(CT)
    rc, out, err = run(capsys, "segment", CT, "-o", tmp_path, "--model", MODEL, "-q")
    assert rc == 0, err
    stem = "lungmask_chest_ct_2slices"
    labels = read_volume(tmp_path / f"{stem}.labels.nii.gz")
    assert_same_geometry(labels, read_volume(CT))
    report = json.loads((tmp_path / f"{stem}.report.json").read_text())
    assert report["model"] == MODEL and report["grade"] == "not gradable"  # 2 mm of lung: partial coverage
    assert report["postprocessing"] == {"lung_margin_mm": 5.0, "min_component_mm3": 10.0, "min_inside_share": 0.25,
                                        "airless_inside_share": 0.5, "lesion_decision": "union",
                                        "lesion_threshold": 0.4}
    assert report["warnings"][0].startswith("not gradable: partial lung coverage, 2 mm")
    assert report["total_severity_score"] is None and set(report["density_percent"]) >= {"well_aerated_-950_-700"}
    voxel_ml = np.prod(read_volume(CT).spacing) / 1000
    assert report["both_lung_ml"] == pytest.approx(np.isin(labels.array, (1, 2, 3, 4)).sum() * voxel_ml)
    seg, names = read_seg_nrrd(tmp_path / f"{stem}.seg.nrrd")
    np.testing.assert_array_equal(seg.array, labels.array)
    assert "region,measure,value" in (tmp_path / f"{stem}.report.csv").read_text()
    html = (tmp_path / f"{stem}.report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and report["grade"] in html
    assert_valid_png(tmp_path / f"{stem}.overlay.png")
    assert digest(CT) == before
    stamp = (tmp_path / f"{stem}.labels.nii.gz").stat().st_mtime_ns
    rc, out, _ = run(capsys, "segment", CT, "-o", tmp_path, "--model", MODEL)
    assert rc == 0 and "skipped" in out
    assert (tmp_path / f"{stem}.labels.nii.gz").stat().st_mtime_ns == stamp


def test_cli_segment_batch_with_one_bad_input(capsys, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    rc, out, err = run(capsys, "segment", SLICE, bad, "-o", tmp_path / "out", "--model", MODEL, "-q")
    assert rc == 1
    assert (tmp_path / "out" / "medseg_0000.labels.nii.gz").exists()
    assert not list((tmp_path / "out").glob("broken*"))
    assert_one_error_line(err, "broken.nii.gz")


def test_cli_segment_unknown_model(capsys, tmp_path):
    rc, _, err = run(capsys, "segment", SLICE, "-o", tmp_path, "--model", "no_such_model")
    assert rc == 2
    assert_one_error_line(err, "Unknown model")
    assert not any(tmp_path.iterdir())


def test_multitask_head_skips_slices_it_calls_empty(tmp_path):
    """A multi-task model whose head is forced to 'infection' everywhere vs 'empty' everywhere."""
    from COVIDSegLib.bundle import save_bundle
    from COVIDSegLib.models.registry import build_model
    config = {"name": "resnet34_scse_mt", "width": 8, "in_channels": 1, "out_channels": 2}
    model = build_model(config)
    with torch.no_grad():
        last = model.classifier[-1]
        last.weight.zero_()
        seg_head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        seg_head.weight.zero_()
        seg_head.bias.copy_(torch.tensor([-5.0, 5.0]))  # segmentation says "infection" everywhere
    card = {"task": "binary", "architecture": {"name": config["name"], "config": config},
            "preprocessing": {"input": {"size": 64, "crop_body": True, "clahe": False}},
            "labels": {"1": {"value": 3, "name": "infection"}}}
    volume = read_volume(CT)
    found = {}
    for bias in (10.0, -10.0):
        with torch.no_grad():
            last.bias.fill_(bias)
        bundle = load_bundle(save_bundle(model, card, tmp_path, f"mt{bias:+.0f}"))
        result = Segmenter(bundle, InferenceOptions(device="cpu", empty_threshold=0.5)).segment(volume)
        found[bias] = int(np.isin(result.labels.array, (3, 4)).sum())
    assert found[10.0] > 0 and found[-10.0] == 0


@pytest.mark.parametrize("decision, threshold, expected", [("argmax", 0.4, set()), ("union", 0.4, {3}),
                                                       ("union", 0.65, set())])
def test_lesion_decision_argmax_or_union(tmp_path, decision, threshold, expected):
    """Background 0.40, GGO 0.31, consolidation 0.29 everywhere: argmax says background, the union
    of the lesion classes (0.60) says lesion unless the threshold is above 0.60, and GGO is the more
    probable of the two."""
    from COVIDSegLib.bundle import save_bundle
    from COVIDSegLib.models.registry import build_model
    config = {"name": "unet", "base": 4, "in_channels": 1, "out_channels": 3}
    model = build_model(config)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.log(torch.tensor([0.40, 0.31, 0.29])))
    card = {"task": "multiclass", "architecture": {"name": "unet", "config": config},
            "preprocessing": {"input": {"size": 64, "crop_body": True, "clahe": False}},
            "labels": {"1": {"value": 3, "name": "GGO"}, "2": {"value": 4, "name": "consolidation"}}}
    bundle = load_bundle(save_bundle(model, card, tmp_path, "fixed"))
    options = InferenceOptions(device="cpu", classes="model", decision=decision, lesion_threshold=threshold,
                               min_component_mm3=0.0, min_inside_share=0.0)
    labels = Segmenter(bundle, options).segment(read_volume(CT)).labels.array
    assert set(np.unique(labels[labels > 2])) == expected
    with pytest.raises(Exception, match="lesion decision"):
        InferenceOptions(decision="max")
    with pytest.raises(Exception, match="lesion threshold"):
        InferenceOptions(lesion_threshold=1.0)


def test_binary_model_names_label_3_infection(capsys, tmp_path):
    rc, _, err = run(capsys, "segment", SLICE, "-o", tmp_path, "--model", MODEL, "-q")
    assert rc == 0, err
    _, names = read_seg_nrrd(tmp_path / "medseg_0000.seg.nrrd")
    assert names[3] == "Infection" and names[1] == "Left lung"


def test_postprocess_margin_and_small_components(segmenter):
    """Infection outside the lungs survives within lung_margin_mm (in-plane) and is removed
    beyond it; islands under min_component_mm3 are removed. 1 mm pixels, 2 mm slices."""
    lungs = np.zeros((3, 80, 80), np.uint8)
    lungs[:, 20:60, 10:30] = 2
    infection = np.zeros_like(lungs)
    infection[1, 30:40, 25:38] = 3   # crosses the lung border, reaches 8 mm outside: kept (margin 10; 38 % inside)
    infection[1, 30:34, 45:50] = 4   # 15 mm from the lung: removed
    infection[2, 50:52, 15:17] = 3   # 4 voxels = 8 mm^3 < 10 mm^3: removed
    infection[0, 40:44, 12:15] = 3   # 12 voxels = 24 mm^3: kept
    out = segmenter._postprocess(infection, lungs, (2.0, 1.0, 1.0), 10)
    assert (out[1, 30:40, 25:38] == 3).all() and (out[0, 40:44, 12:15] == 3).all()
    assert not out[1, 30:34, 45:50].any() and not out[2].any()
    assert infection[1, 30:34, 45:50].all()  # the input is not modified


def test_postprocess_removes_components_mostly_outside_the_lungs(segmenter):
    """With min_inside_share, a 3D component with less than that share inside the lung masks goes
    (a rim along the outline), one mostly inside stays whole, margin part included."""
    lungs = np.zeros((3, 80, 80), np.uint8)
    lungs[:, 20:60, 10:30] = 1
    infection = np.zeros_like(lungs)
    infection[:, 30:40, 24:34] = 4   # 6 of 10 columns inside the lungs on every slice: 60 % inside
    infection[:, 50:56, 28:36] = 3   # 2 of 8 columns inside: 25 % inside
    default = segmenter.options
    assert default.min_inside_share == 0.25
    try:
        segmenter.options = dataclasses.replace(default, min_inside_share=0.5)
        out = segmenter._postprocess(infection, lungs, (2.0, 1.0, 1.0), 10)
        segmenter.options = dataclasses.replace(default, min_inside_share=0.0)
        kept = segmenter._postprocess(infection, lungs, (2.0, 1.0, 1.0), 10)  # share 0: both kept
    finally:
        segmenter.options = default
    assert (out[:, 30:40, 24:34] == 4).all()
    assert not out[:, 50:56].any()
    assert (kept[:, 50:56, 28:36] == 3).all()


def test_postprocess_removes_airless_components_mostly_outside_the_lungs(segmenter):
    """An airless component (soft tissue, under 10 % of it below -500 HU) with under half of it
    inside the lungs is diaphragm or crus, not pneumonia: removed. The same component with air
    bronchograms, or an airless one mostly inside the lungs (consolidation), stays."""
    lungs = np.zeros((3, 80, 80), np.uint8)
    lungs[:, 20:60, 10:30] = 1
    infection = np.zeros_like(lungs)
    infection[:, 30:40, 26:35] = 4   # 4 of 9 columns inside the lungs: 44 %
    infection[:, 42:48, 22:34] = 4   # 8 of 12 columns inside: 67 %
    tissue = np.full(lungs.shape, 30.0)
    bronchograms = tissue.copy()
    bronchograms[:, 30:40, 26:35:3] = -800.0  # every third column of the first one air: 33 % aerated

    def run(hu=None):
        return segmenter._postprocess(infection, lungs, (2.0, 1.0, 1.0), 10, None if hu is None else hu.__getitem__)
    default = segmenter.options
    assert default.airless_inside_share == 0.5
    airless = run(tissue)
    assert not airless[:, 30:40, 26:35].any() and (airless[:, 42:48, 22:34] == 4).all()
    assert (run(bronchograms)[:, 30:40, 26:35] == 4).all()
    assert (run()[:, 30:40, 26:35] == 4).all()  # no HU given: the rule cannot apply
    try:
        segmenter.options = dataclasses.replace(default, airless_inside_share=0.0)
        assert (run(tissue)[:, 30:40, 26:35] == 4).all()  # the rule off
    finally:
        segmenter.options = default


@pytest.mark.parametrize("seed", range(6))
def test_to_lps_views_equal_dicomorient(seed):
    """to_lps/from_lps are zero-copy views that reproduce sitk.DICOMOrient(…, "LPS") exactly,
    for axis-aligned directions with any permutation/flip and for oblique ones."""
    from COVIDSegLib.volume import Volume

    from test_preprocess import rotation
    rng = np.random.default_rng(seed)
    perm = np.eye(3)[rng.permutation(3)] * rng.choice([-1.0, 1.0], 3)
    direction = perm if seed < 3 else perm @ np.asarray(rotation(*rng.uniform(-0.3, 0.3, 3))).reshape(3, 3)
    array = rng.integers(0, 1000, (5, 6, 7)).astype(np.int16)
    volume = Volume(array, (0.7, 0.8, 2.0), (1.0, 2.0, 3.0), tuple(direction.ravel()))
    expected = sitk.GetArrayFromImage(sitk.DICOMOrient(volume.to_sitk(), "LPS"))
    lps = to_lps(array, volume)
    np.testing.assert_array_equal(lps, expected)
    assert np.shares_memory(lps, array)
    np.testing.assert_array_equal(from_lps(lps, volume), array)
    view, oriented = lps_view(volume), orient_lps(volume)  # the same, with the geometry
    assert axial_slices(volume) == expected.shape[0]
    assert np.shares_memory(view.array, array) and np.array_equal(view.array, oriented.array)
    for key in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(view, key), getattr(oriented, key), atol=1e-9)


def test_cli_batch_summary_table(capsys, tmp_path):
    """Several inputs: a summary table at the end with one row per input (done/failed/skipped),
    the severity columns from each report, and the exit code 1 when one input failed."""
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    rc, out, err = run(capsys, "segment", SLICE, bad, "-o", tmp_path / "out", "--model", MODEL)
    assert rc == 1
    table = out.splitlines()[-4:]
    assert table[0].split()[:3] == ["input", "status", "seconds"] and "grade" in table[0]
    report = json.loads((tmp_path / "out" / "medseg_0000.report.json").read_text(encoding="utf-8"))
    assert table[1].split()[:2] == ["medseg_0000.png", "done"] and report["grade"] in table[1]
    assert table[0].split()[-2:] == ["warnings", "slices"]
    assert table[1].split()[-2:] == [str(len(report["warnings"])), str(report["slices_segmented"])]
    assert table[2].split()[:2] == ["broken.png", "failed"]
    assert table[3] == "1 of 2 inputs succeeded, 1 failed"
    rc, out, _ = run(capsys, "segment", SLICE, CT, "-o", tmp_path / "out", "--model", MODEL)
    assert rc == 0 and out.splitlines()[-1] == "1 of 2 inputs succeeded, 1 skipped (outputs exist)"
    rc, out, _ = run(capsys, "segment", SLICE, CT, SLICE, "-o", tmp_path / "out", "--model", MODEL)
    assert rc == 0 and out.splitlines()[-1] == "0 of 2 inputs succeeded, 2 skipped (outputs exist)"  # a skip is no success


def test_optional_probabilities_agree_with_labels():
    """keep_probabilities returns one uint8 map per class label, in the input geometry; every
    voxel labelled infection has that class's probability >= 0.5 (2-class model: argmax).
    Without probabilities only the lungs' box is restored: the labels must be the same."""
    for path in (CT, SLICE):
        volume = read_volume(path)
        plain = Segmenter(load_bundle(MODEL), InferenceOptions(device="cpu")).segment(volume)
        assert plain.probabilities is None
        result = Segmenter(load_bundle(MODEL), InferenceOptions(device="cpu", keep_probabilities=True)).segment(volume)
        np.testing.assert_array_equal(result.labels.array, plain.labels.array)
    assert set(result.probabilities) == {3}
    p = result.probabilities[3]
    assert p.dtype == np.uint8 and p.shape == volume.shape
    infected = result.labels.array == 3
    assert infected.any() and (p[infected] >= 127).all()
    assert p[~infected].mean() < p[infected].mean()


def test_progress_counts_whole_steps_and_ends_at_its_total(segmenter):
    """Integer steps (lungs, one per slice with lung, done) and a last call of total/total."""
    seen = []
    segmenter.segment(read_volume(CT), lambda done, total, message="": seen.append((done, total)))
    assert all(isinstance(d, int) and isinstance(t, int) and 0 <= d <= t for d, t in seen)
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_outputs_never_collide_with_each_other_or_overwrite_an_input(capsys, tmp_path):
    """Refused before any work, one line, exit 2, nothing written, inputs untouched (issue 11, item 1)."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "ct.nii.gz").write_bytes(CT.read_bytes())
    rc, _, err = run(capsys, "segment", tmp_path / "a" / "ct.nii.gz", tmp_path / "b" / "ct.nii.gz",
                     "-o", tmp_path / "out", "--model", MODEL)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "would both write ct.*" in err
    assert not (tmp_path / "out").exists()
    own = tmp_path / "x.labels.nii.gz"  # an input named like one of our outputs, into its own folder
    own.write_bytes(CT.read_bytes())
    before = own.read_bytes()
    rc, _, err = run(capsys, "segment", own, "-o", tmp_path, "--model", MODEL, "--overwrite")
    assert rc == 2 and "would overwrite this input" in err and own.read_bytes() == before
    assert not (tmp_path / "x.labels.report.json").exists()


def test_report_names_the_lung_method_beside_the_per_side_figures(capsys, tmp_path):
    """`lung_method` says what found the lungs; `lungs` keeps the per-side figures (0.5.0: the
    method used to be overwritten by them)."""
    rc = main(["segment", "-q", str(CT), "-o", str(tmp_path), "--model", MODEL])
    report = json.loads((tmp_path / f"{stem_of(CT)}.report.json").read_text())
    assert rc == 0 and report["lung_method"] == "model covidseg_lungs+covidseg_lungs_256"  # the ensemble
    assert set(report["lungs"]) == {"left", "right"}


def test_a_single_slice_is_segmented_by_the_2d_lung_model(capsys, tmp_path):
    """The shipped lung model is 2.5D; its card hands one-slice inputs to ``covidseg_lungs_2d``
    (docs/LUNGS.md, 0.18.0), and the report names the network that ran."""
    rc = main(["segment", "-q", str(SLICE), "-o", str(tmp_path), "--model", MODEL])
    report = json.loads((tmp_path / f"{stem_of(SLICE)}.report.json").read_text())
    assert rc == 0 and report["lung_method"] == "model covidseg_lungs_2d"


def test_batch_size_by_device_and_network_size():
    """On a CPU, batches small enough for the caches (measured 15-40 % faster than 16); 16 on a GPU;
    an explicit size wins; the lung probabilities do not depend on the batch."""
    from COVIDSegLib.inference.predict2d import auto_batch_size
    from COVIDSegLib.lungs.lung_model import LungModel
    cards = {name: load_bundle(name).card for name in ("covidseg_multiclass", "covidseg_lungs", "covidseg_lungs_256")}
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [auto_batch_size(cpu, c) for c in cards.values()] == [8, 8, 4]
    assert {auto_batch_size(gpu, c) for c in cards.values()} == {16}
    seg = Segmenter(load_bundle("covidseg_multiclass"), InferenceOptions(device="cpu"))
    assert seg.batch_size == 8 and seg.lung_model.batch_size == 8 and seg.lung_model.members[0].batch_size == 4
    assert Segmenter(load_bundle(MODEL), InferenceOptions(device="cpu", batch_size=3)).batch_size == 3
    hu = np.repeat(read_volume(str(CT)).array, 3, axis=0)[:5].astype(np.float32)
    one = LungModel(load_bundle("covidseg_lungs"), batch_size=1).probabilities(hu, True, slice_mm=2.0)
    auto = LungModel(load_bundle("covidseg_lungs")).probabilities(hu, True, slice_mm=2.0)
    assert (one > 127).sum() > 10_000 and np.abs(one.astype(int) - auto).max() <= 1
