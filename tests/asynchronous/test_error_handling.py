"""Error handling of asynchronous endpoints (DESIGN §3.5, §4): delayed retries through the
channel with ``RetryTemplate``, dead letters after the last attempt, per-consumer error
handling with ``PollingMetadata(error_channel=...)``, a dead-letter channel of the
application, and instant in-process retries with ``InstantRetryConfiguration``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import ecopy
from ecopy import (
    ErrorHandlerConfiguration,
    InstantRetryConfiguration,
    Message,
    PollingMetadata,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    internal_handler,
)
from ecopy.testing import bootstrap_flow_testing

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ChargeCard:
    order_id: str


@dataclass(frozen=True)
class SendReceipt:
    order_id: str


class Payments:
    """Fails while ``failures`` lasts; records each attempt with its retry count and time."""

    def __init__(self, failures: int = 10**6, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.attempts: list[tuple[str, Any, float]] = []
        self.charged: list[str] = []
        self.clock: ecopy.Clock | None = None

    @asynchronous("payments")
    @command_handler(endpoint_id="charge_card")
    def charge(self, command: ChargeCard, message: Message) -> str:
        now = self.clock.now() if self.clock else 0.0
        self.attempts.append((command.order_id, message.header("ecopy.retry_count"), now))
        if self.failures > 0:
            self.failures -= 1
            raise self.error(f"card processor unreachable for {command.order_id}")
        self.charged.append(command.order_id)
        return "charged"

    @asynchronous("receipts")
    @command_handler(endpoint_id="send_receipt")
    def receipt(self, command: SendReceipt) -> None:
        raise ValueError(f"no e-mail address for {command.order_id}")

    def retry_counts(self) -> list[Any]:
        return [count for _, count, _ in self.attempts]

    def seconds_after_start(self) -> list[float]:
        return [round(at - START.timestamp(), 3) for _, _, at in self.attempts]


def payments_flow(payments: Payments, *extensions: object, channels=("payments", "receipts")):
    flow = bootstrap_flow_testing(
        classes=[Payments],
        services=[payments],
        config=ServiceConfiguration(extensions=list(extensions)),
        enable_asynchronous_processing=[QueueChannel(name) for name in channels],
        start_time=START,
    )
    payments.clock = flow.clock
    return flow


# -- delayed retries ---------------------------------------------------------------------


def test_a_failed_message_comes_back_after_the_retry_delay_with_its_retry_count():
    payments = Payments()
    flow = payments_flow(
        payments, ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 2))
    )
    flow.send_command(ChargeCard("o-1"))

    flow.run("payments")
    assert payments.retry_counts() == [None]

    flow.advance_time(0.999).run("payments")
    assert payments.retry_counts() == [None]

    flow.advance_time(0.001).run("payments")
    assert payments.retry_counts() == [None, 1]

    flow.advance_time(1).run("payments")
    assert payments.retry_counts() == [None, 1, 2]
    assert flow.dead_letter.count() == 1


def test_a_message_that_succeeds_on_retry_is_not_dead_lettered():
    payments = Payments(failures=1)
    flow = payments_flow(
        payments, ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(500, 3))
    )
    flow.send_command(ChargeCard("o-1")).run("payments")

    flow.advance_time(0.5).run("payments")

    assert payments.charged == ["o-1"]
    assert flow.dead_letter.count() == 0
    assert len(flow.system.channel("payments")) == 0


def test_after_the_last_attempt_the_message_is_a_dead_letter_with_the_reason():
    payments = Payments()
    flow = payments_flow(
        payments, ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(100, 1))
    )
    flow.send_command(ChargeCard("o-1"), headers={"tenant": "acme"})
    message_id = flow.get_recorded_command_headers()[0]["id"]

    flow.run("payments").advance_time(0.1).run("payments")

    [entry] = flow.dead_letter.list()
    assert entry.channel == "payments"
    assert entry.endpoint_id == "charge_card"
    assert entry.message_id == message_id
    assert entry.exception_type == "ConnectionError"
    assert entry.exception_message == "card processor unreachable for o-1"
    assert "Traceback" in entry.traceback
    assert 'raise self.error(f"card processor unreachable' in entry.traceback
    assert entry.failed_at == pytest.approx(START.timestamp() + 0.1)
    assert entry.payload == {"order_id": "o-1"}
    assert entry.headers["tenant"] == "acme"
    assert entry.headers["ecopy.exception.type"] == "ConnectionError"
    assert entry.headers["ecopy.exception.message"] == "card processor unreachable for o-1"
    assert "Traceback" in entry.headers["ecopy.exception.traceback"]
    assert len(flow.system.channel("payments")) == 0


def test_exponential_delays_are_capped_by_max_delay_ms_and_retries_go_on():
    template = RetryTemplate.exponential(100, 10, max_delay_ms=2000, max_attempts=4)
    payments = Payments()
    flow = payments_flow(payments, ErrorHandlerConfiguration("errorChannel", template))
    flow.send_command(ChargeCard("o-1")).run("payments")

    for delay_ms in template.delays_ms():
        flow.advance_time(timedelta(milliseconds=delay_ms - 1)).run("payments")
        flow.advance_time(timedelta(milliseconds=1)).run("payments")

    assert template.delays_ms() == [100, 1000, 2000, 2000]
    assert payments.retry_counts() == [None, 1, 2, 3, 4]
    assert payments.seconds_after_start() == [0, 0.1, 1.1, 3.1, 5.1]
    assert flow.dead_letter.count() == 1


@pytest.mark.parametrize(
    ("template", "delays"),
    [
        (RetryTemplate.fixed(250, 3), [250, 250, 250]),
        (RetryTemplate.exponential(1000, 2), [1000, 2000, 4000]),
        (
            RetryTemplate.exponential(1000, 2, max_delay_ms=1500, max_attempts=5),
            [1000] + [1500] * 4,
        ),
        (RetryTemplate.exponential(1000, 3, max_delay_ms=500, max_attempts=2), [500, 500]),
        (RetryTemplate.fixed(100, 0), []),
    ],
    ids=["fixed", "exponential", "capped", "capped-from-the-first", "no-retries"],
)
def test_retry_template_delays(template, delays):
    assert template.delays_ms() == delays


@pytest.mark.parametrize(
    ("template", "delays"),
    [
        (
            RetryTemplate.backoff([1000, 5000, 30000], max_attempts=5),
            [1000, 5000, 30000] + [30000] * 2,
        ),
        (RetryTemplate.backoff([1000, 5000, 30000], max_attempts=2), [1000, 5000]),
        (
            RetryTemplate.backoff([100, 60000], max_delay_ms=10000, max_attempts=3),
            [100, 10000, 10000],
        ),
    ],
    ids=["the-last-repeats", "fewer-attempts-than-delays", "capped"],
)
def test_backoff_takes_the_delays_one_by_one_then_repeats_the_last(template, delays):
    assert template.delays_ms() == delays


def test_max_attempts_none_retries_without_limit():
    template = RetryTemplate.backoff([1000, 2000])
    payments = Payments(failures=25)
    flow = payments_flow(payments, ErrorHandlerConfiguration("errorChannel", template))
    flow.send_command(ChargeCard("o-1")).run("payments")

    while not payments.charged:
        flow.advance_time(2).run("payments")

    assert len(payments.attempts) == 26
    assert payments.retry_counts()[-1] == 25
    assert flow.dead_letter.count() == 0
    assert template.can_retry(10**9)
    assert template.delays_ms(4) == [1000, 2000, 2000, 2000]
    with pytest.raises(ValueError, match=r"without limit \(max_attempts=None\): ask for delays_ms"):
        template.delays_ms()
    assert RetryTemplate.exponential(100, 2, max_attempts=None).can_retry(10**9)


class CardExpired(Exception):
    pass


class CardExpiredLongAgo(CardExpired):
    pass


@pytest.mark.parametrize(
    "non_retryable",
    [
        (CardExpired,),
        (f"{__name__}.CardExpired",),
        (KeyError, f"{__name__}.CardExpired"),
    ],
    ids=["class", "qualified-name", "among-others"],
)
def test_a_failure_listed_as_non_retryable_goes_straight_to_the_dead_letters(non_retryable):
    template = RetryTemplate.fixed(1000, 5, non_retryable=non_retryable)
    payments = Payments(error=CardExpiredLongAgo)  # a subclass is listed too
    flow = payments_flow(payments, ErrorHandlerConfiguration("errorChannel", template))

    flow.send_command(ChargeCard("o-1")).run("payments")

    assert payments.retry_counts() == [None]
    [entry] = flow.dead_letter.list()
    assert entry.exception_type == "CardExpiredLongAgo"


def test_a_built_in_exception_may_be_named_without_its_module():
    template = RetryTemplate.exponential(100, 2, non_retryable=["PermissionError"])

    assert template.gives_up_on(PermissionError("no access"))
    assert not template.gives_up_on(ConnectionError("away"))
    assert template.gives_up_on(ecopy.NonRetryableError("never"))


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda: RetryTemplate.fixed(100, 3, non_retryable=[42]), "takes exception classes"),
        (lambda: RetryTemplate.fixed(100, 3, non_retryable=[dict]), "takes exception classes"),
        (lambda: RetryTemplate.backoff([]), "needs at least one delay"),
        (lambda: RetryTemplate.backoff([100, -1]), "delays in whole milliseconds >= 0"),
        (lambda: RetryTemplate.fixed(100, -1), "max_attempts must be an int >= 0 (or None"),
    ],
)
def test_invalid_retry_templates_are_refused(make, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        make()


def test_a_fixed_delay_is_capped_too():
    template = RetryTemplate(initial_delay_ms=5000, max_delay_ms=1000, max_attempts=2)

    assert template.delays_ms() == [1000, 1000]


def test_no_retries_sends_a_failed_message_straight_to_the_dead_letters():
    payments = Payments()
    flow = payments_flow(
        payments, ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 0))
    )

    flow.send_command(ChargeCard("o-1")).run("payments")

    assert payments.retry_counts() == [None]
    assert flow.dead_letter.count() == 1


def test_error_handling_takes_the_message_so_the_run_does_not_raise():
    payments = Payments()
    flow = payments_flow(payments, ErrorHandlerConfiguration("errorChannel", None))
    flow.send_command(ChargeCard("o-1")).send_command(ChargeCard("o-2"))

    flow.run("payments")

    assert [order_id for order_id, _, _ in payments.attempts] == ["o-1", "o-2"]
    assert flow.dead_letter.count() == 2


# -- choosing the error handling ---------------------------------------------------------


def test_polling_metadata_selects_another_error_handling_for_its_consumer():
    payments = Payments()
    flow = payments_flow(
        payments,
        ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 3)),
        ErrorHandlerConfiguration("receiptErrors", None),
        PollingMetadata("receipts", error_channel="receiptErrors"),
    )
    flow.send_command(ChargeCard("o-1")).send_command(SendReceipt("o-1"))

    flow.run("payments").run("receipts")

    [entry] = flow.dead_letter.list()
    assert entry.endpoint_id == "send_receipt"
    assert entry.exception_type == "ValueError"
    assert len(flow.system.channel("payments")) == 1  # waiting for its retry


def test_polling_metadata_naming_an_unknown_error_channel_is_a_configuration_error():
    with pytest.raises(ecopy.ConfigurationError, match=r"'receiptErors'.*receiptErrors"):
        payments_flow(
            Payments(),
            ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 3)),
            ErrorHandlerConfiguration("receiptErrors", None),
            PollingMetadata("receipts", error_channel="receiptErors"),
        )


class FailureDesk:
    def __init__(self) -> None:
        self.received: list[tuple[Any, dict[str, Any]]] = []

    @internal_handler("failed")
    def review(self, payload: object, message: Message) -> None:
        self.received.append((payload, dict(message.headers)))


class AnyPayloadDesk:
    @internal_handler("failed")
    def review(self, payload: Any) -> None:
        pass


def test_a_dead_letter_channel_of_the_application_receives_the_failed_message():
    payments = Payments()
    flow = payments_flow(
        payments,
        ErrorHandlerConfiguration(
            "errorChannel", RetryTemplate.fixed(100, 1), dead_letter_channel="failed_payments"
        ),
        channels=("payments", "receipts", "failed_payments"),
    )

    flow.send_command(ChargeCard("o-1")).run("payments").advance_time(0.1).run("payments")

    assert flow.dead_letter.count() == 0
    failed = flow.system.channel("failed_payments").receive()
    assert failed.payload == ChargeCard("o-1")
    assert failed.headers["ecopy.exception.type"] == "ConnectionError"
    assert failed.headers["ecopy.exception.message"] == "card processor unreachable for o-1"


def test_a_handler_of_the_dead_letter_channel_receives_the_failed_message():
    payments = Payments()
    desk = FailureDesk()
    flow = bootstrap_flow_testing(
        classes=[Payments, FailureDesk],
        services=[payments, desk],
        config=ServiceConfiguration(
            extensions=[
                ErrorHandlerConfiguration("errorChannel", None, dead_letter_channel="failed")
            ]
        ),
        enable_asynchronous_processing=[
            QueueChannel("payments"),
            QueueChannel("receipts"),
            QueueChannel("failed"),
        ],
    )

    flow.send_command(ChargeCard("o-1")).run("payments")
    # Bounded: the bug makes this run loop forever.
    flow.system.run("failed", handled_message_limit=5, finish_when_no_messages=True)

    [(payload, headers)] = desk.received
    assert payload == ChargeCard("o-1")
    assert headers["ecopy.exception.type"] == "ConnectionError"
    assert flow.dead_letter.count() == 0


def test_a_handler_of_the_dead_letter_channel_may_take_any_payload():
    flow = bootstrap_flow_testing(
        classes=[AnyPayloadDesk],
        services=[AnyPayloadDesk()],
        enable_asynchronous_processing=[QueueChannel("failed")],
    )

    assert [c.name for c in flow.system.list_consumers()] == ["failed"]


def test_without_a_dead_letter_channel_a_failed_message_is_dropped_and_logged(caplog):
    payments = Payments()
    flow = payments_flow(
        payments, ErrorHandlerConfiguration("errorChannel", None, dead_letter_channel=None)
    )

    with caplog.at_level(logging.ERROR, logger="ecopy"):
        flow.send_command(ChargeCard("o-1")).run("payments")

    assert flow.dead_letter.count() == 0
    assert len(flow.system.channel("payments")) == 0
    assert any(
        "card processor unreachable for o-1" in record.getMessage()
        and "dropped" in record.getMessage()
        for record in caplog.records
    )


# -- instant retries ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReserveSeat:
    seat: str


class Booking:
    def __init__(self, failures: list[type[Exception]]) -> None:
        self.failures = list(failures)
        self.attempts = 0

    @command_handler
    def reserve(self, command: ReserveSeat) -> str:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)(f"seat {command.seat} is locked")
        return f"reserved {command.seat}"


def booking_app(booking: Booking, retries: InstantRetryConfiguration) -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[Booking],
        services=[booking],
        config=ServiceConfiguration(extensions=[retries]),
    )


def test_the_command_bus_retries_instantly_and_returns_the_result():
    booking = Booking([ConnectionError, ConnectionError])
    app = booking_app(booking, InstantRetryConfiguration(command_bus_retries=2))

    assert app.command_bus.send(ReserveSeat("12A")) == "reserved 12A"
    assert booking.attempts == 3


def test_the_command_bus_gives_up_after_its_instant_retries_with_the_last_error():
    booking = Booking([ConnectionError] * 5)
    app = booking_app(booking, InstantRetryConfiguration(command_bus_retries=2))

    with pytest.raises(ConnectionError, match="seat 12A is locked"):
        app.command_bus.send(ReserveSeat("12A"))
    assert booking.attempts == 3


def test_instant_retries_of_the_command_bus_apply_only_to_the_listed_exceptions():
    booking = Booking([ValueError])
    app = booking_app(
        booking,
        InstantRetryConfiguration(command_bus_retries=3, command_bus_exceptions=[ConnectionError]),
    )

    with pytest.raises(ValueError):
        app.command_bus.send(ReserveSeat("12A"))
    assert booking.attempts == 1


def test_without_instant_retries_the_command_bus_fails_at_once():
    booking = Booking([ConnectionError])
    app = booking_app(booking, InstantRetryConfiguration())

    with pytest.raises(ConnectionError):
        app.command_bus.send(ReserveSeat("12A"))
    assert booking.attempts == 1


def test_an_asynchronous_endpoint_retries_instantly_before_any_delayed_retry():
    payments = Payments(failures=2)
    flow = payments_flow(
        payments,
        InstantRetryConfiguration(asynchronous_retries=2),
        ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 3)),
    )

    flow.send_command(ChargeCard("o-1")).run("payments")

    assert payments.charged == ["o-1"]
    assert payments.retry_counts() == [None, None, None]
    assert len(flow.system.channel("payments")) == 0
    assert flow.dead_letter.count() == 0


def test_an_exception_not_listed_for_instant_retries_goes_to_the_error_handling_at_once():
    payments = Payments(failures=1, error=PermissionError)
    flow = payments_flow(
        payments,
        InstantRetryConfiguration(
            asynchronous_retries=2, asynchronous_exceptions=[ConnectionError]
        ),
        ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(1000, 3)),
    )

    flow.send_command(ChargeCard("o-1")).run("payments")
    assert payments.retry_counts() == [None]

    flow.advance_time(1).run("payments")
    assert payments.retry_counts() == [None, 1]
    assert payments.charged == ["o-1"]


def test_instant_retries_of_asynchronous_endpoints_do_not_apply_to_the_command_bus():
    booking = Booking([ConnectionError])
    app = booking_app(booking, InstantRetryConfiguration(asynchronous_retries=3))

    with pytest.raises(ConnectionError):
        app.command_bus.send(ReserveSeat("12A"))
    assert booking.attempts == 1


@dataclass(frozen=True)
class EmailReceipt:
    order_id: str


class Receipts:
    """Charging sends a receipt, then fails on the first attempt: that attempt's receipt must
    not leave."""

    def __init__(self) -> None:
        self.attempts = 0
        self.receipts: list[str] = []

    def charge_and_send_receipt(self, command: ChargeCard, commands: ecopy.CommandBus) -> None:
        self.attempts += 1
        commands.send(EmailReceipt(command.order_id))
        if self.attempts == 1:
            raise ConnectionError("card processor unreachable")

    @asynchronous("receipts")
    @command_handler
    def email(self, command: EmailReceipt) -> None:
        self.receipts.append(command.order_id)


class ChargeAtOnce(Receipts):
    @command_handler
    def charge(self, command: ChargeCard, commands: ecopy.CommandBus) -> None:
        self.charge_and_send_receipt(command, commands)


class ChargeLater(Receipts):
    @asynchronous("payments")
    @command_handler
    def charge(self, command: ChargeCard, commands: ecopy.CommandBus) -> None:
        self.charge_and_send_receipt(command, commands)


def receipts_flow(service: Receipts, retries: InstantRetryConfiguration):
    return bootstrap_flow_testing(
        classes=[type(service)],
        services=[service],
        config=ServiceConfiguration(extensions=[retries]),
        enable_asynchronous_processing=[QueueChannel("payments"), QueueChannel("receipts")],
    )


def test_sends_of_a_failed_instant_retry_attempt_of_the_command_bus_are_dropped():
    service = ChargeAtOnce()
    flow = receipts_flow(service, InstantRetryConfiguration(command_bus_retries=1))

    flow.send_command(ChargeCard("o-1")).run("receipts")

    assert service.attempts == 2
    assert service.receipts == ["o-1"]


def test_sends_of_a_failed_instant_retry_attempt_of_an_asynchronous_endpoint_are_dropped():
    service = ChargeLater()
    flow = receipts_flow(service, InstantRetryConfiguration(asynchronous_retries=1))

    flow.send_command(ChargeCard("o-1")).run("payments").run("receipts")

    assert service.attempts == 2
    assert service.receipts == ["o-1"]
