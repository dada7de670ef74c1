"""Services the application hands to bootstrap, found by type or by name."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ecopy.messaging.binding import parameters_of

_MISSING: Any = object()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Container:
    """Service instances by type and by name.

    ``services`` is a list of instances (each reachable by its class, its base classes, its
    class name and the snake_case class name) or a mapping of name to instance.
    """

    def __init__(self, services: Iterable[object] | Mapping[str, object] = ()) -> None:
        self._instances: list[object] = []
        self._by_name: dict[str, object] = {}
        self._by_type_cache: dict[Any, tuple[bool, Any]] = {}
        if isinstance(services, Mapping):
            for name, instance in services.items():
                self.add(instance, name=name)
        else:
            for instance in services:
                self.add(instance)

    def add(self, instance: object, *, name: str | None = None) -> None:
        self._instances.append(instance)
        cls_name = type(instance).__name__
        for alias in (name, cls_name, _snake(cls_name)):
            if alias:
                self._by_name.setdefault(alias, instance)
        self._by_type_cache.clear()

    def find_by_name(self, name: str) -> tuple[bool, Any]:
        if name in self._by_name:
            return True, self._by_name[name]
        return False, None

    def find_by_type(self, annotation: Any) -> tuple[bool, Any]:
        if not isinstance(annotation, type) or annotation in (object, Any):
            return False, None
        cached = self._by_type_cache.get(annotation)
        if cached is None:
            exact = [i for i in self._instances if type(i) is annotation]
            matches = exact or [i for i in self._instances if isinstance(i, annotation)]
            cached = (True, matches[0]) if matches else (False, None)
            self._by_type_cache[annotation] = cached
        return cached

    def implementations(self, port: type[Any]) -> list[Any]:
        """Registered services that declare they implement ``port`` by subclassing it.

        Explicit, not structural: a service that merely has methods with the same names
        (``save``, ``load``...) must never be taken for a store."""
        return [instance for instance in self._instances if port in type(instance).__mro__]

    def implementation(self, port: type[Any]) -> Any:
        found = self.implementations(port)
        return found[0] if found else None

    def instance_of(self, cls: type[Any], problems: list[str]) -> Any:
        """The registered instance of ``cls``, or a new one whose constructor parameters are
        services (registered for later use); ``None`` with a problem when neither works."""
        found, instance = self.find_by_type(cls)
        if found:
            return instance
        try:
            parameters = parameters_of(cls.__init__, skip_first=True)
        except (TypeError, ValueError):
            parameters = []
        arguments: dict[str, Any] = {}
        missing: list[str] = []
        for parameter in parameters:
            ok, service = self.find_by_type(parameter.annotation)
            if ok:
                arguments[parameter.name] = service
            elif parameter.default is inspect.Parameter.empty:
                missing.append(parameter.name)
        if missing:
            problems.append(
                f"class {cls.__qualname__} has handlers but no instance was given and its "
                f"constructor needs {', '.join(repr(m) for m in missing)}; pass an instance in "
                f"services=[{cls.__qualname__}(...)]"
            )
            return None
        try:
            instance = cls(**arguments)
        except Exception as error:
            problems.append(
                f"class {cls.__qualname__} could not be instantiated for its handlers "
                f"({type(error).__name__}: {error}); pass an instance in "
                f"services=[{cls.__qualname__}(...)]"
            )
            return None
        self.add(instance)
        return instance
