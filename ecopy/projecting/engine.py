"""The catch-up loop of one projection, over any event store and projection state store.

In a transaction: claim the projection's row (creating it on first use, which runs the
initialization hook, unless ``manual_kick_off``), read up to ``batch_size`` stored events after
its position, run the handlers in position order, then the flush hooks, and save position and
state; repeat until a batch comes back short. An exception rolls the batch back (position and
state as they were) and propagates.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from ecopy.errors import EcopyError
from ecopy.messaging.clock import Clock
from ecopy.messaging.collector import unit_of_work
from ecopy.messaging.consumer import ConsumerLimits, ConsumerLoop, PollingMetadata, Step
from ecopy.messaging.message import Message
from ecopy.messaging.naming import type_name
from ecopy.messaging.outage import never
from ecopy.messaging.transaction import TransactionManager
from ecopy.modelling.event_store import EventStore, StoredEvent
from ecopy.projecting.declaration import ProjectionOptions
from ecopy.projecting.state import ProjectionRecord, ProjectionStateStore

logger = logging.getLogger("ecopy.projecting")

PROJECTION_NAME = "ecopy.projection.name"
PROJECTION_PARTITION = "ecopy.projection.partition"
PROJECTION_LIVE = "ecopy.projection.live"
EVENT_STREAM = "ecopy.event.stream"
EVENT_POSITION = "ecopy.event.position"


class ProjectionError(EcopyError):
    """A projection cannot do what was asked, or one of its handlers failed on an event."""


class ProjectionNotFound(ProjectionError):
    """No projection of that name exists in this application."""


@dataclass
class Handling:
    """What a handler of the batch in progress sees besides the message."""

    stored: StoredEvent
    state: Any


#: The event being projected, for the resolvers of ``StoredEvent`` and ``ProjectionState``.
current: ContextVar[Handling | None] = ContextVar("ecopy_projection_handling", default=None)


@dataclass(frozen=True)
class ProjectionHandler:
    handler: str
    payload_types: tuple[type[Any], ...]
    patterns: tuple[str, ...]
    call: Callable[[Message], Any]
    takes_state: bool

    def takes(self, payload: Any) -> bool:
        if self.patterns:
            name = type_name(type(payload))
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)
        return isinstance(payload, self.payload_types)


@dataclass
class StateCodec:
    """The projection's state as the store keeps it (JSON) and as handlers see it (``T``)."""

    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]
    initial: Callable[[], Any]


