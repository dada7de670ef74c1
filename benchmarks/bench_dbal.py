"""ecopy on PostgreSQL: commands with an outbox, the outbox relay and the event store, in one run.

Run from the repository root with the benchmark venv (see benchmarks/README.md)::

    .venv-bench/bin/python benchmarks/bench_dbal.py            # full run
    .venv-bench/bin/python benchmarks/bench_dbal.py --quick    # smoke run
    .venv-bench/bin/python benchmarks/bench_dbal.py --profile ecopy-command   # pyinstrument

Every workload runs against one PostgreSQL server, in a database of its own that the script
creates and drops (``ecopy_bench`` by default). Three measurements share the run, their repeats
interleaved round-robin:

1. **A command that writes a business row and one outbox message, one transaction each.**
   ecopy: ``app.command_bus.send(PlaceOrder(...))``; the handler inserts into ``orders`` through
   the injected ``sqlalchemy.Connection`` and publishes ``OrderPlaced``, whose handler is
   ``@asynchronous("outbox")`` on a ``DbalChannel``: the message is a row of ``ecopy_messages``
   in the same transaction. The floor is raw psycopg 3 on one connection: ``INSERT`` + ``COMMIT``
   per row, and the same with a second, hand-written outbox ``INSERT`` in the transaction. The
   same two inserts through SQLAlchemy Core, without ecopy, show what the driver layer costs.
2. **Outbox relay throughput.** ``--messages`` messages wait in a ``DbalChannel("db")``; its
   consumer, run with ``app.run("db", finish_when_no_messages=True)``, forwards them to an
   in-memory ``QueueChannel`` (``CombinedMessageChannel("relay", ["db", "memory"])``), claiming
   one row per query (``prefetch=1``) or a batch (``prefetch=50``). The floor is the database
   side of a batch relay written with psycopg: claim 50 rows, hand them on, delete, commit.
3. **Event store.** ``--aggregates`` event-sourced aggregates are created, one command each with
   3 events, then each is reloaded from the database; and the same creation by 4 concurrent
   writer threads sharing one application. ecopy stores them through ``DbalEventStore``
   (``ecopy_events``); the comparison is the eventsourcing library's PostgreSQL persistence
   (``Application`` with an ``Aggregate`` subclass, ``app.save``, ``app.repository.get``).

Method: see ``timing.py``. In addition, every timed repeat starts from empty tables: the tables
a workload writes are truncated before the clock starts, then a ``gc.collect()`` follows. After
every repeat, outside the clock, the script counts the rows or events the workload wrote and
checks the state it reached, so a broken workload cannot report a fast number.
"""

import argparse
import gc
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter_ns
from typing import Annotated, Any

from timing import (
    Library,
    Summary,
    build_all,
    expect,
    imported_from,
    parse_args,
    python_description,
    ratio_line,
    report_unavailable,
    summarize,
    version_of,
)

