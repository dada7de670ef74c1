"""Retry policies: delayed retries through the channel, and instant in-process retries.

Delays come from tenacity's wait strategies; ecopy only decides what a retry means for a
message (sent back to its channel with a delay, or run again in place).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from ecopy.errors import NonRetryableError
from ecopy.messaging.channel import ClaimLost

T = TypeVar("T")

# Running these again in place cannot help: the message can never succeed, or another
# consumer holds it now.
_NEVER_INSTANTLY = (NonRetryableError, ClaimLost)


@dataclass(frozen=True, kw_only=True)
class RetryTemplate:
    """How often and how late to retry a failed message.

    ``max_attempts`` is the number of retries after the first failure. ``max_delay_ms`` caps
    each delay; it never stops the retries.

    >>> RetryTemplate.exponential(100, 2, max_delay_ms=300).delays_ms()
    [100, 200, 300]
    """

    initial_delay_ms: int
    multiplier: float = 1.0
    max_delay_ms: int | None = None
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.initial_delay_ms < 0 or self.max_attempts < 0 or self.multiplier <= 0:
            raise ValueError(
                "RetryTemplate needs initial_delay_ms >= 0, max_attempts >= 0, multiplier > 0"
            )

    @classmethod
    def exponential(
        cls,
        initial_delay_ms: int,
        multiplier: float,
        max_delay_ms: int | None = None,
        max_attempts: int = 3,
    ) -> RetryTemplate:
        return cls(
            initial_delay_ms=initial_delay_ms,
            multiplier=multiplier,
            max_delay_ms=max_delay_ms,
            max_attempts=max_attempts,
        )

    @classmethod
    def fixed(cls, delay_ms: int, max_attempts: int) -> RetryTemplate:
        return cls(initial_delay_ms=delay_ms, multiplier=1.0, max_attempts=max_attempts)

    def _wait(self) -> tenacity.wait.wait_base:
        cap = self.max_delay_ms / 1000 if self.max_delay_ms is not None else float("inf")
        if self.multiplier == 1.0:
            return tenacity.wait_fixed(min(self.initial_delay_ms / 1000, cap))
        return tenacity.wait_exponential(
            multiplier=self.initial_delay_ms / 1000, exp_base=self.multiplier, max=cap
        )

    def delay_ms(self, retry: int) -> int:
        """The delay before retry number ``retry`` (1 for the first retry)."""
        return round(wait_seconds(self._wait(), retry) * 1000)

    def delays_ms(self) -> list[int]:
        return [self.delay_ms(retry) for retry in range(1, self.max_attempts + 1)]

    def can_retry(self, retries_done: int) -> bool:
        return retries_done < self.max_attempts


def wait_seconds(wait: tenacity.wait.wait_base, attempt: int) -> float:
    """What tenacity's wait strategy ``wait`` says to wait before attempt ``attempt + 1``."""
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait(state))


@dataclass(frozen=True, kw_only=True)
class InstantRetryConfiguration:
    """Run a failing handler again at once, in the same process, before giving up.

    ``command_bus_retries`` applies to ``command_bus.send``; ``asynchronous_retries`` to each
    message handled by a consumer. Only the listed exception types are retried.
    """

    command_bus_retries: int = 0
    command_bus_exceptions: Sequence[type[BaseException]] = (Exception,)
    asynchronous_retries: int = 0
    asynchronous_exceptions: Sequence[type[BaseException]] = (Exception,)


def instantly_retrying(
    call: Callable[[T], Any], retries: int, exceptions: Sequence[type[BaseException]]
) -> Callable[[T], Any]:
    """``call`` retried up to ``retries`` times for ``exceptions`` (no wait), except a
    ``NonRetryableError``; the last error is raised unchanged."""
    if retries <= 0:
        return call
    retried = tuple(exceptions)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(retries + 1),
        retry=tenacity.retry_if_exception(
            lambda error: isinstance(error, retried) and not isinstance(error, _NEVER_INSTANTLY)
        ),
        reraise=True,
    )

    def call_with_retries(argument: T) -> Any:
        return retrying(call, argument)

    return call_with_retries


@dataclass(frozen=True)
class ErrorHandlerConfiguration:
    """What a consumer does with a failed message: retry it later through its channel with
    ``retry``, then send it to ``dead_letter_channel`` (the dead-letter store by default).

    >>> ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 3))
    ... # doctest: +ELLIPSIS
    ErrorHandlerConfiguration(error_channel='errorChannel', ...)
    """

    error_channel: str = "errorChannel"
    retry: RetryTemplate | None = None
    dead_letter_channel: str | None = "ecopy.dead_letter"
