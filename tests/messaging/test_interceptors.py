"""Interceptors (DESIGN §3.5): order, precedence, pointcuts, bus interceptors, changing the
payload, headers and result, and exactly one run per call."""

from dataclasses import dataclass
from typing import Annotated

import pytest

from ecopy import (
    CommandBus,
    ConfigurationError,
    EndpointInfo,
    EventBus,
    Header,
    Headers,
    MethodInvocation,
    after,
    around,
    before,
    command_handler,
    event_handler,
    marker,
    presend,
    query_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class PlaceOrder:
    order_id: str
    quantity: int = 1


@dataclass
class OrderPlaced:
    order_id: str


@dataclass
class GetOrder:
    order_id: str


@marker
class Audited:
    def __init__(self, level: str = "info") -> None:
        self.level = level


class Journal:
    """What happened, in order; shared by handlers and interceptors of one test."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def __call__(self, entry: str) -> None:
        self.entries.append(entry)


class Orders:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @command_handler
    def place(self, command: PlaceOrder) -> str:
        self.journal(f"handler {command.order_id} x{command.quantity}")
        return f"placed {command.order_id}"


def test_order_presend_before_around_handler_around_after():
    class Everything:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @after
        def finish(self) -> None:
            self.journal("after")

        @around
        def wrap(self, invocation: MethodInvocation) -> object:
            self.journal("around begin")
            result = invocation.proceed()
            self.journal("around end")
            return result

        @before
        def prepare(self) -> None:
            self.journal("before")

        @presend
        def stamp(self) -> None:
            self.journal("presend")

    journal = Journal()
    flow = bootstrap_flow_testing(
        classes=[Orders, Everything], services=[Orders(journal), Everything(journal)]
    )

    result = flow.command_bus.send(PlaceOrder("o-1"))

    assert result == "placed o-1"
    assert journal.entries == [
        "presend",
        "before",
        "around begin",
        "handler o-1 x1",
        "around end",
        "after",
    ]


def test_lower_precedence_runs_outer_and_earlier():
    class Layers:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @before(precedence=10)
        def late(self) -> None:
            self.journal("before 10")

        @before(precedence=-5)
        def early(self) -> None:
            self.journal("before -5")

        @around(precedence=10)
        def inner(self, invocation: MethodInvocation) -> object:
            self.journal("inner begin")
            result = invocation.proceed()
            self.journal("inner end")
            return result

        @around(precedence=1)
        def outer(self, invocation: MethodInvocation) -> object:
            self.journal("outer begin")
            result = invocation.proceed()
            self.journal("outer end")
            return result

    journal = Journal()
    flow = bootstrap_flow_testing(
        classes=[Orders, Layers], services=[Orders(journal), Layers(journal)]
    )

    flow.send_command(PlaceOrder("o-1"))

    assert journal.entries == [
        "before -5",
        "before 10",
        "outer begin",
        "inner begin",
        "handler o-1 x1",
        "inner end",
        "outer end",
    ]


def test_pointcut_by_handler_class_selects_only_that_classs_handlers():
    class Other:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @command_handler("other")
        def other(self) -> None:
            self.journal("other handler")

    class OnlyOrders:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @before(pointcut=Orders)
        def check(self, command: PlaceOrder) -> None:
            self.journal(f"check {command.order_id}")

    journal = Journal()
    flow = bootstrap_flow_testing(
        classes=[Orders, Other, OnlyOrders],
        services=[Orders(journal), Other(journal), OnlyOrders(journal)],
    )

    flow.send_command(PlaceOrder("o-1")).send_command_with_routing("other")

    assert journal.entries == ["check o-1", "handler o-1 x1", "other handler"]


def test_pointcut_by_marker_on_a_method_and_the_interceptor_receives_the_marker():
    class Payments:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @Audited(level="high")
        @command_handler("pay")
        def pay(self) -> None:
            self.journal("pay")

        @command_handler("refund")
        def refund(self) -> None:
            self.journal("refund")

    class Audit:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @before(pointcut=Audited)
        def audit(self, audited: Audited, endpoint: EndpointInfo) -> None:
            self.journal(f"audit {audited.level} {endpoint.function.__name__}")

    journal = Journal()
    flow = bootstrap_flow_testing(
        classes=[Payments, Audit], services=[Payments(journal), Audit(journal)]
    )

    flow.send_command_with_routing("pay").send_command_with_routing("refund")

    assert journal.entries == ["audit high pay", "pay", "refund"]


def test_marker_on_a_class_selects_all_its_handlers_and_a_marker_parameter_is_the_pointcut():
    @Audited()
    class Payments:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @command_handler("pay")
        def pay(self) -> None:
            self.journal("pay")

        @command_handler("refund")
        def refund(self) -> None:
            self.journal("refund")

    class Audit:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @before  # no pointcut: taking the marker selects the marked handlers
        def audit(self, audited: Audited) -> None:
            self.journal(f"audit {audited.level}")

    journal = Journal()
    flow = bootstrap_flow_testing(
        classes=[Orders, Payments, Audit],
        services=[Orders(journal), Payments(journal), Audit(journal)],
    )

    flow.send_command_with_routing("pay").send_command(PlaceOrder("o-1"))
    flow.send_command_with_routing("refund")

    assert journal.entries == ["audit info", "pay", "handler o-1 x1", "audit info", "refund"]


def test_pointcut_by_predicate():
    class Queries:
        @query_handler
        def get(self, query: GetOrder) -> str:
            return f"order {query.order_id}"

    class CommandsOnly:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @before(pointcut=lambda endpoint: endpoint.kind == "command")
        def check(self, endpoint: EndpointInfo) -> None:
            self.journal(f"check {endpoint.kind}")

    journal = Journal()
    flow = bootstrap_flow_testing(
        classes=[Orders, Queries, CommandsOnly], services=[Orders(journal), CommandsOnly(journal)]
    )

    assert flow.send_query(GetOrder("o-1")) == "order o-1"
    flow.send_command(PlaceOrder("o-1"))

    assert journal.entries == ["check command", "handler o-1 x1"]


def test_bus_interceptor_wraps_the_endpoint_interceptors():
    class Wrapping:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @around(pointcut=CommandBus)
        def bus(self, invocation: MethodInvocation) -> object:
            self.journal("bus begin")
            result = invocation.proceed()
            self.journal("bus end")
            return result

        @around(pointcut=Orders, precedence=-100)
        def endpoint(self, invocation: MethodInvocation) -> object:
            self.journal("endpoint begin")
            result = invocation.proceed()
            self.journal("endpoint end")
            return result

    journal = Journal()
    flow = bootstrap_flow_testing(
        classes=[Orders, Wrapping], services=[Orders(journal), Wrapping(journal)]
    )

    assert flow.command_bus.send(PlaceOrder("o-1")) == "placed o-1"
    assert journal.entries == [
        "bus begin",
        "endpoint begin",
        "handler o-1 x1",
        "endpoint end",
        "bus end",
    ]


class Counting:
    def __init__(self) -> None:
        self.endpoint_calls = 0
        self.bus_calls = 0

    @around
    def per_endpoint(self, invocation: MethodInvocation) -> object:
        self.endpoint_calls += 1
        return invocation.proceed()

    @before(pointcut=EventBus)
    def per_publish(self) -> None:
        self.bus_calls += 1


def test_each_interceptor_runs_once_per_call():
    counting = Counting()
    flow = bootstrap_flow_testing(
        classes=[Orders, Counting], services=[Orders(Journal()), counting]
    )

    flow.send_command(PlaceOrder("o-1"))

    assert counting.endpoint_calls == 1
    assert counting.bus_calls == 0


def test_for_an_event_with_two_handlers_endpoint_interceptors_run_per_handler_bus_ones_once():
    class Listeners:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @event_handler
        def first(self, event: OrderPlaced) -> None:
            self.journal("first")

        @event_handler
        def second(self, event: OrderPlaced) -> None:
            self.journal("second")

    journal, counting = Journal(), Counting()
    flow = bootstrap_flow_testing(
        classes=[Listeners, Counting], services=[Listeners(journal), counting]
    )

    flow.publish_event(OrderPlaced("o-1"))

    assert journal.entries == ["first", "second"]
    assert counting.endpoint_calls == 2
    assert counting.bus_calls == 1


def test_a_predicate_that_selects_everything_still_runs_once_per_handler_call():
    calls = []

    class Timing:
        @around(pointcut=lambda endpoint: True)
        def measure(self, invocation: MethodInvocation) -> object:
            calls.append(invocation.endpoint.endpoint_id)
            return invocation.proceed()

    flow = bootstrap_flow_testing(classes=[Orders, Timing], services=[Orders(Journal())])

    flow.send_command(PlaceOrder("o-1"))

    assert calls == ["Orders.place"]


def test_before_returning_a_value_replaces_the_payload():
    class DoubleQuantity:
        @before(pointcut=Orders)
        def double(self, command: PlaceOrder) -> PlaceOrder:
            return PlaceOrder(command.order_id, command.quantity * 2)

    journal = Journal()
    flow = bootstrap_flow_testing(classes=[Orders, DoubleQuantity], services=[Orders(journal)])

    flow.send_command(PlaceOrder("o-1", quantity=3))

    assert journal.entries == ["handler o-1 x6"]


def test_before_with_change_headers_merges_the_returned_headers():
    received = []

    class Tenancy:
        @before(pointcut=lambda endpoint: endpoint.kind == "command", change_headers=True)
        def add_tenant(self, headers: Annotated[dict, Headers]) -> dict:
            return {"tenant": "acme", "seen_user": headers["user"]}

        @command_handler("whoami")
        def whoami(
            self,
            tenant: Annotated[str, Header("tenant")],
            seen: Annotated[str, Header("seen_user")],
            user: Annotated[str, Header("user")],
        ) -> None:
            received.append((tenant, seen, user))

    flow = bootstrap_flow_testing(classes=[Tenancy])

    flow.send_command_with_routing("whoami", headers={"user": "u-1"})

    assert received == [("acme", "u-1", "u-1")]


def test_around_may_short_circuit_the_handler():
    class Blocked:
        @around(pointcut=Orders)
        def block(self, command: PlaceOrder, invocation: MethodInvocation) -> object:
            if command.order_id == "blocked":
                return "refused"
            return invocation.proceed()

    journal = Journal()
    flow = bootstrap_flow_testing(classes=[Orders, Blocked], services=[Orders(journal)])

    assert flow.command_bus.send(PlaceOrder("blocked")) == "refused"
    assert flow.command_bus.send(PlaceOrder("o-1")) == "placed o-1"
    assert journal.entries == ["handler o-1 x1"]


def test_around_may_change_the_result():
    class Shouting:
        @around(pointcut=Orders)
        def shout(self, invocation: MethodInvocation) -> object:
            return str(invocation.proceed()).upper()

    flow = bootstrap_flow_testing(classes=[Orders, Shouting], services=[Orders(Journal())])

    assert flow.command_bus.send(PlaceOrder("o-1")) == "PLACED O-1"


def test_interceptors_receive_headers_payload_and_services():
    seen = []

    class Inspecting:
        @after(pointcut=Orders)
        def inspect(
            self,
            command: PlaceOrder,
            headers: Annotated[dict, Headers],
            journal: Journal,
        ) -> None:
            seen.append((command.order_id, headers["tenant"], journal.entries[-1]))

    journal = Journal()
    flow = bootstrap_flow_testing(classes=[Orders, Inspecting], services=[Orders(journal), journal])

    flow.send_command(PlaceOrder("o-1"), headers={"tenant": "acme"})

    assert seen == [("o-1", "acme", "handler o-1 x1")]


def test_after_does_not_run_when_the_handler_fails_and_the_error_passes_through_around():
    class Failing:
        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        @command_handler("fail")
        def fail(self) -> None:
            self.journal("handler")
            raise LookupError("gone")

        @around
        def wrap(self, invocation: MethodInvocation) -> object:
            try:
                return invocation.proceed()
            except LookupError:
                self.journal("around saw the error")
                raise

        @after
        def finish(self) -> None:
            self.journal("after")

    journal = Journal()
    flow = bootstrap_flow_testing(classes=[Failing], services=[Failing(journal)])

    with pytest.raises(LookupError, match="gone"):
        flow.send_command_with_routing("fail")

    assert journal.entries == ["handler", "around saw the error"]


def test_a_before_interceptor_that_raises_stops_the_call():
    class Guard:
        @before(pointcut=Orders)
        def refuse(self, command: PlaceOrder) -> None:
            if command.quantity > 10:
                raise PermissionError("too many")

    journal = Journal()
    flow = bootstrap_flow_testing(classes=[Orders, Guard], services=[Orders(journal)])

    with pytest.raises(PermissionError, match="too many"):
        flow.send_command(PlaceOrder("o-1", quantity=11))
    flow.send_command(PlaceOrder("o-2", quantity=2))

    assert journal.entries == ["handler o-2 x2"]


def test_proceed_may_be_called_again_to_retry():
    attempts = []

    class Flaky:
        @command_handler("flaky")
        def flaky(self) -> str:
            attempts.append(len(attempts) + 1)
            if len(attempts) < 3:
                raise TimeoutError("try again")
            return "done"

        @around(pointcut=lambda endpoint: endpoint.function.__name__ == "flaky")
        def retry(self, invocation: MethodInvocation) -> object:
            for _ in range(2):
                try:
                    return invocation.proceed()
                except TimeoutError:
                    pass
            return invocation.proceed()

    flow = bootstrap_flow_testing(classes=[Flaky])

    assert flow.command_bus.send_with_routing("flaky") == "done"
    assert attempts == [1, 2, 3]


# -- the MethodInvocation of @around (DESIGN §3.5) -------------------------------------------


def test_an_around_whose_first_parameter_has_no_annotation_receives_the_invocation():
    journal = Journal()

    class Timing:
        @around(pointcut=Orders)
        def measure(self, invocation, command: PlaceOrder):
            journal(f"around {type(invocation).__name__} for {command.order_id}")
            return invocation.proceed()

    flow = bootstrap_flow_testing(classes=[Orders, Timing], services=[Orders(journal)])

    assert flow.command_bus.send(PlaceOrder("o-1")) == "placed o-1"
    assert journal.entries == ["around MethodInvocation for o-1", "handler o-1 x1"]


def test_an_around_without_the_invocation_is_a_configuration_error():
    class Swallowing:
        @around(pointcut=Orders)
        def log(self, command: PlaceOrder) -> None:
            pass

    with pytest.raises(ConfigurationError) as refused:
        bootstrap_flow_testing(classes=[Orders, Swallowing], services=[Orders(Journal())])

    assert (
        "interceptor test_an_around_without_the_invocation_is_a_configuration_error.<locals>."
        "Swallowing.log: an @around interceptor must take the MethodInvocation and call "
        "invocation.proceed() to run the handler; add a parameter `invocation: "
        "MethodInvocation` (or leave the first parameter unannotated), or make it a @before "
        "interceptor if it never wraps the handler"
    ) in str(refused.value)


class Checks:
    @before(pointcut=Orders)
    def quantity(self, command: PlaceOrder) -> None:
        if command.quantity > 10:
            raise PermissionError("too many")

    @around(pointcut=Orders)
    def stock(self, invocation: MethodInvocation, command: PlaceOrder) -> object:
        if command.order_id == "out-of-stock":
            raise LookupError("no stock")
        return invocation.proceed()


class Failing(Orders):
    @command_handler("fail")
    def fail(self) -> None:
        raise ValueError("handler broke")


@pytest.mark.parametrize(
    ("send", "error", "named"),
    [
        (lambda bus: bus.send(PlaceOrder("o-1", quantity=11)), PermissionError, "Checks.quantity"),
        (lambda bus: bus.send(PlaceOrder("out-of-stock")), LookupError, "Checks.stock"),
    ],
    ids=["before", "around"],
)
def test_an_error_raised_by_an_interceptor_names_the_interceptor(send, error, named):
    flow = bootstrap_flow_testing(classes=[Orders, Checks], services=[Orders(Journal())])

    with pytest.raises(error) as raised:
        send(flow.command_bus)

    (note,) = raised.value.__notes__
    assert note == f"ecopy: raised by interceptor {named} (on endpoint 'Orders.place')"


def test_an_error_of_the_handler_passing_through_an_around_names_the_handler():
    class Wrapping:
        @around(pointcut=Failing)
        def wrap(self, invocation: MethodInvocation) -> object:
            return invocation.proceed()

    flow = bootstrap_flow_testing(classes=[Failing, Wrapping], services=[Failing(Journal())])

    with pytest.raises(ValueError, match="handler broke") as raised:
        flow.command_bus.send_with_routing("fail")

    (note,) = raised.value.__notes__
    assert note.startswith(f"ecopy: raised by handler {__name__}.Failing.fail")
