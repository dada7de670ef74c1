"""The error messages of the database module, the command line, the FastAPI integration and
flow testing (issue 10 §3): each says what went wrong, for which channel, table, message or
handler, and the fix that is right for the application. Every text is asserted whole, so a
change to one is a decision, not an accident."""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

import ecopy
from ecopy import (
    AggregateNotFound,
    ConfigurationError,
    EcopyError,
    Identifier,
    ServiceConfiguration,
    SystemClock,
    aggregate,
    command_handler,
    named_event,
    query_handler,
    without_transaction,
)
from ecopy.cli.consumer_threads import _replica
from ecopy.messaging.channel import ClaimLost
from ecopy.messaging.clock import ControlledClock
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.message import Message
from ecopy.messaging.naming import TypeRegistry
from ecopy.messaging.serialization import MessageSerializer
from ecopy.modelling.event_store import NewEvent
from ecopy.testing import bootstrap_flow_testing
from ecopy.web.fastapi import Messaging, copy_headers, install
from ecopy_dbal import (
    Database,
    DbalChannel,
    DbalConfiguration,
    NoTransactionInProgress,
    schema,
)
from ecopy_dbal.channel import DbalQueue
from ecopy_dbal.codec import Codec, StoredDataError
from ecopy_dbal.database import create_database_engine
from ecopy_dbal.documents import DbalRepository
from ecopy_dbal.event_store import DbalEventStore, DbalSnapshotStore, _position_lock_statement
from ecopy_dbal.sqlite import WriterGateError
from tests.cli.invoking import SAMPLE_APP, invoke_ecopy
from tests.errors.adapter_apps import UNREACHABLE_URL

HERE = __name__


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'messages.sqlite3'}"


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    database = Database(create_database_engine(sqlite_url))
    schema.setup(database.engine)
    yield database
    database.dispose()


def codec() -> Codec:
    return Codec(TypeRegistry(), PayloadConversion())


def pydantic_error(target: Any, value: Any) -> str:
    """What pydantic says about ``value`` as a ``target`` (the part of a message it writes)."""
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(target).validate_python(value)
    return str(raised.value)


# -- declaring the database module ---------------------------------------------------------


def test_a_configuration_with_both_a_url_and_an_engine_says_which_to_keep():
    with pytest.raises(ValueError) as raised:
        DbalConfiguration(url="sqlite://", engine=sa.create_engine("sqlite://"))

    assert str(raised.value) == (
        "DbalConfiguration takes url= or engine=, not both: give url= for an engine ecopy "
        "builds (with its timeouts), or engine= for one you built yourself"
    )


def test_a_timeout_that_is_not_a_number_of_seconds_is_refused():
    with pytest.raises(ValueError) as raised:
        DbalConfiguration(lock_timeout_s=0)

    assert str(raised.value) == (
        "DbalConfiguration lock_timeout_s must be a number of seconds > 0, or None for the "
        "server's own setting, got 0"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"name": ""},
            "DbalChannel needs a channel name (the one handlers give @asynchronous), got ''",
        ),
        (
            {"name": "orders", "visibility_timeout_s": -1},
            "DbalChannel('orders') visibility_timeout_s must be a number of seconds > 0, got -1",
        ),
        (
            {"name": "orders", "prefetch": 2.5},
            "DbalChannel('orders') prefetch must be an int >= 1, got 2.5",
        ),
        (
            {"name": "orders", "prefetch": 0},
            "DbalChannel('orders') prefetch must be >= 1 (1 claims one message at a time), got 0",
        ),
        (
            {"name": "orders", "final_failure_strategy": "drop"},
            "DbalChannel('orders') final_failure_strategy must be 'stop', 'resend', 'release' "
            "or 'ignore', got 'drop'",
        ),
    ],
)
def test_a_channel_declared_with_a_wrong_option_names_the_channel_and_the_option(
    options: dict[str, Any], message: str
):
    with pytest.raises(ValueError) as raised:
        DbalChannel(**options)

    assert str(raised.value) == message


def test_a_url_that_cannot_be_parsed_is_one_bootstrap_problem_with_the_forms_of_a_url():
    with pytest.raises(ConfigurationError) as raised:
        ecopy.bootstrap(config=ServiceConfiguration(extensions=[DbalConfiguration(url="shop")]))

    assert raised.value.problems == (
        "DbalConfiguration: the URL 'shop' cannot be used (Could not parse SQLAlchemy URL from "
        "given URL string); write it as dialect+driver://user:password@host/database: "
        "sqlite:///path, postgresql+psycopg://... or mysql+pymysql://...",
    )


