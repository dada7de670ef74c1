"""Delivery options of asynchronous handlers: ``@asynchronous``, ``@delayed``,
``@time_to_live``; and the internal headers that carry them to the channel.

``@priority`` (in ``ecopy.modelling.handlers``) also sets the delivery priority.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from ecopy.messaging.clock import as_timestamp
from ecopy.messaging.declaration import declare
from ecopy.messaging.message import Message

F = TypeVar("F")

ENDPOINT_ID: Final = "ecopy.endpoint_id"
CHANNEL: Final = "ecopy.channel"
DELIVER_AT: Final = "ecopy.deliver_at"
EXPIRES_AT: Final = "ecopy.expires_at"
PRIORITY: Final = "ecopy.priority"
RETRY_COUNT: Final = "ecopy.retry_count"


def asynchronous(channels: str | Sequence[str]) -> Callable[[F], F]:
    """Handle the message later, from ``channels`` (a name, or a list: sent through each in
    turn, then handled), in a consumer: ``@asynchronous("orders")``."""
    names: Any = [channels] if isinstance(channels, str) else channels
    if (
        not isinstance(names, (list, tuple))
        or not names
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise TypeError(
            f"@asynchronous needs a channel name or a list of them, got {channels!r}: "
            f'e.g. @asynchronous("orders")'
        )

    def decorate(target: F) -> F:
        declare(target).modifiers["asynchronous"] = tuple(names)  # a list or tuple of names
        return target

    return decorate


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def delayed(delay: float | timedelta | datetime) -> Callable[[F], F]:
    """Deliver the handler's message after ``delay`` seconds (or a ``timedelta``), or at a
    moment (a ``datetime``; a past moment is due at once)."""
    if not isinstance(delay, datetime) and (
        isinstance(delay, bool)
        or not isinstance(delay, (int, float, timedelta))
        or _seconds(delay) < 0
    ):
        raise TypeError(f"@delayed needs seconds >= 0, a timedelta or a datetime, got {delay!r}")

    def decorate(target: F) -> F:
        declare(target).modifiers["delayed"] = delay
        return target

    return decorate


def time_to_live(ttl: float | timedelta) -> Callable[[F], F]:
    """Drop the handler's message (logged) if it is not handled within ``ttl``."""

    if isinstance(ttl, bool) or not isinstance(ttl, (int, float, timedelta)) or _seconds(ttl) <= 0:
        raise TypeError(f"@time_to_live needs seconds > 0 or a timedelta, got {ttl!r}")

    def decorate(target: F) -> F:
        declare(target).modifiers["time_to_live"] = _seconds(ttl)
        return target

    return decorate


def deliver_at(delay: Any, now: float) -> float:
    if isinstance(delay, datetime):
        return as_timestamp(delay)
    return now + _seconds(delay)


def delivery_of(message: Message) -> tuple[float | None, float | None, int]:
    """A message's ``(deliver_at, expires_at, priority)``, as every queue channel reads them."""
    headers = message._headers
    return (
        headers.get(DELIVER_AT),
        headers.get(EXPIRES_AT),
        int(headers.get(PRIORITY, 0) or 0),
    )
