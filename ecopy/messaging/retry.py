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


NonRetryable = type[BaseException] | str


@dataclass(frozen=True, kw_only=True)
class RetryTemplate:
    """How often and how late to retry a failed message, and which failures not to retry.

    ``max_attempts`` is the number of retries after the first failure; ``None`` retries without
    limit. ``max_delay_ms`` caps each delay; it never stops the retries. ``non_retryable``
    lists exception classes (or their qualified names, ``"shop.billing.CardExpired"``) that
    retrying cannot fix: such a failure, like any ``NonRetryableError``, goes straight to the
    dead-letter channel.

    >>> RetryTemplate.exponential(100, 2, max_delay_ms=300).delays_ms()
    [100, 200, 300]
    >>> RetryTemplate.backoff([1000, 5000, 30000], max_attempts=5).delays_ms()
    [1000, 5000, 30000, 30000, 30000]
    """

    initial_delay_ms: int
    multiplier: float = 1.0
    max_delay_ms: int | None = None
    max_attempts: int | None = 3
    delays: tuple[int, ...] = ()
    non_retryable: tuple[NonRetryable, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "delays", tuple(self.delays))
        object.__setattr__(self, "non_retryable", tuple(self.non_retryable))
        attempts = self.max_attempts
        wrong = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, rule, bad in (
                ("initial_delay_ms", self.initial_delay_ms, ">= 0", self.initial_delay_ms < 0),
                ("multiplier", self.multiplier, "> 0", self.multiplier <= 0),
                (
                    "max_attempts",
                    attempts,
                    "an int >= 0 (or None: no limit)",
                    attempts is not None and (isinstance(attempts, bool) or attempts < 0),
                ),
            )
            if bad
        ]
        if wrong:
            raise ValueError(f"RetryTemplate: {'; '.join(wrong)}")
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in self.delays):
            raise ValueError(
                f"RetryTemplate.backoff needs delays in whole milliseconds >= 0 (e.g. [1000, "
                f"5000] for 1 s, then 5 s), got {list(self.delays)}"
            )
        for entry in self.non_retryable:
            if not (
                (isinstance(entry, type) and issubclass(entry, BaseException))
                or (isinstance(entry, str) and entry)
            ):
                raise ValueError(
                    f"RetryTemplate non_retryable takes exception classes or their qualified "
                    f"names ('shop.billing.CardExpired'), got {entry!r}"
                )

    @classmethod
    def exponential(
        cls,
        initial_delay_ms: int,
        multiplier: float,
        max_delay_ms: int | None = None,
        max_attempts: int | None = 3,
        *,
        non_retryable: Sequence[NonRetryable] = (),
    ) -> RetryTemplate:
        return cls(
            initial_delay_ms=initial_delay_ms,
            multiplier=multiplier,
            max_delay_ms=max_delay_ms,
            max_attempts=max_attempts,
            non_retryable=tuple(non_retryable),
        )

    @classmethod
    def fixed(
        cls,
        delay_ms: int,
        max_attempts: int | None,
        *,
        non_retryable: Sequence[NonRetryable] = (),
    ) -> RetryTemplate:
        return cls(
            initial_delay_ms=delay_ms,
            multiplier=1.0,
            max_attempts=max_attempts,
            non_retryable=tuple(non_retryable),
        )

    @classmethod
    def backoff(
        cls,
        delays_ms: Sequence[int],
        max_attempts: int | None = None,
        *,
        max_delay_ms: int | None = None,
        non_retryable: Sequence[NonRetryable] = (),
    ) -> RetryTemplate:
        """The delays one by one (``[1000, 5000, 30000]``), then the last one again for every
        further retry: without limit unless ``max_attempts`` is given."""
        delays = tuple(delays_ms)
        if not delays:
            raise ValueError("RetryTemplate.backoff needs at least one delay, e.g. [1000, 5000]")
        return cls(
            initial_delay_ms=delays[0] if isinstance(delays[0], int) else 0,
            delays=delays,
            max_delay_ms=max_delay_ms,
            max_attempts=max_attempts,
            non_retryable=tuple(non_retryable),
        )

    def _wait(self) -> tenacity.wait.wait_base:
        cap = self.max_delay_ms / 1000 if self.max_delay_ms is not None else float("inf")
        if self.delays:
            return tenacity.wait_chain(
                *(tenacity.wait_fixed(min(delay / 1000, cap)) for delay in self.delays)
            )
        if self.multiplier == 1.0:
            return tenacity.wait_fixed(min(self.initial_delay_ms / 1000, cap))
        return tenacity.wait_exponential(
            multiplier=self.initial_delay_ms / 1000, exp_base=self.multiplier, max=cap
        )

    def delay_ms(self, retry: int) -> int:
        """The delay before retry number ``retry`` (1 for the first retry)."""
        return round(wait_seconds(self._wait(), retry) * 1000)

    def delays_ms(self, count: int | None = None) -> list[int]:
        """The delays of the first ``count`` retries (all of them by default)."""
        count = self.max_attempts if count is None else count
        if count is None:
            raise ValueError(
                "this RetryTemplate retries without limit (max_attempts=None): ask for "
                "delays_ms(count), the delays of the first count retries"
            )
        return [self.delay_ms(retry) for retry in range(1, count + 1)]

    def can_retry(self, retries_done: int) -> bool:
        return self.max_attempts is None or retries_done < self.max_attempts

    def gives_up_on(self, error: BaseException) -> bool:
        """Whether ``error`` is one that retrying cannot fix: a ``NonRetryableError``, or of a
        class listed in ``non_retryable`` (or a subclass of one)."""
        if isinstance(error, NonRetryableError):
            return True
        for entry in self.non_retryable:
            if isinstance(entry, type):
                if isinstance(error, entry):
                    return True
            elif any(entry in _names_of(cls) for cls in type(error).__mro__):
                return True
        return False


def _names_of(cls: type) -> tuple[str, ...]:
    """How ``non_retryable`` may name a class: ``module.QualName``, or the bare name of a
    built-in exception (``"TimeoutError"``)."""
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    return (qualified, cls.__qualname__) if cls.__module__ == "builtins" else (qualified,)


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
