"""Several consumers on one SQLite file — threads of one process, or processes — take turns at
SQLite's single write lock: none deadlocks, none starves, none handles a message twice."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import sqlalchemy as sa

import ecopy
from ecopy_dbal import Database
from tests.dbal.queue_workers import Job, consume, effects, jobs_app
from tests.services import ON_SQLITE

pytestmark = pytest.mark.parametrize("database_url", ON_SQLITE, indirect=True)


def queued_jobs(database_url: str, jobs: int) -> ecopy.MessagingSystem:
    app = jobs_app(database_url, worker=0)
    database = app.service(Database)
    effects.create(database.engine)
    with database.transaction():  # one transaction: the jobs appear together
        for number in range(jobs):
            app.command_bus.send(Job(number))
    return app


def count_by(database: Database, column: sa.Column[int]) -> dict[int, int]:
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(column, sa.func.count()).group_by(column))
        return {value: count for value, count in rows}


def test_two_consumer_threads_of_one_process_take_turns(database_url):
    jobs = 2200
    app = queued_jobs(database_url, jobs)
    failures: list[BaseException] = []

    def consume_here() -> None:
        try:
            app.run("jobs", finish_when_no_messages=True)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=consume_here) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A deadlock used to hold each claim for SQLite's 30 s busy timeout: 245 s in all.
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads), "the consumers deadlocked"
    assert failures == []
    database = app.service(Database)
    assert count_by(database, effects.c.job) == {number: 1 for number in range(jobs)}
    database.dispose()


def test_three_consumer_processes_on_one_file_share_the_work(database_url):
    jobs = 3000
    database = queued_jobs(database_url, jobs).service(Database)

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    processes = [
        context.Process(target=consume, args=(database_url, worker, start)) for worker in (1, 2, 3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0, 0]

    assert count_by(database, effects.c.job) == {number: 1 for number in range(jobs)}
    shares = count_by(database, effects.c.worker)
    # Each takes at least a fifth. Before the writer gate: 2,990 / 10 / 0 seen, 280 / 1,830 /
    # 890 here.
    assert all(shares.get(worker, 0) >= jobs // 5 for worker in (1, 2, 3)), shares
    database.dispose()
