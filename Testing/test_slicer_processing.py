"""SceneProcessor: one volume, batches over scene volumes and folders, cancel and failures leaving
the scene as it was (real MRML libraries; a fast fake model except in the one real-model test)."""
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer", reason="PyPI slicer-core (the test extra) is not installed")

import slicer  # noqa: E402

from COVIDSegLib.bundle import load_bundle  # noqa: E402
from COVIDSegLib.errors import Cancelled  # noqa: E402
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter  # noqa: E402
from COVIDSegLib.io.files import read_volume  # noqa: E402
from COVIDSegLib.progress import CancelToken, no_progress  # noqa: E402
from COVIDSegLib.quantify.measure import quantify  # noqa: E402
from COVIDSegSlicer import processing as P  # noqa: E402
from COVIDSegSlicer.segmentation_output import labels_from_segmentation  # noqa: E402
from COVIDSegSlicer.volume_bridge import ras_matrix, segment_mask, volume_from_node  # noqa: E402

from slicer_fakes import FakeSegmenter, factory_of  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"


def _processor(env, segmenter=None, made=None):
    return P.SceneProcessor(env.scene, env.segmentations, factory_of(segmenter or FakeSegmenter(), made))


def _sh_items(env):
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(env.scene)
    return sh.GetNumberOfItems()


def _cancel_on_progress(token):
    return lambda done, total, message="": token.cancel()


def test_process_volume_writes_segmentation_and_table_of_the_report(slicer_env):
    node = slicer_env.load_volume(SAMPLE, "chest")
    made = []
    processor = _processor(slicer_env, made=made)
    options = P.ProcessOptions(model="fake", device="cpu", tta=True, min_component_mm3=5.0)
    segmentation, table = processor.process_volume(node, options)
    labels = labels_from_segmentation(segmentation, node)
    report = quantify(labels)
    assert table.GetTable().GetValue(0, 3).ToDouble() == pytest.approx(report.both_lung_ml)
    assert table.GetAttribute("COVIDSeg.grade") == report.grade
    assert segmentation.GetAttribute("COVIDSeg.model") == "fake-model"
    assert made[0][:2] == ("fake", "cpu") and made[0][2].tta_flip and made[0][2].min_component_mm3 == 5.0
    processor.process_volume(node, options)
    assert len(made) == 1  # the segmenter is reused while the options stay


def test_classes_limit_segments_but_not_the_quantification(slicer_env):
    node = slicer_env.load_volume(SAMPLE, "chest")
    processor = _processor(slicer_env)
    result = processor.compute(volume_from_node(node), P.ProcessOptions(classes=("ggo",)))
    segmentation, table = processor.apply_result(node, result)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert result.report.both_lung_ml > 0
    assert table.GetTable().GetValue(0, 3).ToDouble() == pytest.approx(result.report.both_lung_ml)


def test_cancel_leaves_the_scene_unchanged(slicer_env):
    node = slicer_env.load_volume(SAMPLE, "chest")
    before, items = slicer_env.node_ids(), _sh_items(slicer_env)
    token = CancelToken()
    with pytest.raises(Cancelled):
        _processor(slicer_env).process_volume(node, P.ProcessOptions(), _cancel_on_progress(token), token)
    assert slicer_env.node_ids() == before and _sh_items(slicer_env) == items


