"""The database queue (``DbalChannel``) on SQLite, PostgreSQL and MariaDB: the channel
contract, claims with a visibility timeout and prefetch, a handler's transaction that sends
and acknowledges with its effects, unreadable rows, two consumer processes on one queue, and
consumers that lose their database connection."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    ConfigurationError,
    ControlledClock,
    ErrorHandlerConfiguration,
    EventBus,
    Message,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    event_handler,
)
from ecopy.messaging.channel import ClaimLost
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.naming import TypeRegistry, type_name
from ecopy.messaging.serialization import MessageSerializer
from ecopy_dbal.channel import DbalChannel, DbalQueue, messages
from ecopy_dbal.database import Database
from tests.contracts.channel_contract import (
    PAYLOAD_TYPES,
    START,
    ChannelContract,
    parcel,
    received_ids,
)
from tests.dbal.queue_workers import Job, consume, database_module, effects, jobs_app


class TestDbalQueue(ChannelContract):
    @pytest.fixture
    def make_channel(self, database, clock, serializer):
        # The contract never acknowledges: a long visibility timeout keeps what it received
        # out of the way while it moves the clock, as taking from an in-memory queue does.
        return lambda name: DbalQueue(name, database, serializer, clock, visibility_timeout_s=3600)


# -- the application's side ----------------------------------------------------------------

orders = sa.Table(
    "queue_test_orders", sa.MetaData(), sa.Column("order_id", sa.String(64), primary_key=True)
)


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str
    reject: bool = False


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


class OrderRejected(Exception):
    pass


class Orders:
    @command_handler
    def place(self, command: PlaceOrder, connection: sa.Connection, events: EventBus) -> None:
        connection.execute(orders.insert(), {"order_id": command.order_id})
        events.publish(OrderPlaced(command.order_id))
        if command.reject:
            raise OrderRejected(f"order {command.order_id} rejected")


class Shipping:
    def __init__(self) -> None:
        self.shipped: list[str] = []
        self.broken: set[str] = set()
        self.attempts: list[tuple[str, str]] = []

    @asynchronous("orders")
    @event_handler(endpoint_id="ship_order")
    def ship(self, event: OrderPlaced, message: Message) -> None:
        self.attempts.append((event.order_id, message.id))
        if event.order_id in self.broken:
            raise ConnectionError(f"carrier unreachable for {event.order_id}")
        self.shipped.append(event.order_id)


@pytest.fixture
def make_app(database_url) -> Iterator[Callable[..., ecopy.MessagingSystem]]:
    """Bootstraps applications on the test database and closes their connections after."""
    apps: list[ecopy.MessagingSystem] = []

    def make(
        *extensions: object, classes: list[type] | None = None, services: Sequence[object] = ()
    ) -> ecopy.MessagingSystem:
        app = ecopy.bootstrap(
            classes=classes or [Orders, Shipping],
            services=list(services),
            config=ServiceConfiguration(extensions=[database_module(database_url), *extensions]),
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        database_of(app).dispose()


def database_of(app: ecopy.MessagingSystem) -> Database:
    database = app.service(Database)
    assert database is not None
    return database


def count(database: Database, table: sa.Table, *where: Any) -> int:
    with database.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(table).where(*where)
        ).scalar_one()


def orders_app(make_app, *extensions: object, services: Sequence[object] = (), **channel: Any):
    shipping = Shipping()
    app = make_app(
        DbalChannel("orders", **channel), *extensions, services=[Orders(), shipping, *services]
    )
    orders.create(database_of(app).engine)
    return app, shipping


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"visibility_timeout_s": 0}, "visibility_timeout_s must be a number of seconds > 0"),
        ({"visibility_timeout_s": "30"}, "visibility_timeout_s must be a number of seconds > 0"),
        ({"prefetch": 0}, "prefetch must be >= 1"),
        ({"prefetch": 2.5}, "prefetch must be an int >= 1"),
        ({"final_failure_strategy": "retry"}, "final_failure_strategy must be 'stop'"),
    ],
)
def test_invalid_options_are_refused_naming_the_channel(options, complaint):
    with pytest.raises(ValueError, match=complaint) as raised:
        DbalChannel("orders", **options)

    assert "DbalChannel('orders')" in str(raised.value)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        DbalChannel("orders", 60)


def test_a_database_channel_without_the_database_module_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match=r"DbalChannel\('orders'\) needs the database"):
        ecopy.bootstrap(
            classes=[Orders, Shipping],
            services=[Orders(), Shipping()],
            config=ServiceConfiguration(extensions=[DbalChannel("orders")]),
        )


# -- the outgoing message commits with the command -----------------------------------------


def test_a_rolled_back_command_leaves_neither_its_rows_nor_its_messages(make_app):
    app, shipping = orders_app(make_app)
    database = database_of(app)

    with pytest.raises(OrderRejected):
        app.command_bus.send(PlaceOrder("o-1", reject=True))

    assert count(database, orders) == 0
    assert count(database, messages) == 0
    assert app.run("orders", finish_when_no_messages=True) == 0
    assert shipping.shipped == []


def test_a_committed_command_commits_its_rows_and_messages_together(make_app):
    app, shipping = orders_app(make_app)
    database = database_of(app)

    app.command_bus.send(PlaceOrder("o-1"))

    assert count(database, orders) == 1
    assert count(database, messages, messages.c.queue == "orders") == 1
    assert shipping.shipped == []
    assert app.run("orders", finish_when_no_messages=True) == 1
    assert shipping.shipped == ["o-1"]
    assert count(database, messages) == 0


# -- claims and the visibility timeout -----------------------------------------------------


def test_a_message_claimed_by_a_consumer_that_died_is_delivered_after_the_visibility_timeout(
    make_app,
):
    clock = ControlledClock(START)
    app, shipping = orders_app(make_app, services=[clock], visibility_timeout_s=30)
    app.command_bus.send(PlaceOrder("o-1"))
    crashed = app_queue(app, "orders", prefetch=1)

    assert crashed.receive() is not None  # ... and that consumer never acknowledges it

    assert app.run("orders", finish_when_no_messages=True) == 0
    clock.advance(timedelta(seconds=29))
    assert app.run("orders", finish_when_no_messages=True) == 0
    clock.advance(timedelta(seconds=1))
    assert app.run("orders", finish_when_no_messages=True) == 1
    assert shipping.shipped == ["o-1"]
    assert count(database_of(app), messages) == 0


def app_queue(app: ecopy.MessagingSystem, name: str, **options: Any) -> DbalQueue:
    """Another consumer of the application's queue ``name`` (another process, as it were)."""
    queue = app.channel(name)
    assert isinstance(queue, DbalQueue)
    return DbalQueue(
        name,
        queue._database,
        queue._serializer,
        queue._clock,
        visibility_timeout_s=queue.visibility_timeout_s,
        **options,
    )


