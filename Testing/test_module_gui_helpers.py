"""The helpers of the Slicer module's user interface (COVIDSeg/COVIDSegGUI): the worker-thread
job and its polling runner (with a stand-in for Qt's timer and widgets), model import, library
path, folder inputs, and the scene batch driver on real MRML libraries (slicer-core) with a fast
fake model. ``install`` and the widget itself need Slicer and are not run here."""
import importlib
import shutil
import sys
import threading
import types
from pathlib import Path

import pytest

from COVIDSegGUI import batch, job, models, paths
from COVIDSegLib.errors import Cancelled, CovidSegError, InputError
from COVIDSegLib.io.paths import folder_inputs

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "Resources" / "Models"
SAMPLE = ROOT / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"


# ---------------------------------------------------------------------------- job
def test_job_reports_progress_and_result():
    release = threading.Event()

    def work(progress, cancel):
        progress(1, 4, "first")
        release.wait(5)
        return 42

    running = job.BackgroundJob(work).start()
    for _ in range(100):
        if running.progress == (1, 4, "first"):
            break
        release.wait(0.01)
    assert running.progress == (1, 4, "first") and running.fraction == 0.25 and not running.done
    release.set()
    assert running.wait(5) and running.result == 42 and running.error is None and running.elapsed > 0


def test_job_cancel_and_errors_reach_the_main_thread():
    def work(progress, cancel):
        while True:
            cancel.check()

    running = job.BackgroundJob(work).start()
    running.cancel()
    assert running.wait(5) and running.cancelled and isinstance(running.error, Cancelled)

    failing = job.BackgroundJob(lambda p, c: 1 / 0).start()
    assert failing.wait(5) and not failing.cancelled
    assert job.error_message(failing.error) == "internal error (ZeroDivisionError): division by zero"
    assert job.error_message(InputError("Bad   input\nhere")) == "Bad input here"
    assert job.error_message(MemoryError()) == "not enough memory for this image"


class _Timer:
    """Stands in for qt.QTimer: the test fires ``timeout`` itself."""

    def __init__(self):
        self.active, self.timeout = False, None

    def setInterval(self, ms):
        pass

    def connect(self, signal, slot):
        self.timeout = slot

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


class _Widget:
    """Stands in for the progress bar and the status label."""
    value, text, visible = 0, "", False

    def setRange(self, low, high):
        self.range = (low, high)

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False


def test_runner_polls_progress_and_reports_the_end_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "qt", types.SimpleNamespace(QTimer=_Timer))
    runner = importlib.reload(importlib.import_module("COVIDSegGUI.runner"))
    bar, label, finished = _Widget(), _Widget(), []
    jobs = runner.JobRunner(bar, label, yieldSeconds=0)
    release = threading.Event()

    def work(progress, cancel):
        progress(1, 2, "half")
        release.wait(5)
        return "result"

    jobs.start(work, "Test", finished.append)
    with pytest.raises(RuntimeError):
        jobs.start(work, "Again", finished.append)  # one job at a time
    for _ in range(500):
        jobs._timer.timeout()
        if "half" in label.text:
            break
    assert jobs.running and bar.visible and bar.value == 500 and label.text.startswith("Test: half")
    release.set()
    jobs.job.wait(5)
    jobs._timer.timeout()
    assert not jobs.running and not jobs._timer.active and not bar.visible
    assert [j.result for j in finished] == ["result"]
    jobs._timer.timeout()  # a late tick does nothing
    assert len(finished) == 1

    jobs.start(lambda p, c: release.wait(5), "Dropped", finished.append)
    jobs.cleanup()  # e.g. the scene closes: cancelled, the callback never runs
    assert not jobs.running and jobs._timer.active is False and len(finished) == 1


def test_format_elapsed():
    assert [job.format_elapsed(s) for s in (0, 61.9, 3725)] == ["0:00", "1:01", "1:02:05"]


# ---------------------------------------------------------------------------- models
def test_import_bundle_copies_a_checked_bundle(tmp_path):
    user = tmp_path / "user"
    assert models.import_bundle(BUNDLED / "covidseg_binary.safetensors", user) == "covidseg_binary"
    assert sorted(p.name for p in user.iterdir()) == ["covidseg_binary.json", "covidseg_binary.safetensors"]
    with pytest.raises(models.ModelExistsError):
        models.import_bundle(BUNDLED / "covidseg_binary.json", user)
    assert models.import_bundle(BUNDLED / "covidseg_binary.json", user, overwrite=True) == "covidseg_binary"
    assert models.import_bundle(user / "covidseg_binary.json", user) == "covidseg_binary"  # already there


