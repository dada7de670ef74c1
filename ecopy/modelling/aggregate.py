"""Aggregates, event-sourced aggregates and sagas: declarations and their introspection.

>>> from dataclasses import dataclass
>>> from typing import Annotated
>>> @aggregate
... @dataclass
... class Order:
...     order_id: Annotated[str, Identifier]
...     status: str = "new"
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from ecopy.errors import ConfigurationError
from ecopy.messaging.binding import parameters_of
from ecopy.messaging.declaration import declarations_of, declare, unwrap

T = TypeVar("T", bound=type[Any])
F = TypeVar("F")

AggregateKind = Literal["state_stored", "event_sourced", "saga"]
_ATTRIBUTE = "__ecopy_aggregate__"


class Identifier:
    """Marks the identifier field(s) of an aggregate: ``order_id: Annotated[str, Identifier]``."""


class AggregateVersion:
    """Marks the optional version field of an aggregate (optimistic locking)."""


class TargetVersion:
    """Marks the command field carrying the aggregate version the client saw."""


@dataclass(frozen=True, slots=True)
class TargetIdentifier:
    """Marks a payload field that holds the identifier ``name`` of the target aggregate:
    ``order: Annotated[str, TargetIdentifier("order_id")]``."""

    name: str


class WithEvents:
    """Optional mixin for state-stored aggregates and sagas that record events.

    Recorded events are published, in order, after the aggregate is saved.
    """

    def record_that(self, event: object) -> None:
        recorded = self.__dict__.setdefault("_ecopy_recorded_events", [])
        recorded.append(event)

    def release_recorded_events(self) -> list[object]:
        return list(self.__dict__.pop("_ecopy_recorded_events", []))


@dataclass(frozen=True)
class AggregateOptions:
    kind: AggregateKind
    snapshot_every: int | None = None


def _mark(cls: T, options: AggregateOptions) -> T:
    setattr(cls, _ATTRIBUTE, (cls, options))
    return cls


def aggregate(cls: T) -> T:
    """A state-stored aggregate: its command handlers load it, change it and save it."""
    return _mark(cls, AggregateOptions("state_stored"))


@overload
def event_sourcing_aggregate(cls: T, /) -> T: ...
@overload
def event_sourcing_aggregate(*, snapshot_every: int | None = None) -> Callable[[T], T]: ...
def event_sourcing_aggregate(cls: Any = None, /, *, snapshot_every: int | None = None) -> Any:
    """An event-sourced aggregate: handlers return events; ``@event_sourcing_handler`` methods
    apply them. ``snapshot_every=N`` stores a snapshot every N events."""
    if snapshot_every is not None and snapshot_every < 1:
        raise ConfigurationError(
            [
                f"@event_sourcing_aggregate(snapshot_every={snapshot_every!r}): snapshot_every "
                f"is a number of events, at least 1; leave it out to store no snapshots"
            ]
        )
    options = AggregateOptions("event_sourced", snapshot_every)
    if cls is not None:
        return _mark(cls, options)
    return lambda target: _mark(target, options)


def saga(cls: T) -> T:
    """A saga: a state-stored aggregate driven by ``@event_handler`` methods."""
    return _mark(cls, AggregateOptions("saga"))


def event_sourcing_handler(function: F) -> F:
    """Applies one event to an event-sourced aggregate's state (first parameter: the event)."""
    declare(function).modifiers["event_sourcing_handler"] = True
    return function


def aggregate_options(cls: type[Any] | None) -> AggregateOptions | None:
    if cls is None:
        return None
    marked = cls.__dict__.get(_ATTRIBUTE)
    if marked is None or marked[0] is not cls:
        return None
    options: AggregateOptions = marked[1]
    return options


def annotated_fields(cls: type[Any], marker: type[Any]) -> list[str]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:
        hints = dict(getattr(cls, "__annotations__", {}))
    found = []
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated:
            metadata = hint.__metadata__
            if any(m is marker or isinstance(m, marker) for m in metadata):
                found.append(name)
    return found


