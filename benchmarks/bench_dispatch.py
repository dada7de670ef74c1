"""Per-call dispatch cost: ecopy vs a direct call, lato and python-cqrs, in one run.

Run from the repository root with the benchmark venv (see benchmarks/README.md)::

    .venv-bench/bin/python benchmarks/bench_dispatch.py            # full run
    .venv-bench/bin/python benchmarks/bench_dispatch.py --quick    # smoke run

Every workload sends one command carrying ``order_id="o-1"`` (the message is built inside the
timed loop, as callers do) to a handler that returns the order id. The "+ event" workloads
additionally publish one event from the command handler to two in-process event handlers that
each increment a counter. Handlers do the same trivial work in every library.

Method: each workload is warmed up, then timed ``--repeats`` times for ``--calls`` calls with
``time.perf_counter_ns``. Repeats are interleaved round-robin across workloads so that machine
noise spreads evenly over libraries. ``gc`` stays enabled (a ``gc.collect()`` runs between
timed repeats, never inside one). Results are checked once before timing, and the handler
counters are checked against the number of calls made after timing, so a broken setup cannot
produce a fast-but-wrong number.
"""

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from timing import (
    Library,
    build_all,
    expect,
    measure,
    parse_args,
    python_description,
    report_unavailable,
    summarize,
    table_header,
    table_row,
    version_of,
    warmup_calls,
)

ORDER_ID = "o-1"
DIRECT = "direct call"
COMMAND = "command"
COMMAND_EVENT = "command + event"
TARGET_RATIO = 0.25
DEFAULT_CALLS = 12_000
DEFAULT_REPEATS = 7
QUICK_CALLS = 1_000
QUICK_REPEATS = 3


# --------------------------------------------------------------------------------------------
# Messages shared by the direct call and ecopy (lato and python-cqrs need their own base classes)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


class Tally:
    """Counts event handler invocations (the only work the event handlers do)."""

    __slots__ = ("first", "second")

    def __init__(self) -> None:
        self.first = 0
        self.second = 0


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


@dataclass
class Workload:
    library: str
    kind: str
    run: Callable[[int], int]
    """Runs ``n`` calls and returns the elapsed nanoseconds of the calls only."""
    check: Callable[[], None]
    """Performs one call outside the timed loop and asserts that the result is right."""
    variant: str = ""
    """Non-default configuration of the same workload, shown in the name."""
    tally: Tally | None = None
    """Event handler counters, checked against ``calls_made`` at the end."""
    calls_made: int = 0
    samples_ns: list[float] = field(default_factory=list)
    """Per-call nanoseconds, one entry per timed repeat."""

    @property
    def name(self) -> str:
        name = self.kind if self.kind == DIRECT else f"{self.library} {self.kind}"
        return f"{name} ({self.variant})" if self.variant else name

    def execute(self, n: int) -> int:
        self.calls_made += n
        return self.run(n)

    def call_once(self) -> None:
        self.calls_made += 1
        self.check()


def expect_tally(tally: Tally, calls: int, library: str) -> None:
    expect(
        tally.first == calls and tally.second == calls,
        f"{library}: event handlers ran first={tally.first}, second={tally.second} times "
        f"for {calls} commands (expected exactly once each per command)",
    )


# --------------------------------------------------------------------------------------------
# Baseline: a plain method call
# --------------------------------------------------------------------------------------------


class PlainOrderService:
    def place(self, command: PlaceOrder) -> str:
        return command.order_id


