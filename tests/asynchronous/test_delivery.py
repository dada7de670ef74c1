"""Delivery options on the test clock (DESIGN §3.5, §3.7): ``@delayed``, ``@time_to_live`` and
``@priority`` set when, whether and in which order a handler's message is delivered;
``flow.run`` processes only what is due by the test clock."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ecopy import (
    ControlledClock,
    QueueChannel,
    asynchronous,
    command_handler,
    delayed,
    priority,
    time_to_live,
)
from ecopy.testing import bootstrap_flow_testing

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SendReminder:
    order_id: str


@dataclass(frozen=True)
class SendSurvey:
    order_id: str


@dataclass(frozen=True)
class CloseYear:
    year: int


@dataclass(frozen=True)
class ArchiveOrder:
    order_id: str


class Reminders:
    def __init__(self) -> None:
        self.done: list[str] = []

    @asynchronous("reminders")
    @delayed(30)
    @command_handler
    def remind(self, command: SendReminder) -> None:
        self.done.append(f"reminded {command.order_id}")

    @delayed(timedelta(hours=1))
    @asynchronous("reminders")
    @command_handler
    def survey(self, command: SendSurvey) -> None:
        self.done.append(f"surveyed {command.order_id}")

    @asynchronous("reminders")
    @delayed(datetime(2027, 1, 1, tzinfo=UTC))
    @command_handler
    def close_year(self, command: CloseYear) -> None:
        self.done.append(f"closed {command.year}")

    @asynchronous("reminders")
    @delayed(datetime(2020, 1, 1, tzinfo=UTC))
    @command_handler
    def archive(self, command: ArchiveOrder) -> None:
        self.done.append(f"archived {command.order_id}")


def reminders_flow(reminders: Reminders):
    return bootstrap_flow_testing(
        classes=[Reminders],
        services=[reminders],
        enable_asynchronous_processing=[QueueChannel("reminders")],
        start_time=START,
    )


# -- @delayed ----------------------------------------------------------------------------


def test_a_delayed_message_is_not_handled_before_it_is_due():
    reminders = Reminders()
    flow = reminders_flow(reminders)
    flow.send_command(SendReminder("o-1"))

    flow.run("reminders")
    flow.advance_time(timedelta(seconds=29)).run("reminders")
    assert reminders.done == []

    flow.advance_time(timedelta(seconds=1)).run("reminders")
    assert reminders.done == ["reminded o-1"]


def test_a_delay_can_be_a_timedelta():
    reminders = Reminders()
    flow = reminders_flow(reminders)
    flow.send_command(SendSurvey("o-1"))

    flow.advance_time(timedelta(minutes=59)).run("reminders")
    assert reminders.done == []

    flow.advance_time(timedelta(minutes=1)).run("reminders")
    assert reminders.done == ["surveyed o-1"]


def test_a_delay_can_be_a_moment():
    reminders = Reminders()
    flow = reminders_flow(reminders)
    flow.send_command(CloseYear(2026))

    flow.change_time_to(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)).run("reminders")
    assert reminders.done == []

    flow.change_time_to(datetime(2027, 1, 1, tzinfo=UTC)).run("reminders")
    assert reminders.done == ["closed 2026"]


def test_a_moment_in_the_past_is_due_at_once():
    reminders = Reminders()
    flow = reminders_flow(reminders)

    flow.send_command(ArchiveOrder("o-1")).run("reminders")

    assert reminders.done == ["archived o-1"]


def test_the_delay_counts_from_when_the_message_is_sent_by_the_test_clock():
    reminders = Reminders()
    flow = reminders_flow(reminders)
    flow.advance_time(timedelta(days=3)).send_command(SendReminder("o-1"))

    flow.advance_time(timedelta(seconds=29)).run("reminders")
    assert reminders.done == []

    flow.advance_time(timedelta(seconds=1)).run("reminders")
    assert reminders.done == ["reminded o-1"]


def test_flow_run_handles_what_is_due_and_leaves_what_is_not():
    reminders = Reminders()
    flow = reminders_flow(reminders)
    flow.send_command(SendSurvey("o-1")).send_command(SendReminder("o-2"))
    flow.send_command(ArchiveOrder("o-3"))

    flow.advance_time(timedelta(seconds=30)).run("reminders")

    assert sorted(reminders.done) == ["archived o-3", "reminded o-2"]
    assert len(flow.system.channel("reminders")) == 1


def test_an_application_with_a_controlled_clock_delays_by_that_clock():
    import ecopy

    reminders = Reminders()
    clock = ControlledClock(START)
    app = ecopy.bootstrap(
        classes=[Reminders],
        services=[reminders, clock],
        config=ecopy.ServiceConfiguration(extensions=[QueueChannel("reminders")]),
    )
    app.command_bus.send(SendReminder("o-1"))

    assert app.run("reminders", finish_when_no_messages=True) == 0
    clock.advance(30)
    assert app.run("reminders", finish_when_no_messages=True) == 1
    assert reminders.done == ["reminded o-1"]


# -- @time_to_live -----------------------------------------------------------------------


@dataclass(frozen=True)
class OfferDiscount:
    customer_id: str


class Offers:
    def __init__(self) -> None:
        self.offered: list[str] = []

    @asynchronous("offers")
    @time_to_live(60)
    @command_handler
    def offer(self, command: OfferDiscount) -> None:
        self.offered.append(command.customer_id)


def offers_flow(offers: Offers):
    return bootstrap_flow_testing(
        classes=[Offers],
        services=[offers],
        enable_asynchronous_processing=[QueueChannel("offers")],
        start_time=START,
    )


def test_a_message_past_its_time_to_live_is_dropped_and_logged(caplog):
    offers = Offers()
    flow = offers_flow(offers)
    flow.send_command(OfferDiscount("c-1"))

    with caplog.at_level(logging.WARNING, logger="ecopy"):
        flow.advance_time(timedelta(seconds=61)).run("offers")

    assert offers.offered == []
    assert len(flow.system.channel("offers")) == 0
    assert flow.dead_letter.count() == 0
    [dropped] = [r for r in caplog.records if "expired" in r.getMessage()]
    assert dropped.levelno == logging.WARNING
    assert "offers" in dropped.getMessage()
    assert "c-1" in dropped.getMessage()


def test_a_message_within_its_time_to_live_is_handled(caplog):
    offers = Offers()
    flow = offers_flow(offers)
    flow.send_command(OfferDiscount("c-1"))

    with caplog.at_level(logging.WARNING, logger="ecopy"):
        flow.advance_time(timedelta(seconds=59)).run("offers")

    assert offers.offered == ["c-1"]
    assert not [r for r in caplog.records if "expired" in r.getMessage()]


class LateOffers:
    def __init__(self) -> None:
        self.offered: list[str] = []

    @asynchronous("offers")
    @delayed(timedelta(hours=1))
    @time_to_live(timedelta(minutes=10))
    @command_handler
    def offer(self, command: OfferDiscount) -> None:
        self.offered.append(command.customer_id)


def test_the_time_to_live_of_a_delayed_message_counts_from_when_it_is_due():
    offers = LateOffers()
    flow = bootstrap_flow_testing(
        classes=[LateOffers],
        services=[offers],
        enable_asynchronous_processing=[QueueChannel("offers")],
        start_time=START,
    )
    flow.send_command(OfferDiscount("c-1"))

    flow.advance_time(timedelta(hours=1, minutes=5)).run("offers")

    assert offers.offered == ["c-1"]


# -- @priority ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShipExpress:
    order_id: str


@dataclass(frozen=True)
class ShipStandard:
    order_id: str


@dataclass(frozen=True)
class ShipFreight:
    order_id: str


class Dispatch:
    def __init__(self) -> None:
        self.shipped: list[str] = []

    @asynchronous("dispatch")
    @priority(10)
    @command_handler
    def express(self, command: ShipExpress) -> None:
        self.shipped.append(command.order_id)

    @asynchronous("dispatch")
    @command_handler
    def standard(self, command: ShipStandard) -> None:
        self.shipped.append(command.order_id)

    @priority(-5)
    @asynchronous("dispatch")
    @command_handler
    def freight(self, command: ShipFreight) -> None:
        self.shipped.append(command.order_id)


@pytest.mark.parametrize("delay", [0, 45], ids=["ready", "after-a-delay"])
def test_higher_priority_messages_are_handled_first_and_fifo_within_a_priority(delay):
    dispatch = Dispatch()
    flow = bootstrap_flow_testing(
        classes=[Dispatch],
        services=[dispatch],
        enable_asynchronous_processing=[QueueChannel("dispatch")],
    )
    flow.send_command(ShipFreight("freight-1")).send_command(ShipStandard("standard-1"))
    flow.send_command(ShipExpress("express-1")).send_command(ShipStandard("standard-2"))
    flow.send_command(ShipFreight("freight-2")).send_command(ShipExpress("express-2"))

    flow.advance_time(delay).run("dispatch")

    assert dispatch.shipped == [
        "express-1",
        "express-2",
        "standard-1",
        "standard-2",
        "freight-1",
        "freight-2",
    ]
