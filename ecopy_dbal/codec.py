"""Objects to JSON text and back, for the tables: event payloads and aggregate documents.

Nothing is pickled. An event is stored with its type name and read back only as a class the
application knows (the same allow-list as messages). An aggregate or saga is stored as the JSON
of its fields: dataclasses and pydantic models through pydantic; other classes attribute by
attribute, each converted to its annotated type when it has one. Attributes whose names start
with ``_ecopy`` (events recorded but not yet published) are never stored.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from pydantic import PydanticSchemaGenerationError
from pydantic_core import from_json, to_json, to_jsonable_python

from ecopy.errors import EcopyError
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.naming import TypeRegistry, type_name
from ecopy.messaging.serialization import JSON_NATIVE, JSON_TYPE


class StoredDataError(EcopyError):
    """A row cannot be turned back into an object of this application."""


class Codec:
    """Encodes payloads and documents for the database, with the application's type names."""

    def __init__(self, names: TypeRegistry, conversion: PayloadConversion) -> None:
        self.names = names
        self.conversion = conversion
        self._plain: dict[type[Any], dict[str, Any] | None] = {}

    # -- payloads (events) ------------------------------------------------------------

    def encode_payload(self, payload: Any) -> tuple[str, str]:
        """``(type name, JSON text)``; the type is registered so it can be read back."""
        if isinstance(payload, JSON_NATIVE):
            return JSON_TYPE, to_json(payload).decode()
        cls = type(payload)
        kind = type_name(cls)
        known = self.names.resolve(kind)
        if known is None:
            self.names.register(cls)
        elif known is not cls:
            raise StoredDataError(
                f"{cls.__module__}.{cls.__qualname__} and {known.__module__}.{known.__qualname__} "
                f"are both named {kind!r}: a stored one could be read back as the other; give "
                f"one of them another name with @named_event"
            )
        try:
            return kind, to_json(payload).decode()
        except Exception as error:
            raise StoredDataError(
                f"a {cls.__module__}.{cls.__qualname__} cannot be stored as JSON ({error}); "
                f"events must be dataclasses, pydantic models or JSON values"
            ) from error

    def decode_payload(self, kind: str, text: str | bytes) -> Any:
        raw = from_json(text)
        if kind == JSON_TYPE:
            return raw
        cls = self.names.resolve(kind)
        if cls is None:
            raise StoredDataError(
                f"stored type {kind!r} is not known to this application: only known classes are "
                f"read back; pass the class to bootstrap (classes= or scan=), or, if it was "
                f"renamed or moved, give it its old name with @named_event({kind!r})"
            )
        try:
            return self.conversion.adapter(cls).validate_python(raw)
        except Exception as error:
            raise StoredDataError(
                f"stored {kind} does not fit its class {cls.__module__}.{cls.__qualname__} any "
                f"more: {error}; stored events are never rewritten, so give the fields added "
                f"since they were stored a default value"
            ) from error

    @staticmethod
    def encode_json(value: Mapping[str, Any]) -> str:
        return to_json(value).decode()

    @staticmethod
    def decode_json(text: str | bytes) -> Any:
        return from_json(text)

    # -- documents (aggregates, sagas, snapshots) --------------------------------------

    def encode_document(self, cls: type[Any], document: Any) -> str:
        hints = self._attribute_types(cls)
        if hints is None:
            data = self.conversion.adapter(cls).dump_python(document, mode="json")
            return to_json(data).decode()
        state = {
            name: self._dump(hints.get(name), value)
            for name, value in vars(document).items()
            if not name.startswith("_ecopy")
        }
        return to_json(state).decode()

    def decode_document(self, cls: type[Any], text: str | bytes) -> Any:
        raw = from_json(text)
        hints = self._attribute_types(cls)
        try:
            if hints is None:
                return self.conversion.adapter(cls).validate_python(raw)
            document = object.__new__(cls)
            for name, value in raw.items():
                annotation = hints.get(name)
                setattr(
                    document,
                    name,
                    value
                    if annotation is None
                    else self.conversion.adapter(annotation).validate_python(value),
                )
            return document
        except Exception as error:
            # The caller says which row, and the fix for its table.
            raise StoredDataError(
                f"the stored fields do not fit {cls.__module__}.{cls.__qualname__} any more: "
                f"{error}"
            ) from error

    def _dump(self, annotation: Any, value: Any) -> Any:
        if annotation is None:
            return to_jsonable_python(value)
        return self.conversion.adapter(annotation).dump_python(value, mode="json")

    def _attribute_types(self, cls: type[Any]) -> dict[str, Any] | None:
        """``None`` when pydantic handles the whole class; otherwise the annotated types of
        its attributes (a plain class is stored attribute by attribute)."""
        if cls not in self._plain:
            try:
                self.conversion.adapter(cls)
                self._plain[cls] = None
            except PydanticSchemaGenerationError:
                try:
                    hints = typing.get_type_hints(cls, include_extras=True)
                except Exception:
                    hints = {}
                self._plain[cls] = hints
        return self._plain[cls]
