"""The projecting module: finds ``@projection`` classes, compiles their handlers and hooks,
checks their declarations, and catches synchronous projections up after each append, in the
command's transaction."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from ecopy.config.handlers import HandlerDefinition, member_call
from ecopy.config.modules import ModuleContext
from ecopy.messaging.binding import Parameter, Resolver, compile_call
from ecopy.messaging.collector import send_or_collect
from ecopy.messaging.consumer import Consumer, PollingMetadata
from ecopy.messaging.delivery import ASYNCHRONOUS_CLASS, CHANNEL, ENDPOINT_ID
from ecopy.messaging.endpoint import Endpoint, EndpointInfo
from ecopy.messaging.message import Message
from ecopy.messaging.naming import type_name
from ecopy.modelling.aggregate import aggregate_options
from ecopy.modelling.aggregate_handling import AggregateStore
from ecopy.modelling.event_store import StoredEvent
from ecopy.projecting.declaration import (
    HOOKS,
    ProjectionOptions,
    ProjectionState,
    projection_options,
)
from ecopy.projecting.engine import (
    Projection,
    ProjectionHandler,
    ProjectionPoller,
    StateCodec,
    current,
)
from ecopy.projecting.manager import ProjectionManager
from ecopy.projecting.state import InMemoryProjectionStateStore, ProjectionStateStore


class ProjectingModule:
    """Registered by bootstrap for every application."""

    def register(self, context: ModuleContext) -> None:
        declared: dict[str, tuple[type[Any], ProjectionOptions]] = {}
        for target in context.targets:
            if not isinstance(target, type):
                continue
            options = projection_options(target)
            if options is None:
                continue
            if options.name in declared:
                context.problems.append(
                    f"projection name {options.name!r} is used by "
                    f"{declared[options.name][0].__qualname__} and {target.__qualname__}; "
                    f"give each projection its own name"
                )
                continue
            declared[options.name] = (target, options)
        projections: dict[str, Projection] = {}
        manager = ProjectionManager(projections)
        context.add_service(manager)
        if not declared:
            return
        stores: dict[str, Any] = {}

        def choose_stores() -> None:
            stores["state"] = context.port(ProjectionStateStore) or InMemoryProjectionStateStore()

        context.on_ready(choose_stores)
        classes = {cls: options for cls, options in declared.values()}

        def compile_projections(definitions: list[HandlerDefinition]) -> list[HandlerDefinition]:
            aggregates = context.container.implementation(AggregateStore)
            assert aggregates is not None
            kept: list[HandlerDefinition] = []
            handlers: dict[type[Any], list[HandlerDefinition]] = {cls: [] for cls in classes}
            for definition in definitions:
                owner = definition.member.owner
                if owner in classes and definition.declaration.kind == "event":
                    handlers[owner].append(definition)
                else:
                    kept.append(definition)
            for cls, options in classes.items():
                compiled = _compile(context, cls, options, handlers[cls], aggregates, stores)
                if compiled is not None:
                    projections[options.name] = compiled
            by_stream: dict[str | None, list[Callable[[], Any]]] = {}
            for compiled in projections.values():
                if compiled.options.polling:
                    continue  # its consumer catches it up
                follow: Callable[[], Any] = compiled.catch_up
                if compiled.channels:
                    follow = _asynchronous(context, compiled)
                for stream in compiled.streams or (None,):
                    by_stream.setdefault(stream, []).append(follow)
            aggregates.after_append.append(_after_append(by_stream))
            return kept

        context.on_definitions(compile_projections)

        def pollers() -> dict[str, Consumer]:
            polling = {m.endpoint_id: m for m in context.extensions_of(PollingMetadata)}
            return {
                name: ProjectionPoller(compiled, context.clock, polling.get(name))
                for name, compiled in projections.items()
                if compiled.options.polling
            }

        context.add_consumers(pollers)


def _after_append(by_stream: dict[str | None, list[Callable[[], Any]]]) -> Callable[[str], None]:
    """After an append to ``stream``, in the command's transaction: catch up the synchronous
    projections of that stream (and of every stream), trigger the asynchronous ones."""

    def appended(stream: str) -> None:
        for follow in [*by_stream.get(stream, ()), *by_stream.get(None, ())]:
            follow()

    return appended


def _asynchronous(context: ModuleContext, projection: Projection) -> Callable[[], Any]:
    """An asynchronous projection: its trigger is an endpoint on its channel, handled by the
    channel's consumer (retries, dead letters; endpoint id = the projection's name), and each
    append sends it a trigger once the command succeeded (to the outbox with a database
    channel). Triggers collapse: one that finds nothing new handles nothing."""
    name = projection.name
    info = EndpointInfo(
        endpoint_id=name, kind="projection", handler=f"projection {name}", routes=(name,)
    )
    context.add_asynchronous_endpoint(
        Endpoint(info, lambda message: projection.catch_up()), projection.channels
    )
    channel_name = projection.channels[0]

    def trigger() -> None:
        channel = context.channel_named(channel_name)
        message = Message({"projection": name}, {ENDPOINT_ID: name, CHANNEL: channel_name})
        send_or_collect(lambda: channel.send(message))

    return trigger


def _compile(
    context: ModuleContext,
    cls: type[Any],
    options: ProjectionOptions,
    definitions: list[HandlerDefinition],
    aggregates: AggregateStore,
    stores: dict[str, Any],
) -> Projection | None:
    problems = context.problems
    where = f"projection {options.name!r} ({cls.__qualname__})"
    before = len(problems)
    if bool(options.from_streams) == options.from_all:
        problems.append(
            f"{where} must read from_streams=[...] or from_all=True (exactly one of them)"
        )
    asynchronous = cls.__dict__.get(ASYNCHRONOUS_CLASS)
    if asynchronous and options.polling:
        problems.append(
            f"{where} is both @asynchronous and polling=True: choose one (a trigger after each "
            f"command, or a consumer that polls)"
        )
    if asynchronous and len(asynchronous) != 1:
        problems.append(
            f"{where}: an asynchronous projection's trigger goes through one channel, got "
            f"{list(asynchronous)}"
        )
    if options.batch_size < 1:
        problems.append(f"{where}: batch_size must be at least 1, got {options.batch_size}")
    if not definitions:
        problems.append(f"{where} has no @event_handler: give it one for each event it projects")
    streams: list[str] = []
    for source in options.from_streams:
        if isinstance(source, str):
            streams.append(source)
            continue
        found = aggregate_options(source) if isinstance(source, type) else None
        if found is None or found.kind != "event_sourced":
            problems.append(
                f"{where} reads from {getattr(source, '__qualname__', source)!r}, which is not "
                f"an @event_sourcing_aggregate; name event-sourced aggregate classes or stream "
                f"names"
            )
            continue
        streams.append(type_name(source))
    state_types: set[Any] = set()
    handlers = [_handler(context, d, state_types) for d in definitions]
    if len(state_types) > 1:
        shown = ", ".join(sorted(getattr(t, "__qualname__", repr(t)) for t in state_types))
        problems.append(
            f"{where}: its handlers declare different ProjectionState types ({shown}); they "
            f"share one state: declare the same type in each"
        )
    if len(problems) > before:
        return None
    state_type = next(iter(state_types), None)
    channels: tuple[str, ...] = (
        () if context.asynchronous_inline else tuple(cls.__dict__.get(ASYNCHRONOUS_CLASS, ()))
    )
    return Projection(
        channels=channels,
        options=options,
        streams=None if options.from_all else tuple(streams),
        handlers=handlers,
        hooks=_hooks(context, cls),
        state=_state_codec(context, state_type),
        event_store=lambda: aggregates.event_store,
        store=lambda: stores["state"],
        transactions=lambda: context.transactions_if_any,
    )


def _handler(
    context: ModuleContext, definition: HandlerDefinition, state_types: set[Any]
) -> ProjectionHandler:
    takes_state = False

    def special(parameter: Parameter) -> Resolver | None:
        nonlocal takes_state
        if any(m is ProjectionState or isinstance(m, ProjectionState) for m in parameter.markers):
            takes_state = True
            state_types.add(_nullable(parameter))
            return _current_state
        if parameter.annotation is StoredEvent:
            return _current_stored
        return None

    _, resolvers, _ = definition.bind(context, special)
    key = definition.declaration.routing_key
    return ProjectionHandler(
        handler=definition.info.handler,
        payload_types=definition.payload_types,
        patterns=(key,) if key is not None else (),
        call=compile_call(definition.target, resolvers),
        takes_state=takes_state,
    )


def _nullable(parameter: Parameter) -> Any:
    return parameter.annotation | None if parameter.optional else parameter.annotation


def _current_state(message: Message) -> Any:
    handling = current.get()
    return None if handling is None else handling.state


def _current_stored(message: Message) -> Any:
    handling = current.get()
    return None if handling is None else handling.stored


def _hooks(context: ModuleContext, cls: type[Any]) -> dict[str, list[Callable[[], Any]]]:
    hooks: dict[str, list[Callable[[], Any]]] = {kind: [] for kind in HOOKS}
    for member in context.members:
        kind = member.declarations.modifiers.get("projection_hook")
        if member.owner is cls and kind is not None:
            hooks[kind].append(member_call(context, member, f"@projection_{kind} {member.name}"))
    return hooks


def _state_codec(context: ModuleContext, state_type: Any) -> StateCodec:
    """The state as JSON in the store, ``T`` in the handlers; ``T()`` to start (``None`` for
    ``T | None``, and when no handler takes the state)."""
    if state_type is None:
        return StateCodec(lambda value: None, lambda value: None, lambda: None)
    origin = typing.get_origin(state_type)
    nullable = (origin is typing.Union or origin is types.UnionType) and type(None) in (
        typing.get_args(state_type)
    )
    base = (
        next(a for a in typing.get_args(state_type) if a is not type(None))
        if nullable
        else state_type
    )
    adapter: TypeAdapter[Any] = TypeAdapter(state_type)

    def initial() -> Any:
        return None if nullable else base()

    def from_json(value: Any) -> Any:
        return initial() if value is None else adapter.validate_python(value)

    return StateCodec(
        to_json=lambda value: adapter.dump_python(value, mode="json"),
        from_json=from_json,
        initial=initial,
    )
