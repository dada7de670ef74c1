"""What an aggregate or saga endpoint does with a message: load, call, save, publish.

* A factory (classmethod/staticmethod) creates the aggregate: it returns the new instance
  (state-stored, sagas) or a list of events (event-sourced). The command bus returns the new
  aggregate's identifier.
* An action (instance method) loads the aggregate by the identifier the message carries,
  calls the method, saves the aggregate, and publishes the events it recorded or returned.
* When one aggregate has both a factory and an action for the same message, they stay two
  endpoints, each with its own interceptors; ``choosing`` runs the action's chain if the
  aggregate exists and the factory's otherwise, loading the aggregate once.

Events published from aggregates carry ``aggregate.id``, ``aggregate.type`` and
``aggregate.version`` headers. A save based on a stale version raises ``ConcurrencyError``
before anything is stored or published.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ecopy.errors import (
    AggregateDefinitionError,
    AggregateNotFound,
    ConcurrencyError,
    IdentifierNotFound,
)
from ecopy.messaging.context import outgoing_headers
from ecopy.messaging.message import ID, Message, new_message_id
from ecopy.messaging.naming import type_name
from ecopy.modelling.aggregate import (
    AggregateDefinition,
    TargetVersion,
    WithEvents,
    aggregate_options,
)
from ecopy.modelling.buses import EventBus
from ecopy.modelling.event_store import EventStore, NewEvent, SnapshotStore
from ecopy.modelling.identifier import (
    AGGREGATE_ID,
    AGGREGATE_TYPE,
    AGGREGATE_VERSION,
    IdentifierResolver,
    as_identifier,
    public_identifier,
)
from ecopy.modelling.repository import EventSourcingRepository, Loaded, Repository

MethodCall = Callable[[Any, Message], Any]


def _recorded(aggregate: Any) -> list[object]:
    if isinstance(aggregate, WithEvents):
        return aggregate.release_recorded_events()
    release = getattr(aggregate, "release_recorded_events", None)
    return list(release()) if callable(release) else []


class AggregateStore:
    """Loads and saves aggregates of every kind, and publishes their events."""

    def __init__(
        self,
        event_bus: EventBus,
        repositories: Sequence[Repository],
        event_store: EventStore,
        snapshots: SnapshotStore,
    ) -> None:
        self.event_bus = event_bus
        self.repositories = tuple(repositories)
        self.event_sourcing = EventSourcingRepository(event_store, snapshots)
        self.after_append: list[Callable[[str], None]] = []
        """Called with the stream's name after events were appended, before they are
        published, in the same transaction (synchronous projections catch up there)."""
        self.definitions: dict[type[Any], AggregateDefinition] = {}
        self._repository_cache: dict[type[Any], Repository] = {}

    def configure(
        self,
        *,
        repositories: Sequence[Repository],
        event_store: EventStore | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        """Replace the stores (bootstrap does it once modules have registered theirs)."""
        self.repositories = tuple(repositories)
        self._repository_cache.clear()
        self.event_sourcing = EventSourcingRepository(
            event_store or self.event_sourcing.events, snapshots or self.event_sourcing.snapshots
        )

    @property
    def event_store(self) -> EventStore:
        return self.event_sourcing.events

    def definition(self, aggregate_class: type[Any]) -> AggregateDefinition:
        try:
            return self.definitions[aggregate_class]
        except KeyError:
            if aggregate_options(aggregate_class) is not None:
                raise AggregateDefinitionError(
                    f"{aggregate_class.__qualname__} is not part of this application; give it "
                    f"to bootstrap (classes= or scan=)"
                ) from None
            raise AggregateDefinitionError(
                f"{aggregate_class.__qualname__} is not an aggregate or a saga; decorate it "
                f"with @aggregate, @event_sourcing_aggregate or @saga and give it to bootstrap "
                f"(classes= or scan=)"
            ) from None

    def repository(self, aggregate_class: type[Any]) -> Repository:
        repository = self._repository_cache.get(aggregate_class)
        if repository is None:
            repository = next(r for r in self.repositories if r.can_handle(aggregate_class))
            self._repository_cache[aggregate_class] = repository
        return repository

    def load(self, definition: AggregateDefinition, identifier: Mapping[str, Any]) -> Loaded | None:
        if definition.event_sourced:
            return self.event_sourcing.find(definition, identifier)
        return self.repository(definition.cls).find(definition.cls, identifier)

    def find(self, aggregate_class: type[Any], identifier: Any) -> Any:
        """The current state of an aggregate (``None`` if it does not exist)."""
        definition = self.definition(aggregate_class)
        key = as_identifier(definition.identifiers, identifier, aggregate=definition.name)
        loaded = self.load(definition, key)
        return None if loaded is None else loaded.aggregate

    def save_state(
        self,
        definition: AggregateDefinition,
        identifier: Mapping[str, Any],
        aggregate: Any,
        expected_version: int,
    ) -> None:
        """Save a state-stored aggregate or saga, then publish what it recorded."""
        events = _recorded(aggregate)
        previous = definition.version_of(aggregate)
        definition.set_version(aggregate, expected_version + 1)
        try:
            version = self.repository(definition.cls).save(
                definition.cls, identifier, aggregate, expected_version
            )
        except Exception:
            definition.set_version(aggregate, previous)
            raise
        for event in events:
            self.event_bus.publish(event, self._headers(definition, identifier, version))

    def save_events(
        self,
        definition: AggregateDefinition,
        identifier: Mapping[str, Any],
        aggregate: Any,
        expected_version: int,
        events: Sequence[object],
        *,
        publish: bool = True,
    ) -> None:
        """Append an event-sourced aggregate's new events, then publish them."""
        if not events:
            return
        new = [
            NewEvent(
                event,
                {
                    **self._headers(definition, identifier, expected_version + offset),
                    "id": new_message_id(),
                },
            )
            for offset, event in enumerate(events, start=1)
        ]
        self.event_sourcing.save(definition, identifier, aggregate, expected_version, new)
        stream = self.event_sourcing.stream_of(definition)
        for appended in self.after_append:
            appended(stream)
        if publish:
            for event in new:
                self.event_bus.publish(event.payload, event.metadata)

    @staticmethod
    def _headers(
        definition: AggregateDefinition, identifier: Mapping[str, Any], version: int
    ) -> dict[str, Any]:
        headers = outgoing_headers(None)
        headers[AGGREGATE_ID] = public_identifier(identifier)
        headers[AGGREGATE_TYPE] = type_name(definition.cls)
        headers[AGGREGATE_VERSION] = version
        return headers


