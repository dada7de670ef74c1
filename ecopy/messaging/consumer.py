"""Polling consumers: take messages from a pollable channel and hand them to endpoints.

A consumer never loses a message. A handler failure goes to the consumer's error handling:
retried later through the channel, then dead-lettered; without error handling, the channel's
final-failure strategy applies. Bytes that are not a readable message, and messages addressed
to no known endpoint, go straight to the dead-letter store with the reason.
"""

from __future__ import annotations

import logging
import resource
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, Protocol

from ecopy.errors import EcopyError
from ecopy.messaging.channel import (
    FinalFailureStrategy,
    MessageChannel,
    PollableChannel,
    UndeliverableMessage,
)
from ecopy.messaging.clock import Clock
from ecopy.messaging.dead_letter import (
    DEAD_LETTER_CHANNEL,
    EXCEPTION_MESSAGE,
    EXCEPTION_TRACEBACK,
    EXCEPTION_TYPE,
    DeadLetterStore,
    new_entry,
)
from ecopy.messaging.delivery import CHANNEL, DELIVER_AT, ENDPOINT_ID, RETRY_COUNT
from ecopy.messaging.endpoint import Invoker
from ecopy.messaging.message import Message
from ecopy.messaging.retry import ErrorHandlerConfiguration
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import TransactionManager

logger = logging.getLogger("ecopy.consumer")
_Settlement = Literal["settled", "returned", "stop"]


@dataclass(frozen=True, kw_only=True)
class ConsumerLimits:
    """When a consumer run stops. ``None`` means no limit."""

    handled_message_limit: int | None = None
    execution_time_limit_ms: int | None = None
    memory_limit_mb: int | None = None
    finish_when_no_messages: bool = False
    stop_on_error: bool = False
    poll_interval_ms: int = 100


@dataclass(frozen=True)
class PollingMetadata:
    """Per-consumer settings: default run limits and the error handling to use.

    ``PollingMetadata("orders", handled_message_limit=100, error_channel="ordersErrors")``
    """

    endpoint_id: str
    handled_message_limit: int | None = None
    execution_time_limit_ms: int | None = None
    memory_limit_mb: int | None = None
    stop_on_error: bool = False
    finish_when_no_messages: bool = False
    error_channel: str | None = None
    poll_interval_ms: int = 100


class Consumer(Protocol):
    name: str

    def run(self, limits: ConsumerLimits) -> int: ...

    def stop(self) -> None: ...


class NoEndpointForMessage(EcopyError):
    pass


