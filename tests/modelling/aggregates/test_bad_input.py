"""Mistakes in messages and in aggregate code become clear errors that say what is wrong and
where (DESIGN §1.3, §1.6): missing identifiers, handlers returning the wrong thing, and
aggregate classes that cannot work, reported at bootstrap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from ecopy import (
    AggregateDefinitionError,
    ConfigurationError,
    Identifier,
    IdentifierNotFound,
    TargetIdentifier,
    aggregate,
    command_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
    saga,
)
from ecopy.messaging.naming import type_name
from ecopy.testing import bootstrap_flow_testing


@dataclass
class OpenShop:
    shop_id: str | None


@dataclass
class CloseShop:
    reason: str


@dataclass
class CloseShopFor:
    shop: Annotated[str | None, TargetIdentifier("shop_id")]


@dataclass
class RenameShop:
    name: str


@dataclass
class MoveShop:
    address: str


@aggregate
@dataclass
class Shop:
    shop_id: Annotated[str | None, Identifier]
    open: bool = True

    @command_handler
    @classmethod
    def open_shop(cls, command: OpenShop) -> Shop:
        return cls(command.shop_id)

    @command_handler
    def close(self, command: CloseShop) -> None:
        self.open = False

    @command_handler
    def close_for(self, command: CloseShopFor) -> None:
        self.open = False

    @command_handler(identifier_mapping={"shop_id": "payload.target.shop"})
    def rename(self, command: RenameShop) -> None: ...

    @command_handler(identifier_metadata_mapping={"shop_id": "x-shop"})
    def move(self, command: MoveShop) -> None: ...


@pytest.fixture
def flow():
    flow = bootstrap_flow_testing(classes=[Shop])
    flow.send_command(OpenShop("s-1"))
    return flow


def test_an_action_without_identifier_names_the_aggregate_the_handler_and_the_field(flow):
    with pytest.raises(IdentifierNotFound) as raised:
        flow.send_command(CloseShop("holiday"))

    message = str(raised.value)
    assert "Shop" in message
    assert "Shop.close" in message
    assert "'shop_id'" in message
    assert "aggregate.id" in message


def test_a_target_identifier_field_left_empty_is_a_missing_identifier(flow):
    with pytest.raises(IdentifierNotFound, match="'shop'"):
        flow.send_command(CloseShopFor(shop=None))

    assert flow.get_aggregate(Shop, "s-1").open is True


def test_a_missing_mapped_payload_path_is_named_in_the_error(flow):
    with pytest.raises(IdentifierNotFound, match=r"Shop\.rename.*payload\.target\.shop"):
        flow.send_command(RenameShop("corner"))


def test_a_missing_mapped_header_is_named_in_the_error(flow):
    with pytest.raises(IdentifierNotFound, match=r"Shop\.move.*x-shop"):
        flow.send_command(MoveShop("high street"))


def test_a_factory_returning_an_aggregate_without_identifier_is_refused_and_stores_nothing():
    flow = bootstrap_flow_testing(classes=[Shop])

    with pytest.raises(AggregateDefinitionError) as raised:
        flow.send_command(OpenShop(None))

    message = str(raised.value)
    assert "Shop.open_shop" in message
    assert "shop_id" in message
    assert flow.get_recorded_events() == []


@dataclass
class Forget:
    thing_id: str


@aggregate
@dataclass
class Thing:
    thing_id: Annotated[str, Identifier]

    @command_handler
    @classmethod
    def forget(cls, command: Forget) -> None:
        return None


def test_a_state_stored_factory_that_returns_no_aggregate_is_refused():
    flow = bootstrap_flow_testing(classes=[Thing])

    with pytest.raises(AggregateDefinitionError, match=r"Thing\.forget.*NoneType"):
        flow.send_command(Forget("t-1"))


# -- event-sourced handlers returning the wrong thing ----------------------------------------


@dataclass
class StartRun:
    run_id: str


@dataclass
class Lap:
    run_id: str


@dataclass
class Rest:
    run_id: str


@dataclass
class StartNameless:
    run_id: str


@dataclass(frozen=True)
class RunStarted:
    run_id: str


@dataclass(frozen=True)
class Lapped:
    run_id: str


@event_sourcing_aggregate
@dataclass
class Run:
    run_id: Annotated[str, Identifier]
    laps: int = 0

    @command_handler
    @classmethod
    def start(cls, command: StartRun) -> list[object]:
        return [RunStarted(command.run_id)]

    @command_handler
    @classmethod
    def start_nameless(cls, command: StartNameless) -> list[object]:
        return [Lapped(command.run_id)]

    @command_handler
    def lap(self, command: Lap) -> object:
        return Lapped(self.run_id)  # forgot the list

    @command_handler
    def rest(self, command: Rest) -> None:
        Lapped(self.run_id)  # forgot to return

    @event_sourcing_handler
    def on_started(self, event: RunStarted) -> None:
        self.run_id = event.run_id

    @event_sourcing_handler
    def on_lapped(self, event: Lapped) -> None:
        self.laps += 1


@pytest.fixture
def runs():
    flow = bootstrap_flow_testing(classes=[Run])
    flow.send_command(StartRun("r-1")).discard_recorded_messages()
    return flow


def test_an_event_sourced_handler_returning_a_single_event_is_refused_naming_the_method(runs):
    with pytest.raises(AggregateDefinitionError) as raised:
        runs.send_command(Lap("r-1"))

    message = str(raised.value)
    assert "Run.lap" in message
    assert "list" in message
    assert "Lapped" in message
    assert runs.get_recorded_events() == []
    assert len(runs.system.aggregates.event_store.load(type_name(Run), "r-1")) == 1


def test_an_event_sourced_handler_returning_nothing_is_refused_naming_the_method(runs):
    with pytest.raises(AggregateDefinitionError, match=r"Run\.rest"):
        runs.send_command(Rest("r-1"))


def test_an_event_sourced_factory_whose_events_set_no_identifier_is_refused():
    flow = bootstrap_flow_testing(classes=[Run])

    with pytest.raises(AggregateDefinitionError, match=r"Run\.start_nameless.*run_id"):
        flow.send_command(StartNameless("r-9"))

    assert flow.system.aggregates.event_store.streams() == []
    assert flow.get_recorded_events() == []


# -- classes that cannot work are reported at bootstrap ----------------------------------------


@dataclass
class Poke:
    anonymous_id: str


@aggregate
@dataclass
class Anonymous:
    anonymous_id: str

    @command_handler
    def poke(self, command: Poke) -> None: ...


@dataclass
class Nudge:
    anonymous_id: str


@saga
@dataclass
class AnonymousSaga:
    anonymous_id: str

    @command_handler
    def nudge(self, command: Nudge) -> None: ...


@dataclass
class Prod:
    anonymous_id: str


@event_sourcing_aggregate
class AnonymousHistory:
    @command_handler
    def prod(self, command: Prod) -> list[object]:
        return []


def test_aggregates_and_sagas_without_identifier_are_all_reported_at_bootstrap():
    with pytest.raises(ConfigurationError) as raised:
        bootstrap_flow_testing(classes=[Anonymous, AnonymousSaga, AnonymousHistory])

    problems = raised.value.problems
    for kind, name in (
        ("aggregate", "Anonymous"),
        ("saga", "AnonymousSaga"),
        ("aggregate", "AnonymousHistory"),
    ):
        assert any(f"{kind} {name} has no identifier" in p for p in problems), problems
    others = [p for p in problems if "Identifier" not in p]
    assert others == [
        "saga AnonymousSaga has no factory handler, so nothing can start it and every message "
        "for it would find no AnonymousSaga; add a classmethod handler that returns a new "
        "AnonymousSaga for the message that starts it (@event_handler on a @classmethod)"
    ]


@dataclass
class Wave:
    thing_id: str


@aggregate
@dataclass
class BadlyMapped:
    thing_id: Annotated[str, Identifier]

    @command_handler(identifier_mapping={"thing_id": "body.thing"})
    def wave(self, command: Wave) -> None: ...


def test_an_identifier_mapping_with_an_unknown_root_is_reported_at_bootstrap():
    with pytest.raises(ConfigurationError, match=r"BadlyMapped\.wave.*body\.thing"):
        bootstrap_flow_testing(classes=[BadlyMapped])


@dataclass(frozen=True)
class Happened:
    thing_id: str


@event_sourcing_aggregate
@dataclass
class UntypedApplier:
    thing_id: Annotated[str, Identifier]

    @command_handler
    def wave(self, command: Wave) -> list[object]:
        return []

    @event_sourcing_handler
    def apply(self, event) -> None: ...


def test_an_event_sourcing_handler_without_an_event_class_is_reported_at_bootstrap():
    with pytest.raises(ConfigurationError, match=r"UntypedApplier\.apply"):
        bootstrap_flow_testing(classes=[UntypedApplier])


def test_snapshot_every_must_be_positive():
    with pytest.raises(ConfigurationError, match="snapshot_every"):
        event_sourcing_aggregate(snapshot_every=0)


def test_with_state_for_refuses_an_aggregate_without_identifier():
    flow = bootstrap_flow_testing(classes=[Shop])

    with pytest.raises(ValueError, match="identifier"):
        flow.with_state_for(Shop(None))
