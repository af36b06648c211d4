"""Keeping native libraries quiet: ITK, MetaIO, niftilib, GDCM and libpng print their own
warnings on the process's stderr; the project reports each failure as one line instead."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Send file descriptor 2 to the null device and turn ITK's warning display off for a moment."""
    import SimpleITK as sitk
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    except (OSError, ValueError, AttributeError):  # no fd 2 (e.g. a GUI without a console)
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


@contextlib.contextmanager
def quiet_nibabel() -> Iterator[None]:
    """No warnings or log lines from nibabel while it reads a header the project checks itself."""
    import logging
    import warnings

    from nibabel.imageglobals import logger  # header fixes are logged at ERROR level, printed
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
