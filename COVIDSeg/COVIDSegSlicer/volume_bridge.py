"""MRML images <-> COVIDSegLib volumes and numpy masks.

MRML volumes keep RAS geometry (``IJKToRAS``) and voxel arrays indexed (k, j, i); COVIDSegLib's
``Volume`` keeps SimpleITK's LPS geometry with the same (z, y, x) = (k, j, i) array order. So the
voxels stay where they are and only the geometry changes: LPS = diag(-1, -1, 1) x RAS.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from COVIDSegLib.errors import InputError
from COVIDSegLib.io.orientation import geometry_from_ras, ras_affine
from COVIDSegLib.volume import HU, Volume


def ijk_to_ras(volume_node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix (without parent transforms)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(matrix[r, c]))
    return out


def image_array(image) -> np.ndarray:
    """A (k, j, i) numpy view of a single-component vtkImageData's voxels."""
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])


def _check_shape(volume_node, array: np.ndarray) -> None:
    shape = tuple(volume_node.GetImageData().GetDimensions()[::-1])
    if tuple(np.shape(array)) != shape:
        raise ValueError(f"array shape {np.shape(array)} differs from the volume's {shape}")


def volume_from_node(volume_node, space: str = HU) -> Volume:
    """A COVIDSegLib ``Volume`` (LPS geometry, own copy of the voxels) of an MRML scalar volume.

    The node is only read. Parent transforms are not applied: results go back onto the node's
    own grid and under the same transform (see ``segmentation_output``).
    """
    name = volume_node.GetName()
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None or 0 in image.GetDimensions():
        raise InputError(f"Volume '{name}' has no voxels.")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"Volume '{name}' has {image.GetNumberOfScalarComponents()} components; "
                         "a single-component CT volume is needed.")
    return Volume(image_array(image).copy(), space=space, meta={"source": name, "format": "mrml"},
                  **geometry_from_ras(ijk_to_ras(volume_node)))


def labels_volume(volume_node, array: np.ndarray) -> Volume:
    """A label map ``Volume`` on a volume node's grid (the array is not copied)."""
    _check_shape(volume_node, array)
    return Volume(np.asarray(array), **geometry_from_ras(ijk_to_ras(volume_node)))


ras_matrix = ras_affine  # the 4x4 IJK-to-RAS matrix of a Volume (inverse of volume_from_node's geometry)


def oriented_image(array: np.ndarray, ijk_to_ras_matrix: np.ndarray) -> "slicer.vtkOrientedImageData":
    """A uint8 vtkOrientedImageData holding a copy of a (k, j, i) array on the given grid."""
    array = np.asarray(array)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image_array(image)[:] = array.astype(np.uint8, copy=False)
    image.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras_matrix))
    return image


def image_on_volume_grid(volume_node, array: np.ndarray) -> "slicer.vtkOrientedImageData":
    """``oriented_image`` on a volume node's grid; the array must have the node's (k, j, i) shape."""
    _check_shape(volume_node, array)
    return oriented_image(array, ijk_to_ras(volume_node))


def resample_to(image, reference) -> "slicer.vtkOrientedImageData":
    """``image`` resampled (nearest neighbour) onto ``reference``'s grid and extent."""
    out = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            image, reference, out, False):
        raise RuntimeError("resampling a labelmap failed")
    return out


def volume_grid(volume_node) -> "slicer.vtkOrientedImageData":
    """An image without voxels carrying a volume node's grid (extent and IJK-to-RAS)."""
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(volume_node.GetImageData().GetExtent())
    reference.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras(volume_node)))
    return reference


def segment_mask_on(segmentation_node, segment_id: str, reference) -> np.ndarray:
    """Boolean (k, j, i) mask of one segment on ``reference``'s grid (an oriented image)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise KeyError(f"no segment '{segment_id}'")
    layer = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, layer, False)
    extent = layer.GetExtent()
    if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:  # empty segment
        dims = [reference.GetExtent()[2 * a + 1] - reference.GetExtent()[2 * a] + 1 for a in range(3)]
        return np.zeros(dims[::-1], bool)
    return image_array(resample_to(layer, reference)) == segment.GetLabelValue()


def segment_mask(segmentation_node, segment_id: str, volume_node) -> np.ndarray:
    """Boolean (k, j, i) mask of one segment on a volume node's grid."""
    return segment_mask_on(segmentation_node, segment_id, volume_grid(volume_node))
