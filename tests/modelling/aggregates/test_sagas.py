"""Sagas (DESIGN §3.4): started by a classmethod ``@event_handler``, continued by instance
handlers, identifiers mapped from events like commands, several sagas per event, commands sent
through an injected ``CommandBus``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import pytest

from ecopy import (
    AggregateNotFound,
    CommandBus,
    Identifier,
    WithEvents,
    aggregate,
    command_handler,
    event_handler,
    saga,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class OrderPlaced:
    order_id: str
    amount: int


@dataclass
class PaymentReceived:
    payment_id: str
    order_id: str
    amount: int


@dataclass
class ParcelShipped:
    parcel: str
    order_reference: str


@dataclass
class ShipOrder:
    order_id: str


@saga
@dataclass
class OrderFulfilment(WithEvents):
    order_id: Annotated[str, Identifier]
    due: int = 0
    paid: int = 0
    status: str = "awaiting payment"
    log: list[str] = field(default_factory=list)

    @event_handler
    @classmethod
    def start(cls, event: OrderPlaced) -> OrderFulfilment:
        return cls(event.order_id, due=event.amount, log=["started"])

    @event_handler
    def on_payment(self, event: PaymentReceived, commands: CommandBus) -> None:
        self.paid += event.amount
        self.log.append(f"paid {event.amount}")
        if self.paid >= self.due:
            self.status = "shipping"
            commands.send(ShipOrder(self.order_id))

    @event_handler(identifier_mapping={"order_id": "payload.order_reference"})
    def on_shipped(self, event: ParcelShipped) -> None:
        self.status = "shipped"
        self.log.append(f"shipped {event.parcel}")


@saga
@dataclass
class LoyaltyPoints:
    """A second saga reacting to the same events, on its own."""

    order_id: Annotated[str, Identifier]
    points: int = 0

    @event_handler
    @classmethod
    def start(cls, event: OrderPlaced) -> LoyaltyPoints:
        return cls(event.order_id)

    @event_handler(drop_message_on_not_found=True)
    def on_payment(self, event: PaymentReceived) -> None:
        self.points += event.amount // 10


class Warehouse:
    def __init__(self) -> None:
        self.shipped: list[str] = []

    @command_handler
    def ship(self, command: ShipOrder) -> None:
        self.shipped.append(command.order_id)


@pytest.fixture
def warehouse():
    return Warehouse()


@pytest.fixture
def flow(warehouse):
    return bootstrap_flow_testing(
        classes=[OrderFulfilment, LoyaltyPoints, Warehouse], services=[warehouse]
    )


def test_a_classmethod_event_handler_starts_a_saga(flow):
    flow.publish_event(OrderPlaced("o-1", 100))

    fulfilment = flow.get_saga(OrderFulfilment, "o-1")
    assert (fulfilment.due, fulfilment.status, fulfilment.log) == (
        100,
        "awaiting payment",
        ["started"],
    )


def test_instance_event_handlers_continue_the_saga_found_by_the_events_identifier(flow):
    flow.publish_event(OrderPlaced("o-1", 100)).publish_event(OrderPlaced("o-2", 50))

    flow.publish_event(PaymentReceived("p-1", "o-1", 40))
    flow.publish_event(PaymentReceived("p-2", "o-2", 10))

    assert flow.get_saga(OrderFulfilment, "o-1").paid == 40
    assert flow.get_saga(OrderFulfilment, "o-2").paid == 10


def test_a_saga_sends_commands_through_an_injected_command_bus(flow, warehouse):
    flow.publish_event(OrderPlaced("o-1", 100))

    flow.publish_event(PaymentReceived("p-1", "o-1", 60))
    assert warehouse.shipped == []
    flow.publish_event(PaymentReceived("p-2", "o-1", 40))

    assert warehouse.shipped == ["o-1"]
    assert flow.get_recorded_commands() == [ShipOrder("o-1")]
    assert flow.get_saga(OrderFulfilment, "o-1").status == "shipping"


def test_a_command_sent_by_a_saga_continues_the_events_correlation(flow):
    flow.publish_event(OrderPlaced("o-1", 10))

    flow.publish_event(PaymentReceived("p-1", "o-1", 10), headers={"correlation_id": "c-42"})

    (headers,) = flow.get_recorded_command_headers()
    assert headers["correlation_id"] == "c-42"


def test_identifier_mapping_maps_an_event_field_with_another_name_to_the_saga(flow):
    flow.publish_event(OrderPlaced("o-1", 10)).publish_event(OrderPlaced("o-2", 10))

    flow.publish_event(ParcelShipped(parcel="parcel-7", order_reference="o-2"))

    assert flow.get_saga(OrderFulfilment, "o-2").log == ["started", "shipped parcel-7"]
    assert flow.get_saga(OrderFulfilment, "o-1").log == ["started"]


def test_several_sagas_handle_the_same_event_independently(flow):
    flow.publish_event(OrderPlaced("o-1", 100))
    flow.publish_event(PaymentReceived("p-1", "o-1", 70))

    assert flow.get_saga(OrderFulfilment, "o-1").paid == 70
    assert flow.get_saga(LoyaltyPoints, "o-1").points == 7


def test_an_event_for_a_saga_that_does_not_exist_raises_unless_dropped(flow):
    with pytest.raises(AggregateNotFound) as raised:
        flow.publish_event(PaymentReceived("p-1", "unknown", 10))

    assert "OrderFulfilment.on_payment" in str(raised.value)
    with pytest.raises(AggregateNotFound):
        flow.get_saga(LoyaltyPoints, "unknown")


# -- sagas reacting to what aggregates publish ---------------------------------------------------


@dataclass
class Pay:
    payment_id: str
    order_id: str
    amount: int


@aggregate
@dataclass
class Payment(WithEvents):
    payment_id: Annotated[str, Identifier]
    order_id: str = ""

    @command_handler
    @classmethod
    def pay(cls, command: Pay) -> Payment:
        payment = cls(command.payment_id, command.order_id)
        payment.record_that(PaymentReceived(command.payment_id, command.order_id, command.amount))
        return payment


def test_a_saga_finds_itself_by_the_payload_of_an_event_published_by_another_aggregate(
    warehouse,
):
    flow = bootstrap_flow_testing(
        classes=[OrderFulfilment, LoyaltyPoints, Warehouse, Payment], services=[warehouse]
    )
    flow.publish_event(OrderPlaced("o-1", 30))

    flow.send_command(Pay("p-1", "o-1", 30))

    assert flow.get_saga(OrderFulfilment, "o-1").paid == 30
    assert flow.get_saga(LoyaltyPoints, "o-1").points == 3
    assert warehouse.shipped == ["o-1"]


@dataclass
class PlaceOrder:
    order_id: str
    amount: int


@aggregate
@dataclass
class Order(WithEvents):
    order_id: Annotated[str, Identifier]

    @command_handler
    @classmethod
    def place(cls, command: PlaceOrder) -> Order:
        order = cls(command.order_id)
        order.record_that(OrderPlaced(command.order_id, command.amount))
        return order


def test_a_saga_started_by_an_aggregates_event_gets_the_shared_identifier(warehouse):
    flow = bootstrap_flow_testing(classes=[Order, OrderFulfilment, Warehouse], services=[warehouse])

    flow.send_command(PlaceOrder("o-1", 30))

    assert flow.get_saga(OrderFulfilment, "o-1").due == 30


# -- one event both starts and continues a saga -------------------------------------------------


@dataclass
class ItemScanned:
    basket_id: str
    item: str


@saga
@dataclass
class Checkout:
    basket_id: Annotated[str, Identifier]
    items: list[str] = field(default_factory=list)

    @event_handler
    @classmethod
    def first_item(cls, event: ItemScanned) -> Checkout:
        return cls(event.basket_id, [f"first {event.item}"])

    @event_handler
    def next_item(self, event: ItemScanned) -> None:
        self.items.append(event.item)


def test_an_event_handled_by_a_starting_and_a_continuing_handler_starts_once_then_continues():
    flow = bootstrap_flow_testing(classes=[Checkout])

    flow.publish_event(ItemScanned("b-1", "milk")).publish_event(ItemScanned("b-1", "eggs"))
    flow.publish_event(ItemScanned("b-2", "tea"))

    assert flow.get_saga(Checkout, "b-1").items == ["first milk", "eggs"]
    assert flow.get_saga(Checkout, "b-2").items == ["first tea"]
