"""The aggregates module: aggregates and sagas, state-stored and event-sourced.

It owns the handlers of ``@aggregate`` and ``@saga`` classes (load by identifier, call, save,
publish), keeps a factory and an action for the same message as two endpoints between which
the aggregate's existence chooses, and configures the ``AggregateStore`` with the stores the
application ended up with.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ecopy.config.handlers import HandlerDefinition
from ecopy.config.modules import ModuleContext
from ecopy.errors import ConfigurationWarning
from ecopy.messaging.coroutine import awaited
from ecopy.messaging.endpoint import RANK_AGGREGATE, RANK_SAGA, Invoker
from ecopy.messaging.message import Message
from ecopy.messaging.naming import type_name
from ecopy.modelling.aggregate import AggregateDefinition, Identifier, annotated_fields
from ecopy.modelling.aggregate_handling import (
    AggregateHandler,
    AggregateStore,
    choosing,
    compile_aggregate_invoker,
    target_version_getter,
)
from ecopy.modelling.buses import EventBus
from ecopy.modelling.event_store import InMemoryEventStore, InMemorySnapshotStore
from ecopy.modelling.identifier import IdentifierResolver, compile_identifier_resolver
from ecopy.modelling.repository import InMemoryRepository


@dataclass
class AggregateOwner:
    """Calls the handlers of one aggregate or saga class."""

    definition: AggregateDefinition
    store: AggregateStore
    context: ModuleContext
    handlers: dict[str, AggregateHandler] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return RANK_SAGA if self.definition.kind == "saga" else RANK_AGGREGATE

    def invoker(self, definition: HandlerDefinition) -> Invoker:
        handler = self.handler(definition)
        if definition.is_factory:
            return compile_aggregate_invoker(self.store, None, handler)
        return compile_aggregate_invoker(self.store, handler, None)

    def target(self, definition: HandlerDefinition) -> tuple[IdentifierResolver, str] | None:
        """Which aggregate a message for ``definition`` is for (an action's), resolved in the
        sender before an asynchronous hop."""
        if definition.is_factory:
            return None
        return self.handler(definition).identifier, type_name(self.definition.cls)

    def handler(self, definition: HandlerDefinition) -> AggregateHandler:
        endpoint_id = definition.info.endpoint_id
        if endpoint_id not in self.handlers:
            self.handlers[endpoint_id] = self._compile_handler(definition)
        return self.handlers[endpoint_id]

    def _compile_handler(self, definition: HandlerDefinition) -> AggregateHandler:
        aggregate = self.definition
        member = definition.member
        _, resolvers, payload_type = definition.bind(self.context)
        function = awaited(member.function, definition.info.handler)
        arguments = tuple(resolvers)
        call: Callable[[Any, Message], Any]
        if member.binding == "instance":
            call = lambda instance, message: function(  # noqa: E731
                instance, *[resolve(message) for resolve in arguments]
            )
        elif member.binding == "class":
            owner = aggregate.cls
            call = lambda instance, message: function(  # noqa: E731
                owner, *[resolve(message) for resolve in arguments]
            )
        else:
            call = lambda instance, message: function(  # noqa: E731
                *[resolve(message) for resolve in arguments]
            )
        options = definition.declaration.options
        try:
            identifier, source = compile_identifier_resolver(
                aggregate.identifiers, options, payload_type, type_name(aggregate.cls)
            )
        except ValueError as error:
            self.context.problems.append(f"handler {definition.info.handler}: {error}")
            identifier, source = (lambda message: None), "nothing"
        return AggregateHandler(
            definition=aggregate,
            handler=definition.info.handler,
            call=call,
            is_factory=definition.is_factory,
            saves=definition.declaration.kind != "query",
            drop_on_not_found=bool(options.get("drop_message_on_not_found", False)),
            identifier=identifier,
            identifier_source=source,
            target_version=target_version_getter(payload_type),
        )


class AggregatesModule:
    """Registered by bootstrap for every application."""

    def register(self, context: ModuleContext) -> None:
        event_bus = context.container.implementation(EventBus)
        assert event_bus is not None
        snapshots = InMemorySnapshotStore()
        store = AggregateStore(
            event_bus, [InMemoryRepository()], InMemoryEventStore(snapshots), snapshots
        )
        context.add_service(store)
        owners: dict[type[Any], AggregateOwner | None] = {}

        def owner_of(cls: type[Any]) -> AggregateOwner | None:
            if cls not in owners:
                definition = AggregateDefinition.of(cls, context.problems)
                owners[cls] = (
                    None if definition is None else AggregateOwner(definition, store, context)
                )
                if definition is not None:
                    store.definitions[cls] = definition
                    # Snapshots and documents read back from a database name their class,
                    # and events read back from an event store are known by name.
                    context.problems.extend(context.names.register(cls))
                    for event_type in definition.appliers:
                        context.problems.extend(context.names.register(event_type))
            return owners[cls]

        for target in context.targets:
            if isinstance(target, type) and owner_of(target) is None:
                _identifier_without_aggregate(context, target)

        def configure() -> None:
            store.configure(
                repositories=[*context.repositories, InMemoryRepository()],
                event_store=context.event_store,
                snapshots=context.snapshot_store,
            )

        context.on_ready(configure)
        context.own_handlers(owner_of)
        context.on_definitions(lambda definitions: pair_factories(context, definitions))
        context.on_definitions(lambda definitions: _sagas_nothing_starts(context, definitions))


def _identifier_without_aggregate(context: ModuleContext, cls: type[Any]) -> None:
    """``Identifier`` fields only mean something on an aggregate or a saga: on a class with
    handlers it is the sign of a forgotten decorator; elsewhere it does nothing."""
    fields = annotated_fields(cls, Identifier)
    if not fields:
        return
    named = ", ".join(fields)
    if any(m.owner is cls and m.declarations.handlers for m in context.members):
        context.problems.append(
            f"class {cls.__qualname__} marks {named} with Identifier but is neither an "
            f"@aggregate nor a @saga, so its handlers would all run on one shared instance; "
            f"decorate it with @aggregate (or @event_sourcing_aggregate, or @saga)"
        )
    else:
        warnings.warn(
            f"class {cls.__qualname__} marks {named} with Identifier, which does nothing on a "
            f"class that is not an @aggregate or a @saga; to say which aggregate a command is "
            f"for, use TargetIdentifier (or name the field like the aggregate's identifier)",
            ConfigurationWarning,
            stacklevel=2,
        )


def _sagas_nothing_starts(
    context: ModuleContext, definitions: list[HandlerDefinition]
) -> list[HandlerDefinition]:
    """A saga is only ever created by one of its factory handlers: one without any would
    reject every message, at the first one to arrive."""
    started: dict[type[Any], bool] = {}
    for definition in definitions:
        owner = definition.owner
        if isinstance(owner, AggregateOwner) and owner.definition.kind == "saga":
            cls = owner.definition.cls
            started[cls] = started.get(cls, False) or definition.is_factory
    for cls, has_factory in started.items():
        if not has_factory:
            context.problems.append(
                f"saga {cls.__qualname__} has no factory handler, so nothing can start it and "
                f"every message for it would find no {cls.__qualname__}; add a classmethod "
                f"handler that returns a new {cls.__qualname__} for the message that starts "
                f"it (@event_handler on a @classmethod)"
            )
    return definitions


def pair_factories(
    context: ModuleContext, definitions: list[HandlerDefinition]
) -> list[HandlerDefinition]:
    """An aggregate's factory and action for the same message stay two endpoints (each with
    its own interceptors); the buses route to the action's, which runs the factory's chain
    when the aggregate does not exist yet."""
    groups: dict[tuple[Any, ...], list[HandlerDefinition]] = {}
    for definition in definitions:
        if isinstance(definition.owner, AggregateOwner):
            key = (definition.owner.definition.cls, *definition.route())
            groups.setdefault(key, []).append(definition)
    for group in groups.values():
        factories = [d for d in group if d.is_factory]
        actions = [d for d in group if not d.is_factory]
        if len(factories) != 1 or len(actions) != 1:
            continue
        factory, action = factories[0], actions[0]
        if factory.modifiers.get("asynchronous") != action.modifiers.get("asynchronous"):
            context.problems.append(
                f"factory {factory.info.handler} and action {action.info.handler} handle the "
                f"same message, so one of them is chosen when it arrives; make both "
                f"@asynchronous on the same channel, or neither"
            )
            continue
        factory.routed = False
        context.chosen_by[factory.info.endpoint_id] = action.info.endpoint_id
        action.extras["factory"] = factory
        owner = action.owner
        assert isinstance(owner, AggregateOwner)
        action.extras["wrap_handling"] = _choice(context, owner, action, factory)
    return definitions


def _choice(
    context: ModuleContext,
    owner: AggregateOwner,
    action: HandlerDefinition,
    factory: HandlerDefinition,
) -> Callable[[Invoker], Invoker]:
    factory_id = factory.info.endpoint_id

    def run_factory(message: Message) -> Any:
        # The factory's chain is compiled by now (every endpoint is compiled before any
        # message is handled).
        return context.handling[factory_id](message)

    return lambda action_chain: choosing(
        owner.store, owner.handler(action), action_chain, run_factory
    )