@dataclass
class Projection:
    """A compiled projection: its handlers and hooks, ready to catch up."""

    options: ProjectionOptions
    streams: tuple[str, ...] | None
    handlers: list[ProjectionHandler]
    hooks: dict[str, list[Callable[[], Any]]]
    state: StateCodec
    event_store: Callable[[], EventStore]
    store: Callable[[], ProjectionStateStore]
    transactions: Callable[[], TransactionManager | None]
    channels: tuple[str, ...] = ()
    """The channel its trigger goes through (asynchronous mode), or none."""
    handled_types: dict[type[Any], list[ProjectionHandler]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def mode(self) -> str:
        if self.channels:
            return "asynchronous"
        return "polling" if self.options.polling else "synchronous"

    def run_hooks(self, kind: str) -> None:
        for hook in self.hooks.get(kind, ()):
            hook()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The batch's transaction: the database's (joined if one is in progress) and the
        in-memory unit of work, so an in-memory store rolls back with it."""
        manager = self.transactions()
        with unit_of_work():
            if manager is None:
                yield
            else:
                with manager.transaction():
                    yield

    def initialize(self) -> bool:
        """Create the row at position 0 and run the initialization hook, once; in the
        transaction in progress."""
        created = self.store().initialize(self.name)
        if created:
            self.run_hooks("initialization")
            record = self.store().claim(self.name)
            assert record is not None
            self.store().save(replace(record, state=self.state.to_json(self.state.initial())))
        return created

    def start_over(self, *, status: str) -> None:
        """In the transaction in progress: the reset hooks, then position 0 and the state back
        to ``T()`` (initializing the row first if needed)."""
        self.initialize()
        store = self.store()
        record = store.claim(self.name)
        assert record is not None
        self.run_hooks("reset")
        initial = self.state.to_json(self.state.initial())
        store.save(replace(record, position=0, state=initial, status=status))

    def catch_up(
        self,
        *,
        live: bool | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Handle the stored events after the position, batch by batch, each batch in its own
        transaction (joining the one in progress); returns how many were handled.

        ``progress``, when given, is called after each batch that read events with the number
        handled so far (a command line shows it while a long backfill runs)."""
        handled = 0
        while True:
            with self.transaction():
                record = self._claim()
                if record is None:
                    return handled
                count, read = self._batch(record, self.options.live if live is None else live)
            handled += count
            if read and progress is not None:
                progress(handled)
            if read < self.options.batch_size:
                return handled

    def _claim(self) -> ProjectionRecord | None:
        store = self.store()
        record = store.claim(self.name)
        if record is None:
            if self.options.manual_kick_off:
                return None  # events wait, none lost, until `init`
            self.initialize()
            record = store.claim(self.name)
        return record

    def _batch(self, record: ProjectionRecord, live: bool) -> tuple[int, int]:
        """One batch after ``record``'s position; returns (events handled, events read)."""
        size = self.options.batch_size
        try:
            events = self.event_store().read_all(record.position, size, streams=self.streams)
        except Exception as error:
            error.add_note(
                f"ecopy: projection {self.name!r} could not read the stored events after "
                f"position {record.position}; its position did not move. Make the event's "
                f"class accept what was stored (a default value for a field added since), or "
                f"give a renamed class its old name with @named_event, then trigger it again"
            )
            raise
        if not events:
            return 0, 0
        state = self.state.from_json(record.state)
        handled = 0
        for stored in events:
            takers = self._handlers_for(stored.payload)
            if not takers:
                continue
            message = Message(
                stored.payload,
                {
                    **stored.metadata,
                    PROJECTION_NAME: self.name,
                    PROJECTION_PARTITION: "",
                    PROJECTION_LIVE: live,
                    EVENT_STREAM: stored.stream,
                    EVENT_POSITION: stored.position,
                },
            )
            handling = Handling(stored, state)
            token = current.set(handling)
            try:
                for taker in takers:
                    result = self._handle(taker, message, stored)
                    if taker.takes_state and result is not None:
                        handling.state = result
            finally:
                current.reset(token)
            state = handling.state
            handled += 1
        if handled:
            self.run_hooks("flush")
        self.store().save(
            replace(record, position=events[-1].position, state=self.state.to_json(state))
        )
        return handled, len(events)

    def _handle(self, taker: ProjectionHandler, message: Message, stored: StoredEvent) -> Any:
        try:
            return taker.call(message)
        except Exception as error:
            error.add_note(
                f"ecopy: raised by projection {self.name!r}, handler {taker.handler}, on event "
                f"{type_name(type(stored.payload))} at position {stored.position} (stream "
                f"{stored.stream!r}, aggregate {stored.aggregate_id!r}); the batch was rolled "
                f"back and the position did not move"
            )
            raise

    def _handlers_for(self, payload: Any) -> list[ProjectionHandler]:
        cls = type(payload)
        found = self.handled_types.get(cls)
        if found is None:
            found = [h for h in self.handlers if h.takes(payload)]
            self.handled_types[cls] = found
        return found


def events_of(
    streams: Sequence[str] | None, event_store: EventStore, after: int = 0
) -> Iterator[StoredEvent]:
    """The stored events of ``streams`` (all streams for ``None``) after position ``after``,
    in position order."""
    position = after
    while True:
        batch = event_store.read_all(position, 1000, streams=streams)
        yield from batch
        if len(batch) < 1000:
            return
        position = batch[-1].position


class ProjectionPoller(ConsumerLoop):
    """The consumer of a polling projection (named after it): each poll catches it up. A
    failing batch is rolled back and logged, and the next poll tries it again; a lost
    database connection pauses the consumer with back-off."""

    def __init__(
        self, projection: Projection, clock: Clock, metadata: PollingMetadata | None
    ) -> None:
        manager = projection.transactions()
        super().__init__(projection.name, clock, getattr(manager, "is_transient", never))
        self.projection = projection
        self.metadata = metadata

    def run(self, limits: ConsumerLimits) -> int:
        return self.loop(limits, self.step)

    def step(self) -> Step:
        try:
            handled = self.projection.catch_up()
        except Exception as error:
            if self.is_transient(error):
                raise
            logger.exception(
                "projection %s: a batch failed and was rolled back; the next poll tries it again",
                self.name,
            )
            return Step.FAILED
        return Step.HANDLED if handled else Step.IDLE
