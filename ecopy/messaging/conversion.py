"""Payload conversion with pydantic: dicts and JSON into the types handlers ask for.

A converter is built once per (handler, type) at bootstrap. On the hot path it is an
``isinstance`` check: a payload that already has the right type is passed through untouched.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from ecopy.errors import MessageConversionError

Converter = Callable[[Any], Any]
_PLAIN = (dict, list, tuple, str, bytes, bytearray, int, float, bool)


def _identity(value: Any) -> Any:
    return value


def describe_type(target: Any) -> str:
    if isinstance(target, type):
        return target.__qualname__
    return repr(target).replace("typing.", "")


def _strip_annotated(target: Any) -> Any:
    while typing.get_origin(target) is typing.Annotated:
        target = typing.get_args(target)[0]
    return target


def _union_members(target: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(target)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(target)
    return (target,)


def _accepts_none(target: Any) -> bool:
    origin = typing.get_origin(target)
    if origin is typing.Union or origin is types.UnionType:
        return type(None) in typing.get_args(target)
    return target is type(None) or target is None


class PayloadConversion:
    """Builds converters, sharing one pydantic ``TypeAdapter`` per target type."""

    def __init__(self) -> None:
        self._adapters: dict[Any, TypeAdapter[Any] | Exception] = {}

    def adapter(self, target: Any) -> TypeAdapter[Any]:
        adapter = self._adapters.get(target)
        if adapter is None:
            try:
                adapter = TypeAdapter(target)
            except Exception as error:  # pydantic cannot describe this type
                adapter = error
            self._adapters[target] = adapter
        if isinstance(adapter, Exception):
            raise adapter
        return adapter

    def converter(self, target: Any, *, handler: str, parse_json: bool = True) -> Converter:
        """A function turning a payload into ``target`` for ``handler``.

        Instances of ``target`` pass through; dicts and other Python values are validated
        with pydantic; ``str``/``bytes`` are parsed as JSON unless ``target`` is textual.
        """
        target = _strip_annotated(target)
        if target is Any or target is object or target is None:
            return _identity
        members = tuple(m for m in _union_members(target) if isinstance(m, type))
        exact = members if members and typing.get_origin(target) is not Literal else None
        # Text goes through as text when the target accepts text; otherwise it is JSON.
        textual = not parse_json or any(
            member in (str, bytes, bytearray) for member in _union_members(target)
        )
        expected = describe_type(target)
        nullable = _accepts_none(target)

        def convert(value: Any) -> Any:
            if exact is not None and isinstance(value, exact):
                return value
            if value is None and nullable:
                return None
            try:
                adapter = self.adapter(target)
                if isinstance(value, (str, bytes, bytearray)) and not textual:
                    return _from_text(adapter, value)
                if not isinstance(value, _PLAIN):
                    # Another class (a published event seen by a handler typed otherwise):
                    # convert through its JSON form, as it would arrive from a broker.
                    value = to_jsonable_python(value)
                return adapter.validate_python(value)
            except ValidationError as error:
                raise MessageConversionError(
                    handler=handler,
                    expected=expected,
                    payload_type=type(value).__qualname__,
                    problems=_validation_problems(error, "payload" if parse_json else "value"),
                ) from error
            except Exception as error:
                raise MessageConversionError(
                    handler=handler,
                    expected=expected,
                    payload_type=type(value).__qualname__,
                    problems=[f"{type(error).__name__}: {error}"],
                ) from error

        return convert


def _from_text(adapter: TypeAdapter[Any], value: str | bytes | bytearray) -> Any:
    """Text is JSON when it parses as JSON; otherwise it is the value itself (an enum member's
    value, a UUID, a date...)."""
    try:
        return adapter.validate_json(value)
    except ValidationError as as_json:
        if str(value).lstrip()[:1] in ("{", "["):
            raise
        try:
            return adapter.validate_python(value)
        except ValidationError:
            raise as_json from None


def _validation_problems(error: ValidationError, whole: str = "payload") -> list[str]:
    problems = []
    for detail in error.errors(include_url=False):
        location = ".".join(str(part) for part in detail.get("loc", ()))
        message = detail.get("msg", "invalid")
        # No location: the problem is the whole payload (a list where an object belongs),
        # not a field of it.
        problems.append(f"field {location!r}: {message}" if location else f"the {whole}: {message}")
    return problems
