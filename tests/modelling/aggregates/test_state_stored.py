"""State-stored aggregates (DESIGN §3.4): factories create, actions load-change-save, the bus
returns the new identifier or the action's value, recorded events are published after the
save with the aggregate headers, and a custom ``Repository`` service takes over its classes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from ecopy import (
    AggregateVersion,
    Identifier,
    InMemoryRepository,
    Loaded,
    QueryBus,
    Repository,
    WithEvents,
    aggregate,
    command_handler,
    event_handler,
    query_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class PlaceOrder:
    order_id: str
    item: str


@dataclass
class AddLine:
    order_id: str
    item: str


@dataclass
class ConfirmOrder:
    order_id: str


@dataclass
class GetStatus:
    order_id: str


@dataclass
class OrderPlaced:
    order_id: str


@dataclass
class LineAdded:
    order_id: str
    item: str


@dataclass
class OrderConfirmed:
    order_id: str


@aggregate
@dataclass
class Order(WithEvents):
    order_id: Annotated[str, Identifier]
    lines: list[str] = field(default_factory=list)
    status: str = "new"
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    @classmethod
    def place(cls, command: PlaceOrder) -> Order:
        order = cls(command.order_id, [command.item])
        order.record_that(OrderPlaced(command.order_id))
        return order

    @command_handler
    def add_line(self, command: AddLine) -> int:
        self.lines.append(command.item)
        self.record_that(LineAdded(self.order_id, command.item))
        return len(self.lines)

    @command_handler
    def confirm(self, command: ConfirmOrder) -> str:
        self.status = "confirmed"
        self.record_that(LineAdded(self.order_id, "gift wrap"))
        self.record_that(OrderConfirmed(self.order_id))
        return "confirmed"

    @query_handler
    def status_of(self, query: GetStatus) -> str:
        return f"{self.status} with {len(self.lines)} lines"


@pytest.fixture
def flow():
    return bootstrap_flow_testing(classes=[Order])


def test_a_factory_creates_the_aggregate_and_the_bus_returns_its_identifier(flow):
    assert flow.command_bus.send(PlaceOrder("o-1", "book")) == "o-1"

    order = flow.get_aggregate(Order, "o-1")
    assert (order.order_id, order.lines, order.status, order.version) == ("o-1", ["book"], "new", 1)


def test_an_action_loads_the_aggregate_changes_it_saves_it_and_returns_its_value(flow):
    flow.send_command(PlaceOrder("o-1", "book"))

    assert flow.command_bus.send(AddLine("o-1", "pen")) == 2
    assert flow.command_bus.send(AddLine("o-1", "ink")) == 3

    order = flow.get_aggregate(Order, "o-1")
    assert (order.lines, order.version) == (["book", "pen", "ink"], 3)


def test_aggregates_with_different_identifiers_are_independent(flow):
    flow.send_command(PlaceOrder("o-1", "book")).send_command(PlaceOrder("o-2", "lamp"))
    flow.send_command(AddLine("o-2", "bulb"))

    assert flow.get_aggregate(Order, "o-1").lines == ["book"]
    assert flow.get_aggregate(Order, "o-2").lines == ["lamp", "bulb"]


def test_a_query_handler_on_an_aggregate_reads_its_state_without_saving(flow):
    flow.send_command(PlaceOrder("o-1", "book"))

    assert flow.send_query(GetStatus("o-1")) == "new with 1 lines"
    assert flow.get_aggregate(Order, "o-1").version == 1
    assert flow.get_recorded_events() == [OrderPlaced("o-1")]


def test_recorded_events_are_published_in_order_with_the_aggregate_headers(flow):
    flow.send_command(PlaceOrder("o-1", "book")).send_command(ConfirmOrder("o-1"))

    assert flow.get_recorded_events() == [
        OrderPlaced("o-1"),
        LineAdded("o-1", "gift wrap"),
        OrderConfirmed("o-1"),
    ]
    headers = flow.get_recorded_event_headers()
    assert [h["aggregate.id"] for h in headers] == ["o-1"] * 3
    assert [h["aggregate.version"] for h in headers] == [1, 2, 2]
    assert {h["aggregate.type"] for h in headers} == {f"{Order.__module__}.Order"}


def test_events_from_an_aggregate_carry_the_commands_user_headers_and_correlation(flow):
    flow.send_command(
        PlaceOrder("o-1", "book"), headers={"tenant": "acme", "correlation_id": "corr-1"}
    )
    command = flow.get_recorded_command_headers()[0]

    (headers,) = flow.get_recorded_event_headers()

    assert headers["tenant"] == "acme"
    assert headers["correlation_id"] == "corr-1"
    assert headers["parent_id"] == command["id"]
    assert headers["id"] != command["id"]


def test_recorded_events_are_released_once_and_not_stored_with_the_aggregate(flow):
    flow.send_command(PlaceOrder("o-1", "book")).send_command(AddLine("o-1", "pen"))

    assert flow.get_recorded_events() == [OrderPlaced("o-1"), LineAdded("o-1", "pen")]
    assert flow.get_aggregate(Order, "o-1").release_recorded_events() == []


class StatusWatcher:
    """Asks the aggregate for its status when its events arrive: they come after the save."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @event_handler
    def on_placed(self, event: OrderPlaced, queries: QueryBus) -> None:
        self.seen.append(queries.send(GetStatus(event.order_id)))

    @event_handler
    def on_line(self, event: LineAdded, queries: QueryBus) -> None:
        self.seen.append(queries.send(GetStatus(event.order_id)))