def test_a_server_that_refuses_the_connection_while_creating_tables_is_one_line():
    with pytest.raises(ConfigurationError) as raised:
        ecopy.bootstrap(
            config=ServiceConfiguration(
                extensions=[DbalConfiguration(url=UNREACHABLE_URL, auto_setup=True)]
            )
        )

    assert raised.value.problems == (
        "DbalConfiguration: the database cannot be used (OperationalError: "
        '(psycopg.OperationalError) connection failed: connection to server at "127.0.0.1", '
        "port 1 failed: Connection refused); check the URL and that the server is running",
    )


# -- the transaction's connection ----------------------------------------------------------


class OptedOut:
    @without_transaction
    @query_handler("customers.count")
    def count(self, connection: sa.Connection) -> int:
        return 0

    @without_transaction
    @query_handler("customers.names")
    def names(self, session: Session) -> list[str]:
        return []


class Plain:
    @query_handler("customers.count")
    def count(self, connection: sa.Connection) -> int:
        return 0


def ask(sqlite_url: str, handlers: type, routing: str, **options: Any) -> str:
    app = ecopy.bootstrap(
        classes=[handlers],
        config=ServiceConfiguration(extensions=[DbalConfiguration(url=sqlite_url, **options)]),
    )
    try:
        with pytest.raises(NoTransactionInProgress) as raised:
            app.query_bus.send_with_routing(routing)
    finally:
        app.close()
    return str(raised.value)


def test_a_connection_asked_for_by_a_handler_without_transaction_says_how_to_open_one(
    sqlite_url: str,
):
    assert ask(sqlite_url, OptedOut, "customers.count") == (
        "a handler asked for sqlalchemy.Connection, but no transaction is in progress: the "
        "handler is marked @without_transaction; remove that mark, or open a transaction in "
        "the handler: give it a parameter `database: ecopy_dbal.Database` and use "
        "`with database.transaction() as connection:`"
    )


def test_a_session_asked_for_by_a_handler_without_transaction_says_how_to_open_one(
    sqlite_url: str,
):
    assert ask(sqlite_url, OptedOut, "customers.names") == (
        "a handler asked for sqlalchemy.orm.Session, but no transaction is in progress: the "
        "handler is marked @without_transaction; remove that mark, or open a transaction in "
        "the handler: give it a parameter `database: ecopy_dbal.Database` and use "
        "`database.session()` inside `with database.transaction():`"
    )


def test_a_connection_asked_for_where_transactions_are_off_never_blames_the_handler(
    sqlite_url: str,
):
    assert ask(sqlite_url, Plain, "customers.count", transactions=False) == (
        "a handler asked for sqlalchemy.Connection, but no transaction is in progress: the "
        "application turned transactions off with DbalConfiguration(transactions=False); turn "
        "them back on, or open a transaction in the handler: give it a parameter "
        "`database: ecopy_dbal.Database` and use `with database.transaction() as connection:`"
    )


def test_a_second_sqlite_transaction_in_the_same_thread_is_refused_instead_of_waiting_forever(
    database: Database, tmp_path
):
    with (
        pytest.raises(WriterGateError) as raised,
        database.transaction(),
        database.engine.begin() as other,
    ):
        other.exec_driver_sql("select 1")

    assert str(raised.value) == (
        f"this thread already has a transaction open on SQLite database "
        f"'{tmp_path / 'messages.sqlite3'}' through another connection, and SQLite has one "
        f"writer: the second transaction would wait for the first forever. Do the work inside "
        f"the transaction in progress (database.transaction() joins it) instead of opening "
        f"another connection"
    )


# -- the database queue ------------------------------------------------------------------------


@dataclass(frozen=True)
class Parcel:
    parcel_id: str


def test_an_acknowledgement_after_the_claim_expired_says_the_work_is_rolled_back(
    database: Database,
):
    names = TypeRegistry()
    names.register(Parcel)
    serializer = MessageSerializer(names, PayloadConversion())
    clock = ControlledClock(datetime(2024, 1, 1, tzinfo=UTC))
    slow, fast = (DbalQueue("parcels", database, serializer, clock) for _ in range(2))
    slow.send(Message(Parcel("p-1")))
    late = slow.receive()
    clock.advance(timedelta(seconds=31))
    assert fast.receive() is not None

    with pytest.raises(ClaimLost) as raised, database.transaction():
        slow.acknowledge(late)

    assert str(raised.value) == (
        f"channel 'parcels' no longer holds message {late.id}: its claim (visibility timeout "
        f"30.0 s) expired before the handling finished, and another consumer took it; this "
        f"handling is rolled back and that consumer handles the message. If handlers take "
        f"longer than the timeout, or the database was unreachable for that long, give the "
        f"channel a longer one: DbalChannel('parcels', visibility_timeout_s=...)"
    )


