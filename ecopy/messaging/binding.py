"""Parameter binding, compiled once per handler at bootstrap.

A handler's first parameter is the payload; the others come from headers, services or
framework objects. Bootstrap turns each parameter into a resolver ``Message -> value`` and the
handler into one call closure, so the hot path does no signature inspection at all.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ecopy.errors import HeaderConversionError, MessageConversionError, MissingHeader
from ecopy.messaging.conversion import (
    PayloadConversion,
    _accepts_none,
    _strip_annotated,
    describe_type,
)
from ecopy.messaging.coroutine import run_coroutine
from ecopy.messaging.message import Message
from ecopy.messaging.parameter import Header, Headers, Reference

Resolver = Callable[[Message], Any]
PayloadMode = Literal["required", "optional", "none"]

_EMPTY: Any = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    annotation: Any
    markers: tuple[Any, ...]
    default: Any
    optional: bool

    @property
    def annotated(self) -> bool:
        return self.annotation is not _EMPTY


class ServiceLocator(Protocol):
    def find_by_type(self, annotation: Any) -> tuple[bool, Any]: ...

    def find_by_name(self, name: str) -> tuple[bool, Any]: ...


def parameters_of(function: Callable[..., Any], *, skip_first: bool) -> list[Parameter]:
    """The parameters of ``function`` with resolved annotations (``Annotated`` extras kept)."""
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception:
        hints = {}
    result: list[Parameter] = []
    for index, parameter in enumerate(signature.parameters.values()):
        if skip_first and index == 0:
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(parameter.name, parameter.annotation)
        markers: tuple[Any, ...] = ()
        if typing.get_origin(annotation) is typing.Annotated:
            markers = tuple(annotation.__metadata__)
        stripped = _strip_annotated(annotation)
        result.append(
            Parameter(
                name=parameter.name,
                annotation=stripped,
                markers=markers,
                default=parameter.default,
                optional=_accepts_none(stripped) or parameter.default is not _EMPTY,
            )
        )
    return result


def _constant(value: Any) -> Resolver:
    def resolve(message: Message) -> Any:
        return value

    resolve.ecopy_constant = value  # type: ignore[attr-defined]
    return resolve


def is_constant(resolver: Resolver) -> bool:
    return hasattr(resolver, "ecopy_constant")


def _all_headers(message: Message) -> dict[str, Any]:
    return dict(message._headers)


def _the_message(message: Message) -> Message:
    return message


class ArgumentBinder:
    """Compiles handler and interceptor parameters into resolvers."""

    def __init__(self, services: ServiceLocator, conversion: PayloadConversion) -> None:
        self.services = services
        self.conversion = conversion
        # Values computed at each call, by annotation (e.g. the current transaction's
        # connection); modules add them.
        self.providers: dict[Any, Callable[[], Any]] = {}

    def bind(
        self,
        parameters: Sequence[Parameter],
        *,
        handler: str,
        payload: PayloadMode,
        special: Callable[[Parameter], Resolver | None] | None = None,
    ) -> tuple[list[Resolver], Any, list[str]]:
        """Resolvers for ``parameters``, the payload type (or ``None``), and any problems."""
        resolvers: list[Resolver] = []
        problems: list[str] = []
        payload_type: Any = None
        for index, parameter in enumerate(parameters):
            resolver = special(parameter) if special is not None else None
            if resolver is None:
                resolver = self._by_marker(parameter, handler, problems)
            if resolver is None and index == 0 and payload == "required":
                payload_type = parameter.annotation
                resolver = self._payload(parameter, handler)
            if resolver is None:
                resolver = self._by_type(parameter)
            if resolver is None and index == 0 and payload == "optional":
                payload_type = parameter.annotation
                resolver = self._payload(parameter, handler)
            if resolver is None:
                if parameter.default is not _EMPTY:
                    resolver = _constant(parameter.default)
                else:
                    problems.append(self._unresolvable(parameter, handler))
                    resolver = _constant(None)
            resolvers.append(resolver)
        return resolvers, payload_type, problems

    def _payload(self, parameter: Parameter, handler: str) -> Resolver:
        target = parameter.annotation if parameter.annotated else Any
        convert = self.conversion.converter(target, handler=handler)

        def payload_of(message: Message) -> Any:
            return convert(message._payload)

        payload_of.ecopy_payload_converter = convert  # type: ignore[attr-defined]
        return payload_of

    def _by_marker(
        self, parameter: Parameter, handler: str, problems: list[str]
    ) -> Resolver | None:
        for marker in parameter.markers:
            if isinstance(marker, Header):
                return self._header(parameter, marker.name, handler)
            if marker is Headers or isinstance(marker, Headers):
                return _all_headers
            if isinstance(marker, Reference):
                found, service = self.services.find_by_name(marker.name)
                if not found:
                    problems.append(
                        f"handler {handler}: parameter {parameter.name!r} refers to service "
                        f"{marker.name!r}, which is not registered; give it that name: "
                        f"services={{{marker.name!r}: ...}} (a service in a list is known by "
                        f"its class name and its snake_case class name)"
                    )
                    return _constant(None)
                return _constant(service)
        return None

    def _header(self, parameter: Parameter, name: str, handler: str) -> Resolver:
        has_default = parameter.default is not _EMPTY
        fallback = parameter.default if has_default else None
        required = not parameter.optional
        target = parameter.annotation if parameter.annotated else Any
        convert = self.conversion.converter(target, handler=handler, parse_json=False)
        expected = describe_type(target)

        def header(message: Message) -> Any:
            headers = message._headers
            if name in headers:
                try:
                    return convert(headers[name])
                except MessageConversionError as error:
                    raise HeaderConversionError(
                        handler=handler,
                        header=name,
                        value=headers[name],
                        expected=expected,
                        problems=error.problems,
                        message_id=message.id,
                    ) from error
            if required:
                raise MissingHeader(handler=handler, header=name, message_id=message.id)
            return fallback

        return header

    def _by_type(self, parameter: Parameter) -> Resolver | None:
        if not parameter.annotated:
            return None
        if parameter.annotation is Message:
            return _the_message
        provider = self.providers.get(parameter.annotation)
        if provider is not None:
            return lambda message: provider()
        found, service = self.services.find_by_type(parameter.annotation)
        return _constant(service) if found else None

    @staticmethod
    def _unresolvable(parameter: Parameter, handler: str) -> str:
        if not parameter.annotated:
            return (
                f"handler {handler}: parameter {parameter.name!r} has no annotation; annotate "
                f"it with a service type, Annotated[T, Header('name')], Annotated[dict, Headers] "
                f"or Annotated[T, Reference('name')]"
            )
        annotation = parameter.annotation
        shown = getattr(annotation, "__qualname__", repr(annotation))
        if getattr(annotation, "__module__", "").split(".")[0] == "sqlalchemy":
            return (
                f"handler {handler}: parameter {parameter.name!r} of type {shown} comes from "
                f"the database module, which this application does not have; add "
                f"DbalConfiguration(url=...) (from ecopy_dbal) to the extensions, and the "
                f"handler gets the {shown} of its transaction"
            )
        return (
            f"handler {handler}: parameter {parameter.name!r} of type {shown} cannot be "
            f"resolved; pass an instance of {shown} in services=, or mark the parameter with "
            f"Header/Headers/Reference"
        )


def compile_call(function: Callable[..., Any], resolvers: Sequence[Resolver]) -> Resolver:
    """One closure that resolves the arguments from a message and calls ``function``.

    An ``async def`` function is awaited to completion on the thread's event loop."""
    if inspect.iscoroutinefunction(function):
        return _awaiting(function, resolvers)
    if not resolvers:
        return lambda message: function()
    first, rest = resolvers[0], resolvers[1:]
    convert = getattr(first, "ecopy_payload_converter", None)
    if convert is not None and all(is_constant(r) for r in rest):
        constants = tuple(r.ecopy_constant for r in rest)  # type: ignore[attr-defined]
        if not constants:
            return lambda message: function(convert(message._payload))
        return lambda message: function(convert(message._payload), *constants)
    if all(is_constant(r) for r in resolvers):
        values = tuple(r.ecopy_constant for r in resolvers)  # type: ignore[attr-defined]
        return lambda message: function(*values)
    everything = tuple(resolvers)
    return lambda message: function(*[resolve(message) for resolve in everything])


def _awaiting(function: Callable[..., Any], resolvers: Sequence[Resolver]) -> Resolver:
    name = getattr(function, "__qualname__", repr(function))
    everything = tuple(resolvers)

    def call(message: Message) -> Any:
        coroutine = function(*[resolve(message) for resolve in everything])
        return run_coroutine(coroutine, name)

    return call