DEFAULT_SERVER_URL = os.environ.get(
    "ECOPY_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DEFAULT_DATABASE = "ecopy_bench"
DEFAULT_CALLS = 1_000
QUICK_CALLS = 150
DEFAULT_MESSAGES = 1_000
QUICK_MESSAGES = 300
DEFAULT_AGGREGATES = 400
QUICK_AGGREGATES = 80
DEFAULT_REPEATS = 7
QUICK_REPEATS = 3
WARMUP = 100
"""Operations of every workload before the timed repeats (at least ``WRITERS``)."""
BATCH = 50
"""The relay's batch size: ``DbalChannel("db", prefetch=BATCH)``."""
WRITERS = 4
"""Concurrent writer threads in the event-store workload."""
DEPOSITS = (10, 20)
"""A new account is opened with these deposits: 1 + len(DEPOSITS) events per aggregate."""
EVENTS_PER_AGGREGATE = 1 + len(DEPOSITS)
BALANCE = sum(DEPOSITS)

CREATE = "create"
RELOAD = "reload"
ONE_PHASE = "all"

# --------------------------------------------------------------------------------------------
# Messages (plain dataclasses; eventsourcing derives its events from the decorated methods)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


@dataclass(frozen=True)
class ShipOrder:
    order_id: str


@dataclass(frozen=True)
class OpenAccount:
    account_id: str
    deposits: tuple[int, ...]


@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@dataclass(frozen=True)
class MoneyDeposited:
    account_id: str
    amount: int


# --------------------------------------------------------------------------------------------
# The PostgreSQL server and the benchmark's database
# --------------------------------------------------------------------------------------------

ORDERS_DDL = (
    "CREATE TABLE IF NOT EXISTS orders "
    "(order_id varchar(50) PRIMARY KEY, status varchar(20) NOT NULL)"
)
RAW_OUTBOX_DDL = (
    # The columns and the index of ecopy_messages, so that the floor pays the same index upkeep.
    "CREATE TABLE IF NOT EXISTS raw_outbox ("
    "id bigserial PRIMARY KEY, queue varchar(255) NOT NULL, body text NOT NULL, "
    "priority integer NOT NULL, deliver_at double precision, expires_at double precision, "
    "claimed_until double precision, claim_token varchar(32), "
    "created_at double precision NOT NULL)"
)
RAW_OUTBOX_INDEX_DDL = (
    "CREATE INDEX IF NOT EXISTS ix_raw_outbox_delivery_order ON raw_outbox "
    "(queue, priority DESC, id)"
)


class BenchDatabase:
    """A database of the benchmark's own on the server: created at the start, dropped at the end.

    ``admin`` is an autocommit psycopg connection to it for truncating and counting, outside
    every timed loop."""

    def __init__(self, server_url: str, name: str) -> None:
        import sqlalchemy as sa

        self.server = sa.make_url(server_url)
        self.name = name
        self.url = self.server.set(database=name).render_as_string(hide_password=False)
        self.admin: Any = None
        self.closers: list[Callable[[], None]] = []
        """Called before the database is dropped: engines, pools and connections on it."""

    def conninfo(self, database: str | None = None) -> str:
        """libpq keywords for psycopg."""
        url = self.server
        parts = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 5432,
            "user": url.username or "postgres",
            "dbname": database or self.name,
        }
        if url.password:
            parts["password"] = url.password
        return " ".join(f"{key}={value}" for key, value in parts.items())

    def create(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo(self.server.database), autocommit=True) as server:
            server.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            server.execute(f"CREATE DATABASE {self.name}")
        self.admin = psycopg.connect(self.conninfo(), autocommit=True)
        self.admin.execute(ORDERS_DDL)
        self.admin.execute(RAW_OUTBOX_DDL)
        self.admin.execute(RAW_OUTBOX_INDEX_DDL)

    def drop(self) -> None:
        import psycopg

        for close in reversed(self.closers):
            close()
        self.closers.clear()
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        with psycopg.connect(self.conninfo(self.server.database), autocommit=True) as server:
            server.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def truncate(self, *tables: str) -> None:
        existing = {
            row[0]
            for row in self.admin.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        found = [table for table in tables if table in existing]
        if found:
            self.admin.execute(f"TRUNCATE {', '.join(found)} RESTART IDENTITY")

    def ecopy_tables(self) -> list[str]:
        from ecopy_dbal import schema

        return [table.name for table in schema.all_tables()]

    def count(self, table: str, where: str = "") -> int:
        return int(self.admin.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0])


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One timed repeat of ``n`` operations, prepared on empty tables."""

    run: Callable[[], dict[str, int]]
    """Performs the operations; returns the elapsed nanoseconds of each phase."""
    verify: Callable[[], None]
    """Checks, outside the clock, that the operations did their work."""
    deliver: Callable[[], None] | None = None
    """For the check before timing only: consumes what the operations left and checks it."""


@dataclass
class Workload:
    key: str
    """Short name for ``--profile``."""
    library: str
    label: str
    operations: int
    """Operations per timed repeat."""
    prepare: Callable[[int], Trial]
    samples_ns: dict[str, list[float]] = field(default_factory=dict)
    """Per-operation nanoseconds of each phase, one entry per timed repeat."""

    @property
    def name(self) -> str:
        return f"{self.library} {self.label}"

    def run(self, n: int) -> dict[str, int]:
        trial = self.prepare(n)
        gc.collect()
        elapsed = trial.run()
        trial.verify()
        return elapsed

    def check(self) -> None:
        trial = self.prepare(WRITERS)
        trial.run()
        trial.verify()
        if trial.deliver is not None:
            trial.deliver()

    def warm_up(self) -> None:
        self.run(WARMUP)

    def timed_repeat(self) -> None:
        for phase, elapsed in self.run(self.operations).items():
            self.samples_ns.setdefault(phase, []).append(elapsed / self.operations)

    def summary(self, phase: str = ONE_PHASE) -> Summary:
        return summarize(self.samples_ns[phase])


@dataclass(frozen=True)
class Sizes:
    calls: int
    messages: int
    aggregates: int


def concurrently(work: Sequence[Callable[[], None]]) -> int:
    """Runs each callable in a thread of its own, all released at once; returns the
    nanoseconds from the release until the last one finished. Re-raises the first error."""
    gate = threading.Barrier(len(work) + 1)
    errors: list[BaseException] = []

    def worker(job: Callable[[], None]) -> None:
        gate.wait()
        try:
            job()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    gate.wait()
    start = perf_counter_ns()
    for thread in threads:
        thread.join()
    elapsed = perf_counter_ns() - start
    if errors:
        raise errors[0]
    return elapsed


def close_on_drop(db: BenchDatabase, app: Any) -> None:
    """Dispose of an ecopy application's engine before the database is dropped."""
    from ecopy_dbal import Database

    database = app.service(Database)
    if database is not None:
        db.closers.append(database.dispose)


def chunks(items: Sequence[str], parts: int) -> list[Sequence[str]]:
    return [items[index::parts] for index in range(parts)]


def order_ids(n: int) -> list[str]:
    return [f"o-{index}" for index in range(n)]


def account_ids(n: int) -> list[str]:
    return [f"acc-{index}" for index in range(n)]


# --------------------------------------------------------------------------------------------
# 1. A command: business row + outbox message, one transaction each
# --------------------------------------------------------------------------------------------


def build_ecopy_command(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    import sqlalchemy as sa

    import ecopy
    from ecopy import EventBus, ServiceConfiguration, asynchronous, command_handler, event_handler
    from ecopy_dbal import DbalChannel, DbalConfiguration

    orders = sa.Table(
        "orders",
        sa.MetaData(),
        sa.Column("order_id", sa.String(50), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
    )

    class Orders:
        def __init__(self) -> None:
            self.confirmed: list[str] = []

        @command_handler
        def place(self, command: PlaceOrder, connection: sa.Connection, events: EventBus) -> str:
            connection.execute(orders.insert().values(order_id=command.order_id, status="placed"))
            events.publish(OrderPlaced(command.order_id))
            return command.order_id

        @asynchronous("outbox")
        @event_handler(endpoint_id="confirm_order")
        def confirm(self, event: OrderPlaced) -> None:
            self.confirmed.append(event.order_id)

    service = Orders()
    app = ecopy.bootstrap(
        classes=[Orders],
        services=[service],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=db.url, auto_setup=True), DbalChannel("outbox")]
        ),
    )
    close_on_drop(db, app)
    send = app.command_bus.send

    def prepare(n: int) -> Trial:
        db.truncate("orders", *db.ecopy_tables())
        ids = order_ids(n)
        results: list[object] = []

        def run() -> dict[str, int]:
            start = perf_counter_ns()
            for order_id in ids:
                results.append(send(PlaceOrder(order_id)))
            return {ONE_PHASE: perf_counter_ns() - start}

        def verify() -> None:
            expect(results == ids, f"ecopy command returned {results[:3]}..., expected the ids")
            rows, messages = db.count("orders"), db.count("ecopy_messages")
            expect(rows == n, f"ecopy command: {rows} orders after {n} commands")
            expect(messages == n, f"ecopy command: {messages} outbox messages after {n} commands")

        def deliver() -> None:
            service.confirmed.clear()
            handled = app.run("outbox", finish_when_no_messages=True)
            expect(handled == n, f"ecopy outbox consumer handled {handled} of {n} messages")
            expect(service.confirmed == ids, f"ecopy outbox delivered {service.confirmed}")
            left = db.count("ecopy_messages")
            expect(left == 0, f"ecopy outbox: {left} messages left after consuming")

        return Trial(run, verify, deliver)

    return [
        Workload(
            "ecopy-command",
            "ecopy",
            "command: row + outbox message",
            sizes.calls,
            prepare,
        )
    ]


