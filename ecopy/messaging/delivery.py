"""Delivery options: ``@asynchronous``, ``@delayed``, ``@time_to_live`` on a handler, the
headers ``delivery_delay``, ``time_to_live`` and ``priority`` on one send (DESIGN §3.1); and the
internal headers that carry them to the channel.

``@priority`` (in ``ecopy.modelling.handlers``) also sets the delivery priority. A delivery
header on a send wins over the handler's decorator. It applies to that message only: when the
message is sent to its channel the header becomes the internal one (``ecopy.deliver_at``,
``ecopy.expires_at``, ``ecopy.priority``) and is removed, and it is never propagated to the
messages sent while that message is handled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from ecopy.errors import EcopyError
from ecopy.messaging.clock import as_timestamp
from ecopy.messaging.declaration import declare
from ecopy.messaging.message import (
    DELIVERY_DELAY,
    DELIVERY_OPTIONS,
    PRIORITY,
    TIME_TO_LIVE,
    Message,
    _unchecked,
)

F = TypeVar("F")

ENDPOINT_ID: Final = "ecopy.endpoint_id"
#: The routing key of a message sent with ``send_with_routing`` / ``publish_with_routing``.
ROUTING_KEY: Final = "ecopy.routing_key"
CHANNEL: Final = "ecopy.channel"
DELIVER_AT: Final = "ecopy.deliver_at"
EXPIRES_AT: Final = "ecopy.expires_at"
QUEUE_PRIORITY: Final = "ecopy.priority"
RETRY_COUNT: Final = "ecopy.retry_count"


#: Where ``@asynchronous`` on a class keeps its channels.
ASYNCHRONOUS_CLASS = "__ecopy_asynchronous__"


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
        if isinstance(target, type):
            # A projection class: its trigger goes through the channels (ecopy.projecting).
            setattr(target, ASYNCHRONOUS_CLASS, tuple(names))
            return target
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


#: Priorities fit a 32-bit integer column.
MAX_PRIORITY: Final = 2**31 - 1


class DeliveryOptionError(EcopyError):
    """A delivery header of a message cannot be honoured (a delay that is not a duration...)."""


@dataclass(frozen=True)
class DeliveryOptions:
    """The delivery options a handler's decorators give its messages."""

    delay: Any = None
    time_to_live: float | None = None
    priority: int = 0

    @classmethod
    def of(cls, modifiers: Mapping[str, Any]) -> DeliveryOptions:
        return cls(
            modifiers.get("delayed"),
            modifiers.get("time_to_live"),
            int(modifiers.get("priority", 0)),
        )

    def __bool__(self) -> bool:
        return self.delay is not None or self.time_to_live is not None or self.priority != 0


NO_OPTIONS: Final = DeliveryOptions()


def addressed(
    message: Message, headers: dict[str, Any], options: DeliveryOptions, now: float
) -> Message:
    """``message`` with ``headers`` added and its delivery options (the delivery headers of the
    send, else ``options``) turned into the internal headers, as it goes to a channel."""
    own = message._headers
    carries = not DELIVERY_OPTIONS.isdisjoint(own)
    if carries or options:
        headers.update(_scheduled(own, options, now, message))
    if not carries:
        return message.with_headers(headers)
    merged = {key: value for key, value in own.items() if key not in DELIVERY_OPTIONS}
    merged.update(headers)
    return _unchecked(message._payload, merged)


def _scheduled(
    headers: Mapping[str, Any], options: DeliveryOptions, now: float, message: Message
) -> dict[str, Any]:
    delay = headers.get(DELIVERY_DELAY, options.delay)
    ttl = headers.get(TIME_TO_LIVE, options.time_to_live)
    priority = headers.get(PRIORITY, options.priority)
    result: dict[str, Any] = {}
    due = now
    if delay is not None:
        if not _is_delay(delay):
            raise DeliveryOptionError(
                f"header {DELIVERY_DELAY!r} of message {message.id} must be seconds >= 0, a "
                f"timedelta or a datetime, got {delay!r}"
            )
        due = result[DELIVER_AT] = deliver_at(delay, now)
    if ttl is not None:
        if not _is_duration(ttl) or _seconds(ttl) <= 0:
            raise DeliveryOptionError(
                f"header {TIME_TO_LIVE!r} of message {message.id} must be seconds > 0 or a "
                f"timedelta, got {ttl!r}"
            )
        # The time to live counts from when the message is due, not from when it was sent.
        result[EXPIRES_AT] = max(due, now) + _seconds(ttl)
    if priority:
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not -MAX_PRIORITY <= priority <= MAX_PRIORITY
        ):
            raise DeliveryOptionError(
                f"header {PRIORITY!r} of message {message.id} must be an int between "
                f"{-MAX_PRIORITY} and {MAX_PRIORITY}, got {priority!r}"
            )
        result[QUEUE_PRIORITY] = priority
    return result


def _is_duration(value: Any) -> bool:
    if isinstance(value, timedelta):
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_delay(value: Any) -> bool:
    return isinstance(value, datetime) or (_is_duration(value) and _seconds(value) >= 0)


def delivery_of(message: Message) -> tuple[float | None, float | None, int]:
    """A message's ``(deliver_at, expires_at, priority)``, as every queue channel reads them
    (after ``addressed`` turned its delivery headers into these)."""
    headers = message._headers
    return (
        headers.get(DELIVER_AT),
        headers.get(EXPIRES_AT),
        int(headers.get(QUEUE_PRIORITY, 0) or 0),
    )
