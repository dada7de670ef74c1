"""Declaring projections: ``@projection`` on a class, its lifecycle hooks, and the
``ProjectionState`` marker for the state the engine keeps with the position."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ecopy.messaging.declaration import declare

C = TypeVar("C", bound=type[Any])
F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = "__ecopy_projection__"
HOOKS = ("initialization", "reset", "delete", "flush")


@dataclass(frozen=True)
class ProjectionOptions:
    name: str
    from_streams: tuple[type[Any] | str, ...]
    from_all: bool
    batch_size: int
    manual_kick_off: bool
    live: bool
    polling: bool = False


def projection(
    name: str,
    *,
    from_streams: Sequence[type[Any] | str] = (),
    from_all: bool = False,
    polling: bool = False,
    batch_size: int = 1000,
    manual_kick_off: bool = False,
    live: bool = True,
) -> Callable[[C], C]:
    """Declare a read model fed by the event store: its ``@event_handler`` methods see the
    stored events of ``from_streams`` (event-sourced aggregate classes or stream names), or of
    every stream with ``from_all=True``, in position order; the position (and the state it
    keeps) is saved with each batch. A synchronous projection catches up in the transaction
    of each command that stores its events; with ``polling=True`` the consumer named after
    the projection catches it up instead, every ``PollingMetadata(name).poll_interval_ms``.

    >>> @projection("balances", from_streams=["shop.Account"])
    ... class Balances: ...
    """

    def decorate(cls: C) -> C:
        setattr(
            cls,
            _OPTIONS,
            ProjectionOptions(
                name, tuple(from_streams), from_all, batch_size, manual_kick_off, live, polling
            ),
        )
        return cls

    return decorate


def projection_options(cls: type[Any]) -> ProjectionOptions | None:
    found = cls.__dict__.get(_OPTIONS)
    return found if isinstance(found, ProjectionOptions) else None


def _hook(kind: str) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        declare(function).modifiers["projection_hook"] = kind
        return function

    return decorate


projection_initialization = _hook("initialization")
"""Runs once, when the projection is initialized (its row created): create its tables."""
projection_reset = _hook("reset")
"""Runs on ``reset`` and before a ``rebuild``: wipe what the projection wrote."""
projection_delete = _hook("delete")
"""Runs on ``delete``: drop what the projection created."""
projection_flush = _hook("flush")
"""Runs once per batch that handled at least one event, before its position is saved."""


class ProjectionState:
    """Marks the handler parameter that receives the projection's state:
    ``totals: Annotated[Totals, ProjectionState]``. A handler that takes it and returns a
    value other than ``None`` replaces the state; it is kept as JSON with the position."""