@pytest.mark.parametrize(
    "clock_of", [schema.database_now, lambda d: schema.database_now_plus(d, sa.literal(1.0))]
)
def test_a_database_ecopy_does_not_run_on_is_named_with_the_ones_it_does(clock_of: Any):
    with pytest.raises(ValueError) as raised:
        clock_of("oracle")

    assert str(raised.value) == (
        "ecopy_dbal runs on SQLite, PostgreSQL and MariaDB/MySQL, not on the database dialect "
        "'oracle'; point DbalConfiguration at one of those"
    )


def test_the_event_store_on_another_database_offers_to_keep_it_with_a_store_of_ones_own():
    with pytest.raises(EcopyError) as raised:
        _position_lock_statement("oracle")

    assert str(raised.value) == (
        "the ecopy event store runs on SQLite, PostgreSQL and MariaDB/MySQL, not on the "
        "database dialect 'oracle'; point DbalConfiguration at one of those, or keep the "
        "database and use DbalConfiguration(event_store=False) with an EventStore of your own "
        "in services="
    )


# -- events, documents and snapshots read back -----------------------------------------------


@named_event("shop.order_placed")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


@named_event("shop.order_placed")
@dataclass(frozen=True)
class LegacyOrderPlaced:
    order_id: str


@dataclass(frozen=True)
class OrderPlacedWithTotal:
    order_id: str
    total: int


@named_event(f"{HERE}.OrderPlacedWithTotal")
@dataclass(frozen=True)
class ReshapedOrderPlaced:
    """``OrderPlacedWithTotal`` as a later version of the application declares it."""

    order_id: str
    currency: str


@dataclass(frozen=True)
class Unstorable:
    lock: object


def test_two_event_classes_with_one_name_cannot_be_stored():
    store = codec()
    store.encode_payload(OrderPlaced("o-1"))

    with pytest.raises(StoredDataError) as raised:
        store.encode_payload(LegacyOrderPlaced("o-1"))

    assert str(raised.value) == (
        f"{HERE}.LegacyOrderPlaced and {HERE}.OrderPlaced are both named 'shop.order_placed': "
        f"a stored one could be read back as the other; give one of them another name with "
        f"@named_event"
    )


def test_an_event_that_is_not_json_names_its_class_and_the_kinds_that_are():
    with pytest.raises(StoredDataError) as raised:
        codec().encode_payload(Unstorable(object()))

    assert str(raised.value) == (
        f"a {HERE}.Unstorable cannot be stored as JSON (Unable to serialize unknown type: "
        f"<class 'object'>); events must be dataclasses, pydantic models or JSON values"
    )


def test_an_event_of_a_class_the_application_does_not_know_names_the_event_and_the_fixes(
    database: Database,
):
    DbalEventStore(database, codec()).append("Order", "o-1", 0, [NewEvent(OrderPlaced("o-1"))])

    with pytest.raises(StoredDataError) as raised:
        DbalEventStore(database, codec()).load("Order", "o-1")

    assert str(raised.value) == (
        "event 1 of Order 'o-1' (position 1) cannot be read: stored type 'shop.order_placed' is "
        "not known to this application: only known classes are read back; pass the class to "
        "bootstrap (classes= or scan=), or, if it was renamed or moved, give it its old name "
        "with @named_event('shop.order_placed')"
    )


def test_an_event_that_no_longer_fits_its_class_says_to_give_new_fields_a_default(
    database: Database,
):
    writer = codec()
    DbalEventStore(database, writer).append(
        "Order", "o-1", 0, [NewEvent(OrderPlacedWithTotal("o-1", 30))]
    )
    reader = codec()
    reader.names.register(ReshapedOrderPlaced)

    with pytest.raises(StoredDataError) as raised:
        DbalEventStore(database, reader).load("Order", "o-1")

    assert str(raised.value) == (
        f"event 1 of Order 'o-1' (position 1) cannot be read: stored {HERE}.OrderPlacedWithTotal "
        f"does not fit its class {HERE}.ReshapedOrderPlaced any more: "
        f"{pydantic_error(ReshapedOrderPlaced, {'order_id': 'o-1', 'total': 30})}; stored "
        f"events are never "
        f"rewritten, so give the fields added since they were stored a default value"
    )


