"""``ecopy status``: per channel, the messages waiting, due, in flight and dead-lettered, as a
table or as JSON. The database queues are tested in tests/dbal/test_status.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest

from ecopy import DELIVERY_DELAY, Message, MessagingSystem, ServiceConfiguration, bootstrap
from ecopy.config.modules import ModuleContext
from tests.cli.async_app import OrderPlaced
from tests.cli.invoking import invoke_ecopy
from tests.cli.payments_shop import PaymentsShop, table_rows


def test_a_row_per_channel_with_its_counts(shop: PaymentsShop) -> None:
    shop.decline("o-2")
    shop.place_orders("o-1", "o-2")
    shop.run_orders()  # o-2's charge fails for good: a dead letter of "orders"
    shop.place_orders("o-3")  # two messages, one per handler
    shop.system.event_bus.publish(
        OrderPlaced("o-4", 10), headers={DELIVERY_DELAY: timedelta(hours=1)}
    )

    result = shop.ecopy("status")

    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        {"Channel": "orders", "Waiting": "4", "Due": "2", "In flight": "0", "Dead-lettered": "1"}
    ]


def test_json_gives_the_same_counts_to_scripts(shop: PaymentsShop) -> None:
    shop.place_orders("o-1")

    result = shop.ecopy("status", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "channel": "orders",
            "waiting": 2,
            "due": 2,
            "in_flight": 0,
            "dead_lettered": 0,
            "declared": True,
            "reported": True,
        }
    ]


def test_an_unknown_channel_is_a_usage_error_listing_the_known_ones(shop: PaymentsShop) -> None:
    result = shop.ecopy("status", "order")

    assert result.exit_code == 2
    assert "Unknown channel 'order'; known channels: orders" in result.output


def test_without_an_application_it_says_how_to_name_one() -> None:
    result = invoke_ecopy("status")

    assert result.exit_code == 2
    assert "--app" in result.output


# -- a channel that cannot count its messages ------------------------------------------------


class BrokerQueue:
    """A pollable channel of some broker that does not report its status."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, message: Message) -> None:
        raise AssertionError("nothing is sent in this test")

    def receive(self) -> Message | None:
        return None


@dataclass(frozen=True)
class BrokerModule:
    name: str

    def register(self, context: ModuleContext) -> None:
        context.add_channel(self.name, BrokerQueue(self.name))


system: MessagingSystem | None = None


@pytest.fixture
def with_broker_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    app = bootstrap(config=ServiceConfiguration(extensions=[BrokerModule("emails")]))
    monkeypatch.setattr(f"{__name__}.system", app)


@pytest.mark.usefixtures("with_broker_queue")
def test_a_channel_that_cannot_count_is_listed_as_not_reported() -> None:
    table = invoke_ecopy("--app", f"{__name__}:system", "status")
    as_json = invoke_ecopy("--app", f"{__name__}:system", "status", "--json")

    assert table.exit_code == 0, table.output
    assert table_rows(table.stdout) == [
        {
            "Channel": "emails",
            "Waiting": "not reported",
            "Due": "not reported",
            "In flight": "not reported",
            "Dead-lettered": "0",
        }
    ]
    (emails,) = json.loads(as_json.stdout)
    assert emails["reported"] is False
    assert emails["waiting"] is None and emails["dead_lettered"] == 0


def test_an_application_without_queues_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.system", bootstrap())

    result = invoke_ecopy("--app", f"{__name__}:system", "status")

    assert result.exit_code == 0, result.output
    assert "No channels" in result.output
