"""``ecopy run CONSUMER``: runs a consumer to its limits and says how many messages it handled."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.invoking import SAMPLE_APP, Invoke
from tests.cli.payments_shop import PaymentsShop
from tests.cli.test_entry_point import ecopy_command

REPOSITORY = Path(__file__).resolve().parents[2]
PENDING_ORDERS_APP = "tests.cli.async_app:create_system_with_pending_orders"


def test_runs_the_consumer_until_no_message_is_left(shop: PaymentsShop) -> None:
    shop.place_orders("o-1", "o-2")

    result = shop.run_orders()

    # Each order is one message for charge_card and one for notify_customer.
    assert result.stdout == "Consumer orders stopped after handling 4 messages.\n"
    assert shop.payments.charged == ["o-1", "o-2"]
    assert shop.notifications.notified == ["o-1", "o-2"]


def test_a_run_with_nothing_to_do_handles_no_message(shop: PaymentsShop) -> None:
    result = shop.run_orders()

    assert result.stdout == "Consumer orders stopped after handling 0 messages.\n"


def test_the_handled_message_limit_stops_the_consumer_and_leaves_the_rest(
    shop: PaymentsShop,
) -> None:
    shop.place_orders("o-1", "o-2", "o-3")

    first = shop.ecopy("run", "orders", "--finish-when-no-messages", "--handled-message-limit", "1")
    rest = shop.run_orders()

    assert first.exit_code == 0, first.output
    assert first.stdout == "Consumer orders stopped after handling 1 message.\n"
    assert shop.payments.charged == ["o-1", "o-2", "o-3"]
    assert "after handling 5 messages" in rest.stdout


def test_a_failed_message_is_logged_to_stderr_and_counted(shop: PaymentsShop) -> None:
    shop.decline("o-2")
    shop.place_orders("o-1", "o-2", "o-3")

    result = shop.run_orders()

    assert result.stdout == "Consumer orders stopped after handling 6 messages.\n"
    assert "INFO    ecopy.cli: consumer orders running" in result.stderr
    assert "ERROR   ecopy.consumer: consumer orders: message" in result.stderr
    assert "failed for good (CardDeclined: card declined for order o-2 (30 EUR))" in result.stderr
    assert shop.payments.charged == ["o-1", "o-3"]


def test_stop_on_error_stops_after_the_first_failed_message(shop: PaymentsShop) -> None:
    shop.decline("o-1")
    shop.place_orders("o-1", "o-2")

    result = shop.ecopy("run", "orders", "--finish-when-no-messages", "--stop-on-error")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Consumer orders stopped after handling 1 message.\n"
    assert shop.notifications.notified == []


def test_quiet_shows_errors_but_not_info(shop: PaymentsShop) -> None:
    shop.decline("o-1")
    shop.place_orders("o-1")

    result = shop.ecopy("run", "orders", "--finish-when-no-messages", "--quiet")

    assert result.exit_code == 0, result.output
    assert "INFO" not in result.stderr
    assert "CardDeclined: card declined for order o-1" in result.stderr


def test_the_execution_time_limit_stops_a_consumer_waiting_for_messages(
    shop: PaymentsShop,
) -> None:
    started = time.monotonic()

    result = shop.ecopy("run", "orders", "--execution-time-limit-ms", "150")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Consumer orders stopped after handling 0 messages.\n"
    assert time.monotonic() - started < 10


def test_an_unknown_consumer_is_named_with_the_known_ones(shop: PaymentsShop) -> None:
    result = shop.ecopy("run", "order")

    assert result.exit_code == 2  # a usage error
    assert result.stderr.endswith(
        "Error: Unknown consumer 'order'. Did you mean 'orders'? Known consumers: orders "
        "(`ecopy list` shows what each one handles).\n"
    )
    assert result.stderr.startswith("Usage: ecopy run [OPTIONS] CONSUMER")


def test_an_application_without_consumers_says_how_to_get_one(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.odd_apps:empty_system", "run", "orders")

    assert result.exit_code == 2
    assert "the application has no consumers" in result.stderr
    assert "QueueChannel('orders')" in result.stderr


def test_limits_must_be_positive(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "run", "shipping", "--handled-message-limit", "0")

    assert result.exit_code == 2
    assert "--handled-message-limit" in result.stderr


def test_a_consumer_stopped_by_a_failure_exits_with_the_reason(
    shop: PaymentsShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the broker connection was lost")

    monkeypatch.setattr(shop.system, "run", fail)

    result = shop.ecopy("run", "orders", "--finish-when-no-messages")

    assert result.exit_code == 1
    assert "Error: Consumer 'orders' stopped: RuntimeError: the broker connection was lost" in (
        result.stderr
    )
    assert "Traceback" in result.stderr  # in the log, for whoever investigates


def test_the_ecopy_command_runs_a_consumer_to_its_message_limit() -> None:
    completed = subprocess.run(
        [
            *ecopy_command(),
            "--app",
            PENDING_ORDERS_APP,
            "run",
            "orders",
            "--finish-when-no-messages",
            "--handled-message-limit",
            "5",
        ],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env=_without_ecopy_app(),
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "Consumer orders stopped after handling 5 messages.\n"
    assert "CardDeclined: card declined for order o-2 (30 EUR)" in completed.stderr


def test_sigterm_stops_a_waiting_consumer_cleanly() -> None:
    process = subprocess.Popen(
        [*ecopy_command(), "--app", PENDING_ORDERS_APP, "run", "orders"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPOSITORY,
        env=_without_ecopy_app(),
    )
    try:
        assert process.stderr is not None
        # o-2 is the second order: by its failure the consumer is running.
        _wait_for(process.stderr.fileno(), b"failed for good", deadline=time.monotonic() + 30)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0
    assert stdout.decode().startswith("Consumer orders stopped after handling ")


def test_sigterm_while_the_application_loads_stops_before_any_message(tmp_path: Path) -> None:
    release = tmp_path / "release"
    process = subprocess.Popen(
        [*ecopy_command(), "--app", "tests.cli.async_app:create_system_slowly", "run", "orders"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPOSITORY,
        env={**_without_ecopy_app(), "SLOW_LOADING_RELEASE": str(release)},
    )
    try:
        assert process.stderr is not None
        _wait_for(process.stderr.fileno(), b"loading", deadline=time.monotonic() + 30)
        process.send_signal(signal.SIGTERM)
        release.touch()
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    assert stdout.decode() == "Consumer orders stopped before handling any message.\n"


def test_a_memory_limit_below_what_the_process_uses_is_an_error(invoke: Invoke) -> None:
    result = invoke("--app", PENDING_ORDERS_APP, "run", "orders", "--memory-limit-mb", "1")

    assert result.exit_code == 1
    assert "Error: consumer orders cannot start: its memory limit (1 MB) is below what this " in (
        result.stderr
    )
    assert "give a memory limit above" in result.stderr


def _without_ecopy_app() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "ECOPY_APP"}


def _wait_for(descriptor: int, fragment: bytes, deadline: float) -> None:
    """Read the pipe ``descriptor`` until ``fragment`` appears, failing at ``deadline``."""
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while fragment not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{fragment!r} never appeared in:\n{seen.decode()}")
            if selector.select(timeout=remaining):
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    raise AssertionError(f"the process ended before {fragment!r}:\n{seen.decode()}")
                seen += chunk
