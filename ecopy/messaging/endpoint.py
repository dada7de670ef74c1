"""Endpoints: a handler compiled, at bootstrap, into one ready-to-call chain.

``Endpoint.handle(message)`` marks the message as the one being handled (for header
propagation), runs the interceptor chain around the handler, notes the handler on any
exception, and forwards a non-``None`` result to the output channel when there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ecopy.messaging.context import current_message, outgoing_headers
from ecopy.messaging.message import Message

#: How the note on an exception raised by an interceptor starts (the handler's note is then
#: not added: the handler did not raise it).
INTERCEPTOR_NOTE = "ecopy: raised by interceptor "

Invoker = Callable[[Message], Any]

# Ranks order synchronous event handlers of equal priority (DESIGN §3.2).
RANK_AGGREGATE = 0
RANK_SAGA = 1
RANK_PROJECTION = 1
RANK_SERVICE = 2


@dataclass(frozen=True, eq=False)
class EndpointInfo:
    """What is known about an endpoint: used for pointcuts, errors, ``ecopy list``/``graph``."""

    endpoint_id: str
    kind: str
    handler: str
    owner: type[Any] | None = None
    function: Callable[..., Any] | None = None
    routes: tuple[str, ...] = ()
    input_channel: str = ""
    output_channel: str | None = None
    priority: int = 0
    rank: int = RANK_SERVICE
    markers: tuple[object, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def marker(self, marker_type: type[Any]) -> Any:
        """The first marker of ``marker_type`` on the handler (method first, then class)."""
        for found in self.markers:
            if isinstance(found, marker_type):
                return found
        return None


class Sender(Protocol):
    def send(self, message: Message) -> Any: ...


class Endpoint:
    """A compiled endpoint. ``handle`` is the whole hot path for one message."""

    __slots__ = ("handle", "info")

    def __init__(self, info: EndpointInfo, chain: Invoker, output: Sender | None = None) -> None:
        self.info = info
        self.handle: Invoker = _compile_handle(info, chain, output)

    @classmethod
    def sending(cls, info: EndpointInfo, chain: Invoker) -> Endpoint:
        """The caller's half of an asynchronous endpoint: ``handle`` only sends the message
        on (it does not mark it as handled)."""
        endpoint = cls.__new__(cls)
        endpoint.info = info
        endpoint.handle = chain
        return endpoint

    def __repr__(self) -> str:
        return f"<Endpoint {self.info.endpoint_id} ({self.info.handler})>"


def _compile_handle(info: EndpointInfo, chain: Invoker, output: Sender | None) -> Invoker:
    set_current = current_message.set
    reset_current = current_message.reset
    note = f"ecopy: raised by handler {info.handler} (endpoint {info.endpoint_id!r})"

    def handle(message: Message) -> Any:
        token = set_current(message)
        try:
            try:
                result = chain(message)
            except Exception as error:
                notes = getattr(error, "__notes__", ())
                # An interceptor's error is noted as the interceptor's (see interceptor.py).
                if note not in notes and not any(n.startswith(INTERCEPTOR_NOTE) for n in notes):
                    error.add_note(note)
                raise
            if output is not None and result is not None:
                return output.send(Message(result, outgoing_headers(None)))
            return result
        finally:
            reset_current(token)

    return handle
