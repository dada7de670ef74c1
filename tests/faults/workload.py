"""The fault suite's application: jobs on a database queue, each of whose handlings writes one
effect row in the handler's transaction. No unique constraint: a job whose effects committed
twice shows as two rows. Importable by module name, for worker processes.
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

import ecopy
from ecopy import Message, ServiceConfiguration, asynchronous, command_handler, named_event
from ecopy_dbal import Database, DbalChannel, DbalConfiguration

CHANNEL = "jobs"

#: One row per committed handling of a job.
effects = sa.Table(
    "fault_effects",
    sa.MetaData(),
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("job", sa.Integer(), nullable=False),
    sa.Column("worker", sa.Integer(), nullable=False),
)


def scale() -> int:
    """ECOPY_FAULT_SCALE=N runs N times the messages of the CI run (the longer run)."""
    return max(1, int(os.environ.get("ECOPY_FAULT_SCALE", "1")))


@named_event("faults.job")
@dataclass(frozen=True)
class Job:
    number: int
    slow_s: float = 0.0  # how long the handler takes, beyond its writes


class Worker:
    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.handled = 0

    @asynchronous(CHANNEL)
    @command_handler(endpoint_id="do_job")
    def do(self, job: Job, connection: sa.Connection, message: Message) -> None:
        connection.execute(effects.insert(), {"job": job.number, "worker": self.worker})
        if job.slow_s:
            time.sleep(job.slow_s)
        self.handled += 1


def jobs_app(url: str, worker: int = 0, *extensions: Any, **channel: Any) -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[Worker],
        services=[Worker(worker)],
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(url=url, auto_setup=True),
                DbalChannel(CHANNEL, **channel),
                *extensions,
            ]
        ),
    )


def report(test: str, database_url: str, **figures: Any) -> None:
    """One line of figures per fault test, for docs/reliability.md (seen with ``pytest -s``)."""
    dialect = sa.make_url(database_url).get_backend_name()
    shown = ", ".join(f"{name}={value}" for name, value in figures.items())
    print(f"\nFAULT-REPORT {test} [{dialect}]: {shown}")


def enqueue(app: ecopy.MessagingSystem, jobs: list[Job]) -> None:
    database = app.service(Database)
    assert database is not None
    effects.create(database.engine, checkfirst=True)
    with database.transaction():  # one transaction: the jobs appear together
        for job in jobs:
            app.command_bus.send(job)


def some_jobs(count: int, *, slow_every: int = 0, slow_s: float = 0.0) -> list[Job]:
    rng = random.Random(count)
    return [
        Job(number, slow_s if slow_every and number % slow_every == 0 else rng.random() / 500)
        for number in range(count)
    ]


def handled_jobs(database: Database) -> dict[int, int]:
    """How many times each job's effect was committed."""
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(effects.c.job, sa.func.count()).group_by(effects.c.job))
        return {job: times for job, times in rows}


def application() -> ecopy.MessagingSystem:
    """The worker processes' application, for ``ecopy --app tests.faults.workload:application
    run jobs``; set up by the environment variables the fault tests give. It leaves a file
    saying it is loading (``ecopy run`` handles SIGTERM from then on)."""
    faulthandler.register(signal.SIGUSR1)  # a consumer that does not stop shows where it is
    ready = os.environ.get("FAULT_READY_FILE")
    if ready:
        open(ready, "w").close()
    return jobs_app(
        os.environ["FAULT_DATABASE_URL"],
        int(os.environ["FAULT_WORKER"]),
        visibility_timeout_s=float(os.environ["FAULT_VISIBILITY_TIMEOUT_S"]),
        prefetch=5,
    )
