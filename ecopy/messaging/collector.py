"""The message collector: asynchronous sends made while a command or an asynchronous handler
runs are held, and sent only after it succeeded. On failure they are dropped with it."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from ecopy.messaging.endpoint import Invoker
from ecopy.messaging.message import Message

Send = Callable[[], Any]
_collected: ContextVar[list[Send] | None] = ContextVar("ecopy_collected", default=None)


def send_or_collect(send: Send) -> None:
    """Run ``send`` now, or later when a collector is active."""
    collected = _collected.get()
    if collected is None:
        send()
    else:
        collected.append(send)


def collecting(invoker: Invoker) -> Invoker:
    """``invoker`` with its asynchronous sends held until it succeeds. Nested calls join the
    outermost collector."""

    def run(message: Message) -> Any:
        if _collected.get() is not None:
            return invoker(message)
        collected: list[Send] = []
        token = _collected.set(collected)
        try:
            result = invoker(message)
        finally:
            _collected.reset(token)
        for send in collected:
            send()
        return result

    return run
