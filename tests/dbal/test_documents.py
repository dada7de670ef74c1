"""State-stored aggregates and sagas in the database (DESIGN §3.4, §4): the repository passes
the contract, an application's aggregates and sagas outlive it, optimistic locking holds
between concurrent commands, and a failed command leaves the stored documents as they were."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    AggregateNotFound,
    AggregateVersion,
    CommandBus,
    ConcurrencyError,
    Identifier,
    MessagingSystem,
    ServiceConfiguration,
    TargetVersion,
    WithEvents,
    aggregate,
    command_handler,
    event_handler,
    saga,
)
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.naming import TypeRegistry, type_name
from ecopy_dbal import Database, DbalConfiguration
from ecopy_dbal.codec import Codec
from ecopy_dbal.documents import DbalRepository, documents
from tests.contracts.repository_contract import RepositoryContract


class TestDbalRepository(RepositoryContract):
    @pytest.fixture
    def repository(self, database):
        return DbalRepository(database, Codec(TypeRegistry(), PayloadConversion()))

    @pytest.fixture
    def unit_of_work(self, database):
        return database.transaction


# -- a bank: an aggregate, a saga and a service that moves money between accounts ----------


@dataclass(frozen=True)
class OpenAccount:
    account_id: str
    owner: str


@dataclass(frozen=True)
class Deposit:
    account_id: str
    amount: int


@dataclass(frozen=True)
class DepositSeen:
    """A deposit by a client who saw the account at version ``seen``."""

    account_id: str
    amount: int
    seen: Annotated[int, TargetVersion]


@dataclass(frozen=True)
class RacingDeposit:
    account_id: str
    amount: int


@dataclass(frozen=True)
class Withdraw:
    account_id: str
    amount: int


@dataclass(frozen=True)
class Transfer:
    source: str
    target: str
    amount: int


@dataclass(frozen=True)
class DepositOpening:
    """Open the account unless it exists, then deposit: in one transaction."""

    account_id: str
    owner: str
    amount: int


@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@dataclass(frozen=True)
class MoneyDeposited:
    account_id: str
    amount: int


class Gate:
    """Holds each racing command, once it has loaded the account, until the other one has
    loaded it too: both then save a change based on the same version."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=10)

    def wait(self) -> None:
        self.barrier.wait()


@aggregate
@dataclass
class Account(WithEvents):
    account_id: Annotated[str, Identifier]
    owner: str
    balance: int = 0
    history: list[str] = field(default_factory=list)
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    @classmethod
    def open(cls, command: OpenAccount) -> Account:
        account = cls(command.account_id, command.owner)
        account.record_that(AccountOpened(command.account_id))
        return account

    @command_handler
    def deposit(self, command: Deposit) -> int:
        return self._credit(command.amount)

    @command_handler
    def deposit_seen(self, command: DepositSeen) -> int:
        return self._credit(command.amount)

    @command_handler
    def racing_deposit(self, command: RacingDeposit, gate: Gate) -> int:
        gate.wait()
        return self._credit(command.amount)

    @command_handler
    def withdraw(self, command: Withdraw) -> int:
        self.balance -= command.amount
        self.history.append(f"-{command.amount}")
        return self.balance

    def _credit(self, amount: int) -> int:
        self.balance += amount
        self.history.append(f"+{amount}")
        self.record_that(MoneyDeposited(self.account_id, amount))
        return self.balance


@saga
@dataclass
class LoyaltyPoints:
    """One point per 10 deposited, from the account's opening on."""

    account_id: Annotated[str, Identifier]
    points: int = 0
    deposits: int = 0

    @event_handler
    @classmethod
    def start(cls, event: AccountOpened) -> LoyaltyPoints:
        return cls(event.account_id)

    @event_handler
    def on_deposit(self, event: MoneyDeposited) -> None:
        self.points += event.amount // 10
        self.deposits += 1


class Transfers:
    @command_handler
    def transfer(self, command: Transfer, commands: CommandBus) -> None:
        commands.send(Withdraw(command.source, command.amount))
        commands.send(Deposit(command.target, command.amount))

    @command_handler
    def deposit_opening(self, command: DepositOpening, commands: CommandBus) -> None:
        with contextlib.suppress(ConcurrencyError):  # open already
            commands.send(OpenAccount(command.account_id, command.owner))
        commands.send(Deposit(command.account_id, command.amount))


