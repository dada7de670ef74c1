"""A SIGKILL storm: three consumer processes on one queue, killed at random moments (in the
middle of a handler, a claim, a commit) and replaced, until every job is done. Whatever the
moment of death, no message is lost, no job's effects commit twice, and no consumer that was
not killed crashes. Slow jobs (longer than the visibility timeout) run among the others, so
claims are renewed while processes die around them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from ecopy_dbal import Database
from ecopy_dbal.channel import messages
from tests.faults.workload import (
    CHANNEL,
    enqueue,
    handled_jobs,
    jobs_app,
    report,
    scale,
    some_jobs,
)

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.faults.workload:application"
VISIBILITY_TIMEOUT_S = 1.0
CONSUMERS = 3


class Consumers:
    """Consumer processes of ``tests.faults.workload``, their output kept in files."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.killed: list[int] = []
        self._next = 0

    def start(self) -> None:
        number, self._next = self._next, self._next + 1
        with (
            (self.logs / f"{number}.out").open("wb") as out,
            (self.logs / f"{number}.err").open("wb") as err,
        ):
            self.running[number] = subprocess.Popen(
                [sys.executable, "-m", "ecopy.cli.main", "--app", APP, "run", CHANNEL, "-q"],
                cwd=ROOT,
                stdout=out,
                stderr=err,
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "FAULT_DATABASE_URL": self.url,
                    "FAULT_WORKER": str(number),
                    "FAULT_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
                    "FAULT_READY_FILE": str(self.logs / f"{number}.ready"),
                },
            )

    def kill_one(self, rng: random.Random) -> None:
        number = rng.choice(sorted(self.running))
        process = self.running.pop(number)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.killed.append(number)

    def crashed(self) -> dict[int, int]:
        """Consumers that exited on their own: none should."""
        return {n: p.returncode for n, p in self.running.items() if p.poll() is not None}

    def stop_all(self) -> dict[int, int]:
        """SIGTERM each consumer once it is loading its application (before that, Python is
        still starting and SIGTERM ends it as any program), then wait for it to exit."""
        deadline = time.monotonic() + 30
        while not all((self.logs / f"{n}.ready").exists() for n in self.running):
            assert time.monotonic() < deadline, "a consumer process never started"
            time.sleep(0.05)
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        exits = {}
        for number, process in self.running.items():
            try:
                exits[number] = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGUSR1)  # its threads' stacks, to its stderr
                time.sleep(1)
                exits[number] = -1
        return exits

    def kill_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    def stderr(self, number: int) -> str:
        return (self.logs / f"{number}.err").read_text(errors="replace")[-3000:]


def remaining(database: Database) -> int:
    with database.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()


def test_a_sigkill_storm_loses_nothing_and_commits_no_effect_twice(database_url, tmp_path):
    jobs = 400 * scale()
    app = jobs_app(database_url)
    database = app.service(Database)
    enqueue(app, some_jobs(jobs, slow_every=61, slow_s=1.5 * VISIBILITY_TIMEOUT_S))
    rng = random.Random(jobs)
    consumers = Consumers(database_url, tmp_path)
    started = time.monotonic()
    deadline = started + 120 * scale()
    try:
        for _ in range(CONSUMERS):
            consumers.start()
        while remaining(database) > 0 and len(consumers.killed) < 12 * scale():
            time.sleep(rng.uniform(0.2, 0.6))
            assert not consumers.crashed(), consumers.crashed()
            consumers.kill_one(rng)
            consumers.start()
        while remaining(database) > 0:
            assert time.monotonic() < deadline, f"{remaining(database)} messages never handled"
            assert not consumers.crashed(), consumers.crashed()
            time.sleep(0.1)
        exits = consumers.stop_all()
    finally:
        consumers.kill_all()

    assert all(code == 0 for code in exits.values()), {
        n: (code, consumers.stderr(n)) for n, code in exits.items() if code != 0
    }
    handled = handled_jobs(database)
    assert sorted(handled) == list(range(jobs)), "lost messages"
    assert {job: n for job, n in handled.items() if n > 1} == {}, "effects committed twice"
    assert app.dead_letter.count() == 0
    assert len(consumers.killed) >= 3, "the storm ended before it began"
    report(
        "sigkill-storm",
        database_url,
        messages=jobs,
        processes_killed=len(consumers.killed),
        seconds=round(time.monotonic() - started, 1),
        lost=jobs - len(handled),
        committed_twice=sum(1 for n in handled.values() if n > 1),
        consumer_crashes=0,
    )
    database.dispose()
