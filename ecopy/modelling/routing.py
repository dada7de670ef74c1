"""Routing tables, built once at bootstrap and cached per message class or routing key.

Commands and queries go to exactly one endpoint; events to every subscribed endpoint, ordered
by priority (higher first), then by rank (aggregates, sagas/projections, services), then by
registration order.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from ecopy.errors import NoHandlerFound
from ecopy.messaging.endpoint import Endpoint
from ecopy.messaging.naming import TypeRegistry, type_name

_CACHE_LIMIT = 10_000
_GLOB_CHARACTERS = frozenset("*?[")


def is_pattern(key: str) -> bool:
    return not _GLOB_CHARACTERS.isdisjoint(key)


class PointToPointRouter:
    """Routes a command or a query to its single endpoint."""

    def __init__(
        self,
        kind: str,
        by_class: dict[type[Any], Endpoint],
        by_key: dict[str, Endpoint],
        names: TypeRegistry,
    ) -> None:
        self.kind = kind
        self._by_class = by_class
        self._by_key = by_key
        self._names = names
        self._class_cache: dict[type[Any], Endpoint] = {}

    def for_payload(self, payload: Any) -> Endpoint:
        cls = type(payload)
        endpoint = self._class_cache.get(cls)
        if endpoint is None:
            endpoint = self._resolve_class(cls)
            if endpoint is None:
                raise self._not_found(f"{self.kind} {type_name(cls)}", type_name(cls))
            self._class_cache[cls] = endpoint
        return endpoint

    def for_key(self, key: str) -> Endpoint:
        endpoint = self._by_key.get(key)
        if endpoint is None:
            named = self._names.resolve(key)
            endpoint = self._resolve_class(named) if named is not None else None
            if endpoint is None:
                raise self._not_found(f"{self.kind} routing key {key!r}", key)
        return endpoint

    def _resolve_class(self, cls: type[Any]) -> Endpoint | None:
        for klass in cls.__mro__:
            endpoint = self._by_class.get(klass)
            if endpoint is not None:
                return endpoint
        return self._by_key.get(type_name(cls))

    def known_keys(self) -> list[str]:
        return [*self._by_key, *(type_name(cls) for cls in self._by_class)]

    def _not_found(self, what: str, key: str) -> NoHandlerFound:
        close = difflib.get_close_matches(key, self.known_keys(), n=3, cutoff=0.5)
        return NoHandlerFound(what, close, self.kind)


def _order(endpoints: Iterable[tuple[int, Endpoint]]) -> tuple[Endpoint, ...]:
    unique: dict[int, tuple[int, Endpoint]] = {}
    for order, endpoint in endpoints:
        unique.setdefault(id(endpoint), (order, endpoint))
    ranked = sorted(
        unique.values(),
        key=lambda item: (-item[1].info.priority, item[1].info.rank, item[0]),
    )
    return tuple(endpoint for _, endpoint in ranked)


class EventRouter:
    """Routes an event to every endpoint subscribed to its class (or a base) or its name."""

    def __init__(
        self,
        by_class: dict[type[Any], list[tuple[int, Endpoint]]],
        by_pattern: list[tuple[str, int, Endpoint]],
        names: TypeRegistry,
    ) -> None:
        self._by_class = by_class
        self._by_pattern = by_pattern
        self._names = names
        self._class_cache: dict[type[Any], tuple[Endpoint, ...]] = {}
        self._key_cache: dict[str, tuple[Endpoint, ...]] = {}

    def for_payload(self, payload: Any) -> tuple[Endpoint, ...]:
        cls = type(payload)
        endpoints = self._class_cache.get(cls)
        if endpoints is None:
            endpoints = _order(self._class_subscribers(cls, include_name=True))
            if len(self._class_cache) < _CACHE_LIMIT:
                self._class_cache[cls] = endpoints
        return endpoints

    def for_key(self, key: str) -> tuple[Endpoint, ...]:
        endpoints = self._key_cache.get(key)
        if endpoints is None:
            found = self._named_subscribers(key)
            named = self._names.resolve(key)
            if named is not None:
                found.extend(self._class_subscribers(named, include_name=False))
            endpoints = _order(found)
            if len(self._key_cache) < _CACHE_LIMIT:
                self._key_cache[key] = endpoints
        return endpoints

    def _class_subscribers(
        self, cls: type[Any], *, include_name: bool
    ) -> list[tuple[int, Endpoint]]:
        found: list[tuple[int, Endpoint]] = []
        for klass in cls.__mro__:
            found.extend(self._by_class.get(klass, ()))
        if include_name:
            found.extend(self._named_subscribers(type_name(cls)))
        return found

    def _named_subscribers(self, key: str) -> list[tuple[int, Endpoint]]:
        return [
            (order, endpoint)
            for pattern, order, endpoint in self._by_pattern
            if pattern == key or (is_pattern(pattern) and fnmatchcase(key, pattern))
        ]
