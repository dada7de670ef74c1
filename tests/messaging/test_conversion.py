"""Payload conversion (DESIGN §3.2): the first parameter receives the payload converted to its
annotation, and a payload that does not fit is a clear error before the handler runs."""

import json
from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from ecopy import MessageConversionError, command_handler, named_event, query_handler
from ecopy.testing import bootstrap_flow_testing


@named_event("order.place")
@dataclass
class PlaceOrder:
    order_id: str
    quantity: int


class PlaceOrderModel(BaseModel):
    order_id: str
    quantity: int


class Orders:
    def __init__(self) -> None:
        self.placed: list[object] = []

    @command_handler
    def place(self, command: PlaceOrder) -> int:
        self.placed.append(command)
        return command.quantity

    @command_handler("order.place_model")
    def place_model(self, command: PlaceOrderModel) -> int:
        self.placed.append(command)
        return command.quantity


@pytest.fixture
def orders():
    return Orders()


@pytest.fixture
def flow(orders):
    return bootstrap_flow_testing(classes=[Orders], services=[orders])


def test_a_dict_becomes_the_dataclass_the_handler_asks_for(flow, orders):
    result = flow.command_bus.send_with_routing("order.place", {"order_id": "o-1", "quantity": "3"})

    assert orders.placed == [PlaceOrder("o-1", 3)]
    assert result == 3


def test_a_json_string_becomes_the_dataclass(flow, orders):
    flow.send_command_with_routing("order.place", json.dumps({"order_id": "o-1", "quantity": 2}))

    assert orders.placed == [PlaceOrder("o-1", 2)]


def test_a_dict_and_a_json_string_become_a_pydantic_model(flow, orders):
    flow.send_command_with_routing("order.place_model", {"order_id": "o-1", "quantity": 1})
    flow.send_command_with_routing("order.place_model", '{"order_id": "o-2", "quantity": 2}')

    assert orders.placed == [
        PlaceOrderModel(order_id="o-1", quantity=1),
        PlaceOrderModel(order_id="o-2", quantity=2),
    ]


def test_a_payload_of_the_right_type_is_passed_as_is(flow, orders):
    command = PlaceOrder("o-1", 1)

    flow.send_command(command)

    assert orders.placed[0] is command


def test_an_untyped_routed_handler_receives_the_raw_payload():
    received = []

    class Raw:
        @command_handler("raw")
        def raw(self, payload) -> None:
            received.append(payload)

    flow = bootstrap_flow_testing(classes=[Raw])
    flow.send_command_with_routing("raw", {"any": "thing"})

    assert received == [{"any": "thing"}]


def test_a_conversion_error_names_the_handler_the_expected_type_and_the_field(flow, orders):
    with pytest.raises(MessageConversionError) as raised:
        flow.send_command_with_routing("order.place", {"order_id": "o-1", "quantity": "many"})

    text = str(raised.value)
    assert "Orders.place" in text
    assert "PlaceOrder" in text
    assert "quantity" in text
    assert raised.value.expected == "PlaceOrder"
    assert orders.placed == []  # the handler did not run


def test_a_missing_field_is_named(flow, orders):
    with pytest.raises(MessageConversionError, match="order_id") as raised:
        flow.send_command_with_routing("order.place_model", {"quantity": 1})

    assert "Orders.place_model" in str(raised.value)
    assert "PlaceOrderModel" in str(raised.value)
    assert orders.placed == []


def test_invalid_json_is_a_conversion_error(flow, orders):
    with pytest.raises(MessageConversionError, match=r"Orders\.place"):
        flow.send_command_with_routing("order.place", "{not json")

    assert orders.placed == []


def test_text_payload_for_a_str_handler_is_not_parsed_as_json():
    class Echo:
        @query_handler("echo")
        def echo(self, text: str) -> str:
            return text

    flow = bootstrap_flow_testing(classes=[Echo])

    assert flow.send_query_with_routing("echo", "hello") == "hello"


def test_text_payload_for_an_optional_str_handler_is_not_parsed_as_json():
    class Echo:
        @query_handler("echo")
        def echo(self, text: str | None) -> str | None:
            return text

    flow = bootstrap_flow_testing(classes=[Echo])

    assert flow.send_query_with_routing("echo", "hello") == "hello"
