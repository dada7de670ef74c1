"""Interceptor sources found at bootstrap, compiled for each endpoint they select."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecopy.messaging.binding import ArgumentBinder, Parameter, Resolver, compile_call, parameters_of
from ecopy.messaging.declaration import InterceptorDeclaration, is_marker_class
from ecopy.messaging.endpoint import EndpointInfo
from ecopy.messaging.interceptor import (
    CompiledInterceptor,
    MethodInvocation,
    invalid_pointcut,
    name_interceptor,
    pointcut_matches,
)
from ecopy.messaging.message import Message


def _invocation(message: Message) -> Any:  # placeholder resolver, replaced per call
    raise AssertionError("unreachable")


def _invocation_parameter(parameters: tuple[Parameter, ...]) -> str | None:
    """DESIGN §3.5: the parameter annotated ``MethodInvocation``, or else the first one when
    it has no annotation."""
    for parameter in parameters:
        if parameter.annotation is MethodInvocation:
            return parameter.name
    if parameters and not parameters[0].annotated:
        return parameters[0].name
    return None


@dataclass(frozen=True)
class InterceptorSource:
    name: str
    function: Callable[..., Any]
    declaration: InterceptorDeclaration
    parameters: tuple[Parameter, ...]
    pointcut: Any
    order: int
    invocation: str | None = None
    """The parameter that receives the ``MethodInvocation`` (``@around`` only)."""

    @classmethod
    def of(
        cls,
        name: str,
        target: Callable[..., Any],
        declaration: InterceptorDeclaration,
        order: int,
        problems: list[str],
    ) -> InterceptorSource:
        skip = isinstance(target, types.MethodType)
        raw = target.__func__ if isinstance(target, types.MethodType) else target
        parameters = tuple(parameters_of(raw, skip_first=skip))
        pointcut = declaration.pointcut
        if pointcut is None:
            # No explicit pointcut: an interceptor that takes a marker selects the marked
            # handlers; one that takes no marker applies to every endpoint.
            markers = [p.annotation for p in parameters if is_marker_class(p.annotation)]
            pointcut = tuple(markers) if markers else None
        problem = invalid_pointcut(pointcut)
        if problem:
            problems.append(f"interceptor {name}: {problem}")
            pointcut = ()
        invocation: str | None = None
        if declaration.kind == "around":
            invocation = _invocation_parameter(parameters)
            if invocation is None:
                problems.append(
                    f"interceptor {name}: an @around interceptor must take the "
                    f"MethodInvocation and call invocation.proceed() to run the handler; add a "
                    f"parameter `invocation: MethodInvocation` (or leave the first parameter "
                    f"unannotated), or make it a @before interceptor if it never wraps the "
                    f"handler"
                )
        elif any(p.annotation is MethodInvocation for p in parameters):
            problems.append(
                f"interceptor {name} is @{declaration.kind} and takes a MethodInvocation, which "
                f"only @around interceptors receive; make it @around (and call "
                f"invocation.proceed()), or remove that parameter"
            )
        return cls(name, target, declaration, parameters, pointcut, order, invocation)

    def describe_pointcut(self) -> str:
        """The pointcut as written: classes and markers by name."""
        parts = self.pointcut if isinstance(self.pointcut, tuple) else (self.pointcut,)
        return " | ".join(getattr(p, "__qualname__", repr(p)) for p in parts)

    def matches(self, info: EndpointInfo) -> bool:
        return pointcut_matches(self.pointcut, info)

    def compile_for(
        self, info: EndpointInfo, binder: ArgumentBinder, problems: list[str]
    ) -> CompiledInterceptor:
        def special(parameter: Parameter) -> Resolver | None:
            annotation = parameter.annotation
            if annotation is MethodInvocation:
                return _invocation
            if annotation is EndpointInfo:
                value = info
                return lambda message: value
            if is_marker_class(annotation):
                found = info.marker(annotation)
                return lambda message: found
            return None

        # The payload, if taken, is the first parameter besides the MethodInvocation.
        bound = [p for p in self.parameters if p.name != self.invocation]
        resolvers, _, found_problems = binder.bind(
            bound, handler=f"interceptor {self.name}", payload="optional", special=special
        )
        if self.invocation is not None:
            at = next(i for i, p in enumerate(self.parameters) if p.name == self.invocation)
            resolvers.insert(at, _invocation)
        problems.extend(found_problems)
        function = self.function
        note = f"ecopy: raised by interceptor {self.name} (on endpoint {info.endpoint_id!r})"
        if self.declaration.kind == "around":
            everything = tuple(resolvers)

            def call_around(invocation: MethodInvocation) -> Any:
                message = invocation.message
                try:
                    return function(
                        *[invocation if r is _invocation else r(message) for r in everything]
                    )
                except Exception as error:
                    if error is not invocation.failure:  # not the handler's, passing through
                        name_interceptor(error, note)
                    raise

            call: Callable[[Any], Any] = call_around
        else:
            compiled = compile_call(function, resolvers)

            def call(message: Message) -> Any:
                try:
                    return compiled(message)
                except Exception as error:
                    name_interceptor(error, note)
                    raise

        return CompiledInterceptor(
            kind=self.declaration.kind,
            precedence=self.declaration.precedence,
            order=self.order,
            name=self.name,
            call=call,
            change_headers=self.declaration.change_headers,
        )
