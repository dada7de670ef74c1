"""``@internal_handler`` chains: a handler's result continues on its output channel; the bus
returns the last result; ``None`` stops the chain."""

from dataclasses import dataclass
from typing import Annotated

from ecopy import Header, command_handler, internal_handler, query_handler
from ecopy.testing import bootstrap_flow_testing


@dataclass
class PlaceOrder:
    order_id: str
    quantity: int


@dataclass
class PricedOrder:
    order_id: str
    total: int


class Pipeline:
    def __init__(self) -> None:
        self.log: list[str] = []

    @command_handler(output_channel="pricing")
    def place(self, command: PlaceOrder) -> PlaceOrder | None:
        self.log.append(f"place {command.order_id}")
        return None if command.quantity == 0 else command

    @internal_handler("pricing", output_channel="confirmation")
    def price(self, command: PlaceOrder) -> dict:
        self.log.append(f"price {command.order_id}")
        return {"order_id": command.order_id, "total": command.quantity * 10}

    @internal_handler("confirmation")
    def confirm(self, order: PricedOrder, tenant: Annotated[str, Header("tenant")]) -> str:
        self.log.append(f"confirm {order.order_id}")
        return f"{order.order_id} costs {order.total} for {tenant}"


def test_the_bus_returns_the_last_result_of_the_chain():
    pipeline = Pipeline()
    flow = bootstrap_flow_testing(classes=[Pipeline], services=[pipeline])

    result = flow.command_bus.send(PlaceOrder("o-1", 3), headers={"tenant": "acme"})

    assert result == "o-1 costs 30 for acme"
    assert pipeline.log == ["place o-1", "price o-1", "confirm o-1"]


def test_none_stops_the_chain():
    pipeline = Pipeline()
    flow = bootstrap_flow_testing(classes=[Pipeline], services=[pipeline])

    assert flow.command_bus.send(PlaceOrder("o-1", 0)) is None
    assert pipeline.log == ["place o-1"]


def test_a_query_handler_may_continue_on_an_output_channel():
    class Lookup:
        @query_handler("order.total", output_channel="format")
        def total(self, order_id: str) -> int:
            return len(order_id) * 100

        @internal_handler("format")
        def format(self, total: int) -> str:
            return f"${total}"

    flow = bootstrap_flow_testing(classes=[Lookup])

    assert flow.send_query_with_routing("order.total", "o-1") == "$300"


def test_internal_messages_are_not_recorded_as_commands_or_events():
    flow = bootstrap_flow_testing(classes=[Pipeline])

    flow.send_command(PlaceOrder("o-1", 1), headers={"tenant": "acme"})

    assert flow.get_recorded_commands() == [PlaceOrder("o-1", 1)]
    assert flow.get_recorded_events() == []
