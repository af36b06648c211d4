"""MRML volume <-> COVIDSegLib Volume: geometry (RAS vs LPS), voxels, masks (real MRML libraries)."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer", reason="PyPI slicer-core (the test extra) is not installed")

from COVIDSegLib.errors import InputError  # noqa: E402
from COVIDSegLib.io.files import read_volume  # noqa: E402
from COVIDSegSlicer.volume_bridge import (ijk_to_ras, image_array, labels_volume, ras_matrix,  # noqa: E402
                                          segment_mask, volume_from_node)

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"
OBLIQUE = np.array([[-0.6, 0.3, 0.0, 12.5],   # rotated about S, spacing 0.67/0.67/2, RAS
                    [-0.3, -0.6, 0.0, -40.0],
                    [0.0, 0.0, 2.0, 100.0],
                    [0.0, 0.0, 0.0, 1.0]])


def test_sample_loaded_by_slicer_equals_the_library_reading_of_the_same_file(slicer_env):
    node = slicer_env.load_volume(SAMPLE, "ct")
    volume, direct = volume_from_node(node), read_volume(SAMPLE)
    assert np.array_equal(volume.array, direct.array)
    assert np.allclose(volume.spacing, direct.spacing) and np.allclose(volume.origin, direct.origin)
    assert np.allclose(volume.direction, direct.direction)
    assert volume.space == "HU"


def test_lps_geometry_round_trips_an_oblique_grid_and_flips_only_x_and_y(slicer_env):
    node = slicer_env.add_volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), OBLIQUE, "oblique")
    volume = volume_from_node(node)
    assert volume.shape == (2, 3, 4)
    assert np.allclose(volume.spacing, (np.hypot(0.6, 0.3), np.hypot(0.3, 0.6), 2.0))
    assert np.allclose(volume.origin, (-12.5, 40.0, 100.0))  # LPS = (-R, -A, S)
    assert np.allclose(ras_matrix(volume), OBLIQUE)
    # voxel (k, j, i) sits at the same physical point in both conventions
    lps = np.asarray(volume.origin) + volume.direction_matrix @ (np.array([3, 2, 1]) * volume.spacing)
    ras = OBLIQUE @ np.array([3, 2, 1, 1.0])
    assert np.allclose(lps, ras[:3] * (-1, -1, 1))


def test_the_volume_is_a_copy_and_the_node_stays_untouched(slicer_env):
    node = slicer_env.load_volume(SAMPLE, "ct")
    before, matrix = image_array(node.GetImageData()).copy(), ijk_to_ras(node)
    volume = volume_from_node(node)
    volume.array[:] = 0
    assert np.array_equal(image_array(node.GetImageData()), before)
    assert np.array_equal(ijk_to_ras(node), matrix)


def test_a_volume_without_voxels_is_a_user_error(slicer_env):
    node = slicer_env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no voxels"):
        volume_from_node(node)


def test_labels_volume_checks_the_shape(slicer_env):
    node = slicer_env.add_volume(np.zeros((2, 3, 4), np.int16), OBLIQUE, "v")
    assert np.allclose(ras_matrix(labels_volume(node, np.zeros((2, 3, 4), np.uint8))), OBLIQUE)
    with pytest.raises(ValueError, match="shape"):
        labels_volume(node, np.zeros((3, 2, 4), np.uint8))


def test_segment_mask_of_an_empty_segment_is_all_false(slicer_env):
    node = slicer_env.add_volume(np.zeros((2, 3, 4), np.int16), OBLIQUE, "v")
    segmentation = slicer_env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    segmentation.GetSegmentation().AddEmptySegment("empty")
    mask = segment_mask(segmentation, "empty", node)
    assert mask.shape == (2, 3, 4) and not mask.any()
    with pytest.raises(KeyError):
        segment_mask(segmentation, "missing", node)
