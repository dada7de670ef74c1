"""SIGTERM and SIGINT while ``ecopy run`` runs: stop after the messages in hand.

Received while the application is still loading, a signal is remembered instead of killing the
process, and nothing starts. Once the consumers (or the worker processes) run, it stops them:
every consumer loop finishes the message in hand, then returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Stoppable(Protocol):
    def stop(self) -> None:
        """Stop after the messages in hand; only sets flags, so a signal handler may call it."""


class StopSignals:
    """The handler of SIGTERM and SIGINT: counts them, and stops what ``stop_on_signal``
    named."""

    def __init__(self) -> None:
        self.received = 0
        self._target: Stoppable | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.request()

    def request(self) -> None:
        """What a signal does; also called when the worker's supervisor is gone."""
        self.received += 1
        if self._target is not None:
            self._target.stop()

    def stop_on_signal(self, target: Stoppable) -> bool:
        """From now on a signal stops ``target``; whether one came already."""
        self._target = target
        return self.received > 0


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Handle SIGTERM and SIGINT with a ``StopSignals`` while the block runs (in the main
    thread only: Python delivers signals nowhere else)."""
    stop = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