def test_recorded_events_are_published_after_the_aggregate_is_saved():
    watcher = StatusWatcher()
    flow = bootstrap_flow_testing(classes=[Order, StatusWatcher], services=[watcher])

    flow.send_command(PlaceOrder("o-1", "book")).send_command(AddLine("o-1", "pen"))

    assert watcher.seen == ["new with 1 lines", "new with 2 lines"]


@dataclass
class BreakOrder:
    order_id: str


@aggregate
@dataclass
class FragileOrder(WithEvents):
    order_id: Annotated[str, Identifier]
    lines: list[str] = field(default_factory=list)

    @command_handler
    @staticmethod
    def open(command: PlaceOrder) -> FragileOrder:
        return FragileOrder(command.order_id, [command.item])

    @command_handler
    def break_it(self, command: BreakOrder) -> None:
        self.lines.append("half-done")
        self.record_that(LineAdded(self.order_id, "half-done"))
        raise RuntimeError("payment service down")


def test_a_staticmethod_factory_creates_the_aggregate():
    flow = bootstrap_flow_testing(classes=[FragileOrder])

    assert flow.command_bus.send(PlaceOrder("f-1", "cup")) == "f-1"
    assert flow.get_aggregate(FragileOrder, "f-1").lines == ["cup"]


def test_a_failing_action_changes_nothing_and_publishes_nothing():
    flow = bootstrap_flow_testing(classes=[FragileOrder])
    flow.send_command(PlaceOrder("f-1", "cup")).discard_recorded_messages()

    with pytest.raises(RuntimeError, match="payment service down"):
        flow.send_command(BreakOrder("f-1"))

    assert flow.get_aggregate(FragileOrder, "f-1").lines == ["cup"]
    assert flow.get_recorded_events() == []


@dataclass
class OpenDesk:
    desk_id: str


@dataclass
class Rename:
    desk_id: str
    name: str


@aggregate
class Desk:
    """A hand-written class without a version field, that records no events."""

    desk_id: Annotated[str, Identifier]

    def __init__(self, desk_id: str) -> None:
        self.desk_id = desk_id
        self.name = "unnamed"

    @command_handler
    @classmethod
    def open(cls, command: OpenDesk) -> Desk:
        return cls(command.desk_id)

    @command_handler
    def rename(self, command: Rename) -> None:
        self.name = command.name


