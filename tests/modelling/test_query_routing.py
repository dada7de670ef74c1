"""Query routing (DESIGN §3.2, §3.3): queries return their handler's answer."""

from dataclasses import dataclass

import pytest

from ecopy import CommandBus, NoHandlerFound, QueryBus, command_handler, named_event, query_handler
from ecopy.testing import bootstrap_flow_testing


@named_event("order.get")
@dataclass
class GetOrder:
    order_id: str


@dataclass
class CountOrders:
    pass


class OrderQueries:
    def __init__(self) -> None:
        self.orders = {"o-1": {"order_id": "o-1", "status": "placed"}}

    @query_handler
    def get(self, query: GetOrder) -> dict | None:
        return self.orders.get(query.order_id)

    @query_handler
    def count(self, query: CountOrders) -> int:
        return len(self.orders)

    @query_handler("order.ids")
    def ids(self) -> list[str]:
        return sorted(self.orders)


@pytest.fixture
def flow():
    return bootstrap_flow_testing(classes=[OrderQueries])


def test_a_query_returns_its_handlers_answer(flow):
    assert flow.send_query(GetOrder("o-1")) == {"order_id": "o-1", "status": "placed"}
    assert flow.send_query(GetOrder("o-9")) is None
    assert flow.query_bus.send(CountOrders()) == 1


def test_a_query_by_routing_key(flow):
    assert flow.send_query_with_routing("order.ids") == ["o-1"]


def test_a_query_by_the_name_of_its_class(flow):
    answer = flow.send_query_with_routing("order.get", {"order_id": "o-1"})

    assert answer == {"order_id": "o-1", "status": "placed"}


def test_a_query_without_handler_raises_no_handler_found(flow):
    with pytest.raises(NoHandlerFound, match=r"order\.id") as raised:
        flow.send_query_with_routing("order.id")

    assert "order.ids" in raised.value.close_matches


def test_queries_and_commands_are_routed_separately():
    class Both:
        @command_handler("order.ids")
        def command(self) -> str:
            return "command"

        @query_handler("order.ids")
        def query(self) -> str:
            return "query"

    flow = bootstrap_flow_testing(classes=[Both])

    assert flow.command_bus.send_with_routing("order.ids") == "command"
    assert flow.query_bus.send_with_routing("order.ids") == "query"


def test_a_command_handler_may_ask_a_query():
    class Reports:
        @command_handler("report")
        def report(self, queries: QueryBus) -> str:
            return f"{queries.send(CountOrders())} orders"

    flow = bootstrap_flow_testing(classes=[OrderQueries, Reports])

    assert flow.command_bus.send_with_routing("report") == "1 orders"


def test_a_query_is_not_a_command():
    flow = bootstrap_flow_testing(classes=[OrderQueries])

    with pytest.raises(NoHandlerFound):
        flow.command_bus.send(CountOrders())
    assert isinstance(flow.command_bus, CommandBus)
