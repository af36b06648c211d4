"""The "COVIDSeg AI" Segment Editor effect without its Qt class: preview masks and the write path.

Preview: the model runs on the current slice or the whole source volume (``compute_preview``,
worker-thread safe) and one class of its label map becomes a boolean mask. Apply: the mask is
written into the selected segment through the Segment Editor's modifier labelmap and
``ModifySegmentByLabelmap``, so the editable area (e.g. inside the lungs), the editable
intensity range, the overwrite mode and Undo/Redo behave as with the built-in effects. The Qt
effect does this with ``scriptedEffect.modifySelectedSegmentByLabelmap``; ``apply_mask_to_segment``
is the same write without Qt (scripts, tests) through ``vtkSlicerSegmentEditorLogic``, which
exists from Slicer 5.9 (without it, it returns False). Both fill the modifier with ``fill_modifier``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import slicer

from COVIDSegLib import labels as L
from COVIDSegLib.progress import CancelToken, ProgressCallback, no_progress
from COVIDSegLib.volume import Volume

from .volume_bridge import ijk_to_ras, image_array, resample_to, segment_mask_on

# The effect's classes -> label values; "lungs" includes the findings inside them (DESIGN.md).
EFFECT_CLASSES = {
    "infection": (L.GGO, L.CONSOLIDATION),
    "ggo": (L.GGO,),
    "consolidation": (L.CONSOLIDATION,),
    "lungs": (L.LEFT_LUNG, L.RIGHT_LUNG, L.GGO, L.CONSOLIDATION),
}
SCOPES = ("slice", "volume")
APPLY_MODES = ("replace", "add", "remove")


def class_mask(labels_array: np.ndarray, cls: str, threshold: Optional[float] = None) -> np.ndarray:
    """Boolean mask of ``cls`` (``EFFECT_CLASSES``). An integer array is a label map (values of
    DESIGN.md), already decided, so a ``threshold`` is an error there; a floating-point array
    is that class's probability map, cut at ``threshold`` (default 0.5)."""
    if cls not in EFFECT_CLASSES:
        raise ValueError(f"unknown class '{cls}'; choose from {', '.join(EFFECT_CLASSES)}")
    array = np.asarray(labels_array)
    if np.issubdtype(array.dtype, np.floating):
        return array >= (0.5 if threshold is None else threshold)
    if threshold is not None:
        raise ValueError("a threshold applies to probability maps, not to a label map")
    return np.isin(array, EFFECT_CLASSES[cls])


