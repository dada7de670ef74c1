"""``@asynchronous`` handlers (DESIGN §3.5, §3.7): command, event, aggregate and saga handlers
run later, in the consumer of their channel; every asynchronous handler of an event gets its
own copy of the message; a combined channel routes through each of its channels in turn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import pytest

import ecopy
from ecopy import (
    CombinedMessageChannel,
    ErrorHandlerConfiguration,
    Identifier,
    Message,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    aggregate,
    asynchronous,
    command_handler,
    deduplicated,
    event_handler,
    saga,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


@dataclass(frozen=True)
class ShipOrder:
    order_id: str


class Shipping:
    def __init__(self) -> None:
        self.shipped: list[str] = []

    @asynchronous("orders")
    @command_handler
    def ship(self, command: ShipOrder) -> str:
        self.shipped.append(command.order_id)
        return f"shipped {command.order_id}"


class Notifications:
    """Two asynchronous handlers of one event; the SMS gateway can be broken."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None]] = []
        self.sms_broken = False

    @asynchronous("notifications")
    @deduplicated
    @event_handler(endpoint_id="email_customer")
    def email(self, event: OrderPlaced, message: Message) -> None:
        self.calls.append(
            ("email", event.order_id, message.id, message.header("ecopy.endpoint_id"))
        )

    @asynchronous("notifications")
    @deduplicated
    @event_handler(endpoint_id="text_customer")
    def text(self, event: OrderPlaced, message: Message) -> None:
        self.calls.append(("sms", event.order_id, message.id, message.header("ecopy.endpoint_id")))
        if self.sms_broken:
            raise ConnectionError("SMS gateway down")

    def handled_by(self, channel: str) -> list[str]:
        return [order_id for name, order_id, _, _ in self.calls if name == channel]


def notifications_flow(notifications: Notifications, *extensions: object):
    return bootstrap_flow_testing(
        classes=[Notifications],
        services=[notifications],
        config=ServiceConfiguration(extensions=list(extensions)),
        enable_asynchronous_processing=[QueueChannel("notifications")],
    )


# -- commands ---------------------------------------------------------------------------


def test_an_asynchronous_command_handler_runs_when_its_consumer_runs():
    shipping = Shipping()
    app = ecopy.bootstrap(
        classes=[Shipping],
        services=[shipping],
        config=ServiceConfiguration(extensions=[QueueChannel("orders")]),
    )

    assert app.command_bus.send(ShipOrder("o-1")) is None
    assert shipping.shipped == []

    assert app.run("orders", finish_when_no_messages=True) == 1
    assert shipping.shipped == ["o-1"]


def test_without_asynchronous_processing_enabled_a_flow_test_runs_the_handler_at_once():
    shipping = Shipping()
    flow = bootstrap_flow_testing(classes=[Shipping], services=[shipping])

    flow.send_command(ShipOrder("o-1"))

    assert shipping.shipped == ["o-1"]


def test_with_asynchronous_processing_enabled_messages_wait_for_flow_run():
    shipping = Shipping()
    flow = bootstrap_flow_testing(
        classes=[Shipping],
        services=[shipping],
        enable_asynchronous_processing=[QueueChannel("orders")],
    )

    flow.send_command(ShipOrder("o-1")).send_command(ShipOrder("o-2"))
    assert shipping.shipped == []

    flow.run("orders")

    assert shipping.shipped == ["o-1", "o-2"]


def test_enable_asynchronous_processing_true_uses_the_channels_of_the_configuration():
    shipping = Shipping()
    flow = bootstrap_flow_testing(
        classes=[Shipping],
        services=[shipping],
        config=ServiceConfiguration(extensions=[QueueChannel("orders")]),
        enable_asynchronous_processing=True,
    )

    flow.send_command(ShipOrder("o-1"))
    assert shipping.shipped == []

    flow.run("orders")
    assert shipping.shipped == ["o-1"]


def test_an_asynchronous_handler_on_an_undeclared_channel_is_a_configuration_error():
    with pytest.raises(ecopy.ConfigurationError, match=r"'orders'.*QueueChannel\('orders'\)"):
        ecopy.bootstrap(classes=[Shipping], services=[Shipping()])


# -- one copy per handler ----------------------------------------------------------------


def test_each_asynchronous_handler_of_an_event_gets_its_own_copy_with_the_same_id():
    notifications = Notifications()
    flow = notifications_flow(notifications)

    flow.publish_event(OrderPlaced("o-1"))
    assert notifications.calls == []
    [published] = flow.get_recorded_event_messages()

    flow.run("notifications")

    assert sorted(notifications.calls) == [
        ("email", "o-1", published.id, "email_customer"),
        ("sms", "o-1", published.id, "text_customer"),
    ]


def test_a_failing_handler_is_retried_alone_and_dead_lettered_alone():
    notifications = Notifications()
    notifications.sms_broken = True
    flow = notifications_flow(
        notifications, ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 1))
    )
    flow.publish_event(OrderPlaced("o-1"))

    flow.run("notifications")
    flow.advance_time(1).run("notifications")

    assert notifications.handled_by("email") == ["o-1"]
    assert notifications.handled_by("sms") == ["o-1", "o-1"]
    [entry] = flow.dead_letter.list()
    assert entry.endpoint_id == "text_customer"
    assert entry.exception_type == "ConnectionError"


