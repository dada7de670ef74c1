"""Bootstrap: scan once, let every module register, validate everything, compile endpoints
into ready-to-call chains.

The build is one fixed sequence (``SystemBuilder.build``); every capability plugs into it as a
module (``ecopy.config.modules``), the core's own included: aggregates and sagas,
asynchronous processing and scheduling, then the modules among the extension objects.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from ecopy.config.aggregates import AggregatesModule
from ecopy.config.asynchronous import AsynchronousModule
from ecopy.config.buses import wire_buses
from ecopy.config.configuration import ServiceConfiguration
from ecopy.config.container import Container
from ecopy.config.handlers import EndpointCompiler, bound, define_handlers, subscribe_internal
from ecopy.config.interceptors import InterceptorSource
from ecopy.config.modules import Module, ModuleContext
from ecopy.config.scanning import DeclaredMember, declared_function, members_of, scan
from ecopy.config.scheduling import SchedulingModule
from ecopy.config.system import MessagingSystem
from ecopy.errors import ConfigurationError
from ecopy.messaging.binding import ArgumentBinder
from ecopy.messaging.clock import Clock, SystemClock
from ecopy.messaging.consumer import Consumer
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.dead_letter import DeadLetter, DeadLetterStore, InMemoryDeadLetterStore
from ecopy.messaging.deduplication import DeduplicationStore, InMemoryDeduplicationStore
from ecopy.messaging.naming import TypeRegistry, declared_name
from ecopy.messaging.retry import InstantRetryConfiguration
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import NoTransactions, TransactionManager
from ecopy.modelling.aggregate_handling import AggregateStore
from ecopy.modelling.buses import (
    AsyncCommandBus,
    AsyncEventBus,
    AsyncQueryBus,
    CommandBus,
    EventBus,
    QueryBus,
)
from ecopy.modelling.event_store import EventStore, SnapshotStore
from ecopy.modelling.repository import Repository
from ecopy.projecting.module import ProjectingModule

T = TypeVar("T")

#: The core's own capabilities, registered before the extension objects' modules.
CORE_MODULES = (AggregatesModule, ProjectingModule, AsynchronousModule, SchedulingModule)


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


class SystemBuilder:
    """Builds one messaging system; ``asynchronous_inline=True`` runs ``@asynchronous``
    handlers in the caller (flow tests that do not enable asynchronous processing)."""

    def __init__(
        self,
        config: ServiceConfiguration,
        services: Iterable[object] | Mapping[str, object],
        *,
        asynchronous_inline: bool = False,
    ) -> None:
        self.config = config
        self.services = services
        self.asynchronous_inline = asynchronous_inline

    def build(self, classes: Iterable[Any], packages: Iterable[str]) -> MessagingSystem:
        problems: list[str] = _classes_given_as_services(self.services)
        container = Container(self.services)
        buses = _buses(container)
        clock = _clock(container, buses)
        names = TypeRegistry()
        targets = list(dict.fromkeys([*classes, *scan(list(packages), problems)]))
        for target in targets:
            if isinstance(target, type) and declared_name(target) is not None:
                problems.extend(names.register(target))
        members = _members(targets, problems)
        conversion = PayloadConversion()
        context = ModuleContext(
            extensions=(),
            targets=tuple(targets),
            members=tuple(members),
            container=container,
            binder=ArgumentBinder(container, conversion),
            clock=clock,
            names=names,
            conversion=conversion,
            serializer=MessageSerializer(names, conversion),
            problems=problems,
            asynchronous_inline=self.asynchronous_inline,
        )
        context.extensions = self._extensions(context)
        self._register_modules(context)
        _choose_stores(context)
        for ready in context.ready_hooks:
            ready()
        compiler = EndpointCompiler(
            context,
            _interceptors(context),
            _required(context.deduplication_store),
            self.config.deduplication_expire_after,
        )
        definitions = define_handlers(context)
        context.endpoints = compiler.compile(definitions)
        subscribe_internal(context, context.endpoints)
        retry = context.extension(InstantRetryConfiguration) or InstantRetryConfiguration()
        wire_buses(compiler, definitions, context.endpoints, buses, retry)
        compiler.warn_unused_interceptors()
        context.consumers = _consumers(context)
        for check in context.checks:
            problems.extend(check())
        system = MessagingSystem(
            config=self.config,
            command_bus=buses[0],
            query_bus=buses[1],
            event_bus=buses[2],
            endpoints=tuple(context.endpoints),
            channels=context.channels,
            consumers=context.consumers,
            names=names,
            aggregates=_required(container.implementation(AggregateStore)),
            dead_letter=DeadLetter(
                _required(context.dead_letter_store),
                context.serializer,
                context.channel_named,
                context.transactions_if_any,
            ),
            clock=clock,
            services=container,
            closers=context.closers,
            endpoint_channels=context.endpoint_channels,
            chosen_by=context.chosen_by,
        )
        container.add(system)
        if problems:
            system.close()  # the engines and threads modules started are not left behind
            raise ConfigurationError(dict.fromkeys(problems))
        return system

    def _extensions(self, context: ModuleContext) -> tuple[Any, ...]:
        """The configuration's extension objects, then those ``@service_context`` methods
        return."""
        extensions = list(self.config.extensions)
        for member in context.members:
            if not member.declarations.modifiers.get("service_context"):
                continue
            provider = bound(context, member)
            if provider is None:
                continue
            provided = provider()
            extensions.extend(provided if isinstance(provided, (list, tuple)) else [provided])
        return tuple(extensions)

    @staticmethod
    def _register_modules(context: ModuleContext) -> None:
        for core in CORE_MODULES:
            core().register(context)
        for extension in context.extensions:
            if isinstance(extension, Module):
                extension.register(context)
        for extension in context.unclaimed_extensions():
            context.problems.append(
                f"unknown extension object {extension!r}: no ecopy module handles "
                f"{type(extension).__qualname__}; is its adapter package installed?"
            )


def _not_a_class(target: object) -> str:
    """The problem with something in classes= that has no handlers to register."""
    if inspect.isfunction(target):
        return (
            f"classes= holds the function {target.__module__}.{target.__qualname__}, which "
            f"carries no ecopy decorator; decorate it (e.g. @event_handler) or leave it out"
        )
    if inspect.isroutine(target) or inspect.ismodule(target):
        return (
            f"classes= holds {target!r}, which is neither a class nor a decorated function; "
            f"give the classes (or the module path in scan=)"
        )
    name = type(target).__qualname__
    return (
        f"classes= holds an instance of {name}, where a class belongs; give {name} in "
        f"classes= and the instance in services="
    )


def _classes_given_as_services(services: Iterable[object] | Mapping[str, object]) -> list[str]:
    given = services.values() if isinstance(services, Mapping) else services
    return [
        f"services= holds the class {service.__qualname__} itself, where an instance belongs; "
        f"pass {service.__qualname__}(...), or leave it out if it is a handler class whose "
        f"constructor needs nothing (ecopy then creates it)"
        for service in given
        if isinstance(service, type)
    ]


def _buses(container: Container) -> tuple[CommandBus, QueryBus, EventBus]:
    command_bus, query_bus, event_bus = CommandBus(), QueryBus(), EventBus()
    for bus in (command_bus, query_bus, event_bus):
        container.add(bus)
    container.add(AsyncCommandBus(command_bus))
    container.add(AsyncEventBus(event_bus))
    container.add(AsyncQueryBus(query_bus))
    return command_bus, query_bus, event_bus


def _clock(container: Container, buses: tuple[CommandBus, QueryBus, EventBus]) -> Clock:
    clock: Clock = container.implementation(Clock) or SystemClock()
    container.add(clock)
    # Messages are stamped by the application's clock (time.time itself for the system
    # clock: one call less on every send).
    now = time.time if type(clock) is SystemClock else clock.now
    for bus in buses:
        bus._now = now
    return clock


def _members(targets: list[Any], problems: list[str]) -> list[DeclaredMember]:
    members: list[DeclaredMember] = []
    for target in targets:
        if isinstance(target, type):
            members.extend(members_of(target))
        else:
            member = declared_function(target)
            if member is None:
                problems.append(_not_a_class(target))
            else:
                members.append(member)
    return members


def _choose_stores(context: ModuleContext) -> None:
    """Each store: a service given to bootstrap first, then a module's, then in memory."""
    added = {id(service) for service in context.added_services}

    def given(port: type[Any]) -> list[Any]:
        return [s for s in context.container.implementations(port) if id(s) not in added]

    def first_given(port: type[Any]) -> Any:
        found = given(port)
        return found[0] if found else None

    context.dead_letter_store = (
        first_given(DeadLetterStore) or context.dead_letter_store or InMemoryDeadLetterStore()
    )
    context.deduplication_store = (
        first_given(DeduplicationStore)
        or context.deduplication_store
        or InMemoryDeduplicationStore()
    )
    context.transactions = (
        first_given(TransactionManager) or context.transactions or NoTransactions()
    )
    context.repositories = [*given(Repository), *context.repositories]
    context.event_store = first_given(EventStore) or context.event_store
    context.snapshot_store = first_given(SnapshotStore) or context.snapshot_store
    context.binder.providers.update(context.providers)


def _interceptors(context: ModuleContext) -> list[InterceptorSource]:
    sources: list[InterceptorSource] = []
    for member in context.members:
        for declaration in member.declarations.interceptors:
            target = bound(context, member)
            if target is not None:
                sources.append(
                    InterceptorSource.of(
                        member.name, target, declaration, len(sources), context.problems
                    )
                )
    return sources


def _consumers(context: ModuleContext) -> dict[str, Consumer]:
    consumers: dict[str, Consumer] = {}
    for factory in context.consumer_factories:
        for name, consumer in factory().items():
            if name in consumers:
                context.problems.append(f"consumer name {name!r} is used twice")
                continue
            consumers[name] = consumer
    return consumers


def _required(value: T | None) -> T:
    assert value is not None
    return value
