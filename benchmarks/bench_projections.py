"""Projection catch-up on PostgreSQL: ecopy vs eventsourcing (issue 11).

Each library stores the same N events once (``--events``, default 20 000: accounts of one
"opened" and nine "deposited" events each), outside the timing, in its own tables of one
database that the script creates and drops (``BenchDatabase`` from ``bench_dbal.py``). Then
one projection of each library catches up from position 0 to the head, writing **one row per
event** into a table of its own, ``--repeats`` times (default 3), interleaved. Between repeats
the read model is emptied and the position set back to 0, outside the timing.

- **ecopy**: ``@projection("rows", from_streams=[Account], batch_size=1000, polling=True)``
  (polling, so that storing the events does not already project them), one
  ``@event_handler`` per event type doing ``INSERT`` through the batch's
  ``sqlalchemy.Connection``. Timed: ``app.projections.trigger("rows")``. Reset:
  ``app.projections.reset("rows")``, whose ``@projection_reset`` hook truncates the table.
- **eventsourcing**: a ``Projection`` whose view is a ``PostgresTrackingRecorder`` subclass
  (its documented idiom for a materialised view): one transaction per event with the
  ``INSERT`` and the tracking record, run by ``ProjectionRunner``. Timed: from constructing
  the runner (which constructs the application and subscribes from the tracked position) to
  the moment the projection has committed the last event; the runner's own ``wait()``
  polls with up to 800 ms sleeps, so the projection stamps the time itself. Reset: truncate
  the table, delete the projection's tracking row.

A third row, *ecopy flush*, not in the ratio: a second ecopy projection over the same events
whose handlers gather the rows and whose ``@projection_flush`` hook writes them with one
executemany per batch.

After each repeat the script asserts that each read-model table has exactly N rows.
``--profile`` prints a cProfile of one ecopy catch-up instead of timing.
"""

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Annotated, Any

from bench_dbal import DEFAULT_SERVER_URL, BenchDatabase, eventsourcing_env
from timing import expect, python_description, version_of

DEFAULT_EVENTS = 20_000
DEFAULT_REPEATS = 3
EVENTS_PER_ACCOUNT = 10
BATCH_SIZE = 1000
ECOPY_VIEW = "ecopy_rows"
ECOPY_FLUSH_VIEW = "ecopy_rows_flush"
ES_VIEW = "es_rows"
ES_PROJECTION = "rows"
TARGET_RATE = 20_000
TARGET_RATIO = 2.0


@dataclass(frozen=True)
class OpenAccount:
    account_id: str
    deposits: int


@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@dataclass(frozen=True)
class MoneyDeposited:
    account_id: str
    amount: int


@dataclass
class Library:
    name: str
    store: Callable[[int], None]
    """Stores N events, once, untimed."""
    reset: Callable[[], None]
    """Empties the read model and sets the position back to 0, untimed."""
    catch_up: Callable[[int], int]
    """Catches up to the head; returns elapsed nanoseconds."""
    rows: Callable[[], int]
    rates: list[float]
    stores: bool = True
    """False for a second projection over events another library entry already stored."""


def account_id(index: int) -> str:
    return f"acc-{index:06d}"


# --------------------------------------------------------------------------------------------
# ecopy
# --------------------------------------------------------------------------------------------


