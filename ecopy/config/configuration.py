"""``ServiceConfiguration``: the application's name and its extension objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ServiceConfiguration:
    """How an application is configured.

    ``extensions`` holds configuration objects such as ``QueueChannel("orders")``. More come
    from ``@service_context`` methods of scanned classes.

    >>> ServiceConfiguration(service_name="shop").service_name
    'shop'
    """

    service_name: str = "ecopy"
    extensions: Sequence[Any] = field(default_factory=tuple)
    #: How long deduplication keys are kept (seconds); they expire on their own.
    deduplication_expire_after: float = 7 * 24 * 3600

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", tuple(self.extensions))


def service_context(function: Any) -> Any:
    """Mark a method or function that returns extension objects (one or a list).

    >>> class Channels:
    ...     @service_context
    ...     def orders(self) -> object:
    ...         return QueueChannel("orders")  # doctest: +SKIP
    """
    from ecopy.messaging.declaration import declare

    declare(function).modifiers["service_context"] = True
    return function
