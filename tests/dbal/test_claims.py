"""Claims on a database queue under the conditions fault injection found: a handler slower
than the visibility timeout keeps its message (the claim is renewed while it runs); a consumer
whose claim was taken anyway rolls its work back instead of committing it a second time; and
consumers whose clocks disagree still agree on claims, which use the database's clock."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import (
    ControlledClock,
    Message,
    ServiceConfiguration,
    SystemClock,
    asynchronous,
    command_handler,
)
from ecopy_dbal import Database, DbalChannel, DbalConfiguration
from ecopy_dbal.channel import messages
from tests.contracts.channel_contract import START
from tests.faults.workload import CHANNEL, Job, Worker, effects, enqueue, handled_jobs, jobs_app
from tests.services import ON_SERVERS


def consume_in_thread(app: ecopy.MessagingSystem, **limits: object) -> threading.Thread:
    thread = threading.Thread(target=app.run, args=(CHANNEL,), kwargs=limits)
    thread.start()
    return thread


def test_a_handler_slower_than_the_visibility_timeout_keeps_its_message(database_url):
    slow, other = (jobs_app(database_url, worker, visibility_timeout_s=1) for worker in (1, 2))
    enqueue(slow, [Job(1, slow_s=3)])

    first = consume_in_thread(slow, handled_message_limit=1)
    wait_until_claimed(slow.service(Database))
    second = consume_in_thread(other, execution_time_limit_ms=4000)  # polls all along
    first.join(timeout=30)
    second.join(timeout=30)

    database = slow.service(Database)
    assert handled_jobs(database) == {1: 1}
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(effects.c.worker)).scalars().all() == [1]
    assert other.service(Worker).handled == 0, "the other consumer took a claimed message"
    for app in (slow, other):
        app.service(Database).dispose()


def wait_until_claimed(database: Database) -> None:
    """Until a message is claimed, or none is left (on SQLite this look waits for a running
    handler's transaction, which holds the only write lock)."""
    deadline = time.monotonic() + 30
    waiting = sa.select(sa.func.count(messages.c.claim_token), sa.func.count())
    with database.engine.connect() as connection:
        while (counts := connection.execute(waiting).one()) and counts[1] and not counts[0]:
            connection.rollback()
            assert time.monotonic() < deadline, "no message was ever claimed"
            time.sleep(0.01)


class Stolen:
    """Handles a job; the first time, while it runs, its claim expires and another consumer
    takes the message and handles it (as after a long database outage)."""

    def __init__(self, clock: ControlledClock, thief: list[ecopy.MessagingSystem]) -> None:
        self.clock = clock
        self.thief = thief
        self.attempts = 0

    @asynchronous(CHANNEL)
    @command_handler(endpoint_id="do_job")
    def do(self, job: Job, connection: sa.Connection, message: Message) -> None:
        self.attempts += 1
        connection.execute(effects.insert(), {"job": job.number, "worker": 1})
        if self.attempts == 1:
            self.clock.advance(timedelta(seconds=31))
            other = threading.Thread(
                target=self.thief[0].run, args=(CHANNEL,), kwargs={"handled_message_limit": 1}
            )
            other.start()
            other.join(timeout=30)


@pytest.mark.parametrize("database_url", ON_SERVERS, indirect=True)
def test_a_consumer_whose_claim_was_taken_rolls_its_work_back(database_url, caplog):
    # (On SQLite a handler's transaction holds the only write lock: nobody can take a claim
    # while it runs.)
    clock = ControlledClock(START)
    thief: list[ecopy.MessagingSystem] = []
    stolen = Stolen(clock, thief)
    app = ecopy.bootstrap(
        classes=[Stolen],
        services=[stolen, clock],
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(url=database_url, auto_setup=True),
                DbalChannel(CHANNEL, visibility_timeout_s=30),
            ]
        ),
    )
    thief.append(jobs_app(database_url, 2, visibility_timeout_s=30))
    enqueue(app, [Job(7)])

    with caplog.at_level(logging.WARNING, "ecopy.consumer"):
        assert app.run(CHANNEL, finish_when_no_messages=True) == 0

    database = app.service(Database)
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(effects.c.worker)).scalars().all() == [2]
    assert stolen.attempts == 1
    assert "no longer holds message" in caplog.text
    assert "its handling here was rolled back" in caplog.text
    for each in (app, thief[0]):
        each.service(Database).dispose()


class AheadClock(SystemClock):
    """The system clock of a machine whose clock runs 40 seconds ahead."""

    def now(self) -> float:
        return time.time() + 40


def test_consumers_whose_clocks_disagree_never_take_each_others_claims(database_url):
    jobs = 150
    apps = [
        jobs_app(database_url, 1, visibility_timeout_s=30, prefetch=10),
        ecopy.bootstrap(
            classes=[Worker],
            services=[Worker(2), AheadClock()],
            config=ServiceConfiguration(
                extensions=[
                    DbalConfiguration(url=database_url, auto_setup=True),
                    DbalChannel(CHANNEL, visibility_timeout_s=30, prefetch=10),
                ]
            ),
        ),
    ]
    enqueue(apps[0], [Job(number, slow_s=0.01) for number in range(jobs)])

    threads = [consume_in_thread(apps[0], finish_when_no_messages=True)]
    wait_until_claimed(apps[0].service(Database))  # rows wait in the first one's prefetch
    threads.append(consume_in_thread(apps[1], finish_when_no_messages=True))
    for thread in threads:
        thread.join(timeout=60)

    attempts = sum(app.service(Worker).handled for app in apps)
    assert attempts == jobs, "a consumer handled messages another one held"
    assert handled_jobs(apps[0].service(Database)) == {number: 1 for number in range(jobs)}
    for app in apps:
        app.service(Database).dispose()
