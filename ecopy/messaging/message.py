"""The message: an immutable payload with headers, and the standard header keys."""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Mapping
from typing import Any, Final

ID: Final = "id"
CORRELATION_ID: Final = "correlation_id"
PARENT_ID: Final = "parent_id"
TIMESTAMP: Final = "timestamp"

#: Delivery headers (DESIGN §3.1): for the one message they are sent with; never propagated.
DELIVERY_DELAY: Final = "delivery_delay"
TIME_TO_LIVE: Final = "time_to_live"
PRIORITY: Final = "priority"
DELIVERY_OPTIONS: Final = frozenset({DELIVERY_DELAY, TIME_TO_LIVE, PRIORITY})

#: Headers that ecopy manages itself: they are never copied from a handled message to the
#: messages its handler sends. Besides the standard keys, every key under these prefixes is
#: framework-internal.
STANDARD_HEADERS: Final = frozenset({ID, CORRELATION_ID, PARENT_ID, TIMESTAMP})
INTERNAL_HEADER_PREFIXES: Final = ("ecopy.", "aggregate.")


def is_internal_header(key: str) -> bool:
    """True for headers that belong to the framework rather than to the user."""
    return key in STANDARD_HEADERS or key.startswith(INTERNAL_HEADER_PREFIXES)


# Message ids are UUID-formatted (version 4, RFC 4122 variant) strings: a per-process counter,
# scrambled by multiplying with an odd constant (a bijection modulo 2**48, so still unique, but
# consecutive ids differ in their first characters where people look), followed by 74 random
# bits drawn once per process (again in a forked child). Unique, which is what ids are for, at
# a third of the cost of uuid.uuid4(): the id was more than half of a command dispatch.
_MASK = (1 << 48) - 1
_SCRAMBLE = 0x9E3779B97F4B


def _new_suffix() -> str:
    h = f"{random.Random(os.urandom(32)).getrandbits(80):020x}"
    return f"4{h[1:4]}-{'89ab'[int(h[4], 16) & 3]}{h[5:8]}-{h[8:20]}"


_suffix = _new_suffix()
_counter = itertools.count(random.Random(os.urandom(8)).getrandbits(40))


def _reseed() -> None:
    global _suffix, _counter
    _suffix = _new_suffix()
    _counter = itertools.count(random.Random(os.urandom(8)).getrandbits(40))


os.register_at_fork(after_in_child=_reseed)


def new_message_id() -> str:
    """A new unique message id, formatted as a version-4 UUID."""
    h = f"{(next(_counter) * _SCRAMBLE) & _MASK:012x}"
    return f"{h[:8]}-{h[8:]}-{_suffix}"


class Message:
    """An immutable payload with headers.

    ``Message(payload, headers)`` fills in the standard headers that are missing: a new
    ``id``, ``correlation_id`` equal to the id, and the current ``timestamp``.

    >>> m = Message({"order_id": "o-1"}, {"tenant": "acme"})
    >>> m.correlation_id == m.id
    True
    """

    __slots__ = ("_headers", "_payload")

    _payload: Any
    _headers: Mapping[str, Any]

    def __init__(self, payload: Any, headers: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_payload", payload)
        object.__setattr__(self, "_headers", _complete(dict(headers) if headers else {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"Message is immutable, so {name!r} cannot be set; make a changed copy with "
            f"with_payload() or with_headers()"
        )

    @property
    def payload(self) -> Any:
        return self._payload

    @property
    def headers(self) -> Mapping[str, Any]:
        # The dict is private to this message; hand out a copy so it stays immutable.
        return dict(self._headers)

    def header(self, key: str, default: Any = None) -> Any:
        return self._headers.get(key, default)

    @property
    def id(self) -> str:
        return str(self._headers[ID])

    @property
    def correlation_id(self) -> str:
        return str(self._headers[CORRELATION_ID])

    @property
    def parent_id(self) -> str | None:
        parent = self._headers.get(PARENT_ID)
        return None if parent is None else str(parent)

    @property
    def timestamp(self) -> float:
        return float(self._headers[TIMESTAMP])

    def user_headers(self) -> dict[str, Any]:
        """The headers that are not framework-internal."""
        return {k: v for k, v in self._headers.items() if not is_internal_header(k)}

    def with_payload(self, payload: Any) -> Message:
        """The same message (same id and headers) carrying another payload."""
        return _unchecked(payload, self._headers)

    def with_headers(self, headers: Mapping[str, Any]) -> Message:
        """The same message with ``headers`` merged over its own (the id is kept unless given)."""
        merged = dict(self._headers)
        merged.update(headers)
        return _unchecked(self._payload, merged)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._payload == other._payload and self._headers == other._headers

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Message(payload={self._payload!r}, headers={dict(self._headers)!r})"


def _complete(headers: dict[str, Any]) -> dict[str, Any]:
    """Fill in the standard headers that are missing (in place)."""
    if ID not in headers:
        headers[ID] = new_message_id()
    if CORRELATION_ID not in headers:
        headers[CORRELATION_ID] = headers[ID]
    if TIMESTAMP not in headers:
        headers[TIMESTAMP] = time.time()
    return headers


def build_message(payload: Any, headers: dict[str, Any]) -> Message:
    """Like ``Message(payload, headers)``, taking ownership of ``headers`` (no copy)."""
    message = _new(Message)
    _set_payload(message, payload)
    _set_headers(message, _complete(headers))
    return message


def _unchecked(payload: Any, headers: Mapping[str, Any]) -> Message:
    """Build a message from headers known to be complete, without copying twice."""
    message = Message.__new__(Message)
    object.__setattr__(message, "_payload", payload)
    object.__setattr__(message, "_headers", dict(headers))
    return message


# Slot setters, bypassing the immutability guard in __setattr__ on the hot path.
_new = object.__new__
_set_payload = vars(Message)["_payload"].__set__
_set_headers = vars(Message)["_headers"].__set__
