"""Messages across asynchronous boundaries: JSON envelopes, never pickle.

An envelope is ``{"type": ..., "payload": ..., "headers": {...}}`` in JSON. ``type`` is the
payload class's stable name (``@named_event`` name or module-qualified name), or ``"json"``
for plain JSON values (dicts, lists, strings, numbers, booleans, ``null``). Only classes known
to the application (the type registry: handler parameter types, scanned and named classes)
are ever instantiated from an envelope.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from pydantic_core import SchemaValidator, from_json, to_json

from ecopy.errors import EcopyError
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.delivery import (
    DELIVER_AT,
    ENDPOINT_ID,
    EXPIRES_AT,
    MAX_PRIORITY,
    QUEUE_PRIORITY,
    RETRY_COUNT,
)
from ecopy.messaging.message import ID, TIMESTAMP, Message, build_message
from ecopy.messaging.naming import TypeRegistry, type_name

JSON_TYPE: Final = "json"
JSON_NATIVE = (dict, list, str, int, float, bool, type(None))

#: The longest message id and endpoint id a message may carry (what every store can key on).
MAX_KEY_LENGTH: Final = 255


class MessageSerializationError(EcopyError):
    """A message cannot be turned into JSON (so it cannot travel asynchronously)."""


class MessageDeserializationError(EcopyError):
    """Bytes from a channel are not a message this application can read."""


class MessageSerializer:
    def __init__(self, names: TypeRegistry, conversion: PayloadConversion) -> None:
        self.names = names
        self.conversion = conversion
        self._validators: dict[str, Callable[[Any], Any]] = {}

    def serialize(self, message: Message) -> str:
        payload = message.payload
        if isinstance(payload, JSON_NATIVE):
            kind = JSON_TYPE
        else:
            kind = type_name(type(payload))
            if self.names.resolve(kind) is None:
                self.names.register(type(payload))
        try:
            envelope = {"type": kind, "payload": payload, "headers": message._headers}
            return to_json(envelope).decode()
        except Exception as error:
            raise MessageSerializationError(
                f"message {message.id} with a {type(payload).__qualname__} payload cannot be "
                f"serialized to JSON ({type(error).__name__}: {error}); asynchronous messages "
                f"must be dataclasses, pydantic models or JSON values"
            ) from error

    def _validator(self, kind: Any, headers: dict[str, Any]) -> Callable[[Any], Any]:
        """How to build a payload of type ``kind``: pydantic-core's validator of the class,
        kept for the next message of that type (the TypeAdapter wrapper costs a call more)."""
        cls = self.names.resolve(kind) if isinstance(kind, str) else None
        if cls is None:
            raise MessageDeserializationError(
                f"unknown message type {kind!r} in message {headers.get('id')}: only types known "
                f"to this application are deserialized; register the class (scan it, name it "
                f"with @named_event, or use it as a handler parameter)"
            )
        try:
            adapter = self.conversion.adapter(cls)
        except Exception as error:  # pydantic cannot describe the class
            raise MessageDeserializationError(
                f"payload of message {headers.get('id')} cannot be read as {kind}: {error}"
            ) from error
        core = getattr(adapter, "validator", None)
        validate: Callable[[Any], Any] = (
            core.validate_python if isinstance(core, SchemaValidator) else adapter.validate_python
        )
        self._validators[kind] = validate
        return validate

    def deserialize(self, data: str | bytes) -> Message:
        try:
            envelope = from_json(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise MessageDeserializationError(f"malformed JSON in message: {error}") from error
        headers = envelope.get("headers") if type(envelope) is dict else None
        if type(headers) is not dict:
            raise MessageDeserializationError(
                "not an ecopy message envelope: expected an object with 'type', 'payload' and "
                "'headers'"
            )
        kind = envelope.get("type")
        # The common case checked inline, fast (this runs for every message a consumer takes):
        # the id and endpoint id are short strings without NUL, the timestamp a float, and no
        # delivery header is there. Anything else is looked at closely by header_problem.
        message_id = headers.get(ID)
        endpoint = headers.get(ENDPOINT_ID)
        if not (
            type(message_id) is str
            and 0 < len(message_id) <= MAX_KEY_LENGTH
            and "\x00" not in message_id
            and (endpoint is None or (type(endpoint) is str and _short(endpoint)))
            and type(headers.get(TIMESTAMP, 0.0)) is float
            and _DELIVERY_HEADERS.isdisjoint(headers)
        ):
            problem = header_problem(headers)
            if problem is not None:
                readable = type(message_id) is str and not problem.startswith("the id")
                which = f"message {message_id}" if readable else "a message"
                raise MessageDeserializationError(f"{which} has unusable headers: {problem}")
        raw = envelope.get("payload")
        if kind == JSON_TYPE:
            return build_message(raw, headers)
        validate = self._validators.get(kind) if type(kind) is str else None
        if validate is None:
            validate = self._validator(kind, headers)
        try:
            payload = validate(raw)
        except Exception as error:
            raise MessageDeserializationError(
                f"payload of message {headers.get('id')} does not fit {kind}: {error}"
            ) from error
        return build_message(payload, headers)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _key_problem(name: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{name} must be a non-empty string, got {_shown(value)}"
    if len(value) > MAX_KEY_LENGTH:
        return f"{name} is {len(value)} characters long, more than {MAX_KEY_LENGTH}"
    if "\x00" in value:
        return f"{name} contains a NUL character"
    return None


def _short(key: str) -> bool:
    return len(key) <= MAX_KEY_LENGTH and "\x00" not in key


_DELIVERY_HEADERS = frozenset({DELIVER_AT, EXPIRES_AT, RETRY_COUNT, QUEUE_PRIORITY})


def header_problem(headers: dict[str, Any]) -> str | None:
    """What is wrong with the standard and delivery headers of a message read from a channel,
    or ``None``. A message from another producer may leave any of them out, but one it
    carries must have the shape ecopy relies on: such a message could never be handled, and
    goes to the dead letters with this reason."""
    if ID in headers:
        problem = _key_problem("the id", headers[ID])
        if problem is not None:
            return problem
    endpoint = headers.get(ENDPOINT_ID)
    if endpoint is not None:
        problem = _key_problem(f"header {ENDPOINT_ID!r}", endpoint)
        if problem is not None:
            return problem
    for name in (TIMESTAMP, DELIVER_AT, EXPIRES_AT):
        value = headers.get(name)
        if value is not None and not _is_number(value):
            return f"header {name!r} must be a number of seconds, got {_shown(value)}"
    retries = headers.get(RETRY_COUNT)
    if retries is not None and (
        not isinstance(retries, int) or isinstance(retries, bool) or retries < 0
    ):
        return f"header {RETRY_COUNT!r} must be an integer >= 0, got {_shown(retries)}"
    priority = headers.get(QUEUE_PRIORITY)
    if priority is not None and (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not -MAX_PRIORITY <= priority <= MAX_PRIORITY
    ):
        return (
            f"header {QUEUE_PRIORITY!r} must be an integer between {-MAX_PRIORITY} and "
            f"{MAX_PRIORITY}, got {_shown(priority)}"
        )
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
