"""A COVIDSegLib label map as an MRML segmentation node, and back.

All segments of the chosen classes are created, also those with no voxel: a radiologist then
sees at once that, e.g., no consolidation was found, and can paint into the empty segment.
The segments share one labelmap layer on the volume's exact grid (reference geometry = the
volume), so nothing is resampled and the label values stay those of DESIGN.md.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import slicer

from COVIDSegLib.volume import Volume

from .hierarchy import place_beside
from .segments import SegmentSpec, specs_for
from .volume_bridge import ijk_to_ras, image_on_volume_grid, labels_volume, ras_matrix, segment_mask

TASK_ATTRIBUTE = "COVIDSeg.task"
# Every segment ID COVIDSeg writes (both tasks): the ones a re-run replaces.
OWN_SEGMENTS = {s.segment_id: s for task in ("multiclass", "binary") for s in specs_for(task)}


def _check_inputs(scene, segmentations_logic, volume_node, labels: Volume) -> None:
    bound = segmentations_logic.GetMRMLScene() if segmentations_logic is not None else None
    if bound is None or bound.GetAddressAsString("") != scene.GetAddressAsString(""):  # same C++ scene
        # SetMRMLScene on the Segmentations logic registers the converter rules that
        # segment creation needs; without it Slicer fails with a cryptic message later.
        raise ValueError("the Segmentations module logic is not set up on this scene")
    if not np.allclose(ras_matrix(labels), ijk_to_ras(volume_node), atol=1e-4):
        raise ValueError(f"the label map's geometry differs from volume '{volume_node.GetName()}'")


def _new_segment(spec: SegmentSpec, layer) -> "slicer.vtkSegment":
    segment = slicer.vtkSegment()
    segment.SetName(spec.name)
    segment.SetColor(*spec.color)
    segment.SetLabelValue(spec.value)
    segment.SetTag(segment.GetTerminologyEntryTagName(), spec.terminology)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName(), layer)
    return segment


def set_show3d(segmentation_node, show3d: bool) -> None:
    """Create (and show in 3D) or drop the closed-surface representation."""
    surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    segmentation = segmentation_node.GetSegmentation()
    if show3d:
        segmentation.CreateRepresentation(surface)
        display = segmentation_node.GetDisplayNode()
        if display is not None:
            display.SetPreferredDisplayRepresentationName3D(surface)
    elif segmentation.GetSourceRepresentationName() != surface:
        segmentation.RemoveRepresentation(surface)


def labels_to_segmentation(scene, segmentations_logic, volume_node, labels: Volume, task: str,
                           segmentation_node=None, show3d: bool = False,
                           classes: Optional[Iterable[str]] = None, name: Optional[str] = None):
    """Write ``labels`` (uint8 0..4 on ``volume_node``'s grid) as segments of ``task``'s
    classes (all, or those named in ``classes``) into ``segmentation_node`` (replacing the
    segments COVIDSeg wrote there before, keeping any other) or into a new node, placed beside
    the volume in the subject hierarchy. Returns the segmentation node."""
    _check_inputs(scene, segmentations_logic, volume_node, labels)
    specs = specs_for(task, classes)
    array = np.asarray(labels.array)
    layer = image_on_volume_grid(volume_node, np.where(np.isin(array, [s.value for s in specs]), array, 0))
    node = segmentation_node or scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} COVIDSeg")
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    was_modifying = node.StartModify()
    try:
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
        segmentation = node.GetSegmentation()
        for segment_id in OWN_SEGMENTS:
            if segmentation.GetSegment(segment_id) is not None:
                segmentation.RemoveSegment(segment_id)
        for spec in specs:
            segmentation.AddSegment(_new_segment(spec, layer), spec.segment_id)
        set_show3d(node, show3d)
        node.SetAttribute(TASK_ATTRIBUTE, task)
    finally:
        node.EndModify(was_modifying)
    place_beside(scene, node, volume_node)
    return node


def labels_from_segmentation(segmentation_node, volume_node) -> Volume:
    """The label map (values of DESIGN.md) of COVIDSeg's segments on the volume's grid, e.g. to
    quantify again after manual edits. Lungs first, findings on top, as the library composes."""
    dims = volume_node.GetImageData().GetDimensions()
    out = np.zeros(dims[::-1], np.uint8)
    segmentation = segmentation_node.GetSegmentation()
    for segment_id, spec in sorted(OWN_SEGMENTS.items(), key=lambda item: item[1].value):
        if segmentation.GetSegment(segment_id) is not None:
            out[segment_mask(segmentation_node, segment_id, volume_node)] = spec.value
    return labels_volume(volume_node, out)
