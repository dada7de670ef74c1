"""The event store port and its in-memory implementation.

Events live in streams, one per aggregate type; each aggregate's events are numbered from 1
(its version), and every event gets a global position across the store. Appending with an
expected version that is not the current one raises :class:`~ecopy.errors.ConcurrencyError`
and stores nothing.

Positions follow commit order and are never given twice, not even after the events that had
them were deleted: a reader that remembers the last position it read never skips an event
(docs/event-store-positions.md).
"""

from __future__ import annotations

import bisect
import copy
import heapq
import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ecopy.errors import ConcurrencyError
from ecopy.messaging.collector import on_rollback


def stale_version_error(
    what: str, identifier: str, current: int, expected: int
) -> ConcurrencyError:
    """The ``ConcurrencyError`` of every store: the explanation, and the conflict as fields."""
    return ConcurrencyError(
        stale_version_message(what, identifier, current, expected),
        aggregate=what,
        identifier=identifier,
        expected_version=expected,
        actual_version=current,
    )


def stale_version_message(what: str, identifier: str, current: int, expected: int) -> str:
    """The explanation of a ``ConcurrencyError``, shared by every store."""
    if expected == 0:
        return (
            f"{what} {identifier!r} already exists (version {current}); a factory cannot "
            f"create it again: send an action for it instead"
        )
    return (
        f"{what} {identifier!r} is at version {current}, but the change was based on version "
        f"{expected}; reload it and try again"
    )


@dataclass(frozen=True)
class NewEvent:
    """An event to append, with its metadata (the headers it is published with)."""

    payload: Any
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredEvent:
    stream: str
    aggregate_id: str
    version: int
    position: int
    payload: Any
    metadata: Mapping[str, Any]


