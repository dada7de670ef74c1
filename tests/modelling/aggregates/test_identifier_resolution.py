"""Which aggregate a command is for (DESIGN §3.4): the ``aggregate.id`` header, a payload field
named like the identifier or marked ``TargetIdentifier``, ``identifier_metadata_mapping`` and
``identifier_mapping`` paths; composite identifiers; not-found handling; a factory and an
action for the same command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest
from pydantic import BaseModel

from ecopy import (
    AggregateNotFound,
    Identifier,
    TargetIdentifier,
    WithEvents,
    aggregate,
    command_handler,
    event_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class OpenAccount:
    account_id: str


@dataclass
class Deposit:
    account_id: str
    amount: int


@dataclass
class DepositByHeader:
    amount: int


@dataclass
class DepositTo:
    account: Annotated[str, TargetIdentifier("account_id")]
    amount: int


@dataclass
class Target:
    id: str


@dataclass
class Transfer:
    target: Target
    amount: int


@dataclass
class Refund:
    reference: str
    amount: int


@dataclass
class Correction:
    account_id: str
    amount: int


@dataclass
class Bonus:
    account_id: str
    amount: int


@aggregate
@dataclass
class Account:
    account_id: Annotated[str, Identifier]
    balance: int = 0

    @command_handler
    @classmethod
    def open(cls, command: OpenAccount) -> Account:
        return cls(command.account_id)

    @command_handler
    def deposit(self, command: Deposit) -> int:
        self.balance += command.amount
        return self.balance

    @command_handler
    def deposit_by_header(self, command: DepositByHeader) -> int:
        self.balance += command.amount
        return self.balance

    @command_handler
    def deposit_to(self, command: DepositTo) -> int:
        self.balance += command.amount
        return self.balance

    @command_handler(identifier_mapping={"account_id": "payload.target.id"})
    def transfer(self, command: Transfer) -> int:
        self.balance += command.amount
        return self.balance

    @command_handler(identifier_mapping={"account_id": "payload.reference"})
    def refund(self, command: Refund) -> int:
        self.balance += command.amount
        return self.balance

    @command_handler(identifier_mapping={"account_id": "headers.account"})
    def correct(self, command: Correction) -> int:
        self.balance += command.amount
        return self.balance

    @command_handler(identifier_metadata_mapping={"account_id": "x-account"})
    def bonus(self, command: Bonus) -> int:
        self.balance += command.amount
        return self.balance

    @command_handler("account.withdraw")
    def withdraw(self, payload: dict) -> int:
        self.balance -= payload["amount"]
        return self.balance


@pytest.fixture
def flow():
    flow = bootstrap_flow_testing(classes=[Account])
    flow.send_command(OpenAccount("a-1")).send_command(OpenAccount("a-2"))
    return flow


def balances(flow) -> tuple[int, int]:
    return (flow.get_aggregate(Account, "a-1").balance, flow.get_aggregate(Account, "a-2").balance)


def test_a_payload_field_named_like_the_identifier_selects_the_aggregate(flow):
    assert flow.command_bus.send(Deposit("a-2", 5)) == 5
    assert balances(flow) == (0, 5)


def test_the_aggregate_id_header_selects_the_aggregate(flow):
    assert flow.command_bus.send(DepositByHeader(7), headers={"aggregate.id": "a-2"}) == 7
    assert balances(flow) == (0, 7)


def test_the_aggregate_id_header_comes_before_the_payload_field(flow):
    flow.send_command(Deposit("a-1", 3), headers={"aggregate.id": "a-2"})

    assert balances(flow) == (0, 3)


def test_a_payload_field_marked_target_identifier_selects_the_aggregate(flow):
    assert flow.command_bus.send(DepositTo(account="a-2", amount=4)) == 4
    assert balances(flow) == (0, 4)


def test_identifier_mapping_reads_a_nested_payload_path(flow):
    assert flow.command_bus.send(Transfer(Target("a-2"), 9)) == 9
    assert balances(flow) == (0, 9)


def test_identifier_mapping_reads_a_payload_field_with_another_name(flow):
    assert flow.command_bus.send(Refund("a-1", 2)) == 2
    assert balances(flow) == (2, 0)


def test_identifier_mapping_reads_a_header(flow):
    assert flow.command_bus.send(Correction("a-1", 6), headers={"account": "a-2"}) == 6
    assert balances(flow) == (0, 6)


def test_identifier_metadata_mapping_reads_a_header(flow):
    assert flow.command_bus.send(Bonus("a-1", 8), headers={"x-account": "a-2"}) == 8
    assert balances(flow) == (0, 8)


def test_an_explicit_mapping_wins_over_the_aggregate_id_header(flow):
    """Deliberate: a handler that maps its identifier says where it is; a stray (or
    propagated) ``aggregate.id`` header must not redirect it."""
    flow.send_command(Refund("a-1", 1), headers={"aggregate.id": "a-2"})
    flow.send_command(Bonus("a-2", 10), headers={"x-account": "a-1", "aggregate.id": "a-2"})
    flow.send_command(Transfer(Target("a-1"), 100), headers={"aggregate.id": "a-2"})

    assert balances(flow) == (111, 0)


def test_a_command_sent_by_routing_key_with_a_dict_payload_finds_its_aggregate(flow):
    assert flow.command_bus.send_with_routing(
        "account.withdraw", {"account_id": "a-2", "amount": 3}
    ) == (-3)
    assert balances(flow) == (0, -3)


def test_an_action_for_a_missing_aggregate_raises_aggregate_not_found(flow):
    with pytest.raises(AggregateNotFound) as raised:
        flow.send_command(Deposit("nobody", 5))

    assert raised.value.identifier == "nobody"
    assert raised.value.aggregate == "Account"
    assert "Account.deposit" in str(raised.value)


# -- composite identifiers ------------------------------------------------------------------


@dataclass
class RegisterSeat:
    venue: str
    seat: int
    holder: str


@dataclass
class ReleaseSeat:
    venue: str
    seat: int


@aggregate
@dataclass
class Seat:
    venue: Annotated[str, Identifier]
    seat: Annotated[int, Identifier]
    holder: str | None = None

    @command_handler
    @classmethod
    def register(cls, command: RegisterSeat) -> Seat:
        return cls(command.venue, command.seat, command.holder)

    @command_handler
    def release(self, command: ReleaseSeat) -> str | None:
        previous, self.holder = self.holder, None
        return previous


def test_a_composite_identifier_is_returned_as_a_dict_and_selects_by_every_part():
    flow = bootstrap_flow_testing(classes=[Seat])

    assert flow.command_bus.send(RegisterSeat("hall", 1, "ann")) == {"venue": "hall", "seat": 1}
    flow.send_command(RegisterSeat("hall", 2, "bob")).send_command(RegisterSeat("club", 1, "cy"))

    assert flow.command_bus.send(ReleaseSeat("hall", 2)) == "bob"
    assert flow.get_aggregate(Seat, {"venue": "hall", "seat": 2}).holder is None
    assert flow.get_aggregate(Seat, {"venue": "hall", "seat": 1}).holder == "ann"
    assert flow.get_aggregate(Seat, {"venue": "club", "seat": 1}).holder == "cy"


def test_a_composite_identifier_can_come_from_the_aggregate_id_header_as_a_dict():
    flow = bootstrap_flow_testing(classes=[Seat])
    flow.send_command(RegisterSeat("hall", 1, "ann")).send_command(RegisterSeat("hall", 2, "bob"))

    released = flow.command_bus.send(
        ReleaseSeat("hall", 1), headers={"aggregate.id": {"venue": "hall", "seat": 2}}
    )

    assert released == "bob"
    assert flow.get_aggregate(Seat, {"venue": "hall", "seat": 1}).holder == "ann"


# -- not found: dropping, or creating --------------------------------------------------------


@dataclass
class Ping:
    device_id: str


@dataclass
class Heartbeat:
    device_id: str


@aggregate
@dataclass
class Device:
    device_id: Annotated[str, Identifier]
    pings: int = 0
    created_by: str = ""

    @command_handler(drop_message_on_not_found=True)
    def ping(self, command: Ping) -> str:
        self.pings += 1
        return "pinged"

    @command_handler
    @classmethod
    def first_heartbeat(cls, command: Heartbeat) -> Device:
        return cls(command.device_id, created_by="factory")

    @command_handler
    def next_heartbeat(self, command: Heartbeat) -> str:
        self.pings += 1
        return "action"


def test_drop_message_on_not_found_ignores_a_command_for_a_missing_aggregate():
    flow = bootstrap_flow_testing(classes=[Device])

    assert flow.command_bus.send(Ping("ghost")) is None

    with pytest.raises(AggregateNotFound):
        flow.get_aggregate(Device, "ghost")


def test_drop_message_on_not_found_still_handles_an_existing_aggregate():
    flow = bootstrap_flow_testing(classes=[Device])
    flow.send_command(Heartbeat("d-1"))

    assert flow.command_bus.send(Ping("d-1")) == "pinged"
    assert flow.get_aggregate(Device, "d-1").pings == 1


def test_with_a_factory_and_an_action_for_one_command_the_factory_runs_first_then_the_action():
    flow = bootstrap_flow_testing(classes=[Device])

    assert flow.command_bus.send(Heartbeat("d-1")) == "d-1"
    assert flow.command_bus.send(Heartbeat("d-1")) == "action"
    assert flow.command_bus.send(Heartbeat("d-1")) == "action"

    device = flow.get_aggregate(Device, "d-1")
    assert (device.created_by, device.pings) == ("factory", 2)


# -- events from one aggregate to another of the same type --------------------------------------


@dataclass
class OpenPurse:
    purse_id: str
    balance: int


@dataclass
class SendMoney:
    purse_id: str
    to: str
    amount: int


@dataclass(frozen=True)
class MoneySent:
    sender: str
    to: Annotated[str, TargetIdentifier("purse_id")]
    amount: int


@aggregate
@dataclass
class Purse(WithEvents):
    purse_id: Annotated[str, Identifier]
    balance: int = 0

    @command_handler
    @classmethod
    def open(cls, command: OpenPurse) -> Purse:
        return cls(command.purse_id, command.balance)

    @command_handler
    def send(self, command: SendMoney) -> None:
        self.balance -= command.amount
        self.record_that(MoneySent(self.purse_id, command.to, command.amount))

    @event_handler
    def receive(self, event: MoneySent) -> None:
        self.balance += event.amount


def test_an_event_published_by_one_aggregate_reaches_the_one_its_target_field_names():
    flow = bootstrap_flow_testing(classes=[Purse])
    flow.send_command(OpenPurse("alice", 100)).send_command(OpenPurse("bob", 0))

    flow.send_command(SendMoney("alice", to="bob", amount=30))

    assert flow.get_aggregate(Purse, "alice").balance == 70
    assert flow.get_aggregate(Purse, "bob").balance == 30


class RenameProduct(BaseModel):
    sku: str
    name: str


@aggregate
@dataclass
class CatalogueProduct:
    sku: Annotated[str, Identifier]
    name: str = ""

    @command_handler("product.create")
    @staticmethod
    def create(command: RenameProduct) -> CatalogueProduct:
        return CatalogueProduct(command.sku, command.name)

    @command_handler("product.rename")
    def rename(self, command: RenameProduct) -> None:
        self.name = command.name


def test_an_action_finds_its_identifier_in_a_json_text_payload():
    flow = bootstrap_flow_testing(classes=[CatalogueProduct])
    flow.command_bus.send_with_routing("product.create", '{"sku": "p-1", "name": "Kettle"}')
    flow.command_bus.send_with_routing("product.rename", '{"sku": "p-1", "name": "Mug"}')

    assert flow.get_aggregate(CatalogueProduct, "p-1").name == "Mug"
