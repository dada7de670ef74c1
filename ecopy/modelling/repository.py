"""Repositories: loading and saving aggregates and sagas.

``Repository`` is the port for state-stored aggregates and sagas. A service implementing it
(with ``can_handle``) takes over the aggregate classes it accepts; the others use the
in-memory default (or the database one when ``ecopy_dbal`` is configured). Event-sourced
aggregates are loaded from, and saved to, the ``EventStore``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ecopy.messaging.collector import on_rollback
from ecopy.messaging.naming import type_name
from ecopy.modelling.aggregate import AggregateDefinition
from ecopy.modelling.event_store import (
    EventStore,
    NewEvent,
    SnapshotStore,
    stale_version_error,
)
from ecopy.modelling.identifier import identifier_key


@dataclass(frozen=True)
class Loaded:
    """An aggregate as loaded, with the version the save will be checked against."""

    aggregate: Any
    version: int


@runtime_checkable
class Repository(Protocol):
    """Port for state-stored aggregates and sagas, with optimistic locking."""

    def can_handle(self, aggregate_class: type[Any]) -> bool: ...

    def find(self, aggregate_class: type[Any], identifier: Mapping[str, Any]) -> Loaded | None: ...

    def save(
        self,
        aggregate_class: type[Any],
        identifier: Mapping[str, Any],
        aggregate: Any,
        expected_version: int,
    ) -> int:
        """Store ``aggregate`` if its stored version is ``expected_version`` (0: new);
        returns the new version, or raises ``ConcurrencyError`` and stores nothing."""


class InMemoryRepository(Repository):
    """State-stored aggregates in memory, as deep copies (a failed handler leaves no trace); a
    save made in a unit of work that fails is undone, as a rolled-back transaction's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[tuple[type[Any], str], tuple[int, Any]] = {}

    def can_handle(self, aggregate_class: type[Any]) -> bool:
        return True

    def find(self, aggregate_class: type[Any], identifier: Mapping[str, Any]) -> Loaded | None:
        with self._lock:
            found = self._documents.get((aggregate_class, identifier_key(identifier)))
        if found is None:
            return None
        return Loaded(copy.deepcopy(found[1]), found[0])

    def save(
        self,
        aggregate_class: type[Any],
        identifier: Mapping[str, Any],
        aggregate: Any,
        expected_version: int,
    ) -> int:
        key = (aggregate_class, identifier_key(identifier))
        stored = copy.deepcopy(aggregate)
        with self._lock:
            current = self._documents.get(key, (0, None))[0]
            if current != expected_version:
                raise stale_version_error(
                    aggregate_class.__qualname__,
                    identifier_key(identifier),
                    current,
                    expected_version,
                )
            previous = self._documents.get(key)
            saved = self._documents[key] = (expected_version + 1, stored)

        def undo() -> None:
            with self._lock:
                if self._documents.get(key) is saved:
                    if previous is None:
                        del self._documents[key]
                    else:
                        self._documents[key] = previous

        on_rollback(undo)
        return expected_version + 1


class EventSourcingRepository:
    """Event-sourced aggregates over an ``EventStore``, with optional snapshots."""

    def __init__(self, events: EventStore, snapshots: SnapshotStore) -> None:
        self.events = events
        self.snapshots = snapshots

    @staticmethod
    def stream_of(definition: AggregateDefinition) -> str:
        return type_name(definition.cls)

    def find(self, definition: AggregateDefinition, identifier: Mapping[str, Any]) -> Loaded | None:
        stream = self.stream_of(definition)
        key = identifier_key(identifier)
        snapshot = self.snapshots.load(stream, key) if definition.options.snapshot_every else None
        if snapshot is not None:
            instance, version = snapshot.state, snapshot.version
        else:
            instance, version = None, 0
        events = self.events.load(stream, key, from_version=version + 1)
        if instance is None and not events:
            return None
        if instance is None:
            instance = definition.blank()
        for event in events:
            definition.apply(instance, event.payload)
            version = event.version
        definition.set_version(instance, version)
        return Loaded(instance, version)

    def save(
        self,
        definition: AggregateDefinition,
        identifier: Mapping[str, Any],
        aggregate: Any,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> int:
        stream = self.stream_of(definition)
        key = identifier_key(identifier)
        stored = self.events.append(stream, key, expected_version, events)
        version = stored[-1].version if stored else expected_version
        definition.set_version(aggregate, version)
        every = definition.options.snapshot_every
        if every and stored and version // every > expected_version // every:
            self.snapshots.save(stream, key, version, aggregate)
        return version