@runtime_checkable
class EventStore(Protocol):
    def append(
        self, stream: str, aggregate_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> list[StoredEvent]:
        """Append after ``expected_version`` (0 for a new aggregate), atomically."""

    def load(self, stream: str, aggregate_id: str, from_version: int = 1) -> list[StoredEvent]:
        """The aggregate's events with version ≥ ``from_version``, in order."""

    def aggregate_ids(self, stream: str) -> list[str]:
        """The aggregates that have events in ``stream``, in order of their first event."""

    def streams(self) -> list[str]: ...

    def read_all(
        self, after_position: int = 0, limit: int = 1000, streams: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with a global position above ``after_position``, in position
        order: of every stream, or only of ``streams``. No event committed later ever has a
        position at or below one already returned."""

    def last_position(self, streams: Sequence[str] | None = None) -> int:
        """The highest position of a committed event (of ``streams``), 0 when there is none."""

    def delete_stream(self, stream: str) -> int:
        """Delete every event of ``stream`` (all its aggregates) and the snapshots kept with
        them; returns the number of events deleted. Their positions are never given again."""


@dataclass(frozen=True)
class Snapshot:
    version: int
    state: Any


@runtime_checkable
class SnapshotStore(Protocol):
    def save(self, stream: str, aggregate_id: str, version: int, state: Any) -> None: ...

    def load(self, stream: str, aggregate_id: str) -> Snapshot | None: ...


class InMemoryEventStore(EventStore):
    """An event store in memory. Thread-safe; the append check-and-write is atomic. An append
    or a deletion made in a unit of work that fails is undone (``ecopy.messaging.collector``),
    as a rolled-back database transaction leaves no trace.

    There are no transactions to isolate: an append is visible to every reader at once, with
    the next position. Positions therefore follow the order in which readers can see events,
    and none is ever given twice (not after an undone append, not after ``delete_stream``), so
    a reader that remembers the last position it read never skips an event.

    ``snapshots``, when given, is the snapshot store kept with these events:
    ``delete_stream`` deletes the stream's snapshots too, as the database event store does.
    """

    def __init__(self, snapshots: InMemorySnapshotStore | None = None) -> None:
        self._lock = threading.Lock()
        self._events: list[StoredEvent] = []
        self._by_aggregate: dict[tuple[str, str], list[StoredEvent]] = {}
        self._streams: dict[str, list[str]] = {}
        self._next_position = 1
        self._snapshots = snapshots

    def append(
        self, stream: str, aggregate_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> list[StoredEvent]:
        with self._lock:
            key = (stream, aggregate_id)
            existing = self._by_aggregate.get(key, [])
            current = existing[-1].version if existing else 0
            if current != expected_version:
                raise stale_version_error(stream, aggregate_id, current, expected_version)
            first = self._next_position
            stored = [
                StoredEvent(
                    stream=stream,
                    aggregate_id=aggregate_id,
                    version=expected_version + offset,
                    position=first + offset - 1,
                    payload=event.payload,
                    metadata=dict(event.metadata),
                )
                for offset, event in enumerate(events, start=1)
            ]
            if not stored:
                return []
            self._events.extend(stored)
            self._next_position += len(stored)
            if not existing:
                self._by_aggregate[key] = existing
                self._streams.setdefault(stream, []).append(aggregate_id)
            existing.extend(stored)
        on_rollback(lambda: self._remove(key, stored))
        return stored

    def _remove(self, key: tuple[str, str], stored: list[StoredEvent]) -> None:
        """Undo an append. Its positions are not given again: a reader may have seen them."""
        gone = {id(event) for event in stored}
        with self._lock:
            if self._events[-len(stored) :] == stored:
                del self._events[-len(stored) :]
            else:
                self._events = [e for e in self._events if id(e) not in gone]
            remaining = [e for e in self._by_aggregate.get(key, []) if id(e) not in gone]
            if remaining:
                self._by_aggregate[key] = remaining
            elif key in self._by_aggregate:
                del self._by_aggregate[key]
                stream, aggregate_id = key
                self._streams[stream].remove(aggregate_id)
                if not self._streams[stream]:
                    del self._streams[stream]

    def load(self, stream: str, aggregate_id: str, from_version: int = 1) -> list[StoredEvent]:
        with self._lock:
            events = self._by_aggregate.get((stream, aggregate_id), [])
            # Versions are 1, 2, 3... in order, so a version is an index.
            return events[max(from_version, 1) - 1 :]

    def aggregate_ids(self, stream: str) -> list[str]:
        with self._lock:
            return list(self._streams.get(stream, []))

    def streams(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    def read_all(
        self, after_position: int = 0, limit: int = 1000, streams: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        with self._lock:
            start = bisect.bisect_right(self._events, after_position, key=_position)
            if streams is None:
                return self._events[start : start + limit]
            wanted = set(streams)
            events = self._events
            found = (events[i] for i in range(start, len(events)) if events[i].stream in wanted)
            return list(itertools.islice(found, max(limit, 0)))

    def last_position(self, streams: Sequence[str] | None = None) -> int:
        with self._lock:
            if streams is None:
                return self._events[-1].position if self._events else 0
            wanted = set(streams)
            return next((e.position for e in reversed(self._events) if e.stream in wanted), 0)

    def count_after(self, after_position: int, streams: Sequence[str] | None = None) -> int:
        """How many events (of ``streams``) have a position above ``after_position``."""
        with self._lock:
            start = bisect.bisect_right(self._events, after_position, key=_position)
            if streams is None:
                return len(self._events) - start
            wanted = set(streams)
            return sum(1 for e in self._events[start:] if e.stream in wanted)

    def delete_stream(self, stream: str) -> int:
        with self._lock:
            deleted = [e for e in self._events if e.stream == stream]
            if deleted:
                self._events = [e for e in self._events if e.stream != stream]
            aggregates = self._streams.pop(stream, [])
            histories = {a: self._by_aggregate.pop((stream, a)) for a in aggregates}
        if deleted:
            on_rollback(lambda: self._restore(stream, aggregates, histories, deleted))
        if self._snapshots is not None:
            self._snapshots.delete_stream(stream)
        return len(deleted)

    def _restore(
        self,
        stream: str,
        aggregates: list[str],
        histories: dict[str, list[StoredEvent]],
        deleted: list[StoredEvent],
    ) -> None:
        """Undo a ``delete_stream``: the events return at their positions. (Appends made after
        it in the same unit of work were undone before: undos run in reverse order.)"""
        with self._lock:
            self._events = list(heapq.merge(self._events, deleted, key=_position))
            for aggregate_id, history in histories.items():
                later = self._by_aggregate.get((stream, aggregate_id), [])
                self._by_aggregate[(stream, aggregate_id)] = [*history, *later]
            others = [a for a in self._streams.get(stream, []) if a not in histories]
            self._streams[stream] = [*aggregates, *others]


def _position(event: StoredEvent) -> int:
    return event.position


class InMemorySnapshotStore(SnapshotStore):
    """Snapshots in memory, kept as deep copies so later changes cannot leak into them."""

    def __init__(self) -> None:
        self._snapshots: dict[tuple[str, str], Snapshot] = {}

    def save(self, stream: str, aggregate_id: str, version: int, state: Any) -> None:
        key = (stream, aggregate_id)
        previous = self._snapshots.get(key)
        saved = self._snapshots[key] = Snapshot(version, copy.deepcopy(state))

        def undo() -> None:
            if self._snapshots.get(key) is saved:
                if previous is None:
                    del self._snapshots[key]
                else:
                    self._snapshots[key] = previous

        on_rollback(undo)

    def delete_stream(self, stream: str) -> int:
        """Delete the snapshots of every aggregate of ``stream`` (its events were deleted);
        returns how many there were. Undone if the unit of work in progress fails."""
        deleted = {key: s for key, s in list(self._snapshots.items()) if key[0] == stream}
        for key in deleted:
            del self._snapshots[key]

        def undo() -> None:
            for key, snapshot in deleted.items():
                self._snapshots.setdefault(key, snapshot)

        if deleted:
            on_rollback(undo)
        return len(deleted)

    def load(self, stream: str, aggregate_id: str) -> Snapshot | None:
        snapshot = self._snapshots.get((stream, aggregate_id))
        if snapshot is None:
            return None
        return Snapshot(snapshot.version, copy.deepcopy(snapshot.state))