def test_a_deduplication_record_belongs_to_the_handler_that_succeeded():
    notifications = Notifications()
    notifications.sms_broken = True
    flow = notifications_flow(notifications, ErrorHandlerConfiguration("errorChannel", None))
    flow.publish_event(OrderPlaced("o-1"), headers={"id": "m-1"}).run("notifications")
    notifications.sms_broken = False

    # The same message again: the e-mail was sent, the text message was not.
    flow.publish_event(OrderPlaced("o-1"), headers={"id": "m-1"}).run("notifications")

    assert notifications.handled_by("email") == ["o-1"]
    assert notifications.handled_by("sms") == ["o-1", "o-1"]


# -- aggregates and sagas ----------------------------------------------------------------


@dataclass(frozen=True)
class CancelOrder:
    order_id: str
    reason: str


@aggregate
@dataclass
class Order:
    order_id: Annotated[str, Identifier]
    status: str = "placed"
    reason: str = ""

    @command_handler
    @classmethod
    def place(cls, command: ShipOrder) -> Order:
        return cls(command.order_id)

    @asynchronous("orders")
    @command_handler
    def cancel(self, command: CancelOrder) -> None:
        self.status, self.reason = "cancelled", command.reason


def test_an_asynchronous_aggregate_action_changes_the_aggregate_when_consumed():
    flow = bootstrap_flow_testing(
        classes=[Order], enable_asynchronous_processing=[QueueChannel("orders")]
    )
    flow.send_command(ShipOrder("o-1")).send_command(CancelOrder("o-1", "too slow"))
    assert flow.get_aggregate(Order, "o-1").status == "placed"

    flow.run("orders")

    assert flow.get_aggregate(Order, "o-1").status == "cancelled"
    assert flow.get_aggregate(Order, "o-1").reason == "too slow"


def test_an_aggregate_action_resolves_its_target_before_the_message_travels():
    flow = bootstrap_flow_testing(
        classes=[Order], enable_asynchronous_processing=[QueueChannel("orders")]
    )
    flow.send_command(ShipOrder("o-1")).send_command(CancelOrder("o-1", "too slow"))
    queue = flow.system.channel("orders")

    queued = queue.receive()
    queue.return_message(queued)

    assert queued.headers["aggregate.id"] == "o-1"
    assert queued.headers["ecopy.endpoint_id"] == "Order.cancel"


@dataclass(frozen=True)
class PaymentReceived:
    order_id: str
    amount: int


@saga
@dataclass
class Fulfilment:
    order_id: Annotated[str, Identifier]
    paid: int = 0
    steps: list[str] = field(default_factory=list)

    @asynchronous("sagas")
    @event_handler
    @classmethod
    def start(cls, event: OrderPlaced) -> Fulfilment:
        return cls(event.order_id, steps=["placed"])

    @asynchronous("sagas")
    @event_handler
    def on_payment(self, event: PaymentReceived) -> None:
        self.paid += event.amount
        self.steps.append("paid")


def test_asynchronous_saga_handlers_start_and_continue_the_saga_in_the_consumer():
    flow = bootstrap_flow_testing(
        classes=[Fulfilment], enable_asynchronous_processing=[QueueChannel("sagas")]
    )

    flow.publish_event(OrderPlaced("o-1")).run("sagas")
    flow.publish_event(PaymentReceived("o-1", 30)).run("sagas")

    saga_state = flow.get_saga(Fulfilment, "o-1")
    assert (saga_state.paid, saga_state.steps) == (30, ["placed", "paid"])


# -- combined channels -------------------------------------------------------------------


class Outbox:
    def __init__(self) -> None:
        self.shipped: list[str] = []

    @asynchronous("outbox")
    @command_handler
    def ship(self, command: ShipOrder) -> None:
        self.shipped.append(command.order_id)


class ExplicitRoute(Outbox):
    @asynchronous(["database", "broker"])
    @command_handler
    def ship(self, command: ShipOrder) -> None:
        self.shipped.append(command.order_id)


@pytest.mark.parametrize(
    ("handler_class", "extensions"),
    [
        (Outbox, [CombinedMessageChannel("outbox", ["database", "broker"])]),
        (ExplicitRoute, []),
    ],
    ids=["combined-channel", "list-of-channels"],
)
def test_a_message_goes_through_each_channel_in_turn_and_is_handled_after_the_last(
    handler_class, extensions
):
    service = handler_class()
    flow = bootstrap_flow_testing(
        classes=[handler_class],
        services=[service],
        config=ServiceConfiguration(extensions=extensions),
        enable_asynchronous_processing=[QueueChannel("database"), QueueChannel("broker")],
    )
    database, broker = flow.system.channel("database"), flow.system.channel("broker")

    flow.send_command(ShipOrder("o-1"))
    assert (len(database), len(broker)) == (1, 0)

    flow.run("database")
    assert (len(database), len(broker)) == (0, 1)
    assert service.shipped == []

    flow.run("broker")
    assert service.shipped == ["o-1"]
    assert (len(database), len(broker)) == (0, 0)
