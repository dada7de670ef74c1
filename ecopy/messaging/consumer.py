"""Polling consumers: take messages from a pollable channel and hand them to endpoints.

A consumer never loses a message and never stops on bad input. A handler failure goes to the
consumer's error handling: retried later through the channel, then dead-lettered; without
error handling, the channel's final-failure strategy applies. A message that can never
succeed — bytes that are not a readable message, a message addressed to no endpoint here, a
conversion failure, a ``NonRetryableError`` — goes to the dead letters with the reason,
whatever the error handling says. A lost connection is never the message's fault: the message
is given back and handled again, and the consumer pauses with back-off for as long as the
outage lasts (see ``ecopy.messaging.outage``).
"""

from __future__ import annotations

import copy
import enum
import logging
import resource
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, Protocol

from ecopy.errors import EcopyError, NonRetryableError
from ecopy.messaging.channel import (
    ClaimLost,
    FinalFailureStrategy,
    MessageChannel,
    PollableChannel,
    UndeliverableMessage,
)
from ecopy.messaging.clock import Clock, SystemClock
from ecopy.messaging.dead_letter import (
    DEAD_LETTER_CHANNEL,
    EXCEPTION_MESSAGE,
    EXCEPTION_TRACEBACK,
    EXCEPTION_TYPE,
    DeadLetterStore,
    new_entry,
)
from ecopy.messaging.delivery import CHANNEL, DELIVER_AT, ENDPOINT_ID, RETRY_COUNT, ROUTING_KEY
from ecopy.messaging.endpoint import Invoker
from ecopy.messaging.message import Message
from ecopy.messaging.outage import Outage, TransientErrors, caused_by, describe, never
from ecopy.messaging.retry import ErrorHandlerConfiguration
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import TransactionManager

logger = logging.getLogger("ecopy.consumer")
_Settlement = Literal["settled", "returned", "stop"]


class Step(enum.Enum):
    """What one step of a consumer did."""

    IDLE = "idle"  # nothing was due
    HANDLED = "handled"  # a message was handled
    FAILED = "failed"  # a message failed: retried, dead-lettered or given back
    SKIPPED = "skipped"  # nothing to count: another consumer holds the message, or a pause


# The members as module globals, for the hot path (an Enum member lookup costs ~70 ns).
_HANDLED, _IDLE, _SKIPPED = Step.HANDLED, Step.IDLE, Step.SKIPPED


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


class NoEndpointForMessage(NonRetryableError):
    """A message on a channel is addressed to an endpoint this application does not have."""


class ConsumerLimitError(EcopyError):
    """A consumer cannot run within the limits it was given."""


PAUSE_SLICE_S = 0.1
"""A pause is slept in slices this long, so that a stop request ends it promptly."""


