"""Wiring the command, query and event buses to the compiled endpoints, once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ecopy.config.handlers import EndpointCompiler, HandlerDefinition
from ecopy.errors import NoHandlerFound
from ecopy.messaging.collector import collecting
from ecopy.messaging.delivery import ROUTING_KEY
from ecopy.messaging.endpoint import Endpoint, EndpointInfo, Invoker
from ecopy.messaging.interceptor import compile_chain
from ecopy.messaging.message import Message
from ecopy.messaging.naming import type_name
from ecopy.messaging.retry import InstantRetryConfiguration, instantly_retrying
from ecopy.messaging.transaction import transactional
from ecopy.modelling.buses import (
    CommandBus,
    EventBus,
    QueryBus,
    event_dispatch,
    point_to_point_dispatch,
)
from ecopy.modelling.routing import EventRouter, PointToPointRouter

RouteTables = dict[str, tuple[dict[type[Any], Endpoint], dict[str, Endpoint]]]


def wire_buses(
    compiler: EndpointCompiler,
    definitions: list[HandlerDefinition],
    endpoints: list[Endpoint],
    buses: tuple[CommandBus, QueryBus, EventBus],
    retry: InstantRetryConfiguration,
) -> None:
    """Route each bus to its endpoints (a command or query has exactly one handler, an event
    any number), through the gateway interceptors; commands run in a transaction."""
    context = compiler.context
    problems = context.problems
    compiled = {id(e.info): e for e in endpoints}
    tables: RouteTables = {"command": ({}, {}), "query": ({}, {})}
    event_classes: dict[type[Any], list[tuple[int, Endpoint]]] = {}
    event_patterns: list[tuple[str, int, Endpoint]] = []
    for order, definition in enumerate(definitions):
        endpoint = compiled.get(id(definition.info))
        if endpoint is None or not definition.routed:
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
                    problems.append(
                        f"{kind} {shown} has two handlers: {known.info.handler} and "
                        f"{endpoint.info.handler}; a {kind} has exactly one handler"
                    )
                    continue
                table[route] = endpoint
    for table_kind, (class_table, key_table) in tables.items():
        for cls, class_endpoint in class_table.items():
            named = key_table.get(type_name(cls))
            if named is not None:
                problems.append(
                    f"{table_kind} {type_name(cls)!r} has two handlers: {named.info.handler} "
                    f"by routing key and {class_endpoint.info.handler} by class; a "
                    f"{table_kind} has exactly one handler"
                )
    command_bus, query_bus, event_bus = buses
    names = context.names
    commands = PointToPointRouter("command", *tables["command"], names)
    # The transaction is outside the collector: outgoing messages are sent (to an outbox
    # table, say) before it commits.
    dispatch = collecting(point_to_point_dispatch(commands))
    transactions = context.transactions_if_any
    if transactions is not None:
        dispatch = transactional(
            dispatch, transactions, _needs_transaction(commands, context.without_transaction)
        )

    def gateway(gateway_id: str, bus: type[Any], dispatch: Invoker) -> Invoker:
        info = EndpointInfo(
            endpoint_id=gateway_id, kind="gateway", handler=bus.__qualname__, owner=bus
        )
        return compile_chain(dispatch, info, compiler.interceptors_for(info))

    command_bus._dispatch = gateway(
        "command_bus",
        CommandBus,
        instantly_retrying(dispatch, retry.command_bus_retries, retry.command_bus_exceptions),
    )
    query_bus._dispatch = gateway(
        "query_bus",
        QueryBus,
        point_to_point_dispatch(PointToPointRouter("query", *tables["query"], names)),
    )
    event_bus._dispatch = gateway(
        "event_bus",
        EventBus,
        event_dispatch(EventRouter(event_classes, event_patterns, names)),
    )


def _needs_transaction(
    commands: PointToPointRouter, opted_out: set[str]
) -> Callable[[Message], bool] | None:
    """Which commands run in a transaction: all but those whose handler opted out."""
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
