"""Transactions (issue 5): a command, an asynchronous handler and the work they cause run in
one database transaction; handlers get its ``sqlalchemy.Connection`` or ``Session`` by
annotation; nested calls join it; any exception rolls everything back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import ecopy
from ecopy import (
    CommandBus,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    event_handler,
    query_handler,
)
from ecopy_dbal import Database, DbalConfiguration, NoTransactionInProgress, without_transaction

business = sa.MetaData()
customers = sa.Table(
    "customers",
    business,
    sa.Column("customer_id", sa.String(50), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)


ledger = sa.Table(
    "queue_test_ledger", sa.MetaData(), sa.Column("entry", sa.String(50), nullable=False)
)


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "invoices"
    invoice_id: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    amount: Mapped[int]


@dataclass(frozen=True)
class RegisterCustomer:
    customer_id: str
    name: str
    fail_after_write: bool = False


@dataclass(frozen=True)
class CustomerRegistered:
    customer_id: str


@dataclass(frozen=True)
class RegisterTwo:
    first: str
    second: str
    fail_at_the_end: bool = False


@dataclass(frozen=True)
class IssueInvoice:
    invoice_id: str
    amount: int
    commit_inside: bool = False
    fail: bool = False


@dataclass(frozen=True)
class CountCustomers:
    pass


@dataclass(frozen=True)
class ImportCustomer:
    customer_id: str


class WriteFailed(RuntimeError):
    pass


class Customers:
    @command_handler
    def register(
        self, command: RegisterCustomer, connection: sa.Connection, events: ecopy.EventBus
    ) -> None:
        connection.execute(
            customers.insert().values(customer_id=command.customer_id, name=command.name)
        )
        events.publish(CustomerRegistered(command.customer_id))
        if command.fail_after_write:
            raise WriteFailed(f"registration of {command.customer_id} failed after writing")

    @command_handler
    def register_two(self, command: RegisterTwo, commands: CommandBus) -> None:
        commands.send(RegisterCustomer(command.first, "first"))
        commands.send(RegisterCustomer(command.second, "second"))
        if command.fail_at_the_end:
            raise WriteFailed("the outer command failed after both inner ones succeeded")

    @query_handler
    def count(self, query: CountCustomers, connection: sa.Connection) -> int:
        return int(
            connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        )

    @without_transaction
    @command_handler
    def import_customer(self, command: ImportCustomer, database: Database) -> None:
        database.run(
            lambda c: c.execute(
                customers.insert().values(customer_id=command.customer_id, name="imported")
            )
        )
        raise WriteFailed("the import failed after its write, which committed on its own")


class Invoicing:
    @command_handler
    def issue(self, command: IssueInvoice, session: Session) -> None:
        session.add(Invoice(invoice_id=command.invoice_id, amount=command.amount))
        if command.commit_inside:
            session.commit()  # does not end the framework's transaction
        if command.fail:
            raise WriteFailed("invoice failed")


class Welcome:
    """An asynchronous event handler writing in the consumer's transaction."""

    def __init__(self) -> None:
        self.broken = False

    @asynchronous("welcome")
    @event_handler
    def on_registered(self, event: CustomerRegistered, connection: sa.Connection) -> None:
        connection.execute(
            customers.update()
            .where(customers.c.customer_id == event.customer_id)
            .values(name="welcomed")
        )
        if self.broken:
            raise WriteFailed("welcome mail server down")


def rows(url: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {r.customer_id: r.name for r in connection.execute(sa.select(customers))}
    finally:
        engine.dispose()


def invoices(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [r.invoice_id for r in connection.execute(sa.select(Invoice.invoice_id))]
    finally:
        engine.dispose()


@pytest.fixture
def app(database_url):
    engine = sa.create_engine(database_url)
    business.create_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()
    system = ecopy.bootstrap(
        classes=[Customers, Invoicing, Welcome],
        services=[Customers(), Invoicing(), Welcome()],
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(
                    url=database_url,
                    auto_setup=True,
                    dead_letters=False,
                    deduplication=False,
                    documents=False,
                    event_store=False,
                ),
                QueueChannel("welcome"),
            ]
        ),
    )
    yield system
    system.service(Database).dispose()


def test_a_command_commits_what_its_handler_wrote_through_the_injected_connection(
    app, database_url
):
    app.command_bus.send(RegisterCustomer("c-1", "Ada"))

    assert rows(database_url) == {"c-1": "Ada"}


def test_an_exception_rolls_the_handlers_writes_back(app, database_url):
    with pytest.raises(WriteFailed):
        app.command_bus.send(RegisterCustomer("c-1", "Ada", fail_after_write=True))

    assert rows(database_url) == {}


