"""Handlers: from scanned members to compiled endpoints.

``define_handlers`` turns each handler declaration into a :class:`HandlerDefinition` (its
routes, payload types, rank and markers); ``EndpointCompiler`` compiles a definition into the
chain the buses call: argument binding, deduplication, interceptors, the output channel, then
the endpoint stages modules contributed (asynchronous processing splits an endpoint in two).
"""

from __future__ import annotations

import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ecopy.config.interceptors import InterceptorSource
from ecopy.config.modules import ModuleContext
from ecopy.config.scanning import DeclaredMember
from ecopy.errors import ConfigurationWarning
from ecopy.messaging.binding import (
    Parameter,
    PayloadMode,
    Resolver,
    compile_call,
    parameters_of,
)
from ecopy.messaging.channel import DirectChannel, MessageChannel
from ecopy.messaging.declaration import HandlerDeclaration, class_markers
from ecopy.messaging.deduplication import DeduplicationStore, deduplicating, key_function
from ecopy.messaging.endpoint import RANK_SERVICE, Endpoint, EndpointInfo, Invoker
from ecopy.messaging.interceptor import CompiledInterceptor, compile_chain
from ecopy.messaging.message import Message
from ecopy.messaging.naming import type_name
from ecopy.messaging.transaction import transactional


class HandlerOwner(Protocol):
    """Calls the handlers of a class that is not a service (an aggregate, a saga)."""

    @property
    def rank(self) -> int:
        """Where its endpoints come among the handlers of one event (``EndpointInfo.rank``)."""
        ...

    def invoker(self, definition: HandlerDefinition) -> Invoker:
        """The endpoint core for ``definition``, a handler of the owned class."""
        ...


@dataclass
class HandlerDefinition:
    """A handler found by scanning, before compilation."""

    member: DeclaredMember
    declaration: HandlerDeclaration
    info: EndpointInfo
    target: Any
    payload_types: tuple[type[Any], ...]
    payload_mode: PayloadMode
    owner: HandlerOwner | None = None
    routed: bool = True
    """False for an endpoint the buses do not route to directly (a factory an action of the
    same aggregate chooses between)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """What modules note about the definition for their later stages."""

    @property
    def is_factory(self) -> bool:
        return self.member.binding in ("class", "static")

    @property
    def modifiers(self) -> dict[str, Any]:
        return self.member.declarations.modifiers

    def bind(
        self,
        context: ModuleContext,
        special: Callable[[Parameter], Resolver | None] | None = None,
    ) -> tuple[list[Parameter], list[Resolver], Any]:
        """The handler's parameters, a resolver for each (problems noted in the context), and
        the payload type it asks for; ``special`` resolves what a module adds (a projection's
        state)."""
        member = self.member
        parameters = parameters_of(
            member.function, skip_first=member.binding in ("instance", "class")
        )
        resolvers, payload_type, problems = context.binder.bind(
            parameters, handler=self.info.handler, payload=self.payload_mode, special=special
        )
        context.problems.extend(problems)
        return parameters, resolvers, payload_type

    def route(self) -> tuple[Any, ...]:
        key = self.declaration.routing_key
        return (
            (self.declaration.kind, key)
            if key is not None
            else (self.declaration.kind, *self.payload_types)
        )


@dataclass
class EndpointPlan:
    """An endpoint compiled up to its last stage: what a module's endpoint stage receives."""

    definition: HandlerDefinition
    core: Invoker
    interceptors: list[CompiledInterceptor]
    output: MessageChannel | None

    @property
    def info(self) -> EndpointInfo:
        return self.definition.info

    def handling(self, context: ModuleContext, interceptors: list[CompiledInterceptor]) -> Endpoint:
        """The endpoint that handles the message (wherever that is), with ``interceptors``;
        its chain is known to the context by endpoint id (see ``ModuleContext.handling``)."""
        chain = compile_chain(self.core, self.info, interceptors)
        wrap = self.definition.extras.get("wrap_handling")
        if wrap is not None:
            chain = wrap(chain)
        context.handling[self.info.endpoint_id] = chain
        return Endpoint(self.info, chain, self.output)


def bound(context: ModuleContext, member: DeclaredMember) -> Any:
    """The callable to invoke: bound to its instance or class, or the plain function."""
    if member.binding == "instance" and member.owner is not None:
        instance = context.container.instance_of(member.owner, context.problems)
        return None if instance is None else types.MethodType(member.function, instance)
    if member.binding == "class" and member.owner is not None:
        return types.MethodType(member.function, member.owner)
    return member.function


