"""Flow testing (DESIGN §3.7): drive the real application and observe its messages."""

from dataclasses import dataclass

import pytest

from ecopy import (
    CommandBus,
    EcopyError,
    EventBus,
    QueryBus,
    QueueChannel,
    command_handler,
    event_handler,
    internal_handler,
    query_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class OpenAccount:
    account_id: str


@dataclass
class AccountOpened:
    account_id: str


@dataclass
class WelcomeSent:
    account_id: str


@dataclass
class GetAccounts:
    pass


class Accounts:
    def __init__(self) -> None:
        self.opened: list[str] = []

    @command_handler
    def open(self, command: OpenAccount, events: EventBus) -> str:
        self.opened.append(command.account_id)
        events.publish(AccountOpened(command.account_id), headers={"channel": "web"})
        return command.account_id

    @command_handler("account.close")
    def close(self, account_id: str) -> None:
        self.opened.remove(account_id)

    @query_handler
    def list(self, query: GetAccounts) -> list[str]:
        return list(self.opened)

    @event_handler
    def welcome(self, event: AccountOpened, events: EventBus) -> None:
        events.publish(WelcomeSent(event.account_id))


@pytest.fixture
def flow():
    return bootstrap_flow_testing(classes=[Accounts])


def test_calls_chain_and_queries_return_answers(flow):
    accounts = (
        flow.send_command(OpenAccount("a-1"))
        .send_command_with_routing("account.close", "a-1")
        .send_command(OpenAccount("a-2"))
        .send_query(GetAccounts())
    )

    assert accounts == ["a-2"]
    assert flow.send_query_with_routing(f"{GetAccounts.__module__}.GetAccounts", {}) == ["a-2"]


def test_recorded_events_are_every_event_published_in_order(flow):
    flow.send_command(OpenAccount("a-1")).publish_event(AccountOpened("a-2"))

    assert flow.get_recorded_events() == [
        AccountOpened("a-1"),
        WelcomeSent("a-1"),
        AccountOpened("a-2"),
        WelcomeSent("a-2"),
    ]


def test_recorded_commands_and_headers(flow):
    flow.send_command(OpenAccount("a-1"), headers={"user": "u-1"})
    flow.send_command_with_routing("account.close", "a-1")

    assert flow.get_recorded_commands() == [OpenAccount("a-1"), "a-1"]
    assert flow.get_recorded_command_headers()[0]["user"] == "u-1"
    opened, welcome = flow.get_recorded_event_headers()
    assert opened["channel"] == "web"
    assert opened["user"] == "u-1"
    assert welcome["user"] == "u-1"
    assert welcome["parent_id"] == opened["id"]


def test_publish_event_with_routing_is_recorded_too(flow):
    flow.publish_event_with_routing("account.audited", {"account_id": "a-1"}, headers={"x": 1})

    assert flow.get_recorded_events() == [{"account_id": "a-1"}]
    assert flow.get_recorded_event_headers()[0]["x"] == 1


def test_discard_forgets_what_was_recorded_so_far(flow):
    flow.send_command(OpenAccount("a-1"))

    flow.discard_recorded_messages().send_command(OpenAccount("a-2"))

    assert flow.get_recorded_commands() == [OpenAccount("a-2")]
    assert flow.get_recorded_events() == [AccountOpened("a-2"), WelcomeSent("a-2")]
    assert flow.discard_recorded_messages().get_recorded_events() == []


def test_the_buses_are_the_applications_buses(flow):
    assert isinstance(flow.command_bus, CommandBus)
    assert isinstance(flow.event_bus, EventBus)
    assert isinstance(flow.query_bus, QueryBus)

    assert flow.command_bus.send(OpenAccount("a-1")) == "a-1"
    flow.event_bus.publish(AccountOpened("a-2"))

    assert flow.query_bus.send(GetAccounts()) == ["a-1"]
    assert flow.get_recorded_commands() == [OpenAccount("a-1")]
    assert AccountOpened("a-2") in flow.get_recorded_events()


def test_a_failing_command_propagates_out_of_the_flow(flow):
    with pytest.raises(ValueError):
        flow.send_command_with_routing("account.close", "never-opened")


def test_running_an_unknown_consumer_is_an_error(flow):
    with pytest.raises(EcopyError, match="nope"):
        flow.run("nope")


class Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    @command_handler("mail", output_channel="outbox")
    def mail(self, to: str) -> str:
        return to

    @internal_handler("outbox")
    def deliver(self, to: str) -> None:
        self.sent.append(to)


def test_enable_asynchronous_processing_declares_queue_channels():
    mailer = Mailer()
    flow = bootstrap_flow_testing(
        classes=[Mailer],
        services=[mailer],
        enable_asynchronous_processing=[QueueChannel("outbox")],
    )

    flow.send_command_with_routing("mail", "ada@example.com")
    assert mailer.sent == []

    flow.run("outbox")
    assert mailer.sent == ["ada@example.com"]


def test_messages_are_stamped_by_the_application_clock_so_a_flow_test_sees_time_move():
    from datetime import UTC, datetime, timedelta

    from ecopy import EventBus, Message, command_handler, event_handler
    from ecopy.testing import bootstrap_flow_testing

    class Stamps:
        def __init__(self) -> None:
            self.seen: list[float] = []

        @command_handler("stamp")
        def stamp(self, events: EventBus, message: Message) -> None:
            self.seen.append(message.timestamp)
            events.publish_with_routing("stamped")

        @event_handler(listen_to="stamped")
        def stamped(self, message: Message) -> None:
            self.seen.append(message.timestamp)

    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    stamps = Stamps()
    flow = bootstrap_flow_testing(classes=[Stamps], services=[stamps], start_time=start)

    flow.send_command_with_routing("stamp")
    flow.advance_time(timedelta(minutes=5)).send_command_with_routing("stamp")

    minutes = [(at - start.timestamp()) / 60 for at in stamps.seen]
    assert minutes == [0, 0, 5, 5]
    assert flow.get_recorded_event_headers()[-1]["timestamp"] == start.timestamp() + 300