def memory_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ConsumerLoop:
    """The run loop shared by every consumer: limits, graceful stop, idle polling, and
    pauses with back-off while the infrastructure is away."""

    def __init__(self, name: str, clock: Clock, transient: TransientErrors = never) -> None:
        self.name = name
        self.clock = clock
        self.transient = transient
        self._stopping = False
        self._outage = Outage(name)

    def stop(self) -> None:
        """Stop after the message in hand (or before the first one, when not running yet).

        Called from a signal handler: it only sets a flag. (Setting a ``threading.Event``
        there would deadlock when the signal arrives while the same thread holds the event's
        lock inside ``Event.wait``.)"""
        self._stopping = True

    def is_transient(self, error: BaseException) -> bool:
        return caused_by(error, self.transient)

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``; a stop request ends the wait within a tenth of a second (a test
        clock just moves)."""
        if seconds <= 0:
            return
        if not isinstance(self.clock, SystemClock):
            self.clock.sleep(seconds)
            return
        until = time.monotonic() + seconds
        while not self._stopping and (left := until - time.monotonic()) > 0:
            time.sleep(min(left, PAUSE_SLICE_S))

    def loop(self, limits: ConsumerLimits, step: Callable[[], Step]) -> int:
        """Call ``step`` until a limit is reached or the consumer is stopped; returns how many
        messages were handled (failed ones count). A transient error escaping ``step`` (the
        database or broker is away) pauses the loop with back-off, never ends it."""
        self._check_memory(limits)
        handled = 0
        started = time.monotonic()
        outage = self._outage
        skipped, idle, failed = Step.SKIPPED, Step.IDLE, Step.FAILED  # enum lookups are slow
        try:
            while not self._stopping:
                if (
                    limits.handled_message_limit is not None
                    and handled >= limits.handled_message_limit
                ):
                    break
                if limits.execution_time_limit_ms is not None and (
                    (time.monotonic() - started) * 1000 >= limits.execution_time_limit_ms
                ):
                    break
                if limits.memory_limit_mb is not None and memory_mb() >= limits.memory_limit_mb:
                    logger.warning("consumer %s stops: memory limit reached", self.name)
                    break
                try:
                    outcome = step()
                except Exception as error:
                    if not self.is_transient(error):
                        raise
                    self.pause(outage.failed(error))
                    continue
                if outcome is skipped:
                    continue
                if outage.since is not None:
                    outage.recovered()
                if outcome is idle:
                    if limits.finish_when_no_messages:
                        break
                    self.pause(limits.poll_interval_ms / 1000)
                    continue
                handled += 1
                if outcome is failed and limits.stop_on_error:
                    break
        finally:
            self._stopping = False
        return handled

    def _check_memory(self, limits: ConsumerLimits) -> None:
        limit = limits.memory_limit_mb
        if limit is None:
            return
        used = memory_mb()
        if used >= limit:
            raise ConsumerLimitError(
                f"consumer {self.name} cannot start: its memory limit ({limit} MB) is below "
                f"what this process has already used ({used:.0f} MB) before handling any "
                f"message; give a memory limit above {used:.0f} MB"
            )


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
        transient: TransientErrors = never,
        router: Callable[[Message], list[str]] | None = None,
    ) -> None:
        """``handlers`` (and ``default``) must acknowledge the message themselves, inside
        their transaction, when the channel has ``acknowledge``; see ``build_consumers``.
        ``transient`` tells the errors of a lost connection (the database's, the broker's)."""
        super().__init__(name, clock, transient)
        self.channel = channel
        self.handlers = dict(handlers or {})
        self.default = default
        self.forwards = dict(forwards or {})
        self.error_handling = error_handling
        self.final_failure = final_failure
        self.metadata = metadata or PollingMetadata(name)
        self._router = router
        self._serializer = serializer
        self._dead_letters = dead_letters
        self._channel_named = dead_letter_channel
        self._transaction: Callable[[], AbstractContextManager[object]] = (
            transactions.transaction if transactions is not None else nullcontext
        )
        # Channels that keep a message until it is settled (a database queue) have these.
        self._acknowledge: Callable[[Message], None] | None = getattr(channel, "acknowledge", None)
        self._return: Callable[[Message], None] | None = getattr(channel, "return_message", None)
        self._release_unhandled: Callable[[], None] | None = getattr(
            channel, "release_unhandled", None
        )

    def replica(self) -> PollingConsumer:
        """Another consumer of the same channel for the same endpoints, with a run state of its
        own (its stop flag, its outage back-off), to run this consumer in several threads at
        once: one replica per thread. One object must not run in two threads at a time, since a
        stop request, or the end of one run, would reach the other run half-way.

        The channel and the handlers are shared, so the channel must hand each message to one
        thread (``InMemoryQueue`` takes them under a lock; ``DbalQueue`` claims rows) and the
        services the handlers use must be safe to call from several threads."""
        twin = copy.copy(self)
        ConsumerLoop.__init__(twin, self.name, self.clock, self.transient)
        return twin

    def run(self, limits: ConsumerLimits) -> int:
        try:
            return self.loop(limits, self.step)
        finally:
            if self._release_unhandled is not None:
                self._release_unhandled()

    def step(self) -> Step:
        try:
            message = self.channel.receive()
        except UndeliverableMessage as undeliverable:
            self._undeliverable(undeliverable)
            return Step.FAILED
        if message is None:
            return _IDLE
        try:
            handled = self._process(message)
        except ClaimLost as lost:
            self._claim_lost(lost)
            return Step.SKIPPED
        except Exception as error:
            if self.is_transient(error):
                # The handling was cut short (its transaction rolled back): not the message's
                # fault. It goes back to the channel and is handled again, after a pause.
                self._give_back(message)
                self.pause(self._outage.failed(error, f"message {message.id} was interrupted"))
                return Step.SKIPPED
            return self._failed(message, error)
        return _HANDLED if handled else _SKIPPED

    def _undeliverable(self, undeliverable: UndeliverableMessage) -> None:
        logger.error("consumer %s: %s; stored as a dead letter", self.name, undeliverable)
        with self._transaction():
            self._store_dead_letter(undeliverable.body, None, None, undeliverable.reason, "")
            if undeliverable.acknowledge is not None:
                undeliverable.acknowledge()

    def _process(self, message: Message) -> bool:
        """Handle or forward ``message``; ``False`` when it was only addressed (below)."""
        endpoint_id = message._headers.get(ENDPOINT_ID)
        forward = self.forwards.get(endpoint_id) if self.forwards and endpoint_id else None
        if forward is not None:
            # No transaction: the next channel (a broker, say) cannot join one anyway, and a
            # database queue may then acknowledge forwarded messages in batches. A relay that
            # dies in between forwards again after the visibility timeout: at least once.
            forward.send(message.with_headers({CHANNEL: forward.name}))
            if self._acknowledge is not None:
                self._acknowledge(message)
            return True
        handler = self.handlers.get(endpoint_id) if endpoint_id is not None else self.default
        if handler is None:
            if endpoint_id is None:
                self._address(message)
                return False
            raise NoEndpointForMessage(
                f"message {message.id} on channel {self.channel.name!r} is addressed to "
                f"endpoint {endpoint_id!r}, which this application does not have on this "
                f"channel (a handler removed, renamed or moved while its messages were "
                f"queued); to handle such messages, give a handler on this channel "
                f"endpoint_id={endpoint_id!r}"
            )
        handler(message)
        return True

    def _address(self, message: Message) -> None:
        """A message that names no endpoint (from another producer) goes back to the channel
        as one copy for each endpoint here that takes it, by its routing key or its type, as
        the application's own sends do; each is then handled, retried and dead-lettered on
        its own. The copies and the removal of the original commit together."""
        targets = self._router(message) if self._router is not None else []
        if not targets:
            key = message._headers.get(ROUTING_KEY)
            what = (
                f"routing key {key!r}"
                if key is not None
                else f"a {type(message.payload).__qualname__} payload"
            )
            raise NoEndpointForMessage(
                f"message {message.id} on channel {self.channel.name!r} names no endpoint "
                f"(header {ENDPOINT_ID!r}), and no handler on this channel takes {what}; send "
                f"it with the routing key or the type name of a handler that listens here"
            )
        with self._transaction():
            for endpoint_id in targets:
                self.channel.send(
                    message.with_headers({ENDPOINT_ID: endpoint_id, CHANNEL: self.channel.name})
                )
            if self._acknowledge is not None:
                self._acknowledge(message)

    def _claim_lost(self, lost: ClaimLost) -> None:
        logger.warning(
            "consumer %s: %s; its handling here was rolled back, and the consumer that holds "
            "it now handles it",
            self.name,
            lost,
        )

    def _failed(self, message: Message, error: Exception) -> Step:
        details = "".join(traceback.format_exception(error))
        try:
            # The retry, dead letter or requeue commits with the acknowledgement of the original.
            with self._transaction():
                settled = self._settle(message, error, details)
                if settled == "settled" and self._acknowledge is not None:
                    self._acknowledge(message)
        except ClaimLost as lost:
            self._claim_lost(lost)
            return Step.SKIPPED
        except Exception as failure:
            if self.is_transient(failure):
                raise  # the loop pauses; the message is still claimed, and comes back
            # Nothing ecopy stores should refuse a failed message; if it happens anyway, the
            # message is kept (given back, and tried again after a pause), never dropped.
            logger.critical(
                "consumer %s: message %s failed (%s) and could not be retried or dead-lettered "
                "(%s); it is kept and handled again",
                self.name,
                message.id,
                describe(error),
                describe(failure),
                exc_info=True,
            )
            self._give_back(message)
            self.pause(self._outage.failed(failure, f"message {message.id} cannot be settled"))
            return Step.SKIPPED
        if settled == "stop":
            raise error
        return Step.FAILED

    def _give_back(self, message: Message) -> None:
        """Return a message whose handling did not finish to its channel, to be handled again;
        a database queue that cannot be reached keeps it claimed until it can (or until its
        visibility timeout passes)."""
        try:
            if self._return is not None:
                self._return(message)
            elif self._acknowledge is None:
                self.channel.send(message)  # taken out of a queue that keeps no claims
        except Exception as error:
            if not self.is_transient(error):
                raise
            logger.debug(
                "consumer %s: message %s not given back yet: %s", self.name, message.id, error
            )

    def _settle(self, message: Message, error: Exception, details: str) -> _Settlement:
        """Deal with a failed message: ``"settled"`` (retried, dead-lettered or dropped),
        ``"returned"`` (back in the channel as it was: not to be acknowledged) or ``"stop"``
        (returned, and the consumer must stop)."""
        handling = self.error_handling
        retry = handling.retry if handling is not None else None
        if isinstance(error, NonRetryableError) or (retry is not None and retry.gives_up_on(error)):
            self._dead_letter(message, error, details)
            return "settled"
        if handling is not None and retry is None:
            self._dead_letter(message, error, details)
            return "settled"
        if handling is not None and retry is not None:
            retries = message._headers.get(RETRY_COUNT) or 0
            if retry.can_retry(retries):
                delay = retry.delay_ms(retries + 1)
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
        never_succeeds = isinstance(error, NonRetryableError)
        if target is None and never_succeeds:
            target = DEAD_LETTER_CHANNEL  # kept even where failed messages are dropped
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
        requeue = self._return
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
    "ConsumerLimitError",
    "ConsumerLimits",
    "ConsumerLoop",
    "PollingConsumer",
    "PollingMetadata",
    "Step",
]
