"""Decorators stack in any order, with ``classmethod``/``staticmethod`` above or below, and
module-level functions are handlers too (DESIGN §3.2)."""

from dataclasses import dataclass
from typing import Annotated

from ecopy import (
    Headers,
    MethodInvocation,
    after,
    around,
    before,
    command_handler,
    event_handler,
    priority,
    query_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class Ping:
    text: str


@dataclass
class Pinged:
    text: str


LOG: list[str] = []


class Stacked:
    @command_handler
    @staticmethod
    def handler_over_static(command: Ping) -> str:
        return f"static {command.text}"

    @staticmethod
    @command_handler("static.below")
    def static_over_handler() -> str:
        return "static below"

    @command_handler("class.above")
    @classmethod
    def handler_over_class(cls) -> str:
        return f"class {cls.__name__}"

    @classmethod
    @command_handler("class.below")
    def class_over_handler(cls, payload: dict) -> str:
        return f"class {cls.__name__} {payload['n']}"

    @event_handler
    @priority(5)
    @staticmethod
    def priority_between(event: Pinged) -> None:
        LOG.append("priority 5")

    @staticmethod
    @priority(1)
    @event_handler
    def priority_between_too(event: Pinged) -> None:
        LOG.append("priority 1")

    @priority(9)
    @classmethod
    @event_handler
    def priority_on_top(cls, event: Pinged) -> None:
        LOG.append("priority 9")


def test_handler_decorators_over_and_under_staticmethod_and_classmethod():
    flow = bootstrap_flow_testing(classes=[Stacked])

    assert flow.command_bus.send(Ping("hi")) == "static hi"
    assert flow.command_bus.send_with_routing("static.below") == "static below"
    assert flow.command_bus.send_with_routing("class.above") == "class Stacked"
    assert flow.command_bus.send_with_routing("class.below", {"n": 2}) == "class Stacked 2"


def test_priority_stacks_anywhere_between_the_decorators():
    LOG.clear()
    flow = bootstrap_flow_testing(classes=[Stacked])

    flow.publish_event(Pinged("hi"))

    assert LOG == ["priority 9", "priority 5", "priority 1"]


@command_handler("module.greet")
def greet(payload: dict) -> str:
    return f"hello {payload['name']}"


@query_handler
def echo(query: Ping) -> str:
    return query.text


def test_module_level_functions_given_in_classes_are_handlers():
    flow = bootstrap_flow_testing(classes=[greet, echo])

    assert flow.command_bus.send_with_routing("module.greet", {"name": "Ada"}) == "hello Ada"
    assert flow.send_query(Ping("pong")) == "pong"


def test_a_decorated_function_is_still_callable_as_written():
    assert greet({"name": "Ada"}) == "hello Ada"
    assert Stacked.handler_over_static(Ping("x")) == "static x"
    assert Stacked.handler_over_class() == "class Stacked"


def test_one_method_may_handle_several_routes():
    calls = []

    class Both:
        @command_handler("a")
        @command_handler("b", endpoint_id="both.b")
        def handle(self) -> None:
            calls.append("called")

    flow = bootstrap_flow_testing(classes=[Both])
    flow.send_command_with_routing("a").send_command_with_routing("b")

    assert calls == ["called", "called"]


INTERCEPTED: list[str] = []


@before(pointcut=lambda endpoint: endpoint.kind == "command")
def module_level_before(headers: Annotated[dict, Headers]) -> None:
    INTERCEPTED.append(f"module before {headers['tenant']}")


class InterceptorBindings:
    @around
    @staticmethod
    def static_around(invocation: MethodInvocation) -> object:
        INTERCEPTED.append("static around")
        return invocation.proceed()

    @classmethod
    @after
    def class_after(cls) -> None:
        INTERCEPTED.append(f"class after {cls.__name__}")

    @command_handler("intercepted")
    def handle(self) -> None:
        INTERCEPTED.append("handler")


def test_interceptors_may_be_module_functions_staticmethods_or_classmethods():
    INTERCEPTED.clear()
    flow = bootstrap_flow_testing(classes=[module_level_before, InterceptorBindings])

    flow.send_command_with_routing("intercepted", headers={"tenant": "acme"})

    assert INTERCEPTED == [
        "module before acme",
        "static around",
        "handler",
        "class after InterceptorBindings",
    ]
