"""Handler decorators: ``@command_handler``, ``@event_handler``, ``@query_handler``,
``@internal_handler`` and ``@priority``.

They record a declaration on the function and return it unchanged, so they stack in any
order with each other and with ``classmethod``/``staticmethod``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from ecopy.messaging.declaration import HandlerDeclaration, HandlerKind, declare, unwrap

# Bound, so that @command_handler("key") is not mistaken for the bare @command_handler.
F = TypeVar("F", bound="Callable[..., Any] | classmethod[Any, Any, Any] | staticmethod[Any, Any]")


def _is_target(candidate: Any) -> bool:
    return isinstance(candidate, (classmethod, staticmethod)) or (
        callable(candidate) and unwrap(candidate)[0] is not None
    )


def _handler(
    kind: HandlerKind,
    target_or_key: Any,
    *,
    endpoint_id: str | None,
    output_channel: str | None,
    input_channel: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    key = None if _is_target(target_or_key) else target_or_key
    if isinstance(key, type):
        raise TypeError(
            f"@{kind}_handler takes a routing key string, got the class {key.__qualname__}; "
            f"to route by class, write @{kind}_handler without arguments and annotate the "
            f"first parameter with it ({kind}: {key.__qualname__})"
        )
    if key is not None and not isinstance(key, str):
        raise TypeError(
            f'@{kind}_handler takes a routing key string (e.g. @{kind}_handler("order.place")), '
            f"got {key!r}"
        )

    def decorate(target: F) -> F:
        declare(target).handlers.append(
            HandlerDeclaration(
                kind=kind,
                routing_key=key,
                endpoint_id=endpoint_id,
                output_channel=output_channel,
                input_channel=input_channel,
                options={k: v for k, v in (options or {}).items() if v is not None},
            )
        )
        return target

    return decorate(target_or_key) if _is_target(target_or_key) else decorate


@overload
def command_handler(routing_key: F, /) -> F: ...
@overload
def command_handler(
    routing_key: str | None = None,
    /,
    *,
    endpoint_id: str | None = None,
    output_channel: str | None = None,
    identifier_mapping: Mapping[str, str] | None = None,
    identifier_metadata_mapping: Mapping[str, str] | None = None,
    drop_message_on_not_found: bool | None = None,
) -> Callable[[F], F]: ...
def command_handler(
    routing_key: Any = None,
    /,
    *,
    endpoint_id: str | None = None,
    output_channel: str | None = None,
    identifier_mapping: Mapping[str, str] | None = None,
    identifier_metadata_mapping: Mapping[str, str] | None = None,
    drop_message_on_not_found: bool | None = None,
) -> Any:
    """Handle a command: routed by the first parameter's class, or by ``routing_key``.

    >>> class OrderService:
    ...     @command_handler
    ...     def place(self, command: dict) -> str: ...
    ...     @command_handler("order.cancel")
    ...     def cancel(self) -> None: ...
    """
    return _handler(
        "command",
        routing_key,
        endpoint_id=endpoint_id,
        output_channel=output_channel,
        options={
            "identifier_mapping": identifier_mapping,
            "identifier_metadata_mapping": identifier_metadata_mapping,
            "drop_message_on_not_found": drop_message_on_not_found,
        },
    )


@overload
def query_handler(routing_key: F, /) -> F: ...
@overload
def query_handler(
    routing_key: str | None = None,
    /,
    *,
    endpoint_id: str | None = None,
    output_channel: str | None = None,
    identifier_mapping: Mapping[str, str] | None = None,
    identifier_metadata_mapping: Mapping[str, str] | None = None,
) -> Callable[[F], F]: ...
def query_handler(
    routing_key: Any = None,
    /,
    *,
    endpoint_id: str | None = None,
    output_channel: str | None = None,
    identifier_mapping: Mapping[str, str] | None = None,
    identifier_metadata_mapping: Mapping[str, str] | None = None,
) -> Any:
    """Answer a query: routed by the first parameter's class, or by ``routing_key``."""
    return _handler(
        "query",
        routing_key,
        endpoint_id=endpoint_id,
        output_channel=output_channel,
        options={
            "identifier_mapping": identifier_mapping,
            "identifier_metadata_mapping": identifier_metadata_mapping,
        },
    )


@overload
def event_handler(listen_to: F, /) -> F: ...
@overload
def event_handler(
    listen_to: str | None = None,
    /,
    *,
    endpoint_id: str | None = None,
    output_channel: str | None = None,
    identifier_mapping: Mapping[str, str] | None = None,
    identifier_metadata_mapping: Mapping[str, str] | None = None,
    drop_message_on_not_found: bool | None = None,
    **keywords: Any,
) -> Callable[[F], F]: ...
def event_handler(
    listen_to: Any = None,
    /,
    *,
    endpoint_id: str | None = None,
    output_channel: str | None = None,
    identifier_mapping: Mapping[str, str] | None = None,
    identifier_metadata_mapping: Mapping[str, str] | None = None,
    drop_message_on_not_found: bool | None = None,
    **keywords: Any,
) -> Any:
    """Handle an event: by the first parameter's class (base classes included), or by name
    with ``listen_to="order.placed"`` (glob patterns such as ``"order.*"`` allowed)."""
    if "listen_to" in keywords:
        listen_to = keywords.pop("listen_to")
    if keywords:
        raise TypeError(
            f"@event_handler got unexpected options {sorted(keywords)}; it takes listen_to, "
            f"endpoint_id, output_channel, identifier_mapping, identifier_metadata_mapping and "
            f"drop_message_on_not_found"
        )
    return _handler(
        "event",
        listen_to,
        endpoint_id=endpoint_id,
        output_channel=output_channel,
        options={
            "identifier_mapping": identifier_mapping,
            "identifier_metadata_mapping": identifier_metadata_mapping,
            "drop_message_on_not_found": drop_message_on_not_found,
        },
    )


def internal_handler(
    input_channel: str,
    *,
    output_channel: str | None = None,
    endpoint_id: str | None = None,
) -> Callable[[F], F]:
    """Handle messages arriving on a named channel; a non-``None`` return value continues on
    ``output_channel`` (``None`` stops the chain)."""
    if not isinstance(input_channel, str) or not input_channel:
        raise TypeError(
            f'@internal_handler needs the name of its input channel (e.g. @internal_handler("'
            f'orders.validated")), got {input_channel!r}'
        )
    decorate: Callable[[F], F] = _handler(
        "internal",
        None,
        endpoint_id=endpoint_id,
        output_channel=output_channel,
        input_channel=input_channel,
    )
    return decorate


def priority(level: int) -> Callable[[F], F]:
    """Order synchronous event handlers: higher runs first (default 0)."""

    def decorate(target: F) -> F:
        declare(target).modifiers["priority"] = int(level)
        return target

    return decorate