def build_ecopy(db: BenchDatabase) -> list[Library]:
    import sqlalchemy as sa

    import ecopy
    from ecopy import (
        Identifier,
        ServiceConfiguration,
        command_handler,
        event_handler,
        event_sourcing_aggregate,
        event_sourcing_handler,
    )
    from ecopy.projecting import (
        projection,
        projection_flush,
        projection_initialization,
        projection_reset,
    )
    from ecopy_dbal import DbalConfiguration

    @event_sourcing_aggregate
    class Account:
        account_id: Annotated[str, Identifier]

        @command_handler
        @staticmethod
        def open(command: OpenAccount) -> list[object]:
            deposits = [MoneyDeposited(command.account_id, n) for n in range(command.deposits)]
            return [AccountOpened(command.account_id), *deposits]

        @event_sourcing_handler
        def on_opened(self, event: AccountOpened) -> None:
            self.account_id = event.account_id

    insert = sa.text(f"INSERT INTO {ECOPY_VIEW} (account_id, amount) VALUES (:id, :amount)")

    @projection("rows", from_streams=[Account], batch_size=BATCH_SIZE, polling=True)
    class Rows:
        @projection_initialization
        def create(self, connection: sa.Connection) -> None:
            connection.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {ECOPY_VIEW} "
                "(account_id TEXT NOT NULL, amount INTEGER NOT NULL)"
            )

        @projection_reset
        def wipe(self, connection: sa.Connection) -> None:
            connection.exec_driver_sql(f"TRUNCATE {ECOPY_VIEW}")

        @event_handler
        def opened(self, event: AccountOpened, connection: sa.Connection) -> None:
            connection.execute(insert, {"id": event.account_id, "amount": 0})

        @event_handler
        def deposited(self, event: MoneyDeposited, connection: sa.Connection) -> None:
            connection.execute(insert, {"id": event.account_id, "amount": event.amount})

    insert_many = sa.text(
        f"INSERT INTO {ECOPY_FLUSH_VIEW} (account_id, amount) VALUES (:id, :amount)"
    )

    @projection("rows_flush", from_streams=[Account], batch_size=BATCH_SIZE, polling=True)
    class RowsFlush:
        """Not in the ratio: the same rows, gathered per batch, one executemany at the flush."""

        def __init__(self) -> None:
            self.pending: list[dict[str, Any]] = []

        @projection_initialization
        def create(self, connection: sa.Connection) -> None:
            connection.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {ECOPY_FLUSH_VIEW} "
                "(account_id TEXT NOT NULL, amount INTEGER NOT NULL)"
            )

        @projection_reset
        def wipe(self, connection: sa.Connection) -> None:
            self.pending.clear()
            connection.exec_driver_sql(f"TRUNCATE {ECOPY_FLUSH_VIEW}")

        @event_handler
        def opened(self, event: AccountOpened) -> None:
            self.pending.append({"id": event.account_id, "amount": 0})

        @event_handler
        def deposited(self, event: MoneyDeposited) -> None:
            self.pending.append({"id": event.account_id, "amount": event.amount})

        @projection_flush
        def write(self, connection: sa.Connection) -> None:
            rows, self.pending = self.pending, []
            connection.execute(insert_many, rows)

    app = ecopy.bootstrap(
        classes=[Account, Rows, RowsFlush],
        services=[Rows(), RowsFlush()],
        config=ServiceConfiguration(extensions=[DbalConfiguration(url=db.url, auto_setup=True)]),
    )
    db.closers.append(lambda: app.close())

    def store(n: int) -> None:
        for index in range(n // EVENTS_PER_ACCOUNT):
            app.command_bus.send(OpenAccount(account_id(index), EVENTS_PER_ACCOUNT - 1))

    def library(name: str, projection_name: str, table: str, stores: bool) -> Library:
        def catch_up(n: int) -> int:
            start = perf_counter_ns()
            handled = app.projections.trigger(projection_name)
            elapsed = perf_counter_ns() - start
            expect(handled == n, f"{name}: trigger handled {handled} events, expected {n}")
            return elapsed

        return Library(
            name,
            store,
            lambda: app.projections.reset(projection_name),
            catch_up,
            lambda: db.count(table),
            [],
            stores,
        )

    return [
        library("ecopy", "rows", ECOPY_VIEW, stores=True),
        library("ecopy flush*", "rows_flush", ECOPY_FLUSH_VIEW, stores=False),
    ]


# --------------------------------------------------------------------------------------------
# eventsourcing
# --------------------------------------------------------------------------------------------


def build_eventsourcing(db: BenchDatabase) -> Library:
    from eventsourcing.application import Application
    from eventsourcing.dispatch import singledispatchmethod
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import Tracking
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.projection import Projection, ProjectionRunner
    from psycopg.sql import SQL, Identifier

    class Account(Aggregate):
        @event("Opened")
        def __init__(self, account_id: str) -> None:
            self.account_id = account_id

        @event("Deposited")
        def deposit(self, account_id: str, amount: int) -> None:
            pass

    class Bank(Application[uuid.UUID]):
        def open_account(self, account_id: str, deposits: int) -> None:
            account = Account(account_id)
            for amount in range(deposits):
                account.deposit(account_id, amount)
            self.save(account)  # one transaction, EVENTS_PER_ACCOUNT events

    class RowsView(PostgresTrackingRecorder):
        def __init__(self, datastore: Any, **kwargs: Any) -> None:
            super().__init__(datastore, **kwargs)
            schema = Identifier(self.datastore.schema)
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0}.{1} "
                    "(account_id TEXT NOT NULL, amount INTEGER NOT NULL)"
                ).format(schema, Identifier(ES_VIEW))
            )
            self.insert_row_statement = SQL(
                "INSERT INTO {0}.{1} (account_id, amount) VALUES (%s, %s)"
            ).format(schema, Identifier(ES_VIEW))

        def insert_row(self, account_id: str, amount: int, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(self.insert_row_statement, (account_id, amount), prepare=True)
                self._insert_tracking(curs, tracking)

    head: dict[str, Any] = {}

    class Rows(Projection[RowsView]):
        name = ES_PROJECTION

        @singledispatchmethod
        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            self.view.insert_tracking(tracking)
            self.reached(tracking)

        @process_event.register(Account.Opened)
        def _(self, domain_event: Any, tracking: Tracking) -> None:
            self.view.insert_row(domain_event.account_id, 0, tracking)
            self.reached(tracking)

        @process_event.register(Account.Deposited)
        def _(self, domain_event: Any, tracking: Tracking) -> None:
            self.view.insert_row(domain_event.account_id, domain_event.amount, tracking)
            self.reached(tracking)

        @staticmethod
        def reached(tracking: Tracking) -> None:
            if tracking.notification_id >= head["id"]:
                head["at"] = perf_counter_ns()
                head["done"].set()

    env = eventsourcing_env(db)
    app = Bank(env=env)
    db.closers.append(app.close)
    factory = type(app.factory).__name__
    expect(factory == "PostgresFactory", f"eventsourcing uses {factory}, not PostgresFactory")

    def store(n: int) -> None:
        for index in range(n // EVENTS_PER_ACCOUNT):
            app.open_account(account_id(index), EVENTS_PER_ACCOUNT - 1)
        head["id"] = app.recorder.max_notification_id()

    def reset() -> None:
        db.truncate(ES_VIEW)
        tracking = f"{ES_PROJECTION}_tracking"
        if exists(db, tracking):
            db.admin.execute(f"DELETE FROM {tracking} WHERE application_name = %s", (app.name,))

    def catch_up(n: int) -> int:
        head["done"] = threading.Event()
        start = perf_counter_ns()
        with ProjectionRunner(
            application_class=Bank, projection_class=Rows, view_class=RowsView, env=env
        ) as runner:
            while not head["done"].wait(timeout=0.05):
                runner.run_forever(timeout=0)  # re-raises an error of the processing thread
                expect(not runner.is_interrupted.is_set(), "eventsourcing: runner stopped")
            elapsed = head["at"] - start
        return elapsed

    def rows() -> int:
        return db.count(ES_VIEW) if exists(db, ES_VIEW) else 0  # created by the first runner

    return Library("eventsourcing", store, reset, catch_up, rows, [])


def exists(db: BenchDatabase, table: str) -> bool:
    found = db.admin.execute("SELECT 1 FROM pg_tables WHERE tablename = %s", (table,)).fetchone()
    return found is not None


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------


def run_repeat(library: Library, n: int) -> None:
    library.reset()
    expect(library.rows() == 0, f"{library.name}: read model not empty after reset")
    gc.collect()
    elapsed = library.catch_up(n)
    rows = library.rows()
    expect(rows == n, f"{library.name}: {rows} rows projected, expected {n}")
    library.rates.append(n / (elapsed / 1e9))


def profile_ecopy(library: Library, n: int, top: int) -> None:
    library.reset()
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    elapsed = library.catch_up(n)
    profiler.disable()
    expect(library.rows() == n, "ecopy: wrong row count after the profiled catch-up")
    print(f"cProfile of one ecopy catch-up of {n} events ({n / (elapsed / 1e9):,.0f} events/s,")
    print("profiled), ecopy's own functions, top by cumulative time:")
    stats = pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative")
    stats.print_stats(r"ecopy", top)
    print("Claiming and saving the position (ecopy_dbal/projection_state.py):")
    stats.print_stats(r"projection_state", 5)
    print("All functions, top by internal time:")
    stats.sort_stats("tottime").print_stats(top)


def print_environment(db: BenchDatabase, n: int, repeats: int) -> None:
    print(python_description())
    for name in ("ecopy", "sqlalchemy", "psycopg", "eventsourcing"):
        print(f"  {name:<14} {version_of(name)}")
    server = db.admin.execute("SHOW server_version").fetchone()[0]
    settings = ", ".join(
        f"{name}={db.admin.execute(f'SHOW {name}').fetchone()[0]}"
        for name in ("fsync", "synchronous_commit")
    )
    print(f"  PostgreSQL {server}, database {db.name} ({settings})")
    print(f"{n} events stored per library; {repeats} catch-ups each from 0, interleaved")
    print(flush=True)


def print_results(libraries: list[Library]) -> None:
    print()
    print(f"{'library':<14} {'median ev/s':>12} {'best ev/s':>12}  repeats (ev/s)")
    for library in libraries:
        shown = ", ".join(f"{rate:,.0f}" for rate in library.rates)
        print(
            f"{library.name:<14} {statistics.median(library.rates):>12,.0f} "
            f"{max(library.rates):>12,.0f}  {shown}"
        )
    ours = libraries[0]
    median = statistics.median(ours.rates)
    met = "met" if median >= TARGET_RATE else "NOT met"
    print()
    print(f"Target (issue 11): ecopy >= {TARGET_RATE:,} events/s: {median:,.0f} median, {met}")
    for theirs in (library for library in libraries if library.name == "eventsourcing"):
        by_median = median / statistics.median(theirs.rates)
        by_best = max(ours.rates) / max(theirs.rates)
        met = "met" if by_median >= TARGET_RATIO else "NOT met"
        print(
            f"Target (issue 11): ecopy / eventsourcing >= {TARGET_RATIO:g}x: "
            f"{by_median:.2f}x median, {by_best:.2f}x best, {met}"
        )
    print(
        "* ecopy flush: not in the ratio; the same rows gathered by the handlers and written "
        "by one executemany per batch in a @projection_flush hook"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="default %(default)s")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="default %(default)s")
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER_URL,
        help="SQLAlchemy URL of a database on the server, used to create and drop the "
        "benchmark's own (default %(default)s)",
    )
    parser.add_argument("--database", default="ecopy_bench_projections")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one ecopy catch-up instead of timing"
    )
    parser.add_argument("--only-ecopy", action="store_true", help="skip eventsourcing")
    args = parser.parse_args(argv)
    n = args.events
    if n < EVENTS_PER_ACCOUNT or n % EVENTS_PER_ACCOUNT or args.repeats < 1:
        parser.error(f"--events must be a multiple of {EVENTS_PER_ACCOUNT}, --repeats positive")

    db = BenchDatabase(args.server, args.database)
    db.create()
    try:
        print_environment(db, n, args.repeats)
        ecopy_library, ecopy_flush = build_ecopy(db)
        libraries = [ecopy_library]
        if not args.profile and not args.only_ecopy:
            libraries.append(build_eventsourcing(db))
        if not args.profile:
            libraries.append(ecopy_flush)
        for library in (library for library in libraries if library.stores):
            start = perf_counter_ns()
            library.store(n)
            seconds = (perf_counter_ns() - start) / 1e9
            print(f"{library.name}: stored {n} events in {seconds:.1f} s (untimed)", flush=True)
        if args.profile:
            profile_ecopy(ecopy_library, n, 15)
            return 0
        for library in libraries:  # warm-up: one full catch-up each, not recorded
            run_repeat(library, n)
            library.rates.clear()
        for repeat in range(args.repeats):
            for library in libraries:
                run_repeat(library, n)
            print(f"  repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    finally:
        db.drop()
    print_results(libraries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