def test_nested_commands_join_the_outer_transaction_and_roll_back_with_it(app, database_url):
    with pytest.raises(WriteFailed):
        app.command_bus.send(RegisterTwo("c-1", "c-2", fail_at_the_end=True))
    assert rows(database_url) == {}

    app.command_bus.send(RegisterTwo("c-1", "c-2"))
    assert rows(database_url) == {"c-1": "first", "c-2": "second"}


def test_an_injected_orm_session_is_flushed_and_committed_with_the_transaction(app, database_url):
    app.command_bus.send(IssueInvoice("i-1", 100))

    assert invoices(database_url) == ["i-1"]


def test_session_commit_inside_a_handler_does_not_end_the_transaction(app, database_url):
    with pytest.raises(WriteFailed):
        app.command_bus.send(IssueInvoice("i-1", 100, commit_inside=True, fail=True))

    assert invoices(database_url) == []


def test_a_handler_that_opted_out_commits_each_write_on_its_own(app, database_url):
    with pytest.raises(WriteFailed):
        app.command_bus.send(ImportCustomer("c-9"))

    assert rows(database_url) == {"c-9": "imported"}


class OptedOut:
    @without_transaction
    @query_handler("customers.count.raw")
    def count(self, connection: sa.Connection) -> int:
        return 0


def test_a_connection_asked_for_outside_any_transaction_is_refused_with_an_explanation(
    database_url,
):
    app = ecopy.bootstrap(
        classes=[OptedOut],
        config=ServiceConfiguration(extensions=[DbalConfiguration(url=database_url)]),
    )
    try:
        with pytest.raises(NoTransactionInProgress, match="no transaction is in progress"):
            app.query_bus.send_with_routing("customers.count.raw")
    finally:
        app.close()


def test_an_asynchronous_handler_runs_in_its_own_transaction(app, database_url):
    welcome = app.service(Welcome)
    app.command_bus.send(RegisterCustomer("c-1", "Ada"))
    welcome.broken = True

    with pytest.raises(WriteFailed):
        app.run("welcome", handled_message_limit=1, stop_on_error=True)
    assert rows(database_url) == {"c-1": "Ada"}

    welcome.broken = False
    app.run("welcome", finish_when_no_messages=True)
    assert rows(database_url) == {"c-1": "welcomed"}


def test_the_handlers_connection_is_the_transactions_connection(app, database_url):
    database = app.service(Database)

    with database.transaction() as outer:
        app.command_bus.send(RegisterCustomer("c-1", "Ada"))
        assert outer.execute(sa.select(customers.c.name)).scalar_one() == "Ada"
        assert rows(database_url) == {}  # not committed yet: the command joined `outer`

    assert rows(database_url) == {"c-1": "Ada"}


def test_transactions_can_be_turned_off(database_url):
    engine = sa.create_engine(database_url)
    business.create_all(engine)
    engine.dispose()
    system = ecopy.bootstrap(
        classes=[Customers],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=database_url, auto_setup=True, transactions=False)]
        ),
    )
    try:
        with pytest.raises(NoTransactionInProgress):
            system.command_bus.send(RegisterCustomer("c-1", "Ada"))
    finally:
        system.service(Database).dispose()


# -- queries and events outside a command --------------------------------------------------


@dataclass(frozen=True)
class CountOrders:
    pass


@dataclass(frozen=True)
class OrderNoted:
    order_id: str


class Reports:
    def __init__(self) -> None:
        self.noted: list[int] = []

    @query_handler
    def count(self, query: CountOrders, connection: sa.Connection) -> int:
        return connection.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one()

    @query_handler("orders.count")
    def count_with_session(self, session: Session) -> int:
        return session.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one()

    @event_handler
    def note(self, event: OrderNoted, connection: sa.Connection) -> None:
        connection.execute(ledger.insert(), {"entry": event.order_id})
        self.noted.append(len(self.noted))


def test_a_query_or_event_handler_that_asks_for_the_connection_runs_in_a_transaction(
    database_url,
):
    reports = Reports()
    app = ecopy.bootstrap(
        classes=[Reports],
        services=[reports],
        config=ServiceConfiguration(extensions=[DbalConfiguration(url=database_url)]),
    )
    database = app.require_service(Database)
    ledger.create(database.engine, checkfirst=True)
    try:
        app.event_bus.publish(OrderNoted("o-1"))  # outside any command

        assert app.query_bus.send(CountOrders()) == 1
        assert app.query_bus.send_with_routing("orders.count") == 1
    finally:
        ledger.drop(database.engine)
        app.close()
