"""The asynchronous module: the sending half of an ``@asynchronous`` endpoint runs in the
caller, and consumers run the handling half, with error handling, retries and dead letters.

It takes the extension objects ``QueueChannel``, ``CombinedMessageChannel``,
``PollingMetadata``, ``ErrorHandlerConfiguration`` and ``InstantRetryConfiguration``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from ecopy.config.handlers import EndpointPlan
from ecopy.config.modules import ModuleContext
from ecopy.messaging.channel import MessageChannel, PollableChannel, QueueChannel
from ecopy.messaging.clock import Clock
from ecopy.messaging.collector import collecting, send_or_collect
from ecopy.messaging.consumer import Consumer, PollingConsumer, PollingMetadata
from ecopy.messaging.dead_letter import DEAD_LETTER_CHANNEL, DeadLetterStore
from ecopy.messaging.delivery import (
    CHANNEL,
    ENDPOINT_ID,
    ROUTING_KEY,
    DeliveryOptions,
    addressed,
)
from ecopy.messaging.endpoint import Endpoint, EndpointInfo, Invoker
from ecopy.messaging.interceptor import compile_chain
from ecopy.messaging.message import DELIVERY_DELAY, PRIORITY, TIME_TO_LIVE, Message
from ecopy.messaging.naming import type_name
from ecopy.messaging.outage import TransientErrors, never
from ecopy.messaging.retry import (
    ErrorHandlerConfiguration,
    InstantRetryConfiguration,
    instantly_retrying,
)
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import TransactionManager, transactional
from ecopy.modelling.identifier import (
    AGGREGATE_ID,
    AGGREGATE_TYPE,
    IdentifierResolver,
    public_identifier,
)


@dataclass(frozen=True)
class CombinedMessageChannel:
    """A route through several channels: a message is sent to the first, forwarded from each
    to the next after it was taken, and handled after the last (the outbox shape: database
    first, broker second).

    >>> CombinedMessageChannel("outbox", ["db", "rabbit"])
    CombinedMessageChannel(name='outbox', channels=('db', 'rabbit'))
    """

    name: str
    channels: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))


@dataclass
class AsynchronousSettings:
    """What the extensions say about asynchronous processing."""

    error_handlers: list[ErrorHandlerConfiguration] = field(default_factory=list)
    polling: dict[str, PollingMetadata] = field(default_factory=dict)
    instant_retry: InstantRetryConfiguration = field(default_factory=InstantRetryConfiguration)
    combined: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def route(self, channels: Sequence[str]) -> tuple[str, ...]:
        expanded: list[str] = []
        for name in channels:
            expanded.extend(self.combined.get(name, (name,)))
        return tuple(expanded)

    def error_handling_for(self, consumer: str) -> ErrorHandlerConfiguration | None:
        metadata = self.polling.get(consumer)
        if metadata is not None and metadata.error_channel is not None:
            for handler in self.error_handlers:
                if handler.error_channel == metadata.error_channel:
                    return handler
        return self.error_handlers[0] if self.error_handlers else None


@dataclass
class AsynchronousRoute:
    """An asynchronous endpoint: its handling half and the channels it goes through."""

    endpoint: Endpoint
    channels: tuple[str, ...]


def sending_invoker(
    endpoint_id: str,
    channel: MessageChannel,
    delivery: DeliveryOptions,
    clock: Clock,
    identifier: IdentifierResolver | None,
    aggregate_type: str | None = None,
) -> Invoker:
    """The caller's half of an asynchronous endpoint: address a copy of the message (same
    id) to the endpoint, with its delivery options (the send's delivery headers win over the
    handler's decorators), and send it to the first channel once the current work succeeded."""

    has_options = bool(delivery)
    send_to_channel = channel.send
    channel_name = channel.name

    def send(message: Message) -> None:
        headers: dict[str, Any] = {ENDPOINT_ID: endpoint_id, CHANNEL: channel_name}
        if identifier is not None:
            # The target aggregate is resolved before the hop.
            resolved = identifier(message)
            if resolved is not None:
                headers[AGGREGATE_ID] = public_identifier(resolved)
                headers[AGGREGATE_TYPE] = aggregate_type
        own = message._headers
        if has_options or DELIVERY_DELAY in own or TIME_TO_LIVE in own or PRIORITY in own:
            # Checked now, in the sender: a delivery header that cannot be honoured fails
            # the send.
            outgoing = addressed(message, headers, delivery, clock.now())
        else:
            outgoing = message.with_headers(headers)
        send_or_collect(lambda: send_to_channel(outgoing))

    return send


def build_consumers(
    *,
    queues: Mapping[str, PollableChannel],
    routes: Mapping[str, AsynchronousRoute],
    internal: Mapping[str, Endpoint],
    channels: Mapping[str, MessageChannel],
    settings: AsynchronousSettings,
    clock: Clock,
    serializer: MessageSerializer,
    dead_letters: DeadLetterStore,
    channel_named: Callable[[str], MessageChannel],
    transactions: TransactionManager | None = None,
    without_transaction: Set[str] = frozenset(),
) -> dict[str, Consumer]:
    """One consumer per pollable channel, named after it."""
    retry = settings.instant_retry

    def handling(endpoint: Endpoint, queue: PollableChannel) -> Invoker:
        # Each attempt collects its own sends and runs in its own transaction, which also
        # acknowledges the message: its effects, its outgoing messages and the removal of the
        # message from a database queue commit together, or not at all.
        attempt = collecting(endpoint.handle)
        acknowledge: Callable[[Message], None] | None = getattr(queue, "acknowledge", None)
        if acknowledge is not None:
            attempt = _then_acknowledge(attempt, acknowledge)
        if transactions is not None and endpoint.info.endpoint_id not in without_transaction:
            attempt = transactional(attempt, transactions)
        return instantly_retrying(
            attempt, retry.asynchronous_retries, retry.asynchronous_exceptions
        )

    consumers: dict[str, Consumer] = {}
    for name, queue in queues.items():
        handlers: dict[str, Invoker] = {}
        forwards: dict[str, MessageChannel] = {}
        listening: list[EndpointInfo] = []
        for endpoint_id, route in routes.items():
            if name not in route.channels:
                continue
            listening.append(route.endpoint.info)
            position = route.channels.index(name)
            if position + 1 < len(route.channels):
                forwards[endpoint_id] = channels[route.channels[position + 1]]
            else:
                handlers[endpoint_id] = handling(route.endpoint, queue)
        default = internal.get(name)
        if not handlers and not forwards and default is None:
            continue  # a declared channel that nothing consumes here
        consumers[name] = PollingConsumer(
            name,
            queue,
            clock=clock,
            serializer=serializer,
            dead_letters=dead_letters,
            handlers=handlers,
            default=handling(default, queue) if default is not None else None,
            forwards=forwards,
            error_handling=settings.error_handling_for(name),
            dead_letter_channel=channel_named,
            final_failure=getattr(queue, "final_failure_strategy", "stop"),
            metadata=settings.polling.get(name),
            transactions=transactions,
            transient=_transient_errors(transactions, queue),
            router=endpoint_router(listening),
        )
    return consumers


def endpoint_router(endpoints: Sequence[EndpointInfo]) -> Callable[[Message], list[str]]:
    """Which of ``endpoints`` take a message that names none (one from another producer): by
    its routing key (``ecopy.routing_key``, glob patterns for event handlers), or else by its
    payload's class (an event handler takes a base class too)."""

    def route(message: Message) -> list[str]:
        key = message._headers.get(ROUTING_KEY)
        if isinstance(key, str):
            return [
                info.endpoint_id
                for info in endpoints
                if any(
                    fnmatch.fnmatchcase(key, pattern) if info.kind == "event" else key == pattern
                    for pattern in info.routes
                )
            ]
        payload_type = type(message.payload)
        exact = type_name(payload_type)
        lineage = {type_name(cls) for cls in payload_type.__mro__ if cls is not object}
        return [
            info.endpoint_id
            for info in endpoints
            if any(
                route in lineage if info.kind == "event" else route == exact
                for route in info.routes
            )
        ]

    return route


def _transient_errors(*sources: object) -> TransientErrors:
    """The errors after which the same work may succeed again, as the transaction manager and
    the channel know them (``is_transient``: a lost database or broker connection)."""
    checks: list[TransientErrors] = [
        check for source in sources if (check := getattr(source, "is_transient", None))
    ]
    if not checks:
        return never
    if len(checks) == 1:
        return checks[0]
    return lambda error: any(check(error) for check in checks)


def _then_acknowledge(invoker: Invoker, acknowledge: Callable[[Message], None]) -> Invoker:
    def handle_and_acknowledge(message: Message) -> Any:
        result = invoker(message)
        acknowledge(message)
        return result

    return handle_and_acknowledge


class AsynchronousModule:
    """Registered by bootstrap for every application."""

    def register(self, context: ModuleContext) -> None:
        settings = AsynchronousSettings(
            error_handlers=context.extensions_of(ErrorHandlerConfiguration),
            polling={m.endpoint_id: m for m in context.extensions_of(PollingMetadata)},
            instant_retry=context.extension(InstantRetryConfiguration)
            or InstantRetryConfiguration(),
            combined={
                c.name: tuple(c.channels) for c in context.extensions_of(CombinedMessageChannel)
            },
        )
        for declared in context.extensions_of(QueueChannel):
            context.add_channel(declared.name, declared.build(context.serializer, context.clock))
        routes: dict[str, AsynchronousRoute] = {}
        context.add_endpoint_stage(lambda plan: _asynchronous(context, settings, routes, plan))
        context.add_consumers(lambda: _consumers(context, settings, routes))
        context.add_check(lambda: _error_handling_problems(context, settings))


def _asynchronous(
    context: ModuleContext,
    settings: AsynchronousSettings,
    routes: dict[str, AsynchronousRoute],
    plan: EndpointPlan,
) -> Endpoint | None:
    """Split an asynchronous endpoint: presend interceptors and the send run in the caller;
    the other interceptors and the handler run in the consumer."""
    info = plan.info
    modifiers = plan.definition.modifiers
    channels = modifiers.get("asynchronous")
    if channels is not None and info.kind == "query":
        context.problems.append(
            f"query handler {info.handler} is @asynchronous, but a query must answer its "
            f"caller; remove @asynchronous"
        )
        channels = None
    for option in ("delayed", "time_to_live"):
        if option in modifiers and channels is None:
            context.problems.append(
                f"query handler {info.handler} has @{option}, but a query is answered at "
                f"once; remove @{option}"
                if info.kind == "query"
                else f"handler {info.handler} has @{option} but is not @asynchronous, and "
                f"@{option} applies only to messages sent to a channel; make it "
                f'@asynchronous("<channel>") too, or remove @{option}'
            )
    if channels is None or context.asynchronous_inline:
        return None
    route = settings.route(channels)
    queues = context.queues
    missing = [name for name in route if name not in queues]
    if missing:
        for name in missing:
            if name in context.unavailable_channels:
                continue  # its module reported why it could not be built
            if name in context.channels:
                context.problems.append(
                    f"asynchronous handler {info.handler} uses channel {name!r}, which is a "
                    f"{type(context.channels[name]).__name__} that no consumer can poll; "
                    f"give the handler a queue channel (QueueChannel, DbalChannel or a "
                    f"broker channel)"
                )
            else:
                context.problems.append(
                    f"asynchronous handler {info.handler} uses channel {name!r}, which is "
                    f"not declared; {context.unknown_channel(name)}"
                )
        return None
    handling = [i for i in plan.interceptors if i.kind != "presend"]
    routes[info.endpoint_id] = AsynchronousRoute(plan.handling(context, handling), route)
    context.endpoint_channels[info.endpoint_id] = route
    if not plan.definition.routed:
        # Chosen by another endpoint in the consumer (a factory its action chooses): it is
        # never sent to by itself.
        return Endpoint(info, context.handling[info.endpoint_id], plan.output)
    target = getattr(plan.definition.owner, "target", None)
    identity = target(plan.definition) if target is not None else None
    sender = sending_invoker(
        info.endpoint_id,
        queues[route[0]],
        DeliveryOptions.of(modifiers),
        context.clock,
        identity[0] if identity else None,
        identity[1] if identity else None,
    )
    presends = [i for i in plan.interceptors if i.kind == "presend"]
    return Endpoint.sending(info, compile_chain(sender, info, presends))


def _consumers(
    context: ModuleContext, settings: AsynchronousSettings, routes: dict[str, AsynchronousRoute]
) -> dict[str, Consumer]:
    queues = context.queues
    for endpoint, channels in context.asynchronous_endpoints:
        route = settings.route(channels)
        missing = [name for name in route if name not in queues]
        if missing:
            context.problems.append(
                f"{endpoint.info.handler} uses channel {missing[0]!r}, which is not declared; "
                f"{context.unknown_channel(missing[0])}"
            )
            continue
        routes[endpoint.info.endpoint_id] = AsynchronousRoute(endpoint, route)
    internal = {
        e.info.input_channel: e
        for e in context.endpoints
        if e.info.kind == "internal" and e.info.input_channel in queues
    }
    for name, endpoint in internal.items():
        # An internal handler on a queue is run by that queue's consumer.
        context.endpoint_channels.setdefault(endpoint.info.endpoint_id, (name,))
    dead_letters = context.dead_letter_store
    assert dead_letters is not None
    return build_consumers(
        queues=queues,
        routes=routes,
        internal=internal,
        channels=context.channels,
        settings=settings,
        clock=context.clock,
        serializer=context.serializer,
        dead_letters=dead_letters,
        channel_named=context.channel_named,
        transactions=context.transactions_if_any,
        without_transaction=context.without_transaction,
    )


def _error_handling_problems(context: ModuleContext, settings: AsynchronousSettings) -> list[str]:
    problems: list[str] = []
    known = {handler.error_channel for handler in settings.error_handlers}
    for handler in settings.error_handlers:
        target = handler.dead_letter_channel
        if target not in (None, DEAD_LETTER_CHANNEL) and target not in context.channels:
            problems.append(
                f"ErrorHandlerConfiguration({handler.error_channel!r}) sends failed messages "
                f"to channel {target!r}, which does not exist; declare it, or leave "
                f"dead_letter_channel as the default dead-letter store"
            )
    for metadata in settings.polling.values():
        if metadata.error_channel is not None and metadata.error_channel not in known:
            problems.append(
                f"PollingMetadata({metadata.endpoint_id!r}) uses error channel "
                f"{metadata.error_channel!r}, but no ErrorHandlerConfiguration has it; known: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
    for name in settings.polling:
        if name not in context.consumers:
            problems.append(
                f"PollingMetadata names consumer {name!r}, which does not exist; known "
                f"consumers: {', '.join(sorted(context.consumers)) or 'none'}"
            )
    return problems
