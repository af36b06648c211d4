"""The "COVIDSeg AI" effect: preview masks and the write path through Slicer's headless Segment
Editor logic (editable area, overwrite modes, undo/redo) on the real MRML libraries."""
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core (the test extra) is not installed")

from COVIDSegLib.lungs.segment import segment_lungs  # noqa: E402
from COVIDSegSlicer import effect_logic as E  # noqa: E402
from COVIDSegSlicer.processing import ProcessOptions, SceneProcessor  # noqa: E402
from COVIDSegSlicer.segmentation_output import labels_to_segmentation  # noqa: E402
from COVIDSegSlicer.volume_bridge import image_on_volume_grid, ras_matrix, segment_mask, volume_from_node  # noqa: E402

from slicer_fakes import FakeSegmenter, factory_of, fake_labels  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"
needs_editor_logic = pytest.mark.skipif(not E.editor_logic_available(),
                                        reason="this slicer-core has no vtkSlicerSegmentEditorLogic")


def test_class_mask_of_labels_and_of_probabilities():
    labels = np.array([[[0, 1, 2, 3, 4]]], np.uint8)
    assert E.class_mask(labels, "infection").tolist() == [[[False, False, False, True, True]]]
    assert E.class_mask(labels, "ggo").tolist() == [[[False, False, False, True, False]]]
    assert E.class_mask(labels, "consolidation").tolist() == [[[False, False, False, False, True]]]
    assert E.class_mask(labels, "lungs").tolist() == [[[False, True, True, True, True]]]
    probabilities = np.array([[[0.2, 0.5, 0.7]]], np.float32)
    assert E.class_mask(probabilities, "ggo").tolist() == [[[False, True, True]]]
    assert E.class_mask(probabilities, "ggo", threshold=0.6).tolist() == [[[False, False, True]]]
    with pytest.raises(ValueError, match="probability"):
        E.class_mask(labels, "ggo", threshold=0.6)
    with pytest.raises(ValueError, match="unknown class"):
        E.class_mask(labels, "lung")


def test_scope_mask_and_the_slice_under_a_ras_point(slicer_env):
    assert E.scope_mask((3, 2, 2), "volume").all()
    only = E.scope_mask((3, 2, 2), "slice", 1)
    assert only[1].all() and not only[0].any() and not only[2].any()
    with pytest.raises(ValueError):
        E.scope_mask((3, 2, 2), "slice", 3)
    node = slicer_env.load_volume(SAMPLE, "chest")  # IJKToRAS diag(-0.625, -0.625, 1), origin 0
    assert E.slice_index_at(node, (-100.0, -50.0, 1.2)) == 1
    assert E.slice_index_at(node, (0.0, 0.0, 0.3)) == 0


def test_one_slice_keeps_its_place_in_space(slicer_env):
    volume = volume_from_node(slicer_env.load_volume(SAMPLE, "chest"))
    top = E.one_slice(volume, 1)
    assert top.shape == (1, 512, 512) and np.array_equal(top.array[0], volume.array[1])
    assert np.allclose(ras_matrix(top) @ [5, 7, 0, 1], ras_matrix(volume) @ [5, 7, 1, 1])


def test_preview_of_the_current_slice_runs_the_model_on_that_slice_only(slicer_env):
    volume = volume_from_node(slicer_env.load_volume(SAMPLE, "chest"))
    segmenter = FakeSegmenter()
    processor = SceneProcessor(slicer_env.scene, slicer_env.segmentations, factory_of(segmenter))
    mask = E.compute_preview(processor, volume, ProcessOptions(), "ggo", "slice", 1)
    assert segmenter.calls == [(1, 512, 512)]
    expected = fake_labels(segment_lungs(E.one_slice(volume, 1)).array)[0] == 3
    assert not mask[0].any() and np.array_equal(mask[1], expected) and expected.any()
    whole = E.compute_preview(processor, volume, ProcessOptions(), "lungs", "volume")
    assert whole.shape == volume.shape and whole[0].any() and whole[1].any()


@pytest.fixture
def editor(slicer_env):
    """The sample CT, COVIDSeg's segments of the fake labels plus an empty "AI" segment, and a
    Segment Editor logic on them."""
    node = slicer_env.load_volume(SAMPLE, "chest")
    volume = volume_from_node(node)
    labels = volume.with_array(fake_labels(segment_lungs(volume).array))
    segmentation = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "multiclass")
    segmentation.GetSegmentation().AddEmptySegment("ai", "AI")
    editor_node = slicer_env.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    logic = E.create_editor_logic(slicer_env.scene, slicer_env.app_logic, editor_node, segmentation, node)
    editor_node.SetSelectedSegmentID("ai")
    # a box across both lungs and the mediastinum in both slices
    box = np.zeros(volume.shape, bool)
    box[:, 300:380, 100:420] = True
    return node, segmentation, editor_node, logic, box


