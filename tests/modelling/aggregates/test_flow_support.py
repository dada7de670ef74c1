"""Flow testing of aggregates and sagas (DESIGN §3.7): ``get_aggregate``, ``get_saga``, given
history with ``with_events_for`` and given state with ``with_state_for`` — neither of which is
recorded — and recorded events that include what aggregates publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import pytest

from ecopy import (
    AggregateNotFound,
    AggregateVersion,
    Identifier,
    WithEvents,
    aggregate,
    command_handler,
    event_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
    saga,
)
from ecopy.messaging.naming import type_name
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class AccountOpened:
    account_id: str
    owner: str


@dataclass(frozen=True)
class MoneyDeposited:
    account_id: str
    amount: int


@dataclass
class Deposit:
    account_id: str
    amount: int


@event_sourcing_aggregate
@dataclass
class Account:
    account_id: Annotated[str, Identifier]
    owner: str = ""
    balance: int = 0
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    def deposit(self, command: Deposit) -> list[object]:
        return [MoneyDeposited(self.account_id, command.amount)]

    @event_sourcing_handler
    def on_opened(self, event: AccountOpened) -> None:
        self.account_id, self.owner = event.account_id, event.owner

    @event_sourcing_handler
    def on_deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount


@dataclass
class Rename:
    profile_id: str
    name: str


@dataclass(frozen=True)
class Renamed:
    profile_id: str
    name: str


@aggregate
@dataclass
class Profile(WithEvents):
    profile_id: Annotated[str, Identifier]
    name: str
    aliases: list[str] = field(default_factory=list)
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    def rename(self, command: Rename) -> None:
        self.aliases.append(self.name)
        self.name = command.name
        self.record_that(Renamed(self.profile_id, command.name))


@saga
@dataclass
class Welcome:
    account_id: Annotated[str, Identifier]
    deposits: int = 0

    @event_handler
    @classmethod
    def start(cls, event: AccountOpened) -> Welcome:
        return cls(event.account_id)

    @event_handler(drop_message_on_not_found=True)
    def on_deposit(self, event: MoneyDeposited) -> None:
        self.deposits += 1


@pytest.fixture
def flow():
    return bootstrap_flow_testing(classes=[Account, Profile, Welcome])


def test_with_events_for_gives_an_aggregate_a_history_that_is_not_recorded(flow):
    flow.with_events_for(Account, "a-1", [AccountOpened("a-1", "ann"), MoneyDeposited("a-1", 10)])

    account = flow.get_aggregate(Account, "a-1")
    assert (account.owner, account.balance, account.version) == ("ann", 10, 2)
    assert flow.get_recorded_events() == []


def test_with_events_for_does_not_trigger_event_handlers(flow):
    flow.with_events_for(Account, "a-1", [AccountOpened("a-1", "ann")])

    with pytest.raises(AggregateNotFound):
        flow.get_saga(Welcome, "a-1")


def test_commands_on_a_given_history_continue_its_versions_and_are_recorded(flow):
    flow.with_events_for(Account, "a-1", [AccountOpened("a-1", "ann"), MoneyDeposited("a-1", 10)])

    flow.send_command(Deposit("a-1", 5))

    assert flow.get_recorded_events() == [MoneyDeposited("a-1", 5)]
    assert flow.get_recorded_event_headers()[0]["aggregate.version"] == 3
    assert flow.get_aggregate(Account, "a-1").balance == 15


def test_with_events_for_appends_to_an_existing_history(flow):
    flow.with_events_for(Account, "a-1", [AccountOpened("a-1", "ann")])
    flow.with_events_for(Account, "a-1", [MoneyDeposited("a-1", 7)])

    stored = flow.system.aggregates.event_store.load(type_name(Account), "a-1")
    assert [(e.version, e.payload) for e in stored] == [
        (1, AccountOpened("a-1", "ann")),
        (2, MoneyDeposited("a-1", 7)),
    ]
    assert flow.get_aggregate(Account, "a-1").balance == 7


def test_with_events_for_refuses_a_state_stored_aggregate(flow):
    with pytest.raises(TypeError, match="with_state_for"):
        flow.with_events_for(Profile, "p-1", [Renamed("p-1", "x")])


def test_with_state_for_stores_a_state_stored_aggregate_as_given_without_publishing(flow):
    flow.with_state_for(Profile("p-1", "ann"))

    assert flow.get_aggregate(Profile, "p-1").name == "ann"
    assert flow.get_recorded_events() == []

    flow.send_command(Rename("p-1", "anna"))

    profile = flow.get_aggregate(Profile, "p-1")
    assert (profile.name, profile.aliases, profile.version) == ("anna", ["ann"], 2)
    assert flow.get_recorded_events() == [Renamed("p-1", "anna")]


def test_with_state_for_replaces_a_stored_aggregate(flow):
    flow.with_state_for(Profile("p-1", "ann")).with_state_for(Profile("p-1", "bea"))

    profile = flow.get_aggregate(Profile, "p-1")
    assert (profile.name, profile.version) == ("bea", 2)


def test_with_state_for_gives_a_saga_its_state(flow):
    flow.with_state_for(Welcome("a-1", deposits=2))

    flow.publish_event(MoneyDeposited("a-1", 1))

    assert flow.get_saga(Welcome, "a-1").deposits == 3


def test_get_aggregate_and_get_saga_raise_for_what_does_not_exist(flow):
    with pytest.raises(AggregateNotFound, match="Account"):
        flow.get_aggregate(Account, "missing")
    with pytest.raises(AggregateNotFound, match="Welcome"):
        flow.get_saga(Welcome, "missing")


def test_recorded_events_include_what_aggregates_publish_with_the_events_published_directly(flow):
    flow.publish_event(AccountOpened("a-1", "ann"))
    flow.with_events_for(Account, "a-1", [AccountOpened("a-1", "ann")])
    flow.send_command(Deposit("a-1", 3))

    assert flow.get_recorded_events() == [AccountOpened("a-1", "ann"), MoneyDeposited("a-1", 3)]
    assert flow.get_saga(Welcome, "a-1").deposits == 1

    flow.discard_recorded_messages()
    assert flow.get_recorded_events() == []


def test_events_recorded_by_a_given_state_are_never_published(flow):
    profile = Profile("p-1", "ann")
    profile.record_that(Renamed("p-1", "ann"))
    flow.with_state_for(profile)

    flow.send_command(Rename("p-1", "anna"))

    assert flow.get_recorded_events() == [Renamed("p-1", "anna")]
