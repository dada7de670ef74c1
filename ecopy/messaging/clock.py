"""The clock port: the system clock in production, a controllable clock in flow tests."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a controllable clock moves itself instead)."""


class SystemClock(Clock):
    """Real time."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def as_timestamp(moment: datetime | float) -> float:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return float(moment)


class ControlledClock(Clock):
    """A clock that moves only when told to (or when a consumer sleeps on it).

    >>> clock = ControlledClock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> clock.advance(timedelta(minutes=5))
    >>> clock.as_datetime()
    datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
    """

    def __init__(self, start: datetime | float | None = None) -> None:
        self._lock = threading.Lock()
        self._now = time.time() if start is None else as_timestamp(start)

    def now(self) -> float:
        with self._lock:
            return self._now

    def as_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(timedelta(seconds=seconds))

    def advance(self, duration: timedelta | float) -> None:
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        if seconds < 0:
            raise ValueError(
                f"a clock cannot go back, but advance() was given {duration!r}; to set an "
                f"earlier time, use change_time_to() on the flow (ControlledClock.change_to())"
            )
        with self._lock:
            self._now += seconds

    def change_to(self, moment: datetime | float) -> None:
        with self._lock:
            self._now = as_timestamp(moment)
