"""Deduplication records in the database (DESIGN §3.5, §4): the store passes the contract,
a claim commits or rolls back with the handler's transaction and makes a concurrent claim of
the same key wait for that outcome, expired records are purged on their own, and a
``@deduplicated`` handler of an application on the database skips duplicates."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    MessagingSystem,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    deduplicated,
    event_handler,
)
from ecopy_dbal import Database, DbalConfiguration
from ecopy_dbal.deduplication import DbalDeduplicationStore, deduplication
from tests.contracts.deduplication_contract import HOUR, NOW, DeduplicationContract

SERVERS = [
    # SQLite runs one write transaction at a time: a second claim cannot even begin while
    # the first transaction is open, so there is no concurrent claim to observe.
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


class TestDbalDeduplicationStore(DeduplicationContract):
    @pytest.fixture
    def store(self, database):
        return DbalDeduplicationStore(database)

    @pytest.fixture
    def unit_of_work(self, database):
        return database.transaction


def records(database: Database) -> dict[tuple[str, str], float]:
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(deduplication))
        return {(row.scope, row.key): row.expires_at for row in rows}


def poll(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


# -- the store on its own ----------------------------------------------------------------


def test_keys_longer_than_the_column_are_kept_apart_and_refused_again(database):
    store = DbalDeduplicationStore(database)
    common = "order-1/" + "x" * 300

    assert store.claim("notify_customer", common + "a", NOW, NOW + HOUR) is True
    assert store.claim("notify_customer", common + "b", NOW, NOW + HOUR) is True
    assert store.claim("notify_customer", common + "a", NOW, NOW + HOUR) is False
    assert all(len(key) <= 255 for _, key in records(database))


def test_expired_records_are_purged_by_later_claims(database):
    store = DbalDeduplicationStore(database, purge_every=3)
    store.claim("notify_customer", "short-1", NOW, NOW + 60)
    store.claim("notify_customer", "short-2", NOW, NOW + 60)
    store.claim("notify_customer", "long", NOW, NOW + HOUR)
    assert len(records(database)) == 3  # the purge of the third claim found nothing expired

    later = NOW + 120
    store.claim("bill_customer", "m-1", later, later + HOUR)
    store.claim("bill_customer", "m-2", later, later + HOUR)
    store.claim("bill_customer", "m-3", later, later + HOUR)

    assert set(records(database)) == {
        ("notify_customer", "long"),
        ("bill_customer", "m-1"),
        ("bill_customer", "m-2"),
        ("bill_customer", "m-3"),
    }


def test_a_purge_is_bounded(database):
    store = DbalDeduplicationStore(database, purge_every=1, purge_limit=2)
    for number in range(5):
        store.claim("notify_customer", f"m-{number}", NOW, NOW + 60)

    store.claim("notify_customer", "late", NOW + 120, NOW + HOUR)

    assert len(records(database)) == 4  # 5 expired, 2 purged, 1 new


def test_a_claim_in_a_transaction_commits_with_it(database):
    store = DbalDeduplicationStore(database)

    with database.transaction():
        assert store.claim("notify_customer", "m-1", NOW, NOW + HOUR) is True

    assert records(database) == {("notify_customer", "m-1"): NOW + HOUR}


def test_a_claim_in_a_transaction_that_rolls_back_leaves_no_record(database):
    store = DbalDeduplicationStore(database)

    with pytest.raises(ConnectionError), database.transaction():
        assert store.claim("notify_customer", "m-1", NOW, NOW + HOUR) is True
        raise ConnectionError("mail server down")

    assert records(database) == {}
    assert store.claim("notify_customer", "m-1", NOW + 1, NOW + HOUR) is True


def test_taking_over_an_expired_record_and_purging_in_one_transaction_do_not_block(database):
    store = DbalDeduplicationStore(database, purge_every=3)
    store.claim("notify_customer", "m-1", NOW, NOW + 60)
    store.claim("notify_customer", "m-2", NOW, NOW + 60)
    later = NOW + 120
    finished = threading.Event()

    def claim_again() -> None:
        # The purge runs while this transaction holds the record it just took over.
        with database.transaction():
            assert store.claim("notify_customer", "m-1", later, later + HOUR) is True
        finished.set()

    threading.Thread(target=claim_again, daemon=True).start()

    poll(finished.is_set, "the claim returned")
    assert records(database) == {("notify_customer", "m-1"): later + HOUR}


# -- two claims of one key, each in its own transaction ---------------------------------------


class Claimer:
    """Claims ``m-1`` in a transaction of its own thread, and keeps the transaction open until
    told to commit or roll back."""

    def __init__(self, database: Database, store: DbalDeduplicationStore) -> None:
        self.database = database
        self.store = store
        self.backend: int | None = None
        self.claimed: bool | None = None
        self._finish = threading.Event()
        self._roll_back = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self.database.transaction() as connection:
                self.backend = backend_id(connection)
                self.claimed = self.store.claim("notify_customer", "m-1", NOW, NOW + HOUR)
                self._finish.wait(timeout=30)
                if self._roll_back:
                    raise ConnectionError("the handler failed")
        except ConnectionError:
            pass

    def commit(self) -> bool | None:
        self._finish.set()
        self._thread.join(timeout=30)
        return self.claimed

    def roll_back(self) -> bool | None:
        self._roll_back = True
        return self.commit()


def backend_id(connection: sa.Connection) -> int:
    if connection.dialect.name == "postgresql":
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return int(connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())


def waits_for_a_lock(database: Database, backend: int | None) -> bool:
    if backend is None:
        return False
    with database.engine.connect() as connection:
        if database.dialect == "postgresql":
            state = connection.execute(
                sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": backend},
            ).scalar()
            return state == "Lock"
        state = connection.execute(
            sa.text(
                "SELECT trx_state FROM information_schema.innodb_trx "
                "WHERE trx_mysql_thread_id = :id"
            ),
            {"id": backend},
        ).scalar()
        return state == "LOCK WAIT"


@pytest.fixture(params=["new", "expired"])
def existing_record(request, database) -> str:
    """The key is new, or its record has expired: a claim inserts it or takes it over."""
    if request.param == "expired":
        DbalDeduplicationStore(database).claim("notify_customer", "m-1", NOW - HOUR, NOW - 1)
    return str(request.param)


@pytest.mark.parametrize("database_url", SERVERS, indirect=True)
def test_a_concurrent_claim_waits_for_the_first_to_commit_and_is_refused(database, existing_record):
    store = DbalDeduplicationStore(database)
    first = Claimer(database, store)
    poll(lambda: first.claimed is not None, "the first claim returned")
    second = Claimer(database, store)

    poll(lambda: waits_for_a_lock(database, second.backend), "the second claim waits")
    assert second.claimed is None

    assert first.commit() is True
    assert second.commit() is False
    assert records(database) == {("notify_customer", "m-1"): NOW + HOUR}


@pytest.mark.parametrize("database_url", SERVERS, indirect=True)
def test_a_concurrent_claim_waits_for_the_first_to_roll_back_and_wins(database, existing_record):
    store = DbalDeduplicationStore(database)
    first = Claimer(database, store)
    poll(lambda: first.claimed is not None, "the first claim returned")
    second = Claimer(database, store)

    poll(lambda: waits_for_a_lock(database, second.backend), "the second claim waits")
    assert second.claimed is None

    assert first.roll_back() is True
    assert second.commit() is True
    assert records(database) == {("notify_customer", "m-1"): NOW + HOUR}


# -- @deduplicated handlers of an application on the database -------------------------------


@dataclass(frozen=True)
class PaymentReceived:
    order_id: str
    amount: int


@dataclass(frozen=True)
class ShipOrder:
    order_id: str


@dataclass
class Ledger:
    entries: list[str] = field(default_factory=list)
    failures: int = 0

    @asynchronous("ledger")
    @deduplicated
    @event_handler(endpoint_id="book_payment")
    def on_payment(self, event: PaymentReceived, connection: sa.Connection) -> None:
        # Written in the handler's transaction, like the deduplication record.
        connection.execute(
            sa.text("INSERT INTO ledger_entries (entry) VALUES (:entry)"),
            {"entry": f"paid {event.order_id}"},
        )
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("ledger database unavailable")
        self.entries.append(f"paid {event.order_id} {event.amount}")


@dataclass(frozen=True)
class ArchiveOrder:
    order_id: str


@dataclass
class Shipping:
    shipped: list[str] = field(default_factory=list)

    @deduplicated
    @command_handler(endpoint_id="ship_order")
    def ship(self, command: ShipOrder) -> None:
        self.shipped.append(command.order_id)

    @deduplicated
    @command_handler(endpoint_id="archive_order")
    def archive(self, command: ArchiveOrder, connection: sa.Connection) -> None:
        # A mistake in the handler's own SQL; on PostgreSQL it aborts the transaction.
        connection.execute(
            sa.text("INSERT INTO order_archive (order_id) VALUES (:order_id)"),
            {"order_id": command.order_id},
        )


@pytest.fixture
def shop(database_url: str) -> Iterator[tuple[MessagingSystem, Ledger, Shipping]]:
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE ledger_entries (entry VARCHAR(100))")
    engine.dispose()
    ledger, shipping = Ledger(), Shipping()
    system = ecopy.bootstrap(
        classes=[Ledger, Shipping],
        services=[ledger, shipping],
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(url=database_url),
                QueueChannel("ledger"),
            ]
        ),
    )
    yield system, ledger, shipping
    database = system.service(Database)
    assert database is not None
    database.dispose()


def ledger_rows(system: MessagingSystem) -> list[str]:
    database = system.service(Database)
    assert database is not None
    with database.engine.connect() as connection:
        return list(connection.exec_driver_sql("SELECT entry FROM ledger_entries").scalars())


def dedup_keys(system: MessagingSystem) -> set[tuple[str, str]]:
    database = system.service(Database)
    assert database is not None
    return set(records(database))


def test_a_duplicate_message_is_skipped_by_an_asynchronous_handler(shop):
    system, ledger, _ = shop
    system.event_bus.publish(PaymentReceived("o-1", 30), headers={"id": "m-1"})
    system.event_bus.publish(PaymentReceived("o-1", 30), headers={"id": "m-1"})
    system.event_bus.publish(PaymentReceived("o-2", 10), headers={"id": "m-2"})

    system.run("ledger", finish_when_no_messages=True)

    assert ledger.entries == ["paid o-1 30", "paid o-2 10"]
    assert ledger_rows(system) == ["paid o-1", "paid o-2"]
    assert dedup_keys(system) == {("book_payment", "m-1"), ("book_payment", "m-2")}


def test_a_failed_handling_leaves_no_record_so_the_redelivery_is_handled(shop):
    system, ledger, _ = shop
    ledger.failures = 1
    system.event_bus.publish(PaymentReceived("o-1", 30), headers={"id": "m-1"})

    with pytest.raises(ConnectionError):
        system.run("ledger", finish_when_no_messages=True)
    assert dedup_keys(system) == set()
    assert ledger_rows(system) == []

    system.run("ledger", finish_when_no_messages=True)

    assert ledger.entries == ["paid o-1 30"]
    assert ledger_rows(system) == ["paid o-1"]
    assert dedup_keys(system) == {("book_payment", "m-1")}


def test_a_duplicate_command_is_skipped(shop):
    system, _, shipping = shop

    system.command_bus.send(ShipOrder("o-1"), headers={"id": "c-1"})
    system.command_bus.send(ShipOrder("o-1"), headers={"id": "c-1"})
    system.command_bus.send(ShipOrder("o-1"), headers={"id": "c-2"})

    assert shipping.shipped == ["o-1", "o-1"]
    assert dedup_keys(system) == {("ship_order", "c-1"), ("ship_order", "c-2")}


def test_a_handler_whose_own_sql_failed_reports_that_error_and_leaves_no_record(shop):
    system, _, _ = shop

    with pytest.raises(sa.exc.DBAPIError, match="order_archive"):
        system.command_bus.send(ArchiveOrder("o-1"), headers={"id": "c-1"})

    assert dedup_keys(system) == set()
