"""Event routing (DESIGN §3.2): by class including base classes, by name and glob pattern,
every subscriber in priority order, and no subscriber at all is fine."""

from dataclasses import dataclass

import pytest

from ecopy import event_handler, named_event, priority
from ecopy.testing import bootstrap_flow_testing


@dataclass
class DomainEvent:
    order_id: str


@named_event("order.placed")
@dataclass
class OrderPlaced(DomainEvent):
    pass


@named_event("order.cancelled")
@dataclass
class OrderCancelled(DomainEvent):
    pass


@named_event("payment.received")
@dataclass
class PaymentReceived(DomainEvent):
    pass


class Listeners:
    def __init__(self) -> None:
        self.log: list[str] = []

    @event_handler
    def on_placed(self, event: OrderPlaced) -> None:
        self.log.append(f"placed {event.order_id}")

    @event_handler
    def on_any_domain_event(self, event: DomainEvent) -> None:
        self.log.append(f"domain event {type(event).__name__}")

    @event_handler(listen_to="order.cancelled")
    def on_cancelled_by_name(self, event: DomainEvent) -> None:
        self.log.append(f"cancelled by name {type(event).__name__} {event.order_id}")

    @event_handler(listen_to="order.*")
    def on_any_order_event(self) -> None:
        self.log.append("order.*")


@pytest.fixture
def listeners():
    return Listeners()


@pytest.fixture
def flow(listeners):
    return bootstrap_flow_testing(classes=[Listeners], services=[listeners])


def test_an_event_reaches_handlers_of_its_class_its_base_classes_and_matching_names(
    flow, listeners
):
    flow.publish_event(OrderPlaced("o-1"))

    assert listeners.log == ["placed o-1", "domain event OrderPlaced", "order.*"]


def test_publishing_a_named_class_reaches_handlers_listening_to_its_name(flow, listeners):
    flow.publish_event(OrderCancelled("o-1"))

    assert listeners.log == [
        "domain event OrderCancelled",
        "cancelled by name OrderCancelled o-1",
        "order.*",
    ]


def test_a_glob_pattern_does_not_match_other_names(flow, listeners):
    flow.publish_event(PaymentReceived("p-1"))

    assert listeners.log == ["domain event PaymentReceived"]


def test_publish_with_routing_reaches_listeners_by_exact_name_and_pattern(flow, listeners):
    flow.publish_event_with_routing("order.cancelled", {"order_id": "o-1"})

    assert listeners.log == ["cancelled by name DomainEvent o-1", "order.*"]


def test_publish_with_routing_reaches_class_routed_handlers_of_the_named_class(flow, listeners):
    flow.publish_event_with_routing("order.placed", {"order_id": "o-1"})

    assert "placed o-1" in listeners.log
    assert "order.*" in listeners.log


def test_publish_with_routing_to_a_name_only_a_pattern_matches(flow, listeners):
    flow.publish_event_with_routing("order.shipped")

    assert listeners.log == ["order.*"]


def test_an_event_without_handlers_is_fine(flow, listeners):
    @dataclass
    class NobodyCares:
        pass

    flow.publish_event(NobodyCares()).publish_event_with_routing("nobody.cares")

    assert listeners.log == []
    assert flow.get_recorded_events() == [NobodyCares(), None]


def test_a_handler_annotated_with_a_union_receives_each_member():
    seen = []

    class Audit:
        @event_handler
        def on_order_change(self, event: OrderPlaced | OrderCancelled) -> None:
            seen.append(type(event).__name__)

    flow = bootstrap_flow_testing(classes=[Audit])
    flow.publish_event(OrderPlaced("o-1")).publish_event(OrderCancelled("o-1"))
    flow.publish_event(PaymentReceived("p-1"))

    assert seen == ["OrderPlaced", "OrderCancelled"]


def test_higher_priority_runs_first_and_equal_priority_keeps_registration_order():
    calls = []

    class First:
        @event_handler
        def normal_a(self, event: OrderPlaced) -> None:
            calls.append("normal a")

        @priority(10)
        @event_handler
        def urgent(self, event: OrderPlaced) -> None:
            calls.append("urgent")

    class Second:
        @event_handler
        def normal_b(self, event: OrderPlaced) -> None:
            calls.append("normal b")

        @event_handler(listen_to="order.placed")
        @priority(-1)
        def late(self) -> None:
            calls.append("late")

        @event_handler
        @priority(10)
        def urgent_too(self, event: DomainEvent) -> None:
            calls.append("urgent too")

    flow = bootstrap_flow_testing(classes=[First, Second])
    flow.publish_event(OrderPlaced("o-1"))

    assert calls == ["urgent", "urgent too", "normal a", "normal b", "late"]


def test_each_subscriber_gets_the_event_once_even_if_it_matches_several_ways():
    calls = []

    class Both:
        @event_handler
        def on_placed(self, event: OrderPlaced | DomainEvent) -> None:
            calls.append(event)

    flow = bootstrap_flow_testing(classes=[Both])
    flow.publish_event(OrderPlaced("o-1"))

    assert calls == [OrderPlaced("o-1")]


@dataclass
class PlacedView:
    order_id: str


def test_a_name_listener_receives_the_published_object_in_its_own_type():
    seen = []

    class OtherContext:
        @event_handler(listen_to="order.placed")
        def as_dict(self, event: dict) -> None:
            seen.append(event)

        @event_handler(listen_to="order.placed", endpoint_id="as_view")
        def as_view(self, event: PlacedView) -> None:
            seen.append(event)

    flow = bootstrap_flow_testing(classes=[OtherContext])
    flow.publish_event(OrderPlaced("o-1"))

    assert seen == [{"order_id": "o-1"}, PlacedView("o-1")]
