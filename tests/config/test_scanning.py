"""``scan=[...]`` imports a package with its sub-modules and finds the decorated classes and
functions defined there."""

import pytest

import ecopy
from ecopy import ConfigurationError, command_handler
from ecopy.testing import bootstrap_flow_testing
from tests.config.scanned_app.messages import OrderPlaced, PlaceOrder
from tests.config.scanned_app.orders.notifications import Outbox
from tests.config.scanned_app.orders.service import OrderService

PACKAGE = "tests.config.scanned_app"


def test_handlers_in_sub_modules_are_found_and_wired():
    outbox = Outbox()
    flow = bootstrap_flow_testing(scan=[PACKAGE], services=[outbox])

    flow.send_command(PlaceOrder("o-1"))

    assert flow.get_recorded_events() == [OrderPlaced("o-1")]
    assert outbox.sent == ["notified o-1"]
    assert flow.send_query_with_routing("scanned.placed_orders") == ["o-1"]


def test_each_handler_is_found_once_where_it_is_defined():
    app = ecopy.bootstrap(scan=[PACKAGE], services=[Outbox()])

    assert sorted(endpoint.endpoint_id for endpoint in app.endpoints()) == [
        "OrderService.place",
        "OrderService.placed_orders",
        "notify",
    ]


def test_scanning_a_single_module():
    outbox = Outbox()
    flow = bootstrap_flow_testing(scan=[f"{PACKAGE}.orders.notifications"], services=[outbox])

    flow.publish_event(OrderPlaced("o-2"))

    assert outbox.sent == ["notified o-2"]


def test_scan_and_classes_together_do_not_register_a_handler_twice():
    flow = bootstrap_flow_testing(classes=[OrderService], scan=[PACKAGE], services=[Outbox()])

    assert flow.send_command(PlaceOrder("o-1")).get_recorded_events() == [OrderPlaced("o-1")]


def test_scanning_a_missing_package_is_a_configuration_problem():
    class Broken:
        @command_handler("forward", output_channel="nowhere")
        def forward(self) -> str:
            return "lost"

    with pytest.raises(ConfigurationError) as raised:
        ecopy.bootstrap(classes=[Broken], scan=[f"{PACKAGE}.no_such_module"])

    assert len(raised.value.problems) == 2
    assert "no_such_module" in str(raised.value)