def memory_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ConsumerLoop:
    """The run loop shared by every consumer: limits, graceful stop, idle polling."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self._stopping = False

    def stop(self) -> None:
        """Stop after the message in hand."""
        self._stopping = True

    def loop(self, limits: ConsumerLimits, step: Callable[[], bool | None]) -> int:
        """Call ``step`` until a limit is reached. ``step`` returns ``None`` when there was
        nothing to do, ``True`` when it handled a message, ``False`` when one failed."""
        self._stopping = False
        handled = 0
        started = time.monotonic()
        while not self._stopping:
            if limits.handled_message_limit is not None and handled >= limits.handled_message_limit:
                break
            if limits.execution_time_limit_ms is not None and (
                (time.monotonic() - started) * 1000 >= limits.execution_time_limit_ms
            ):
                break
            if limits.memory_limit_mb is not None and memory_mb() >= limits.memory_limit_mb:
                logger.warning("consumer %s stops: memory limit reached", self.name)
                break
            outcome = step()
            if outcome is None:
                if limits.finish_when_no_messages:
                    break
                self.clock.sleep(limits.poll_interval_ms / 1000)
                continue
            handled += 1
            if outcome is False and limits.stop_on_error:
                break
        return handled


class PollingConsumer(ConsumerLoop):
    """Consumes one pollable channel for the endpoints that listen on it."""

    def __init__(
        self,
        name: str,
        channel: PollableChannel,
        *,
        clock: Clock,
        serializer: MessageSerializer,
        dead_letters: DeadLetterStore,
        handlers: Mapping[str, Invoker] | None = None,
        default: Invoker | None = None,
        forwards: Mapping[str, MessageChannel] | None = None,
        error_handling: ErrorHandlerConfiguration | None = None,
        dead_letter_channel: Callable[[str], MessageChannel] | None = None,
        final_failure: FinalFailureStrategy = "stop",
        metadata: PollingMetadata | None = None,
        transactions: TransactionManager | None = None,
    ) -> None:
        """``handlers`` (and ``default``) must acknowledge the message themselves, inside
        their transaction, when the channel has ``acknowledge``; see ``build_consumers``."""
        super().__init__(name, clock)
        self.channel = channel
        self.handlers = dict(handlers or {})
        self.default = default
        self.forwards = dict(forwards or {})
        self.error_handling = error_handling
        self.final_failure = final_failure
        self.metadata = metadata or PollingMetadata(name)
        self._serializer = serializer
        self._dead_letters = dead_letters
        self._channel_named = dead_letter_channel
        self._transaction: Callable[[], AbstractContextManager[object]] = (
            transactions.transaction if transactions is not None else nullcontext
        )
        # Channels that keep a message until it is settled (a database queue) have these.
        self._acknowledge: Callable[[Message], None] | None = getattr(channel, "acknowledge", None)
        self._release_unhandled: Callable[[], None] | None = getattr(
            channel, "release_unhandled", None
        )

    def run(self, limits: ConsumerLimits) -> int:
        try:
            return self.loop(limits, self.step)
        finally:
            if self._release_unhandled is not None:
                self._release_unhandled()

    def step(self) -> bool | None:
        try:
            message = self.channel.receive()
        except UndeliverableMessage as undeliverable:
            with self._transaction():
                self._store_dead_letter(undeliverable.body, None, None, undeliverable.reason, "")
                if undeliverable.acknowledge is not None:
                    undeliverable.acknowledge()
            logger.error("consumer %s: %s; stored as a dead letter", self.name, undeliverable)
            return False
        if message is None:
            return None
        try:
            self._process(message)
        except Exception as error:
            self._failed(message, error)
            return False
        return True

    def _process(self, message: Message) -> None:
        endpoint_id = message._headers.get(ENDPOINT_ID)
        forward = self.forwards.get(endpoint_id) if endpoint_id is not None else None
        if forward is not None:
            # No transaction: the next channel (a broker, say) cannot join one anyway, and a
            # database queue may then acknowledge forwarded messages in batches. A relay that
            # dies in between forwards again after the visibility timeout: at least once.
            forward.send(message.with_headers({CHANNEL: forward.name}))
            if self._acknowledge is not None:
                self._acknowledge(message)
            return
        handler = self.handlers.get(endpoint_id) if endpoint_id is not None else self.default
        if handler is None:
            raise NoEndpointForMessage(
                f"message {message.id} on channel {self.channel.name!r} is addressed to "
                f"endpoint {endpoint_id!r}, which this application does not have here"
            )
        handler(message)

    def _failed(self, message: Message, error: Exception) -> None:
        details = traceback.format_exc()
        # The retry, dead letter or requeue commits with the acknowledgement of the original.
        with self._transaction():
            settled = self._settle(message, error, details)
            if settled == "settled" and self._acknowledge is not None:
                self._acknowledge(message)
        if settled == "stop":
            raise error

    def _settle(self, message: Message, error: Exception, details: str) -> _Settlement:
        """Deal with a failed message: ``"settled"`` (retried, dead-lettered or dropped),
        ``"returned"`` (back in the channel as it was: not to be acknowledged) or ``"stop"``
        (returned, and the consumer must stop)."""
        handling = self.error_handling
        if isinstance(error, NoEndpointForMessage) or (
            handling is not None and handling.retry is None
        ):
            self._dead_letter(message, error, details)
            return "settled"
        if handling is not None and handling.retry is not None:
            retries = int(message._headers.get(RETRY_COUNT, 0) or 0)
            if handling.retry.can_retry(retries):
                delay = handling.retry.delay_ms(retries + 1)
                logger.warning(
                    "consumer %s: message %s failed (%s: %s); retry %d in %d ms",
                    self.name,
                    message.id,
                    type(error).__name__,
                    error,
                    retries + 1,
                    delay,
                )
                self.channel.send(
                    message.with_headers(
                        {RETRY_COUNT: retries + 1, DELIVER_AT: self.clock.now() + delay / 1000}
                    )
                )
                return "settled"
            self._dead_letter(message, error, details)
            return "settled"
        return self._final_failure(message, error)

    def _dead_letter(self, message: Message, error: Exception, details: str) -> None:
        handling = self.error_handling
        target = handling.dead_letter_channel if handling is not None else DEAD_LETTER_CHANNEL
        failed = message.with_headers(
            {
                EXCEPTION_TYPE: type(error).__qualname__,
                EXCEPTION_MESSAGE: str(error),
                EXCEPTION_TRACEBACK: details,
            }
        )
        logger.error(
            "consumer %s: message %s failed for good (%s: %s); sent to %s",
            self.name,
            message.id,
            type(error).__name__,
            error,
            target or "nowhere (dropped)",
        )
        if target is None:
            return
        if (
            target != DEAD_LETTER_CHANNEL
            and self._channel_named is not None
            and not isinstance(error, NoEndpointForMessage)
        ):
            # Addressed to the dead-letter channel's own handler, not the one that failed.
            self._channel_named(target).send(
                failed.with_headers({ENDPOINT_ID: None, CHANNEL: target, RETRY_COUNT: None})
            )
            return
        self._store_dead_letter(
            self._serializer.serialize(failed),
            message.id,
            message._headers.get(ENDPOINT_ID),
            error,
            details,
        )

    def _store_dead_letter(
        self,
        body: str,
        message_id: str | None,
        endpoint_id: str | None,
        error: BaseException | str,
        details: str,
    ) -> None:
        self._dead_letters.add(
            new_entry(
                channel=self.channel.name,
                endpoint_id=endpoint_id,
                message_id=message_id,
                body=body,
                error=error,
                traceback=details,
                failed_at=self.clock.now(),
            )
        )

    def _final_failure(self, message: Message, error: Exception) -> _Settlement:
        strategy = self.final_failure
        logger.error(
            "consumer %s: message %s failed (%s: %s); no error handling configured, final "
            "failure strategy %r",
            self.name,
            message.id,
            type(error).__name__,
            error,
            strategy,
        )
        if strategy == "ignore":
            return "settled"
        requeue = getattr(self.channel, "return_message", None)
        if strategy == "resend" or requeue is None:
            self.channel.send(message)
            if strategy != "stop":
                return "settled"
            if self._acknowledge is not None:
                self._acknowledge(message)  # the copy sent replaces it
            return "stop"
        requeue(message)
        return "stop" if strategy == "stop" else "returned"


__all__ = [
    "Consumer",
    "ConsumerLimits",
    "ConsumerLoop",
    "PollingConsumer",
    "PollingMetadata",
]
