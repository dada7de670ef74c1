"""The application of ``bench_workers.py``, loaded by every worker of the command it times:
``ecopy --app bench_workers_app:create_app run jobs ...`` (from ``benchmarks/``).

One ``DbalChannel("jobs")`` and one ``@asynchronous("jobs")`` command handler, which does a
little work and then inserts one row into ``bench_effects`` through the injected connection,
in the transaction that also deletes the message's row. Configured by environment variables,
since each worker process loads it itself: ``BENCH_WORKERS_URL`` (the database),
``BENCH_WORKERS_SPINS`` (iterations of a pure-Python loop: the CPU-bound work) and
``BENCH_WORKERS_SLEEP_S`` (a sleep: the I/O-bound work).
"""

import os
import time
from dataclasses import dataclass

import sqlalchemy as sa

import ecopy
from ecopy import PollingMetadata, ServiceConfiguration, asynchronous, command_handler
from ecopy_dbal import DbalChannel, DbalConfiguration

INSERT_EFFECT = sa.text("INSERT INTO bench_effects (job, pid) VALUES (:job, :pid)")


@dataclass(frozen=True)
class Job:
    number: int


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


class Jobs:
    def __init__(self, spins: int, sleep_s: float) -> None:
        self.spins = spins
        self.sleep_s = sleep_s

    @asynchronous("jobs")
    @command_handler(endpoint_id="do_job")
    def do(self, job: Job, connection: sa.Connection) -> None:
        if self.spins:
            spin(self.spins)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        connection.execute(INSERT_EFFECT, {"job": job.number, "pid": os.getpid()})


def create_app() -> ecopy.MessagingSystem:
    jobs = Jobs(
        spins=int(os.environ.get("BENCH_WORKERS_SPINS", "0")),
        sleep_s=float(os.environ.get("BENCH_WORKERS_SLEEP_S", "0")),
    )
    return ecopy.bootstrap(
        classes=[Jobs],
        services=[jobs],
        config=ServiceConfiguration(
            service_name="bench_workers",
            extensions=[
                DbalConfiguration(
                    url=os.environ["BENCH_WORKERS_URL"],
                    auto_setup=False,
                    dead_letters=False,
                    deduplication=False,
                    documents=False,
                    event_store=False,
                ),
                DbalChannel("jobs"),
                # An idle worker looks for jobs every 10 ms: it starts on them at once.
                PollingMetadata("jobs", poll_interval_ms=10),
            ],
        ),
    )
