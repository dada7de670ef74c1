"""Header propagation (DESIGN §3.1): messages sent while another is handled inherit its user
headers (explicit ones win), keep its correlation_id and get parent_id = its id."""

from dataclasses import dataclass

from ecopy import CommandBus, EventBus, command_handler, event_handler
from ecopy.testing import bootstrap_flow_testing


@dataclass
class PlaceOrder:
    order_id: str


@dataclass
class OrderPlaced:
    order_id: str


@dataclass
class NotifyCustomer:
    order_id: str


class OrderService:
    @command_handler
    def place(self, command: PlaceOrder, events: EventBus) -> None:
        events.publish(OrderPlaced(command.order_id), headers={"source": "order-service"})


class Notifications:
    @event_handler
    def on_placed(self, event: OrderPlaced, commands: CommandBus) -> None:
        commands.send(NotifyCustomer(event.order_id))

    @command_handler
    def notify(self, command: NotifyCustomer) -> None:
        pass


def place_order(headers):
    flow = bootstrap_flow_testing(classes=[OrderService, Notifications])
    flow.send_command(PlaceOrder("o-1"), headers=headers)
    return flow


def test_an_event_published_by_a_command_handler_inherits_the_commands_user_headers():
    flow = place_order({"tenant": "acme", "user": "u-1"})

    [event_headers] = flow.get_recorded_event_headers()
    assert event_headers["tenant"] == "acme"
    assert event_headers["user"] == "u-1"
    assert event_headers["source"] == "order-service"


def test_explicit_headers_win_over_inherited_ones():
    flow = place_order({"tenant": "acme", "source": "web"})

    [event_headers] = flow.get_recorded_event_headers()
    assert event_headers["source"] == "order-service"


def test_the_event_keeps_the_correlation_id_and_its_parent_is_the_command():
    flow = place_order({"correlation_id": "c-42"})

    [command_headers, _] = flow.get_recorded_command_headers()
    [event_headers] = flow.get_recorded_event_headers()
    assert command_headers["correlation_id"] == "c-42"
    assert event_headers["correlation_id"] == "c-42"
    assert event_headers["parent_id"] == command_headers["id"]
    assert event_headers["id"] != command_headers["id"]


def test_correlation_id_defaults_to_the_first_messages_id_along_the_chain():
    flow = place_order(None)

    [command_headers, _] = flow.get_recorded_command_headers()
    [event_headers] = flow.get_recorded_event_headers()
    assert event_headers["correlation_id"] == command_headers["id"]


def test_three_levels_deep_command_event_command():
    flow = place_order({"tenant": "acme"})

    [place, notify] = flow.get_recorded_command_headers()
    [placed] = flow.get_recorded_event_headers()
    assert flow.get_recorded_commands() == [PlaceOrder("o-1"), NotifyCustomer("o-1")]
    assert notify["tenant"] == "acme"
    assert notify["source"] == "order-service"
    assert notify["correlation_id"] == place["id"]
    assert notify["parent_id"] == placed["id"]
    assert placed["parent_id"] == place["id"]
    assert "parent_id" not in place


def test_internal_headers_never_leak_into_caused_messages():
    flow = place_order({"tenant": "acme", "ecopy.secret": 1, "aggregate.id": "a-1"})

    [_, notify] = flow.get_recorded_command_headers()
    [placed] = flow.get_recorded_event_headers()
    for headers in (placed, notify):
        assert headers["tenant"] == "acme"
        assert not [key for key in headers if key.startswith(("ecopy.", "aggregate."))]


def test_routing_key_of_a_command_does_not_leak_into_the_event_it_causes():
    class KeyedOrders:
        @command_handler("order.place")
        def place(self, command: dict, events: EventBus) -> None:
            events.publish(OrderPlaced(command["order_id"]))

    seen = []

    class Listener:
        @event_handler
        def on_placed(self, event: OrderPlaced) -> None:
            seen.append(event)

    flow = bootstrap_flow_testing(classes=[KeyedOrders, Listener])
    flow.send_command_with_routing("order.place", {"order_id": "o-1"})

    assert seen == [OrderPlaced("o-1")]
    assert not [k for k in flow.get_recorded_event_headers()[0] if k.startswith("ecopy.")]


def test_a_message_sent_outside_any_handler_has_no_parent():
    flow = bootstrap_flow_testing(classes=[OrderService, Notifications])

    flow.send_command(PlaceOrder("o-1")).send_command(PlaceOrder("o-2"))

    first, second = [
        headers
        for command, headers in zip(
            flow.get_recorded_commands(), flow.get_recorded_command_headers(), strict=True
        )
        if isinstance(command, PlaceOrder)
    ]
    assert "parent_id" not in first
    assert "parent_id" not in second
    assert second["correlation_id"] != first["correlation_id"]
    assert flow.get_recorded_events() == [OrderPlaced("o-1"), OrderPlaced("o-2")]