def member_call(context: ModuleContext, member: DeclaredMember, label: str) -> Callable[[], Any]:
    """A method called without a message (a schedule, a projection's hook), its parameters
    bound like a handler's (services, buses, the transaction's connection); problems are
    noted in the context, as ``label``."""
    target = bound(context, member)
    parameters = parameters_of(member.function, skip_first=member.binding in ("instance", "class"))
    resolvers, _, problems = context.binder.bind(parameters, handler=label, payload="none")
    context.problems.extend(problems)
    call = compile_call(target, resolvers) if target is not None else None
    tick = Message(None)
    return lambda: call(tick) if call is not None else None


def _union_members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def define_handlers(context: ModuleContext) -> list[HandlerDefinition]:
    """Every handler of the scanned members, with problems (duplicate endpoint ids,
    unresolvable annotations) noted in the context."""
    definitions: list[HandlerDefinition] = []
    seen_ids: dict[str, str] = {}
    owners: dict[type[Any], HandlerOwner | None] = {}

    def owner_of(cls: type[Any] | None) -> HandlerOwner | None:
        if cls is None:
            return None
        if cls not in owners:
            owners[cls] = next(
                (o for resolve in context.owner_resolvers if (o := resolve(cls)) is not None),
                None,
            )
        return owners[cls]

    for member in context.members:
        for declaration in member.declarations.handlers:
            definition = _definition(context, member, declaration, owner_of(member.owner))
            if definition is None:
                continue
            endpoint_id = definition.info.endpoint_id
            if endpoint_id in seen_ids:
                context.problems.append(
                    f"endpoint id {endpoint_id!r} is used by two handlers, "
                    f"{seen_ids[endpoint_id]} and {definition.info.handler}; an endpoint id "
                    f"names one handler, give the other one its own endpoint_id="
                )
                continue
            seen_ids[endpoint_id] = definition.info.handler
            definitions.append(definition)
    for hook in context.definition_hooks:
        definitions = hook(definitions)
    return definitions


def _definition(
    context: ModuleContext,
    member: DeclaredMember,
    declaration: HandlerDeclaration,
    owner: HandlerOwner | None,
) -> HandlerDefinition | None:
    problems = context.problems
    target = member.function if owner is not None else bound(context, member)
    if target is None:
        return None
    name = member.name
    key = declaration.routing_key
    by_class = declaration.kind != "internal" and key is None
    payload_mode: PayloadMode = "required" if by_class else "optional"
    parameters = parameters_of(member.function, skip_first=member.binding in ("instance", "class"))
    payload_types: tuple[type[Any], ...] = ()
    if by_class:
        annotation = parameters[0].annotation if parameters and parameters[0].annotated else None
        payload_types = tuple(
            a for a in _union_members(annotation) if isinstance(a, type) and a is not object
        )
        if isinstance(annotation, str):
            problems.append(
                f"handler {name}: the annotation {annotation!r} of its first parameter "
                f"cannot be resolved; import {annotation} in the handler's module at run time "
                f"(not only under TYPE_CHECKING) and define it at module level (with 'from "
                f"__future__ import annotations', a class defined inside a function cannot be "
                f"found later)"
            )
            return None
        if not payload_types:
            problems.append(
                f"handler {name} routes by message class, but its first parameter is not "
                f"annotated with a class; annotate it (e.g. command: PlaceOrder) or give a "
                f'routing key (@{declaration.kind}_handler("name"))'
            )
            return None
        for payload_type in payload_types:
            problems.extend(context.names.register(payload_type))
    if declaration.kind == "internal":
        routes: tuple[str, ...] = (str(declaration.input_channel),)
    elif key is not None:
        routes = (key,)
    else:
        routes = tuple(type_name(t) for t in payload_types)
    info = EndpointInfo(
        endpoint_id=declaration.endpoint_id or name,
        kind=declaration.kind,
        handler=f"{member.function.__module__}.{name}",
        owner=member.owner,
        function=member.function,
        routes=routes,
        input_channel=declaration.input_channel or "",
        output_channel=declaration.output_channel,
        priority=int(member.declarations.modifiers.get("priority", 0)),
        rank=RANK_SERVICE if owner is None else owner.rank,
        markers=tuple(member.declarations.markers)
        + (tuple(class_markers(member.owner)) if member.owner else ()),
        options=declaration.options,
    )
    return HandlerDefinition(member, declaration, info, target, payload_types, payload_mode, owner)


