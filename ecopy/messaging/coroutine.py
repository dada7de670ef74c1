"""Running ``async def`` handlers from the synchronous core.

The core is synchronous; an ``async def`` handler is awaited on an event loop that belongs to
the calling thread (one per thread, reused), so a consumer awaits all its handlers on one
loop. Calling a synchronous bus from inside a running event loop cannot block that loop: use
the awaitable bus facades there instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from ecopy.errors import EcopyError

_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """The event loop that runs coroutine handlers in this thread."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def run_coroutine(coroutine: Coroutine[Any, Any, Any], handler: str) -> Any:
    """Await ``coroutine`` to completion and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return thread_loop().run_until_complete(coroutine)
    coroutine.close()
    raise EcopyError(
        f"async handler {handler} was called through a synchronous bus from inside a running "
        f"event loop, which would block it; await the Async bus facade (AsyncCommandBus, "
        f"AsyncEventBus, AsyncQueryBus) instead"
    )
