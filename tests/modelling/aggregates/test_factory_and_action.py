"""A factory and an action of one aggregate (or saga) that handle the same message are two
endpoints, each with its own markers and interceptors (issue 10 §2): the aggregate's existence
chooses which one runs, and only that one's interceptors run around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from ecopy import (
    ConfigurationError,
    Identifier,
    Marker,
    QueueChannel,
    aggregate,
    asynchronous,
    before,
    command_handler,
    event_handler,
    saga,
)
from ecopy.modelling.repository import InMemoryRepository
from ecopy.testing import bootstrap_flow_testing


class RequiresRole(Marker):
    def __init__(self, role: str) -> None:
        self.role = role


class Caller:
    def __init__(self, roles: set[str]) -> None:
        self.roles = roles
        self.checked: list[str] = []


class RoleCheck:
    @before(pointcut=RequiresRole)
    def check(self, required: RequiresRole, caller: Caller) -> None:
        caller.checked.append(required.role)
        if required.role not in caller.roles:
            raise PermissionError(f"{required.role} required")


@dataclass(frozen=True)
class Register:
    account_id: str


@aggregate
@dataclass
class Account:
    account_id: Annotated[str, Identifier]
    registrations: int = 1

    @command_handler
    @classmethod
    @RequiresRole("admin")
    def open(cls, command: Register) -> Account:
        return cls(command.account_id)

    @command_handler
    @RequiresRole("clerk")
    def register_again(self, command: Register) -> None:
        self.registrations += 1


def flow_for(roles: set[str], *extra: object):
    caller = Caller(roles)
    flow = bootstrap_flow_testing(
        classes=[Account, RoleCheck, *extra], services=[caller, RoleCheck()]
    )
    return flow, caller


def test_the_factory_and_the_action_are_two_endpoints():
    flow, _ = flow_for({"admin"})

    ids = [info.endpoint_id for info in flow.system.endpoints()]

    assert "Account.open" in ids
    assert "Account.register_again" in ids


def test_the_factorys_own_interceptor_runs_when_the_factory_runs():
    flow, caller = flow_for({"clerk"})  # a clerk may register again, but not open

    with pytest.raises(PermissionError, match="admin required"):
        flow.send_command(Register("a-1"))

    assert caller.checked == ["admin"]
    assert flow.system.aggregates.find(Account, "a-1") is None


def test_the_actions_own_interceptor_runs_when_the_aggregate_exists():
    flow, caller = flow_for({"admin", "clerk"})
    flow.send_command(Register("a-1"))
    caller.roles = {"clerk"}

    flow.send_command(Register("a-1"))

    assert caller.checked == ["admin", "clerk"]
    assert flow.get_aggregate(Account, "a-1").registrations == 2


class CountingRepository(InMemoryRepository):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def find(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.loads += 1
        return super().find(*args, **kwargs)


def test_the_aggregate_is_loaded_once_to_choose_and_act():
    repository = CountingRepository()
    caller = Caller({"admin", "clerk"})
    flow = bootstrap_flow_testing(
        classes=[Account, RoleCheck], services=[caller, RoleCheck(), repository]
    )
    flow.send_command(Register("a-1"))
    repository.loads = 0

    flow.send_command(Register("a-1"))

    assert repository.loads == 1


@dataclass(frozen=True)
class Ship:
    parcel_id: str


@aggregate
@dataclass
class Parcel:
    parcel_id: Annotated[str, Identifier]
    shipments: int = 1

    @asynchronous("parcels")
    @command_handler
    @classmethod
    def first(cls, command: Ship) -> Parcel:
        return cls(command.parcel_id)

    @asynchronous("parcels")
    @command_handler
    def again(self, command: Ship) -> None:
        self.shipments += 1


def test_an_asynchronous_pair_chooses_in_the_consumer():
    flow = bootstrap_flow_testing(
        classes=[Parcel], enable_asynchronous_processing=[QueueChannel("parcels")]
    )

    flow.send_command(Ship("p-1")).run("parcels")
    flow.send_command(Ship("p-1")).run("parcels")

    assert flow.get_aggregate(Parcel, "p-1").shipments == 2
    [consumer] = flow.system.list_consumers()
    assert set(consumer.endpoints) >= {"Parcel.first", "Parcel.again"}


@aggregate
@dataclass
class HalfAsync:
    parcel_id: Annotated[str, Identifier]

    @asynchronous("parcels")
    @command_handler
    @classmethod
    def first(cls, command: Ship) -> HalfAsync:
        return cls(command.parcel_id)

    @command_handler
    def again(self, command: Ship) -> None:
        pass


def test_a_pair_where_only_one_is_asynchronous_is_a_configuration_problem():
    with pytest.raises(ConfigurationError) as raised:
        bootstrap_flow_testing(
            classes=[HalfAsync], enable_asynchronous_processing=[QueueChannel("parcels")]
        )

    assert (
        "factory tests.modelling.aggregates.test_factory_and_action.HalfAsync.first and action "
        "tests.modelling.aggregates.test_factory_and_action.HalfAsync.again handle the same "
        "message, so one of them is chosen when it arrives; make both @asynchronous on the "
        "same channel, or neither"
    ) in str(raised.value)


@dataclass(frozen=True)
class PaymentReceived:
    order_id: str


class Audited(Marker):
    pass


class AuditLog:
    def __init__(self) -> None:
        self.entries: list[str] = []

    @before(pointcut=Audited)
    def audit(self, audited: Audited) -> None:
        self.entries.append("audited")


@saga
@dataclass
class Payments:
    order_id: Annotated[str, Identifier]
    payments: int = 1

    @event_handler
    @classmethod
    @Audited()
    def start(cls, event: PaymentReceived) -> Payments:
        return cls(event.order_id)

    @event_handler
    def more(self, event: PaymentReceived) -> None:
        self.payments += 1


def test_a_sagas_factory_keeps_its_own_interceptor_and_its_action_none():
    log = AuditLog()
    flow = bootstrap_flow_testing(classes=[Payments, AuditLog], services=[log])

    flow.publish_event(PaymentReceived("o-1"))
    flow.publish_event(PaymentReceived("o-1"))

    assert log.entries == ["audited"]
    assert flow.get_saga(Payments, "o-1").payments == 2
