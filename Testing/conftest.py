"""Shared pytest fixtures."""
import signal
import sys
from pathlib import Path

import pytest

# A suite started in the background of a non-interactive shell inherits SIGINT ignored, and so
# would every command it starts; the Ctrl-C tests need it delivered, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The read-only real data folder (../shared/data); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not available")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """One torch thread: tiny models gain nothing from more, and on a loaded CI machine extra
    threads make each step orders of magnitude slower. Use with ``pytest.mark.usefixtures``."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# The Slicer module's Python package (COVIDSegSlicer) lives in the module folder, as in Slicer.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "COVIDSeg"))


@pytest.fixture
def slicer_env():
    """A fresh MRML scene with Slicer's module logics (PyPI slicer-core); skips without it."""
    pytest.importorskip("slicer", reason="PyPI slicer-core (the test extra) is not installed")
    from slicer_scene import make_env
    return make_env()


@pytest.fixture(autouse=True)
def _locale_restored():
    """GDCM's DICOM writer (used by some fixtures) switches the process locale to "C", which
    turns Python's default text encoding into ASCII for every later test: restore it."""
    import locale
    saved = locale.setlocale(locale.LC_ALL, None)
    yield
    locale.setlocale(locale.LC_ALL, saved)
