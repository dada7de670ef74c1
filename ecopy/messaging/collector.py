"""The message collector: asynchronous sends made while a command or an asynchronous handler
runs are held, and sent only after it succeeded. On failure they are dropped with it.

Collectors nest: a command sent from inside a handler holds its own sends, hands them to the
outer collector when it succeeds, and drops them when it fails, even when the outer handler
catches that failure and goes on.
"""

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
    """``invoker`` with its asynchronous sends held until it succeeds; inside another
    collector they join the outer one's, only if ``invoker`` succeeded."""

    def run(message: Message) -> Any:
        outer = _collected.get()
        collected: list[Send] = []
        token = _collected.set(collected)
        try:
            result = invoker(message)
        finally:
            _collected.reset(token)
        if outer is not None:
            outer.extend(collected)
            return result
        for send in collected:
            send()
        return result

    return run
