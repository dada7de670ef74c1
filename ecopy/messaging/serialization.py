"""Messages across asynchronous boundaries: JSON envelopes, never pickle.

An envelope is ``{"type": ..., "payload": ..., "headers": {...}}`` in JSON. ``type`` is the
payload class's stable name (``@named_event`` name or module-qualified name), or ``"json"``
for plain JSON values (dicts, lists, strings, numbers, booleans, ``null``). Only classes known
to the application (the type registry: handler parameter types, scanned and named classes)
are ever instantiated from an envelope.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic_core import from_json, to_json

from ecopy.errors import EcopyError
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.message import Message, build_message
from ecopy.messaging.naming import TypeRegistry, type_name

JSON_TYPE: Final = "json"
JSON_NATIVE = (dict, list, str, int, float, bool, type(None))


class MessageSerializationError(EcopyError):
    """A message cannot be turned into JSON (so it cannot travel asynchronously)."""


class MessageDeserializationError(EcopyError):
    """Bytes from a channel are not a message this application can read."""


class MessageSerializer:
    def __init__(self, names: TypeRegistry, conversion: PayloadConversion) -> None:
        self.names = names
        self.conversion = conversion

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

    def deserialize(self, data: str | bytes) -> Message:
        try:
            envelope = from_json(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise MessageDeserializationError(f"malformed JSON in message: {error}") from error
        if not isinstance(envelope, dict) or not isinstance(envelope.get("headers"), dict):
            raise MessageDeserializationError(
                "not an ecopy message envelope: expected an object with 'type', 'payload' and "
                "'headers'"
            )
        kind = envelope.get("type")
        headers: dict[str, Any] = envelope["headers"]
        raw = envelope.get("payload")
        if kind == JSON_TYPE:
            return build_message(raw, headers)
        cls = self.names.resolve(kind) if isinstance(kind, str) else None
        if cls is None:
            raise MessageDeserializationError(
                f"unknown message type {kind!r} in message {headers.get('id')}: only types known "
                f"to this application are deserialized; register the class (scan it, name it "
                f"with @named_event, or use it as a handler parameter)"
            )
        try:
            payload = self.conversion.adapter(cls).validate_python(raw)
        except Exception as error:
            raise MessageDeserializationError(
                f"payload of message {headers.get('id')} does not fit {kind}: {error}"
            ) from error
        return build_message(payload, headers)