def _mask(segmentation, segment_id, node):
    return segment_mask(segmentation, segment_id, node)


@needs_editor_logic
def test_apply_inside_a_segment_writes_only_the_editable_area(editor):
    node, segmentation, editor_node, logic, box = editor
    editor_node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    editor_node.SetMaskSegmentID("left_lung")
    left_before = _mask(segmentation, "left_lung", node)
    assert E.apply_mask_to_segment(logic, image_on_volume_grid(node, box), "add")
    written = _mask(segmentation, "ai", node)
    assert written.any() and np.array_equal(written, box & left_before)


@needs_editor_logic
@pytest.mark.parametrize("overwrite, right_lung_keeps_box", [
    (slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments, False),
    (slicer.vtkMRMLSegmentEditorNode.OverwriteNone, True),
])
def test_overwrite_mode_decides_whether_other_segments_lose_voxels(editor, overwrite, right_lung_keeps_box):
    node, segmentation, editor_node, logic, box = editor
    editor_node.SetOverwriteMode(overwrite)
    right_before = _mask(segmentation, "right_lung", node)
    assert (right_before & box).any()
    E.apply_mask_to_segment(logic, image_on_volume_grid(node, box), "add")
    right_after = _mask(segmentation, "right_lung", node)
    assert np.array_equal(_mask(segmentation, "ai", node), box)
    assert np.array_equal(right_after, right_before if right_lung_keeps_box else right_before & ~box)


@needs_editor_logic
def test_undo_and_redo_restore_each_state(editor):
    node, segmentation, _, logic, box = editor
    E.apply_mask_to_segment(logic, image_on_volume_grid(node, box), "add")
    assert logic.CanUndo()
    logic.Undo()
    assert not _mask(segmentation, "ai", node).any()
    assert logic.CanRedo()
    logic.Redo()
    assert np.array_equal(_mask(segmentation, "ai", node), box)


@needs_editor_logic
def test_replace_in_the_current_slice_keeps_the_other_slices_and_remove_erases(editor):
    node, segmentation, _, logic, box = editor
    E.apply_mask_to_segment(logic, image_on_volume_grid(node, box), "add")
    small = np.zeros_like(box)
    small[:, 340:350, 240:250] = True
    scope = E.scope_mask(box.shape, "slice", 1)
    E.apply_mask_to_segment(logic, image_on_volume_grid(node, small), "replace",
                            scope_image=image_on_volume_grid(node, scope))
    after = _mask(segmentation, "ai", node)
    assert np.array_equal(after[0], box[0]) and np.array_equal(after[1], small[1])
    E.apply_mask_to_segment(logic, image_on_volume_grid(node, box & scope), "remove")
    assert np.array_equal(_mask(segmentation, "ai", node), box & ~scope)
    logic.Undo()
    assert np.array_equal(_mask(segmentation, "ai", node), after)


def test_without_editor_logic_the_write_path_declines(editor):
    node, _, _, _, box = editor
    assert E.apply_mask_to_segment(None, image_on_volume_grid(node, box)) is False


@needs_editor_logic
def test_apply_needs_a_selected_segment(editor):
    node, _, editor_node, logic, box = editor
    editor_node.SetSelectedSegmentID(None)
    with pytest.raises(ValueError, match="select"):
        E.apply_mask_to_segment(logic, image_on_volume_grid(node, box))


def test_threshold_preview_uses_the_real_model_probabilities(slicer_env):
    """With a threshold the preview is the class probability cut there (within the segmented
    lungs and findings): a lower threshold gives a superset, 0.5 is close to the model's own
    decision, and the training-free lungs refuse a threshold."""
    from COVIDSegLib.bundle import load_bundle
    from COVIDSegLib.inference.segmenter import Segmenter
    volume = volume_from_node(slicer_env.load_volume(SAMPLE, "chest"))
    made = []
    processor = SceneProcessor(slicer_env.scene, slicer_env.segmentations,
                               lambda model, device, options: made.append(options) or Segmenter(load_bundle(model), options))
    options = ProcessOptions(model="covidseg_binary", device="cpu")
    decided = E.compute_preview(processor, volume, options, "infection", "volume")
    low, mid, high = (E.compute_preview(processor, volume, options, "infection", "volume", threshold=t)
                      for t in (0.2, 0.5, 0.8))
    assert made[0].keep_probabilities is False and made[-1].keep_probabilities is True
    assert (low >= mid).all() and (mid >= high).all() and low.sum() > high.sum()
    # 0.5 is the 2-class argmax, before small islands are dropped: nearly the decided mask
    assert (decided <= mid).all() and mid.sum() - decided.sum() <= 0.05 * max(decided.sum(), 1)
    with pytest.raises(ValueError, match="no probability"):
        E.compute_preview(processor, volume, options, "lungs", "volume", threshold=0.5)
