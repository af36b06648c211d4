"""Helpers of the COVIDSeg Slicer module's user interface.

``paths`` makes COVIDSegLib importable from a source checkout; ``job`` runs a computation in
a worker thread and ``runner`` polls it from a Qt timer; ``models`` imports user model
bundles; ``install`` checks and installs the Python requirements inside Slicer. Only
``runner`` and ``install`` import Qt/Slicer; the others are plain Python (tested with pytest).
"""
