"""Channels: how messages travel between gateways and endpoints.

* ``DirectChannel`` — point to point, in the caller's thread; ``send`` returns the reply.
* ``PublishSubscribeChannel`` — every subscriber gets the message, in order.
* ``InMemoryQueue`` — a pollable queue; a consumer takes messages from it.

``QueueChannel(name)`` is the configuration object that declares an in-memory queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ecopy.errors import EcopyError
from ecopy.messaging.message import Message

Subscriber = Callable[[Message], Any]


@runtime_checkable
class MessageChannel(Protocol):
    name: str

    def send(self, message: Message) -> Any: ...


@runtime_checkable
class PollableChannel(MessageChannel, Protocol):
    def receive(self) -> Message | None:
        """The next message, or ``None`` when there is none."""


class DispatchError(EcopyError):
    """A message reached a channel that nobody listens to."""


class DirectChannel:
    """Point-to-point: exactly one subscriber handles each message in the sender's thread."""

    __slots__ = ("name", "send")

    def __init__(self, name: str, subscriber: Subscriber | None = None) -> None:
        self.name = name
        self.send: Subscriber = subscriber or self._nobody

    def subscribe(self, subscriber: Subscriber) -> None:
        self.send = subscriber

    def _nobody(self, message: Message) -> Any:
        raise DispatchError(
            f"Channel {self.name!r} has no subscriber for message {message.id}; declare a "
            f"handler with input channel {self.name!r}"
        )

    def __repr__(self) -> str:
        return f"DirectChannel({self.name!r})"


class PublishSubscribeChannel:
    """Every subscriber receives each message, in subscription order."""

    def __init__(self, name: str, subscribers: list[Subscriber] | None = None) -> None:
        self.name = name
        self.subscribers: list[Subscriber] = list(subscribers or [])

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def send(self, message: Message) -> None:
        for subscriber in self.subscribers:
            subscriber(message)

    def __repr__(self) -> str:
        return f"PublishSubscribeChannel({self.name!r}, {len(self.subscribers)} subscribers)"


class InMemoryQueue:
    """A pollable in-memory queue (first in, first out)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._messages: deque[Message] = deque()

    def send(self, message: Message) -> None:
        self._messages.append(message)

    def receive(self) -> Message | None:
        return self._messages.popleft() if self._messages else None

    def return_message(self, message: Message) -> None:
        """Put a message that could not be handled back at the head of the queue."""
        self._messages.appendleft(message)

    def __len__(self) -> int:
        return len(self._messages)

    def __repr__(self) -> str:
        return f"InMemoryQueue({self.name!r}, {len(self._messages)} messages)"


@dataclass(frozen=True)
class QueueChannel:
    """Declares an in-memory pollable channel.

    >>> ServiceConfiguration(extensions=[QueueChannel("orders")])  # doctest: +SKIP
    """

    name: str

    def build(self) -> InMemoryQueue:
        return InMemoryQueue(self.name)
