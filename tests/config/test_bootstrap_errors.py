"""Bootstrap validates the whole configuration and reports every problem in one
``ConfigurationError`` (DESIGN §1.3)."""

from dataclasses import dataclass
from typing import Annotated

import pytest

import ecopy
from ecopy import (
    ConfigurationError,
    EcopyError,
    Reference,
    ServiceConfiguration,
    command_handler,
    event_handler,
    internal_handler,
    named_event,
    query_handler,
)


@dataclass
class PlaceOrder:
    order_id: str


@dataclass
class GetOrder:
    order_id: str


class Repository:
    pass


class OrdersA:
    @command_handler
    def place(self, command: PlaceOrder) -> None: ...

    @query_handler
    def get(self, query: GetOrder) -> None: ...


class OrdersB:
    @command_handler
    def place(self, command: PlaceOrder) -> None: ...

    @query_handler
    def get(self, query: GetOrder) -> None: ...


class Broken:
    @command_handler("needs.repository")
    def needs_repository(self, payload: dict, repository: Repository) -> None: ...

    @command_handler("forward", output_channel="nowhere")
    def forward(self) -> str:
        return "lost"


class Unannotated:
    @event_handler
    def unannotated(self, event) -> None: ...


def problems_of(**options) -> tuple[str, ...]:
    with pytest.raises(ConfigurationError) as raised:
        ecopy.bootstrap(**options)
    return raised.value.problems


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigurationError) as raised:
        ecopy.bootstrap(classes=[OrdersA, OrdersB, Broken])

    error = raised.value
    assert isinstance(error, EcopyError)
    assert len(error.problems) == 4
    text = str(error)
    assert "4 problems" in text
    assert "PlaceOrder has two handlers" in text
    assert "GetOrder has two handlers" in text
    assert "OrdersA.place" in text and "OrdersB.place" in text
    assert "'repository'" in text and "Repository" in text and "Broken.needs_repository" in text
    assert "'nowhere'" in text and "Broken.forward" in text
    for problem in error.problems:
        assert problem in text


def test_an_unannotated_class_routed_handler_is_reported_with_the_others():
    problems = problems_of(classes=[OrdersA, OrdersB, Broken, Unannotated])

    assert len(problems) == 5
    [unannotated] = [p for p in problems if "Unannotated.unannotated" in p]
    assert "not annotated" in unannotated


def test_two_handlers_for_one_routing_key():
    class Twice:
        @command_handler("order.place")
        def one(self) -> None: ...

        @command_handler("order.place")
        def two(self) -> None: ...

    [problem] = problems_of(classes=[Twice])

    assert "order.place" in problem
    assert "Twice.one" in problem and "Twice.two" in problem


def test_a_routing_key_and_the_name_of_a_class_routed_command_are_one_key():
    @named_event("order.place")
    @dataclass
    class PlaceNamedOrder:
        order_id: str

    class Ambiguous:
        @command_handler("order.place")
        def by_key(self, payload: dict) -> None: ...

        @command_handler
        def by_class(self, command: PlaceNamedOrder) -> None: ...

    [problem] = problems_of(classes=[Ambiguous])

    assert "order.place" in problem
    assert "Ambiguous.by_key" in problem and "Ambiguous.by_class" in problem


def test_two_event_handlers_for_one_event_are_fine():
    class Listeners:
        @event_handler
        def one(self, event: PlaceOrder) -> None: ...

        @event_handler
        def two(self, event: PlaceOrder) -> None: ...

    app = ecopy.bootstrap(classes=[Listeners])

    assert len(app.endpoints()) == 2


def test_an_unknown_service_reference():
    class Mailing:
        @command_handler("mail")
        def mail(self, mailer: Annotated[object, Reference("mailer")]) -> None: ...

    [problem] = problems_of(classes=[Mailing])

    assert "'mailer'" in problem
    assert "Mailing.mail" in problem


def test_an_unannotated_extra_parameter():
    class Orders:
        @command_handler("place")
        def place(self, payload: dict, mystery) -> None: ...

    [problem] = problems_of(classes=[Orders])

    assert "'mystery'" in problem
    assert "no annotation" in problem


def test_two_classes_with_one_message_name():
    @named_event("order.placed")
    class First:
        pass

    @named_event("order.placed")
    class Second:
        pass

    class Listeners:
        @event_handler
        def first(self, event: First) -> None: ...

        @event_handler
        def second(self, event: Second) -> None: ...

    [problem] = problems_of(classes=[Listeners])

    assert "'order.placed'" in problem
    assert "First" in problem and "Second" in problem


def test_two_internal_handlers_on_one_channel():
    class Pipeline:
        @internal_handler("pricing")
        def one(self) -> None: ...

        @internal_handler("pricing")
        def two(self) -> None: ...

    [problem] = problems_of(classes=[Pipeline])

    assert "'pricing'" in problem


def test_an_unknown_extension_object():
    [problem] = problems_of(config=ServiceConfiguration(extensions=[object()]))

    assert "unknown extension" in problem


def test_a_handler_class_that_cannot_be_instantiated():
    class NeedsArguments:
        def __init__(self, url: str) -> None:
            self.url = url

        @command_handler("x")
        def handle(self) -> None: ...

    [problem] = problems_of(classes=[NeedsArguments])

    assert "NeedsArguments" in problem
    assert "'url'" in problem


def test_something_in_classes_that_is_not_a_handler():
    [problem] = problems_of(classes=[lambda: None])

    assert problem == (
        f"classes= holds the function {__name__}.test_something_in_classes_that_is_not_a_"
        f"handler.<locals>.<lambda>, which carries no ecopy decorator; decorate it (e.g. "
        f"@event_handler) or leave it out"
    )
