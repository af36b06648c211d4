"""Signals: SIGTERM is handled like Ctrl-C (SIGINT), and a few short steps (moving a finished
output set into place) are never split by either."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, List, Optional

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwound like KeyboardInterrupt (partial outputs are removed on the way)."""


_ARRIVED: List[int] = []  # stop signals our handlers received, in order


def _raise_terminated(signum, frame) -> None:
    _ARRIVED.append(signal.SIGTERM)
    raise Terminated()


def _raise_interrupted(signum, frame) -> None:
    _ARRIVED.append(signal.SIGINT)
    raise KeyboardInterrupt()


def handle_stop_signals(sigint: bool = True) -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread, and with ``sigint`` SIGINT raises
    ``KeyboardInterrupt`` as by default; both are recorded (``stop_arrived``). Call from the main thread."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    if sigint:
        signal.signal(signal.SIGINT, _raise_interrupted)


def stop_arrived() -> Optional[int]:
    """The stop signal our handlers received, if any. A C extension running when it came may turn
    the pending KeyboardInterrupt into an error of its own (matplotlib: "ValueError: Invalid affine
    transformation matrix"); callers that catch errors ask this before calling one an input's failure."""
    return _ARRIVED[-1] if _ARRIVED else None


@contextlib.contextmanager
def unmasked_stops() -> Iterator[None]:
    """An error raised in the block after a stop signal arrived is that signal, masked by a C
    extension (``stop_arrived``): it leaves as ``Terminated`` or ``KeyboardInterrupt``."""
    try:
        yield
    except Exception:
        stopped = stop_arrived()
        if stopped is None:
            raise
        raise (Terminated() if stopped == signal.SIGTERM else KeyboardInterrupt()) from None


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive during the block are held and delivered right after it.

    Python runs signal handlers in the main thread whichever thread the OS chose (torch's
    worker threads do not block signals), so the handlers themselves are swapped for the block.
    Outside the main thread this is a no-op (signals cannot be handled there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list = []
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])
