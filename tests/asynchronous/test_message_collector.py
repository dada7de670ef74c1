"""The message collector (STYLE: one interceptor per concern): asynchronous sends made while a
command handler or an asynchronous handler runs leave only after it succeeded; when it fails,
nothing leaves."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ecopy import (
    CommandBus,
    ErrorHandlerConfiguration,
    EventBus,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    event_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str
    fail_after_publishing: bool = False


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    fail_after_sending: bool = False


@dataclass(frozen=True)
class SendConfirmation:
    order_id: str


class Orders:
    def __init__(self) -> None:
        self.queued_while_handling: list[int] = []
        self.queue_size = lambda: -1

    @command_handler
    def place(self, command: PlaceOrder, events: EventBus) -> str:
        events.publish(OrderPlaced(command.order_id))
        events.publish(OrderPlaced(f"{command.order_id}-again"))
        self.queued_while_handling.append(self.queue_size())
        if command.fail_after_publishing:
            raise ValueError(f"order {command.order_id} rejected")
        return command.order_id


class Notifications:
    def __init__(self) -> None:
        self.confirmed: list[str] = []

    @asynchronous("orders")
    @event_handler
    def on_placed(self, event: OrderPlaced, commands: CommandBus) -> None:
        commands.send(SendConfirmation(event.order_id))
        if event.fail_after_sending:
            raise ConnectionError(f"cannot notify about {event.order_id}")

    @asynchronous("confirmations")
    @command_handler
    def confirm(self, command: SendConfirmation) -> None:
        self.confirmed.append(command.order_id)


def collector_flow(*extensions: object):
    orders, notifications = Orders(), Notifications()
    flow = bootstrap_flow_testing(
        classes=[Orders, Notifications],
        services=[orders, notifications],
        config=ServiceConfiguration(extensions=list(extensions)),
        enable_asynchronous_processing=[QueueChannel("orders"), QueueChannel("confirmations")],
    )
    queue = flow.system.channel("orders")
    orders.queue_size = lambda: len(queue)
    return flow, orders, notifications


def test_messages_sent_by_a_command_handler_are_queued_after_it_succeeded():
    flow, orders, _ = collector_flow()

    flow.send_command(PlaceOrder("o-1"))

    assert orders.queued_while_handling == [0]
    assert len(flow.system.channel("orders")) == 2


def test_nothing_is_queued_when_the_command_handler_fails():
    flow, _, _ = collector_flow()

    with pytest.raises(ValueError, match="o-1 rejected"):
        flow.send_command(PlaceOrder("o-1", fail_after_publishing=True))

    assert len(flow.system.channel("orders")) == 0
    flow.send_command(PlaceOrder("o-2"))
    assert len(flow.system.channel("orders")) == 2


def test_an_asynchronous_handler_sends_on_only_after_it_succeeded():
    flow, _, notifications = collector_flow()
    flow.publish_event(OrderPlaced("o-1"))

    flow.run("orders").run("confirmations")

    assert notifications.confirmed == ["o-1"]


def test_nothing_is_sent_on_when_the_asynchronous_handler_fails():
    flow, _, notifications = collector_flow(ErrorHandlerConfiguration("errorChannel", None))
    flow.publish_event(OrderPlaced("o-1", fail_after_sending=True))
    flow.publish_event(OrderPlaced("o-2"))

    flow.run("orders")

    assert len(flow.system.channel("confirmations")) == 1
    flow.run("confirmations")
    assert notifications.confirmed == ["o-2"]
    assert flow.dead_letter.count() == 1


def test_nothing_is_sent_on_when_the_asynchronous_handler_fails_without_error_handling():
    flow, _, _ = collector_flow()
    flow.publish_event(OrderPlaced("o-1", fail_after_sending=True))

    with pytest.raises(ConnectionError):
        flow.run("orders")

    assert len(flow.system.channel("confirmations")) == 0


@dataclass(frozen=True)
class PlaceBatch:
    order_ids: tuple[str, ...]


class Batches:
    """Places each order of a batch with a nested command, skipping those that fail."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    @command_handler
    def place_all(self, command: PlaceBatch, commands: CommandBus) -> None:
        for order_id in command.order_ids:
            try:
                commands.send(PlaceOrder(order_id, fail_after_publishing=order_id.startswith("x")))
            except ValueError:
                self.skipped.append(order_id)


def test_a_failed_nested_command_that_the_caller_catches_sends_nothing():
    batches, notifications = Batches(), Notifications()
    flow = bootstrap_flow_testing(
        classes=[Batches, Orders, Notifications],
        services=[batches, Orders(), notifications],
        enable_asynchronous_processing=[QueueChannel("orders"), QueueChannel("confirmations")],
    )

    flow.send_command(PlaceBatch(("o-1", "x-2", "o-3"))).run("orders").run("confirmations")

    assert batches.skipped == ["x-2"]
    assert notifications.confirmed == ["o-1", "o-1-again", "o-3", "o-3-again"]