def test_a_plain_class_without_version_field_or_events_works_as_an_aggregate():
    flow = bootstrap_flow_testing(classes=[Desk])

    assert flow.command_bus.send(OpenDesk("d-1")) == "d-1"
    assert flow.command_bus.send(Rename("d-1", "front")) is None

    assert flow.get_aggregate(Desk, "d-1").name == "front"
    assert flow.get_recorded_events() == []


# -- a custom repository registered as a service --------------------------------------------


class DeskRepository(Repository):
    """A user's repository for ``Desk`` only: it implements the ``Repository`` port."""

    def __init__(self) -> None:
        self.inner = InMemoryRepository()
        self.calls: list[str] = []

    def can_handle(self, aggregate_class: type[Any]) -> bool:
        return aggregate_class is Desk

    def find(self, aggregate_class: type[Any], identifier: Mapping[str, Any]) -> Loaded | None:
        self.calls.append(f"find {aggregate_class.__name__} {dict(identifier)}")
        return self.inner.find(aggregate_class, identifier)

    def save(
        self,
        aggregate_class: type[Any],
        identifier: Mapping[str, Any],
        aggregate: Any,
        expected_version: int,
    ) -> int:
        self.calls.append(f"save {aggregate_class.__name__} {dict(identifier)} {expected_version}")
        return self.inner.save(aggregate_class, identifier, aggregate, expected_version)


def test_a_repository_service_stores_the_aggregates_it_accepts_and_only_those():
    repository = DeskRepository()
    flow = bootstrap_flow_testing(classes=[Desk, Order], services=[repository])

    flow.send_command(OpenDesk("d-1")).send_command(Rename("d-1", "back"))
    flow.send_command(PlaceOrder("o-1", "book")).send_command(AddLine("o-1", "pen"))

    assert repository.calls == [
        "save Desk {'desk_id': 'd-1'} 0",
        "find Desk {'desk_id': 'd-1'}",
        "save Desk {'desk_id': 'd-1'} 1",
    ]
    stored = repository.inner.find(Desk, {"desk_id": "d-1"})
    assert stored is not None
    assert (stored.aggregate.name, stored.version) == ("back", 2)
    assert repository.inner.find(Order, {"order_id": "o-1"}) is None
    assert flow.get_aggregate(Order, "o-1").lines == ["book", "pen"]


# -- a pydantic model ---------------------------------------------------------------------------


@aggregate
class Subscription(BaseModel):
    subscription_id: Annotated[str, Identifier]
    plan: str
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    @classmethod
    def subscribe(cls, command: Subscribe) -> Subscription:
        return cls(subscription_id=command.subscription_id, plan=command.plan)

    @command_handler
    def change_plan(self, command: ChangePlan) -> str:
        previous, self.plan = self.plan, command.plan
        return previous


@dataclass
class Subscribe:
    subscription_id: str
    plan: str


@dataclass
class ChangePlan:
    subscription_id: str
    plan: str


def test_a_pydantic_model_works_as_a_state_stored_aggregate():
    flow = bootstrap_flow_testing(classes=[Subscription])

    assert flow.command_bus.send(Subscribe("s-1", "basic")) == "s-1"
    assert flow.command_bus.send(ChangePlan("s-1", "pro")) == "basic"

    subscription = flow.get_aggregate(Subscription, "s-1")
    assert (subscription.plan, subscription.version) == ("pro", 2)


class DeskArchive:
    """Has methods named like the port's, but does not implement ``Repository``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def can_handle(self, aggregate_class: type[Any]) -> bool:
        self.calls.append("can_handle")
        return True

    def find(self, aggregate_class: type[Any], identifier: Mapping[str, Any]) -> None:
        self.calls.append("find")

    def save(self, *arguments: Any) -> int:
        self.calls.append("save")
        return 1


def test_a_service_that_only_looks_like_a_repository_is_not_used_as_one():
    archive = DeskArchive()
    flow = bootstrap_flow_testing(classes=[Desk], services=[archive])

    flow.send_command(OpenDesk("d-1")).send_command(Rename("d-1", "side"))

    assert archive.calls == []
    assert flow.get_aggregate(Desk, "d-1").name == "side"
