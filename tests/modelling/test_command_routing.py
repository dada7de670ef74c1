"""Command routing (DESIGN §3.2, §3.3): by class, by routing key, by a class's name; exactly
one handler; return values; ``NoHandlerFound`` with suggestions."""

from dataclasses import dataclass

import pytest

from ecopy import NoHandlerFound, command_handler, named_event
from ecopy.testing import bootstrap_flow_testing


@named_event("order.place")
@dataclass
class PlaceOrder:
    order_id: str


@dataclass
class CancelOrder:
    order_id: str


@dataclass
class CancelUrgently(CancelOrder):
    pass


class Orders:
    def __init__(self) -> None:
        self.log: list[str] = []

    @command_handler
    def place(self, command: PlaceOrder) -> str:
        self.log.append(f"place {command.order_id}")
        return f"placed {command.order_id}"

    @command_handler
    def cancel(self, command: CancelOrder) -> None:
        self.log.append(f"cancel {command.order_id}")

    @command_handler("order.archive")
    def archive(self, payload: dict) -> int:
        self.log.append(f"archive {payload['order_id']}")
        return 1

    @command_handler("order.purge")
    def purge(self) -> str:
        self.log.append("purge")
        return "purged"


@pytest.fixture
def orders():
    return Orders()


@pytest.fixture
def flow(orders):
    return bootstrap_flow_testing(classes=[Orders], services=[orders])


def test_a_command_reaches_the_handler_of_its_class_and_its_result_comes_back(flow, orders):
    assert flow.command_bus.send(PlaceOrder("o-1")) == "placed o-1"
    assert orders.log == ["place o-1"]


def test_a_command_without_a_return_value_returns_none(flow, orders):
    assert flow.command_bus.send(CancelOrder("o-1")) is None
    assert orders.log == ["cancel o-1"]


def test_a_subclass_command_reaches_the_handler_of_its_base_class(flow, orders):
    flow.send_command(CancelUrgently("o-1"))

    assert orders.log == ["cancel o-1"]


def test_a_routing_key_reaches_the_handler_registered_for_it(flow, orders):
    assert flow.command_bus.send_with_routing("order.archive", {"order_id": "o-1"}) == 1
    assert orders.log == ["archive o-1"]


def test_a_handler_routed_by_key_may_take_no_parameters(flow, orders):
    assert flow.command_bus.send_with_routing("order.purge") == "purged"
    assert flow.command_bus.send_with_routing("order.purge", {"ignored": True}) == "purged"
    assert orders.log == ["purge", "purge"]


def test_send_with_routing_reaches_a_class_routed_handler_by_its_named_event_name(flow, orders):
    result = flow.command_bus.send_with_routing("order.place", {"order_id": "o-1"})

    assert result == "placed o-1"
    assert orders.log == ["place o-1"]


def test_send_with_routing_reaches_a_class_routed_handler_by_its_module_qualified_name(
    flow, orders
):
    key = f"{CancelOrder.__module__}.CancelOrder"

    flow.send_command_with_routing(key, {"order_id": "o-1"})

    assert orders.log == ["cancel o-1"]


def test_sending_a_named_class_reaches_a_handler_routed_by_that_name():
    @named_event("order.ship")
    @dataclass
    class ShipOrder:
        order_id: str

    shipped = []

    class Shipping:
        @command_handler("order.ship")
        def ship(self, command: ShipOrder) -> None:
            shipped.append(command)

    flow = bootstrap_flow_testing(classes=[Shipping])
    flow.send_command(ShipOrder("o-1"))

    assert shipped == [ShipOrder("o-1")]


def test_a_command_without_handler_raises_no_handler_found_naming_it(flow):
    @dataclass
    class Unknown:
        pass

    with pytest.raises(NoHandlerFound, match="Unknown"):
        flow.send_command(Unknown())


def test_an_unknown_routing_key_names_the_key_and_suggests_close_ones(flow):
    with pytest.raises(NoHandlerFound) as raised:
        flow.send_command_with_routing("order.plac", {"order_id": "o-1"})

    message = str(raised.value)
    assert "'order.plac'" in message
    assert "'order.place'" in message
    assert "order.place" in raised.value.close_matches


def test_an_unknown_key_with_nothing_close_says_how_to_fix_it(flow):
    with pytest.raises(NoHandlerFound, match=r"xyz.*@command_handler"):
        flow.send_command_with_routing("xyz")


def test_an_async_handler_is_awaited_and_its_result_returned():
    class AsyncOrders:
        @command_handler("order.async")
        async def place(self, payload: dict) -> str:
            return f"placed {payload['order_id']} asynchronously"

    flow = bootstrap_flow_testing(classes=[AsyncOrders])

    result = flow.command_bus.send_with_routing("order.async", {"order_id": "o-1"})

    assert result == "placed o-1 asynchronously"
