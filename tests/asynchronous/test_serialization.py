"""Serialization at every asynchronous boundary (DESIGN §1.6, §3.7): messages travel as JSON,
types are restored, only known types are instantiated, and bytes that are not a readable
message become dead letters without stopping the consumer."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from ecopy import (
    EcopyError,
    Message,
    QueueChannel,
    asynchronous,
    command_handler,
    event_handler,
    named_event,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class Address:
    street: str
    city: str


@named_event("order.placed")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    total: Decimal
    placed_at: datetime
    ship_to: Address
    lines: tuple[str, ...] = ()


class CustomerRegistered(BaseModel):
    customer_id: UUID
    email: str
    tags: list[str] = []


@dataclass
class Journal:
    received: list[Any] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)


class Subscribers:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @asynchronous("events")
    @event_handler
    def on_order(self, event: OrderPlaced, message: Message) -> None:
        self.journal.received.append(message.payload)
        self.journal.headers.append(dict(message.headers))

    @asynchronous("events")
    @event_handler
    def on_customer(self, event: CustomerRegistered, message: Message) -> None:
        self.journal.received.append(message.payload)
        self.journal.headers.append(dict(message.headers))

    @asynchronous("events")
    @event_handler(listen_to="audit.*")
    def on_audit(self, message: Message) -> None:
        self.journal.received.append(message.payload)


def subscribers_flow(journal: Journal):
    return bootstrap_flow_testing(
        classes=[Subscribers],
        services=[Subscribers(journal)],
        enable_asynchronous_processing=[QueueChannel("events")],
    )


def an_order(order_id: str = "o-1") -> OrderPlaced:
    return OrderPlaced(
        order_id,
        Decimal("19.90"),
        datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        Address("Main St 1", "Lyon"),
        ("book", "pen"),
    )


# -- what travels ------------------------------------------------------------------------


def test_a_dataclass_payload_arrives_as_its_class_with_nested_values_restored():
    journal = Journal()
    flow = subscribers_flow(journal)
    order = an_order()

    flow.publish_event(order, headers={"tenant": "acme"}).run("events")

    [received] = journal.received
    assert type(received) is OrderPlaced
    assert type(received.ship_to) is Address
    assert received == order
    assert journal.headers[0]["tenant"] == "acme"


def test_a_pydantic_payload_arrives_as_its_class():
    journal = Journal()
    flow = subscribers_flow(journal)
    customer = CustomerRegistered(
        customer_id=UUID("12345678-1234-5678-1234-567812345678"),
        email="ann@example.com",
        tags=["vip"],
    )

    flow.publish_event(customer).run("events")

    [received] = journal.received
    assert type(received) is CustomerRegistered
    assert received == customer


def test_a_plain_json_payload_arrives_as_json():
    journal = Journal()
    flow = subscribers_flow(journal)

    flow.publish_event_with_routing("audit.login", {"user": "u-1", "attempts": [1, 2]})
    flow.run("events")

    assert journal.received == [{"user": "u-1", "attempts": [1, 2]}]


def test_the_handler_gets_a_copy_not_the_object_that_was_published():
    journal = Journal()
    flow = subscribers_flow(journal)
    payload = {"user": "u-1", "attempts": [1]}

    flow.publish_event_with_routing("audit.login", payload)
    payload["attempts"].append(2)
    flow.run("events")

    assert journal.received == [{"user": "u-1", "attempts": [1]}]


@dataclass(frozen=True)
class ReserveStock:
    sku: str
    guard: Any = None


class Warehouse:
    def __init__(self) -> None:
        self.reserved: list[str] = []

    @asynchronous("warehouse")
    @command_handler
    def reserve(self, command: ReserveStock) -> None:
        self.reserved.append(command.sku)


@pytest.mark.parametrize(
    "unserializable",
    [threading.Lock, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)],
    ids=["lock", "socket"],
)
def test_a_payload_that_cannot_travel_fails_in_the_flow_test(unserializable):
    warehouse = Warehouse()
    flow = bootstrap_flow_testing(
        classes=[Warehouse],
        services=[warehouse],
        enable_asynchronous_processing=[QueueChannel("warehouse")],
    )
    guard = unserializable()
    try:
        with pytest.raises(EcopyError, match=r"ReserveStock payload cannot be serialized"):
            flow.send_command(ReserveStock("sku-1", guard))
    finally:
        if isinstance(guard, socket.socket):
            guard.close()

    assert len(flow.system.channel("warehouse")) == 0
    flow.run("warehouse")
    assert warehouse.reserved == []


# -- what does not read as a message -----------------------------------------------------


def envelope(type_name: str, payload: Any, message_id: str) -> str:
    return json.dumps({"type": type_name, "payload": payload, "headers": {"id": message_id}})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (envelope("order.shipped", {"order_id": "o-9"}, "m-unknown"), "unknown message type"),
        ('{"type": "order.placed", "payload": ', "malformed JSON"),
        (envelope("order.placed", {"order_id": "o-9"}, "m-misfit"), "does not fit order.placed"),
    ],
    ids=["unknown-type", "malformed-json", "payload-not-fitting-the-type"],
)
def test_unreadable_bytes_become_a_dead_letter_and_the_consumer_goes_on(body, reason):
    journal = Journal()
    flow = subscribers_flow(journal)
    flow.system.channel("events").send_serialized(body)
    flow.publish_event(an_order("o-2"))

    flow.run("events")

    assert [event.order_id for event in journal.received] == ["o-2"]
    [entry] = flow.dead_letter.list()
    assert entry.channel == "events"
    assert reason in entry.exception_message
    assert entry.body == body


def test_every_unreadable_message_is_kept_and_the_good_ones_are_handled():
    journal = Journal()
    flow = subscribers_flow(journal)
    queue = flow.system.channel("events")
    queue.send_serialized("not json at all")
    flow.publish_event(an_order("o-1"))
    queue.send_serialized(envelope("nobody.knows", {}, "m-2"))
    flow.publish_event(an_order("o-2"))

    flow.run("events")

    assert [event.order_id for event in journal.received] == ["o-1", "o-2"]
    assert flow.dead_letter.count() == 2
    assert len(queue) == 0


def test_a_readable_message_addressed_to_an_unknown_endpoint_becomes_a_dead_letter():
    journal = Journal()
    flow = subscribers_flow(journal)
    stray = Message({"order_id": "o-1"}, {"ecopy.endpoint_id": "gone_handler"})
    flow.system.channel("events").send(stray)
    flow.publish_event(an_order("o-2"))

    flow.run("events")

    assert [event.order_id for event in journal.received] == ["o-2"]
    [entry] = flow.dead_letter.list()
    assert entry.message_id == stray.id
    assert "gone_handler" in entry.exception_message
