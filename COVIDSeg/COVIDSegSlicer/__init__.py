"""Slicer-facing logic of the COVIDSeg module, free of Qt.

Every function takes the MRML scene and module logic objects as arguments and imports only
MRML classes (``slicer``), vtk, numpy and COVIDSegLib, so the same code runs inside 3D Slicer
(given ``slicer.mrmlScene`` and ``slicer.modules.*.logic()``) and in tests against the PyPI
``slicer-core`` libraries. The Qt widget and the Segment Editor effect are thin callers.
"""