def build_direct() -> list[Workload]:
    service = PlainOrderService()

    def run(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            service.place(PlaceOrder(ORDER_ID))
        return perf_counter_ns() - start

    def check() -> None:
        expect(service.place(PlaceOrder(ORDER_ID)) == ORDER_ID, "direct call returned wrong value")

    return [Workload("baseline", DIRECT, run, check)]


# --------------------------------------------------------------------------------------------
# ecopy
# --------------------------------------------------------------------------------------------


def build_ecopy() -> list[Workload]:
    import ecopy
    from ecopy import EventBus, command_handler, event_handler

    class OrderService:
        @command_handler
        def place(self, command: PlaceOrder) -> str:
            return command.order_id

    class OrderServiceWithEvent:
        @command_handler
        def place(self, command: PlaceOrder, event_bus: EventBus) -> str:
            event_bus.publish(OrderPlaced(command.order_id))
            return command.order_id

    class Listeners:
        def __init__(self) -> None:
            self.tally = Tally()

        @event_handler
        def first(self, event: OrderPlaced) -> None:
            self.tally.first += 1

        @event_handler
        def second(self, event: OrderPlaced) -> None:
            self.tally.second += 1

    app = ecopy.bootstrap(classes=[OrderService], services=[OrderService()])
    listeners = Listeners()
    app2 = ecopy.bootstrap(
        classes=[OrderServiceWithEvent, Listeners],
        services=[OrderServiceWithEvent(), listeners],
    )

    def run_command(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            app.command_bus.send(PlaceOrder(ORDER_ID))
        return perf_counter_ns() - start

    def check_command() -> None:
        result = app.command_bus.send(PlaceOrder(ORDER_ID))
        expect(result == ORDER_ID, f"ecopy command returned {result!r}")

    def run_event(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            app2.command_bus.send(PlaceOrder(ORDER_ID))
        return perf_counter_ns() - start

    def check_event() -> None:
        before = (listeners.tally.first, listeners.tally.second)
        result = app2.command_bus.send(PlaceOrder(ORDER_ID))
        expect(result == ORDER_ID, f"ecopy command + event returned {result!r}")
        after = (listeners.tally.first, listeners.tally.second)
        expect(after == (before[0] + 1, before[1] + 1), f"ecopy event handlers: {before}->{after}")

    return [
        Workload("ecopy", COMMAND, run_command, check_command),
        Workload("ecopy", COMMAND_EVENT, run_event, check_event, tally=listeners.tally),
    ]


# --------------------------------------------------------------------------------------------
# lato (synchronous; messages must subclass lato's pydantic Command / Event)
# --------------------------------------------------------------------------------------------


def build_lato() -> list[Workload]:
    from lato import Application, ApplicationModule, Command, Event, TransactionContext

    class LatoPlaceOrder(Command):
        order_id: str

    class LatoOrderPlaced(Event):
        order_id: str

    # Workload 1: one module with one command handler.
    orders = ApplicationModule("orders")

    @orders.handler(LatoPlaceOrder)
    def place(command: LatoPlaceOrder) -> str:
        return command.order_id

    app = Application("bench_command")
    app.include_submodule(orders)

    # Workload 2: the command handler publishes through its TransactionContext; a second module
    # subscribes two handlers (lato's documented publish/subscribe between modules).
    tally = Tally()
    orders_with_event = ApplicationModule("orders")

    @orders_with_event.handler(LatoPlaceOrder)
    def place_with_event(command: LatoPlaceOrder, ctx: TransactionContext) -> str:
        ctx.publish(LatoOrderPlaced(order_id=command.order_id))
        return command.order_id

    listeners = ApplicationModule("listeners")

    @listeners.handler(LatoOrderPlaced)
    def first(event: LatoOrderPlaced) -> None:
        tally.first += 1

    @listeners.handler(LatoOrderPlaced)
    def second(event: LatoOrderPlaced) -> None:
        tally.second += 1

    app2 = Application("bench_command_event")
    app2.include_submodule(orders_with_event)
    app2.include_submodule(listeners)

    def run_command(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            app.execute(LatoPlaceOrder(order_id=ORDER_ID))
        return perf_counter_ns() - start

    def check_command() -> None:
        result = app.execute(LatoPlaceOrder(order_id=ORDER_ID))
        expect(result == ORDER_ID, f"lato command returned {result!r}")

    def run_event(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            app2.execute(LatoPlaceOrder(order_id=ORDER_ID))
        return perf_counter_ns() - start

    def check_event() -> None:
        before = (tally.first, tally.second)
        result = app2.execute(LatoPlaceOrder(order_id=ORDER_ID))
        expect(result == ORDER_ID, f"lato command + event returned {result!r}")
        after = (tally.first, tally.second)
        expect(after == (before[0] + 1, before[1] + 1), f"lato event handlers: {before}->{after}")

    return [
        Workload("lato", COMMAND, run_command, check_command),
        Workload("lato", COMMAND_EVENT, run_event, check_event, tally=tally),
    ]


# --------------------------------------------------------------------------------------------
# python-cqrs (asyncio; one event loop is reused, the timing runs inside it)
# --------------------------------------------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


def build_python_cqrs() -> list[Workload]:
    import cqrs
    import di
    from cqrs.bootstrap import requests as cqrs_bootstrap
    from cqrs.events import EventMap
    from cqrs.mapping.requests import RequestMap

    # Handlers must return a cqrs.Response (or None): bootstrap always installs
    # LoggingMiddleware, which calls ``response.to_dict()``.
    class CqrsPlaceOrderResult(cqrs.Response):
        order_id: str

    class CqrsPlaceOrder(cqrs.Request[CqrsPlaceOrderResult]):
        order_id: str

    class CqrsOrderPlaced(cqrs.DomainEvent):
        order_id: str

    class PlaceOrderHandler(cqrs.RequestHandler[CqrsPlaceOrder]):
        async def handle(self, request: CqrsPlaceOrder) -> CqrsPlaceOrderResult:
            return CqrsPlaceOrderResult(order_id=request.order_id)

    class PlaceOrderWithEventHandler(cqrs.RequestHandler[CqrsPlaceOrder]):
        def __init__(self) -> None:
            self._events: list[cqrs.IEvent] = []

        @property
        def events(self) -> list[cqrs.IEvent]:
            return self._events

        async def handle(self, request: CqrsPlaceOrder) -> CqrsPlaceOrderResult:
            self._events.append(CqrsOrderPlaced(order_id=request.order_id))
            return CqrsPlaceOrderResult(order_id=request.order_id)

    tally = Tally()

    class FirstListener(cqrs.EventHandler[CqrsOrderPlaced]):
        async def handle(self, event: CqrsOrderPlaced) -> None:
            tally.first += 1

    class SecondListener(cqrs.EventHandler[CqrsOrderPlaced]):
        async def handle(self, event: CqrsOrderPlaced) -> None:
            tally.second += 1

    def commands(mapper: RequestMap[Any]) -> None:
        mapper.bind(CqrsPlaceOrder, PlaceOrderHandler)

    def commands_with_event(mapper: RequestMap[Any]) -> None:
        mapper.bind(CqrsPlaceOrder, PlaceOrderWithEventHandler)

    def domain_events(mapper: EventMap[Any]) -> None:
        mapper.bind(CqrsOrderPlaced, FirstListener)
        mapper.bind(CqrsOrderPlaced, SecondListener)

    mediator = cqrs_bootstrap.bootstrap(di_container=di.Container(), commands_mapper=commands)
    mediator2 = cqrs_bootstrap.bootstrap(
        di_container=di.Container(),
        commands_mapper=commands_with_event,
        domain_events_mapper=domain_events,
    )
    loop = event_loop()

    async def timed_command(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            await mediator.send(CqrsPlaceOrder(ORDER_ID))
        return perf_counter_ns() - start

    async def timed_event(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            await mediator2.send(CqrsPlaceOrder(ORDER_ID))
        return perf_counter_ns() - start

    def check_command() -> None:
        result = loop.run_until_complete(mediator.send(CqrsPlaceOrder(ORDER_ID)))
        expect(
            isinstance(result, CqrsPlaceOrderResult) and result.order_id == ORDER_ID,
            f"python-cqrs command returned {result!r}",
        )

    def check_event() -> None:
        before = (tally.first, tally.second)
        result = loop.run_until_complete(mediator2.send(CqrsPlaceOrder(ORDER_ID)))
        expect(
            isinstance(result, CqrsPlaceOrderResult) and result.order_id == ORDER_ID,
            f"python-cqrs command + event returned {result!r}",
        )
        after = (tally.first, tally.second)
        expect(
            after == (before[0] + 1, before[1] + 1),
            f"python-cqrs event handlers: {before}->{after}",
        )

    def run_command(n: int) -> int:
        return loop.run_until_complete(timed_command(n))

    def run_event(n: int) -> int:
        return loop.run_until_complete(timed_event(n))

    return [
        Workload("python-cqrs", COMMAND, run_command, check_command),
        Workload("python-cqrs", COMMAND, quiet_cqrs_logger(run_command), check_command, QUIET),
        Workload("python-cqrs", COMMAND_EVENT, run_event, check_event, tally=tally),
        Workload(
            "python-cqrs",
            COMMAND_EVENT,
            quiet_cqrs_logger(run_event),
            check_event,
            QUIET,
            tally=tally,
        ),
    ]


QUIET = "cqrs logger at WARNING"


def quiet_cqrs_logger(run: Callable[[int], int]) -> Callable[[int], int]:
    """Runs a python-cqrs workload with the "cqrs" logger raised from DEBUG to WARNING.

    Importing ``cqrs`` sets ``logging.getLogger("cqrs").setLevel(logging.DEBUG)``
    (cqrs/message_brokers/producer.py), so out of the box every ``send`` builds the LogRecords
    of its ``logger.debug`` calls even when nothing is configured to print them. An application
    that notices raises the level; this variant measures that configuration so that the
    comparison is not flattered by python-cqrs' default. The level is changed outside the
    timed region and restored afterwards.
    """

    def run_quietly(n: int) -> int:
        logger = logging.getLogger("cqrs")
        previous = logger.level
        logger.setLevel(logging.WARNING)
        try:
            return run(n)
        finally:
            logger.setLevel(previous)

    return run_quietly


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------

LIBRARIES: list[Library[Workload]] = [
    ("baseline", build_direct, ""),
    ("ecopy", build_ecopy, "is it written yet? `pip install -e .` or run with PYTHONPATH=."),
    ("lato", build_lato, "install benchmarks/requirements.txt"),
    ("python-cqrs", build_python_cqrs, "install benchmarks/requirements.txt"),
]


def verify_counts(workloads: list[Workload]) -> None:
    """Every command must have reached both event handlers exactly once, timed calls included."""
    by_tally: dict[int, tuple[Tally, int, str]] = {}
    for workload in workloads:
        if workload.tally is not None:
            key = id(workload.tally)
            _, calls, _ = by_tally.get(key, (workload.tally, 0, ""))
            by_tally[key] = (workload.tally, calls + workload.calls_made, workload.name)
    for tally, calls, name in by_tally.values():
        expect_tally(tally, calls, name)


def median_us(workload: Workload) -> float:
    return summarize(workload.samples_ns).median_us


def find(workloads: list[Workload], library: str, kind: str, variant: str = "") -> Workload | None:
    for workload in workloads:
        if (workload.library, workload.kind, workload.variant) == (library, kind, variant):
            return workload
    return None


def print_table(workloads: list[Workload]) -> None:
    width = max(len(workload.name) for workload in workloads)
    header = table_header(width)
    print(header)
    print("-" * len(header))
    for kind in (DIRECT, COMMAND, COMMAND_EVENT):
        for workload in workloads:
            if workload.kind != kind:
                continue
            reference = find(workloads, "ecopy", COMMAND if kind == DIRECT else kind)
            ratio = None
            if reference is not None:
                ratio = median_us(workload) / median_us(reference)
            print(table_row(workload.name, width, summarize(workload.samples_ns), ratio))
    print("mean/median/min: over the per-call averages of the timed repeats")
    print("x ecopy: median / median of ecopy's same workload (direct call: vs ecopy command)")


def print_key_ratios(workloads: list[Workload]) -> None:
    print()
    print(f"Key ratios, ecopy / other (target <= {TARGET_RATIO:.2f}: ecopy costs at most 1/4):")
    others = [w for w in workloads if w.library in ("lato", "python-cqrs")]
    width = max((len(w.name) for w in others), default=0)
    for kind in (COMMAND, COMMAND_EVENT):
        ours = find(workloads, "ecopy", kind)
        if ours is None or not others:
            print(f"  {kind}: n/a (ecopy or the other libraries were not measured)")
            continue
        for other in others:
            if other.kind != kind:
                continue
            by_median = median_us(ours) / median_us(other)
            by_min = min(ours.samples_ns) / min(other.samples_ns)
            verdict = "OK" if by_median <= TARGET_RATIO else "MISSED"
            print(
                f"  ecopy vs {other.name:<{width}}  {by_median:6.3f} median  {by_min:6.3f} min"
                f"  (1/{1 / by_median:.1f})  {verdict}"
            )


def print_environment(calls: int, repeats: int, warmup: int) -> None:
    print(python_description())
    for name in ("ecopy", "lato", "python-cqrs", "pydantic", "di"):
        print(f"  {name:<12} {version_of(name)}")
    print(f"{repeats} repeats x {calls} calls per workload (warm-up {warmup} calls), gc enabled")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(
        argv,
        description="Per-call dispatch cost of ecopy vs a direct call, lato and python-cqrs.",
        calls=DEFAULT_CALLS,
        repeats=DEFAULT_REPEATS,
        quick_calls=QUICK_CALLS,
        quick_repeats=QUICK_REPEATS,
    )
    warmup = warmup_calls(args.calls)
    print_environment(args.calls, args.repeats, warmup)

    workloads, unavailable = build_all(LIBRARIES, Workload.call_once)
    try:
        measure(workloads, args.calls, args.repeats, warmup)
    finally:
        if _loop is not None:
            _loop.close()
    verify_counts(workloads)

    print()
    print_table(workloads)
    print_key_ratios(workloads)
    return report_unavailable(unavailable)


if __name__ == "__main__":
    sys.exit(main())
