"""Dead letters in the database (DESIGN §3.5, §4): the store passes the contract, a message
that failed for good is kept in ``ecopy_dead_letters`` as the transport-neutral message, and
another instance of the application lists it and replays it to the handler that failed,
through ``app.dead_letter`` and through ``ecopy dead-letter`` unchanged."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    ErrorHandlerConfiguration,
    MessagingSystem,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    event_handler,
    named_event,
)
from ecopy_dbal import Database, DbalConfiguration
from ecopy_dbal.dead_letter import DbalDeadLetterStore, dead_letters
from tests.cli.invoking import invoke_ecopy
from tests.cli.payments_shop import table_rows
from tests.contracts.dead_letter_contract import FAILED_AT, DeadLetterContract, entry


class TestDbalDeadLetterStore(DeadLetterContract):
    @pytest.fixture
    def store(self, database):
        return DbalDeadLetterStore(database)


def test_entries_that_failed_at_the_same_moment_are_listed_in_the_order_they_came(database):
    store = DbalDeadLetterStore(database)
    for number in (3, 1, 2):
        store.add(replace(entry(number), failed_at=FAILED_AT))

    assert [e.id for e in store.list()] == ["dl-3", "dl-1", "dl-2"]
    assert [e.id for e in store.list(limit=1, offset=1)] == ["dl-1"]


# -- a shop whose card payments fail now and then ---------------------------------------------


@named_event("payment.requested")
@dataclass(frozen=True)
class PaymentRequested:
    order_id: str
    amount: int


class CardDeclined(Exception):
    pass


@dataclass
class Payments:
    declined: set[str] = field(default_factory=set)
    charged: list[str] = field(default_factory=list)

    @asynchronous("payments")
    @event_handler(endpoint_id="charge_card")
    def charge(self, event: PaymentRequested) -> None:
        if event.order_id in self.declined:
            raise CardDeclined(f"card declined for order {event.order_id}")
        self.charged.append(event.order_id)


@dataclass
class Receipts:
    sent: list[str] = field(default_factory=list)

    @asynchronous("payments")
    @event_handler(endpoint_id="send_receipt")
    def send(self, event: PaymentRequested) -> None:
        self.sent.append(event.order_id)


#: The instance that ``ecopy --app`` loads in the command-line test (set by the test).
system: MessagingSystem | None = None


@dataclass
class Shop:
    system: MessagingSystem
    payments: Payments
    receipts: Receipts


@pytest.fixture
def start_shop(database_url: str) -> Iterator[Callable[..., Shop]]:
    """Starts an instance of the shop on the test database. Its queue is in memory; its dead
    letters are in the database, shared by every instance."""
    shops: list[Shop] = []

    def start(*, declined: tuple[str, ...] = ()) -> Shop:
        payments, receipts = Payments(declined=set(declined)), Receipts()
        app = ecopy.bootstrap(
            classes=[Payments, Receipts],
            services=[payments, receipts],
            config=ServiceConfiguration(
                service_name="shop",
                extensions=[
                    DbalConfiguration(url=database_url),
                    QueueChannel("payments"),
                    # No retries: a failed message is dead-lettered at once.
                    ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 0)),
                ],
            ),
        )
        shops.append(Shop(app, payments, receipts))
        return shops[-1]

    yield start
    for shop in shops:
        database = shop.system.service(Database)
        assert database is not None
        database.dispose()


def rows(url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.select(dead_letters)).mappings()]
    finally:
        engine.dispose()


def fail_payment(start_shop: Callable[..., Shop]) -> Shop:
    """An instance that charged o-1, failed to charge o-2 and sent both receipts."""
    shop = start_shop(declined=("o-2",))
    shop.system.event_bus.publish(PaymentRequested("o-1", 30))
    shop.system.event_bus.publish(PaymentRequested("o-2", 45))
    shop.system.run("payments", finish_when_no_messages=True)
    assert (shop.payments.charged, shop.receipts.sent) == (["o-1"], ["o-1", "o-2"])
    return shop


def test_a_message_that_failed_for_good_is_kept_in_the_table(start_shop, database_url):
    fail_payment(start_shop)

    (row,) = rows(database_url)

    assert (row["channel"], row["endpoint_id"], row["message_type"]) == (
        "payments",
        "charge_card",
        "payment.requested",
    )
    assert (row["exception_type"], row["exception_message"]) == (
        "CardDeclined",
        "card declined for order o-2",
    )
    assert row["traceback"].startswith("Traceback (most recent call last):")
    assert abs(time.time() - row["failed_at"]) < 60
    body = json.loads(row["body"])
    assert body["type"] == "payment.requested"
    assert body["payload"] == {"order_id": "o-2", "amount": 45}
    assert body["headers"]["id"] == row["message_id"]


def test_another_instance_lists_the_dead_letter_and_replays_it_to_the_handler_that_failed(
    start_shop, database_url
):
    failed = fail_payment(start_shop)
    (stored,) = failed.system.dead_letter.list()
    other = start_shop()

    (listed,) = other.system.dead_letter.list()
    other.system.dead_letter.replay(listed.id)

    assert listed == stored
    assert rows(database_url) == []
    assert other.system.run("payments", finish_when_no_messages=True) == 1
    assert (other.payments.charged, other.receipts.sent) == (["o-2"], [])
    assert other.system.dead_letter.count() == 0


def test_the_dead_letter_command_line_works_on_the_table(
    start_shop, database_url, monkeypatch: pytest.MonkeyPatch
):
    fail_payment(start_shop)
    other = start_shop()
    monkeypatch.setattr(f"{__name__}.system", other.system)

    def ecopy_command(*args: str) -> str:
        result = invoke_ecopy("--app", f"{__name__}:system", *args)
        assert result.exit_code == 0, result.output
        return result.stdout

    (listed,) = table_rows(ecopy_command("dead-letter", "list"))
    shown = ecopy_command("dead-letter", "show", listed["Id"])
    replayed = ecopy_command("dead-letter", "replay", listed["Id"])
    left = ecopy_command("dead-letter", "list")
    run = ecopy_command("run", "payments", "--finish-when-no-messages")

    assert (listed["Channel"], listed["Endpoint"], listed["Exception"]) == (
        "payments",
        "charge_card",
        "CardDeclined",
    )
    assert "Type        payment.requested" in shown
    assert replayed == (
        f"Replayed dead letter {listed['Id']} to channel payments for endpoint charge_card.\n"
        "Run `ecopy run payments` to handle it.\n"
    )
    assert left == "No dead letters.\n"
    assert run == "Consumer payments stopped after handling 1 message.\n"
    assert other.payments.charged == ["o-2"]
    assert rows(database_url) == []
