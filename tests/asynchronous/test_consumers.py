"""Running consumers (DESIGN §3.6): ``app.run`` with its limits, ``PollingMetadata`` defaults
per consumer, ``list_consumers()``, and what happens to a failed message when no error
handling is configured (the run stops, the message stays for a later run)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pytest

import ecopy
from ecopy import (
    ErrorHandlerConfiguration,
    PollingMetadata,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    event_handler,
    internal_handler,
    scheduled,
)
from ecopy.messaging.consumer import ConsumerLimitError


@dataclass(frozen=True)
class SendInvoice:
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


class Billing:
    def __init__(self) -> None:
        self.invoiced: list[str] = []
        self.broken: set[str] = set()

    @asynchronous("billing")
    @command_handler(endpoint_id="send_invoice")
    def send_invoice(self, command: SendInvoice) -> None:
        if command.order_id in self.broken:
            raise ConnectionError(f"cannot invoice {command.order_id}")
        self.invoiced.append(command.order_id)

    @asynchronous("billing")
    @event_handler(endpoint_id="open_account")
    def open_account(self, event: OrderPlaced) -> None:
        self.invoiced.append(f"account for {event.order_id}")


class Reports:
    @scheduled("reports", endpoint_id="nightly_report", cron="0 2 * * *")
    def nightly(self) -> dict:
        return {"kind": "nightly"}

    @internal_handler("reports")
    def file_report(self, report: dict) -> None:
        pass


def billing_app(billing: Billing, *extensions: object) -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[Billing],
        services=[billing],
        config=ServiceConfiguration(extensions=[QueueChannel("billing"), *extensions]),
    )


def send_invoices(app: ecopy.MessagingSystem, *order_ids: str) -> None:
    for order_id in order_ids:
        app.command_bus.send(SendInvoice(order_id))


# -- limits ------------------------------------------------------------------------------


def test_finish_when_no_messages_handles_everything_queued_and_returns_the_count():
    billing = Billing()
    app = billing_app(billing)
    send_invoices(app, "o-1", "o-2", "o-3")

    assert app.run("billing", finish_when_no_messages=True) == 3

    assert billing.invoiced == ["o-1", "o-2", "o-3"]
    assert app.run("billing", finish_when_no_messages=True) == 0


def test_handled_message_limit_leaves_the_rest_for_the_next_run():
    billing = Billing()
    app = billing_app(billing)
    send_invoices(app, "o-1", "o-2", "o-3")

    assert app.run("billing", handled_message_limit=2) == 2
    assert billing.invoiced == ["o-1", "o-2"]

    assert app.run("billing", handled_message_limit=5, finish_when_no_messages=True) == 1
    assert billing.invoiced == ["o-1", "o-2", "o-3"]


def test_execution_time_limit_stops_an_idle_consumer():
    app = billing_app(Billing(), PollingMetadata("billing", poll_interval_ms=5))

    started = time.monotonic()
    handled = app.run("billing", execution_time_limit_ms=50)

    assert handled == 0
    assert 0.05 <= time.monotonic() - started < 5


def test_a_memory_limit_below_what_the_process_already_uses_is_refused_before_any_message():
    billing = Billing()
    app = billing_app(billing)
    send_invoices(app, "o-1")

    with pytest.raises(ConsumerLimitError) as refused:
        app.run("billing", memory_limit_mb=1)

    assert str(refused.value).startswith(
        "consumer billing cannot start: its memory limit (1 MB) is below what this process has "
        "already used ("
    )
    assert "give a memory limit above" in str(refused.value)
    assert billing.invoiced == []
    assert app.run("billing", memory_limit_mb=1_000_000, finish_when_no_messages=True) == 1
    assert billing.invoiced == ["o-1"]


def test_stop_on_error_stops_after_the_first_failed_message():
    billing = Billing()
    billing.broken = {"o-1"}
    app = billing_app(billing, ErrorHandlerConfiguration("errorChannel", None))
    send_invoices(app, "o-1", "o-2")

    assert app.run("billing", stop_on_error=True, finish_when_no_messages=True) == 1

    assert billing.invoiced == []
    assert app.dead_letter.count() == 1
    assert app.run("billing", finish_when_no_messages=True) == 1
    assert billing.invoiced == ["o-2"]


def test_without_stop_on_error_a_failed_message_does_not_stop_the_run():
    billing = Billing()
    billing.broken = {"o-1"}
    app = billing_app(billing, ErrorHandlerConfiguration("errorChannel", None))
    send_invoices(app, "o-1", "o-2")

    assert app.run("billing", finish_when_no_messages=True) == 2

    assert billing.invoiced == ["o-2"]
    assert app.dead_letter.count() == 1


# -- PollingMetadata ---------------------------------------------------------------------


def test_polling_metadata_gives_the_consumer_its_default_limits():
    billing = Billing()
    app = billing_app(
        billing,
        PollingMetadata("billing", handled_message_limit=2, finish_when_no_messages=True),
    )
    send_invoices(app, "o-1", "o-2", "o-3")

    assert app.run("billing") == 2
    assert billing.invoiced == ["o-1", "o-2"]

    assert app.run("billing", handled_message_limit=10) == 1
    assert billing.invoiced == ["o-1", "o-2", "o-3"]


def test_polling_metadata_can_make_a_consumer_stop_on_error():
    billing = Billing()
    billing.broken = {"o-1"}
    app = billing_app(
        billing,
        ErrorHandlerConfiguration("errorChannel", None),
        PollingMetadata("billing", stop_on_error=True, finish_when_no_messages=True),
    )
    send_invoices(app, "o-1", "o-2")

    assert app.run("billing") == 1
    assert billing.invoiced == []


def test_polling_metadata_for_an_unknown_consumer_is_a_configuration_error():
    with pytest.raises(ecopy.ConfigurationError, match=r"'biling'.*billing"):
        billing_app(Billing(), PollingMetadata("biling"))


# -- listing -----------------------------------------------------------------------------


def test_list_consumers_shows_each_channel_with_its_endpoints_and_the_scheduled_ones():
    app = ecopy.bootstrap(
        classes=[Billing, Reports],
        services=[Billing()],
        config=ServiceConfiguration(extensions=[QueueChannel("billing")]),
    )

    consumers = {consumer.name: consumer for consumer in app.list_consumers()}

    assert set(consumers) == {"billing", "nightly_report"}
    assert consumers["billing"].channel == "billing"
    assert set(consumers["billing"].endpoints) == {"send_invoice", "open_account"}
    assert consumers["nightly_report"].endpoints == ("nightly_report",)


def test_running_an_unknown_consumer_names_the_known_ones():
    app = billing_app(Billing())

    with pytest.raises(ecopy.EcopyError, match=r"'biling'.*billing"):
        app.run("biling", finish_when_no_messages=True)


# -- no error handling: the final failure strategy is "stop" -----------------------------


def test_without_error_handling_a_failure_stops_the_run_and_the_message_stays_first():
    billing = Billing()
    billing.broken = {"o-1"}
    app = billing_app(billing)
    send_invoices(app, "o-1", "o-2")

    with pytest.raises(ConnectionError, match="cannot invoice o-1"):
        app.run("billing", finish_when_no_messages=True)
    assert billing.invoiced == []
    assert app.dead_letter.count() == 0

    billing.broken = set()
    assert app.run("billing", finish_when_no_messages=True) == 2
    assert billing.invoiced == ["o-1", "o-2"]


def strategy_app(billing: Billing, strategy: str) -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[Billing],
        services=[billing],
        config=ServiceConfiguration(
            extensions=[QueueChannel("billing", final_failure_strategy=strategy)]
        ),
    )


def test_the_resend_strategy_puts_a_failed_message_behind_the_others_and_goes_on():
    billing = Billing()
    billing.broken = {"o-1"}
    app = strategy_app(billing, "resend")
    send_invoices(app, "o-1", "o-2")

    assert app.run("billing", handled_message_limit=2) == 2
    assert billing.invoiced == ["o-2"]
    billing.broken = set()
    assert app.run("billing", finish_when_no_messages=True) == 1
    assert billing.invoiced == ["o-2", "o-1"]


def test_the_release_strategy_puts_a_failed_message_back_first_and_goes_on():
    billing = Billing()
    billing.broken = {"o-1"}
    app = strategy_app(billing, "release")
    send_invoices(app, "o-1", "o-2")

    assert app.run("billing", handled_message_limit=3) == 3  # o-1 three times, no raise
    assert billing.invoiced == []
    billing.broken = set()
    assert app.run("billing", finish_when_no_messages=True) == 2
    assert billing.invoiced == ["o-1", "o-2"]


def test_the_ignore_strategy_drops_a_failed_message_with_a_log(caplog):
    billing = Billing()
    billing.broken = {"o-1"}
    app = strategy_app(billing, "ignore")
    send_invoices(app, "o-1", "o-2")

    with caplog.at_level(logging.ERROR, logger="ecopy.consumer"):
        assert app.run("billing", finish_when_no_messages=True) == 2
    assert billing.invoiced == ["o-2"]
    assert "cannot invoice o-1" in caplog.text and "'ignore'" in caplog.text
    assert app.dead_letter.count() == 0


def test_an_unknown_final_failure_strategy_is_refused():
    with pytest.raises(ValueError, match="final_failure_strategy must be"):
        QueueChannel("billing", final_failure_strategy="retry-forever")


# -- replicas: one consumer in several threads -------------------------------------------


def test_a_replica_has_a_stop_request_of_its_own_and_shares_the_channel():
    billing = Billing()
    app = billing_app(billing)
    send_invoices(app, "o-1", "o-2", "o-3")
    consumer = app._consumer("billing")
    replica = consumer.replica()
    finish = app._limits("billing", finish_when_no_messages=True)

    replica.stop()  # as a signal does while the replica is starting: it takes nothing

    assert replica.run(finish) == 0
    assert consumer.run(finish) == 3  # the stop request was the replica's alone
    assert billing.invoiced == ["o-1", "o-2", "o-3"]
    assert (replica.name, replica.channel, replica.handlers) == (
        consumer.name,
        consumer.channel,
        consumer.handlers,
    )