def test_import_bundle_refuses_altered_weights(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(BUNDLED / "covidseg_binary.json", source)
    weights = source / "covidseg_binary.safetensors"
    shutil.copy(BUNDLED / "covidseg_binary.safetensors", weights)
    with open(weights, "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    with pytest.raises(CovidSegError, match="SHA-256"):
        models.import_bundle(source / "covidseg_binary.json", tmp_path / "user")
    assert not (tmp_path / "user").exists()


def test_model_choices_and_description():
    bundles, note = models.model_choices("covidseg_multiclass")
    names = [b["name"] for b in bundles]
    assert {"covidseg_binary", "covidseg_multiclass"} <= set(names) and note == ""
    assert "covidseg_lungs" not in names  # the lung model is not an infection model
    text = models.describe(next(b for b in bundles if b["name"] == "covidseg_multiclass"))
    assert "multiclass" in text and "bundled" in text
    assert models.describe({"name": "x"}) == ""


# ---------------------------------------------------------------------------- paths
def test_library_root_in_source_and_built_layouts(tmp_path):
    assert paths.library_root(ROOT / "COVIDSeg") == ROOT  # source: the repository root
    built = tmp_path / "qt-scripted-modules"
    (built / "COVIDSegLib").mkdir(parents=True)
    (built / "COVIDSegLib" / "__init__.py").write_text("")
    assert paths.library_root(built) == built  # built: the module folder itself
    assert paths.library_root(tmp_path / "elsewhere") is None
    assert paths.ensure_library_importable()


# ---------------------------------------------------------------------------- folders
def test_folder_inputs(tmp_path):
    for name in ("b.nii.gz", "a.nrrd", "c.png", "a.labels.nii.gz", "a.seg.nrrd", "a.overlay.png",
                 "a.report.json", ".hidden.nii"):
        (tmp_path / name).write_text("")
    (tmp_path / "series1").mkdir()
    assert [p.name for p in folder_inputs(tmp_path)] == ["a.nrrd", "b.nii.gz", "c.png", "series1"]
    dicom = tmp_path / "series1"
    (dicom / "IM0001").write_text("")
    assert folder_inputs(dicom) == [dicom]  # a folder of DICOM files is one input


# ---------------------------------------------------------------------------- scene batch
def _run(scene_batch):
    """What the widget does: next volume, model in a worker thread, result on this thread."""
    while (step := scene_batch.next_work()) is not None:
        _, work = step
        finished = job.BackgroundJob(work).start()
        assert finished.wait(60)
        scene_batch.finish(finished)
    return scene_batch.rows


def test_scene_batch_runs_each_volume_and_records_failures(slicer_env):
    from COVIDSegSlicer import processing as P

    from slicer_fakes import FakeSegmenter, factory_of

    good = slicer_env.load_volume(SAMPLE, "chest")
    empty = slicer_env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")
    processor = P.SceneProcessor(slicer_env.scene, slicer_env.segmentations, factory_of(FakeSegmenter()))
    options = P.ProcessOptions(model="fake", device="cpu")
    rows = _run(batch.SceneBatch(processor, [good, empty, good], options))
    assert [(r.name, r.status) for r in rows] == [("chest", P.OK), ("no voxels", P.FAILED), ("chest", P.OK)]
    assert "no voxels" in rows[1].message
    segmentation = slicer_env.scene.GetNodeByID(rows[0].outputs[0])
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 4
    table = P.summary_to_table(slicer_env.scene, rows)
    assert table.GetNumberOfRows() == 3


def test_scene_batch_cancel_leaves_the_rest_unstarted_and_the_scene_unchanged(slicer_env):
    from COVIDSegSlicer import processing as P

    from slicer_fakes import FakeSegmenter, factory_of

    nodes = [slicer_env.load_volume(SAMPLE, f"chest{i}") for i in range(3)]
    processor = P.SceneProcessor(slicer_env.scene, slicer_env.segmentations, factory_of(FakeSegmenter()))
    scene_batch = batch.SceneBatch(processor, nodes, P.ProcessOptions(model="fake", device="cpu"))
    before = slicer_env.node_ids()
    _, work = scene_batch.next_work()
    cancelled = job.BackgroundJob(work)
    cancelled.cancel()  # before it starts: the model's first check raises Cancelled
    cancelled.start().wait(60)
    scene_batch.finish(cancelled)
    assert scene_batch.next_work() is None
    assert [(r.name, r.status, r.message) for r in scene_batch.rows] == [
        ("chest0", P.CANCELLED, ""), ("chest1", P.CANCELLED, "not started"), ("chest2", P.CANCELLED, "not started")]
    assert slicer_env.node_ids() == before


def test_scene_batch_apply_failure_is_one_failed_row(slicer_env):
    from COVIDSegSlicer import processing as P

    from slicer_fakes import FakeSegmenter, factory_of

    node = slicer_env.load_volume(SAMPLE, "chest")
    processor = P.SceneProcessor(slicer_env.scene, slicer_env.segmentations, factory_of(FakeSegmenter()))

    def broken_apply(*args, **kwargs):
        raise InputError("cannot write")
    processor.apply_result = broken_apply
    rows = _run(batch.SceneBatch(processor, [node], P.ProcessOptions(model="fake", device="cpu")))
    assert [(r.status, r.message) for r in rows] == [(P.FAILED, "cannot write")]