@pytest.fixture
def clock() -> ControlledClock:
    return ControlledClock(START)


@pytest.fixture
def queue_factory(database, clock) -> Callable[..., DbalQueue]:
    """Queue objects on one database: each is a consumer of its own, as another process."""
    names = TypeRegistry()
    names.register_all(PAYLOAD_TYPES)
    serializer = MessageSerializer(names, PayloadConversion())
    return lambda **options: DbalQueue("parcels", database, serializer, clock, **options)


@pytest.fixture
def statements(database) -> Iterator[list[str]]:
    """The SQL statements the queue's database runs during the test."""
    executed: list[str] = []

    def record(_connection, _cursor, statement, _parameters, _context, _many) -> None:
        executed.append(" ".join(statement.split()))

    sa.event.listen(database.engine, "before_cursor_execute", record)
    yield executed
    sa.event.remove(database.engine, "before_cursor_execute", record)


def claims(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("SELECT") and "ecopy_messages" in s]


def test_one_claim_takes_up_to_prefetch_messages_and_hands_them_out_one_at_a_time(
    queue_factory, statements
):
    queue = queue_factory(prefetch=4)
    for number in range(10):
        queue.send(parcel(f"p-{number}"))
    statements.clear()

    assert received_ids(queue) == [f"p-{number}" for number in range(10)]

    # 4 + 4 + 2, and one that finds the queue empty.
    assert len(claims(statements)) == 4


