"""Bootstrap: scan once, validate everything, compile endpoints into ready-to-call chains."""

from __future__ import annotations

import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ecopy.config.asynchronous import (
    AsynchronousRoute,
    AsynchronousSettings,
    CombinedMessageChannel,
    build_consumers,
    sending_invoker,
)
from ecopy.config.configuration import ServiceConfiguration
from ecopy.config.container import Container
from ecopy.config.interceptors import InterceptorSource
from ecopy.config.modules import Module, ModuleContext
from ecopy.config.scanning import DeclaredMember, declared_function, members_of, scan
from ecopy.config.system import MessagingSystem
from ecopy.errors import ConfigurationError, NoHandlerFound
from ecopy.messaging.binding import ArgumentBinder, PayloadMode, compile_call, parameters_of
from ecopy.messaging.channel import (
    DirectChannel,
    MessageChannel,
    PollableChannel,
    QueueChannel,
)
from ecopy.messaging.clock import Clock, SystemClock
from ecopy.messaging.collector import collecting
from ecopy.messaging.consumer import Consumer, PollingMetadata
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.coroutine import awaited
from ecopy.messaging.dead_letter import (
    DEAD_LETTER_CHANNEL,
    DeadLetter,
    DeadLetterStore,
    InMemoryDeadLetterStore,
)
from ecopy.messaging.declaration import HandlerDeclaration, class_markers
from ecopy.messaging.deduplication import (
    DeduplicationStore,
    InMemoryDeduplicationStore,
    deduplicating,
    key_function,
)
from ecopy.messaging.delivery import ROUTING_KEY, DeliveryOptions
from ecopy.messaging.endpoint import (
    RANK_AGGREGATE,
    RANK_SAGA,
    RANK_SERVICE,
    Endpoint,
    EndpointInfo,
    Invoker,
)
from ecopy.messaging.interceptor import CompiledInterceptor, compile_chain
from ecopy.messaging.message import Message
from ecopy.messaging.naming import TypeRegistry, declared_name, type_name
from ecopy.messaging.retry import (
    ErrorHandlerConfiguration,
    InstantRetryConfiguration,
    instantly_retrying,
)
from ecopy.messaging.scheduling import ScheduledConsumer
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import NoTransactions, TransactionManager, transactional
from ecopy.modelling.aggregate import AggregateDefinition
from ecopy.modelling.aggregate_handling import (
    AggregateHandler,
    AggregateStore,
    compile_aggregate_invoker,
    target_version_getter,
)
from ecopy.modelling.buses import (
    AsyncCommandBus,
    AsyncEventBus,
    AsyncQueryBus,
    CommandBus,
    EventBus,
    QueryBus,
    event_dispatch,
    point_to_point_dispatch,
)
from ecopy.modelling.event_store import (
    EventStore,
    InMemoryEventStore,
    InMemorySnapshotStore,
    SnapshotStore,
)
from ecopy.modelling.identifier import compile_identifier_resolver
from ecopy.modelling.repository import InMemoryRepository, Repository
from ecopy.modelling.routing import EventRouter, PointToPointRouter


def bootstrap(
    *,
    classes: Iterable[Any] = (),
    scan: Iterable[str] = (),
    services: Iterable[object] | Mapping[str, object] = (),
    config: ServiceConfiguration | None = None,
) -> MessagingSystem:
    """Build a messaging system from decorated classes and functions.

    ``classes`` lists handler classes (and module-level handler functions); ``scan`` lists
    packages whose modules are imported and searched; ``services`` holds the instances that
    handlers live on or need. Every configuration problem is reported in one
    :class:`~ecopy.errors.ConfigurationError`.
    """
    return SystemBuilder(config or ServiceConfiguration(), services).build(classes, scan)


def _sender_to(channel: MessageChannel) -> Callable[[Any], None]:
    def send(payload: Any) -> None:
        channel.send(Message(payload))

    return send


def _union_members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


