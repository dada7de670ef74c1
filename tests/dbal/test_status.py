"""``ecopy status`` on database queues: the messages waiting, due, in flight and dead-lettered
per channel, counted by the database's clock, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    ChannelStatus,
    ControlledClock,
    ErrorHandlerConfiguration,
    MessagingSystem,
    RetryTemplate,
    ServiceConfiguration,
    SystemClock,
    asynchronous,
    command_handler,
)
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.delivery import DELIVER_AT, EXPIRES_AT
from ecopy.messaging.naming import TypeRegistry
from ecopy.messaging.serialization import MessageSerializer
from ecopy_dbal import Database, DbalChannel, DbalConfiguration, DbalDeadLetterStore
from ecopy_dbal.channel import DbalQueue, messages
from tests.cli.invoking import invoke_ecopy
from tests.cli.payments_shop import table_rows
from tests.contracts.channel_contract import PAYLOAD_TYPES, START, parcel
from tests.contracts.dead_letter_contract import entry

TIMEOUT_S = 60.0


def serializer() -> MessageSerializer:
    names = TypeRegistry()
    names.register_all(PAYLOAD_TYPES)
    return MessageSerializer(names, PayloadConversion())


def counts(queue: DbalQueue) -> tuple[int | None, int | None, int | None]:
    status = queue.channel_status()
    return status.waiting, status.due, status.in_flight


# -- by the database's clock (production) ----------------------------------------------------


@pytest.fixture
def queue_on_database_clock(database) -> Callable[[], DbalQueue]:
    """Queue objects on the system clock: every time is the database server's."""
    return lambda: DbalQueue(
        "parcels", database, serializer(), SystemClock(), visibility_timeout_s=TIMEOUT_S
    )


def test_delayed_messages_wait_without_being_due(queue_on_database_clock):
    queue = queue_on_database_clock()
    clock = SystemClock()
    queue.send(parcel("now"))
    queue.send(parcel("in-an-hour", **{DELIVER_AT: clock.now() + 3600}))
    queue.send(parcel("overdue", **{DELIVER_AT: clock.now() - 3600}))

    assert counts(queue) == (3, 2, 0)


def test_claimed_messages_are_in_flight_prefetched_ones_included(queue_on_database_clock):
    queue = queue_on_database_clock()
    for number in range(5):
        queue.send(parcel(f"p-{number}"))

    received = queue.receive()  # claims up to prefetch (10): all five

    assert received is not None
    assert counts(queue) == (0, 0, 5)
    queue.release_unhandled()
    assert counts(queue) == (5, 5, 0)


def test_a_message_whose_claim_expired_is_waiting_and_due_again(queue_on_database_clock, database):
    crashed = queue_on_database_clock()
    crashed.send(parcel("p-1"))
    crashed.send(parcel("p-2"))
    assert crashed.receive() is not None
    assert counts(crashed) == (0, 0, 2)

    # The consumer died long ago: its claim ended when the message was stored.
    with database.transaction() as connection:
        connection.execute(messages.update().values(claimed_until=messages.c.created_at))

    assert counts(queue_on_database_clock()) == (2, 2, 0)


def test_expired_messages_are_not_counted(queue_on_database_clock):
    queue = queue_on_database_clock()
    clock = SystemClock()
    queue.send(parcel("expired", **{EXPIRES_AT: clock.now() - 1}))
    queue.send(parcel("fresh", **{EXPIRES_AT: clock.now() + 3600}))

    assert counts(queue) == (1, 1, 0)


def test_each_queue_counts_only_its_own_rows(database):
    parcels = DbalQueue("parcels", database, serializer(), SystemClock())
    others = DbalQueue("others", database, serializer(), SystemClock())
    parcels.send(parcel("p-1"))
    parcels.send(parcel("p-2"))
    others.send(parcel("o-1"))

    assert counts(parcels) == (2, 2, 0)
    assert counts(others) == (1, 1, 0)


# -- on a test clock (flow tests) ------------------------------------------------------------


def test_on_a_test_clock_claims_expire_when_the_clock_passes_their_timeout(database):
    clock = ControlledClock(START)
    queue = DbalQueue("parcels", database, serializer(), clock, visibility_timeout_s=TIMEOUT_S)
    queue.send(parcel("p-1"))
    queue.send(parcel("p-2", **{DELIVER_AT: clock.now() + 10}))
    assert queue.receive() is not None
    assert counts(queue) == (1, 0, 1)

    clock.advance(TIMEOUT_S)

    assert counts(queue) == (2, 2, 0)


