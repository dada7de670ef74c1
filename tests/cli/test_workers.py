"""``ecopy run`` with several consumers, ``--threads`` and ``--processes``: every message handled
exactly once, a graceful stop on SIGTERM, dead workers replaced, and the usage errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecopy_dbal import Database
from ecopy_dbal.channel import messages
from tests.cli.invoking import Invoke
from tests.cli.payments_shop import PaymentsShop
from tests.cli.test_entry_point import ecopy_command
from tests.cli.workers_app import Email, Job, create_system, effects
from tests.services import DATABASES, ON_SQLITE

REPOSITORY = Path(__file__).resolve().parents[2]
WORKERS_APP = "tests.cli.workers_app:create_system"
ON_POSTGRES = [pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


# -- several consumers, threads ---------------------------------------------------------------


@pytest.mark.parametrize("database_url", ON_SQLITE, indirect=True)
def test_several_consumers_run_in_one_command(database_url: str, invoke: Invoke) -> None:
    queue(database_url, jobs=5, emails=3)

    result = invoke(
        "--app",
        WORKERS_APP,
        "run",
        "jobs",
        "emails",
        "--finish-when-no-messages",
        env=app_env(database_url),
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Consumer jobs stopped after handling 5 messages.\n"
        "Consumer emails stopped after handling 3 messages.\n"
    )
    assert handled(database_url, "jobs") == {number: 1 for number in range(5)}
    assert handled(database_url, "emails") == {number: 1 for number in range(3)}


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_threads_drain_a_database_queue_handling_each_message_once(
    database_url: str, invoke: Invoke
) -> None:
    queue(database_url, jobs=120)

    result = invoke(
        "--app",
        WORKERS_APP,
        "run",
        "jobs",
        "--threads",
        "4",
        "--finish-when-no-messages",
        env=app_env(database_url),
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == "Consumer jobs stopped after handling 120 messages.\n"
    assert handled(database_url, "jobs") == {number: 1 for number in range(120)}


def test_threads_share_an_in_memory_queue(shop: PaymentsShop) -> None:
    orders = [f"o-{number}" for number in range(10)]
    shop.place_orders(*orders)

    result = shop.ecopy("run", "orders", "--threads", "3", "--finish-when-no-messages")

    assert result.exit_code == 0, result.output
    # Each order is one message for charge_card and one for notify_customer.
    assert result.stdout == "Consumer orders stopped after handling 20 messages.\n"
    assert sorted(shop.payments.charged) == sorted(orders)
    assert sorted(shop.notifications.notified) == sorted(orders)


@pytest.mark.parametrize("database_url", ON_SQLITE, indirect=True)
def test_a_consumer_stopped_by_an_error_stops_the_other_threads(
    database_url: str, invoke: Invoke
) -> None:
    queue(database_url, jobs=30)

    result = invoke(
        "--app",
        WORKERS_APP,
        "run",
        "jobs",
        "--threads",
        "2",
        "--finish-when-no-messages",
        env=app_env(database_url, WORKERS_FAILING_JOB="3"),
    )

    assert result.exit_code == 1
    assert "Error: Consumer 'jobs' stopped: RuntimeError: job 3 failed" in result.stderr
    assert "stopping the other consumer loops after the message in hand" in result.stderr
    done = handled(database_url, "jobs")
    assert set(done.values()) == {1}
    assert 3 not in done
    # Nothing lost: the failed message, and those not taken yet, are still queued.
    assert queued_jobs(database_url) == {number for number in range(30) if number not in done}


# -- worker processes -------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_worker_processes_drain_a_database_queue_handling_each_message_once(
    database_url: str,
) -> None:
    queue(database_url, jobs=120)

    with ecopy_process(
        "run", "jobs", "--processes", "2", "--finish-when-no-messages", env=app_env(database_url)
    ) as process:
        stdout, stderr = process.communicate(timeout=90)

    assert process.returncode == 0, stderr
    assert stdout == "Consumer jobs stopped after handling 120 messages.\n"
    assert "worker-1 started" in stderr and "worker-2 started" in stderr
    assert handled(database_url, "jobs") == {number: 1 for number in range(120)}
    # The workers handled them, not the supervising process.
    assert process.pid not in handling_processes(database_url)


@pytest.mark.parametrize("database_url", ON_SQLITE, indirect=True)
def test_a_worker_stopped_by_an_error_stops_the_command(database_url: str) -> None:
    queue(database_url, jobs=30)

    with ecopy_process(
        "run", "jobs", "--processes", "2", env=app_env(database_url, WORKERS_FAILING_JOB="3")
    ) as process:
        stdout, stderr = process.communicate(timeout=90)

    assert process.returncode == 1
    assert "Error: Consumer 'jobs' stopped: RuntimeError: job 3 failed" in stderr
    assert "stopped by an error; the other workers stop after the message in hand" in stderr
    assert stdout.startswith("Consumer jobs stopped after handling ")
    done = handled(database_url, "jobs")
    assert set(done.values()) == {1}
    assert queued_jobs(database_url) == {number for number in range(30) if number not in done}


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_sigterm_lets_every_worker_finish_the_message_in_hand(
    database_url: str, tmp_path: Path, invoke: Invoke
) -> None:
    queue(database_url, jobs=40)
    started = tmp_path / "started"
    started.mkdir()
    env = app_env(database_url, WORKERS_HANDLING_S="0.2", WORKERS_STARTED_DIR=str(started))

    with ecopy_process("run", "jobs", "--processes", "2", "--threads", "2", env=env) as process:
        wait_until(lambda: len(list(started.iterdir())) >= 2, process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    done = handled(database_url, "jobs")
    # Every message taken was finished, once; the others wait in the queue.
    assert {int(path.name.split("-")[0]) for path in started.iterdir()} == set(done)
    assert set(done.values()) == {1}
    assert stdout == f"Consumer jobs stopped after handling {len(done)} messages.\n"
    assert queued_jobs(database_url) == set(range(40)) - set(done)

    rest = invoke(
        "--app", WORKERS_APP, "run", "jobs", "--finish-when-no-messages", env=app_env(database_url)
    )

    assert rest.exit_code == 0, rest.output
    assert handled(database_url, "jobs") == {number: 1 for number in range(40)}


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_a_killed_worker_is_replaced_and_its_message_handled_once(
    database_url: str, tmp_path: Path
) -> None:
    queue(database_url, jobs=30)
    hang = tmp_path / "hang"
    env = app_env(database_url, WORKERS_HANG_FILE=str(hang), WORKERS_VISIBILITY_TIMEOUT_S="1")

    with ecopy_process("run", "jobs", "--processes", "2", env=env) as process:
        wait_until(lambda: hang.exists() and hang.read_text() != "", process)
        killed = int(hang.read_text())
        os.kill(killed, signal.SIGKILL)
        # Job 0 comes back once the claim of the killed worker has expired.
        wait_until(lambda: len(handled(database_url, "jobs")) == 30, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert f"(pid {killed}) was killed by SIGKILL" in stderr
    assert "a new worker-" in stderr
    assert stderr.count(" started (pid ") == 3  # two workers, and the replacement
    assert handled(database_url, "jobs") == {number: 1 for number in range(30)}
    assert killed not in handling_processes(database_url)


# -- usage errors -----------------------------------------------------------------------------


def test_every_consumer_name_is_checked(shop: PaymentsShop) -> None:
    one = shop.ecopy("run", "orders", "nope")
    two = shop.ecopy("run", "ordrs", "orders", "nope")

    assert one.exit_code == 2
    assert one.stderr.endswith(
        "Error: Unknown consumer 'nope'. Known consumers: orders "
        "(`ecopy list` shows what each one handles).\n"
    )
    assert two.exit_code == 2
    assert two.stderr.endswith(
        "Error: Unknown consumers 'ordrs', 'nope'. Did you mean 'orders' for 'ordrs'? Known "
        "consumers: orders (`ecopy list` shows what each one handles).\n"
    )


def test_a_consumer_given_twice_is_a_usage_error(shop: PaymentsShop) -> None:
    result = shop.ecopy("run", "orders", "orders")

    assert result.exit_code == 2
    assert "Consumer 'orders' is given twice; to run it in several loops, give it once with " in (
        result.stderr
    )
    assert "--threads N" in result.stderr


def test_worker_processes_cannot_share_an_in_memory_channel(shop: PaymentsShop) -> None:
    shop.place_orders("o-1")

    result = shop.ecopy("run", "orders", "--processes", "2")

    assert result.exit_code == 2
    assert "Consumer 'orders' reads the in-memory channel 'orders', so each of the 2 worker " in (
        " ".join(result.stderr.split())
    )
    assert "DbalChannel('orders')" in result.stderr
    assert len(shop.system.channel("orders")) == 2  # nothing was taken


@pytest.mark.parametrize("option", ["--processes", "--threads"])
def test_processes_and_threads_must_be_at_least_one(shop: PaymentsShop, option: str) -> None:
    result = shop.ecopy("run", "orders", option, "0")

    assert result.exit_code == 2
    assert f"Invalid value for '{option}': 0 is not in the range x>=1." in result.stderr


def test_a_scheduled_consumer_cannot_run_in_several_threads(invoke: Invoke) -> None:
    result = invoke(
        "--app", "tests.cli.workers_app:scheduled_system", "run", "tick", "--threads", "2"
    )

    assert result.exit_code == 2
    assert "Consumer 'tick' is not a channel consumer" in result.stderr
    assert "ecopy run tick" in result.stderr


# -- helpers ----------------------------------------------------------------------------------


def app_env(database_url: str, **more: str) -> dict[str, str]:
    return {"WORKERS_DATABASE_URL": database_url, **more}


def queue(database_url: str, *, jobs: int = 0, emails: int = 0) -> None:
    """Queue the jobs and emails in one transaction, so they appear together."""
    with create_system(database_url) as app:
        database = app.require_service(Database)
        effects.create(database.engine, checkfirst=True)
        with database.transaction():
            for number in range(jobs):
                app.command_bus.send(Job(number))
            for number in range(emails):
                app.command_bus.send(Email(number))


def handled(database_url: str, consumer: str) -> dict[int, int]:
    """How many times each message of ``consumer`` was handled, by number."""
    rows = _query(database_url, sa.select(effects.c.number).where(effects.c.consumer == consumer))
    return dict(Counter(number for (number,) in rows))


def handling_processes(database_url: str) -> set[int]:
    return {pid for (pid,) in _query(database_url, sa.select(effects.c.pid))}


def queued_jobs(database_url: str) -> set[int]:
    """The numbers of the jobs still in the queue."""
    bodies = _query(database_url, sa.select(messages.c.body).where(messages.c.queue == "jobs"))
    return {json.loads(body)["payload"]["number"] for (body,) in bodies}


def _query(database_url: str, statement: sa.Select) -> list[sa.Row]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(statement))
    finally:
        engine.dispose()


@contextmanager
def ecopy_process(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``ecopy --app tests.cli.workers_app:create_system ARGS`` in a process of its own."""
    environment = {name: value for name, value in os.environ.items() if name != "ECOPY_APP"}
    process = subprocess.Popen(
        [*ecopy_command(), "--app", WORKERS_APP, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPOSITORY,
        env={**environment, **env},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()  # the workers see their supervisor gone, and stop
            process.communicate()


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    """Poll ``condition`` until it holds; fail with the command's output if the command ends
    first or 60 s pass."""
    deadline = time.monotonic() + 60
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            stdout, stderr = process.communicate()
            raise AssertionError(f"never happened; the command said:\n{stdout}\n{stderr}")
        time.sleep(0.05)
