"""Aggregate and saga handlers are endpoints like any other (DESIGN §1.1, §3.2, §4):
interceptors select them by aggregate class and run once per call around load-call-save,
and synchronous event handlers run aggregates first, then sagas, then plain services."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

import pytest

from ecopy import (
    ConcurrencyError,
    EndpointInfo,
    Identifier,
    MethodInvocation,
    WithEvents,
    after,
    aggregate,
    around,
    before,
    command_handler,
    event_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
    priority,
    saga,
)
from ecopy.testing import bootstrap_flow_testing


class Journal:
    def __init__(self) -> None:
        self.entries: list[str] = []

    def __call__(self, entry: str) -> None:
        self.entries.append(entry)


@dataclass
class OpenCart:
    cart_id: str


@dataclass
class AddItem:
    cart_id: str
    item: str


@dataclass(frozen=True)
class ItemAdded:
    cart_id: str
    item: str


@dataclass(frozen=True)
class CartOpened:
    cart_id: str


@aggregate
@dataclass
class Cart(WithEvents):
    cart_id: Annotated[str, Identifier]
    items: tuple[str, ...] = ()

    @command_handler
    @classmethod
    def open(cls, command: OpenCart, journal: Journal) -> Cart:
        journal(f"open {command.cart_id}")
        return cls(command.cart_id)

    @command_handler
    def add(self, command: AddItem, journal: Journal) -> int:
        journal(f"add {command.item}")
        self.items = (*self.items, command.item)
        self.record_that(ItemAdded(self.cart_id, command.item))
        return len(self.items)


@dataclass
class StartTally:
    tally_id: str


@dataclass
class Count:
    tally_id: str


@dataclass(frozen=True)
class TallyStarted:
    tally_id: str


@dataclass(frozen=True)
class Counted:
    tally_id: str


@event_sourcing_aggregate
@dataclass
class Tally:
    tally_id: Annotated[str, Identifier]
    count: int = 0

    @command_handler
    @classmethod
    def start(cls, command: StartTally, journal: Journal) -> list[object]:
        journal("start tally")
        return [TallyStarted(command.tally_id)]

    @command_handler
    def count_one(self, command: Count, journal: Journal) -> list[object]:
        journal("count")
        return [Counted(self.tally_id)]

    @event_sourcing_handler
    def on_started(self, event: TallyStarted) -> None:
        self.tally_id = event.tally_id

    @event_sourcing_handler
    def on_counted(self, event: Counted) -> None:
        self.count += 1


@saga
@dataclass
class CartReminder:
    cart_id: Annotated[str, Identifier]
    items: int = 0

    @event_handler
    @classmethod
    def start(cls, event: CartOpened, journal: Journal) -> CartReminder:
        journal("reminder started")
        return cls(event.cart_id)

    @event_handler(drop_message_on_not_found=True)
    def on_item(self, event: ItemAdded, journal: Journal) -> None:
        journal("reminder counted")
        self.items += 1


class CartInterceptors:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @before(pointcut=Cart)
    def before_cart(self, info: EndpointInfo) -> None:
        self.journal(f"before {info.endpoint_id}")

    @around(pointcut=Cart)
    def around_cart(self, invocation: MethodInvocation) -> object:
        self.journal("around begin")
        result = invocation.proceed()
        self.journal(f"around end {result!r}")
        return result

    @after(pointcut=Cart)
    def after_cart(self) -> None:
        self.journal("after")

    @before(pointcut=Tally)
    def before_tally(self) -> None:
        self.journal("before tally")

    @before(pointcut=CartReminder)
    def before_reminder(self) -> None:
        self.journal("before reminder")


@pytest.fixture
def journal():
    return Journal()


@pytest.fixture
def flow(journal):
    return bootstrap_flow_testing(
        classes=[Cart, Tally, CartReminder, CartInterceptors],
        services=[journal, CartInterceptors(journal)],
    )


def test_interceptors_selected_by_aggregate_class_run_once_around_a_factory(flow, journal):
    assert flow.command_bus.send(OpenCart("c-1")) == "c-1"

    assert journal.entries == [
        "before Cart.open",
        "around begin",
        "open c-1",
        "around end 'c-1'",
        "after",
    ]


def test_interceptors_run_once_around_an_action_and_see_its_result(flow, journal):
    flow.send_command(OpenCart("c-1"))
    journal.entries.clear()

    flow.send_command(AddItem("c-1", "tea"))

    assert journal.entries == [
        "before Cart.add",
        "around begin",
        "add tea",
        "before reminder",  # ItemAdded, published after the save, within the call
        "around end 1",
        "after",
    ]


def test_an_aggregate_class_pointcut_selects_only_that_aggregates_handlers(flow, journal):
    flow.send_command(StartTally("t-1")).send_command(Count("t-1"))

    assert journal.entries == ["before tally", "start tally", "before tally", "count"]


def test_saga_handlers_are_selected_by_the_saga_class(flow, journal):
    flow.publish_event(CartOpened("c-1")).publish_event(ItemAdded("c-1", "tea"))

    assert journal.entries == [
        "before reminder",
        "reminder started",
        "before reminder",
        "reminder counted",
    ]


@dataclass
class Touch:
    box_id: str


@aggregate
@dataclass
class Box:
    box_id: Annotated[str, Identifier]
    touched: int = 0

    @command_handler
    @classmethod
    def create(cls, command: Touch, journal: Journal) -> Box:
        journal("create box")
        return cls(command.box_id)

    @command_handler
    def touch(self, command: Touch, journal: Journal) -> None:
        journal("touch box")
        self.touched += 1


class BoxInterceptor:
    @before(pointcut=Box)
    def before_box(self, journal: Journal) -> None:
        journal("before box")


def test_an_interceptor_selecting_the_aggregate_runs_around_its_factory_and_its_action(journal):
    flow = bootstrap_flow_testing(classes=[Box, BoxInterceptor], services=[journal])

    flow.send_command(Touch("b-1")).send_command(Touch("b-1"))

    assert journal.entries == ["before box", "create box", "before box", "touch box"]


class RetryOnConflict:
    """An around interceptor that retries a conflicting change: the retry reloads."""

    def __init__(self) -> None:
        self.conflicts = 0

    @around(pointcut=Cart)
    def retry(self, invocation: MethodInvocation) -> object:
        try:
            return invocation.proceed()
        except ConcurrencyError:
            self.conflicts += 1
            return invocation.proceed()


class RacingJournal(Journal):
    """Makes two ``add`` calls load the cart before either saves (first attempt only)."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=5)
        self.adds = 0
        self.lock = threading.Lock()

    def __call__(self, entry: str) -> None:
        super().__call__(entry)
        if entry.startswith("add"):
            with self.lock:
                self.adds += 1
                first_attempt = self.adds <= 2
            if first_attempt:
                self.barrier.wait()


