"""Running ``async def`` handlers from the synchronous core.

The core is synchronous; an ``async def`` handler is awaited on an event loop that belongs to
the calling thread (one per thread, reused), so a consumer awaits all its handlers on one
loop. A synchronous bus called from inside a running event loop blocks that loop: it warns
(``BlockingCallInEventLoop``), and the awaitable bus facades are the way to call from there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from ecopy.errors import BlockingCallInEventLoop, EcopyError
from ecopy.messaging.context import current_message

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


_AWAITABLE_FACADES = {
    "CommandBus": ("async_command_bus", "AsyncCommandBus"),
    "QueryBus": ("async_query_bus", "AsyncQueryBus"),
    "EventBus": ("async_event_bus", "AsyncEventBus"),
}


def warn_blocking_call(bus: object, method: str) -> None:
    """Warn that ``bus.method`` was called from inside a running event loop and blocks it.

    The bus calls this only when a loop is running in its thread (one cheap check on the hot
    path). A call made while a message is handled is not the caller's to fix: its handler was
    dispatched by the core (on a worker thread, or awaited on ecopy's own loop), and the call
    that blocked the loop, if any, has warned already.
    """
    if current_message.get() is not None:
        return
    # The public bus class, also for a subclass (such as a web integration's wrapper).
    kind = next(c.__name__ for c in type(bus).__mro__ if c.__name__ in _AWAITABLE_FACADES)
    attribute, facade = _AWAITABLE_FACADES[kind]
    warnings.warn(
        f"{kind}.{method} was called from inside a running asyncio event loop: the handlers "
        f"run in this thread and block the loop, so nothing else on it (other requests) runs "
        f"until they finish. Await the awaitable bus instead (await app.{attribute}.{method}"
        f"(...), or take {facade} as a parameter), or run the call in a thread pool "
        f"(await asyncio.to_thread(...), or a plain def endpoint in FastAPI)",
        BlockingCallInEventLoop,
        stacklevel=_first_frame_outside_ecopy(),
    )


def _first_frame_outside_ecopy() -> int:
    """The ``stacklevel`` that points a warning raised here at the caller's code, past ecopy's
    own frames (the bus, a facade, a web integration's wrapper)."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "ecopy" and not module.startswith("ecopy."):
            break
        level += 1
        frame = frame.f_back
    return level
