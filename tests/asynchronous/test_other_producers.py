"""Messages put on an ecopy channel by another producer, without ecopy's internal endpoint
header, are routed by their type or routing key to the channel's endpoints, as published events
are (issue 10): one copy per endpoint, each handled, retried and dead-lettered on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from ecopy import (
    ErrorHandlerConfiguration,
    QueueChannel,
    RetryTemplate,
    asynchronous,
    command_handler,
    event_handler,
    named_event,
)
from ecopy.testing import bootstrap_flow_testing


@named_event("billing.invoice_paid")
@dataclass(frozen=True)
class InvoicePaid:
    invoice_id: str


class Billing:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.ledger_down = False

    @asynchronous("billing")
    @event_handler(endpoint_id="thank_customer")
    def thank(self, event: InvoicePaid) -> None:
        self.log.append(f"thanked {event.invoice_id}")

    @asynchronous("billing")
    @event_handler(endpoint_id="book_payment")
    def book(self, event: InvoicePaid) -> None:
        if self.ledger_down:
            raise ConnectionRefusedError("ledger unreachable")
        self.log.append(f"booked {event.invoice_id}")

    @asynchronous("billing")
    @event_handler(listen_to="billing.refund.*", endpoint_id="audit_refund")
    def audit(self, refund: dict[str, str]) -> None:
        self.log.append(f"audited {refund['invoice_id']}")

    @asynchronous("billing")
    @command_handler("billing.cancel", endpoint_id="cancel_invoice")
    def cancel(self, command: dict[str, str]) -> None:
        self.log.append(f"cancelled {command['invoice_id']}")


def envelope(kind: str, payload: object, **headers: object) -> str:
    return json.dumps({"type": kind, "payload": payload, "headers": {"id": "ext-1", **headers}})


@pytest.fixture
def billing():
    service = Billing()
    flow = bootstrap_flow_testing(
        classes=[Billing],
        services=[service],
        enable_asynchronous_processing=[
            QueueChannel("billing"),
            ErrorHandlerConfiguration(retry=RetryTemplate.fixed(1000, 3)),
        ],
    )
    return flow, service, flow.system.channel("billing")


def test_an_event_from_another_producer_reaches_every_handler_of_its_type(billing):
    flow, service, channel = billing
    channel.send_serialized(envelope("billing.invoice_paid", {"invoice_id": "i-1"}))

    flow.run("billing")

    assert sorted(service.log) == ["booked i-1", "thanked i-1"]


def test_each_handler_gets_its_own_copy_retried_on_its_own(billing):
    flow, service, channel = billing
    service.ledger_down = True
    channel.send_serialized(envelope("billing.invoice_paid", {"invoice_id": "i-2"}))

    flow.run("billing")
    assert service.log == ["thanked i-2"]

    service.ledger_down = False
    flow.advance_time(1).run("billing")
    assert service.log == ["thanked i-2", "booked i-2"]  # not thanked twice


def test_a_routing_key_routes_to_a_command_handler_or_to_event_patterns(billing):
    flow, service, channel = billing
    channel.send_serialized(
        envelope("json", {"invoice_id": "i-3"}, **{"ecopy.routing_key": "billing.cancel"})
    )
    channel.send_serialized(
        envelope("json", {"invoice_id": "i-4"}, **{"ecopy.routing_key": "billing.refund.full"})
    )

    flow.run("billing")

    assert service.log == ["cancelled i-3", "audited i-4"]


def test_a_message_no_handler_here_takes_is_a_dead_letter_saying_so(billing):
    flow, service, channel = billing
    channel.send_serialized(
        envelope("json", {"invoice_id": "i-5"}, **{"ecopy.routing_key": "billing.unknown"})
    )

    flow.run("billing")

    [dead] = flow.dead_letter.list()
    assert dead.exception_message == (
        "message ext-1 on channel 'billing' names no endpoint (header 'ecopy.endpoint_id'), and "
        "no handler on this channel takes routing key 'billing.unknown'; send it with the "
        "routing key or the type name of a handler that listens here"
    )
    assert service.log == []