@dataclass(frozen=True)
class AggregateHandler:
    """One aggregate handler method, ready to call."""

    definition: AggregateDefinition
    handler: str
    call: MethodCall
    is_factory: bool
    saves: bool
    drop_on_not_found: bool
    identifier: IdentifierResolver
    identifier_source: str
    target_version: Callable[[Message], Any] | None


def target_version_getter(payload_type: Any) -> Callable[[Message], Any] | None:
    """A getter for the payload field marked ``TargetVersion``, if the payload has one."""
    if not isinstance(payload_type, type):
        return None
    try:
        hints = typing.get_type_hints(payload_type, include_extras=True)
    except Exception:
        return None
    for field, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated and any(
            m is TargetVersion or isinstance(m, TargetVersion) for m in hint.__metadata__
        ):

            def version(message: Message, field: str = field) -> Any:
                payload = message._payload
                if isinstance(payload, Mapping):
                    return payload.get(field)
                return getattr(payload, field, None)

            return version
    return None


def _events_from(result: Any, handler: str) -> list[object]:
    if not isinstance(result, (list, tuple)):
        raise AggregateDefinitionError(
            f"event-sourced handler {handler} must return a list of events (an empty list when "
            f"nothing happened), but returned {type(result).__qualname__}"
        )
    return list(result)


