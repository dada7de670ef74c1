"""Services: handler instances and their dependencies, given or built by bootstrap."""

from typing import Annotated

import ecopy
from ecopy import CommandBus, Reference, command_handler, query_handler


class Clock:
    def __init__(self, now: str = "12:00") -> None:
        self.now = now


class FrozenClock(Clock):
    pass


class Greeter:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.greeted: list[str] = []

    @command_handler("greet")
    def greet(self, name: str) -> str:
        self.greeted.append(name)
        return f"hello {name} at {self.clock.now}"


def test_handlers_run_on_the_given_instance():
    greeter = Greeter(Clock("09:00"))
    app = ecopy.bootstrap(classes=[Greeter], services=[greeter])

    assert app.command_bus.send_with_routing("greet", "Ada") == "hello Ada at 09:00"
    assert greeter.greeted == ["Ada"]


def test_without_an_instance_bootstrap_builds_one_with_its_constructor_services():
    app = ecopy.bootstrap(classes=[Greeter], services=[Clock("10:00")])

    assert app.command_bus.send_with_routing("greet", "Ada") == "hello Ada at 10:00"


def test_a_service_is_found_by_a_base_class():
    app = ecopy.bootstrap(classes=[Greeter], services=[FrozenClock("00:00")])

    assert app.command_bus.send_with_routing("greet", "Ada") == "hello Ada at 00:00"


def test_services_by_name_from_a_mapping_and_by_class_name():
    class Times:
        @query_handler("times")
        def times(
            self,
            morning: Annotated[Clock, Reference("morning")],
            evening: Annotated[Clock, Reference("evening")],
            by_class_name: Annotated[Greeter, Reference("greeter")],
        ) -> tuple[str, str, str]:
            return morning.now, evening.now, by_class_name.clock.now

    morning, evening = Clock("08:00"), Clock("20:00")
    app = ecopy.bootstrap(
        classes=[Times],
        services={"morning": morning, "evening": evening, "the_greeter": Greeter(morning)},
    )

    assert app.query_bus.send_with_routing("times") == ("08:00", "20:00", "08:00")


def test_the_applications_own_buses_are_injected():
    class Introspect:
        @query_handler("buses")
        def buses(self, payload: object, commands: CommandBus) -> CommandBus:
            return commands

    app = ecopy.bootstrap(classes=[Introspect])

    assert app.query_bus.send_with_routing("buses") is app.command_bus
