"""Which aggregate (or saga) a message is for, compiled once per handler.

Resolution order: an explicit ``identifier_mapping`` / ``identifier_metadata_mapping`` for the
identifier; else the ``aggregate.id`` header; else a payload field with the identifier's name or
a payload field marked ``TargetIdentifier(name)``.

The ``aggregate.*`` headers on the events an aggregate publishes describe their source, so they
never target an aggregate: the header counts only on messages sent with it (and an
``aggregate.type`` header, when present, must name the target's type).

Mapping paths are a tiny, safe syntax (no ``eval``): ``"payload.field.sub"`` or
``"headers.name"``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

from pydantic_core import from_json

from ecopy.errors import IdentifierNotFound
from ecopy.messaging.message import Message
from ecopy.modelling.aggregate import TargetIdentifier

AGGREGATE_ID: Final = "aggregate.id"
AGGREGATE_TYPE: Final = "aggregate.type"
AGGREGATE_VERSION: Final = "aggregate.version"

_MISSING: Any = object()
Getter = Callable[[Message], Any]
IdentifierResolver = Callable[[Message], "dict[str, Any] | None"]


def _field(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name, _MISSING)
    return getattr(value, name, _MISSING)


def path_getter(path: str) -> Getter:
    """A getter for ``payload.a.b`` or ``headers.name``; raises ``ValueError`` otherwise."""
    root, _, rest = path.partition(".")
    parts = rest.split(".") if rest else []
    if root not in ("payload", "headers") or not parts or not all(parts):
        raise ValueError(
            f"identifier mapping path {path!r} must look like 'payload.field' or 'headers.name'"
        )
    if root == "headers":
        name = rest

        def header(message: Message) -> Any:
            return message._headers.get(name, _MISSING)

        return header

    def payload(message: Message) -> Any:
        value = message._payload
        if isinstance(value, (str, bytes, bytearray)):
            # A JSON text payload is read like the dict the handler will receive.
            try:
                value = from_json(value)
            except ValueError:
                return _MISSING
        for part in parts:
            value = _field(value, part)
            if value is _MISSING:
                return _MISSING
        return value

    return payload


def _target_fields(payload_type: Any) -> dict[str, str]:
    """identifier name -> payload field, for fields marked ``TargetIdentifier``."""
    if not isinstance(payload_type, type):
        return {}
    try:
        hints = typing.get_type_hints(payload_type, include_extras=True)
    except Exception:
        return {}
    fields = {}
    for field, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated:
            for marker in hint.__metadata__:
                if isinstance(marker, TargetIdentifier):
                    fields[marker.name] = field
    return fields


def compile_identifier_resolver(
    identifiers: tuple[str, ...],
    options: Mapping[str, Any],
    payload_type: Any,
    aggregate_type: str | None = None,
) -> tuple[IdentifierResolver, str]:
    """The resolver, and a sentence saying where it looks (for error messages)."""
    mapping: dict[str, str] = dict(options.get("identifier_mapping") or {})
    metadata: dict[str, str] = dict(options.get("identifier_metadata_mapping") or {})
    targets = _target_fields(payload_type)
    getters: list[tuple[str, Getter]] = []
    explained: list[str] = []
    for name in identifiers:
        if name in metadata:
            getters.append((name, path_getter(f"headers.{metadata[name]}")))
            explained.append(f"header {metadata[name]!r}")
        elif name in mapping:
            getters.append((name, path_getter(mapping[name])))
            explained.append(f"{mapping[name]!r}")
        else:
            field = targets.get(name, name)
            getters.append((name, path_getter(f"payload.{field}")))
            explained.append(f"payload field {field!r}")
    explicit = {name for name in identifiers if name in mapping or name in metadata}
    single = identifiers[0] if len(identifiers) == 1 else None

    def resolve(message: Message) -> dict[str, Any] | None:
        headers = message._headers
        header = headers.get(AGGREGATE_ID, _MISSING)
        if header is not _MISSING and (
            AGGREGATE_VERSION in headers
            or headers.get(AGGREGATE_TYPE, aggregate_type) != aggregate_type
        ):
            # An event published by an aggregate: the header names its source, not a target.
            header = _MISSING
        values: dict[str, Any] = {}
        for name, getter in getters:
            value: Any = _MISSING
            if header is not _MISSING and name not in explicit:
                if isinstance(header, Mapping):
                    value = header.get(name, _MISSING)
                elif single is not None:
                    value = header
            if value is _MISSING:
                value = getter(message)
            if value is _MISSING or value is None:
                return None
            values[name] = value
        return values

    where = ", ".join(f"{n} from {e}" for n, e in zip(identifiers, explained, strict=True))
    if len(explicit) == len(identifiers):
        return resolve, where
    return resolve, f"the {AGGREGATE_ID!r} header or {where}"


def identifier_key(identifier: Mapping[str, Any]) -> str:
    """A canonical string for an identifier (stream ids, storage keys)."""
    if len(identifier) == 1:
        return str(next(iter(identifier.values())))
    return "|".join(f"{name}={identifier[name]}" for name in sorted(identifier))


def public_identifier(identifier: Mapping[str, Any]) -> Any:
    """What users see: the single value, or the dict for composite identifiers."""
    if len(identifier) == 1:
        return next(iter(identifier.values()))
    return dict(identifier)


def as_identifier(
    identifiers: tuple[str, ...], value: Any, *, aggregate: str | None = None
) -> dict[str, Any]:
    """Normalize a user-given identifier (single value or dict) to a dict; ``aggregate`` names
    the aggregate in the error raised when ``value`` does not fit."""
    if isinstance(value, Mapping):
        missing = [name for name in identifiers if name not in value]
        if not missing:
            return {name: value[name] for name in identifiers}
    elif len(identifiers) == 1:
        return {identifiers[0]: value}
    of = f" of {aggregate}" if aggregate else ""
    if len(identifiers) == 1:
        raise IdentifierNotFound(
            f"the identifier{of} is {identifiers[0]}: give its value, or a dict with "
            f"{identifiers[0]!r}, not {value!r}"
        )
    example = ", ".join(f"{name!r}: ..." for name in identifiers)
    raise IdentifierNotFound(
        f"the identifier{of} is composite: give a dict with {', '.join(identifiers)} "
        f"({{{example}}}), not {value!r}"
    )
