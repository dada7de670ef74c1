"""A bank with event-sourced accounts and two projections over them: one keeps a total in
its state, one keeps balances in a table through the batch's connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa

from ecopy import (
    Identifier,
    StoredEvent,
    command_handler,
    event_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
    query_handler,
)
from ecopy.projecting import (
    ProjectionState,
    projection,
    projection_delete,
    projection_flush,
    projection_initialization,
    projection_reset,
)


@dataclass(frozen=True)
class OpenAccount:
    account_id: str


@dataclass(frozen=True)
class Deposit:
    account_id: str
    amount: int


@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@dataclass(frozen=True)
class MoneyDeposited:
    account_id: str
    amount: int


@event_sourcing_aggregate
class Account:
    account_id: Annotated[str, Identifier]

    @classmethod
    @command_handler
    def open(cls, command: OpenAccount) -> list[object]:
        return [AccountOpened(command.account_id)]

    @command_handler
    def deposit(self, command: Deposit) -> list[object]:
        return [MoneyDeposited(self.account_id, command.amount)]

    @event_sourcing_handler
    def on_opened(self, event: AccountOpened) -> None:
        self.account_id = event.account_id


@dataclass
class Totals:
    accounts: int = 0
    deposited: int = 0


@dataclass(frozen=True)
class GetTotals:
    pass


@projection("totals", from_streams=[Account])
class TotalsProjection:
    """Keeps its read model in the state the engine saves with the position."""

    def __init__(self) -> None:
        self.journal: list[str] = []
        self.fail_on_amount: int | None = None

    @projection_initialization
    def created(self) -> None:
        self.journal.append("init")

    @projection_reset
    def wiped(self) -> None:
        self.journal.append("reset")

    @projection_delete
    def dropped(self) -> None:
        self.journal.append("delete")

    @projection_flush
    def flushed(self) -> None:
        self.journal.append("flush")

    @event_handler
    def opened(self, event: AccountOpened, totals: Annotated[Totals, ProjectionState]) -> Totals:
        return Totals(totals.accounts + 1, totals.deposited)

    @event_handler
    def deposited(
        self,
        event: MoneyDeposited,
        totals: Annotated[Totals, ProjectionState],
        stored: StoredEvent,
    ) -> Totals:
        if event.amount == self.fail_on_amount:
            raise ValueError(f"cannot project {event.amount}")
        self.journal.append(f"deposit {event.amount} at {stored.position}")
        return Totals(totals.accounts, totals.deposited + event.amount)


@projection("balances", from_streams=[Account])
class Balances:
    """Keeps its read model in a table, written in the batch's transaction."""

    table = "bank_balances"

    @projection_initialization
    def create(self, connection: sa.Connection) -> None:
        connection.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {self.table} (account_id VARCHAR(50) PRIMARY KEY, "
            f"balance INTEGER NOT NULL)"
        )

    @projection_reset
    def wipe(self, connection: sa.Connection) -> None:
        connection.exec_driver_sql(f"DELETE FROM {self.table}")

    @projection_delete
    def drop(self, connection: sa.Connection) -> None:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {self.table}")

    @event_handler
    def opened(self, event: AccountOpened, connection: sa.Connection) -> None:
        connection.execute(
            sa.text(f"INSERT INTO {self.table} (account_id, balance) VALUES (:id, 0)"),
            {"id": event.account_id},
        )

    @event_handler
    def deposited(self, event: MoneyDeposited, connection: sa.Connection) -> None:
        connection.execute(
            sa.text(f"UPDATE {self.table} SET balance = balance + :amount WHERE account_id = :id"),
            {"amount": event.amount, "id": event.account_id},
        )

    @query_handler("balance.get")
    def balance(self, query: dict[str, str], connection: sa.Connection) -> int | None:
        row = connection.execute(
            sa.text(f"SELECT balance FROM {self.table} WHERE account_id = :id"),
            {"id": query["account_id"]},
        ).first()
        return None if row is None else int(row[0])
