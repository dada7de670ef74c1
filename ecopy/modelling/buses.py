"""The buses: gateways that turn a call into a message and dispatch it.

``CommandBus`` and ``QueryBus`` route to exactly one endpoint and return its result;
``EventBus`` routes to every subscribed endpoint. Interceptors whose pointcut selects a bus
class wrap the whole dispatch. Called from inside a running asyncio event loop, which they
would block, they warn with ``BlockingCallInEventLoop``; the ``Async*`` facades are for there.
"""

from __future__ import annotations

import asyncio
import time
from asyncio import _get_running_loop
from collections.abc import Callable, Mapping
from typing import Any

from ecopy.messaging.context import current_message, propagated_headers
from ecopy.messaging.coroutine import warn_blocking_call
from ecopy.messaging.delivery import ROUTING_KEY
from ecopy.messaging.endpoint import Invoker
from ecopy.messaging.message import TIMESTAMP, Message, build_message
from ecopy.modelling.routing import EventRouter, PointToPointRouter


def _unwired(bus: str) -> Invoker:
    def not_ready(message: Message) -> Any:
        raise RuntimeError(
            f"this {bus} belongs to no application, so message {message.id} cannot be sent: "
            f"use the one bootstrap() returns (app.{_snake(bus)}), or take {bus} as a "
            f"parameter of a handler"
        )

    return not_ready


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class _Gateway:
    """Turns calls into messages for a compiled dispatch chain (set by bootstrap), stamped by
    the application's clock (also set by bootstrap)."""

    __slots__ = ("_dispatch", "_now")

    def __init__(self) -> None:
        self._dispatch: Invoker = _unwired(type(self).__name__)
        self._now: Callable[[], float] = time.time

    #: The public method that sends a payload (``send``, or ``publish`` for events).
    _method = "send"

    def _send(self, payload: Any, headers: Mapping[str, Any] | None) -> Any:
        handled = current_message.get()
        if handled is None:
            # Sent by application code, not by a handler: from inside a running event loop,
            # which this call would block, it warns (checked here only, so nested sends of
            # handlers pay nothing for it).
            if _get_running_loop() is not None:
                warn_blocking_call(self, self._method)
            outgoing = dict(headers) if headers else {}
        else:
            outgoing = propagated_headers(handled, headers)
        if TIMESTAMP not in outgoing:
            outgoing[TIMESTAMP] = self._now()
        return self._dispatch(build_message(payload, outgoing))

    def _send_routed(
        self, routing_key: str, payload: Any, headers: Mapping[str, Any] | None
    ) -> Any:
        handled = current_message.get()
        if handled is None:
            if _get_running_loop() is not None:
                warn_blocking_call(self, f"{self._method}_with_routing")
            routed = dict(headers) if headers else {}
        else:
            routed = propagated_headers(handled, headers)
        routed[ROUTING_KEY] = routing_key
        if TIMESTAMP not in routed:
            routed[TIMESTAMP] = self._now()
        return self._dispatch(build_message(payload, routed))


class CommandBus(_Gateway):
    """Sends a command to its handler and returns the handler's result.

    >>> app.command_bus.send(PlaceOrder("o-1"))  # doctest: +SKIP
    """

    __slots__ = ()

    def send(self, command: Any, headers: Mapping[str, Any] | None = None) -> Any:
        return self._send(command, headers)

    def send_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> Any:
        return self._send_routed(routing_key, payload, headers)


class QueryBus(_Gateway):
    """Sends a query to its handler and returns the answer."""

    __slots__ = ()

    def send(self, query: Any, headers: Mapping[str, Any] | None = None) -> Any:
        return self._send(query, headers)

    def send_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> Any:
        return self._send_routed(routing_key, payload, headers)


class EventBus(_Gateway):
    """Publishes an event to every handler subscribed to it (none is fine)."""

    __slots__ = ()
    _method = "publish"

    def publish(self, event: Any, headers: Mapping[str, Any] | None = None) -> None:
        self._send(event, headers)

    def publish_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> None:
        self._send_routed(routing_key, payload, headers)


def point_to_point_dispatch(router: PointToPointRouter) -> Invoker:
    for_payload = router.for_payload
    for_key = router.for_key

    def dispatch(message: Message) -> Any:
        key = message._headers.get(ROUTING_KEY)
        if key is None:
            return for_payload(message._payload).handle(message)
        return for_key(key).handle(message)

    return dispatch


def event_dispatch(router: EventRouter) -> Invoker:
    for_payload = router.for_payload
    for_key = router.for_key

    def dispatch(message: Message) -> None:
        key = message._headers.get(ROUTING_KEY)
        endpoints = for_payload(message._payload) if key is None else for_key(key)
        for endpoint in endpoints:
            endpoint.handle(message)

    return dispatch


class AsyncCommandBus:
    """The command bus for asyncio code (e.g. FastAPI): ``await bus.send(command)``.

    The synchronous core runs in a worker thread, so the event loop is never blocked;
    headers propagate as usual (the context is copied to the thread).
    """

    def __init__(self, bus: CommandBus) -> None:
        self._bus = bus

    async def send(self, command: Any, headers: Mapping[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self._bus.send, command, headers)

    async def send_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> Any:
        return await asyncio.to_thread(self._bus.send_with_routing, routing_key, payload, headers)


class AsyncQueryBus:
    """The query bus for asyncio code: ``await bus.send(query)``."""

    def __init__(self, bus: QueryBus) -> None:
        self._bus = bus

    async def send(self, query: Any, headers: Mapping[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self._bus.send, query, headers)

    async def send_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> Any:
        return await asyncio.to_thread(self._bus.send_with_routing, routing_key, payload, headers)


class AsyncEventBus:
    """The event bus for asyncio code: ``await bus.publish(event)``."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    async def publish(self, event: Any, headers: Mapping[str, Any] | None = None) -> None:
        await asyncio.to_thread(self._bus.publish, event, headers)

    async def publish_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> None:
        await asyncio.to_thread(self._bus.publish_with_routing, routing_key, payload, headers)