def test_a_failure_while_writing_removes_new_nodes_and_restores_the_given_segmentation(slicer_env, monkeypatch):
    node = slicer_env.load_volume(SAMPLE, "chest")
    processor = _processor(slicer_env)
    existing, _ = processor.process_volume(node, P.ProcessOptions())
    old = {i: segment_mask(existing, i, node) for i in ("left_lung", "ground_glass_opacity")}
    before, items = slicer_env.node_ids(), _sh_items(slicer_env)
    result = processor.compute(volume_from_node(node), P.ProcessOptions(classes=("lungs",)))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(P, "report_to_table", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        processor.apply_result(node, result)  # a new segmentation node
    with pytest.raises(RuntimeError, match="disk full"):
        processor.apply_result(node, result, segmentation_node=existing, show3d=True)
    assert slicer_env.node_ids() == before and _sh_items(slicer_env) == items
    assert existing.GetSegmentation().GetNumberOfSegments() == 4
    assert all(np.array_equal(segment_mask(existing, i, node), mask) for i, mask in old.items())


def test_batch_over_scene_volumes_reports_each_and_goes_on_after_a_failure(slicer_env):
    a, b = slicer_env.load_volume(SAMPLE, "a"), slicer_env.load_volume(SAMPLE, "b")
    flat = slicer_env.add_volume(np.zeros((2, 8, 8), np.int16), np.eye(4), "flat")  # constant: unusable
    seen = []
    rows = _processor(slicer_env).process_scene_volumes(
        [a, flat, b], P.ProcessOptions(), lambda done, total, message="": seen.append((done, total, message)))
    assert [(r.name, r.status) for r in rows] == [("a", P.OK), ("flat", P.FAILED), ("b", P.OK)]
    assert "constant" in rows[1].message and rows[0].grade == "not gradable"  # the 2-slice sample: partial
    assert rows[0].involvement_percent == pytest.approx(rows[2].involvement_percent)
    for row in (rows[0], rows[2]):
        assert all(slicer_env.scene.GetNodeByID(i) is not None for i in row.outputs)
    assert seen[-1][:2] == (300, 300) and all(d <= t for d, t, _ in seen)
    assert any(m.startswith("b (3/3)") for _, _, m in seen)
    table = P.summary_to_table(slicer_env.scene, rows)
    assert [table.GetTable().GetValue(r, 1).ToString() for r in range(3)] == ["ok", "failed", "ok"]


class _FailsFirst(FakeSegmenter):
    def segment(self, volume, progress=no_progress, cancel=None):
        if not self.calls:
            self.calls.append(volume.shape)
            raise RuntimeError("boom")
        return super().segment(volume, progress, cancel)


def test_an_unexpected_error_fails_only_its_input(slicer_env):
    a, b = slicer_env.load_volume(SAMPLE, "a"), slicer_env.load_volume(SAMPLE, "b")
    before = slicer_env.node_ids()
    rows = _processor(slicer_env, _FailsFirst()).process_scene_volumes([a, b], P.ProcessOptions())
    assert [(r.status, r.message) for r in rows] == [(P.FAILED, "internal error (RuntimeError): boom"), (P.OK, "")]
    assert slicer_env.node_ids() - before == set(rows[1].outputs) | _owned(slicer_env, rows[1].outputs)


def test_batch_cancel_marks_the_rest_cancelled_and_adds_nothing_for_them(slicer_env):
    a, b, c = (slicer_env.load_volume(SAMPLE, n) for n in "abc")
    token = CancelToken()
    segmenter = FakeSegmenter()
    processor = _processor(slicer_env, segmenter)

    def progress(done, total, message=""):
        if message.startswith("b ("):
            token.cancel()
    before = slicer_env.node_ids()
    rows = processor.process_scene_volumes([a, b, c], P.ProcessOptions(), progress, token)
    assert [r.status for r in rows] == [P.OK, P.CANCELLED, P.CANCELLED]
    assert rows[2].message == "not started" and len(segmenter.calls) == 2
    assert slicer_env.node_ids() - before == set(rows[0].outputs) | _owned(slicer_env, rows[0].outputs)


def _owned(env, ids):
    """Display/storage nodes of the given nodes."""
    out = set()
    for node_id in ids:
        node = env.scene.GetNodeByID(node_id)
        for getter in ("GetDisplayNodeID", "GetStorageNodeID"):
            if hasattr(node, getter) and getattr(node, getter)():
                out.add(getattr(node, getter)())
    return out


def test_process_folder_uses_the_library_batch_job(slicer_env, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("one", "two"):
        shutil.copy(SAMPLE, inputs / f"{name}.nii.gz")
    (inputs / "broken.nii.gz").write_bytes(b"not an image")
    paths = [inputs / "one.nii.gz", inputs / "broken.nii.gz", inputs / "two.nii.gz"]
    processor = _processor(slicer_env)
    before = slicer_env.node_ids()
    rows = processor.process_folder(paths, tmp_path / "out", P.ProcessOptions(), overlay=False)
    assert [(r.name, r.status) for r in rows] == [("one", P.OK), ("broken", P.FAILED), ("two", P.OK)]
    labels = read_volume(tmp_path / "out" / "one.labels.nii.gz")
    report = quantify(labels)
    assert rows[0].grade == report.grade and str(tmp_path / "out" / "one.labels.nii.gz") in rows[0].outputs
    assert rows[0].involvement_percent == pytest.approx(report.both_involvement_percent, abs=0.05)
    assert report.total_severity_score is None and math.isnan(rows[0].total_score)  # partial: no score
    assert "Cannot read 'broken.nii.gz'" in rows[1].message
    assert slicer_env.node_ids() == before  # no MRML
    cohort = (tmp_path / "out" / "cohort.csv").read_text()  # the CLI's cohort table, same engine
    assert [line.split(",")[:3] for line in cohort.splitlines()[1:]] == [
        ["broken", str(paths[1]), "failed"], ["one", str(paths[0]), "done"], ["two", str(paths[2]), "done"]]
    assert "one.report.html" in (tmp_path / "out" / "index.html").read_text()
    again = processor.process_folder(paths[:1], tmp_path / "out", P.ProcessOptions(), overlay=False)
    assert again[0].status == P.SKIPPED
    token = CancelToken()
    cancelled = processor.process_folder(paths[2:], tmp_path / "out2", P.ProcessOptions(),
                                         _cancel_on_progress(token), token, overlay=False)
    assert cancelled[0].status == P.CANCELLED and not (tmp_path / "out2" / "two.labels.nii.gz").exists()


def test_real_model_in_the_scene_equals_the_library_on_the_file(slicer_env):
    node = slicer_env.load_volume(SAMPLE, "chest")
    processor = P.SceneProcessor(slicer_env.scene, slicer_env.segmentations)  # the real default factory
    options = P.ProcessOptions(model="covidseg_multiclass", device="cpu")
    segmentation, table = processor.process_volume(node, options)
    direct = Segmenter(load_bundle("covidseg_multiclass"), InferenceOptions(device="cpu")).segment(read_volume(SAMPLE))
    assert np.array_equal(labels_from_segmentation(segmentation, node).array, direct.labels.array)
    assert table.GetTable().GetValue(0, 3).ToDouble() == pytest.approx(quantify(direct.labels).both_lung_ml)
    left, right = (np.argwhere(segment_mask(segmentation, i, node)).mean(axis=0) for i in ("left_lung", "right_lung"))
    assert left[2] > right[2]  # IJKToRAS x = -0.625 i: the patient's left has the larger i


def test_real_dicom_ct_loaded_by_slicer_matches_the_library_and_keeps_its_sides(slicer_env, shared_data):
    dicom = shared_data / "chest-ct-dicom"
    if not dicom.is_dir():
        pytest.skip(f"{dicom} is not available")
    node = slicer_env.load_volume(dicom / "0.dcm", "dicom ct")  # Slicer's own series reader
    volume, direct = volume_from_node(node), read_volume(dicom)
    assert volume.same_geometry(direct, tol=1e-5) and np.array_equal(volume.array, direct.array)
    segmentation, _ = _processor(slicer_env).process_volume(node, P.ProcessOptions())
    left, right = (segment_mask(segmentation, i, node) for i in ("left_lung", "right_lung"))
    ras = np.array([ras_matrix(volume) @ np.append(np.argwhere(m).mean(axis=0)[::-1], 1) for m in (left, right)])
    assert left.any() and right.any() and ras[0, 0] < ras[1, 0]  # RAS +x is the patient's right