# -- a hand-written class: no dataclass, state set in __init__ ------------------------------


@dataclass(frozen=True)
class RegisterParcel:
    parcel_id: str
    destination: str


@dataclass(frozen=True)
class ScanParcel:
    parcel_id: str
    place: str


@dataclass(frozen=True)
class DeliverParcel:
    parcel_id: str
    on: date


@aggregate
class Parcel:
    parcel_id: Annotated[str, Identifier]
    delivered_on: date | None

    def __init__(self, parcel_id: str, destination: str) -> None:
        self.parcel_id = parcel_id
        self.destination = destination
        self.scans: list[str] = []
        self.delivered_on = None

    @command_handler
    @classmethod
    def register(cls, command: RegisterParcel) -> Parcel:
        return cls(command.parcel_id, command.destination)

    @command_handler
    def scan(self, command: ScanParcel) -> None:
        self.scans.append(command.place)

    @command_handler
    def deliver(self, command: DeliverParcel) -> None:
        self.delivered_on = command.on


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def bootstrap_bank(database_url: str) -> Iterator[Callable[[], MessagingSystem]]:
    """Starts an instance of the bank on the test database; several share it, like
    processes of one deployment."""
    systems: list[MessagingSystem] = []

    def start() -> MessagingSystem:
        system = ecopy.bootstrap(
            classes=[Account, LoyaltyPoints, Transfers, Parcel],
            services=[Transfers(), Gate()],
            config=ServiceConfiguration(
                extensions=[DbalConfiguration(url=database_url, auto_setup=True)]
            ),
        )
        systems.append(system)
        return system

    yield start
    for system in systems:
        database = system.service(Database)
        assert database is not None
        database.dispose()


@pytest.fixture
def bank(bootstrap_bank: Callable[[], MessagingSystem]) -> MessagingSystem:
    return bootstrap_bank()


