"""Signals: SIGTERM is handled like Ctrl-C (SIGINT), and a few short steps (moving a finished
output set into place) are never split by either."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwound like KeyboardInterrupt (partial outputs are removed on the way)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def handle_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread (call from the main thread)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
