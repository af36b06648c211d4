"""A computation running in a worker thread, polled by the user interface.

The worker never touches MRML or Qt: it only computes. The main thread polls ``progress``
and ``done`` (from a Qt timer in Slicer, see ``runner``) and then applies the result to the
scene. Cancelling sets the shared ``COVIDSegLib.progress.CancelToken``; the computation
raises ``Cancelled`` at its next check.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Tuple

from COVIDSegLib.errors import Cancelled, user_message
from COVIDSegLib.progress import CancelToken, ProgressCallback

Work = Callable[[ProgressCallback, CancelToken], Any]


class BackgroundJob:
    """``BackgroundJob(work).start()`` runs ``work(progress, cancel)`` in a daemon thread."""

    def __init__(self, work: Work, name: str = "COVIDSeg"):
        self._work = work
        self.cancel_token = CancelToken()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._progress: Tuple[float, float, str] = (0, 0, "")
        self._started: Optional[float] = None
        self._finished: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "BackgroundJob":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._work(self._report, self.cancel_token)
        except BaseException as error:  # handed to the main thread, which reports it
            self.error = error
        finally:
            self._finished = time.monotonic()

    def _report(self, done: float, total: float, message: str = "") -> None:
        self._progress = (done, total, message)  # one tuple assignment: atomic under the GIL

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until finished (scripts and tests); True when done."""
        self._thread.join(timeout)
        return self.done

    @property
    def done(self) -> bool:
        return self._started is not None and not self._thread.is_alive()

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, Cancelled)

    @property
    def progress(self) -> Tuple[float, float, str]:
        return self._progress

    @property
    def fraction(self) -> float:
        done, total, _ = self._progress
        return min(1.0, max(0.0, done / total)) if total else 0.0

    @property
    def elapsed(self) -> float:
        if self._started is None:
            return 0.0
        return (self._finished or time.monotonic()) - self._started


def format_elapsed(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour)."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


error_message = user_message  # one line for the user (COVIDSegLib.errors.user_message)