def test_prefetched_messages_are_invisible_to_other_consumers_until_given_back(queue_factory):
    first, second = queue_factory(prefetch=10), queue_factory(prefetch=10)
    for number in range(3):
        first.send(parcel(f"p-{number}"))

    taken = first.receive()
    assert taken is not None and second.receive() is None

    first.release_unhandled()  # the end of the first consumer's run, p-0 not acknowledged

    assert received_ids(second) == ["p-0", "p-1", "p-2"]


def test_an_acknowledgement_in_a_transaction_commits_or_rolls_back_with_it(
    queue_factory, database, clock
):
    queue = queue_factory(visibility_timeout_s=30)
    queue.send(parcel("p-1"))
    message = queue.receive()

    with pytest.raises(OrderRejected), database.transaction():
        queue.acknowledge(message)
        raise OrderRejected("the handler failed after acknowledging")

    assert count(database, messages) == 1
    with database.transaction():
        queue.acknowledge(message)  # the consumer settles it again: the row is still known
    assert count(database, messages) == 0
    clock.advance(timedelta(seconds=30))
    assert queue.receive() is None


def test_acknowledgements_outside_a_transaction_are_deleted_with_the_next_claim(
    queue_factory, database, statements
):
    queue = queue_factory(prefetch=10)
    for number in range(3):
        queue.send(parcel(f"p-{number}"))

    for _ in range(3):
        queue.acknowledge(queue.receive())
    assert count(database, messages) == 3  # deferred: claimed, so nobody else takes them
    statements.clear()

    assert queue.receive() is None

    deletes = [s for s in statements if s.startswith("DELETE FROM ecopy_messages")]
    assert len(deletes) == 1
    assert count(database, messages) == 0


def test_the_end_of_a_run_applies_deferred_acknowledgements(queue_factory, database):
    queue = queue_factory(prefetch=10)
    for number in range(3):
        queue.send(parcel(f"p-{number}"))
    queue.acknowledge(queue.receive())

    queue.release_unhandled()

    assert received_ids(queue_factory()) == ["p-1", "p-2"]


def test_a_prefetched_message_that_waited_half_the_visibility_timeout_is_claimed_afresh(
    queue_factory, clock
):
    queue, other = queue_factory(visibility_timeout_s=30), queue_factory(visibility_timeout_s=30)
    for number in range(3):
        queue.send(parcel(f"p-{number}"))
    queue.receive()  # p-0; p-1 and p-2 wait in this consumer

    clock.advance(timedelta(seconds=16))
    assert queue.receive().payload.parcel_id == "p-1"

    # p-1 now has a whole visibility timeout ahead of it: still hidden 29 s later.
    clock.advance(timedelta(seconds=29))
    assert received_ids(other) == ["p-0"]


def test_an_acknowledgement_whose_claim_was_taken_by_another_consumer_rolls_its_work_back(
    queue_factory, database, clock
):
    slow, fast = queue_factory(visibility_timeout_s=30), queue_factory(visibility_timeout_s=30)
    slow.send(parcel("p-1"))
    late = slow.receive()
    clock.advance(timedelta(seconds=31))
    again = fast.receive()
    assert again is not None and again.id == late.id

    with pytest.raises(ClaimLost, match="another consumer took it"), database.transaction():
        slow.send(parcel("p-2"))  # an effect of the slow handler: rolled back with it
        slow.acknowledge(late)

    assert count(database, messages) == 1
    with database.transaction():
        fast.acknowledge(again)
    assert count(database, messages) == 0


def test_a_retry_sends_a_copy_with_the_same_id_and_removes_the_original(make_app):
    app, shipping = orders_app(
        make_app, ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 2))
    )
    app.command_bus.send(PlaceOrder("o-1"))
    shipping.broken = {"o-1"}
    assert app.run("orders", handled_message_limit=1) == 1
    shipping.broken = set()

    assert app.run("orders", finish_when_no_messages=True) == 1

    [(_, first), (_, second)] = shipping.attempts
    assert first == second
    assert shipping.shipped == ["o-1"]
    assert count(database_of(app), messages) == 0


