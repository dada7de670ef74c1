"""The message being handled right now, and header propagation to the messages it causes.

DESIGN §3.1: a message sent while another is handled inherits the handled message's user
headers (explicit headers win) but its delivery headers (``delivery_delay``, ``time_to_live``,
``priority``), keeps its ``correlation_id`` and gets ``parent_id`` set to the handled message's
``id``. The handled message lives in a context variable, so propagation is
per thread and per asyncio task. Like trace context, it follows the call: a handler that sends
through another messaging system's bus passes its headers on as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from ecopy.messaging.message import (
    CORRELATION_ID,
    DELIVERY_DELAY,
    DELIVERY_OPTIONS,
    PARENT_ID,
    PRIORITY,
    TIME_TO_LIVE,
    Message,
    is_internal_header,
)

current_message: ContextVar[Message | None] = ContextVar("ecopy_current_message", default=None)


def outgoing_headers(explicit: Mapping[str, Any] | None) -> dict[str, Any]:
    """Headers for a message sent now: propagated from the handled message, explicit ones win."""
    handled = current_message.get()
    if handled is None:
        return dict(explicit) if explicit else {}
    return propagated_headers(handled, explicit)


def propagated_headers(handled: Message, explicit: Mapping[str, Any] | None) -> dict[str, Any]:
    """Headers for a message sent while ``handled`` is handled: its user headers (delivery
    options excluded), its correlation id, itself as the parent; explicit ones win."""
    source = handled._headers
    headers = {k: v for k, v in source.items() if not is_internal_header(k)}
    if DELIVERY_DELAY in headers or TIME_TO_LIVE in headers or PRIORITY in headers:
        for key in DELIVERY_OPTIONS:  # they were for the handled message only
            headers.pop(key, None)
    headers[CORRELATION_ID] = source[CORRELATION_ID]
    headers[PARENT_ID] = source["id"]
    if explicit:
        headers.update(explicit)
    return headers
