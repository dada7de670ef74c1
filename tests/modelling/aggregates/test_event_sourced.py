"""Event-sourced aggregates (DESIGN §3.4): handlers return events, ``@event_sourcing_handler``
methods apply them, the aggregate is rebuilt from its stream, events carry the aggregate
headers, and snapshots shorten loading without changing the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from ecopy import (
    AggregateNotFound,
    AggregateVersion,
    Identifier,
    InMemoryEventStore,
    command_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
)
from ecopy.messaging.naming import type_name
from ecopy.testing import bootstrap_flow_testing


@dataclass
class OpenWallet:
    wallet_id: str
    owner: str


@dataclass
class TopUp:
    wallet_id: str
    amounts: list[int]


@dataclass
class Spend:
    wallet_id: str
    amount: int


@dataclass(frozen=True)
class WalletOpened:
    wallet_id: str
    owner: str


@dataclass(frozen=True)
class ToppedUp:
    wallet_id: str
    amount: int


@dataclass(frozen=True)
class Spent:
    wallet_id: str
    amount: int


@event_sourcing_aggregate
class Wallet:
    """Hand-written, with a no-argument constructor."""

    wallet_id: Annotated[str, Identifier]
    version: Annotated[int, AggregateVersion]

    def __init__(self) -> None:
        self.wallet_id = ""
        self.owner = ""
        self.balance = 0
        self.version = 0
        self.applied = 0

    @command_handler
    @classmethod
    def open(cls, command: OpenWallet) -> list[object]:
        return [WalletOpened(command.wallet_id, command.owner)]

    @command_handler
    def top_up(self, command: TopUp) -> list[object]:
        return [ToppedUp(self.wallet_id, amount) for amount in command.amounts]

    @command_handler
    def spend(self, command: Spend) -> tuple[object, ...]:
        if command.amount > self.balance:
            return ()
        return (Spent(self.wallet_id, command.amount),)

    @event_sourcing_handler
    def on_opened(self, event: WalletOpened) -> None:
        self.wallet_id, self.owner = event.wallet_id, event.owner
        self.applied += 1

    @event_sourcing_handler
    def on_topped_up(self, event: ToppedUp) -> None:
        self.balance += event.amount
        self.applied += 1

    @event_sourcing_handler
    def on_spent(self, event: Spent) -> None:
        self.balance -= event.amount
        self.applied += 1


WALLET_STREAM = type_name(Wallet)


@pytest.fixture
def flow():
    return bootstrap_flow_testing(classes=[Wallet])


def stored_events(flow, stream: str, aggregate_id: str) -> list[Any]:
    return flow.system.aggregates.event_store.load(stream, aggregate_id)


def test_a_factory_stores_its_events_and_the_bus_returns_the_new_identifier(flow):
    assert flow.command_bus.send(OpenWallet("w-1", "ann")) == "w-1"

    events = stored_events(flow, WALLET_STREAM, "w-1")
    assert [(e.version, e.payload) for e in events] == [(1, WalletOpened("w-1", "ann"))]
    assert flow.get_recorded_events() == [WalletOpened("w-1", "ann")]


def test_an_action_returns_none_from_the_bus_and_its_events_are_stored_and_published(flow):
    flow.send_command(OpenWallet("w-1", "ann"))

    assert flow.command_bus.send(TopUp("w-1", [10, 5])) is None

    assert [e.payload for e in stored_events(flow, WALLET_STREAM, "w-1")] == [
        WalletOpened("w-1", "ann"),
        ToppedUp("w-1", 10),
        ToppedUp("w-1", 5),
    ]
    assert flow.get_recorded_events() == [
        WalletOpened("w-1", "ann"),
        ToppedUp("w-1", 10),
        ToppedUp("w-1", 5),
    ]


def test_the_aggregate_is_rebuilt_from_its_stream_on_every_load(flow):
    flow.send_command(OpenWallet("w-1", "ann")).send_command(TopUp("w-1", [10, 5]))
    flow.send_command(Spend("w-1", 12)).send_command(Spend("w-1", 4))

    wallet = flow.get_aggregate(Wallet, "w-1")

    assert (wallet.wallet_id, wallet.owner, wallet.balance, wallet.version) == ("w-1", "ann", 3, 4)
    assert wallet.applied == 4


def test_an_empty_list_of_events_means_nothing_happened(flow):
    flow.send_command(OpenWallet("w-1", "ann")).discard_recorded_messages()

    flow.send_command(Spend("w-1", 100))

    assert flow.get_recorded_events() == []
    assert len(stored_events(flow, WALLET_STREAM, "w-1")) == 1
    assert flow.get_aggregate(Wallet, "w-1").version == 1


def test_successive_events_carry_the_aggregate_id_type_and_versions(flow):
    flow.send_command(OpenWallet("w-1", "ann")).send_command(TopUp("w-1", [1, 2]))
    flow.send_command(OpenWallet("w-2", "bob"))

    headers = flow.get_recorded_event_headers()

    assert [(h["aggregate.id"], h["aggregate.version"]) for h in headers] == [
        ("w-1", 1),
        ("w-1", 2),
        ("w-1", 3),
        ("w-2", 1),
    ]
    assert {h["aggregate.type"] for h in headers} == {WALLET_STREAM}
    assert len({h["id"] for h in headers}) == 4


def test_the_stored_metadata_matches_the_published_headers(flow):
    flow.send_command(OpenWallet("w-1", "ann"), headers={"tenant": "acme"})

    (stored,) = stored_events(flow, WALLET_STREAM, "w-1")
    (published,) = flow.get_recorded_event_headers()

    for key in ("id", "aggregate.id", "aggregate.type", "aggregate.version", "tenant"):
        assert stored.metadata[key] == published[key]


def test_events_carry_the_commands_user_headers_and_correlation(flow):
    flow.send_command(OpenWallet("w-1", "ann"))
    flow.send_command(TopUp("w-1", [1, 2]), headers={"tenant": "acme", "correlation_id": "corr-9"})
    command = flow.get_recorded_command_headers()[1]

    first, second = flow.get_recorded_event_headers()[1:]

    for headers in (first, second):
        assert headers["tenant"] == "acme"
        assert headers["correlation_id"] == "corr-9"
        assert headers["parent_id"] == command["id"]


def test_the_stream_is_named_after_the_aggregate_type_and_lists_its_aggregates(flow):
    flow.send_command(OpenWallet("w-2", "bob")).send_command(OpenWallet("w-1", "ann"))

    store = flow.system.aggregates.event_store

    assert store.streams() == [WALLET_STREAM]
    assert store.aggregate_ids(WALLET_STREAM) == ["w-2", "w-1"]


# -- an event-sourced dataclass with required fields -------------------------------------------


@dataclass
class RegisterParcel:
    parcel_id: str
    weight: int


@dataclass
class Deliver:
    parcel_id: str
    to: str


@dataclass(frozen=True)
class ParcelRegistered:
    parcel_id: str
    weight: int


@dataclass(frozen=True)
class ParcelDelivered:
    parcel_id: str
    to: str


@event_sourcing_aggregate
@dataclass
class Parcel:
    parcel_id: Annotated[str, Identifier]
    weight: int
    delivered_to: str | None = None
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    @staticmethod
    def register(command: RegisterParcel) -> list[object]:
        return [ParcelRegistered(command.parcel_id, command.weight)]

    @command_handler
    def deliver(self, command: Deliver) -> list[object]:
        if self.delivered_to is not None:
            return []
        return [ParcelDelivered(self.parcel_id, command.to)]

    @event_sourcing_handler
    def on_registered(self, event: ParcelRegistered) -> None:
        self.parcel_id = event.parcel_id
        self.weight = event.weight

    @event_sourcing_handler
    def on_delivered(self, event: ParcelDelivered) -> None:
        self.delivered_to = event.to


def test_a_dataclass_with_required_fields_is_rebuilt_without_calling_its_constructor():
    flow = bootstrap_flow_testing(classes=[Parcel])

    assert flow.command_bus.send(RegisterParcel("p-1", 3)) == "p-1"
    flow.send_command(Deliver("p-1", "Oslo")).send_command(Deliver("p-1", "Rome"))

    parcel = flow.get_aggregate(Parcel, "p-1")
    assert parcel == Parcel("p-1", 3, "Oslo", 2)
    assert flow.get_recorded_events() == [
        ParcelRegistered("p-1", 3),
        ParcelDelivered("p-1", "Oslo"),
    ]


# -- snapshots ---------------------------------------------------------------------------------


@dataclass
class StartCounter:
    counter_id: str


@dataclass
class Increment:
    counter_id: str
    by: int


@dataclass(frozen=True)
class CounterStarted:
    counter_id: str


@dataclass(frozen=True)
class Incremented:
    counter_id: str
    by: int


def counter_class(snapshot_every: int | None) -> type[Any]:
    class Counter:
        counter_id: Annotated[str, Identifier]
        version: Annotated[int, AggregateVersion]

        def __init__(self) -> None:
            self.counter_id = ""
            self.total = 0
            self.history: list[int] = []
            self.version = 0

        @command_handler
        @classmethod
        def start(cls, command: StartCounter) -> list[object]:
            return [CounterStarted(command.counter_id)]

        @command_handler
        def increment(self, command: Increment) -> list[object]:
            return [Incremented(self.counter_id, command.by)]

        @event_sourcing_handler
        def on_started(self, event: CounterStarted) -> None:
            self.counter_id = event.counter_id

        @event_sourcing_handler
        def on_incremented(self, event: Incremented) -> None:
            self.total += event.by
            self.history.append(event.by)

    if snapshot_every is None:
        return event_sourcing_aggregate(Counter)
    return event_sourcing_aggregate(snapshot_every=snapshot_every)(Counter)


class RecordingEventStore(InMemoryEventStore):
    """Remembers from which version each load read the stream."""

    def __init__(self) -> None:
        super().__init__()
        self.loads_from: list[int] = []

    def load(self, stream: str, aggregate_id: str, from_version: int = 1) -> list[Any]:
        self.loads_from.append(from_version)
        return super().load(stream, aggregate_id, from_version)


def run_counter(counter: type[Any], store: InMemoryEventStore) -> Any:
    flow = bootstrap_flow_testing(classes=[counter], services=[store])
    flow.send_command(StartCounter("c-1"))
    for by in range(1, 10):
        flow.send_command(Increment("c-1", by))
    return flow


def test_a_snapshotted_aggregate_ends_in_the_same_state_as_one_rebuilt_from_every_event():
    plain_counter, snapshotted_counter = counter_class(None), counter_class(3)
    plain = run_counter(plain_counter, InMemoryEventStore())
    snapshotted = run_counter(snapshotted_counter, InMemoryEventStore())

    expected = plain.get_aggregate(plain_counter, "c-1")
    actual = snapshotted.get_aggregate(snapshotted_counter, "c-1")

    assert (actual.total, actual.history, actual.version) == (45, list(range(1, 10)), 10)
    assert (actual.total, actual.history, actual.version) == (
        expected.total,
        expected.history,
        expected.version,
    )
    assert snapshotted.get_recorded_events() == plain.get_recorded_events()


def test_a_snapshot_is_taken_every_n_events_and_loading_reads_only_the_later_events():
    counter = counter_class(3)
    store = RecordingEventStore()
    flow = run_counter(counter, store)
    snapshots = flow.system.aggregates.event_sourcing.snapshots

    snapshot = snapshots.load(type_name(counter), "c-1")

    assert snapshot is not None
    assert snapshot.version == 9
    assert (snapshot.state.total, snapshot.state.history) == (36, list(range(1, 9)))

    store.loads_from.clear()
    loaded = flow.get_aggregate(counter, "c-1")

    assert store.loads_from == [10]
    assert (loaded.total, loaded.version) == (45, 10)


def test_without_snapshot_every_no_snapshot_is_taken_and_every_event_is_read():
    counter = counter_class(None)
    store = RecordingEventStore()
    flow = run_counter(counter, store)

    assert flow.system.aggregates.event_sourcing.snapshots.load(type_name(counter), "c-1") is None
    store.loads_from.clear()
    assert flow.get_aggregate(counter, "c-1").total == 45
    assert store.loads_from == [1]


def test_the_first_snapshot_is_taken_when_the_version_reaches_n():
    counter = counter_class(3)
    flow = bootstrap_flow_testing(classes=[counter])
    flow.send_command(StartCounter("c-1")).send_command(Increment("c-1", 1))
    snapshots = flow.system.aggregates.event_sourcing.snapshots
    assert snapshots.load(type_name(counter), "c-1") is None

    flow.send_command(Increment("c-1", 2))

    snapshot = snapshots.load(type_name(counter), "c-1")
    assert snapshot is not None
    assert (snapshot.version, snapshot.state.total) == (3, 3)


def test_an_action_for_an_aggregate_without_events_raises_aggregate_not_found(flow):
    with pytest.raises(AggregateNotFound, match=r"Wallet.*'w-9'.*Wallet\.top_up"):
        flow.send_command(TopUp("w-9", [1]))

    assert flow.system.aggregates.event_store.streams() == []


# -- pydantic models ---------------------------------------------------------------------------


@event_sourcing_aggregate
class PydanticWallet(BaseModel):
    """An event-sourced pydantic model whose fields are required (DESIGN §1.2)."""

    wallet_id: Annotated[str, Identifier]
    owner: str
    balance: int = 0

    @command_handler
    @classmethod
    def open(cls, command: OpenWallet) -> list[object]:
        return [WalletOpened(command.wallet_id, command.owner)]

    @command_handler
    def top_up(self, command: TopUp) -> list[object]:
        return [ToppedUp(self.wallet_id, amount) for amount in command.amounts]

    @event_sourcing_handler
    def on_opened(self, event: WalletOpened) -> None:
        self.wallet_id, self.owner = event.wallet_id, event.owner

    @event_sourcing_handler
    def on_topped_up(self, event: ToppedUp) -> None:
        self.balance += event.amount


def test_a_pydantic_model_with_required_fields_is_rebuilt_from_its_events():
    flow = bootstrap_flow_testing(classes=[PydanticWallet])

    assert flow.command_bus.send(OpenWallet("w-1", "ann")) == "w-1"
    flow.send_command(TopUp("w-1", [3, 4]))

    wallet = flow.get_aggregate(PydanticWallet, "w-1")
    assert (wallet.wallet_id, wallet.owner, wallet.balance) == ("w-1", "ann", 7)
