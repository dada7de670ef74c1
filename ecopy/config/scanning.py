"""Finding the decorated classes and functions of an application."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ecopy.messaging.declaration import (
    Binding,
    Declarations,
    class_markers,
    declarations_of,
    unwrap,
)


@dataclass(frozen=True)
class DeclaredMember:
    """A decorated function: module-level, or a member of ``owner``."""

    owner: type[Any] | None
    function: Any
    binding: Binding
    declarations: Declarations

    @property
    def name(self) -> str:
        if self.owner is not None:
            return f"{self.owner.__qualname__}.{self.function.__name__}"
        return str(self.function.__qualname__)


def members_of(cls: type[Any]) -> Iterator[DeclaredMember]:
    """Decorated members of ``cls``, inherited ones included, in definition order."""
    seen: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        for name, member in vars(klass).items():
            seen[name] = member
    for member in seen.values():
        declarations = declarations_of(member)
        if declarations is None:
            continue
        function, binding = unwrap(member)
        yield DeclaredMember(cls, function, binding, declarations)


def declared_function(function: Any) -> DeclaredMember | None:
    declarations = declarations_of(function)
    if declarations is None or not inspect.isfunction(function):
        return None
    return DeclaredMember(None, function, "function", declarations)


def is_relevant_class(cls: type[Any]) -> bool:
    return (
        any(True for _ in members_of(cls))
        or bool(class_markers(cls))
        or any(attribute.startswith("__ecopy") for attribute in vars(cls))
    )


def _modules(package: str) -> Iterator[ModuleType]:
    module = importlib.import_module(package)
    yield module
    path = getattr(module, "__path__", None)
    if path is None:
        return
    for info in pkgutil.walk_packages(path, prefix=f"{package}."):
        yield importlib.import_module(info.name)


def scan(packages: Iterable[str], problems: list[str] | None = None) -> list[Any]:
    """Classes and functions defined in ``packages`` (and their sub-modules) that carry
    ecopy declarations, in definition order. A package that cannot be imported is a problem
    (added to ``problems`` when given, raised otherwise)."""
    found: list[Any] = []
    for package in packages:
        try:
            modules = list(_modules(package))
        except ImportError as error:
            if problems is None:
                raise
            problems.append(
                f"scan={package!r}: the package cannot be imported ({type(error).__name__}: "
                f"{error}); check the name and that it is on the Python path"
            )
            continue
        for module in modules:
            for value in vars(module).values():
                if getattr(value, "__module__", None) != module.__name__:
                    continue
                if (inspect.isclass(value) and is_relevant_class(value)) or (
                    inspect.isfunction(value) and declarations_of(value) is not None
                ):
                    found.append(value)
    return found