def scope_mask(shape, scope: str, slice_index: Optional[int] = None) -> np.ndarray:
    """Boolean (k, j, i) mask of the region a preview covers: one K slice or everything."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope '{scope}'; choose from {', '.join(SCOPES)}")
    if scope == "volume":
        return np.ones(shape, bool)
    if slice_index is None or not 0 <= slice_index < shape[0]:
        raise ValueError(f"slice index {slice_index} outside 0..{shape[0] - 1}")
    mask = np.zeros(shape, bool)
    mask[slice_index] = True
    return mask


def slice_index_at(volume_node, ras) -> int:
    """K index of the volume's slice that contains the RAS point (e.g. a slice view's centre)."""
    ijk = np.linalg.solve(ijk_to_ras(volume_node), np.append(np.asarray(ras, float), 1.0))
    return int(round(ijk[2]))


def one_slice(volume: Volume, slice_index: int) -> Volume:
    """The K slice ``slice_index`` as a one-slice volume at its place in space."""
    offset = volume.direction_matrix[:, 2] * volume.spacing[2] * slice_index
    return Volume(volume.array[slice_index:slice_index + 1].copy(), volume.spacing,
                  tuple((np.asarray(volume.origin) + offset).tolist()), volume.direction, volume.space,
                  meta=dict(volume.meta))


def compute_preview(processor, volume: Volume, options, cls: str, scope: str, slice_index: Optional[int] = None,
                    progress: ProgressCallback = no_progress, cancel: Optional[CancelToken] = None,
                    threshold: Optional[float] = None) -> np.ndarray:
    """Run the model (``processing.SceneProcessor.compute``, no MRML) on the scope and return the
    class mask on the whole volume's grid, empty outside the scope. Without ``threshold`` the
    mask is the model's decision; with it, the class probability (summed over the class's
    labels) >= ``threshold`` within the segmented lungs and findings (the lungs themselves come
    from a training-free method and have no probability)."""
    if threshold is not None and cls == "lungs":
        raise ValueError("the lungs have no probability to threshold: choose another class or no threshold")
    region = scope_mask(volume.shape, scope, slice_index)
    source = one_slice(volume, slice_index) if scope == "slice" else volume
    if threshold is not None:
        options = dataclasses.replace(options, probabilities=True)
    result = processor.compute(source, options, progress, cancel)
    labels = result.labels.array
    if threshold is None:
        found = class_mask(labels, cls)
    else:
        maps = [result.probabilities[v] for v in EFFECT_CLASSES[cls] if v in (result.probabilities or {})]
        if not maps:
            raise ValueError(f"this model gives no probability for '{cls}'")
        probability = np.sum(maps, axis=0, dtype=np.float32) / 255.0
        found = class_mask(probability, cls, threshold) & (labels > 0)
    mask = np.zeros(volume.shape, bool)
    mask[region] = found.ravel()
    return mask


def replaced(current: np.ndarray, preview: np.ndarray, scope: np.ndarray) -> np.ndarray:
    """The segment after "replace": the preview inside the scope, unchanged outside it."""
    return np.where(scope, preview, current)


def fill_modifier(modifier, segmentation_node, segment_id: str, mask_image, mode: str = "replace",
                  scope_image=None) -> None:
    """Put ``mask_image`` (any grid) into the modifier labelmap; for "replace" with a
    ``scope_image``, the segment's current voxels are kept outside the scope."""
    new = image_array(resample_to(mask_image, modifier)) > 0
    if mode == "replace" and scope_image is not None:
        scope = image_array(resample_to(scope_image, modifier)) > 0
        new = replaced(segment_mask_on(segmentation_node, segment_id, modifier), new, scope)
    image_array(modifier)[:] = new
    modifier.Modified()


def editor_logic_available() -> bool:
    return hasattr(slicer, "vtkSlicerSegmentEditorLogic")


def create_editor_logic(scene, application_logic, segment_editor_node, segmentation_node, source_volume_node):
    """A headless Segment Editor logic on these nodes, or None when this Slicer lacks it."""
    if not editor_logic_available():
        return None
    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(application_logic)
    logic.SetSegmentEditorNode(segment_editor_node)
    logic.SetSegmentationNode(segmentation_node)
    logic.SetSourceVolumeNode(source_volume_node)
    return logic


def apply_mask_to_segment(editor_logic, mask_image, mode: str = "replace", segment_id: Optional[str] = None,
                          scope_image=None) -> bool:
    """Write ``mask_image`` (vtkOrientedImageData, nonzero = in) into the selected segment (or
    ``segment_id``) through the editor's modifier labelmap, as one undoable step.

    ``mode``: "replace" (inside ``scope_image``, default everywhere, the segment becomes the
    mask), "add" or "remove". The editor node's mask mode, intensity range and overwrite mode
    apply. Returns False when there is no Segment Editor logic (older Slicer)."""
    if editor_logic is None or not editor_logic_available():
        return False
    if mode not in APPLY_MODES:
        raise ValueError(f"unknown mode '{mode}'; choose from {', '.join(APPLY_MODES)}")
    editor_node = editor_logic.GetSegmentEditorNode()
    segmentation_node = editor_node.GetSegmentationNode()
    segment_id = segment_id or editor_node.GetSelectedSegmentID()
    if not segment_id or segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError("select the segment to write into")
    if not editor_logic.ResetModifierLabelmapToDefault():
        raise RuntimeError("the Segment Editor has no geometry: select a source volume")
    modifier = editor_logic.GetModifierLabelmap()
    fill_modifier(modifier, segmentation_node, segment_id, mask_image, mode, scope_image)
    logic_class = slicer.vtkSlicerSegmentEditorLogic
    operation = {"replace": logic_class.ModificationModeSet, "add": logic_class.ModificationModeAdd,
                 "remove": logic_class.ModificationModeRemove}[mode]
    editor_logic.SaveStateForUndo()
    editor_logic.ModifySegmentByLabelmap(segmentation_node, segment_id, modifier, operation, True, False)
    return True