@dataclass(frozen=True, eq=False)
class AggregateDefinition:
    """Everything the framework needs to know about an aggregate class, read once."""

    cls: type[Any]
    options: AggregateOptions
    identifiers: tuple[str, ...]
    version_field: str | None
    appliers: dict[type[Any], Callable[[Any, Any], Any]]

    @property
    def kind(self) -> AggregateKind:
        return self.options.kind

    @property
    def name(self) -> str:
        return self.cls.__qualname__

    @property
    def event_sourced(self) -> bool:
        return self.options.kind == "event_sourced"

    @classmethod
    def of(cls, aggregate_class: type[Any], problems: list[str]) -> AggregateDefinition | None:
        options = aggregate_options(aggregate_class)
        if options is None:
            return None
        identifiers = tuple(annotated_fields(aggregate_class, Identifier))
        if not identifiers:
            kind = "saga" if options.kind == "saga" else "aggregate"
            problems.append(
                f"{kind} {aggregate_class.__qualname__} has no identifier; mark its "
                f"identifier field with Annotated[str, Identifier]"
            )
        versions = annotated_fields(aggregate_class, AggregateVersion)
        appliers: dict[type[Any], Callable[[Any, Any], Any]] = {}
        if options.kind == "event_sourced":
            appliers = _appliers(aggregate_class, problems)
        return cls(
            aggregate_class, options, identifiers, versions[0] if versions else None, appliers
        )

    def identifier_of(self, instance: Any) -> dict[str, Any] | None:
        """The identifier of an instance, or ``None`` when a part of it is missing."""
        values = {}
        for name in self.identifiers:
            value = getattr(instance, name, None)
            if value is None:
                return None
            values[name] = value
        return values

    def version_of(self, instance: Any) -> int:
        if self.version_field is None:
            return 0
        return int(getattr(instance, self.version_field, 0) or 0)

    def set_version(self, instance: Any, version: int) -> None:
        if self.version_field is not None:
            object.__setattr__(instance, self.version_field, version)

    def blank(self) -> Any:
        """A new instance to apply events to: the no-argument constructor when it works,
        otherwise an instance created without calling ``__init__``."""
        construct = getattr(self.cls, "model_construct", None)
        try:
            return self.cls()
        except Exception:
            if callable(construct):  # a pydantic model: an instance without validation
                return construct()
            instance = object.__new__(self.cls)
            if dataclasses.is_dataclass(self.cls):
                for field in dataclasses.fields(self.cls):
                    if field.default is not dataclasses.MISSING:
                        object.__setattr__(instance, field.name, field.default)
                    elif field.default_factory is not dataclasses.MISSING:
                        object.__setattr__(instance, field.name, field.default_factory())
            return instance

    def apply(self, instance: Any, event: Any) -> None:
        """Apply one event with the matching ``@event_sourcing_handler`` (none: ignored)."""
        for klass in type(event).__mro__:
            applier = self.appliers.get(klass)
            if applier is not None:
                applier(instance, event)
                return


def _appliers(cls: type[Any], problems: list[str]) -> dict[type[Any], Callable[[Any, Any], Any]]:
    appliers: dict[type[Any], Callable[[Any, Any], Any]] = {}
    for klass in reversed(cls.__mro__):
        for member in vars(klass).values():
            declarations = declarations_of(member)
            if declarations is None or not declarations.modifiers.get("event_sourcing_handler"):
                continue
            function, _ = unwrap(member)
            assert function is not None
            parameters = parameters_of(function, skip_first=True)
            event_type = (
                parameters[0].annotation if parameters and parameters[0].annotated else None
            )
            if not isinstance(event_type, type):
                problems.append(
                    f"@event_sourcing_handler {cls.__qualname__}.{function.__name__} must take "
                    f"the event as its first parameter, annotated with the event class"
                )
                continue
            appliers[event_type] = function
    return appliers
