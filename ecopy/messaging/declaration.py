"""What decorators leave on functions and classes for bootstrap to find.

Decorators only record declarations; they never wrap or replace the function. That is why
they stack in any order, with ``classmethod``/``staticmethod`` above or below them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")

_ATTRIBUTE = "__ecopy__"
_CLASS_MARKERS = "__ecopy_markers__"

Binding = Literal["instance", "class", "static", "function"]
HandlerKind = Literal["command", "event", "query", "internal"]
InterceptorKind = Literal["presend", "before", "around", "after"]


@dataclass
class HandlerDeclaration:
    kind: HandlerKind
    routing_key: str | None = None
    endpoint_id: str | None = None
    output_channel: str | None = None
    input_channel: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class InterceptorDeclaration:
    kind: InterceptorKind
    pointcut: Any = None
    precedence: int = 0
    change_headers: bool = False


@dataclass
class Declarations:
    handlers: list[HandlerDeclaration] = field(default_factory=list)
    interceptors: list[InterceptorDeclaration] = field(default_factory=list)
    modifiers: dict[str, Any] = field(default_factory=dict)
    markers: list[object] = field(default_factory=list)


def unwrap(member: Any) -> tuple[Callable[..., Any] | None, Binding]:
    """The plain function behind a class member, and how it binds."""
    if isinstance(member, staticmethod):
        return member.__func__, "static"
    if isinstance(member, classmethod):
        return member.__func__, "class"
    if callable(member) and hasattr(member, "__code__"):
        return member, "instance"
    return None, "instance"


def declarations_of(member: Any) -> Declarations | None:
    function, _ = unwrap(member)
    if function is None:
        return None
    found = getattr(function, _ATTRIBUTE, None)
    return found if isinstance(found, Declarations) else None


def declare(member: Any) -> Declarations:
    """The declarations of a function (created on first use)."""
    function, _ = unwrap(member)
    if function is None:
        raise TypeError(f"ecopy decorators apply to functions and methods, not to {member!r}")
    found = function.__dict__.get(_ATTRIBUTE)
    if not isinstance(found, Declarations):
        found = Declarations()
        setattr(function, _ATTRIBUTE, found)
    return found


def class_markers(cls: type[Any]) -> list[object]:
    """Markers placed on a class (and inherited from its bases)."""
    markers: list[object] = []
    for klass in reversed(cls.__mro__):
        markers.extend(klass.__dict__.get(_CLASS_MARKERS, ()))
    return markers


class Marker:
    """Optional base class for markers, typed for mypy: ``class Audited(Marker): ...`` then
    ``@Audited()`` on handlers. Equivalent to decorating the class with ``@marker``."""

    __ecopy_marker__ = True

    def __call__(self, target: _T) -> _T:
        if isinstance(target, type):
            own = list(target.__dict__.get(_CLASS_MARKERS, ()))
            own.append(self)
            setattr(target, _CLASS_MARKERS, tuple(own))
        else:
            declare(target).markers.append(self)
        return target


def marker(cls: type[Any]) -> type[Any]:
    """Turn a class into a marker: its instances decorate handlers and handler classes.

    Interceptors select marked handlers with ``pointcut=TheMarker`` and may take the
    marker instance as a parameter.

    >>> @marker
    ... class Audited:
    ...     def __init__(self, level: str = "info") -> None:
    ...         self.level = level
    >>> class Service:
    ...     @Audited(level="high")
    ...     def handle(self, command: dict) -> None: ...
    """

    setattr(cls, "__call__", Marker.__call__)  # noqa: B010 - a method assigned on purpose
    setattr(cls, "__ecopy_marker__", True)  # noqa: B010
    return cls


def is_marker_class(candidate: Any) -> bool:
    return isinstance(candidate, type) and bool(getattr(candidate, "__ecopy_marker__", False))
