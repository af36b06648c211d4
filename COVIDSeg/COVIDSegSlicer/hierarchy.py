"""Subject-hierarchy placement of output nodes."""
from __future__ import annotations

import slicer


def place_beside(scene, node, reference_node) -> int:
    """Put ``node``'s subject-hierarchy item under the parent of ``reference_node``'s item (the
    scene when it has none), e.g. a segmentation in its CT's study, ready for DICOM-SEG export.
    Returns the item ID (0 when the scene has no subject hierarchy)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None:
        return 0
    reference = sh.GetItemByDataNode(reference_node)
    parent = sh.GetItemParent(reference) if reference else sh.GetSceneItemID()
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent)
    else:
        item = sh.CreateItem(parent, node)
    return item
