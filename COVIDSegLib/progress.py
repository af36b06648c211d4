"""One progress-callback type and one cancel token for all long work."""
from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import Cancelled

# progress(done, total, message)
ProgressCallback = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str = "") -> None:
    """Default callback: ignore progress."""


class CancelToken:
    """Thread-safe flag a UI sets and the worker polls with ``check()``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("Cancelled by the user.")


def check(token: Optional[CancelToken]) -> None:
    """Raise ``Cancelled`` if ``token`` is set; ``None`` means never cancelled."""
    if token is not None:
        token.check()