@named_event("shop.Basket")
@dataclass
class Basket:
    basket_id: str


@named_event("shop.Basket")
@dataclass
class BasketWithOwner:
    basket_id: str
    owner: str


def test_a_document_that_no_longer_fits_its_class_names_the_row_and_says_to_migrate(
    database: Database,
):
    DbalRepository(database, codec()).save(Basket, {"basket_id": "b-1"}, Basket("b-1"), 0)

    with pytest.raises(StoredDataError) as raised:
        DbalRepository(database, codec()).find(BasketWithOwner, {"basket_id": "b-1"})

    assert str(raised.value) == (
        f"BasketWithOwner 'b-1' in ecopy_documents cannot be read: the stored fields do not "
        f"fit {HERE}.BasketWithOwner any more: "
        f"{pydantic_error(BasketWithOwner, {'basket_id': 'b-1'})}; migrate the stored "
        f"documents to the class's new shape, or give the fields added since they were stored "
        f"a default value"
    )


def test_a_snapshot_that_no_longer_fits_its_class_says_to_delete_it_not_to_migrate(
    database: Database,
):
    DbalSnapshotStore(database, codec()).save("Basket", "b-1", 3, Basket("b-1"))
    reader = codec()
    reader.names.register(BasketWithOwner)

    with pytest.raises(StoredDataError) as raised:
        DbalSnapshotStore(database, reader).load("Basket", "b-1")

    assert str(raised.value) == (
        f"the snapshot of Basket 'b-1' cannot be read: the stored fields do not fit "
        f"{HERE}.BasketWithOwner any more: "
        f"{pydantic_error(BasketWithOwner, {'basket_id': 'b-1'})}; delete the row from "
        f"ecopy_snapshots: the aggregate is then rebuilt from its events"
    )


def test_a_snapshot_of_a_class_the_application_does_not_know_says_it_can_be_deleted(
    database: Database,
):
    DbalSnapshotStore(database, codec()).save("Basket", "b-1", 3, Basket("b-1"))

    with pytest.raises(StoredDataError) as raised:
        DbalSnapshotStore(database, codec()).load("Basket", "b-1")

    assert str(raised.value) == (
        "the snapshot of Basket 'b-1' holds a 'shop.Basket', a class this application does not "
        "know: pass the aggregate class to bootstrap (or scan its module), or delete the row "
        "from ecopy_snapshots; the aggregate is then rebuilt from its events"
    )


def test_a_snapshot_whose_class_has_the_name_of_another_cannot_be_stored(database: Database):
    store = DbalSnapshotStore(database, codec())
    store.save("Basket", "b-1", 3, Basket("b-1"))

    with pytest.raises(StoredDataError) as raised:
        store.save("Basket", "b-2", 3, BasketWithOwner("b-2", "ada"))

    assert str(raised.value) == (
        f"the snapshot of Basket 'b-2' cannot be stored: its class {HERE}.BasketWithOwner has "
        f"the name 'shop.Basket' of another class, {HERE}.Basket; give one of them another "
        f"name with @named_event"
    )


# -- ecopy db ----------------------------------------------------------------------------------


def error_line(*arguments: str) -> tuple[int, str]:
    result = invoke_ecopy(*arguments)
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.splitlines()[-1]


def test_db_setup_with_a_url_sqlalchemy_does_not_know_names_the_right_scheme():
    assert error_line("db", "setup", "--url", "postgres://postgres@127.0.0.1/shop") == (
        1,
        "Error: the URL 'postgres://postgres@127.0.0.1/shop' starts with postgres://, which "
        "SQLAlchemy does not know; write postgresql+psycopg://user:password@host/database "
        "(with ecopy-messaging[postgres] installed)",
    )


def test_db_setup_with_a_url_that_cannot_be_parsed_names_the_forms_of_a_url():
    assert error_line("db", "setup", "--url", "shop") == (
        1,
        "Error: the URL 'shop' cannot be used (Could not parse SQLAlchemy URL from given URL "
        "string); write it as dialect+driver://user:password@host/database: sqlite:///path, "
        "postgresql+psycopg://... or mysql+pymysql://...",
    )


