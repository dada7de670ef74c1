"""``ecopy run`` with worker processes and threads, draining a PostgreSQL queue, in one run.

Run from the repository root (see benchmarks/README.md)::

    .venv/bin/python benchmarks/bench_workers.py            # full run
    .venv/bin/python benchmarks/bench_workers.py --quick    # smoke run

The application is ``bench_workers_app.py``: one ``DbalChannel("jobs")``, one handler that does
a little work and inserts a row into ``bench_effects``. Two workloads:

* **CPU-bound**: a pure-Python loop of about 1 ms (calibrated at start), then the insert; run
  with ``ecopy run jobs --processes 1`` and ``--processes 2``.
* **I/O-bound**: ``time.sleep(0.005)``, then the insert; run with ``--threads 1``, ``--threads
  2`` and ``--threads 4`` in one process.

Each repeat starts the command on an empty queue and waits until every worker has logged that
it is running. Then it queues ``--messages`` jobs in one transaction and reads the database
server's clock after the commit. The rate is the number of jobs divided by the time from that
commit to the insert of the last job's row (the server's ``clock_timestamp()`` in the row), so
the start of the interpreters and the loading of the application are outside it. The command
is then stopped with SIGTERM and must exit with status 0.

After every repeat, outside the clock, the script checks that ``bench_effects`` holds exactly
one row for each job (none handled twice, none lost), that the queue is empty and that the
command reported every job; a broken run fails loudly instead of reporting a number. The
configurations' repeats are interleaved round-robin.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ecopy import MessagingSystem
from ecopy_dbal import Database

HERE = Path(__file__).resolve().parent
DEFAULT_SERVER_URL = os.environ.get(
    "ECOPY_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DEFAULT_DATABASE = "ecopy_bench_workers"
IO_WORK_S = 0.005
READY = re.compile(r"consumers? jobs running|ecopy\.cli\.worker: running jobs")
"""The log line of each worker (or of the command, without --processes) once it runs."""


def expect(condition: bool, message: str) -> None:
    """An assertion that ``python -O`` cannot remove."""
    if not condition:
        raise AssertionError(message)


@dataclass
class Configuration:
    workload: str  # "cpu" or "io"
    processes: int
    threads: int
    messages: int
    rates: list[float] = field(default_factory=list)
    handlers: list[int] = field(default_factory=list)  # processes that handled jobs

    @property
    def label(self) -> str:
        if self.processes > 1:
            return f"--processes {self.processes}"
        if self.threads > 1:
            return f"--threads {self.threads}"
        return "--processes 1" if self.workload == "cpu" else "--threads 1"

    @property
    def options(self) -> list[str]:
        return ["--processes", str(self.processes), "--threads", str(self.threads)]

    @property
    def ready_lines(self) -> int:
        return self.processes if self.processes > 1 else 1


class BenchDatabase:
    """A database of the benchmark's own, created at the start and dropped at the end."""

    def __init__(self, server_url: str, name: str) -> None:
        self.server = sa.make_url(server_url)
        self.name = name
        self.url = self.server.set(database=name).render_as_string(hide_password=False)
        self.engine: sa.Engine | None = None

    def _on_server(self, *statements: str) -> None:
        server = sa.create_engine(self.server, isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
        server.dispose()

    def create(self) -> None:
        from ecopy_dbal import schema

        self._on_server(
            f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", f"CREATE DATABASE {self.name}"
        )
        self.engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        schema.setup(self.engine)
        self.execute(
            "CREATE TABLE bench_effects (id bigserial PRIMARY KEY, job integer NOT NULL, "
            "pid integer NOT NULL, handled_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )

    def drop(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        self._on_server(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def execute(self, sql: str) -> list[sa.Row]:
        assert self.engine is not None
        with self.engine.connect() as connection:
            result = connection.exec_driver_sql(sql)
            return list(result) if result.returns_rows else []

    def value(self, sql: str) -> float:
        return float(self.execute(sql)[0][0])


class Command:
    """``ecopy --app bench_workers_app:create_app run jobs OPTIONS``, running."""

    def __init__(self, options: Sequence[str], env: dict[str, str], ready_lines: int) -> None:
        script = Path(sys.executable).with_name("ecopy")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "ecopy.cli.main"]
        self.process = subprocess.Popen(
            [*command, "--app", "bench_workers_app:create_app", "run", "jobs", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=HERE,
            env={**os.environ, **env},
        )
        self._ready_lines = ready_lines
        self._ready = threading.Event()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        seen = 0
        for line in self.process.stderr:
            self._stderr.append(line)
            if READY.search(line):
                seen += 1
                if seen >= self._ready_lines:
                    self._ready.set()

    def wait_ready(self) -> None:
        if not self._ready.wait(timeout=120):
            self.process.kill()
            raise AssertionError(f"the command never got ready:\n{self.stderr}")

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        stdout, _ = self.process.communicate(timeout=120)
        self._reader.join(timeout=10)
        return self.process.returncode, stdout

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)


def one_repeat(
    db: BenchDatabase, app: MessagingSystem, configuration: Configuration, spins: int
) -> None:
    from bench_workers_app import Job

    n = configuration.messages
    db.execute("TRUNCATE bench_effects RESTART IDENTITY")
    env = {
        "BENCH_WORKERS_URL": db.url,
        "BENCH_WORKERS_SPINS": str(spins if configuration.workload == "cpu" else 0),
        "BENCH_WORKERS_SLEEP_S": str(IO_WORK_S if configuration.workload == "io" else 0),
    }
    command = Command(configuration.options, env, configuration.ready_lines)
    try:
        command.wait_ready()
        database = app.require_service(Database)
        with database.transaction():  # the jobs appear together, at the commit
            for number in range(n):
                app.command_bus.send(Job(number))
        queued_at = db.value("SELECT extract(epoch FROM clock_timestamp())")
        deadline = time.monotonic() + 600
        while db.value("SELECT count(*) FROM bench_effects") < n:
            expect(command.process.poll() is None, f"the command ended early:\n{command.stderr}")
            expect(time.monotonic() < deadline, f"not drained in 600 s:\n{command.stderr}")
            time.sleep(0.25)  # rarely: the polling must not slow the workers down
        last = db.value("SELECT extract(epoch FROM max(handled_at)) FROM bench_effects")
    finally:
        status, stdout = command.stop()
    expect(status == 0, f"{configuration.label}: exit status {status}:\n{command.stderr}")
    rows, jobs = db.execute("SELECT count(*), count(DISTINCT job) FROM bench_effects")[0]
    expect(rows == n, f"{configuration.label}: {rows} handlings of {n} jobs (none twice)")
    expect(jobs == n, f"{configuration.label}: {jobs} distinct jobs of {n}")
    left = db.value("SELECT count(*) FROM ecopy_messages")
    expect(left == 0, f"{configuration.label}: {left} messages left in the queue")
    expect(
        stdout == f"Consumer jobs stopped after handling {n} messages.\n",
        f"{configuration.label}: the command said {stdout!r}",
    )
    configuration.rates.append(n / (last - queued_at))
    configuration.handlers.append(int(db.value("SELECT count(DISTINCT pid) FROM bench_effects")))


def calibrate_spins(target_s: float) -> int:
    """The iterations of ``spin`` that take about ``target_s`` here (median of 21 tries)."""
    from bench_workers_app import spin

    n = 20_000
    times = []
    for _ in range(21):
        started = time.perf_counter()
        spin(n)
        times.append(time.perf_counter() - started)
    return max(1, round(n * target_s / statistics.median(times)))


def report(configurations: list[Configuration], spins: int, repeats: int, cpu_ms: float) -> None:
    print()
    print(
        f"Python {platform.python_version()} on {platform.system()}, {os.cpu_count()} CPUs; "
        f"{repeats} repeats; CPU loop: {spins} iterations (~{cpu_ms:g} ms)"
    )
    print()
    print("| workload | command | messages | msgs/s median | min | max | vs 1 worker (median) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    baseline: dict[str, float] = {}
    for configuration in configurations:
        median = statistics.median(configuration.rates)
        baseline.setdefault(configuration.workload, median)
        what = (
            f"CPU ~{cpu_ms:g} ms + insert"
            if configuration.workload == "cpu"
            else f"sleep {IO_WORK_S * 1000:g} ms + insert"
        )
        print(
            f"| {what} | `{configuration.label}` | {configuration.messages} | {median:,.0f} | "
            f"{min(configuration.rates):,.0f} | {max(configuration.rates):,.0f} | "
            f"{median / baseline[configuration.workload]:.2f} |"
        )
    print()
    print("Key ratios, rate / the rate of one worker in the same repeat (above 1: faster):")
    print()
    print("| workload | command | median | per repeat |")
    print("|---|---|---:|---|")
    first: dict[str, Configuration] = {}
    for configuration in configurations:
        one = first.setdefault(configuration.workload, configuration)
        if one is configuration:
            continue
        ratios = [rate / base for rate, base in zip(configuration.rates, one.rates, strict=True)]
        print(
            f"| {configuration.workload} | `{configuration.label}` / `{one.label}` | "
            f"{statistics.median(ratios):.2f} | {', '.join(f'{r:.2f}' for r in ratios)} |"
        )
    print()
    for configuration in configurations:
        if configuration.processes > 1:
            print(
                f"{configuration.label}: processes that handled jobs, per repeat: "
                f"{configuration.handlers}"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=DEFAULT_SERVER_URL, help="an existing database URL")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="created, then dropped")
    parser.add_argument("--cpu-messages", type=int, default=2000)
    parser.add_argument("--io-messages", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-ms", type=float, default=1.0, help="the CPU-bound work, ms")
    parser.add_argument("--quick", action="store_true", help="300/200 messages, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.cpu_messages, args.io_messages, args.repeats = 300, 200, 1

    configurations = [
        Configuration("cpu", 1, 1, args.cpu_messages),
        Configuration("cpu", 2, 1, args.cpu_messages),
        Configuration("io", 1, 1, args.io_messages),
        Configuration("io", 1, 2, args.io_messages),
        Configuration("io", 1, 4, args.io_messages),
    ]
    spins = calibrate_spins(args.cpu_ms / 1000)
    db = BenchDatabase(args.server, args.database)
    db.create()
    os.environ["BENCH_WORKERS_URL"] = db.url
    from bench_workers_app import create_app

    app = create_app()
    try:
        for repeat in range(1, args.repeats + 1):
            for configuration in configurations:
                one_repeat(db, app, configuration, spins)
                print(
                    f"repeat {repeat}: {configuration.workload} {configuration.label}: "
                    f"{configuration.rates[-1]:,.0f} msgs/s",
                    flush=True,
                )
    finally:
        app.close()
        db.drop()
    report(configurations, spins, args.repeats, args.cpu_ms)


if __name__ == "__main__":
    main()
