"""Leaving the scene as it was when writing results fails or is cancelled."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Set

import slicer


def node_ids(scene) -> Set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


@contextmanager
def removed_on_error(scene) -> Iterator[None]:
    """On an exception, remove every node added to ``scene`` inside the block, then re-raise."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)  # made now if missing
    before = node_ids(scene)
    try:
        yield
    except BaseException:
        for node_id in node_ids(scene) - before:
            node = scene.GetNodeByID(node_id)
            if node is None:  # already removed with its owner (display/storage nodes)
                continue
            item = sh.GetItemByDataNode(node) if sh is not None else 0
            if item:
                sh.RemoveItem(item, False, False)  # the item, then its node (not left to observers)
            scene.RemoveNode(node)
        raise


@contextmanager
def restored_on_error(*nodes) -> Iterator[None]:
    """On an exception, give each existing node (``None`` skipped) back its content as it was
    before the block (e.g. the segments of a segmentation being overwritten), then re-raise."""
    backups = []
    for node in nodes:
        if node is not None:
            backup = node.CreateNodeInstance()
            backup.Copy(node)
            backups.append((node, backup))
    try:
        yield
    except BaseException:
        for node, backup in backups:
            node.Copy(backup)
        raise
