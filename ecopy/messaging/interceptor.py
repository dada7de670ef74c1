"""Interceptors: ``@presend``, ``@before``, ``@around`` and ``@after`` on service methods.

An interceptor applies to the endpoints its pointcut selects. Order per endpoint: presend →
before → around (begin) → handler → around (end) → after; within each kind, lower
``precedence`` runs first (outer). Interceptors whose pointcut selects a bus (``CommandBus``,
``EventBus``, ``QueryBus``) wrap the bus call, and therefore the endpoint interceptors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ecopy.messaging.declaration import (
    InterceptorDeclaration,
    InterceptorKind,
    declare,
    is_marker_class,
)
from ecopy.messaging.endpoint import INTERCEPTOR_NOTE, EndpointInfo, Invoker
from ecopy.messaging.message import Message

# Bound, so that @command_handler("key") is not mistaken for the bare @command_handler.
F = TypeVar("F", bound="Callable[..., Any] | classmethod[Any, Any, Any] | staticmethod[Any, Any]")


def _interceptor(
    kind: InterceptorKind,
    function: Any,
    pointcut: Any,
    precedence: int,
    change_headers: bool = False,
) -> Any:
    def decorate(target: F) -> F:
        declare(target).interceptors.append(
            InterceptorDeclaration(kind, pointcut, precedence, change_headers)
        )
        return target

    return decorate(function) if function is not None else decorate


@overload
def before(function: F, /) -> F: ...
@overload
def before(
    function: None = None,
    /,
    *,
    pointcut: Any = None,
    precedence: int = 0,
    change_headers: bool = False,
) -> Callable[[F], F]: ...
def before(
    function: Any = None,
    /,
    *,
    pointcut: Any = None,
    precedence: int = 0,
    change_headers: bool = False,
) -> Any:
    """Run before the handler. A non-``None`` return replaces the payload, or, with
    ``change_headers=True``, is a dict merged into the headers."""
    return _interceptor("before", function, pointcut, precedence, change_headers)


@overload
def presend(function: F, /) -> F: ...
@overload
def presend(
    function: None = None,
    /,
    *,
    pointcut: Any = None,
    precedence: int = 0,
    change_headers: bool = False,
) -> Callable[[F], F]: ...
def presend(
    function: Any = None,
    /,
    *,
    pointcut: Any = None,
    precedence: int = 0,
    change_headers: bool = False,
) -> Any:
    """Run when the message is sent to the endpoint, before any ``@before`` interceptor (and,
    for asynchronous endpoints, in the sender's process). Returns work as for ``@before``."""
    return _interceptor("presend", function, pointcut, precedence, change_headers)


@overload
def around(function: F, /) -> F: ...
@overload
def around(
    function: None = None, /, *, pointcut: Any = None, precedence: int = 0
) -> Callable[[F], F]: ...
def around(function: Any = None, /, *, pointcut: Any = None, precedence: int = 0) -> Any:
    """Wrap the handler; take a ``MethodInvocation`` and call ``invocation.proceed()``."""
    return _interceptor("around", function, pointcut, precedence)


@overload
def after(function: F, /) -> F: ...
@overload
def after(
    function: None = None, /, *, pointcut: Any = None, precedence: int = 0
) -> Callable[[F], F]: ...
def after(function: Any = None, /, *, pointcut: Any = None, precedence: int = 0) -> Any:
    """Run after the handler succeeded, with the same message. Its return value is ignored."""
    return _interceptor("after", function, pointcut, precedence)


class MethodInvocation:
    """The rest of the chain, as seen by an ``@around`` interceptor.

    >>> class Timing:
    ...     @around(pointcut=lambda endpoint: True)
    ...     def measure(self, invocation: MethodInvocation) -> object:
    ...         return invocation.proceed()
    """

    __slots__ = ("_core", "_index", "_rest", "endpoint", "failure", "message")

    def __init__(
        self,
        message: Message,
        endpoint: EndpointInfo,
        rest: Sequence[Callable[[MethodInvocation], Any]],
        index: int,
        core: Invoker,
    ) -> None:
        self.message = message
        self.endpoint = endpoint
        self._rest = rest
        self._index = index
        self._core = core
        self.failure: BaseException | None = None  # what proceed() raised, if it did

    @property
    def payload(self) -> Any:
        return self.message.payload

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.message.headers

    def proceed(self) -> Any:
        """Run the remaining interceptors and the handler; returns the handler's result.

        May be called more than once (e.g. by a retrying interceptor)."""
        index = self._index
        try:
            if index < len(self._rest):
                following = MethodInvocation(
                    self.message, self.endpoint, self._rest, index + 1, self._core
                )
                return self._rest[index](following)
            return self._core(self.message)
        except BaseException as error:
            self.failure = error
            raise


def name_interceptor(error: BaseException, note: str) -> None:
    """Note on ``error`` that the interceptor raised it (once: the innermost one that did)."""
    if not any(n.startswith(INTERCEPTOR_NOTE) for n in getattr(error, "__notes__", ())):
        error.add_note(note)


def pointcut_matches(pointcut: Any, info: EndpointInfo) -> bool:
    """Does ``pointcut`` select the endpoint (or gateway) described by ``info``?"""
    if pointcut is None:
        return info.kind != "gateway"
    if isinstance(pointcut, (list, tuple, set, frozenset)):
        return any(pointcut_matches(each, info) for each in pointcut)
    if isinstance(pointcut, type):
        if is_marker_class(pointcut) and info.marker(pointcut) is not None:
            return True
        return info.owner is not None and issubclass(info.owner, pointcut)
    if callable(pointcut):
        # Predicates select handler endpoints; buses are selected by naming their class.
        return info.kind != "gateway" and bool(pointcut(info))
    return False


def invalid_pointcut(pointcut: Any) -> str | None:
    """A description of what is wrong with ``pointcut``, or ``None``."""
    if pointcut is None or isinstance(pointcut, type) or callable(pointcut):
        return None
    if isinstance(pointcut, (list, tuple, set, frozenset)):
        for each in pointcut:
            problem = invalid_pointcut(each)
            if problem:
                return problem
        return None
    return (
        f"pointcut {pointcut!r} is neither a class, a marker class, a predicate nor a list of those"
    )


@dataclass(frozen=True)
class CompiledInterceptor:
    """One interceptor compiled for one endpoint."""

    kind: InterceptorKind
    precedence: int
    order: int
    name: str
    call: Callable[[Any], Any]
    change_headers: bool = False


def _apply_return(interceptor: CompiledInterceptor, message: Message, returned: Any) -> Message:
    if returned is None:
        return message
    if interceptor.change_headers:
        if not isinstance(returned, Mapping):
            raise TypeError(
                f"interceptor {interceptor.name} has change_headers=True and must return a dict "
                f"of headers to add (or None), but returned {type(returned).__qualname__} for "
                f"message {message.id}"
            )
        return message.with_headers(returned)
    return message.with_payload(returned)


def compile_chain(
    core: Invoker, info: EndpointInfo, interceptors: Sequence[CompiledInterceptor]
) -> Invoker:
    """Compose ``core`` with its interceptors into one invoker (``core`` itself if none)."""
    if not interceptors:
        return core
    ordered = sorted(interceptors, key=lambda i: (i.precedence, i.order))
    prepare = [i for i in ordered if i.kind == "presend"] + [
        i for i in ordered if i.kind == "before"
    ]
    arounds = tuple(i.call for i in ordered if i.kind == "around")
    afters = tuple(i.call for i in ordered if i.kind == "after")

    def run_prepare(message: Message) -> Message:
        for interceptor in prepare:
            message = _apply_return(interceptor, message, interceptor.call(message))
        return message

    def chain(message: Message) -> Any:
        if prepare:
            message = run_prepare(message)
        if arounds:
            result = MethodInvocation(message, info, arounds, 0, core).proceed()
        else:
            result = core(message)
        for after_call in afters:
            after_call(message)
        return result

    return chain
