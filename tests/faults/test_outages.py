"""Outages made with a TCP proxy the test owns, between ecopy and PostgreSQL or MariaDB (the
machine's servers are never stopped): a connection cut in the middle of a handler, an outage
longer than the database's retries while consumers are busy, and a network partition that cuts
an event-store writer off in the middle of its transaction."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    ErrorHandlerConfiguration,
    Message,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    command_handler,
)
from ecopy_dbal import Database, DbalChannel, DbalConfiguration
from ecopy_dbal.channel import messages
from ecopy_dbal.database import create_database_engine
from ecopy_dbal.event_store import DbalEventStore
from tests.contracts.event_store_contract import ACCOUNTS, CARDS, EVENT_TYPES, deposited, opened
from tests.dbal.test_event_store import codec_knowing
from tests.faults.proxy import TcpProxy
from tests.faults.workload import (
    CHANNEL,
    Job,
    effects,
    enqueue,
    handled_jobs,
    jobs_app,
    report,
    scale,
)
from tests.services import ON_SERVERS

pytestmark = pytest.mark.parametrize("database_url", ON_SERVERS, indirect=True)


@pytest.fixture
def proxy(database_url) -> Iterator[TcpProxy]:
    url = sa.make_url(database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 0) as proxy:
        yield proxy


def remaining(database: Database) -> int:
    with database.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()


# -- a connection cut in the middle of a handler ------------------------------------------


class CutMidHandler:
    """Writes its effect, then, for the chosen jobs, has the proxy reset every connection and
    goes on with its transaction on the dead connection."""

    def __init__(self, proxy: TcpProxy, doomed: set[int]) -> None:
        self.proxy = proxy
        self.doomed = doomed
        self.cuts = 0

    @asynchronous(CHANNEL)
    @command_handler(endpoint_id="do_job")
    def do(self, job: Job, connection: sa.Connection, message: Message) -> None:
        connection.execute(effects.insert(), {"job": job.number, "worker": 0})
        if job.number in self.doomed:
            self.doomed.discard(job.number)
            self.cuts += 1
            self.proxy.cut()
        connection.execute(sa.select(1))


def test_a_connection_cut_mid_handler_is_not_fatal_with_the_default_configuration(
    database_url, proxy, caplog
):
    jobs = 40 * scale()
    doomed = set(range(3, jobs, 7))
    cutter = CutMidHandler(proxy, set(doomed))
    app = ecopy.bootstrap(
        classes=[CutMidHandler],
        services=[cutter],
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(url=proxy.url_for(database_url), auto_setup=True),
                DbalChannel(CHANNEL, prefetch=5),
            ]
        ),
    )
    database = app.service(Database)
    enqueue(app, [Job(number) for number in range(jobs)])

    with caplog.at_level(logging.WARNING):
        handled = app.run(CHANNEL, finish_when_no_messages=True)

    assert cutter.cuts == len(doomed)
    assert handled == jobs  # the interrupted attempts are not counted
    assert handled_jobs(database) == {number: 1 for number in range(jobs)}
    assert app.dead_letter.count() == 0
    assert remaining(database) == 0
    interrupted = [r.getMessage() for r in caplog.records if "was interrupted" in r.getMessage()]
    assert interrupted, "the interruption is logged"
    assert all("\n" not in r.getMessage() for r in caplog.records)
    report(
        "connection-cut-mid-handler",
        database_url,
        messages=jobs,
        connections_cut=cutter.cuts,
        lost=jobs - len(handled_jobs(database)),
        committed_twice=0,
        consumer_crashes=0,
    )
    database.dispose()


# -- an outage longer than the retries, while consumers are busy ---------------------------


def test_busy_consumers_ride_out_an_outage_longer_than_the_database_retries(
    database_url, proxy, caplog
):
    jobs = 60 * scale()
    apps = [
        jobs_app(
            proxy.url_for(database_url),
            worker,
            ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(10, 3)),
            prefetch=2,
        )
        for worker in (1, 2)
    ]
    for app in apps:
        # The database gives up after two attempts (a tenth of a second): the outage below is
        # far longer than its retries, as a restart or a failover is.
        app.service(Database)._retrying_attempts = 2
    enqueue(apps[0], [Job(number, slow_s=0.02) for number in range(jobs)])
    failures: list[BaseException] = []

    def consume(app: ecopy.MessagingSystem) -> None:
        try:
            app.run(CHANNEL, finish_when_no_messages=True)
        except BaseException as error:  # a consumer that stops is the failure
            failures.append(error)

    direct = Database(create_database_engine(database_url))
    consumers = [threading.Thread(target=consume, args=(app,)) for app in apps]
    with caplog.at_level(logging.WARNING, "ecopy.consumer"):
        for thread in consumers:
            thread.start()
        deadline = time.monotonic() + 30
        while len(handled_jobs(direct)) < jobs // 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proxy.refuse()  # every connection reset, and no new one for 3 s
        time.sleep(3)
        proxy.restore()
        for thread in consumers:
            thread.join(timeout=120)

    assert failures == []
    assert not any(thread.is_alive() for thread in consumers)
    assert handled_jobs(direct) == {number: 1 for number in range(jobs)}
    assert remaining(direct) == 0
    lines = [r.getMessage() for r in caplog.records]
    assert any("for as long as it takes" in line for line in lines)
    assert any("working again after" in line for line in lines)
    report(
        "outage-longer-than-retries",
        database_url,
        messages=jobs,
        consumers=len(apps),
        outage_s=3,
        lost=0,
        committed_twice=0,
        consumer_crashes=len(failures),
    )
    for app in apps:
        app.service(Database).dispose()
    direct.dispose()


# -- a network partition mid-transaction ------------------------------------------------------


def test_a_writer_cut_off_mid_transaction_blocks_other_appends_only_until_its_session_ends(
    database_url, proxy
):
    direct = Database(create_database_engine(database_url))
    cut_off = Database(
        create_database_engine(proxy.url_for(database_url), idle_in_transaction_timeout_s=2),
        retry_attempts=1,
    )
    store, stranded = (DbalEventStore(db, codec_knowing(*EVENT_TYPES)) for db in (direct, cut_off))
    partitioned = threading.Event()
    stranded_error: list[BaseException] = []

    def write_then_lose_the_network() -> None:
        try:
            with cut_off.transaction():
                stranded.append(ACCOUNTS, "a-1", 0, [opened()])  # holds the append lock
                proxy.blackhole()
                partitioned.set()
        except BaseException as error:
            stranded_error.append(error)
        partitioned.set()

    writer = threading.Thread(target=write_then_lose_the_network)
    writer.start()
    assert partitioned.wait(timeout=30)
    appended: list[object] = []
    other = threading.Thread(
        target=lambda: appended.extend(store.append(CARDS, "c-1", 0, [deposited(1)]))
    )
    waited = time.monotonic()
    other.start()
    other.join(timeout=30)  # on the server's idle-in-transaction timeout (2 s), not never
    waited = time.monotonic() - waited

    assert appended, "an append waited on the cut-off writer's lock for good"
    proxy.restore()
    writer.join(timeout=60)
    assert stranded_error, "the cut-off writer's commit cannot have succeeded"
    assert [event.stream for event in store.read_all()] == [CARDS]
    report(
        "partitioned-event-store-writer",
        database_url,
        idle_in_transaction_timeout_s=2,
        other_append_waited_s=round(waited, 1),
        cut_off_writer_committed=0,
    )
    cut_off.dispose()
    direct.dispose()
