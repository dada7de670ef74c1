"""Delivery headers on one send (DESIGN §3.1): ``delivery_delay``, ``time_to_live`` and
``priority`` given with the message are honoured by the channel exactly as the decorators, win
over them, apply to that message only (never propagated to what its handler sends), and a
value that cannot be honoured fails the send in the sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

import ecopy
from ecopy import (
    DELIVERY_DELAY,
    PRIORITY,
    TIME_TO_LIVE,
    CommandBus,
    Message,
    QueueChannel,
    asynchronous,
    command_handler,
    delayed,
    internal_handler,
)
from ecopy.messaging.delivery import DeliveryOptionError
from ecopy.testing import bootstrap_flow_testing

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Remind:
    who: str


@dataclass(frozen=True)
class Chase:
    who: str


class Reminders:
    def __init__(self) -> None:
        self.done: list[str] = []

    @asynchronous("reminders")
    @command_handler(endpoint_id="remind")
    def remind(self, command: Remind, commands: CommandBus) -> None:
        self.done.append(f"reminded {command.who}")
        commands.send(Chase(command.who))  # inherits the user headers, not the delivery ones

    @delayed(timedelta(days=1))
    @asynchronous("reminders")
    @command_handler(endpoint_id="chase")
    def chase(self, command: Chase) -> None:
        self.done.append(f"chased {command.who}")


@pytest.fixture
def reminders():
    service = Reminders()
    flow = bootstrap_flow_testing(
        classes=[Reminders],
        services=[service],
        enable_asynchronous_processing=[QueueChannel("reminders")],
        start_time=START,
    )
    return flow, service


def test_the_public_names_of_the_delivery_headers():
    assert (DELIVERY_DELAY, TIME_TO_LIVE, PRIORITY) == (
        "delivery_delay",
        "time_to_live",
        "priority",
    )


@pytest.mark.parametrize(
    "delay",
    [90, 90.0, timedelta(seconds=90), START + timedelta(seconds=90)],
    ids=["seconds", "float", "timedelta", "datetime"],
)
def test_a_delivery_delay_on_the_send_delays_that_message(reminders, delay):
    flow, service = reminders

    flow.send_command(Remind("ann"), headers={DELIVERY_DELAY: delay})
    flow.advance_time(89).run("reminders")
    assert service.done == []

    flow.advance_time(1).run("reminders")
    assert service.done == ["reminded ann"]


def test_the_header_wins_over_the_decorator(reminders):
    flow, service = reminders

    flow.send_command(Chase("bob"), headers={DELIVERY_DELAY: 5})
    flow.advance_time(5).run("reminders")

    assert service.done == ["chased bob"]  # not after the decorator's day


def test_delivery_headers_are_not_propagated_to_what_the_handler_sends(reminders):
    flow, service = reminders
    flow.send_command(
        Remind("cy"), headers={DELIVERY_DELAY: 10, PRIORITY: 7, TIME_TO_LIVE: 60, "tenant": "a"}
    )

    flow.advance_time(10).run("reminders")
    assert service.done == ["reminded cy"]
    flow.advance_time(timedelta(days=1))  # the decorator's delay, not the header's 10 s
    chase = flow.system.channel("reminders").receive()  # and not expired after 60 s
    assert chase is not None
    assert chase.header("tenant") == "a"  # user headers are propagated
    assert DELIVERY_DELAY not in chase.headers and PRIORITY not in chase.headers
    assert chase.header("ecopy.deliver_at") == pytest.approx(START.timestamp() + 10 + 86400)
    assert chase.header("ecopy.expires_at") is None and chase.header("ecopy.priority") is None


def test_a_time_to_live_on_the_send_drops_a_message_not_taken_in_time(reminders):
    flow, service = reminders
    flow.send_command(Remind("dee"), headers={TIME_TO_LIVE: timedelta(minutes=5)})
    flow.send_command(Remind("eve"), headers={TIME_TO_LIVE: 600})

    flow.advance_time(timedelta(minutes=5)).run("reminders")

    assert service.done == ["reminded eve"]


def test_a_priority_on_the_send_orders_the_due_messages(reminders):
    flow, service = reminders
    for who, rank in (("low", -1), ("plain", 0), ("urgent", 9)):
        flow.send_command(Remind(who), headers={PRIORITY: rank})

    flow.run("reminders", handled_message_limit=3)

    assert service.done == ["reminded urgent", "reminded plain", "reminded low"]


@pytest.mark.parametrize(
    ("header", "value", "complaint"),
    [
        (DELIVERY_DELAY, "soon", "must be seconds >= 0, a timedelta or a datetime, got 'soon'"),
        (DELIVERY_DELAY, -1, "must be seconds >= 0"),
        (TIME_TO_LIVE, 0, "must be seconds > 0 or a timedelta, got 0"),
        (TIME_TO_LIVE, True, "must be seconds > 0 or a timedelta, got True"),
        (PRIORITY, "high", "must be an int between -2147483647 and 2147483647, got 'high'"),
        (PRIORITY, 2**40, "must be an int between"),
    ],
)
def test_a_delivery_header_that_cannot_be_honoured_fails_the_send(
    reminders, header, value, complaint
):
    flow, _ = reminders

    with pytest.raises(DeliveryOptionError, match=complaint) as refused:
        flow.send_command(Remind("fay"), headers={header: value})

    assert f"header {header!r} of message " in str(refused.value)
    assert len(flow.system.channel("reminders")) == 0


class Mailroom:
    def __init__(self) -> None:
        self.sent: list[str] = []

    @internal_handler("outgoing")
    def send(self, letter: dict[str, str]) -> None:
        self.sent.append(letter["to"])


def test_a_message_sent_straight_to_a_queue_channel_is_delayed_by_its_header():
    mailroom = Mailroom()
    clock = ecopy.ControlledClock(START)
    app = ecopy.bootstrap(
        classes=[Mailroom],
        services=[mailroom, clock],
        config=ecopy.ServiceConfiguration(extensions=[QueueChannel("outgoing")]),
    )
    app.channel("outgoing").send(Message({"to": "gus"}, {DELIVERY_DELAY: 30}))

    assert app.run("outgoing", finish_when_no_messages=True) == 0
    clock.advance(timedelta(seconds=30))
    assert app.run("outgoing", finish_when_no_messages=True) == 1
    assert mailroom.sent == ["gus"]