@pytest.mark.parametrize(("command", "done"), [("setup", "created"), ("drop", "dropped")])
def test_db_setup_and_drop_on_a_server_that_is_down_say_so_in_one_line(command: str, done: str):
    arguments = ["db", command, "--url", UNREACHABLE_URL] + (["--yes"] if command == "drop" else [])

    assert error_line(*arguments) == (
        1,
        f"Error: the ecopy tables could not be {done} in {UNREACHABLE_URL}: OperationalError: "
        f'(psycopg.OperationalError) connection failed: connection to server at "127.0.0.1", '
        f"port 1 failed: Connection refused; check that the database server is running and "
        f"reachable, and that its user may create and drop tables",
    )


def test_db_setup_for_an_application_without_a_database_says_add_the_module_or_a_url():
    assert error_line("--app", SAMPLE_APP, "db", "setup") == (
        1,
        f"Error: application {SAMPLE_APP} has no database: add DbalConfiguration(url=...) to "
        f"its extensions, or pass --url",
    )


# -- the other commands ------------------------------------------------------------------------


def test_status_of_an_application_whose_server_is_down_says_check_it_is_reachable():
    assert error_line("--app", "tests.errors.adapter_apps:unreachable", "status") == (
        1,
        "Error: the channels could not be counted: OperationalError: (psycopg.OperationalError) "
        'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection '
        "refused; check that the database or broker of the application is reachable",
    )


def test_an_app_reference_without_a_colon_shows_the_form_it_takes():
    assert error_line("--app", "shop.app", "list") == (
        2,
        "Error: Invalid value for '--app' / ECOPY_APP: 'shop.app' is not of the form "
        "module:attribute, e.g. 'shop.app:system'",
    )


def test_an_app_reference_to_something_else_than_an_application_says_what_it_is():
    assert error_line("--app", "tests.cli.invoking:SAMPLE_APP", "list") == (
        1,
        "Error: tests.cli.invoking:SAMPLE_APP is a str, not a MessagingSystem. Point --app at "
        "the result of ecopy.bootstrap(...) or at a zero-argument factory returning it.",
    )


def test_an_unknown_dead_letter_id_where_there_are_none_says_so():
    assert error_line("--app", SAMPLE_APP, "dead-letter", "show", "dl-1") == (
        2,
        "Error: No dead letter 'dl-1'; `ecopy dead-letter list` shows the stored ones. Known "
        "dead letters: none.",
    )


def test_a_consumer_that_is_not_a_channel_consumer_is_not_copied_into_threads():
    scheduled = types.SimpleNamespace(name="nightly_report")

    with pytest.raises(TypeError) as raised:
        _replica(scheduled)  # type: ignore[arg-type]

    assert str(raised.value) == (
        "consumer 'nightly_report' is not a channel consumer (a @scheduled method, say), so it "
        "cannot run in several threads: each copy would run it on its own schedule"
    )


# -- FastAPI -----------------------------------------------------------------------------------


def test_a_factory_that_returns_something_else_says_what_to_return():
    api = FastAPI()

    def create_app() -> Any:
        return "shop"

    install(api, create_app)

    with pytest.raises(EcopyError) as raised, TestClient(api):
        pass

    assert str(raised.value) == (
        f"the application factory {HERE}.test_a_factory_that_returns_something_else_says_what_"
        f"to_return.<locals>.create_app returned str, not a MessagingSystem: return what "
        f"ecopy.bootstrap(...) returns"
    )


def test_install_twice_is_refused_with_the_call_to_keep():
    api = FastAPI()
    install(api, ecopy.bootstrap)

    with pytest.raises(EcopyError) as raised:
        install(api, ecopy.bootstrap)

    assert str(raised.value) == (
        "ecopy is installed on this FastAPI app already: call install(api, factory) once"
    )


def test_headers_given_as_one_string_ask_for_a_list_or_a_mapping():
    with pytest.raises(ConfigurationError) as raised:
        copy_headers(FastAPI(), "X-Tenant")

    assert str(raised.value) == (
        "ecopy configuration has 1 problem:\n"
        "  - headers='X-Tenant' is one string: pass a list of header names or a mapping"
    )


def test_a_header_ecopy_sets_itself_cannot_be_copied_into():
    with pytest.raises(ConfigurationError) as raised:
        copy_headers(FastAPI(), {"X-Request-Id": "id", "X-Tenant": "tenant"})

    assert raised.value.problems == (
        "HTTP header 'X-Request-Id' cannot be copied into the message header 'id': ecopy sets "
        "that header itself for every message; choose another name",
    )


