"""Loading the application named by ``--app module:attribute`` (or ``ECOPY_APP``).

The attribute is a :class:`~ecopy.MessagingSystem` or a zero-argument factory returning one.
Every failure becomes an :class:`AppLoadingError` whose message says what went wrong and what
to do, so the command line shows one clean line instead of a traceback.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import click

from ecopy.config.system import MessagingSystem

APP_ENVVAR = "ECOPY_APP"
APP_FORMAT = "module:attribute"

_ECOPY_DIRECTORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class AppLoadingError(click.ClickException):
    """The application could not be loaded; the command exits with status 1."""

    exit_code = 1


@dataclass
class ApplicationReference:
    """The ``--app`` value given to the ``ecopy`` group, loaded lazily by each command that
    needs the application (so ``--help`` never imports it)."""

    reference: str | None

    def load(self) -> MessagingSystem:
        if not self.reference:
            raise click.UsageError(
                f"No application given: pass --app {APP_FORMAT} (e.g. --app shop.app:system) "
                f"or set the {APP_ENVVAR} environment variable."
            )
        return load_system(self.reference)


pass_application = click.make_pass_decorator(ApplicationReference)
"""Decorator for a command taking the :class:`ApplicationReference` as its first argument."""


def parse_app_reference(reference: str) -> tuple[str, str]:
    """Split ``"module:attribute"`` into its module and (possibly dotted) attribute path.

    >>> parse_app_reference("shop.app:system")
    ('shop.app', 'system')
    """
    module_name, separator, attribute = reference.strip().partition(":")
    if not separator or not module_name or not attribute:
        raise click.BadParameter(
            f"{reference!r} is not of the form {APP_FORMAT}, e.g. 'shop.app:system'",
            param_hint="'--app' / ECOPY_APP",
        )
    return module_name, attribute


def load_system(reference: str) -> MessagingSystem:
    """Import the module, find the attribute and return the messaging system it names."""
    module_name, attribute = parse_app_reference(reference)
    _make_working_directory_importable()
    module = _import(module_name)
    target = _attribute(module, module_name, attribute)
    return _as_system(target, reference)


def _make_working_directory_importable() -> None:
    # Like uvicorn and celery: `ecopy --app shop:system` finds ./shop.py without PYTHONPATH.
    working_directory = os.getcwd()
    if working_directory not in sys.path and "" not in sys.path:
        sys.path.insert(0, working_directory)


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and _is_same_or_parent(error.name, module_name):
            raise AppLoadingError(
                f"Cannot import module {module_name!r}: {error}. Check the module path given "
                f"to --app / {APP_ENVVAR}; the current directory ({os.getcwd()}) and "
                f"PYTHONPATH are searched."
            ) from None
        raise AppLoadingError(_import_failure(module_name, error)) from None
    except Exception as error:
        raise AppLoadingError(_import_failure(module_name, error)) from None


def _is_same_or_parent(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


def _import_failure(module_name: str, error: BaseException) -> str:
    shown = "".join(traceback.format_exception_only(error)).strip()
    return f"Importing module {module_name!r} failed{_where(error)}:\n{shown}"


def _where(error: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame in the user's code, so they know where to
    look; ecopy's own frames and the import machinery are skipped."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if not f.filename.startswith((_ECOPY_DIRECTORY, "<frozen"))]
    if not (own or frames):
        return ""
    frame = (own or frames)[-1]
    return f" (at {frame.filename}:{frame.lineno})"


def _attribute(module: Any, module_name: str, attribute: str) -> Any:
    target = module
    walked: list[str] = []
    for part in attribute.split("."):
        walked.append(part)
        if not hasattr(target, part):
            path = ".".join(walked)
            systems = sorted(
                name for name, value in vars(module).items() if isinstance(value, MessagingSystem)
            )
            hint = f" Its MessagingSystem attributes: {', '.join(systems)}." if systems else ""
            raise AppLoadingError(
                f"Module {module_name!r} has no attribute {path!r}.{hint} Pass --app "
                f"{module_name}:<attribute> naming a MessagingSystem or a factory returning one."
            )
        target = getattr(target, part)
    return target


def _as_system(target: Any, reference: str) -> MessagingSystem:
    if isinstance(target, MessagingSystem):
        return target
    if not callable(target):
        raise AppLoadingError(
            f"{reference} is a {type(target).__qualname__}, not a MessagingSystem. Point --app "
            f"at the result of ecopy.bootstrap(...) or at a zero-argument factory returning it."
        )
    required = _required_parameters(target)
    if required:
        raise AppLoadingError(
            f"{reference} is a callable that needs arguments ({', '.join(required)}); an app "
            f"factory must take no arguments and return a MessagingSystem."
        )
    try:
        produced = target()
    except Exception as error:
        shown = "".join(traceback.format_exception_only(error)).strip()
        raise AppLoadingError(
            f"The app factory {reference} raised an error{_where(error)}:\n{shown}"
        ) from None
    if not isinstance(produced, MessagingSystem):
        raise AppLoadingError(
            f"The app factory {reference} returned a {type(produced).__qualname__}, not a "
            f"MessagingSystem; make it return the result of ecopy.bootstrap(...)."
        )
    return produced


def _required_parameters(target: Any) -> list[str]:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []  # builtins without a signature: calling them will tell
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.default is inspect.Parameter.empty
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
