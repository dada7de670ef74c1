"""The database event store and snapshot store: the port contracts on SQLite, PostgreSQL and
MariaDB; positions in commit order, so a reader never skips an event committed late; optimistic
locking between transactions; and event-sourced aggregates that outlive their application."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    AggregateVersion,
    ConcurrencyError,
    Identifier,
    NewEvent,
    ServiceConfiguration,
    StoredEvent,
    command_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
    named_event,
)
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.naming import TypeRegistry, type_name
from ecopy.modelling.event_store import stale_version_message
from ecopy_dbal import Database, DbalConfiguration
from ecopy_dbal.codec import Codec, StoredDataError
from ecopy_dbal.database import create_database_engine
from ecopy_dbal.event_store import DbalEventStore, DbalSnapshotStore
from ecopy_dbal.sqlite import WriterGateError
from tests.contracts.event_store_contract import (
    ACCOUNTS,
    CARDS,
    DEADLINE,
    EVENT_TYPES,
    AccountOpened,
    EventStoreContract,
    MoneyDeposited,
    deposited,
    opened,
    run_in_threads,
    wait_until,
)
from tests.contracts.snapshot_store_contract import STATE_TYPES, SnapshotStoreContract, Wallet
from tests.services import ON_SERVERS, ON_SQLITE


def codec_knowing(*classes: type[Any]) -> Codec:
    names = TypeRegistry()
    assert names.register_all(classes) == []
    return Codec(names, PayloadConversion())


def event_store(database: Database) -> DbalEventStore:
    return DbalEventStore(database, codec_knowing(*EVENT_TYPES))


def positions(events: list[StoredEvent]) -> list[tuple[str, str, int, int]]:
    return [(e.stream, e.aggregate_id, e.version, e.position) for e in events]


# -- the port contracts ---------------------------------------------------------------------------


class TestDbalEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, database):
        return event_store(database)

    @pytest.fixture
    def snapshot_store(self, database):
        return DbalSnapshotStore(database, codec_knowing(*STATE_TYPES))

    @pytest.fixture
    def unit_of_work(self, database):
        return database.transaction

    @pytest.fixture
    def session_of(self, database):
        if database.dialect == "sqlite":
            return lambda connection: None
        return session_of

    @pytest.fixture
    def waits_for_its_turn(self, database):
        if database.dialect == "sqlite":
            # A transaction waits for the open one before it begins (the writer gate).
            return lambda session: True
        return lambda session: waits_for_a_lock(database.engine, session)

    @pytest.fixture
    def readers_wait_for_writers(self, database):
        return database.dialect == "sqlite"


class TestDbalSnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def store(self, database):
        return DbalSnapshotStore(database, codec_knowing(*STATE_TYPES))

    @pytest.fixture
    def unit_of_work(self, database):
        return database.transaction


# -- positions follow commits ---------------------------------------------------------------------


class Appender(threading.Thread):
    """Appends one event in a transaction of its own; remembers its server session."""

    def __init__(self, database: Database, store: DbalEventStore, aggregate_id: str) -> None:
        super().__init__(daemon=True)
        self.database, self.store, self.aggregate_id = database, store, aggregate_id
        self.session: int | None = None
        self.stored: list[StoredEvent] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.database.transaction() as connection:
                self.session = session_of(connection)
                self.stored = self.store.append(CARDS, self.aggregate_id, 0, [deposited(1)])
        except BaseException as error:
            self.error = error


def session_of(connection: sa.Connection) -> int:
    if connection.dialect.name == "postgresql":
        return int(connection.exec_driver_sql("select pg_backend_pid()").scalar_one())
    return int(connection.exec_driver_sql("select connection_id()").scalar_one())


def waits_for_a_lock(engine: sa.Engine, session: int | None) -> bool:
    """The server reports that ``session`` waits for a lock (a new transaction per look:
    PostgreSQL keeps its activity view fixed within one)."""
    if session is None:
        return False
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            state = connection.execute(
                sa.text("select wait_event_type from pg_stat_activity where pid = :session"),
                {"session": session},
            ).scalar()
            return state == "Lock"
        state = connection.execute(
            sa.text(
                "select trx_state from information_schema.innodb_trx "
                "where trx_mysql_thread_id = :session"
            ),
            {"session": session},
        ).scalar()
        return state == "LOCK WAIT"


@pytest.mark.parametrize("database_url", ON_SERVERS, indirect=True)
def test_an_append_waits_for_an_open_transaction_that_appended_and_gets_a_later_position(
    database,
):
    store = event_store(database)
    reader = event_store(Database(database.engine))  # its own transactions
    later = Appender(database, store, "c-1")

    with database.transaction():
        (first,) = store.append(ACCOUNTS, "a-1", 0, [opened()])
        later.start()

        wait_until(
            lambda: not later.is_alive() or waits_for_a_lock(database.engine, later.session),
            "the later append to wait for a lock",
        )
        assert later.is_alive(), f"the later append did not wait: {later.stored or later.error}"
        assert reader.read_all() == []

    later.join(DEADLINE)
    assert later.error is None
    (second,) = later.stored
    assert first.position < second.position
    assert positions(reader.read_all()) == positions([first, second])


def impatient_database(url: str) -> Database:
    """A database whose SQLite connections give up at once when another one is writing."""
    engine = create_database_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _no_waiting(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 0")

    return Database(engine, retry_attempts=1)


@pytest.mark.parametrize("database_url", ON_SQLITE, indirect=True)
def test_on_sqlite_no_transaction_can_append_while_one_that_appended_is_open(
    database, database_url
):
    store = event_store(database)
    impatient = impatient_database(database_url)
    other = event_store(impatient)
    try:
        with database.transaction():
            (first,) = store.append(ACCOUNTS, "a-1", 0, [opened()])

            # Another writer would wait; in this very thread it would wait for itself.
            with pytest.raises(WriterGateError, match="SQLite has one writer"):
                other.append(CARDS, "c-1", 0, [deposited(1)])

        (second,) = other.append(CARDS, "c-1", 0, [deposited(1)])
    finally:
        impatient.dispose()

    assert first.position < second.position
    assert positions(store.read_all()) == positions([first, second])


# -- optimistic locking between transactions ------------------------------------------------------


def test_commands_racing_on_one_aggregate_let_exactly_one_commit_and_roll_back_the_others(
    database,
):
    store = event_store(database)
    store.append(ACCOUNTS, "a-1", 0, [opened()])
    writers = 5
    start = threading.Barrier(writers)
    outcomes: dict[int, str] = {}

    def command(n: int) -> None:
        start.wait()
        try:
            with database.transaction():
                # The command's other work, which must go if the append fails.
                store.append(CARDS, f"c-{n}", 0, [deposited(n, f"c-{n}")])
                store.append(ACCOUNTS, "a-1", 1, [deposited(n)])
            outcomes[n] = "committed"
        except ConcurrencyError as error:
            outcomes[n] = str(error)

    run_in_threads(command, writers)

    winners = [n for n, outcome in outcomes.items() if outcome == "committed"]
    assert len(winners) == 1
    (winner,) = winners
    assert sorted(o for n, o in outcomes.items() if n != winner) == [
        stale_version_message(ACCOUNTS, "a-1", 2, 1)
    ] * (writers - 1)
    assert [e.payload for e in store.load(ACCOUNTS, "a-1")] == [
        AccountOpened("a-1", "alice"),
        MoneyDeposited("a-1", winner),
    ]
    assert store.aggregate_ids(CARDS) == [f"c-{winner}"]


def test_events_appended_in_a_transaction_that_rolls_back_are_not_stored(database):
    store = event_store(database)

    with pytest.raises(RuntimeError, match="the command failed"), database.transaction():
        store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(5)])
        assert [e.version for e in store.load(ACCOUNTS, "a-1")] == [1, 2]
        raise RuntimeError("the command failed")

    assert store.load(ACCOUNTS, "a-1") == []
    assert store.read_all() == []
    assert store.streams() == []
    assert [e.version for e in store.append(ACCOUNTS, "a-1", 0, [opened()])] == [1]


def test_aggregates_whose_ids_differ_only_in_case_or_trailing_spaces_are_different(database):
    store = event_store(database)

    store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])
    store.append(ACCOUNTS, "A-1", 0, [opened("A-1")])
    store.append(ACCOUNTS, "a-1 ", 0, [opened("a-1 ")])

    assert store.aggregate_ids(ACCOUNTS) == ["a-1", "A-1", "a-1 "]
    assert [e.payload.account_id for e in store.load(ACCOUNTS, "A-1")] == ["A-1"]


# -- what is stored -------------------------------------------------------------------------------


def test_plain_json_payloads_are_stored_as_they_are(database):
    store = event_store(database)

    store.append(ACCOUNTS, "a-1", 0, [NewEvent({"amount": 5, "tags": ["x"]}), NewEvent("closed")])

    assert [e.payload for e in store.load(ACCOUNTS, "a-1")] == [
        {"amount": 5, "tags": ["x"]},
        "closed",
    ]


def test_an_event_of_a_class_the_reading_application_does_not_know_is_refused(database):
    event_store(database).append(ACCOUNTS, "a-1", 0, [opened()])
    stranger = DbalEventStore(database, codec_knowing())

    with pytest.raises(StoredDataError) as refused:
        stranger.load(ACCOUNTS, "a-1")

    message = str(refused.value)
    assert f"event 1 of {ACCOUNTS} 'a-1'" in message
    assert type_name(AccountOpened) in message
    assert "pass the class to bootstrap" in message or "scan" in message


def test_a_snapshot_of_a_class_the_reading_application_does_not_know_is_refused(database):
    DbalSnapshotStore(database, codec_knowing(Wallet)).save("bank.wallet", "w-1", 3, Wallet("w-1"))
    stranger = DbalSnapshotStore(database, codec_knowing())

    with pytest.raises(StoredDataError) as refused:
        stranger.load("bank.wallet", "w-1")

    message = str(refused.value)
    assert "bank.wallet 'w-1'" in message
    assert type_name(Wallet) in message
    assert "delete the row from ecopy_snapshots" in message


# -- an event-sourced aggregate outlives its application -----------------------------------------


@dataclass
class OpenSavings:
    savings_id: str
    owner: str


@dataclass
class PayIn:
    savings_id: str
    amount: int


@named_event("savings.opened")
@dataclass(frozen=True)
class SavingsOpened:
    savings_id: str
    owner: str


@dataclass(frozen=True)
class PaidIn:
    savings_id: str
    amount: int


#: The amounts the appliers saw, to tell which events a load replayed.
REPLAYED: list[int] = []


@event_sourcing_aggregate(snapshot_every=3)
@dataclass
class Savings:
    savings_id: Annotated[str, Identifier] = ""
    owner: str = ""
    balance: int = 0
    payments: list[int] = field(default_factory=list)
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    @classmethod
    def open(cls, command: OpenSavings) -> list[object]:
        return [SavingsOpened(command.savings_id, command.owner)]

    @command_handler
    def pay_in(self, command: PayIn) -> list[object]:
        return [PaidIn(self.savings_id, command.amount)]

    @event_sourcing_handler
    def on_opened(self, event: SavingsOpened) -> None:
        self.savings_id, self.owner = event.savings_id, event.owner

    @event_sourcing_handler
    def on_paid_in(self, event: PaidIn) -> None:
        self.balance += event.amount
        self.payments.append(event.amount)
        REPLAYED.append(event.amount)


@pytest.fixture
def start_application(database_url) -> Iterator[Callable[[], ecopy.MessagingSystem]]:
    started: list[ecopy.MessagingSystem] = []

    def start() -> ecopy.MessagingSystem:
        dbal = DbalConfiguration(url=database_url, auto_setup=True)
        app = ecopy.bootstrap(classes=[Savings], config=ServiceConfiguration(extensions=[dbal]))
        started.append(app)
        return app

    yield start
    for app in started:
        database = app.service(Database)
        if database is not None:
            database.dispose()


def test_an_event_sourced_aggregate_is_loaded_by_another_application_from_its_snapshot(
    start_application,
):
    first = start_application()
    assert first.command_bus.send(OpenSavings("s-1", "ann")) == "s-1"
    for amount in (10, 20, 30, 40):
        first.command_bus.send(PayIn("s-1", amount))  # versions 2-5; a snapshot at 3

    second = start_application()
    REPLAYED.clear()
    savings = second.aggregates.find(Savings, "s-1")

    assert savings == Savings("s-1", "ann", 100, [10, 20, 30, 40], 5)
    assert REPLAYED == [30, 40]  # the snapshot at version 3, then the later events
    stored = second.aggregates.event_store.read_all()
    assert [type(e.payload) for e in stored] == [SavingsOpened, PaidIn, PaidIn, PaidIn, PaidIn]
    assert {e.metadata["aggregate.id"] for e in stored} == {"s-1"}

    second.command_bus.send(PayIn("s-1", 5))  # version 6; a snapshot at 6
    REPLAYED.clear()

    assert first.aggregates.find(Savings, "s-1").balance == 105
    assert REPLAYED == []
    with pytest.raises(ConcurrencyError):
        first.aggregates.event_store.append(
            type_name(Savings), "s-1", 5, [NewEvent(PaidIn("s-1", 1))]
        )
