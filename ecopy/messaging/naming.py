"""Stable names for message classes: ``@named_event`` names or module-qualified names.

Names are used for routing by key (a named class is reachable by its name) and, across
process boundaries, as the allow-list of types that may be instantiated from a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ecopy.errors import ConfigurationError

_NAME_ATTRIBUTE = "__ecopy_name__"

T = TypeVar("T", bound=type[Any])


def named_event(name: str) -> Callable[[T], T]:
    """Give a class a stable name used for routing and serialization.

    >>> @named_event("order.placed")
    ... class OrderPlaced: ...
    >>> type_name(OrderPlaced)
    'order.placed'
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            [f'@named_event needs a non-empty string name (e.g. "order.placed"), got {name!r}']
        )

    def decorate(cls: T) -> T:
        # Set on the class itself (not inherited): a subclass is a different message.
        setattr(cls, _NAME_ATTRIBUTE, (cls, name))
        return cls

    return decorate


def declared_name(cls: type[Any]) -> str | None:
    """The ``@named_event`` name declared on exactly this class, if any."""
    declared = cls.__dict__.get(_NAME_ATTRIBUTE)
    if declared is None or declared[0] is not cls:
        return None
    return str(declared[1])


def type_name(cls: type[Any]) -> str:
    """The stable name of a message class."""
    return declared_name(cls) or f"{cls.__module__}.{cls.__qualname__}"


class TypeRegistry:
    """Known message classes by name: the allow-list for instantiating payloads."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[Any]] = {}

    def register(self, cls: type[Any]) -> list[str]:
        """Register ``cls``; returns problems (a name taken by another class)."""
        name = type_name(cls)
        known = self._by_name.get(name)
        if known is not None and known is not cls:
            return [
                f"message name {name!r} is used by both {known.__module__}.{known.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}; give each a unique @named_event name"
            ]
        self._by_name[name] = cls
        return []

    def register_all(self, classes: Iterable[type[Any]]) -> list[str]:
        problems: list[str] = []
        for cls in classes:
            problems.extend(self.register(cls))
        return problems

    def resolve(self, name: str) -> type[Any] | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return list(self._by_name)