def stored(url: str) -> dict[tuple[str, str], int]:
    """The rows of ``ecopy_documents``: (collection, document id) -> version."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(documents.c.collection, documents.c.document_id, documents.c.version)
            )
            return {(row.collection, row.document_id): row.version for row in rows}
    finally:
        engine.dispose()


def account(system: MessagingSystem, account_id: str) -> Account:
    found = system.aggregates.find(Account, account_id)
    assert isinstance(found, Account)
    return found


def race(*sends: Callable[[], Any]) -> tuple[list[Any], list[Exception]]:
    """Run each send in its own thread; the results and the errors."""
    results: list[Any] = []
    errors: list[Exception] = []

    def run(send: Callable[[], Any]) -> None:
        try:
            results.append(send())
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(send,)) for send in sends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


# -- flows -----------------------------------------------------------------------------------


def test_aggregates_and_sagas_are_documents_that_a_second_instance_reads_and_changes(
    bootstrap_bank, database_url
):
    first = bootstrap_bank()
    first.command_bus.send(OpenAccount("a-1", "Ada"))
    first.command_bus.send(Deposit("a-1", 50))
    first.command_bus.send(Deposit("a-1", 25))

    second = bootstrap_bank()
    second.command_bus.send(Deposit("a-1", 100))

    ada = account(second, "a-1")
    assert (ada.owner, ada.balance, ada.history, ada.version) == (
        "Ada",
        175,
        ["+50", "+25", "+100"],
        4,
    )
    points = second.aggregates.find(LoyaltyPoints, "a-1")
    assert (points.points, points.deposits) == (5 + 2 + 10, 3)
    assert stored(database_url) == {
        (type_name(Account), "a-1"): 4,
        (type_name(LoyaltyPoints), "a-1"): 4,
    }


def test_an_aggregate_that_was_never_created_is_not_found(bank):
    with pytest.raises(AggregateNotFound, match="a-404"):
        bank.command_bus.send(Deposit("a-404", 10))

    assert bank.aggregates.find(Account, "a-404") is None


def test_opening_an_account_twice_fails_and_keeps_the_first(bank):
    bank.command_bus.send(OpenAccount("a-1", "Ada"))

    with pytest.raises(ConcurrencyError, match="already exists"):
        bank.command_bus.send(OpenAccount("a-1", "Eve"))

    assert account(bank, "a-1").owner == "Ada"


def test_a_handler_that_catches_the_conflict_of_a_factory_carries_on_in_its_transaction(bank):
    bank.command_bus.send(DepositOpening("a-1", "Ada", 10))
    bank.command_bus.send(DepositOpening("a-1", "Ada", 20))

    ada = account(bank, "a-1")
    assert (ada.balance, ada.version) == (30, 3)


def test_of_two_clients_deciding_on_the_same_version_exactly_one_wins(bootstrap_bank):
    first, second = bootstrap_bank(), bootstrap_bank()
    first.command_bus.send(OpenAccount("a-1", "Ada"))

    results, errors = race(
        lambda: first.command_bus.send(DepositSeen("a-1", 10, seen=1)),
        lambda: second.command_bus.send(DepositSeen("a-1", 20, seen=1)),
    )

    assert len(results) == 1 and [type(e) for e in errors] == [ConcurrencyError]
    assert "version 1" in str(errors[0])
    ada = account(first, "a-1")
    assert (ada.balance, ada.version) == (results[0], 2)
    assert second.aggregates.find(LoyaltyPoints, "a-1").deposits == 1


@pytest.mark.parametrize(
    "database_url",
    [
        # SQLite runs one write transaction at a time: the second command cannot load the
        # account before the first one has committed, so there is no race to lose.
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
    indirect=True,
)
def test_of_two_commands_saving_changes_to_the_same_loaded_version_exactly_one_wins(
    bootstrap_bank, database_url
):
    bank = bootstrap_bank()
    bank.command_bus.send(OpenAccount("a-1", "Ada"))

    results, errors = race(
        lambda: bank.command_bus.send(RacingDeposit("a-1", 10)),
        lambda: bank.command_bus.send(RacingDeposit("a-1", 20)),
    )

    assert len(results) == 1 and [type(e) for e in errors] == [ConcurrencyError]
    assert "is at version 2, but the change was based on version 1" in str(errors[0])
    ada = account(bank, "a-1")
    assert (ada.balance, ada.history, ada.version) == (results[0], [f"+{results[0]}"], 2)
    assert stored(database_url)[(type_name(Account), "a-1")] == 2


def test_a_command_that_fails_after_saving_an_aggregate_leaves_the_stored_one_unchanged(
    bank, database_url
):
    bank.command_bus.send(OpenAccount("a-1", "Ada"))
    bank.command_bus.send(Deposit("a-1", 100))
    before = stored(database_url)

    # The withdrawal is saved, then the deposit fails: the transaction rolls both back.
    with pytest.raises(AggregateNotFound, match="a-missing"):
        bank.command_bus.send(Transfer("a-1", "a-missing", 30))

    ada = account(bank, "a-1")
    assert (ada.balance, ada.history, ada.version) == (100, ["+100"], 2)
    assert stored(database_url) == before

    bank.command_bus.send(OpenAccount("a-2", "Bob"))
    bank.command_bus.send(Transfer("a-1", "a-2", 30))
    assert (account(bank, "a-1").balance, account(bank, "a-2").balance) == (70, 30)


def test_a_hand_written_aggregate_class_round_trips(bootstrap_bank):
    first = bootstrap_bank()
    first.command_bus.send(RegisterParcel("p-1", "Oslo"))
    first.command_bus.send(ScanParcel("p-1", "Hamburg hub"))
    first.command_bus.send(ScanParcel("p-1", "Oslo depot"))
    first.command_bus.send(DeliverParcel("p-1", date(2026, 3, 2)))

    parcel = bootstrap_bank().aggregates.find(Parcel, "p-1")

    assert type(parcel) is Parcel
    assert vars(parcel) == {
        "parcel_id": "p-1",
        "destination": "Oslo",
        "scans": ["Hamburg hub", "Oslo depot"],
        "delivered_on": date(2026, 3, 2),
    }