def test_a_dependency_without_a_running_application_says_how_to_run_one():
    api = FastAPI()

    @api.get("/name")
    async def name(app: Messaging) -> str:
        return app.service_name

    with pytest.raises(EcopyError) as raised:
        TestClient(api).get("/name")

    assert str(raised.value) == (
        "no ecopy application is running for this FastAPI app: install it with "
        "ecopy.web.fastapi.install(api, create_app) (or FastAPI(lifespan=ecopy.web.fastapi"
        ".lifespan(create_app))); in tests, enter the client (with TestClient(api) as client:), "
        "which runs the lifespan"
    )


# -- flow testing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenCart:
    cart_id: str


@aggregate
@dataclass
class Cart:
    cart_id: Annotated[str | None, Identifier]

    @command_handler
    @classmethod
    def open(cls, command: OpenCart) -> Cart:
        return cls(command.cart_id)


def test_state_without_its_identifier_names_the_field_to_set():
    flow = bootstrap_flow_testing(classes=[Cart])

    with pytest.raises(ValueError) as raised:
        flow.with_state_for(Cart(None))

    assert str(raised.value) == (
        "with_state_for got a Cart whose identifier cart_id is not set (None); set it before "
        "storing the state"
    )


def test_events_for_a_state_stored_aggregate_point_at_with_state_for():
    flow = bootstrap_flow_testing(classes=[Cart])

    with pytest.raises(TypeError) as raised:
        flow.with_events_for(Cart, "c-1", [OpenCart("c-1")])

    assert str(raised.value) == "Cart is not event-sourced; use with_state_for(instance) instead"


def test_a_missing_aggregate_in_a_flow_test_says_how_to_give_it():
    flow = bootstrap_flow_testing(classes=[Cart])

    with pytest.raises(AggregateNotFound) as raised:
        flow.get_aggregate(Cart, "c-1")

    assert str(raised.value) == (
        "Cart with identifier 'c-1' does not exist in this flow test; create it with a command, "
        "or give it with with_state_for / with_events_for"
    )


def test_moving_time_on_an_application_with_its_own_clock_names_that_clock():
    flow = bootstrap_flow_testing(classes=[Cart], services=[SystemClock()])

    with pytest.raises(TypeError) as raised:
        flow.advance_time(timedelta(minutes=5))

    assert str(raised.value) == (
        "the application runs on SystemClock, not a ControlledClock, so this flow test cannot "
        "move its time; remove the SystemClock from services= (flow tests get a "
        "ControlledClock), or give a ControlledClock there"
    )


# -- tables an older ecopy made --------------------------------------------------------------

#: How each database reports the ``DOUBLE PRECISION`` column an older ecopy created.
DOUBLE_REFLECTED = {"sqlite": "REAL", "postgresql": "DOUBLE PRECISION"}


def test_tables_with_numeric_times_name_each_column_and_the_migration_note(database_url: str):
    engine = sa.create_engine(database_url)
    schema.drop(engine)
    with engine.begin() as connection:  # made by hand, as an earlier ecopy did
        connection.exec_driver_sql(
            "CREATE TABLE ecopy_snapshots (stream VARCHAR(200) NOT NULL, aggregate_id "
            "VARCHAR(200) NOT NULL, version BIGINT NOT NULL, state_type VARCHAR(200) NOT NULL, "
            "state TEXT NOT NULL, saved_at DOUBLE PRECISION NOT NULL, "
            "PRIMARY KEY (stream, aggregate_id))"
        )
    try:
        code, line = error_line("db", "setup", "--url", database_url)
    finally:
        schema.drop(engine)
        engine.dispose()

    kind = DOUBLE_REFLECTED.get(engine.dialect.name, "DOUBLE")
    shown = sa.make_url(database_url).render_as_string(hide_password=True)
    assert (code, line) == (
        1,
        f"Error: the ecopy tables in {shown} store times as numbers (seconds since the epoch), "
        f"as ecopy did before they became timestamp columns: ecopy_snapshots.saved_at ({kind}). "
        f"Convert them as docs/dbal.md#upgrading-times-stored-as-timestamps describes (SQL for "
        f"each database, or drain the queue and recreate its table), then run `ecopy db setup` "
        f"again",
    )
