"""Deduplication (DESIGN §3.5, §4): ``@deduplicated`` skips a message its handler has already
handled, by message id, by a header or by a computed key; ``tracking_name`` shares keys between
handlers; a failed handling records nothing; records expire on the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from ecopy import (
    ErrorHandlerConfiguration,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    deduplicated,
    event_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class PaymentReceived:
    order_id: str
    amount: int


@dataclass(frozen=True)
class RefundIssued:
    order_id: str
    amount: int


@dataclass(frozen=True)
class ShipOrder:
    order_id: str


class Ledger:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.failures = 0

    def record(self, entry: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("ledger database unavailable")
        self.entries.append(entry)


class ByMessageId:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @asynchronous("ledger")
    @deduplicated
    @event_handler
    def on_payment(self, event: PaymentReceived) -> None:
        self.ledger.record(f"paid {event.order_id} {event.amount}")


class ByHeader:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @deduplicated("payment_reference")
    @asynchronous("ledger")
    @event_handler
    def on_payment(self, event: PaymentReceived) -> None:
        self.ledger.record(f"paid {event.order_id} {event.amount}")


class ByKey:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @asynchronous("ledger")
    @deduplicated(key=lambda message: message.payload.order_id)
    @event_handler
    def on_payment(self, event: PaymentReceived) -> None:
        self.ledger.record(f"paid {event.order_id} {event.amount}")


class SharedTracking:
    """Payments and refunds of an order are booked once between them."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @asynchronous("ledger")
    @deduplicated("order_id", tracking_name="order_booking")
    @event_handler
    def on_payment(self, event: PaymentReceived) -> None:
        self.ledger.record(f"paid {event.order_id}")

    @asynchronous("ledger")
    @deduplicated("order_id", tracking_name="order_booking")
    @event_handler
    def on_refund(self, event: RefundIssued) -> None:
        self.ledger.record(f"refunded {event.order_id}")


class SeparateTracking:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @asynchronous("ledger")
    @deduplicated("order_id")
    @event_handler
    def on_payment(self, event: PaymentReceived) -> None:
        self.ledger.record(f"paid {event.order_id}")

    @asynchronous("ledger")
    @deduplicated("order_id")
    @event_handler
    def on_refund(self, event: RefundIssued) -> None:
        self.ledger.record(f"refunded {event.order_id}")


def ledger_flow(handler_class: type, ledger: Ledger, *extensions: object, **config: object):
    return bootstrap_flow_testing(
        classes=[handler_class],
        services=[handler_class(ledger)],
        config=ServiceConfiguration(extensions=list(extensions), **config),
        enable_asynchronous_processing=[QueueChannel("ledger")],
    )


def test_a_message_with_an_id_already_handled_is_skipped():
    ledger = Ledger()
    flow = ledger_flow(ByMessageId, ledger)

    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"})
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"})
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-2"})
    flow.run("ledger")

    assert ledger.entries == ["paid o-1 30", "paid o-1 30"]
    assert len(flow.system.channel("ledger")) == 0


def test_a_redelivered_message_is_skipped_across_runs():
    ledger = Ledger()
    flow = ledger_flow(ByMessageId, ledger)
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"}).run("ledger")

    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"}).run("ledger")

    assert ledger.entries == ["paid o-1 30"]


def test_a_header_can_be_the_deduplication_key():
    ledger = Ledger()
    flow = ledger_flow(ByHeader, ledger)

    flow.publish_event(PaymentReceived("o-1", 30), headers={"payment_reference": "pay-1"})
    flow.publish_event(PaymentReceived("o-1", 30), headers={"payment_reference": "pay-1"})
    flow.publish_event(PaymentReceived("o-2", 10), headers={"payment_reference": "pay-2"})
    flow.run("ledger")

    assert ledger.entries == ["paid o-1 30", "paid o-2 10"]


def test_a_message_without_the_key_header_is_handled_every_time():
    ledger = Ledger()
    flow = ledger_flow(ByHeader, ledger)

    flow.publish_event(PaymentReceived("o-1", 30)).publish_event(PaymentReceived("o-1", 30))
    flow.run("ledger")

    assert ledger.entries == ["paid o-1 30", "paid o-1 30"]


def test_a_computed_key_deduplicates_by_what_the_function_returns():
    ledger = Ledger()
    flow = ledger_flow(ByKey, ledger)

    flow.publish_event(PaymentReceived("o-1", 30)).publish_event(PaymentReceived("o-1", 99))
    flow.publish_event(PaymentReceived("o-2", 10))
    flow.run("ledger")

    assert ledger.entries == ["paid o-1 30", "paid o-2 10"]


def test_handlers_sharing_a_tracking_name_share_their_keys():
    ledger = Ledger()
    flow = ledger_flow(SharedTracking, ledger)

    flow.publish_event(PaymentReceived("o-1", 30), headers={"order_id": "o-1"})
    flow.publish_event(RefundIssued("o-1", 30), headers={"order_id": "o-1"})
    flow.publish_event(RefundIssued("o-2", 5), headers={"order_id": "o-2"})
    flow.run("ledger")

    assert ledger.entries == ["paid o-1", "refunded o-2"]


def test_different_handlers_keep_their_keys_apart():
    ledger = Ledger()
    flow = ledger_flow(SeparateTracking, ledger)

    flow.publish_event(PaymentReceived("o-1", 30), headers={"order_id": "o-1"})
    flow.publish_event(RefundIssued("o-1", 30), headers={"order_id": "o-1"})
    flow.publish_event(PaymentReceived("o-1", 30), headers={"order_id": "o-1"})
    flow.run("ledger")

    assert ledger.entries == ["paid o-1", "refunded o-1"]


def test_a_failed_handling_records_no_key_so_the_retry_runs():
    ledger = Ledger()
    ledger.failures = 1
    flow = ledger_flow(
        ByMessageId, ledger, ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 2))
    )
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"}).run("ledger")
    assert ledger.entries == []

    flow.advance_time(1).run("ledger")

    assert ledger.entries == ["paid o-1 30"]
    assert flow.dead_letter.count() == 0


def test_a_failed_handling_without_error_handling_is_handled_by_the_next_run():
    ledger = Ledger()
    ledger.failures = 1
    flow = ledger_flow(ByMessageId, ledger)
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"})

    with pytest.raises(ConnectionError):
        flow.run("ledger")
    flow.run("ledger")

    assert ledger.entries == ["paid o-1 30"]


def test_deduplication_records_expire_after_the_configured_time():
    ledger = Ledger()
    flow = ledger_flow(ByMessageId, ledger, deduplication_expire_after=3600)
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"}).run("ledger")

    flow.advance_time(timedelta(minutes=59))
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"}).run("ledger")
    assert ledger.entries == ["paid o-1 30"]

    flow.advance_time(timedelta(minutes=2))
    flow.publish_event(PaymentReceived("o-1", 30), headers={"id": "m-1"}).run("ledger")
    assert ledger.entries == ["paid o-1 30", "paid o-1 30"]


def test_synchronous_handlers_are_deduplicated_too():
    shipped: list[str] = []

    class Shipping:
        @deduplicated
        @command_handler
        def ship(self, command: ShipOrder) -> None:
            shipped.append(command.order_id)

    flow = bootstrap_flow_testing(classes=[Shipping], services=[Shipping()])

    flow.send_command(ShipOrder("o-1"), headers={"id": "m-1"})
    flow.send_command(ShipOrder("o-1"), headers={"id": "m-1"})

    assert shipped == ["o-1"]