def compile_aggregate_invoker(
    store: AggregateStore,
    action: AggregateHandler | None,
    factory: AggregateHandler | None,
) -> Callable[[Message], Any]:
    """The endpoint core for an action, a factory, or both for the same message."""

    def create(handler: AggregateHandler, message: Message) -> Any:
        definition = handler.definition
        result = handler.call(None, message)
        if definition.event_sourced:
            events = _events_from(result, handler.handler)
            instance = definition.blank()
            for event in events:
                definition.apply(instance, event)
            identifier = definition.identifier_of(instance)
            if identifier is None:
                raise AggregateDefinitionError(
                    f"factory {handler.handler} returned events that do not set the identifier "
                    f"{', '.join(definition.identifiers)} of {definition.name}; the first event "
                    f"must carry it and an @event_sourcing_handler must apply it"
                )
            store.save_events(definition, identifier, instance, 0, events)
        else:
            if not isinstance(result, definition.cls):
                raise AggregateDefinitionError(
                    f"factory {handler.handler} must return a new {definition.name}, but "
                    f"returned {type(result).__qualname__}"
                )
            identifier = definition.identifier_of(result)
            if identifier is None:
                raise AggregateDefinitionError(
                    f"factory {handler.handler} returned a {definition.name} without its "
                    f"identifier {', '.join(definition.identifiers)}; set it in the factory"
                )
            store.save_state(definition, identifier, result, 0)
        return public_identifier(identifier)

    def act(
        handler: AggregateHandler, message: Message, identifier: Mapping[str, Any], loaded: Loaded
    ) -> Any:
        definition = handler.definition
        if handler.target_version is not None:
            expected = handler.target_version(message)
            if expected is not None and int(expected) != loaded.version:
                raise ConcurrencyError(
                    f"{definition.name} {public_identifier(identifier)!r} is at version "
                    f"{loaded.version}, but {handler.handler} was sent for version {expected}; "
                    f"reload it and try again",
                    aggregate=definition.name,
                    identifier=public_identifier(identifier),
                    expected_version=int(expected),
                    actual_version=loaded.version,
                )
        aggregate = loaded.aggregate
        result = handler.call(aggregate, message)
        if not handler.saves:
            return result
        if definition.event_sourced:
            events = _events_from(result, handler.handler)
            for event in events:
                definition.apply(aggregate, event)
            store.save_events(definition, identifier, aggregate, loaded.version, events)
            return None
        store.save_state(definition, identifier, aggregate, loaded.version)
        return result

    def missing_identifier(handler: AggregateHandler, message: Message) -> IdentifierNotFound:
        return IdentifierNotFound(
            f"{handler.handler} on {handler.definition.name} cannot tell which "
            f"{handler.definition.name} message {message.id} is for: expected "
            f"{handler.identifier_source}. Add the field or header, or map it with "
            f"identifier_mapping / identifier_metadata_mapping."
        )

    if action is None:
        assert factory is not None
        only_factory = factory
        return lambda message: create(only_factory, message)

    only_action = action

    def invoke(message: Message) -> Any:
        identifier = only_action.identifier(message)
        preloaded = _preloaded.get()
        if (
            preloaded is not None
            and preloaded[0] == message._headers[ID]
            and identifier is not None
            and preloaded[1] == identifier
        ):
            # The factory-or-action choice loaded it a moment ago, in this transaction; only
            # once: an interceptor that proceeds again (a retry) reloads.
            _preloaded.set(None)
            return act(only_action, message, identifier, preloaded[2])
        if identifier is None:
            if factory is not None:
                return create(factory, message)
            raise missing_identifier(only_action, message)
        loaded = store.load(only_action.definition, identifier)
        if loaded is None:
            if factory is not None:
                return create(factory, message)
            if only_action.drop_on_not_found:
                return None
            raise AggregateNotFound(
                aggregate=only_action.definition.name,
                identifier=public_identifier(identifier),
                handler=only_action.handler,
            )
        return act(only_action, message, identifier, loaded)

    return invoke


#: The aggregate ``choosing`` loaded for the action it is about to run: (message id,
#: identifier, loaded), so the action does not load it again.
_preloaded: ContextVar[tuple[str, Mapping[str, Any], Loaded] | None] = ContextVar(
    "ecopy_preloaded_aggregate", default=None
)


def choosing(
    store: AggregateStore,
    action: AggregateHandler,
    run_action: Callable[[Message], Any],
    run_factory: Callable[[Message], Any],
) -> Callable[[Message], Any]:
    """A factory and an action of one aggregate for the same message: run the action's
    endpoint chain (its interceptors included) when the aggregate exists, the factory's
    otherwise. The aggregate is loaded once."""

    def choose(message: Message) -> Any:
        identifier = action.identifier(message)
        if identifier is None:
            return run_factory(message)
        loaded = store.load(action.definition, identifier)
        if loaded is None:
            return run_factory(message)
        token = _preloaded.set((message._headers[ID], identifier, loaded))
        try:
            return run_action(message)
        finally:
            _preloaded.reset(token)

    return choose
