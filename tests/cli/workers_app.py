"""An application for ``ecopy run`` with several consumers, threads and worker processes:
``--app tests.cli.workers_app:create_system``.

Two database channels, ``jobs`` and ``emails``, one handler each. Every handling writes a row
to ``worker_effects`` in the handler's transaction (no unique constraint: a message handled
twice shows as two rows), with the process and thread that handled it. The worker processes
load the application themselves, so it is configured by environment variables:

* ``WORKERS_DATABASE_URL`` — the database (required);
* ``WORKERS_VISIBILITY_TIMEOUT_S`` — of both channels (default 30);
* ``WORKERS_HANDLING_S`` — how long each handling takes (default 0);
* ``WORKERS_STARTED_DIR`` — a directory where each handling of a job leaves a file
  ``<job>-<pid>-<unique>`` as it starts;
* ``WORKERS_HANG_FILE`` — the first handling of job 0 creates this file, writes its process id
  into it and then hangs, to be killed;
* ``WORKERS_FAILING_JOB`` — the number of a job whose handling raises ``RuntimeError`` (there is
  no error handling: the consumer stops).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

import ecopy
from ecopy import (
    Message,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    internal_handler,
    scheduled,
)
from ecopy_dbal import DbalChannel, DbalConfiguration

effects = sa.Table(
    "worker_effects",
    sa.MetaData(),
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("consumer", sa.String(16), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("number", sa.Integer(), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("thread", sa.BigInteger(), nullable=False),
)


@dataclass(frozen=True)
class Job:
    number: int


@dataclass(frozen=True)
class Email:
    number: int


class Workers:
    def __init__(self) -> None:
        self.handling_s = float(os.environ.get("WORKERS_HANDLING_S", "0"))
        started = os.environ.get("WORKERS_STARTED_DIR")
        self.started_dir = Path(started) if started else None
        hang = os.environ.get("WORKERS_HANG_FILE")
        self.hang_file = Path(hang) if hang else None
        failing = os.environ.get("WORKERS_FAILING_JOB")
        self.failing_job = int(failing) if failing else None

    @asynchronous("jobs")
    @command_handler(endpoint_id="do_job")
    def do(self, job: Job, connection: sa.Connection, message: Message) -> None:
        if self.started_dir is not None:
            (self.started_dir / f"{job.number}-{os.getpid()}-{uuid.uuid4().hex}").touch()
        if job.number == 0 and self.hang_file is not None:
            self._hang_the_first_time(self.hang_file)
        if job.number == self.failing_job:
            raise RuntimeError(f"job {job.number} failed")
        time.sleep(self.handling_s)
        _record(connection, "jobs", message, job.number)

    @asynchronous("emails")
    @command_handler(endpoint_id="send_email")
    def send(self, email: Email, connection: sa.Connection, message: Message) -> None:
        _record(connection, "emails", message, email.number)

    @staticmethod
    def _hang_the_first_time(marker: Path) -> None:
        try:
            with marker.open("x") as file:
                file.write(str(os.getpid()))
        except FileExistsError:
            return  # handled again, after the one that hung was killed
        time.sleep(120)


def _record(connection: sa.Connection, consumer: str, message: Message, number: int) -> None:
    connection.execute(
        effects.insert(),
        {
            "consumer": consumer,
            "message_id": message.id,
            "number": number,
            "pid": os.getpid(),
            "thread": threading.get_ident(),
        },
    )


def create_system(database_url: str | None = None) -> ecopy.MessagingSystem:
    """The app factory; ``database_url`` (for the test itself) wins over the environment."""
    visibility_timeout_s = float(os.environ.get("WORKERS_VISIBILITY_TIMEOUT_S", "30"))
    return ecopy.bootstrap(
        classes=[Workers],
        services=[Workers()],
        config=ServiceConfiguration(
            service_name="workers",
            extensions=[
                DbalConfiguration(
                    url=database_url or os.environ["WORKERS_DATABASE_URL"],
                    auto_setup=True,
                    dead_letters=False,
                    deduplication=False,
                    documents=False,
                    event_store=False,
                ),
                DbalChannel("jobs", visibility_timeout_s=visibility_timeout_s),
                DbalChannel("emails", visibility_timeout_s=visibility_timeout_s),
            ],
        ),
    )


class Clock:
    """A scheduled consumer, ``tick``: copies of it would each tick."""

    def __init__(self) -> None:
        self.ticks = 0

    @scheduled("ticks", endpoint_id="tick", fixed_rate_ms=1000)
    def tick(self) -> Job:
        return Job(self.ticks)

    @internal_handler("ticks")
    def count(self, job: Job) -> None:
        self.ticks += 1


def scheduled_system() -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[Clock],
        services=[Clock()],
        config=ServiceConfiguration(extensions=[QueueChannel("ticks")]),
    )
