"""Label map -> MRML segmentation node: segments, geometry, sides, hierarchy, seg.nrrd (real MRML)."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer", reason="PyPI slicer-core (the test extra) is not installed")

import slicer  # noqa: E402

from COVIDSegLib.lungs.segment import segment_lungs  # noqa: E402
from COVIDSegSlicer.segmentation_output import labels_from_segmentation, labels_to_segmentation  # noqa: E402
from COVIDSegSlicer.segments import specs_for  # noqa: E402
from COVIDSegSlicer.volume_bridge import (ijk_to_ras, image_array, labels_volume, segment_mask,  # noqa: E402
                                          volume_from_node)

from chest_phantom import SPACING, chest_phantom  # noqa: E402
from slicer_fakes import fake_labels  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"
# The phantom's own grid (LPS identity) in RAS, and the same anatomy stored with i reversed.
PHANTOM_RAS = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
FLIPPED_RAS = np.array([[SPACING[0], 0, 0, -SPACING[0] * 127], [0, -SPACING[1], 0, 0],
                        [0, 0, SPACING[2], 0], [0, 0, 0, 1.0]])


@pytest.fixture
def sample(slicer_env):
    """The real 2-slice CT in the scene under a patient/study, and its fake-model labels."""
    node = slicer_env.load_volume(SAMPLE, "chest")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer_env.scene)
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient"), "study")
    sh.CreateItem(study, node)
    volume = volume_from_node(node)
    labels = volume.with_array(fake_labels(segment_lungs(volume).array))
    return node, labels, study


def _segments(node):
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]


def test_segments_have_fixed_names_colours_and_terminology(slicer_env, sample):
    node, labels, _ = sample
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "multiclass")
    specs = specs_for("multiclass")
    assert [s.GetName() for s in _segments(out)] == [s.name for s in specs]
    assert np.allclose([s.GetColor() for s in _segments(out)], [s.color for s in specs])
    assert [s.GetTerminology() for s in _segments(out)] == [s.terminology for s in specs]
    for spec in specs:
        assert np.array_equal(segment_mask(out, spec.segment_id, node), labels.array == spec.value), spec.name


def test_geometry_is_identical_to_the_volume(slicer_env, sample):
    node, labels, _ = sample
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "multiclass")
    exported = slicer_env.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer_env.segmentations.ExportAllSegmentsToLabelmapNode(
        out, exported, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    assert np.array_equal(ijk_to_ras(exported), ijk_to_ras(node))
    assert exported.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
    assert np.array_equal(image_array(exported.GetImageData()), labels.array)


@pytest.mark.parametrize("ijk_to_ras_matrix, flip", [(PHANTOM_RAS, False), (FLIPPED_RAS, True)])
def test_a_lung_on_the_patients_left_becomes_segment_left_lung(slicer_env, ijk_to_ras_matrix, flip):
    phantom = chest_phantom()
    hu = phantom.hu[:, :, ::-1] if flip else phantom.hu
    truth_left = phantom.lungs["left"][:, :, ::-1] if flip else phantom.lungs["left"]
    node = slicer_env.add_volume(hu, ijk_to_ras_matrix, "phantom")
    volume = volume_from_node(node)
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node,
                                 segment_lungs(volume), "multiclass", classes=["lungs"])
    left, right = segment_mask(out, "left_lung", node), segment_mask(out, "right_lung", node)
    assert (left & truth_left).sum() > 0.9 * truth_left.sum()
    ras_x = [(ijk_to_ras_matrix @ np.append(np.argwhere(m).mean(axis=0)[::-1], 1))[0] for m in (left, right)]
    assert ras_x[0] < ras_x[1]  # RAS +x is the patient's right


def test_all_segments_exist_even_when_empty_and_classes_limit_them(slicer_env, sample):
    node, labels, _ = sample
    lungs_only = labels.with_array(np.where(labels.array > 2, 0, labels.array).astype(np.uint8))
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, lungs_only, "multiclass")
    assert len(_segments(out)) == 4 and not segment_mask(out, "consolidation", node).any()
    few = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "binary",
                                 classes=["ggo"])
    assert [s.GetName() for s in _segments(few)] == ["Infection"]
    assert np.array_equal(segment_mask(few, "infection", node), labels.array == 3)


def test_segmentation_goes_under_the_volumes_study_with_the_volumes_transform(slicer_env, sample):
    node, labels, study = sample
    transform = slicer_env.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "multiclass")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer_env.scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(out)) == study
    assert out.GetTransformNodeID() == transform.GetID()


def test_rerun_replaces_own_segments_keeps_others_and_show3d_makes_surfaces(slicer_env, sample):
    node, labels, _ = sample
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "multiclass")
    out.GetSegmentation().AddEmptySegment("notes", "Radiologist notes")
    again = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "binary",
                                   segmentation_node=out, show3d=True)
    assert again is out
    assert [s.GetName() for s in _segments(out)] == ["Radiologist notes", "Left lung", "Right lung", "Infection"]
    surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    assert out.GetSegmentation().GetSegment("left_lung").GetRepresentation(surface).GetNumberOfPoints() > 0
    assert out.GetDisplayNode().GetPreferredDisplayRepresentationName3D() == surface


def test_seg_nrrd_round_trip_keeps_segments_voxels_and_geometry(slicer_env, sample, tmp_path):
    node, labels, _ = sample
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "multiclass")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    slicer_env.scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "chest.seg.nrrd"))
    assert storage.WriteData(out)
    loaded = slicer_env.segmentations.LoadSegmentationFromFile(str(tmp_path / "chest.seg.nrrd"), False)
    assert [(s.GetName(), s.GetTerminology()) for s in _segments(loaded)] == [
        (s.GetName(), s.GetTerminology()) for s in _segments(out)]
    assert np.array_equal(labels_from_segmentation(loaded, node).array, labels.array)


def test_labels_from_segmentation_inverts_labels_to_segmentation(slicer_env, sample):
    node, labels, _ = sample
    out = labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, labels, "multiclass")
    back = labels_from_segmentation(out, node)
    assert np.array_equal(back.array, labels.array) and back.same_geometry(labels)


def test_wrong_logic_or_geometry_is_refused(slicer_env, sample):
    node, labels, _ = sample
    unbound = slicer.vtkSlicerSegmentationsModuleLogic()
    with pytest.raises(ValueError, match="Segmentations module logic"):
        labels_to_segmentation(slicer_env.scene, unbound, node, labels, "multiclass")
    moved = labels_volume(node, labels.array)
    moved.origin = (5.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="geometry"):
        labels_to_segmentation(slicer_env.scene, slicer_env.segmentations, node, moved, "multiclass")
