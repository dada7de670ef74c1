"""Running ``async def`` handlers from the synchronous core.

The core is synchronous; an ``async def`` handler is awaited on an event loop that belongs to
the calling thread (one per thread, reused), so a consumer awaits all its handlers on one
loop. Calling a synchronous bus from inside a running event loop cannot block that loop: use
the awaitable bus facades there instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ecopy.errors import EcopyError

_local = threading.local()


class _ThreadLoop:
    """Owns one thread's loop and closes it when the thread (and its locals) go away."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_closed():
            self.loop.close()


def thread_loop() -> asyncio.AbstractEventLoop:
    """The event loop that runs coroutine handlers in this thread."""
    owner: _ThreadLoop | None = getattr(_local, "owner", None)
    if owner is None or owner.loop.is_closed():
        owner = _ThreadLoop()
        _local.owner = owner
    return owner.loop


def run_coroutine(coroutine: Coroutine[Any, Any, Any], handler: str) -> Any:
    """Await ``coroutine`` to completion and return its result."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return thread_loop().run_until_complete(coroutine)
    owner: _ThreadLoop | None = getattr(_local, "owner", None)
    if owner is not None and running is owner.loop:
        # An async handler called, through a synchronous bus, from another async handler that
        # ecopy itself is awaiting: this loop is ecopy's own and may wait for a helper thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as helper:
            return helper.submit(asyncio.run, coroutine).result()
    coroutine.close()
    raise EcopyError(
        f"async handler {handler} was called through a synchronous bus from inside a running "
        f"event loop, which would block it; await app.async_command_bus / async_event_bus / "
        f"async_query_bus (or take AsyncCommandBus, AsyncEventBus, AsyncQueryBus as a "
        f"parameter) instead"
    )


def awaited(function: Callable[..., Any], handler: str) -> Callable[..., Any]:
    """``function`` itself, or, for an ``async def``, a function that awaits it."""
    if not inspect.iscoroutinefunction(function):
        return function

    def call(*arguments: Any) -> Any:
        return run_coroutine(function(*arguments), handler)

    return call
