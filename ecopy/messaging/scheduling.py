"""Scheduled consumers: ``@scheduled`` methods called on a cron or a fixed rate; what they
return is sent as a message to their request channel (``None`` sends nothing)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from croniter import croniter

from ecopy.messaging.clock import Clock
from ecopy.messaging.consumer import ConsumerLimits, ConsumerLoop, PollingMetadata, Step
from ecopy.messaging.declaration import declare

F = TypeVar("F")
logger = logging.getLogger("ecopy.scheduling")


def scheduled(
    request_channel: str,
    *,
    endpoint_id: str,
    cron: str | None = None,
    fixed_rate_ms: int | None = None,
) -> Callable[[F], F]:
    """Run the method on a schedule; ``ecopy run ENDPOINT_ID`` (or ``app.run``) drives it.

    >>> class Reports:
    ...     @scheduled("reports", endpoint_id="nightly_report", cron="0 2 * * *")
    ...     def nightly(self) -> dict:
    ...         return {"kind": "nightly"}
    """
    if (cron is None) == (fixed_rate_ms is None):
        raise TypeError("@scheduled needs exactly one of cron= or fixed_rate_ms=")
    if cron is not None and not croniter.is_valid(cron):
        raise TypeError(f"@scheduled cron expression {cron!r} is not valid")

    def decorate(target: F) -> F:
        declare(target).modifiers["scheduled"] = (request_channel, endpoint_id, cron, fixed_rate_ms)
        return target

    return decorate


class ScheduledConsumer(ConsumerLoop):
    """Calls ``produce`` when it is due and sends its result with ``send``."""

    def __init__(
        self,
        name: str,
        produce: Callable[[], Any],
        send: Callable[[Any], None],
        clock: Clock,
        *,
        cron: str | None,
        fixed_rate_ms: int | None,
        metadata: PollingMetadata | None = None,
    ) -> None:
        super().__init__(name, clock)
        self.metadata = metadata
        self._produce = produce
        self._send = send
        self._cron = cron
        self._rate = (fixed_rate_ms or 0) / 1000
        self._next_at: float | None = None

    def _following(self, after: float) -> float:
        if self._cron is not None:
            start = datetime.fromtimestamp(after, tz=UTC)
            return float(croniter(self._cron, start).get_next(float))
        return after + self._rate

    def run(self, limits: ConsumerLimits) -> int:
        if self._next_at is None:
            now = self.clock.now()
            self._next_at = now if self._cron is None else self._following(now)
        return self.loop(limits, self.step)

    def step(self) -> Step:
        assert self._next_at is not None
        now = self.clock.now()
        if now < self._next_at:
            return Step.IDLE
        self._next_at = self._following(max(now, self._next_at))
        try:
            result = self._produce()
            if result is not None:
                self._send(result)
        except Exception:
            logger.exception("scheduled consumer %s failed; it runs again when next due", self.name)
            return Step.FAILED
        return Step.HANDLED
