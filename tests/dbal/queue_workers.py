"""Consumer processes for the database queue tests: importable by module name, as
``multiprocessing`` with the spawn start method needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

import ecopy
from ecopy import Message, ServiceConfiguration, asynchronous, command_handler
from ecopy_dbal import DbalConfiguration
from ecopy_dbal.channel import DbalChannel

#: One row per handling of a job. No unique constraint: a job handled twice shows as two rows.
effects = sa.Table(
    "queue_test_effects",
    sa.MetaData(),
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("job", sa.Integer(), nullable=False),
    sa.Column("worker", sa.Integer(), nullable=False),
)


def database_module(url: str) -> DbalConfiguration:
    """The database module with only what the queue tests use (transactions and the
    injected connection); dead letters and the rest stay in memory."""
    return DbalConfiguration(
        url=url,
        auto_setup=True,
        dead_letters=False,
        deduplication=False,
        documents=False,
        event_store=False,
    )


@dataclass(frozen=True)
class Job:
    number: int


class Worker:
    def __init__(self, worker: int) -> None:
        self.worker = worker

    @asynchronous("jobs")
    @command_handler(endpoint_id="do_job")
    def do(self, job: Job, connection: sa.Connection, message: Message) -> None:
        connection.execute(
            effects.insert(), {"message_id": message.id, "job": job.number, "worker": self.worker}
        )


def jobs_app(url: str, worker: int, **options: Any) -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[Worker],
        services=[Worker(worker)],
        config=ServiceConfiguration(
            extensions=[database_module(url), DbalChannel("jobs", **options)]
        ),
    )


def consume(url: str, worker: int, start: Any) -> None:
    """Run the ``jobs`` consumer until the queue is empty, once every worker is ready."""
    app = jobs_app(url, worker)
    start.wait(timeout=60)
    app.run("jobs", finish_when_no_messages=True)