class EndpointCompiler:
    """Compiles handler definitions into endpoints, once every store is known."""

    def __init__(
        self,
        context: ModuleContext,
        interceptors: list[InterceptorSource],
        deduplication: DeduplicationStore,
        deduplication_expire_after: float,
    ) -> None:
        self.context = context
        self.interceptors = interceptors
        self.deduplication = deduplication
        self.deduplication_expire_after = deduplication_expire_after
        self.used: set[int] = set()

    def compile(self, definitions: list[HandlerDefinition]) -> list[Endpoint]:
        channels = self.context.channels
        # Input channels of internal handlers exist before any endpoint refers to them.
        for definition in definitions:
            if definition.declaration.kind == "internal":
                name = definition.info.input_channel
                if name not in channels:
                    channels[name] = DirectChannel(name)
        endpoints = [self.endpoint(d) for d in definitions]
        return [e for e in endpoints if e is not None]

    def interceptors_for(self, info: EndpointInfo) -> list[CompiledInterceptor]:
        problems = self.context.problems
        selected = [source for source in self.interceptors if source.matches(info)]
        self.used.update(id(source) for source in selected)
        return [source.compile_for(info, self.context.binder, problems) for source in selected]

    def warn_unused_interceptors(self) -> None:
        """An interceptor whose pointcut selects no endpoint is never called: most often a
        misspelt endpoint id or a marker that no handler carries."""
        for source in self.interceptors:
            if id(source) not in self.used and source.pointcut != ():
                warnings.warn(
                    f"interceptor {source.name}: its pointcut {source.describe_pointcut()} "
                    f"selects no endpoint of this application, so it is never called; check "
                    f"the class, marker, endpoint id or pattern it names",
                    ConfigurationWarning,
                    stacklevel=4,
                )

    def endpoint(self, definition: HandlerDefinition) -> Endpoint | None:
        info = definition.info
        modifiers = definition.modifiers
        core = (
            definition.owner.invoker(definition)
            if definition.owner is not None
            else self._service_call(definition)
        )
        if modifiers.get("without_transaction"):
            self.context.without_transaction.add(info.endpoint_id)
        if "deduplicated" in modifiers:
            header, key, tracking_name = modifiers["deduplicated"]
            core = deduplicating(
                core,
                scope=tracking_name or info.endpoint_id,
                key=key_function(header, key),
                store=self.deduplication,
                clock=self.context.clock,
                expire_after=self.deduplication_expire_after,
            )
        plan = EndpointPlan(definition, core, self.interceptors_for(info), self._output(info))
        for decorate in self.context.endpoint_decorators:
            decorate(plan)
        for stage in self.context.endpoint_stages:
            endpoint = stage(plan)
            if endpoint is not None:
                return endpoint
        return plan.handling(self.context, plan.interceptors)

    def _service_call(self, definition: HandlerDefinition) -> Invoker:
        parameters, resolvers, _ = definition.bind(self.context)
        core = compile_call(definition.target, resolvers)
        # A query or event handler that asks for what exists only in a transaction (the
        # database connection) runs in one; commands and asynchronous handlers always do.
        transactions = self.context.transactions_if_any
        if (
            transactions is None
            or definition.declaration.kind not in ("query", "event")
            or definition.modifiers.get("without_transaction")
            or not any(p.annotation in self.context.transactional_parameters for p in parameters)
        ):
            return core
        return transactional(core, transactions)

    def _output(self, info: EndpointInfo) -> MessageChannel | None:
        if info.output_channel is None:
            return None
        output = self.context.channels.get(info.output_channel)
        if output is None:
            name = info.output_channel
            self.context.problems.append(
                f"handler {info.handler} sends its result to channel {name!r}, which does "
                f"not exist; "
                + (
                    self.context.near_channel(name)
                    or f"declare an @internal_handler({name!r}) or a channel with that name"
                )
            )
        return output


def subscribe_internal(context: ModuleContext, endpoints: list[Endpoint]) -> dict[str, Endpoint]:
    """Subscribe internal handlers to their direct channels; returns those whose channel is a
    queue (a consumer runs them)."""
    owners: dict[str, Endpoint] = {}
    on_queue: dict[str, Endpoint] = {}
    for endpoint in endpoints:
        info = endpoint.info
        if info.kind != "internal":
            continue
        known = owners.get(info.input_channel)
        if known is not None:
            context.problems.append(
                f"channel {info.input_channel!r} has two internal handlers, "
                f"{known.info.handler} and {info.handler}, but it delivers each message to "
                f"one handler; give each handler its own input channel"
            )
            continue
        owners[info.input_channel] = endpoint
        channel = context.channels[info.input_channel]
        if isinstance(channel, DirectChannel):
            channel.subscribe(endpoint.handle)
        else:
            on_queue[info.input_channel] = endpoint
    return on_queue
