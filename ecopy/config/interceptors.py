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
    pointcut_matches,
)
from ecopy.messaging.message import Message


def _invocation(message: Message) -> Any:  # placeholder resolver, replaced per call
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class InterceptorSource:
    name: str
    function: Callable[..., Any]
    declaration: InterceptorDeclaration
    parameters: tuple[Parameter, ...]
    pointcut: Any
    order: int

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
        if declaration.kind != "around" and any(
            p.annotation is MethodInvocation for p in parameters
        ):
            problems.append(
                f"interceptor {name}: only @around interceptors receive a MethodInvocation"
            )
        return cls(name, target, declaration, parameters, pointcut, order)

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

        resolvers, _, found_problems = binder.bind(
            self.parameters, handler=f"interceptor {self.name}", payload="optional", special=special
        )
        problems.extend(found_problems)
        function = self.function
        if self.declaration.kind == "around":
            everything = tuple(resolvers)

            def call_around(invocation: MethodInvocation) -> Any:
                message = invocation.message
                return function(
                    *[invocation if r is _invocation else r(message) for r in everything]
                )

            call: Callable[[Any], Any] = call_around
        else:
            call = compile_call(function, resolvers)
        return CompiledInterceptor(
            kind=self.declaration.kind,
            precedence=self.declaration.precedence,
            order=self.order,
            name=self.name,
            call=call,
            change_headers=self.declaration.change_headers,
        )
