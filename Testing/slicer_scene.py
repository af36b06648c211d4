"""Test-only: an MRML scene with Slicer's module logics, set up as the Slicer application does
(see shared/notes/slicer-core.md), on the PyPI ``slicer-core`` libraries."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
import vtk

from COVIDSegSlicer.rollback import node_ids
from COVIDSegSlicer.volume_bridge import image_array, vtk_matrix


@dataclass
class SlicerEnv:
    scene: "slicer.vtkMRMLScene"
    app_logic: "slicer.vtkSlicerApplicationLogic"
    colors: "slicer.vtkSlicerColorLogic"  # kept alive: its destructor removes the colour nodes
    volumes: "slicer.vtkSlicerVolumesLogic"
    segmentations: "slicer.vtkSlicerSegmentationsModuleLogic"
    terminologies: "slicer.vtkSlicerTerminologiesModuleLogic"

    def load_volume(self, path: Path, name: str):
        node = self.volumes.AddArchetypeVolume(str(path), name, 0)
        assert node is not None, f"cannot load {path}"
        return node

    def add_volume(self, array: np.ndarray, ijk_to_ras: np.ndarray, name: str):
        """A scalar volume node holding a copy of a (k, j, i) array on the given grid."""
        image = vtk.vtkImageData()
        image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        image.AllocateScalars(vtk.VTK_SHORT, 1)
        image_array(image)[:] = array
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
        node.SetAndObserveImageData(image)
        node.CreateDefaultDisplayNodes()
        return node

    def node_ids(self) -> set:
        return node_ids(self.scene)


def _bind(logic, name: str, scene, app_logic):
    logic.SetMRMLApplicationLogic(app_logic)
    logic.SetMRMLScene(scene)
    app_logic.SetModuleLogic(name, logic)
    return logic


def make_env() -> SlicerEnv:
    # Slicer's default terminology and colour files are not in slicer-core; the logics log
    # that they miss them: harmless, and too noisy for test output.
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    vtk.vtkObject.GlobalWarningDisplayOff()
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = _bind(slicer.vtkSlicerColorLogic(), "Colors", scene, app_logic)
    colors.AddDefaultColorNodes()
    return SlicerEnv(scene, app_logic, colors,
                     _bind(slicer.vtkSlicerVolumesLogic(), "Volumes", scene, app_logic),
                     _bind(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations", scene, app_logic),
                     _bind(slicer.vtkSlicerTerminologiesModuleLogic(), "Terminologies", scene, app_logic))
