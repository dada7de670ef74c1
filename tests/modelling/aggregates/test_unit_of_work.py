"""In memory, a failed command leaves nothing behind (DESIGN §3.7): the events it appended, the
aggregates and sagas it saved and the messages it sent go with it, exactly as a rolled-back
database transaction — so a flow test sees what production sees."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated

import pytest

from ecopy import (
    AggregateNotFound,
    CommandBus,
    Identifier,
    QueueChannel,
    aggregate,
    asynchronous,
    command_handler,
    event_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class OpenAccount:
    account_id: str


@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@event_sourcing_aggregate
@dataclass
class Account:
    account_id: Annotated[str, Identifier] = ""

    @command_handler
    @staticmethod
    def open(command: OpenAccount) -> list[object]:
        return [AccountOpened(command.account_id)]

    @event_sourcing_handler
    def on_opened(self, event: AccountOpened) -> None:
        self.account_id = event.account_id


@dataclass(frozen=True)
class CreateCard:
    card_id: str


@aggregate
@dataclass
class Card:
    card_id: Annotated[str, Identifier]

    @command_handler
    @classmethod
    def create(cls, command: CreateCard) -> Card:
        return cls(command.card_id)


@dataclass(frozen=True)
class Onboard:
    customer: str
    fail: bool = True


class Onboarding:
    def __init__(self) -> None:
        self.welcomed: list[str] = []

    @command_handler
    def onboard(self, command: Onboard, commands: CommandBus) -> None:
        commands.send(OpenAccount(f"acc-{command.customer}"))
        commands.send(CreateCard(f"card-{command.customer}"))
        if command.fail:
            raise PermissionError(f"{command.customer} failed the checks")

    @asynchronous("welcome")
    @event_handler(endpoint_id="welcome")
    def welcome(self, event: AccountOpened) -> None:
        self.welcomed.append(event.account_id)


@pytest.fixture
def flow():
    onboarding = Onboarding()
    flow = bootstrap_flow_testing(
        classes=[Account, Card, Onboarding],
        services=[onboarding],
        enable_asynchronous_processing=[QueueChannel("welcome")],
    )
    return flow, onboarding


def test_a_failed_command_leaves_no_event_no_aggregate_and_no_message(flow):
    flow, onboarding = flow

    with pytest.raises(PermissionError):
        flow.send_command(Onboard("ann"))

    with pytest.raises(AggregateNotFound):
        flow.get_aggregate(Account, "acc-ann")
    with pytest.raises(AggregateNotFound):
        flow.get_aggregate(Card, "card-ann")
    assert len(flow.system.channel("welcome")) == 0
    # Nothing half-done blocks a new attempt (no "already exists", no stale version).
    flow.send_command(Onboard("ann", fail=False)).run("welcome")
    assert flow.get_aggregate(Card, "card-ann").card_id == "card-ann"
    assert onboarding.welcomed == ["acc-ann"]


def test_a_nested_failure_caught_by_its_caller_keeps_the_writes_that_committed_with_it(flow):
    """As in a database transaction that the nested command joined: catching the error does
    not roll anything back; only the outermost command's failure does."""
    flow, _ = flow

    class Careful:
        @command_handler("onboard.carefully")
        def onboard(self, commands: CommandBus) -> None:
            with contextlib.suppress(PermissionError):
                commands.send(Onboard("bob"))

    careful = bootstrap_flow_testing(classes=[Account, Card, Onboarding, Careful])
    careful.send_command_with_routing("onboard.carefully")

    assert careful.get_aggregate(Account, "acc-bob").account_id == "acc-bob"
