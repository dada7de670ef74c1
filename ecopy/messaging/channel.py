"""Channels: how messages travel between gateways and endpoints.

* ``DirectChannel`` — point to point, in the caller's thread; ``send`` returns the reply.
* ``PublishSubscribeChannel`` — every subscriber gets the message, in order.
* ``InMemoryQueue`` — a pollable queue; a consumer takes messages from it.

``QueueChannel(name)`` is the configuration object that declares an in-memory queue.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ecopy.errors import EcopyError
from ecopy.messaging.clock import Clock
from ecopy.messaging.delivery import NO_OPTIONS, addressed, delivery_of
from ecopy.messaging.message import DELIVERY_DELAY, PRIORITY, TIME_TO_LIVE, Message
from ecopy.messaging.serialization import MessageSerializer

if TYPE_CHECKING:
    from ecopy.messaging.status import ChannelStatus

logger = logging.getLogger("ecopy.channel")

Subscriber = Callable[[Message], Any]
FinalFailureStrategy = Literal["stop", "resend", "release", "ignore"]


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
            f"handler for it with @internal_handler({self.name!r})"
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


class ClaimLost(EcopyError):
    """The channel no longer holds a message for the consumer that is settling it: its claim
    expired (its visibility timeout passed) and another consumer took the message.

    Raised by an acknowledgement made inside the handler's transaction, so that transaction
    rolls back: the message's new holder handles it, and its effects are committed once."""

    def __init__(self, channel: str, message_id: str, reason: str) -> None:
        self.channel = channel
        self.message_id = message_id
        super().__init__(f"channel {channel!r} no longer holds message {message_id}: {reason}")


class UndeliverableMessage(EcopyError):
    """Bytes taken from a channel could not be read as a message; they are not lost: the
    consumer stores them as a dead letter with this reason."""

    def __init__(
        self,
        channel: str,
        body: str,
        reason: str,
        acknowledge: Callable[[], None] | None = None,
    ) -> None:
        self.channel = channel
        self.body = body
        self.reason = reason
        # Removes the bytes from a channel that keeps messages until they are settled.
        self.acknowledge = acknowledge
        super().__init__(f"undeliverable message on channel {channel!r}: {reason}")


class InMemoryQueue:
    """A pollable in-memory queue that behaves like a broker queue.

    Messages are serialized on ``send`` and deserialized on ``receive``, exactly as across a
    process boundary. Delivery headers are honoured: ``ecopy.deliver_at`` (not before),
    ``ecopy.expires_at`` (dropped and logged after), ``ecopy.priority`` (higher first; FIFO
    within a priority).
    """

    final_failure_strategy: FinalFailureStrategy = "stop"

    def __init__(self, name: str, serializer: MessageSerializer, clock: Clock) -> None:
        self.name = name
        self._serializer = serializer
        self._clock = clock
        self._lock = threading.Lock()
        self._ready: list[tuple[int, int, str, float | None]] = []
        self._delayed: list[tuple[float, int, int, str, float | None]] = []
        self._sequence = itertools.count()
        self._front = itertools.count(-1, -1)

    def send(self, message: Message) -> None:
        own = message._headers
        if DELIVERY_DELAY in own or TIME_TO_LIVE in own or PRIORITY in own:  # sent straight here
            message = addressed(message, {}, NO_OPTIONS, self._clock.now())
        due, expires_at, priority = delivery_of(message)
        self.send_serialized(
            self._serializer.serialize(message),
            deliver_at=due,
            expires_at=expires_at,
            priority=priority,
        )

    def send_serialized(
        self,
        body: str,
        *,
        deliver_at: float | None = None,
        expires_at: float | None = None,
        priority: int = 0,
    ) -> None:
        with self._lock:
            sequence = next(self._sequence)
            if deliver_at is not None and deliver_at > self._clock.now():
                heapq.heappush(self._delayed, (deliver_at, -priority, sequence, body, expires_at))
            else:
                heapq.heappush(self._ready, (-priority, sequence, body, expires_at))

    def receive(self) -> Message | None:
        """The next due message, or ``None``; raises ``UndeliverableMessage`` for bytes that
        are not a readable message (they are removed from the queue)."""
        body = self._take()
        if body is None:
            return None
        try:
            return self._serializer.deserialize(body)
        except EcopyError as error:
            raise UndeliverableMessage(self.name, body, str(error)) from error

    def _take(self) -> str | None:
        with self._lock:
            now = self._clock.now()
            while self._delayed and self._delayed[0][0] <= now:
                _, priority, sequence, body, expires_at = heapq.heappop(self._delayed)
                heapq.heappush(self._ready, (priority, sequence, body, expires_at))
            while self._ready:
                _, _, body, expires_at = heapq.heappop(self._ready)
                if expires_at is not None and expires_at <= now:
                    logger.warning("channel %s dropped an expired message: %.200s", self.name, body)
                    continue
                return body
            return None

    def return_message(self, message: Message) -> None:
        """Put a message that could not be handled back at the head of the queue."""
        _, expires_at, priority = delivery_of(message)
        body = self._serializer.serialize(message)
        with self._lock:
            heapq.heappush(self._ready, (-priority, next(self._front), body, expires_at))

    def channel_status(self) -> ChannelStatus:
        """The messages waiting and due now (see ``ecopy.messaging.status``). In flight is
        always 0: ``receive`` hands a message over for good, there is no claim to hold."""
        from ecopy.messaging.status import ChannelStatus  # status.py builds on this module

        with self._lock:
            now = self._clock.now()
            ready = [expires for *_, expires in self._ready if expires is None or expires > now]
            delayed = [
                deliver_at
                for deliver_at, *_, expires in self._delayed
                if expires is None or expires > now
            ]
        due = len(ready) + sum(1 for deliver_at in delayed if deliver_at <= now)
        return ChannelStatus(self.name, waiting=len(ready) + len(delayed), due=due, in_flight=0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ready) + len(self._delayed)

    def __repr__(self) -> str:
        return f"InMemoryQueue({self.name!r}, {len(self)} messages)"


@dataclass(frozen=True)
class QueueChannel:
    """Declares an in-memory pollable channel.

    ``final_failure_strategy`` says what its consumer does with a failed message when no
    ``ErrorHandlerConfiguration`` takes it: ``"stop"`` (the default: put it back at the head
    and raise, so nothing is lost or skipped), ``"resend"`` (to the end of the queue),
    ``"release"`` (back at the head, and go on) or ``"ignore"`` (drop it, logged).

    >>> ServiceConfiguration(extensions=[QueueChannel("orders")])  # doctest: +SKIP
    """

    name: str
    final_failure_strategy: FinalFailureStrategy = "stop"

    def __post_init__(self) -> None:
        if self.final_failure_strategy not in ("stop", "resend", "release", "ignore"):
            raise ValueError(
                f"QueueChannel({self.name!r}) final_failure_strategy must be 'stop', 'resend', "
                f"'release' or 'ignore', got {self.final_failure_strategy!r}"
            )

    def build(self, serializer: MessageSerializer, clock: Clock) -> InMemoryQueue:
        queue = InMemoryQueue(self.name, serializer, clock)
        queue.final_failure_strategy = self.final_failure_strategy
        return queue