def build_psycopg_command(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    import psycopg

    insert_order = "INSERT INTO orders (order_id, status) VALUES (%s, %s)"
    insert_outbox = (
        "INSERT INTO raw_outbox (queue, body, priority, created_at) "
        "VALUES (%(queue)s, %(body)s, %(priority)s, %(created_at)s)"
    )

    def workload(key: str, label: str, with_outbox: bool) -> Workload:
        connection = psycopg.connect(db.conninfo())
        db.closers.append(connection.close)

        def prepare(n: int) -> Trial:
            db.truncate("orders", "raw_outbox")
            ids = order_ids(n)

            def run_row() -> dict[str, int]:
                cursor = connection.cursor()
                start = perf_counter_ns()
                for order_id in ids:
                    cursor.execute(insert_order, (order_id, "placed"))
                    connection.commit()
                return {ONE_PHASE: perf_counter_ns() - start}

            def run_row_and_outbox() -> dict[str, int]:
                cursor = connection.cursor()
                start = perf_counter_ns()
                for order_id in ids:
                    cursor.execute(insert_order, (order_id, "placed"))
                    cursor.execute(insert_outbox, hand_written_outbox_row(order_id))
                    connection.commit()
                return {ONE_PHASE: perf_counter_ns() - start}

            def verify() -> None:
                rows = db.count("orders")
                expect(rows == n, f"psycopg {label}: {rows} orders after {n} transactions")
                outbox = db.count("raw_outbox")
                expected = n if with_outbox else 0
                expect(outbox == expected, f"psycopg {label}: {outbox} outbox rows after {n}")

            return Trial(run_row_and_outbox if with_outbox else run_row, verify)

        return Workload(key, "psycopg", label, sizes.calls, prepare)

    return [
        workload("psycopg-row", "INSERT row, COMMIT", with_outbox=False),
        workload("psycopg-row-outbox", "INSERT row + outbox row, COMMIT", with_outbox=True),
    ]


def build_sqlalchemy_command(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    """The same two inserts through SQLAlchemy Core, without ecopy: an engine configured as
    ecopy configures it (``create_database_engine``: a connection idle for more than a second
    is checked before use, instead of a pre-ping per transaction), one ``engine.begin()`` per
    transaction."""
    import sqlalchemy as sa

    from ecopy_dbal.database import create_database_engine

    tables = sa.MetaData()
    orders = sa.Table(
        "orders",
        tables,
        sa.Column("order_id", sa.String(50), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
    )
    outbox = sa.Table(
        "raw_outbox",
        tables,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    engine = create_database_engine(db.url)
    db.closers.append(engine.dispose)

    def prepare(n: int) -> Trial:
        db.truncate("orders", "raw_outbox")
        ids = order_ids(n)

        def run() -> dict[str, int]:
            start = perf_counter_ns()
            for order_id in ids:
                with engine.begin() as connection:
                    connection.execute(orders.insert().values(order_id=order_id, status="placed"))
                    connection.execute(outbox.insert(), hand_written_outbox_row(order_id))
            return {ONE_PHASE: perf_counter_ns() - start}

        def verify() -> None:
            rows, outbox_rows = db.count("orders"), db.count("raw_outbox")
            expect(rows == n, f"SQLAlchemy Core: {rows} orders after {n} transactions")
            expect(outbox_rows == n, f"SQLAlchemy Core: {outbox_rows} outbox rows after {n}")

        return Trial(run, verify)

    return [
        Workload(
            "sqlalchemy-row-outbox",
            "SQLAlchemy Core",
            "row + outbox row",
            sizes.calls,
            prepare,
        )
    ]


def hand_written_outbox_row(order_id: str) -> dict[str, Any]:
    """What a hand-written outbox stores: a JSON envelope with an id and a time."""
    now = time.time()
    headers = {"id": str(uuid.uuid4()), "timestamp": now}
    envelope = {"type": "OrderPlaced", "payload": {"order_id": order_id}, "headers": headers}
    body = json.dumps(envelope)
    return {"queue": "outbox", "body": body, "priority": 0, "created_at": now}


# --------------------------------------------------------------------------------------------
# 2. The outbox relay: database queue -> in-memory channel
# --------------------------------------------------------------------------------------------


def shipping_app(db: BenchDatabase, channel: str, *extensions: Any) -> tuple[Any, Any]:
    """An application whose ``ship_order`` handler is ``@asynchronous(channel)`` and counts
    what it shipped; returns it with its ``Shipping`` service."""
    import ecopy
    from ecopy import ServiceConfiguration, asynchronous, command_handler
    from ecopy_dbal import DbalConfiguration

    class Shipping:
        def __init__(self) -> None:
            self.shipped = 0
            self.last: str | None = None

        @asynchronous(channel)
        @command_handler(endpoint_id="ship_order")
        def ship(self, command: ShipOrder) -> None:
            self.shipped += 1
            self.last = command.order_id

    service = Shipping()
    app = ecopy.bootstrap(
        classes=[Shipping],
        services=[service],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=db.url, auto_setup=True), *extensions]
        ),
    )
    close_on_drop(db, app)
    return app, service


def build_ecopy_relay(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    from ecopy import CombinedMessageChannel, QueueChannel
    from ecopy_dbal import Database, DbalChannel

    def workload(prefetch: int) -> Workload:
        app, service = shipping_app(
            db,
            "relay",
            DbalChannel("db", prefetch=prefetch),
            QueueChannel("memory"),
            CombinedMessageChannel("relay", ["db", "memory"]),
        )
        database = app.service(Database)
        assert database is not None
        memory: Any = app.channel("memory")

        def prepare(n: int) -> Trial:
            fill_job_queue(db, app, database, n)
            ids = order_ids(n)
            relayed: list[int] = []

            def run() -> dict[str, int]:
                start = perf_counter_ns()
                relayed.append(app.run("db", finish_when_no_messages=True))
                return {ONE_PHASE: perf_counter_ns() - start}

            def verify() -> None:
                expect(relayed == [n], f"relay prefetch={prefetch} forwarded {relayed} of {n}")
                left = db.count("ecopy_messages")
                expect(left == 0, f"relay prefetch={prefetch}: {left} rows left in the database")
                expect(len(memory) == n, f"relay prefetch={prefetch}: {memory!r}, expected {n}")
                before = service.shipped
                handled = app.run("memory", finish_when_no_messages=True)
                shipped = service.shipped - before
                expect(
                    handled == n and shipped == n,
                    f"relay prefetch={prefetch}: {handled} handled, {shipped} shipped, not {n}",
                )
                expect(
                    service.last == ids[-1],
                    f"relay prefetch={prefetch}: last shipped {service.last!r}, not {ids[-1]!r}",
                )

            return Trial(run, verify)

        label = f"relay, prefetch={prefetch}"
        return Workload(f"relay-{prefetch}", "ecopy", label, sizes.messages, prepare)

    return [workload(1), workload(BATCH)]


def build_psycopg_relay(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    """The database side of a batch relay, by hand: claim a batch with ``SELECT ... FOR UPDATE
    SKIP LOCKED``, hand the bodies on (to a list), delete the batch, commit."""
    import psycopg

    connection = psycopg.connect(db.conninfo())
    db.closers.append(connection.close)
    claim = (
        "SELECT id, body FROM raw_outbox WHERE queue = %s "
        "AND (claimed_until IS NULL OR claimed_until <= %s) "
        "AND (deliver_at IS NULL OR deliver_at <= %s) "
        "ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED"
    )
    delete = "DELETE FROM raw_outbox WHERE id = ANY(%s)"
    insert = (
        "INSERT INTO raw_outbox (queue, body, priority, created_at) "
        "VALUES (%(queue)s, %(body)s, %(priority)s, %(created_at)s)"
    )

    def prepare(n: int) -> Trial:
        db.truncate("raw_outbox")
        ids = order_ids(n)
        with connection.cursor() as cursor:
            cursor.executemany(insert, [hand_written_outbox_row(order_id) for order_id in ids])
        connection.commit()
        sink: list[str] = []

        def run() -> dict[str, int]:
            cursor = connection.cursor()
            start = perf_counter_ns()
            while True:
                now = time.time()
                rows = cursor.execute(claim, ("outbox", now, now, BATCH)).fetchall()
                if not rows:
                    connection.commit()
                    break
                sink.extend(body for _, body in rows)
                cursor.execute(delete, ([row_id for row_id, _ in rows],))
                connection.commit()
            return {ONE_PHASE: perf_counter_ns() - start}

        def verify() -> None:
            expect(len(sink) == n, f"psycopg relay: {len(sink)} of {n} messages handed on")
            expect(ids[-1] in sink[-1], f"psycopg relay: last message {sink[-1][:80]}")
            left = db.count("raw_outbox")
            expect(left == 0, f"psycopg relay: {left} rows left in the database")

        return Trial(run, verify)

    return [
        Workload(
            f"psycopg-relay-{BATCH}",
            "psycopg",
            f"batch relay floor, {BATCH} per claim",
            sizes.messages,
            prepare,
        )
    ]


# --------------------------------------------------------------------------------------------
# 2b. A consumer draining a database queue, each message handled in its own transaction
# --------------------------------------------------------------------------------------------

DRAIN_PREFETCH = 10
"""The consumer's prefetch: ``DbalChannel``'s default."""
PG_NOW = "statement_timestamp()"
"""The database clock expression ecopy's queue uses on PostgreSQL (``ecopy_dbal.schema``)."""


def build_ecopy_drain(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    from ecopy_dbal import Database, DbalChannel

    app, service = shipping_app(db, "jobs", DbalChannel("jobs", prefetch=DRAIN_PREFETCH))
    database = app.service(Database)
    assert database is not None

    def prepare(n: int) -> Trial:
        fill_job_queue(db, app, database, n)
        ids = order_ids(n)
        before = service.shipped
        drained: list[int] = []

        def run() -> dict[str, int]:
            start = perf_counter_ns()
            drained.append(app.run("jobs", finish_when_no_messages=True))
            return {ONE_PHASE: perf_counter_ns() - start}

        def verify() -> None:
            shipped = service.shipped - before
            expect(drained == [n] and shipped == n, f"drain: {drained} handled, {shipped} of {n}")
            expect(service.last == ids[-1], f"drain: last shipped {service.last!r}")
            left = db.count("ecopy_messages")
            expect(left == 0, f"drain: {left} rows left in the database")

        return Trial(run, verify)

    label = f"consumer drain, prefetch={DRAIN_PREFETCH}"
    return [Workload("drain", "ecopy", label, sizes.messages, prepare)]


def fill_job_queue(db: BenchDatabase, app: Any, database: Any, n: int) -> None:
    """``n`` ecopy messages for ``ship_order`` in ``ecopy_messages``, sent by ``app``."""
    db.truncate(*db.ecopy_tables())
    with database.transaction():  # one transaction fills the queue; its sends join it
        for order_id in order_ids(n):
            app.command_bus.send(ShipOrder(order_id))
    waiting = db.count("ecopy_messages")
    expect(waiting == n, f"{waiting} rows queued, expected {n}")


def build_psycopg_drain(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    """The floor of the drain: ecopy's own statements by hand on one psycopg connection. A
    claim transaction takes ``DRAIN_PREFETCH`` rows (``SELECT ... FOR UPDATE SKIP LOCKED``,
    then ``UPDATE`` with a claim token); then each message is parsed (``json.loads``) and
    deleted in a transaction of its own, as the handler's acknowledgement does."""
    import psycopg

    from ecopy_dbal import Database, DbalChannel

    filler, _ = shipping_app(db, "jobs", DbalChannel("jobs"))
    connection = psycopg.connect(db.conninfo())
    db.closers.append(connection.close)
    claim = (
        f"SELECT id, body, expires_at, {PG_NOW} AS now FROM ecopy_messages WHERE queue = %s "
        f"AND (claimed_until IS NULL OR claimed_until <= {PG_NOW}) "
        f"AND (deliver_at IS NULL OR deliver_at <= {PG_NOW}) "
        f"ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED"
    )
    mark = (
        f"UPDATE ecopy_messages SET claimed_until = {PG_NOW} + make_interval(0, 0, 0, 0, 0, 0, "
        f"%s), claim_token = %s WHERE id = ANY(%s)"
    )
    acknowledge = "DELETE FROM ecopy_messages WHERE claim_token = %s AND id = ANY(%s)"

    def prepare(n: int) -> Trial:
        fill_job_queue(db, filler, filler.service(Database), n)
        handled: list[str] = []

        def run() -> dict[str, int]:
            cursor = connection.cursor()
            start = perf_counter_ns()
            while True:
                rows = cursor.execute(claim, ("jobs", DRAIN_PREFETCH)).fetchall()
                if not rows:
                    connection.commit()
                    break
                token = uuid.uuid4().hex
                cursor.execute(mark, (30.0, token, [row[0] for row in rows]))
                connection.commit()
                for row_id, body, _, _ in rows:
                    handled.append(json.loads(body)["payload"]["order_id"])
                    cursor.execute(acknowledge, (token, [row_id]))
                    connection.commit()
            return {ONE_PHASE: perf_counter_ns() - start}

        def verify() -> None:
            expect(len(handled) == n, f"psycopg drain: {len(handled)} of {n} handled")
            expect(handled[-1] == order_ids(n)[-1], f"psycopg drain: last {handled[-1]!r}")
            left = db.count("ecopy_messages")
            expect(left == 0, f"psycopg drain: {left} rows left in the database")

        return Trial(run, verify)

    label = f"drain floor, ecopy's SQL, prefetch={DRAIN_PREFETCH}"
    return [Workload("psycopg-drain", "psycopg", label, sizes.messages, prepare)]


# --------------------------------------------------------------------------------------------
# 3. Event store: create aggregates (one writer, 4 writers), reload them
# --------------------------------------------------------------------------------------------


def build_ecopy_event_store(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    import ecopy
    from ecopy import (
        AggregateVersion,
        Identifier,
        ServiceConfiguration,
        command_handler,
        event_sourcing_aggregate,
        event_sourcing_handler,
    )
    from ecopy_dbal import DbalConfiguration

    @event_sourcing_aggregate
    class Account:
        account_id: Annotated[str, Identifier]
        version: Annotated[int, AggregateVersion]

        def __init__(self) -> None:
            self.balance = 0
            self.version = 0

        @command_handler
        @staticmethod
        def open(command: OpenAccount) -> list[object]:
            deposits = [MoneyDeposited(command.account_id, amount) for amount in command.deposits]
            return [AccountOpened(command.account_id), *deposits]

        @event_sourcing_handler
        def on_opened(self, event: AccountOpened) -> None:
            self.account_id = event.account_id

        @event_sourcing_handler
        def on_deposited(self, event: MoneyDeposited) -> None:
            self.balance += event.amount

    def workload(writers: int) -> Workload:
        app = ecopy.bootstrap(
            classes=[Account],
            config=ServiceConfiguration(
                extensions=[DbalConfiguration(url=db.url, auto_setup=True)]
            ),
        )
        close_on_drop(db, app)
        send = app.command_bus.send
        find = app.aggregates.find
        store = app.aggregates.event_store

        def check_account(account: Any, account_id: str) -> None:
            expect(account is not None, f"ecopy: account {account_id!r} not found")
            state = (account.account_id, account.balance, account.version)
            expected = (account_id, BALANCE, EVENTS_PER_AGGREGATE)
            expect(state == expected, f"ecopy: account reloaded as {state}, expected {expected}")

        def prepare(n: int) -> Trial:
            db.truncate(*db.ecopy_tables())
            ids = account_ids(n)
            created: list[object] = []
            loaded: list[Any] = []

            def create(some: Sequence[str]) -> None:
                for account_id in some:
                    created.append(send(OpenAccount(account_id, DEPOSITS)))

            def run_sequential() -> dict[str, int]:
                start = perf_counter_ns()
                create(ids)
                created_at = perf_counter_ns()
                for account_id in ids:
                    loaded.append(find(Account, account_id))
                return {CREATE: created_at - start, RELOAD: perf_counter_ns() - created_at}

            def run_concurrent() -> dict[str, int]:
                parts = chunks(ids, writers)
                return {CREATE: concurrently([partial(create, part) for part in parts])}

            def verify() -> None:
                returned = sorted(map(str, created))
                expect(returned == sorted(ids), f"ecopy: factories returned {returned[:3]}...")
                events = db.count("ecopy_events")
                expected = n * EVENTS_PER_AGGREGATE
                expect(events == expected, f"ecopy: {events} events stored, expected {expected}")
                (stream,) = store.streams()
                aggregates = len(store.aggregate_ids(stream))
                expect(aggregates == n, f"ecopy: {aggregates} aggregates stored, expected {n}")
                if writers == 1:
                    for account, account_id in zip(loaded, ids, strict=True):
                        check_account(account, account_id)
                else:
                    for account_id in (ids[0], ids[-1]):
                        check_account(find(Account, account_id), account_id)

            return Trial(run_sequential if writers == 1 else run_concurrent, verify)

        key = "ecopy-events" if writers == 1 else f"ecopy-events-{writers}"
        return Workload(key, "ecopy", writers_label(writers), sizes.aggregates, prepare)

    return [workload(1), workload(WRITERS)]


def writers_label(writers: int) -> str:
    return "1 writer" if writers == 1 else f"{writers} writers"


def eventsourcing_env(db: BenchDatabase) -> dict[str, str]:
    """eventsourcing's PostgreSQL persistence on the benchmark's database, otherwise its
    defaults (pool of 5 + 10 overflow connections, no pre-ping, no database functions)."""
    url = db.server
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": db.name,
        "POSTGRES_HOST": url.host or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_PASSWORD": url.password or "",
    }


def build_eventsourcing(db: BenchDatabase, sizes: Sizes) -> list[Workload]:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Account(Aggregate):
        @event("Opened")
        def __init__(self, account_id: str) -> None:
            self.account_id = account_id
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int) -> None:
            self.balance += amount

    class Bank(Application[uuid.UUID]):
        def open_account(self, account_id: str, deposits: tuple[int, ...]) -> uuid.UUID:
            account = Account(account_id)
            for amount in deposits:
                account.deposit(amount)
            self.save(account)  # one transaction, three events
            return account.id

    def workload(writers: int) -> Workload:
        app = Bank(env=eventsourcing_env(db))
        db.closers.append(app.close)
        factory = type(app.factory).__name__
        expect(factory == "PostgresFactory", f"eventsourcing uses {factory}, not PostgresFactory")
        table = "bank_events"
        get = app.repository.get

        def check_account(account: Any, account_id: str) -> None:
            state = (account.account_id, account.balance, account.version)
            expected = (account_id, BALANCE, EVENTS_PER_AGGREGATE)
            expect(state == expected, f"eventsourcing: reloaded as {state}, expected {expected}")

        def prepare(n: int) -> Trial:
            db.truncate(table)
            ids = account_ids(n)
            created: dict[str, uuid.UUID] = {}
            loaded: list[Any] = []

            def create(some: Sequence[str]) -> None:
                for account_id in some:
                    created[account_id] = app.open_account(account_id, DEPOSITS)

            def run_sequential() -> dict[str, int]:
                start = perf_counter_ns()
                create(ids)
                created_at = perf_counter_ns()
                for account_id in ids:
                    loaded.append(get(created[account_id]))
                return {CREATE: created_at - start, RELOAD: perf_counter_ns() - created_at}

            def run_concurrent() -> dict[str, int]:
                parts = chunks(ids, writers)
                return {CREATE: concurrently([partial(create, part) for part in parts])}

            def verify() -> None:
                expect(len(created) == n, f"eventsourcing: {len(created)} aggregates created")
                events = db.count(table)
                expected = n * EVENTS_PER_AGGREGATE
                expect(events == expected, f"eventsourcing: {events} events, expected {expected}")
                aggregates = db.count(f"(SELECT DISTINCT originator_id FROM {table}) AS ids")
                expect(aggregates == n, f"eventsourcing: {aggregates} aggregates, expected {n}")
                if writers == 1:
                    for account, account_id in zip(loaded, ids, strict=True):
                        check_account(account, account_id)
                else:
                    for account_id in (ids[0], ids[-1]):
                        check_account(get(created[account_id]), account_id)

            return Trial(run_sequential if writers == 1 else run_concurrent, verify)

        key = "eventsourcing-events" if writers == 1 else f"eventsourcing-events-{writers}"
        return Workload(key, "eventsourcing", writers_label(writers), sizes.aggregates, prepare)

    return [workload(1), workload(WRITERS)]


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------


def libraries(db: BenchDatabase, sizes: Sizes) -> list[Library[Workload]]:
    ecopy_hint = "is ecopy_dbal written yet? `pip install -e '.[postgres]'` or PYTHONPATH=."
    hint = "install benchmarks/requirements.txt"
    return [
        ("ecopy command + outbox", lambda: build_ecopy_command(db, sizes), ecopy_hint),
        ("psycopg", lambda: build_psycopg_command(db, sizes), hint),
        ("SQLAlchemy Core", lambda: build_sqlalchemy_command(db, sizes), hint),
        ("ecopy relay", lambda: build_ecopy_relay(db, sizes), ecopy_hint),
        ("psycopg relay", lambda: build_psycopg_relay(db, sizes), hint),
        ("ecopy drain", lambda: build_ecopy_drain(db, sizes), ecopy_hint),
        ("psycopg drain", lambda: build_psycopg_drain(db, sizes), hint),
        ("ecopy event store", lambda: build_ecopy_event_store(db, sizes), ecopy_hint),
        ("eventsourcing", lambda: build_eventsourcing(db, sizes), hint),
    ]


def measure_all(workloads: Sequence[Workload], repeats: int) -> None:
    """``timing.measure`` with each workload's own count of operations."""
    for workload in workloads:
        workload.warm_up()
    for repeat in range(repeats):
        for workload in workloads:
            workload.timed_repeat()
        sys.stdout.flush()
        print(f"  repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)


def find(
    workloads: Sequence[Workload], key: str, phase: str = ONE_PHASE
) -> tuple[str, Summary] | None:
    for workload in workloads:
        if workload.key == key and phase in workload.samples_ns:
            label = workload.name if phase == ONE_PHASE else f"{workload.name}, {phase}"
            return label, workload.summary(phase)
    return None


def print_rows(
    title: str,
    unit: str,
    rows: Sequence[tuple[str, Summary]],
    reference: Summary | None,
    reference_name: str,
) -> None:
    print(title)
    if not rows:
        print("  n/a (not measured)")
        print()
        return
    width = max(len(name) for name, _ in rows)
    header = (
        f"{'workload':<{width}}  {'mean ' + unit:>12} {'median ' + unit:>12} "
        f"{'min ' + unit:>12} {'per second':>11} {'x ' + reference_name:>10}"
    )
    print(header)
    print("-" * len(header))
    for name, summary in rows:
        ratio = "n/a" if reference is None else f"{summary.median_us / reference.median_us:.2f}"
        rate = 1_000_000 / summary.median_us
        print(
            f"{name:<{width}}  {summary.mean_us:>12.1f} {summary.median_us:>12.1f} "
            f"{summary.min_us:>12.1f} {rate:>11,.0f} {ratio:>10}"
        )
    print()


def print_results(workloads: Sequence[Workload], sizes: Sizes) -> None:
    def rows(*wanted: tuple[str, str]) -> list[tuple[str, Summary]]:
        return [found for key, phase in wanted if (found := find(workloads, key, phase))]

    commands = rows(
        ("ecopy-command", ONE_PHASE),
        ("sqlalchemy-row-outbox", ONE_PHASE),
        ("psycopg-row-outbox", ONE_PHASE),
        ("psycopg-row", ONE_PHASE),
    )
    floor = find(workloads, "psycopg-row")
    print_rows(
        f"1. One transaction per operation, {sizes.calls} per repeat: a business row and one "
        f"outbox message",
        "µs",
        commands,
        floor[1] if floor else None,
        "psycopg 1",
    )
    relay = rows(
        ("relay-1", ONE_PHASE), (f"relay-{BATCH}", ONE_PHASE), (f"psycopg-relay-{BATCH}", ONE_PHASE)
    )
    single = find(workloads, "relay-1")
    print_rows(
        f"2. Outbox relay, {sizes.messages} queued messages per repeat: DbalChannel -> in-memory "
        f"channel (µs per message)",
        "µs",
        relay,
        single[1] if single else None,
        "prefetch=1",
    )
    drain = rows(("drain", ONE_PHASE), ("psycopg-drain", ONE_PHASE))
    drain_floor = find(workloads, "psycopg-drain")
    print_rows(
        f"2b. A consumer draining {sizes.messages} queued messages per repeat, each handled in "
        f"its own transaction (µs per message)",
        "µs",
        drain,
        drain_floor[1] if drain_floor else None,
        "floor",
    )
    events = rows(
        ("ecopy-events", CREATE),
        ("eventsourcing-events", CREATE),
        ("ecopy-events", RELOAD),
        ("eventsourcing-events", RELOAD),
        (f"ecopy-events-{WRITERS}", CREATE),
        (f"eventsourcing-events-{WRITERS}", CREATE),
    )
    ours = find(workloads, "ecopy-events", CREATE)
    print_rows(
        f"3. Event store, {sizes.aggregates} aggregates x {EVENTS_PER_AGGREGATE} events per "
        f"repeat (µs per aggregate; with {WRITERS} writers: wall-clock time / aggregates)",
        "µs",
        events,
        ours[1] if ours else None,
        "ecopy 1w",
    )
    print("mean/median/min over the per-operation averages of the repeats; per second = 1/median")


KEY_RATIOS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("ecopy command vs psycopg INSERT row", ("ecopy-command",), ("psycopg-row",)),
    ("ecopy command vs psycopg row + outbox row", ("ecopy-command",), ("psycopg-row-outbox",)),
    (
        "ecopy command vs SQLAlchemy Core row + outbox row",
        ("ecopy-command",),
        ("sqlalchemy-row-outbox",),
    ),
    (
        "SQLAlchemy Core vs psycopg, row + outbox row",
        ("sqlalchemy-row-outbox",),
        ("psycopg-row-outbox",),
    ),
    ("psycopg row + outbox row vs row only", ("psycopg-row-outbox",), ("psycopg-row",)),
    (f"relay prefetch={BATCH} vs prefetch=1", (f"relay-{BATCH}",), ("relay-1",)),
    (
        f"relay prefetch={BATCH} vs psycopg batch relay floor",
        (f"relay-{BATCH}",),
        (f"psycopg-relay-{BATCH}",),
    ),
    ("consumer drain vs psycopg floor running ecopy's SQL", ("drain",), ("psycopg-drain",)),
    (
        "ecopy vs eventsourcing, create, 1 writer",
        ("ecopy-events", CREATE),
        ("eventsourcing-events", CREATE),
    ),
    ("ecopy vs eventsourcing, reload", ("ecopy-events", RELOAD), ("eventsourcing-events", RELOAD)),
    (
        f"ecopy vs eventsourcing, create, {WRITERS} writers",
        (f"ecopy-events-{WRITERS}", CREATE),
        (f"eventsourcing-events-{WRITERS}", CREATE),
    ),
    (
        f"ecopy, create, {WRITERS} writers vs 1 writer",
        (f"ecopy-events-{WRITERS}", CREATE),
        ("ecopy-events", CREATE),
    ),
    (
        f"eventsourcing, create, {WRITERS} writers vs 1 writer",
        (f"eventsourcing-events-{WRITERS}", CREATE),
        ("eventsourcing-events", CREATE),
    ),
]
"""(label, left workload key and phase, right workload key and phase): left / right."""


def print_key_ratios(workloads: Sequence[Workload]) -> None:
    print()
    print("Key ratios, left / right (below 1: the left side is faster):")
    width = max(len(label) for label, _, _ in KEY_RATIOS)
    for label, left, right in KEY_RATIOS:
        ours, theirs = find(workloads, *left), find(workloads, *right)
        if ours is None or theirs is None:
            print(f"  {label:<{width}}  n/a (not measured)")
            continue
        print(ratio_line(f"{label:<{width}}", ours[1], theirs[1]))


def print_environment(db: BenchDatabase, sizes: Sizes, repeats: int) -> None:
    print(python_description())
    print(f"  {'ecopy':<14} {version_of('ecopy')}  ({imported_from('ecopy')})")
    for name in ("sqlalchemy", "psycopg", "psycopg-pool", "eventsourcing"):
        print(f"  {name:<14} {version_of(name)}")
    server = db.admin.execute("SHOW server_version").fetchone()[0]
    settings = {
        name: db.admin.execute(f"SHOW {name}").fetchone()[0]
        for name in ("fsync", "synchronous_commit")
    }
    shown = ", ".join(f"{name}={value}" for name, value in settings.items())
    print(
        f"  PostgreSQL {server} at {db.server.host}:{db.server.port or 5432}, database "
        f"{db.name} ({shown})"
    )
    print(
        f"{repeats} repeats (warm-up {WARMUP} operations each), gc enabled; per repeat: "
        f"{sizes.calls} transactions, {sizes.messages} relayed messages, {sizes.aggregates} "
        f"aggregates"
    )
    print(flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--messages",
        type=int,
        default=None,
        help=f"messages relayed per timed repeat (default {DEFAULT_MESSAGES}; "
        f"{QUICK_MESSAGES} with --quick)",
    )
    parser.add_argument(
        "--aggregates",
        type=int,
        default=None,
        help=f"aggregates created and reloaded per timed repeat, a multiple of {WRITERS} "
        f"(default {DEFAULT_AGGREGATES}; {QUICK_AGGREGATES} with --quick)",
    )
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER_URL,
        help="SQLAlchemy URL of a database on the PostgreSQL server, used to create and drop the "
        "benchmark's own (default $ECOPY_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help="name of the database the script creates, uses and drops (default %(default)s); "
        "an existing one of that name is dropped first",
    )
    parser.add_argument(
        "--profile",
        metavar="WORKLOAD",
        default=None,
        help="print a pyinstrument profile of one repeat of WORKLOAD instead of timing; "
        "WORKLOAD is one of: ecopy-command, psycopg-row, psycopg-row-outbox, relay-1, "
        f"relay-{BATCH}, drain, psycopg-drain, ecopy-events, eventsourcing-events, "
        f"ecopy-events-{WRITERS}, "
        f"eventsourcing-events-{WRITERS}",
    )
    parser.add_argument(
        "--only",
        metavar="LIBRARIES",
        default=None,
        help="measure only these, comma-separated (e.g. 'ecopy drain,psycopg drain'); default: "
        "every library of the script",
    )
    parser.add_argument(
        "--profile-all",
        action="store_true",
        help="with --profile: show the frames of SQLAlchemy, psycopg and the other libraries too",
    )


def profile(workloads: Sequence[Workload], key: str, *, show_all: bool) -> int:
    from pyinstrument import Profiler

    chosen = [workload for workload in workloads if workload.key == key]
    if not chosen:
        print(f"no workload {key!r}; known: {', '.join(w.key for w in workloads)}", file=sys.stderr)
        return 2
    (workload,) = chosen
    workload.warm_up()
    trial = workload.prepare(workload.operations)
    gc.collect()
    profiler = Profiler(interval=0.0005)
    profiler.start()
    elapsed = trial.run()
    profiler.stop()
    trial.verify()
    shown = ", ".join(
        f"{phase} {ns / workload.operations / 1000:.1f} µs/op" for phase, ns in elapsed.items()
    )
    print(
        f"pyinstrument profile of one repeat of {workload.name}: {workload.operations} "
        f"operations ({shown}, profiled)"
    )
    print(profiler.output_text(unicode=True, color=False, show_all=show_all))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(
        argv,
        description="ecopy on PostgreSQL: command + outbox vs raw psycopg, the outbox relay, and "
        "the event store vs eventsourcing.",
        calls=DEFAULT_CALLS,
        repeats=DEFAULT_REPEATS,
        quick_calls=QUICK_CALLS,
        quick_repeats=QUICK_REPEATS,
        unit="transactions",
        extra_arguments=add_arguments,
    )
    messages = args.messages or (QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES)
    aggregates = args.aggregates or (QUICK_AGGREGATES if args.quick else DEFAULT_AGGREGATES)
    if messages < 1 or aggregates < WRITERS or aggregates % WRITERS:
        print(f"--messages must be positive, --aggregates a multiple of {WRITERS}", file=sys.stderr)
        return 2
    sizes = Sizes(args.calls, messages, aggregates)

    db = BenchDatabase(args.server, args.database)
    try:
        db.create()
    except Exception as error:
        print(f"PostgreSQL is not usable at {args.server}: {error}", file=sys.stderr)
        return 2
    try:
        if args.profile is None:
            print_environment(db, sizes, args.repeats)
        chosen = libraries(db, sizes)
        if args.only:
            wanted = {name.strip() for name in args.only.split(",")}
            chosen = [library for library in chosen if library[0] in wanted]
        workloads, unavailable = build_all(chosen, Workload.check)
        if args.profile is not None:
            return profile(workloads, args.profile, show_all=args.profile_all)
        measure_all(workloads, args.repeats)
    finally:
        db.drop()

    print()
    print_results(workloads, sizes)
    print_key_ratios(workloads)
    return report_unavailable(unavailable)


if __name__ == "__main__":
    sys.exit(main())