# -- the application: dead letters and the command -------------------------------------------


class Refused(Exception):
    pass


class Packing:
    @asynchronous("parcels")
    @command_handler("parcel.pack", endpoint_id="pack_parcel")
    def pack(self, parcel_id: str) -> None:
        if parcel_id.startswith("broken"):
            raise Refused(f"parcel {parcel_id} cannot be packed")


#: The application that ``ecopy --app tests.dbal.test_status:system`` loads (set by a test).
system: MessagingSystem | None = None


@pytest.fixture
def warehouse(database_url, monkeypatch) -> Iterator[MessagingSystem]:
    """Parcels and returns on database queues, dead letters in the database, no retries."""
    app = ecopy.bootstrap(
        classes=[Packing],
        services=[Packing()],
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(url=database_url, auto_setup=True),
                DbalChannel("parcels", visibility_timeout_s=TIMEOUT_S),
                DbalChannel("returns"),
                ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 0)),
            ]
        ),
    )
    monkeypatch.setattr(f"{__name__}.system", app)
    yield app
    app.close()


def pack(app: MessagingSystem, *parcel_ids: str, **headers: Any) -> None:
    for parcel_id in parcel_ids:
        app.command_bus.send_with_routing("parcel.pack", parcel_id, headers=headers)


def test_messages_that_failed_on_a_channel_are_counted_as_its_dead_letters(warehouse):
    pack(warehouse, "broken-1", "p-1", "broken-2")
    warehouse.run("parcels", finish_when_no_messages=True)
    pack(warehouse, "p-2")

    assert warehouse.channel_status() == [
        ChannelStatus("parcels", waiting=1, due=1, in_flight=0, dead_lettered=2),
        ChannelStatus("returns", waiting=0, due=0, in_flight=0, dead_lettered=0),
    ]


def test_dead_letters_of_a_channel_the_application_no_longer_has_are_listed_apart(warehouse):
    store = warehouse.dead_letter.store
    assert isinstance(store, DbalDeadLetterStore)
    store.add(replace(entry(1), channel="retired"))

    assert warehouse.channel_status()[-1] == ChannelStatus(
        "retired", dead_lettered=1, declared=False
    )
    assert warehouse.channel_status("returns") == [
        ChannelStatus("returns", waiting=0, due=0, in_flight=0, dead_lettered=0)
    ]


def status(*args: str) -> Any:
    return invoke_ecopy("--app", f"{__name__}:system", "status", *args)


def test_ecopy_status_prints_a_row_per_channel(warehouse):
    pack(warehouse, "broken-1")
    warehouse.run("parcels", finish_when_no_messages=True)
    pack(warehouse, "p-1", "p-2")
    pack(warehouse, "p-3", **{ecopy.DELIVERY_DELAY: 3600})

    result = status()

    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        {"Channel": "parcels", "Waiting": "3", "Due": "2", "In flight": "0", "Dead-lettered": "1"},
        {"Channel": "returns", "Waiting": "0", "Due": "0", "In flight": "0", "Dead-lettered": "0"},
    ]


def test_ecopy_status_json_is_for_scripts(warehouse, database):
    pack(warehouse, "p-1", "p-2")
    taken = DbalQueue("parcels", database, serializer(), SystemClock())
    assert taken.receive() is not None  # another consumer holds both

    result = status("--json", "parcels")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "channel": "parcels",
            "waiting": 0,
            "due": 0,
            "in_flight": 2,
            "dead_lettered": 0,
            "declared": True,
            "reported": True,
        }
    ]


def test_ecopy_status_of_an_unknown_channel_is_a_usage_error_listing_the_known_ones(warehouse):
    result = status("parcels", "parcel")

    assert result.exit_code == 2
    assert "Unknown channel 'parcel'; known channels: parcels, returns" in result.output


def test_the_status_query_reads_no_row_into_the_process(warehouse, database):
    """One aggregate query per channel, however many messages wait."""
    pack(warehouse, *(f"p-{number}" for number in range(50)))
    executed: list[str] = []

    def record(_connection, _cursor, statement, *_rest) -> None:
        executed.append(statement)

    engine = warehouse.require_service(Database).engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        warehouse.channel_status("parcels")
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)

    on_messages = [s for s in executed if "ecopy_messages" in s]
    assert len(on_messages) == 1 and "count(" in on_messages[0].lower()