@dataclass
class HandlerDefinition:
    """A handler found by scanning, before compilation."""

    member: DeclaredMember
    declaration: HandlerDeclaration
    info: EndpointInfo
    target: Any
    payload_types: tuple[type[Any], ...]
    payload_mode: PayloadMode
    aggregate: AggregateDefinition | None = None
    factory: HandlerDefinition | None = None

    @property
    def is_factory(self) -> bool:
        return self.member.binding in ("class", "static")

    def route(self) -> tuple[Any, ...]:
        key = self.declaration.routing_key
        return (
            (self.declaration.kind, key)
            if key is not None
            else (self.declaration.kind, *self.payload_types)
        )


class SystemBuilder:
    """Collects declarations and problems, then compiles the messaging system."""

    def __init__(
        self,
        config: ServiceConfiguration,
        services: Iterable[object] | Mapping[str, object],
        *,
        asynchronous_inline: bool = False,
    ) -> None:
        """``asynchronous_inline=True`` runs ``@asynchronous`` handlers in the caller (flow
        tests that do not enable asynchronous processing)."""
        self.config = config
        self.asynchronous_inline = asynchronous_inline
        self.problems: list[str] = []
        self.container = Container(services)
        self.conversion = PayloadConversion()
        self.binder = ArgumentBinder(self.container, self.conversion)
        self.names = TypeRegistry()
        self.command_bus = CommandBus()
        self.event_bus = EventBus()
        self.query_bus = QueryBus()
        for bus in (self.command_bus, self.event_bus, self.query_bus):
            self.container.add(bus)
        self.container.add(AsyncCommandBus(self.command_bus))
        self.container.add(AsyncEventBus(self.event_bus))
        self.container.add(AsyncQueryBus(self.query_bus))
        self.clock: Clock = self.container.implementation(Clock) or SystemClock()
        self.container.add(self.clock)
        # Messages are stamped by the application's clock (time.time itself for the system
        # clock: one call less on every send).
        now = time.time if type(self.clock) is SystemClock else self.clock.now
        for bus in (self.command_bus, self.event_bus, self.query_bus):
            bus._now = now
        self.serializer = MessageSerializer(self.names, self.conversion)
        # Modules may replace these in-memory defaults (see _configure_extensions).
        self.dead_letters: DeadLetterStore = InMemoryDeadLetterStore()
        self.deduplication: DeduplicationStore = InMemoryDeduplicationStore()
        self.transactions: TransactionManager = NoTransactions()
        self.without_transaction: set[str] = set()
        self.asynchronous = AsynchronousSettings()
        self.routes: dict[str, AsynchronousRoute] = {}
        self.internal_on_queue: dict[str, Endpoint] = {}
        self.scheduled: list[DeclaredMember] = []
        self.closers: list[Callable[[], None]] = []
        self.transactional_parameters: set[type[Any]] = set()
        self.channels: dict[str, MessageChannel] = {}
        self.queues: dict[str, PollableChannel] = {}
        self.interceptors: list[InterceptorSource] = []
        self.aggregate_definitions: dict[type[Any], AggregateDefinition | None] = {}
        self.aggregates = AggregateStore(
            self.event_bus, [InMemoryRepository()], InMemoryEventStore(), InMemorySnapshotStore()
        )
        self.container.add(self.aggregates)

    # -- collecting -------------------------------------------------------------------

    def build(self, classes: Iterable[Any], packages: Iterable[str]) -> MessagingSystem:
        targets = list(dict.fromkeys([*classes, *scan(list(packages), self.problems)]))
        members = self._members(targets)
        for target in targets:
            if isinstance(target, type):
                if declared_name(target) is not None:
                    self.problems.extend(self.names.register(target))
                self._aggregate(target)
        self._configure_extensions(members)
        self._collect_interceptors(members)
        definitions = self._definitions(members)
        endpoints = self._compile(definitions)
        self.scheduled = [m for m in members if "scheduled" in m.declarations.modifiers]
        system = MessagingSystem(
            config=self.config,
            command_bus=self.command_bus,
            event_bus=self.event_bus,
            query_bus=self.query_bus,
            endpoints=tuple(endpoints),
            channels=self.channels,
            consumers=self._consumers(),
            names=self.names,
            aggregates=self.aggregates,
            dead_letter=DeadLetter(
                self.dead_letters,
                self.serializer,
                self._channel_named,
                self._transactions_if_any(),
            ),
            clock=self.clock,
            services=self.container,
            closers=self.closers,
        )
        self.container.add(system)
        if self.problems:
            system.close()  # the engines and threads modules started are not left behind
            raise ConfigurationError(dict.fromkeys(self.problems))
        return system

    def _members(self, targets: list[Any]) -> list[DeclaredMember]:
        members: list[DeclaredMember] = []
        for target in targets:
            if isinstance(target, type):
                members.extend(members_of(target))
            else:
                member = declared_function(target)
                if member is None:
                    self.problems.append(
                        f"{target!r} was given in classes= but is neither a class nor a "
                        f"decorated function"
                    )
                else:
                    members.append(member)
        return members

    def _aggregate(self, owner: type[Any] | None) -> AggregateDefinition | None:
        if owner is None:
            return None
        if owner not in self.aggregate_definitions:
            definition = AggregateDefinition.of(owner, self.problems)
            self.aggregate_definitions[owner] = definition
            if definition is not None:
                self.aggregates.definitions[owner] = definition
                # Snapshots and documents read back from a database name their class.
                self.problems.extend(self.names.register(owner))
                # Events read back from a database event store must be known by name.
                for event_type in definition.appliers:
                    self.problems.extend(self.names.register(event_type))
        return self.aggregate_definitions[owner]

    def _bound(self, member: DeclaredMember) -> Any:
        """The callable to invoke: bound to its instance or class, or the plain function."""
        if member.binding == "instance" and member.owner is not None:
            instance = self.container.instance_of(member.owner, self.problems)
            return None if instance is None else types.MethodType(member.function, instance)
        if member.binding == "class" and member.owner is not None:
            return types.MethodType(member.function, member.owner)
        return member.function

    def _configure_extensions(self, members: list[DeclaredMember]) -> None:
        extensions = list(self.config.extensions)
        for member in members:
            if not member.declarations.modifiers.get("service_context"):
                continue
            provider = self._bound(member)
            if provider is None:
                continue
            provided = provider()
            extensions.extend(provided if isinstance(provided, (list, tuple)) else [provided])
        modules = ModuleContext(
            extensions=tuple(extensions),
            container=self.container,
            clock=self.clock,
            names=self.names,
            conversion=self.conversion,
            serializer=self.serializer,
            problems=self.problems,
        )
        for extension in extensions:
            if isinstance(extension, Module):
                extension.register(modules)
            elif isinstance(extension, QueueChannel):
                if extension.name in self.channels:
                    self.problems.append(f"channel {extension.name!r} is declared twice")
                queue = extension.build(self.serializer, self.clock)
                self.queues[extension.name] = queue
                self.channels[extension.name] = queue
            elif isinstance(extension, CombinedMessageChannel):
                self.asynchronous.combined[extension.name] = tuple(extension.channels)
            elif isinstance(extension, PollingMetadata):
                self.asynchronous.polling[extension.endpoint_id] = extension
            elif isinstance(extension, ErrorHandlerConfiguration):
                self.asynchronous.error_handlers.append(extension)
            elif isinstance(extension, InstantRetryConfiguration):
                self.asynchronous.instant_retry = extension
            else:
                self.problems.append(
                    f"unknown extension object {extension!r}: no ecopy module handles "
                    f"{type(extension).__qualname__}; is its adapter package installed?"
                )
        self._use_modules(modules)

    def _use_modules(self, modules: ModuleContext) -> None:
        """Stores: services given to bootstrap first, then modules, then in memory."""
        for name, channel in modules.channels.items():
            if name in self.channels:
                self.problems.append(f"channel {name!r} is declared twice")
            self.channels[name] = channel
            if isinstance(channel, PollableChannel):
                self.queues[name] = channel
        added = {id(service) for service in modules.added_services}

        def given(port: type[Any]) -> list[Any]:
            return [s for s in self.container.implementations(port) if id(s) not in added]

        def first_given(port: type[Any]) -> Any:
            found = given(port)
            return found[0] if found else None

        self.dead_letters = (
            first_given(DeadLetterStore) or modules.dead_letter_store or self.dead_letters
        )
        self.deduplication = (
            first_given(DeduplicationStore) or modules.deduplication_store or self.deduplication
        )
        self.transactions = (
            first_given(TransactionManager) or modules.transactions or self.transactions
        )
        self.aggregates.configure(
            repositories=[*given(Repository), *modules.repositories, InMemoryRepository()],
            event_store=first_given(EventStore) or modules.event_store,
            snapshots=first_given(SnapshotStore) or modules.snapshot_store,
        )
        self.binder.providers.update(modules.providers)
        self.transactional_parameters = modules.transactional_parameters
        self.closers = modules.closers

    def _collect_interceptors(self, members: list[DeclaredMember]) -> None:
        for member in members:
            for declaration in member.declarations.interceptors:
                target = self._bound(member)
                if target is None:
                    continue
                self.interceptors.append(
                    InterceptorSource.of(
                        member.name, target, declaration, len(self.interceptors), self.problems
                    )
                )

    # -- handlers ---------------------------------------------------------------------

    def _definitions(self, members: list[DeclaredMember]) -> list[HandlerDefinition]:
        definitions: list[HandlerDefinition] = []
        seen_ids: dict[str, str] = {}
        for member in members:
            for declaration in member.declarations.handlers:
                definition = self._definition(member, declaration)
                if definition is None:
                    continue
                endpoint_id = definition.info.endpoint_id
                if endpoint_id in seen_ids:
                    self.problems.append(
                        f"endpoint id {endpoint_id!r} is used by {seen_ids[endpoint_id]} and "
                        f"{member.name}; give one of them endpoint_id="
                    )
                    continue
                seen_ids[endpoint_id] = member.name
                definitions.append(definition)
        return self._pair_factories(definitions)

    @staticmethod
    def _pair_factories(definitions: list[HandlerDefinition]) -> list[HandlerDefinition]:
        """An aggregate's factory and action for the same message become one endpoint: the
        action runs when the aggregate exists, the factory otherwise."""
        groups: dict[tuple[Any, ...], list[HandlerDefinition]] = {}
        for definition in definitions:
            if definition.aggregate is not None:
                key = (definition.aggregate.cls, *definition.route())
                groups.setdefault(key, []).append(definition)
        merged: set[int] = set()
        for group in groups.values():
            factories = [d for d in group if d.is_factory]
            actions = [d for d in group if not d.is_factory]
            if len(factories) == 1 and len(actions) == 1:
                actions[0].factory = factories[0]
                merged.add(id(factories[0]))
        return [d for d in definitions if id(d) not in merged]

    def _definition(
        self, member: DeclaredMember, declaration: HandlerDeclaration
    ) -> HandlerDefinition | None:
        aggregate = self._aggregate(member.owner)
        target = member.function if aggregate is not None else self._bound(member)
        if target is None:
            return None
        name = member.name
        key = declaration.routing_key
        by_class = declaration.kind != "internal" and key is None
        payload_mode: PayloadMode = "required" if by_class else "optional"
        parameters = parameters_of(
            member.function, skip_first=member.binding in ("instance", "class")
        )
        payload_types: tuple[type[Any], ...] = ()
        if by_class:
            annotation = (
                parameters[0].annotation if parameters and parameters[0].annotated else None
            )
            payload_types = tuple(
                a for a in _union_members(annotation) if isinstance(a, type) and a is not object
            )
            if isinstance(annotation, str):
                self.problems.append(
                    f"handler {name}: the annotation {annotation!r} of its first parameter "
                    f"cannot be resolved; define {annotation} at module level (annotations of "
                    f"classes defined inside functions cannot be resolved later with "
                    f"'from __future__ import annotations')"
                )
                return None
            if not payload_types:
                self.problems.append(
                    f"handler {name} routes by message class, but its first parameter is not "
                    f"annotated with a class; annotate it (e.g. command: PlaceOrder) or give a "
                    f'routing key (@{declaration.kind}_handler("name"))'
                )
                return None
            for payload_type in payload_types:
                self.problems.extend(self.names.register(payload_type))
        if declaration.kind == "internal":
            routes: tuple[str, ...] = (str(declaration.input_channel),)
        elif key is not None:
            routes = (key,)
        else:
            routes = tuple(type_name(t) for t in payload_types)
        endpoint_id = declaration.endpoint_id or name
        info = EndpointInfo(
            endpoint_id=endpoint_id,
            kind=declaration.kind,
            handler=f"{member.function.__module__}.{name}",
            owner=member.owner,
            function=member.function,
            routes=routes,
            input_channel=declaration.input_channel or "",
            output_channel=declaration.output_channel,
            priority=int(member.declarations.modifiers.get("priority", 0)),
            rank=RANK_SERVICE
            if aggregate is None
            else (RANK_SAGA if aggregate.kind == "saga" else RANK_AGGREGATE),
            markers=tuple(member.declarations.markers)
            + (tuple(class_markers(member.owner)) if member.owner else ()),
            options=declaration.options,
        )
        return HandlerDefinition(
            member, declaration, info, target, payload_types, payload_mode, aggregate
        )

    def _compile(self, definitions: list[HandlerDefinition]) -> list[Endpoint]:
        # Input channels of internal handlers exist before any endpoint refers to them.
        for definition in definitions:
            if definition.declaration.kind == "internal":
                channel_name = definition.info.input_channel
                if channel_name not in self.channels:
                    self.channels[channel_name] = DirectChannel(channel_name)
        endpoints: list[Endpoint] = []
        for definition in definitions:
            endpoint = self._endpoint(definition)
            if endpoint is not None:
                endpoints.append(endpoint)
        self._subscribe_internal(endpoints)
        self._wire_buses(definitions, endpoints)
        return endpoints

    def _endpoint(self, definition: HandlerDefinition) -> Endpoint | None:
        info = definition.info
        core: Invoker
        if definition.aggregate is not None:
            factory = definition if definition.is_factory else definition.factory
            core = compile_aggregate_invoker(
                self.aggregates,
                None if definition.is_factory else self._aggregate_handler(definition),
                self._aggregate_handler(factory) if factory is not None else None,
            )
        else:
            parameters = parameters_of(
                definition.member.function,
                skip_first=definition.member.binding in ("instance", "class"),
            )
            resolvers, _, problems = self.binder.bind(
                parameters, handler=info.handler, payload=definition.payload_mode
            )
            self.problems.extend(problems)
            core = compile_call(definition.target, resolvers)
            core = self._in_transaction_if_needed(definition, parameters, core)
        modifiers = definition.member.declarations.modifiers
        if modifiers.get("without_transaction"):
            self.without_transaction.add(info.endpoint_id)
        if "deduplicated" in modifiers:
            header, key, tracking_name = modifiers["deduplicated"]
            core = deduplicating(
                core,
                scope=tracking_name or info.endpoint_id,
                key=key_function(header, key),
                store=self.deduplication,
                clock=self.clock,
                expire_after=self.config.deduplication_expire_after,
            )
        interceptors = self._interceptors_for(info)
        output = None
        if info.output_channel is not None:
            output = self.channels.get(info.output_channel)
            if output is None:
                self.problems.append(
                    f"handler {info.handler} sends its result to channel "
                    f"{info.output_channel!r}, which does not exist; declare an "
                    f"@internal_handler({info.output_channel!r}) or a channel with that name"
                )
        channels = modifiers.get("asynchronous")
        if channels is not None and info.kind == "query":
            self.problems.append(
                f"query handler {info.handler} is @asynchronous, but a query must answer its "
                f"caller; remove @asynchronous"
            )
            channels = None
        for option in ("delayed", "time_to_live"):
            if option in modifiers and channels is None:
                self.problems.append(
                    f"handler {info.handler} has @{option} but is not @asynchronous; delivery "
                    f"options apply to messages sent to a channel"
                )
        if channels is None or self.asynchronous_inline:
            return Endpoint(info, compile_chain(core, info, interceptors), output)
        return self._asynchronous(definition, core, interceptors, output, channels)

    def _in_transaction_if_needed(
        self, definition: HandlerDefinition, parameters: list[Any], core: Invoker
    ) -> Invoker:
        """A query or event handler that asks for what exists only in a transaction (the
        database connection) runs in one; commands and asynchronous handlers always do."""
        transactions = self._transactions_if_any()
        modifiers = definition.member.declarations.modifiers
        if (
            transactions is None
            or definition.declaration.kind not in ("query", "event")
            or modifiers.get("without_transaction")
            or not any(p.annotation in self.transactional_parameters for p in parameters)
        ):
            return core
        return transactional(core, transactions)

    def _asynchronous(
        self,
        definition: HandlerDefinition,
        core: Invoker,
        interceptors: list[CompiledInterceptor],
        output: MessageChannel | None,
        channels: tuple[str, ...],
    ) -> Endpoint:
        """Split an asynchronous endpoint: presend interceptors and the send run in the
        caller; the other interceptors and the handler run in the consumer."""
        info = definition.info
        route = self.asynchronous.route(channels)
        missing = [name for name in route if name not in self.queues]
        if missing:
            self.problems.append(
                f"asynchronous handler {info.handler} uses channel(s) "
                f"{', '.join(repr(m) for m in missing)}, which are not declared; add e.g. "
                f"QueueChannel({missing[0]!r}) to the extensions"
            )
            return Endpoint(info, compile_chain(core, info, interceptors), output)
        handling = [i for i in interceptors if i.kind != "presend"]
        self.routes[info.endpoint_id] = AsynchronousRoute(
            Endpoint(info, compile_chain(core, info, handling), output), route
        )
        identifier, aggregate_type = None, None
        if definition.aggregate is not None and not definition.is_factory:
            identifier = self._aggregate_handler(definition).identifier
            aggregate_type = type_name(definition.aggregate.cls)
        sender = sending_invoker(
            info.endpoint_id,
            self.queues[route[0]],
            DeliveryOptions.of(definition.member.declarations.modifiers),
            self.clock,
            identifier,
            aggregate_type,
        )
        presends = [i for i in interceptors if i.kind == "presend"]
        return Endpoint.sending(info, compile_chain(sender, info, presends))

    def _scheduled_call(self, member: DeclaredMember) -> Callable[[], Any]:
        """A scheduled method with its parameters bound like a handler's (services, buses)."""
        target = self._bound(member)
        parameters = parameters_of(
            member.function, skip_first=member.binding in ("instance", "class")
        )
        resolvers, _, problems = self.binder.bind(
            parameters, handler=f"scheduled {member.name}", payload="none"
        )
        self.problems.extend(problems)
        call = compile_call(target, resolvers) if target is not None else None
        tick = Message(None)
        return lambda: call(tick) if call is not None else None

    def _check_error_handling(self) -> None:
        known = {handler.error_channel for handler in self.asynchronous.error_handlers}
        for handler in self.asynchronous.error_handlers:
            target = handler.dead_letter_channel
            if target not in (None, DEAD_LETTER_CHANNEL) and target not in self.channels:
                self.problems.append(
                    f"ErrorHandlerConfiguration({handler.error_channel!r}) sends failed messages "
                    f"to channel {target!r}, which does not exist; declare it, or leave "
                    f"dead_letter_channel as the default dead-letter store"
                )
        for metadata in self.asynchronous.polling.values():
            if metadata.error_channel is not None and metadata.error_channel not in known:
                self.problems.append(
                    f"PollingMetadata({metadata.endpoint_id!r}) uses error channel "
                    f"{metadata.error_channel!r}, but no ErrorHandlerConfiguration has it; known: "
                    f"{', '.join(sorted(known)) or 'none'}"
                )

    def _channel_named(self, name: str) -> MessageChannel:
        channel = self.channels.get(name)
        if channel is None:
            raise ConfigurationError([f"channel {name!r} does not exist"])
        return channel

    def _aggregate_handler(self, definition: HandlerDefinition) -> AggregateHandler:
        aggregate = definition.aggregate
        assert aggregate is not None
        member = definition.member
        parameters = parameters_of(
            member.function, skip_first=member.binding in ("instance", "class")
        )
        resolvers, payload_type, problems = self.binder.bind(
            parameters, handler=definition.info.handler, payload=definition.payload_mode
        )
        self.problems.extend(problems)
        function = awaited(member.function, definition.info.handler)
        arguments = tuple(resolvers)
        call: Any
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
            self.problems.append(f"handler {definition.info.handler}: {error}")
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

    def _interceptors_for(self, info: EndpointInfo) -> list[CompiledInterceptor]:
        return [
            source.compile_for(info, self.binder, self.problems)
            for source in self.interceptors
            if source.matches(info)
        ]

    def _subscribe_internal(self, endpoints: list[Endpoint]) -> None:
        owners: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            info = endpoint.info
            if info.kind != "internal":
                continue
            known = owners.get(info.input_channel)
            if known is not None:
                self.problems.append(
                    f"channel {info.input_channel!r} has two handlers ({known.info.handler} and "
                    f"{info.handler}); a channel is point to point, give each its own channel"
                )
                continue
            owners[info.input_channel] = endpoint
            channel = self.channels[info.input_channel]
            if isinstance(channel, DirectChannel):
                channel.subscribe(endpoint.handle)
            else:
                self.internal_on_queue[info.input_channel] = endpoint

    def _consumers(self) -> dict[str, Consumer]:
        consumers = build_consumers(
            queues=self.queues,
            routes=self.routes,
            internal=self.internal_on_queue,
            channels=self.channels,
            settings=self.asynchronous,
            clock=self.clock,
            serializer=self.serializer,
            dead_letters=self.dead_letters,
            channel_named=self._channel_named,
            transactions=self._transactions_if_any(),
            without_transaction=self.without_transaction,
        )
        for member in self.scheduled:
            request_channel, endpoint_id, cron, fixed_rate_ms = member.declarations.modifiers[
                "scheduled"
            ]
            produce = self._scheduled_call(member)
            channel = self.channels.get(request_channel)
            if channel is None:
                self.problems.append(
                    f"scheduled {member.name} sends to channel {request_channel!r}, which does "
                    f"not exist; declare an @internal_handler({request_channel!r}) or a channel"
                )
                continue
            if endpoint_id in consumers:
                self.problems.append(f"consumer name {endpoint_id!r} is used twice")
                continue
            consumers[endpoint_id] = ScheduledConsumer(
                endpoint_id,
                produce,
                _sender_to(channel),
                self.clock,
                cron=cron,
                fixed_rate_ms=fixed_rate_ms,
                metadata=self.asynchronous.polling.get(endpoint_id),
            )
        self._check_error_handling()
        for name in self.asynchronous.polling:
            if name not in consumers:
                self.problems.append(
                    f"PollingMetadata names consumer {name!r}, which does not exist; known "
                    f"consumers: {', '.join(sorted(consumers)) or 'none'}"
                )
        return consumers

    # -- buses ------------------------------------------------------------------------

    def _wire_buses(self, definitions: list[HandlerDefinition], endpoints: list[Endpoint]) -> None:
        compiled = {id(e.info): e for e in endpoints}
        tables: dict[str, tuple[dict[type[Any], Endpoint], dict[str, Endpoint]]] = {
            "command": ({}, {}),
            "query": ({}, {}),
        }
        event_classes: dict[type[Any], list[tuple[int, Endpoint]]] = {}
        event_patterns: list[tuple[str, int, Endpoint]] = []
        for order, definition in enumerate(definitions):
            endpoint = compiled.get(id(definition.info))
            if endpoint is None:
                continue
            kind = definition.declaration.kind
            key = definition.declaration.routing_key
            if kind == "event":
                if key is not None:
                    event_patterns.append((key, order, endpoint))
                for payload_type in definition.payload_types:
                    event_classes.setdefault(payload_type, []).append((order, endpoint))
            elif kind in tables:
                by_class, by_key = tables[kind]
                table: dict[Any, Endpoint] = by_key if key is not None else by_class
                routes: list[Any] = [key] if key is not None else list(definition.payload_types)
                for route in routes:
                    known = table.get(route)
                    if known is not None:
                        shown = route if isinstance(route, str) else type_name(route)
                        self.problems.append(
                            f"{kind} {shown} has two handlers: {known.info.handler} and "
                            f"{endpoint.info.handler}; a {kind} has exactly one handler"
                        )
                        continue
                    table[route] = endpoint
        for table_kind, (class_table, key_table) in tables.items():
            for cls, class_endpoint in class_table.items():
                named = key_table.get(type_name(cls))
                if named is not None:
                    self.problems.append(
                        f"{table_kind} {type_name(cls)!r} has two handlers: {named.info.handler} "
                        f"by routing key and {class_endpoint.info.handler} by class; a "
                        f"{table_kind} has exactly "
                        f"one handler"
                    )
        retry = self.asynchronous.instant_retry
        commands = PointToPointRouter("command", *tables["command"], self.names)
        # The transaction is outside the collector: outgoing messages are sent (to an outbox
        # table, say) before it commits.
        dispatch = collecting(point_to_point_dispatch(commands))
        transactions = self._transactions_if_any()
        if transactions is not None:
            dispatch = transactional(dispatch, transactions, self._needs_transaction(commands))
        self.command_bus._dispatch = self._gateway(
            "command_bus",
            CommandBus,
            instantly_retrying(dispatch, retry.command_bus_retries, retry.command_bus_exceptions),
        )
        self.query_bus._dispatch = self._gateway(
            "query_bus",
            QueryBus,
            point_to_point_dispatch(PointToPointRouter("query", *tables["query"], self.names)),
        )
        self.event_bus._dispatch = self._gateway(
            "event_bus",
            EventBus,
            event_dispatch(EventRouter(event_classes, event_patterns, self.names)),
        )

    def _transactions_if_any(self) -> TransactionManager | None:
        return None if isinstance(self.transactions, NoTransactions) else self.transactions

    def _needs_transaction(self, commands: PointToPointRouter) -> Callable[[Message], bool] | None:
        """Which commands run in a transaction: all but those whose handler opted out."""
        opted_out = self.without_transaction
        if not opted_out:
            return None

        def needs_transaction(message: Message) -> bool:
            key = message._headers.get(ROUTING_KEY)
            try:
                endpoint = (
                    commands.for_payload(message._payload) if key is None else commands.for_key(key)
                )
            except NoHandlerFound:
                return False
            return endpoint.info.endpoint_id not in opted_out

        return needs_transaction

    def _gateway(self, gateway_id: str, bus: type[Any], dispatch: Invoker) -> Invoker:
        info = EndpointInfo(
            endpoint_id=gateway_id, kind="gateway", handler=bus.__qualname__, owner=bus
        )
        return compile_chain(dispatch, info, self._interceptors_for(info))
