"""Process-level allocator settings of the command line (COVIDSegLib.runtime)."""
from __future__ import annotations

import ctypes
import platform
import sys
from pathlib import Path

import pytest

from COVIDSegLib import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds():
    assert runtime.tune_allocator() is True


def test_without_mallopt_it_does_nothing(monkeypatch):
    def no_libc(*_args, **_kwargs):
        raise OSError("no libc here")
    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert runtime.tune_allocator() is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert runtime.tune_allocator() is False


def test_only_the_command_line_tunes_the_process():
    """A host application (3D Slicer) keeps its own allocator settings: the module never calls it."""
    root = Path(__file__).resolve().parents[1]
    users = [p.relative_to(root).as_posix() for p in root.glob("COVID*/**/*.py") if "tune_allocator" in p.read_text()]
    assert sorted(users) == ["COVIDSegLib/cli/commands.py", "COVIDSegLib/runtime.py"]


def test_thread_map_keeps_order_and_follows_torch_threads(monkeypatch):
    import torch

    from COVIDSegLib import threads
    assert threads.thread_map(lambda x: x * x, range(10)) == [x * x for x in range(10)]
    with pytest.raises(ZeroDivisionError):
        threads.thread_map(lambda x: 1 // x, [1, 0, 2])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # a batch worker given one thread uses one here too
        assert threads.thread_count() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(threads, "MAX_THREADS", 1)
    assert threads.thread_count() == 1
