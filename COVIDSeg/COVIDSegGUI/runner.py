"""Polls a ``BackgroundJob`` from a Qt timer so that Slicer stays responsive while it runs.

Slicer's main thread keeps the Python GIL while it waits in the Qt event loop (PythonQt does not
release it), so a Python worker thread would hardly run. As Slicer's SimpleFilters module does,
each poll therefore sleeps briefly: the GIL goes to the worker, and the event loop still runs
between polls, so the views and buttons stay responsive.
"""
import time

import qt

from .job import BackgroundJob, Work, format_elapsed


class JobRunner:
    """Runs one job at a time; shows its progress, message and elapsed time; calls
    ``onFinished(job)`` on the main thread when it ends (finished, failed or cancelled)."""

    def __init__(self, progressBar, statusLabel, yieldSeconds: float = 0.02):
        self.progressBar, self.statusLabel = progressBar, statusLabel
        self.job = None
        self._title = ""
        self._onFinished = None
        self._yieldSeconds = yieldSeconds
        self._timer = qt.QTimer()
        self._timer.setInterval(0)  # every event-loop pass; each poll sleeps ``yieldSeconds``
        self._timer.connect("timeout()", self._poll)

    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self, work: Work, title: str, onFinished) -> BackgroundJob:
        if self.running:
            raise RuntimeError("A COVIDSeg job is already running.")
        self._title, self._onFinished = title, onFinished
        self.job = BackgroundJob(work, name=f"COVIDSeg {title}").start()
        self.progressBar.setRange(0, 1000)
        self.progressBar.value = 0
        self.progressBar.show()
        self._timer.start()
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.statusLabel.text = f"{self._title}: cancelling…"

    def _poll(self) -> None:
        job = self.job
        if job is None:
            self._timer.stop()
            return
        time.sleep(self._yieldSeconds)  # releases the GIL: the worker runs
        _, _, message = job.progress
        self.progressBar.value = int(1000 * job.fraction)
        suffix = " (cancelling)" if job.cancel_token.cancelled else ""
        self.statusLabel.text = f"{self._title}: {message or 'starting'} — {format_elapsed(job.elapsed)}{suffix}"
        if not job.done:
            return
        self._timer.stop()
        self.job = None
        self.progressBar.hide()
        self._onFinished(job)

    def cleanup(self) -> None:
        """Stop polling and ask a running job to stop; its result is dropped (effect deactivated,
        module reloaded, application closing)."""
        if self.job is not None:
            self.job.cancel()
        self.job = None
        self._timer.stop()
        self.progressBar.hide()