def test_an_around_interceptor_wraps_the_load_so_retrying_a_conflict_reloads_the_aggregate():
    journal = RacingJournal()
    retry = RetryOnConflict()
    flow = bootstrap_flow_testing(classes=[Cart, RetryOnConflict], services=[journal, retry])
    flow.send_command(OpenCart("c-1")).discard_recorded_messages()

    threads = [
        threading.Thread(target=flow.command_bus.send, args=(AddItem("c-1", item),))
        for item in ("tea", "jam")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert retry.conflicts == 1
    assert sorted(flow.get_aggregate(Cart, "c-1").items) == ["jam", "tea"]
    assert len(flow.get_recorded_events()) == 2


# -- ordering of synchronous event handlers ---------------------------------------------------


@dataclass(frozen=True)
class Tick:
    cart_id: str


class TickService:
    @event_handler
    def on_tick(self, event: Tick, journal: Journal) -> None:
        journal("service")


class UrgentTickService:
    @priority(5)
    @event_handler
    def on_tick(self, event: Tick, journal: Journal) -> None:
        journal("urgent service")


@saga
@dataclass
class TickSaga:
    cart_id: Annotated[str, Identifier]

    @event_handler
    @classmethod
    def on_tick(cls, event: Tick, journal: Journal) -> TickSaga:
        journal("saga")
        return cls(event.cart_id)


@aggregate
@dataclass
class TickedCart:
    cart_id: Annotated[str, Identifier]
    ticks: int = 0

    @command_handler
    @classmethod
    def open(cls, command: OpenCart) -> TickedCart:
        return cls(command.cart_id)

    @event_handler
    def on_tick(self, event: Tick, journal: Journal) -> None:
        journal("aggregate")
        self.ticks += 1


def test_at_equal_priority_aggregates_run_before_sagas_before_services(journal):
    flow = bootstrap_flow_testing(
        classes=[TickService, TickSaga, TickedCart], services=[journal, TickService()]
    )
    flow.send_command(OpenCart("c-1"))

    flow.publish_event(Tick("c-1"))

    assert journal.entries == ["aggregate", "saga", "service"]
    assert flow.get_aggregate(TickedCart, "c-1").ticks == 1
    assert flow.get_saga(TickSaga, "c-1").cart_id == "c-1"


def test_a_higher_priority_runs_first_whatever_the_kind_of_handler(journal):
    flow = bootstrap_flow_testing(
        classes=[TickService, TickSaga, UrgentTickService, TickedCart],
        services=[journal, TickService(), UrgentTickService()],
    )
    flow.send_command(OpenCart("c-1"))

    flow.publish_event(Tick("c-1"))

    assert journal.entries == ["urgent service", "aggregate", "saga", "service"]