def test_without_error_handling_a_failed_message_stays_first_for_the_next_run(make_app):
    app, shipping = orders_app(make_app)
    for order_id in ("o-1", "o-2", "o-3"):
        app.command_bus.send(PlaceOrder(order_id))
    shipping.broken = {"o-1"}

    with pytest.raises(ConnectionError):
        app.run("orders", finish_when_no_messages=True)

    # o-1 was given back, and so were o-2 and o-3, claimed with it: all visible at once.
    shipping.broken = set()
    assert app.run("orders", finish_when_no_messages=True) == 3
    assert shipping.shipped == ["o-1", "o-2", "o-3"]


# -- unreadable rows -----------------------------------------------------------------------


def test_an_unreadable_row_becomes_a_dead_letter_and_the_next_message_is_handled(make_app):
    app, shipping = orders_app(make_app)
    app.channel("orders").send_serialized("{not json")
    app.command_bus.send(PlaceOrder("o-1"))

    assert app.run("orders", finish_when_no_messages=True) == 2

    assert shipping.shipped == ["o-1"]
    [dead] = app.dead_letter.list()
    assert dead.channel == "orders"
    assert dead.body == "{not json"
    assert "malformed JSON" in dead.exception_message
    assert count(database_of(app), messages) == 0


# -- two consumer processes ----------------------------------------------------------------

JOBS = 2000


def test_two_consumer_processes_handle_every_message_exactly_once(database_url):
    app = jobs_app(database_url, worker=0)
    database = database_of(app)
    effects.create(database.engine)
    with database.transaction():  # one transaction: the jobs appear together
        for number in range(JOBS):
            app.command_bus.send(Job(number))

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [
        context.Process(target=consume, args=(database_url, worker, start), name=f"worker-{worker}")
        for worker in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    for worker in workers:
        assert worker.exitcode == 0, f"{worker.name} failed (exit code {worker.exitcode})"

    with database.engine.connect() as connection:
        handled = connection.execute(
            sa.select(effects.c.job, sa.func.count()).group_by(effects.c.job)
        ).all()
        by_worker = dict(
            connection.execute(
                sa.select(effects.c.worker, sa.func.count()).group_by(effects.c.worker)
            ).all()
        )
    assert sorted(job for job, _ in handled) == list(range(JOBS))
    assert [job for job, times in handled if times > 1] == []
    assert set(by_worker) == {1, 2}, f"one worker did everything: {by_worker}"
    assert count(database, messages) == 0
    database.dispose()


# -- lost connections (PostgreSQL) ---------------------------------------------------------


def terminate(admin: sa.Engine, *pids: int) -> None:
    """Kill server-side connections and wait until they are gone."""
    with admin.connect() as connection:
        for pid in pids:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        connection.commit()
        deadline = time.monotonic() + 10
        # Each look in a transaction of its own: PostgreSQL shows one snapshot of
        # pg_stat_activity per transaction.
        while connection.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
            {"pids": list(pids)},
        ).scalar_one():
            connection.rollback()
            assert time.monotonic() < deadline, f"connections {pids} survived being terminated"
            time.sleep(0.01)


def terminate_all_others(admin: sa.Engine) -> int:
    """The brief's kill: every other connection to this test's database."""
    with admin.connect() as connection:
        pids = (
            connection.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            )
            .scalars()
            .all()
        )
    if pids:
        terminate(admin, *pids)
    return len(pids)


class Recorder:
    """Inserts one effect row per handling; on chosen jobs it first has its own connection
    killed, in the middle of its transaction."""

    def __init__(self, admin: sa.Engine, doomed: set[int]) -> None:
        self.admin = admin
        self.doomed = doomed
        self.kills = 0

    @asynchronous("jobs")
    @command_handler(endpoint_id="do_job")
    def do(self, job: Job, connection: sa.Connection, message: Message) -> None:
        connection.execute(
            effects.insert(), {"message_id": message.id, "job": job.number, "worker": 0}
        )
        if job.number in self.doomed:
            self.doomed.discard(job.number)
            terminate(
                self.admin, connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            )
            self.kills += 1
        connection.execute(sa.select(1))  # the transaction goes on, on a dead connection


