"""The outbox (DESIGN §3.5): a ``DbalChannel`` first in a ``CombinedMessageChannel``. A
command's outgoing message commits in the same transaction as its business rows; the database
consumer relays committed messages to the next channel in batches, and the handler runs only
from there."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    CombinedMessageChannel,
    EventBus,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    event_handler,
)
from ecopy.messaging.channel import InMemoryQueue
from ecopy_dbal.channel import DbalChannel, messages
from ecopy_dbal.database import Database
from tests.dbal.queue_workers import database_module

invoices = sa.Table(
    "outbox_test_invoices",
    sa.MetaData(),
    sa.Column("invoice_id", sa.String(64), primary_key=True),
)


@dataclass(frozen=True)
class IssueInvoice:
    invoice_id: str
    reject: bool = False


@dataclass(frozen=True)
class InvoiceIssued:
    invoice_id: str


class InvoiceRejected(Exception):
    pass


class Invoicing:
    @command_handler
    def issue(self, command: IssueInvoice, connection: sa.Connection, events: EventBus) -> None:
        connection.execute(invoices.insert(), {"invoice_id": command.invoice_id})
        events.publish(InvoiceIssued(command.invoice_id))
        if command.reject:
            raise InvoiceRejected(f"invoice {command.invoice_id} rejected")


class Mailer:
    def __init__(self) -> None:
        self.mailed: list[str] = []

    @asynchronous("outbox")
    @event_handler(endpoint_id="mail_invoice")
    def mail(self, event: InvoiceIssued) -> None:
        self.mailed.append(event.invoice_id)


@dataclass
class Outbox:
    app: ecopy.MessagingSystem
    mailer: Mailer
    database: Database

    @property
    def memory(self) -> InMemoryQueue:
        queue = self.app.channel("memory")
        assert isinstance(queue, InMemoryQueue)
        return queue

    def rows(self, table: sa.Table) -> int:
        with self.database.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.fixture
def outbox(database_url) -> Iterator[Outbox]:
    mailer = Mailer()
    app = ecopy.bootstrap(
        classes=[Invoicing, Mailer],
        services=[Invoicing(), mailer],
        config=ServiceConfiguration(
            extensions=[
                database_module(database_url),
                DbalChannel("db", prefetch=10),
                QueueChannel("memory"),
                CombinedMessageChannel("outbox", ["db", "memory"]),
            ]
        ),
    )
    database = app.service(Database)
    assert database is not None
    invoices.create(database.engine)
    yield Outbox(app, mailer, database)
    database.dispose()


def test_the_message_commits_with_the_business_rows_and_waits_in_the_database(outbox):
    outbox.app.command_bus.send(IssueInvoice("i-1"))

    assert outbox.rows(invoices) == 1
    assert outbox.rows(messages) == 1
    assert len(outbox.memory) == 0
    assert outbox.app.run("memory", finish_when_no_messages=True) == 0
    assert outbox.mailer.mailed == []


def test_a_rolled_back_command_leaves_nothing_in_either_channel(outbox):
    with pytest.raises(InvoiceRejected):
        outbox.app.command_bus.send(IssueInvoice("i-1", reject=True))

    assert outbox.rows(invoices) == 0
    assert outbox.rows(messages) == 0
    assert outbox.app.run("db", finish_when_no_messages=True) == 0
    assert len(outbox.memory) == 0
    assert outbox.app.run("memory", finish_when_no_messages=True) == 0
    assert outbox.mailer.mailed == []


def test_the_database_consumer_relays_in_batches_and_the_handler_runs_from_the_next_channel(
    outbox,
):
    issued = [f"i-{number}" for number in range(25)]
    for invoice_id in issued:
        outbox.app.command_bus.send(IssueInvoice(invoice_id))
    claims: list[str] = []

    def record(_connection, _cursor, statement, _parameters, _context, _many) -> None:
        if "FROM ecopy_messages" in statement and statement.lstrip().startswith("SELECT"):
            claims.append(statement)

    sa.event.listen(outbox.database.engine, "before_cursor_execute", record)
    try:
        assert outbox.app.run("db", finish_when_no_messages=True) == 25
    finally:
        sa.event.remove(outbox.database.engine, "before_cursor_execute", record)

    assert len(claims) == 4  # 10 + 10 + 5 messages, and one claim that finds none
    assert outbox.rows(messages) == 0
    assert len(outbox.memory) == 25
    assert outbox.mailer.mailed == []  # relayed, not handled yet

    assert outbox.app.run("memory", finish_when_no_messages=True) == 25
    assert outbox.mailer.mailed == issued


def test_a_relay_that_stops_early_gives_back_what_it_prefetched(outbox):
    for number in range(5):
        outbox.app.command_bus.send(IssueInvoice(f"i-{number}"))

    assert outbox.app.run("db", handled_message_limit=2) == 2

    assert len(outbox.memory) == 2
    # The three others were claimed with the first two, and are visible again at once.
    assert outbox.app.run("db", finish_when_no_messages=True) == 3
    outbox.app.run("memory", finish_when_no_messages=True)
    assert outbox.mailer.mailed == [f"i-{number}" for number in range(5)]
