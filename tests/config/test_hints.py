"""Hints that lead to the right fix, never into harm (issue 10 §3): each error or warning's
whole text is asserted, so a change to one is a decision, not an accident."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection

from ecopy import (
    ConfigurationError,
    ConfigurationWarning,
    Identifier,
    MessageConversionError,
    NoHandlerFound,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    before,
    bootstrap,
    command_handler,
    event_handler,
    query_handler,
    saga,
)
from ecopy_dbal import DbalChannel, DbalConfiguration
from tests.services import POSTGRES_URL, ServerDatabase

HERE = __name__


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


class Mailer:
    @asynchronous("emails")
    @event_handler
    def send(self, event: OrderPlaced) -> None: ...


def problems_of(**arguments: object) -> tuple[str, ...]:
    with pytest.raises(ConfigurationError) as raised:
        bootstrap(**arguments)  # type: ignore[arg-type]
    return raised.value.problems


def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'hints.sqlite3'}"


# -- an undeclared channel ---------------------------------------------------------------------


def test_an_undeclared_channel_near_a_declared_one_asks_did_you_mean(tmp_path):
    problems = problems_of(
        classes=[Mailer],
        services=[Mailer()],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=sqlite_url(tmp_path)), DbalChannel("email")]
        ),
    )

    assert problems == (
        f"asynchronous handler {HERE}.Mailer.send uses channel 'emails', which is not "
        f"declared; did you mean 'email'?",
    )


def test_an_undeclared_channel_in_a_database_application_is_never_told_to_be_in_memory(
    tmp_path,
):
    problems = problems_of(
        classes=[Mailer],
        services=[Mailer()],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=sqlite_url(tmp_path)), DbalChannel("orders")]
        ),
    )

    assert problems == (
        f"asynchronous handler {HERE}.Mailer.send uses channel 'emails', which is not "
        f"declared; declare it like the application's other channels: DbalChannel('emails')",
    )


def test_an_undeclared_channel_in_an_in_memory_application_suggests_a_queue_channel():
    problems = problems_of(
        classes=[Mailer],
        services=[Mailer()],
        config=ServiceConfiguration(extensions=[QueueChannel("orders")]),
    )

    assert problems == (
        f"asynchronous handler {HERE}.Mailer.send uses channel 'emails', which is not "
        f"declared; declare it: add QueueChannel('emails') to the extensions",
    )


def test_an_undeclared_channel_in_an_application_without_channels_names_both_kinds():
    problems = problems_of(classes=[Mailer], services=[Mailer()])

    assert problems == (
        f"asynchronous handler {HERE}.Mailer.send uses channel 'emails', which is not "
        f"declared; declare it among the extensions: DbalChannel('emails') for a database "
        f"queue (with DbalConfiguration), or QueueChannel('emails') in memory (tests)",
    )


# -- the database module -------------------------------------------------------------------------


class Reports:
    @query_handler("report.count")
    def count(self, query: dict[str, object], connection: Connection) -> int:
        return 0


def test_a_connection_parameter_without_the_database_module_says_add_dbal_configuration():
    problems = problems_of(classes=[Reports], services=[Reports()])

    assert problems == (
        f"handler {HERE}.Reports.count: parameter 'connection' of type Connection comes from "
        f"the database module, which this application does not have; add "
        f"DbalConfiguration(url=...) (from ecopy_dbal) to the extensions, and the handler "
        f"gets the Connection of its transaction",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "postgres://postgres@127.0.0.1/shop",
            "DbalConfiguration: the URL 'postgres://postgres@127.0.0.1/shop' starts with "
            "postgres://, which SQLAlchemy does not know; write "
            "postgresql+psycopg://user:password@host/database (with ecopy-messaging[postgres] "
            "installed)",
        ),
        (
            "postgresql+asyncpg://postgres@127.0.0.1/shop",
            "DbalConfiguration: the URL 'postgresql+asyncpg://postgres@127.0.0.1/shop' needs "
            "the driver asyncpg, which is not installed; ecopy runs on synchronous drivers: "
            "postgresql+psycopg://... with ecopy-messaging[postgres], or mysql+pymysql://... "
            "with ecopy-messaging[mysql]",
        ),
        (
            "mysql://root@127.0.0.1/shop",
            "DbalConfiguration: the URL 'mysql://root@127.0.0.1/shop' uses the MySQLdb "
            "driver, which is not installed; write mysql+pymysql://... and install "
            "ecopy-messaging[mysql]",
        ),
    ],
)
def test_a_database_url_that_cannot_load_is_one_problem_with_its_fix(url, problem):
    problems = problems_of(
        classes=[Mailer],
        services=[Mailer()],
        config=ServiceConfiguration(extensions=[DbalConfiguration(url=url), DbalChannel("emails")]),
    )

    assert problems == (problem,)  # no cascade of "channel not declared"


@pytest.mark.postgres
def test_tables_missing_on_a_server_are_one_problem_at_bootstrap_naming_the_fix():
    empty = ServerDatabase("PostgreSQL", POSTGRES_URL)
    url = empty.create()
    try:
        problems = problems_of(config=ServiceConfiguration(extensions=[DbalConfiguration(url=url)]))
    finally:
        empty.drop()

    shown = sa.make_url(url).render_as_string(hide_password=True)
    assert problems == (
        f"DbalConfiguration: the database {shown} has no ecopy tables ecopy_dead_letters, "
        f"ecopy_deduplication, ecopy_documents, ecopy_event_position_lock, ecopy_events, "
        f"ecopy_messages, ecopy_projections, ecopy_snapshots; create them with `ecopy --app "
        f"<module:attribute> db setup` (once per database, at deploy), or let the application "
        f"create them at start-up with DbalConfiguration(auto_setup=True)",
    )


def test_an_unreachable_server_at_bootstrap_is_not_a_configuration_problem(caplog):
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"

    with caplog.at_level(logging.WARNING, logger="ecopy.dbal"):
        bootstrap(config=ServiceConfiguration(extensions=[DbalConfiguration(url=url)])).close()

    assert (
        "could not check the ecopy tables at start-up, the database is unreachable "
        "(OperationalError)" in caplog.messages
    )


# -- sagas, queries, conversion ------------------------------------------------------------------


@saga
@dataclass
class Shipping:
    order_id: Annotated[str, Identifier]

    @event_handler
    def on_placed(self, event: OrderPlaced) -> None: ...


def test_a_saga_nothing_can_start_is_a_bootstrap_problem():
    assert problems_of(classes=[Shipping]) == (
        "saga Shipping has no factory handler, so nothing can start it and every message for "
        "it would find no Shipping; add a classmethod handler that returns a new Shipping for "
        "the message that starts it (@event_handler on a @classmethod)",
    )


@dataclass(frozen=True)
class GetOrder:
    order_id: str


def test_a_query_without_a_handler_suggests_a_query_handler():
    app = bootstrap()

    with pytest.raises(NoHandlerFound) as raised:
        app.query_bus.send(GetOrder("o-1"))

    assert str(raised.value) == (
        f"No handler found for query {HERE}.GetOrder. Declare a handler for it with "
        f"@query_handler, and give its class to bootstrap (classes= or scan=)."
    )


@dataclass(frozen=True)
class Ship:
    order_id: str


class Shipper:
    @command_handler("ship")
    def ship(self, command: Ship) -> None: ...


def test_a_payload_of_the_wrong_shape_is_not_reported_as_a_field_named_payload():
    app = bootstrap(classes=[Shipper], services=[Shipper()])

    with pytest.raises(MessageConversionError) as raised:
        app.command_bus.send_with_routing("ship", ["o-1"])

    assert raised.value.problems == (
        "the payload: Input should be a dictionary or an instance of Ship",
    )


# -- services, pointcuts, identifiers ------------------------------------------------------------


def test_a_class_given_where_an_instance_belongs_is_a_problem():
    assert problems_of(classes=[Shipper], services=[Shipper]) == (
        "services= holds the class Shipper itself, where an instance belongs; pass "
        "Shipper(...), or leave it out if it is a handler class whose constructor needs "
        "nothing (ecopy then creates it)",
    )


class Audit:
    @before(pointcut=Mailer)
    def audit(self) -> None: ...


def test_a_pointcut_that_selects_no_endpoint_warns():
    with pytest.warns(ConfigurationWarning) as warned:
        bootstrap(classes=[Shipper, Audit], services=[Shipper(), Audit()])

    assert [str(w.message) for w in warned] == [
        "interceptor Audit.audit: its pointcut Mailer selects no endpoint of this "
        "application, so it is never called; check the class, marker, endpoint id or pattern "
        "it names"
    ]


@dataclass
class Parcel:
    parcel_id: Annotated[str, Identifier]

    @command_handler
    def ship(self, command: Ship) -> None: ...


def test_an_identifier_on_a_handler_class_that_is_not_an_aggregate_is_a_problem():
    problems = problems_of(classes=[Parcel], services=[Parcel("p-1")])

    assert problems == (
        "class Parcel marks parcel_id with Identifier but is neither an @aggregate nor a "
        "@saga, so its handlers would all run on one shared instance; decorate it with "
        "@aggregate (or @event_sourcing_aggregate, or @saga)",
    )


@dataclass(frozen=True)
class CancelParcel:
    parcel_id: Annotated[str, Identifier]


def test_an_identifier_on_a_message_class_warns_that_it_does_nothing():
    with pytest.warns(ConfigurationWarning) as warned:
        bootstrap(classes=[CancelParcel])

    assert [str(w.message) for w in warned] == [
        "class CancelParcel marks parcel_id with Identifier, which does nothing on a class "
        "that is not an @aggregate or a @saga; to say which aggregate a command is for, use "
        "TargetIdentifier (or name the field like the aggregate's identifier)"
    ]