postgres_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def admin(database_url) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    yield engine
    engine.dispose()


@postgres_only
def test_a_consumer_goes_on_when_its_connection_is_killed_between_polls(make_app, admin, caplog):
    recorder = Recorder(admin, doomed=set())
    app = make_app(DbalChannel("jobs", prefetch=5), classes=[Recorder], services=[recorder])
    database = database_of(app)
    effects.create(database.engine)
    for number in range(30):
        app.command_bus.send(Job(number))
    killed_at_claim = kill_before_claims(database.engine, admin, claims_to_kill={1, 3})

    assert app.run("jobs", handled_message_limit=12) == 12
    assert terminate_all_others(admin) >= 1  # the consumer's idle connections, between runs
    assert app.run("jobs", finish_when_no_messages=True) == 18

    assert killed_at_claim == [1, 3]
    assert handled_jobs(database) == list(range(30))
    assert count(database, messages) == 0
    assert any("retrying" in record.getMessage() for record in caplog.records)


def kill_before_claims(engine: sa.Engine, admin: sa.Engine, claims_to_kill: set[int]) -> list[int]:
    """Kill the connection a claim is about to run on (after the pool checked it), for the
    claims numbered in ``claims_to_kill``; returns the numbers killed."""
    seen = [0]
    killed: list[int] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def kill(connection, cursor, statement, parameters, context, many) -> None:
        if "FOR UPDATE SKIP LOCKED" not in statement:
            return
        seen[0] += 1
        if seen[0] in claims_to_kill:
            claims_to_kill.discard(seen[0])
            killed.append(seen[0])
            terminate(admin, cursor.connection.info.backend_pid)

    return killed


def handled_jobs(database: Database) -> list[int]:
    with database.engine.connect() as connection:
        return sorted(connection.execute(sa.select(effects.c.job)).scalars())


@postgres_only
def test_a_handler_whose_connection_is_killed_mid_transaction_is_retried_and_counted_once(
    make_app, admin
):
    recorder = Recorder(admin, doomed={2, 7, 8})
    app = make_app(
        DbalChannel("jobs", prefetch=5),
        ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 3)),
        classes=[Recorder],
        services=[recorder],
    )
    database = database_of(app)
    effects.create(database.engine)
    for number in range(12):
        app.command_bus.send(Job(number))

    app.run("jobs", finish_when_no_messages=True)

    assert recorder.kills == 3
    assert handled_jobs(database) == list(range(12))  # each once: the killed attempts rolled back
    assert app.dead_letter.count() == 0
    assert count(database, messages) == 0


# -- delivery headers on one send ---------------------------------------------------------


def test_delivery_headers_of_a_send_are_honoured_by_the_database_queue(make_app):
    clock = ControlledClock(START)
    app, shipping = orders_app(make_app, services=[clock], prefetch=1)
    app.event_bus.publish(OrderPlaced("late"), headers={ecopy.DELIVERY_DELAY: 60})
    app.event_bus.publish(OrderPlaced("plain"))
    app.event_bus.publish(OrderPlaced("urgent"), headers={ecopy.PRIORITY: 5})
    app.event_bus.publish(OrderPlaced("stale"), headers={ecopy.TIME_TO_LIVE: 30})

    clock.advance(timedelta(seconds=30))
    assert app.run("orders", finish_when_no_messages=True) == 2
    assert shipping.shipped == ["urgent", "plain"]  # "stale" expired, "late" not due yet

    clock.advance(timedelta(seconds=30))
    assert app.run("orders", finish_when_no_messages=True) == 1
    assert shipping.shipped == ["urgent", "plain", "late"]


def test_a_row_written_by_another_program_without_an_endpoint_is_routed_by_its_type(make_app):
    app, shipping = orders_app(make_app)
    app.channel("orders").send_serialized(
        json.dumps(
            {
                "type": type_name(OrderPlaced),
                "payload": {"order_id": "o-ext"},
                "headers": {"id": "ext-1"},
            }
        )
    )

    assert app.run("orders", finish_when_no_messages=True) == 1

    assert shipping.shipped == ["o-ext"]
    assert count(database_of(app), messages) == 0
