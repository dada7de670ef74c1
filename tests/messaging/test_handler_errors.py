"""A failing handler: its exception reaches the caller unchanged, with a note naming it."""

from dataclasses import dataclass

import pytest

from ecopy import EventBus, command_handler, event_handler
from ecopy.testing import bootstrap_flow_testing


class OutOfStock(Exception):
    pass


@dataclass
class PlaceOrder:
    order_id: str


@dataclass
class OrderPlaced:
    order_id: str


class Orders:
    def __init__(self) -> None:
        self.error = OutOfStock("no stock for o-1")

    @command_handler
    def place(self, command: PlaceOrder) -> None:
        raise self.error


def test_the_handlers_exception_propagates_unchanged_with_a_note_naming_the_handler():
    orders = Orders()
    flow = bootstrap_flow_testing(classes=[Orders], services=[orders])

    with pytest.raises(OutOfStock) as raised:
        flow.send_command(PlaceOrder("o-1"))

    assert raised.value is orders.error
    assert str(raised.value) == "no stock for o-1"
    assert any("Orders.place" in note for note in raised.value.__notes__)


def test_an_exception_from_a_nested_handler_reaches_the_outer_caller():
    class Chain:
        @command_handler
        def place(self, command: PlaceOrder, events: EventBus) -> None:
            events.publish(OrderPlaced(command.order_id))

        @event_handler
        def on_placed(self, event: OrderPlaced) -> None:
            raise OutOfStock(event.order_id)

    flow = bootstrap_flow_testing(classes=[Chain])

    with pytest.raises(OutOfStock, match="o-1") as raised:
        flow.send_command(PlaceOrder("o-1"))

    notes = "\n".join(raised.value.__notes__)
    assert "Chain.on_placed" in notes
    assert "Chain.place" in notes


def test_the_same_error_does_not_collect_duplicate_notes_across_calls():
    orders = Orders()
    flow = bootstrap_flow_testing(classes=[Orders], services=[orders])

    for _ in range(3):
        with pytest.raises(OutOfStock):
            flow.send_command(PlaceOrder("o-1"))

    assert len(orders.error.__notes__) == 1
