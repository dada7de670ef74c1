"""Asynchronous messaging and flow-test cost: ecopy in memory, and ecopy vs faststream, in one run.

Run from the repository root with the benchmark venv (see benchmarks/README.md)::

    .venv-bench/bin/python benchmarks/bench_async.py            # full run
    .venv-bench/bin/python benchmarks/bench_async.py --quick    # smoke run
    .venv-bench/bin/python benchmarks/bench_async.py --profile  # cProfile of the throughput run

Two measurements share the run, their repeats interleaved round-robin:

1. **In-memory asynchronous throughput (ecopy only).** ``--events`` events are published to two
   ``@asynchronous("orders")`` event handlers on one ``QueueChannel("orders")``. Each event
   becomes one queued message per handler, serialized to JSON on send and deserialized on
   receive, as across a broker. Then ``app.run("orders", finish_when_no_messages=True)``
   drains the queue. The publish phase, the consume phase and their total are timed
   separately and reported per handled message (2 x events) and as messages per second.
   One application serves every repeat, as a running service would: after each repeat the
   script checks that the consumer handled exactly 2 x events, that each handler ran once per
   event, that the last event arrived intact and that the queue is empty.

2. **Flow-test round trip, "given a command, expect an event".** One iteration sends a command
   whose handler publishes one event, asserts the event that was recorded, and forgets what
   was recorded, as one test of a test suite does. ecopy uses ``bootstrap_flow_testing``
   (``send_command``, ``get_recorded_events()[-1] == OrderPlaced(...)``,
   ``discard_recorded_messages``). faststream uses its in-memory test brokers,
   ``TestKafkaBroker`` and ``TestRabbitBroker``, which need no running broker: a subscriber
   for the command returns the event through ``@broker.publisher``, a subscriber on the event
   topic records it in its ``mock``, and the iteration calls
   ``mock.assert_called_once_with({"order_id": ...})`` and then ``reset_mock()`` on both
   subscribers' mocks (the counterpart of ``discard_recorded_messages``). Both sides are set
   up once. faststream's test-broker context stays open for the whole run, and its timing
   runs inside one event loop, one ``run_until_complete`` per repeat.

Method: see ``timing.py``. One faststream round trip costs tens to hundreds of ecopy round
trips, so faststream's workloads run a fixed fraction of ``--calls`` per repeat (printed in
the header). Every number is per operation, so the counts only set how long a timed repeat
lasts. Each workload is checked once before timing, outside the timed loop.
"""

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Protocol

from timing import (
    Library,
    build_all,
    expect,
    imported_from,
    parse_args,
    python_description,
    ratio_line,
    report_unavailable,
    summarize,
    table_header,
    table_row,
    version_of,
    warmup_calls,
)

ORDER_ID = "o-1"
HANDLERS = 2
"""Asynchronous event handlers per event: every event is two handled messages."""
DEFAULT_EVENTS = 5_000
QUICK_EVENTS = 1_000
DEFAULT_CALLS = 20_000
QUICK_CALLS = 1_000
DEFAULT_REPEATS = 7
QUICK_REPEATS = 3
KAFKA_SHARE = 40
"""faststream's TestKafkaBroker runs ``calls // KAFKA_SHARE`` round trips per timed repeat."""
RABBIT_SHARE = 200
"""faststream's TestRabbitBroker runs ``calls // RABBIT_SHARE`` round trips per timed repeat."""
MIN_ROUND_TRIPS = 20
PROFILE_LINES = 25
FLOW = "flow test round trip"
KAFKA = "TestKafkaBroker"
RABBIT = "TestRabbitBroker"


class Measured(Protocol):
    library: str

    def warm_up(self) -> None: ...

    def timed_repeat(self) -> None:
        """Runs one timed repeat and records its samples."""
        ...

    def check(self) -> None:
        """One operation outside the timed loop, with its result asserted."""
        ...


# --------------------------------------------------------------------------------------------
# 1. ecopy: in-memory asynchronous throughput
# --------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    """Publish ``events`` events to two asynchronous handlers, then drain the queue."""

    publish_all: Callable[[int], int]
    """Publishes ``n`` events; returns the elapsed nanoseconds."""
    consume_all: Callable[[], tuple[int, int]]
    """Runs the consumer until the queue is empty; returns (messages handled, nanoseconds)."""
    verify: Callable[[int, int], None]
    """Checks a finished round of ``n`` events that the consumer reported ``handled`` for."""
    events: int
    library: str = "ecopy"
    publish_ns: list[float] = field(default_factory=list)
    """Publish-phase nanoseconds per handled message, one entry per timed repeat."""
    consume_ns: list[float] = field(default_factory=list)
    """Consume-phase nanoseconds per handled message, one entry per timed repeat."""
    total_ns: list[float] = field(default_factory=list)
    """Both phases, nanoseconds per handled message, one entry per timed repeat."""

    def round(self, n: int) -> tuple[int, int]:
        published = self.publish_all(n)
        handled, consumed = self.consume_all()
        self.verify(n, handled)
        return published, consumed

    def warm_up(self) -> None:
        self.round(warmup_calls(self.events))

    def timed_repeat(self) -> None:
        published, consumed = self.round(self.events)
        messages = self.events * HANDLERS
        self.publish_ns.append(published / messages)
        self.consume_ns.append(consumed / messages)
        self.total_ns.append((published + consumed) / messages)

    def check(self) -> None:
        self.round(1)


@dataclass(frozen=True)
class EcopyOrderPlaced:
    order_id: str


def build_ecopy_throughput(events: int) -> Throughput:
    import ecopy
    from ecopy import QueueChannel, ServiceConfiguration, asynchronous, event_handler

    class Listeners:
        def __init__(self) -> None:
            self.first = 0
            self.second = 0
            self.last_first: EcopyOrderPlaced | None = None
            self.last_second: EcopyOrderPlaced | None = None

        @asynchronous("orders")
        @event_handler(endpoint_id="first")
        def on_first(self, event: EcopyOrderPlaced) -> None:
            self.first += 1
            self.last_first = event

        @asynchronous("orders")
        @event_handler(endpoint_id="second")
        def on_second(self, event: EcopyOrderPlaced) -> None:
            self.second += 1
            self.last_second = event

    listeners = Listeners()
    app = ecopy.bootstrap(
        classes=[Listeners],
        services=[listeners],
        config=ServiceConfiguration(extensions=[QueueChannel("orders")]),
    )
    event_bus = app.event_bus
    queue: Any = app.channel("orders")
    seen = {"first": 0, "second": 0}

    def publish_all(n: int) -> int:
        publish = event_bus.publish
        start = perf_counter_ns()
        for i in range(n):
            publish(EcopyOrderPlaced(f"o-{i}"))
        return perf_counter_ns() - start

    def consume_all() -> tuple[int, int]:
        start = perf_counter_ns()
        handled = app.run("orders", finish_when_no_messages=True)
        return handled, perf_counter_ns() - start

    def verify(n: int, handled: int) -> None:
        expect(handled == n * HANDLERS, f"ecopy consumer handled {handled} for {n} events")
        ran = (listeners.first - seen["first"], listeners.second - seen["second"])
        expect(ran == (n, n), f"ecopy asynchronous handlers ran {ran} times for {n} events")
        seen["first"], seen["second"] = listeners.first, listeners.second
        last = EcopyOrderPlaced(f"o-{n - 1}")
        expect(
            listeners.last_first == last and listeners.last_second == last,
            f"ecopy handlers last received {listeners.last_first!r} and "
            f"{listeners.last_second!r}, expected {last!r}",
        )
        expect(len(queue) == 0, f"ecopy queue not drained: {queue!r}")

    return Throughput(publish_all, consume_all, verify, events)


# --------------------------------------------------------------------------------------------
# 2. Flow-test round trip: ecopy and faststream
# --------------------------------------------------------------------------------------------


@dataclass
class RoundTrip:
    library: str
    variant: str
    run: Callable[[int], int]
    """Runs ``n`` round trips and returns the elapsed nanoseconds."""
    check_once: Callable[[], None]
    operations: int
    """Round trips per timed repeat."""
    samples_ns: list[float] = field(default_factory=list)
    """Nanoseconds per round trip, one entry per timed repeat."""

    @property
    def name(self) -> str:
        return f"{self.library} {FLOW}" + (f" ({self.variant})" if self.variant else "")

    def warm_up(self) -> None:
        self.run(warmup_calls(self.operations))

    def timed_repeat(self) -> None:
        self.samples_ns.append(self.run(self.operations) / self.operations)

    def check(self) -> None:
        self.check_once()


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


def build_ecopy_flow(calls: int) -> RoundTrip:
    from ecopy import EventBus, command_handler
    from ecopy.testing import bootstrap_flow_testing

    class Orders:
        @command_handler
        def place(self, command: PlaceOrder, events: EventBus) -> None:
            events.publish(OrderPlaced(command.order_id))

    flow = bootstrap_flow_testing(classes=[Orders], services=[Orders()])

    def run(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            flow.send_command(PlaceOrder(ORDER_ID))
            expect(flow.get_recorded_events()[-1] == OrderPlaced(ORDER_ID), "wrong event")
            flow.discard_recorded_messages()
        return perf_counter_ns() - start

    def check() -> None:
        flow.send_command(PlaceOrder(ORDER_ID))
        commands, events = flow.get_recorded_commands(), flow.get_recorded_events()
        expect(commands == [PlaceOrder(ORDER_ID)], f"ecopy flow recorded commands {commands!r}")
        expect(events == [OrderPlaced(ORDER_ID)], f"ecopy flow recorded events {events!r}")
        flow.discard_recorded_messages()
        expect(flow.get_recorded_events() == [], "ecopy flow kept events after a discard")

    return RoundTrip("ecopy", "", run, check, calls)


_loop: asyncio.AbstractEventLoop | None = None
_open_contexts: list[Any] = []
"""faststream test-broker contexts, entered once and exited when the run ends."""


def event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


def close_faststream() -> None:
    loop = _loop
    if loop is None:
        return
    while _open_contexts:
        loop.run_until_complete(_open_contexts.pop().__aexit__(None, None, None))
    loop.close()


def faststream_round_trip(broker: Any, test_broker: type[Any]) -> Any:
    """The same application for every faststream broker: ``place-order`` -> ``order-placed``."""
    from pydantic import BaseModel

    class FsPlaceOrder(BaseModel):
        order_id: str

    class FsOrderPlaced(BaseModel):
        order_id: str

    @broker.subscriber("place-order")
    @broker.publisher("order-placed")
    async def place(command: FsPlaceOrder) -> FsOrderPlaced:
        return FsOrderPlaced(order_id=command.order_id)

    @broker.subscriber("order-placed")
    async def on_placed(event: FsOrderPlaced) -> None:
        pass

    loop = event_loop()
    context = test_broker(broker)
    client = loop.run_until_complete(context.__aenter__())
    _open_contexts.append(context)
    expected = {"order_id": ORDER_ID}

    async def timed(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            await client.publish(FsPlaceOrder(order_id=ORDER_ID), "place-order")
            on_placed.mock.assert_called_once_with(expected)
            on_placed.mock.reset_mock()
            place.mock.reset_mock()
        return perf_counter_ns() - start

    async def once() -> None:
        await client.publish(FsPlaceOrder(order_id=ORDER_ID), "place-order")
        place.mock.assert_called_once_with(expected)
        on_placed.mock.assert_called_once_with(expected)
        on_placed.mock.reset_mock()
        place.mock.reset_mock()
        on_placed.mock.assert_not_called()

    def run(n: int) -> int:
        return loop.run_until_complete(timed(n))

    def check() -> None:
        loop.run_until_complete(once())

    return run, check


def build_faststream_kafka(calls: int) -> RoundTrip:
    from faststream.kafka import KafkaBroker, TestKafkaBroker

    run, check = faststream_round_trip(KafkaBroker(), TestKafkaBroker)
    return RoundTrip("faststream", KAFKA, run, check, faststream_calls(calls, KAFKA_SHARE))


def build_faststream_rabbit(calls: int) -> RoundTrip:
    from faststream.rabbit import RabbitBroker, TestRabbitBroker

    run, check = faststream_round_trip(RabbitBroker(), TestRabbitBroker)
    return RoundTrip("faststream", RABBIT, run, check, faststream_calls(calls, RABBIT_SHARE))


def faststream_calls(calls: int, share: int) -> int:
    return max(MIN_ROUND_TRIPS, calls // share)


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------


def libraries(events: int, calls: int) -> list[Library[Measured]]:
    hint = "install benchmarks/requirements.txt"

    def ecopy() -> list[Measured]:
        return [build_ecopy_throughput(events), build_ecopy_flow(calls)]

    return [
        ("ecopy", ecopy, "is it written yet? `pip install -e .` or run with PYTHONPATH=."),
        (f"faststream {KAFKA}", lambda: [build_faststream_kafka(calls)], hint),
        (f"faststream {RABBIT}", lambda: [build_faststream_rabbit(calls)], hint),
    ]


def measure_all(workloads: Sequence[Measured], repeats: int) -> None:
    """``timing.measure`` with a count of operations of each workload's own."""
    for workload in workloads:
        workload.warm_up()
    for repeat in range(repeats):
        for workload in workloads:
            gc.collect()
            workload.timed_repeat()
        sys.stdout.flush()
        print(f"  repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)


def print_throughput(throughput: Throughput) -> None:
    messages = throughput.events * HANDLERS
    print(
        f"1. In-memory asynchronous throughput (ecopy): {throughput.events} events x "
        f"{HANDLERS} asynchronous handlers = {messages} handled messages per repeat"
    )
    header = (
        f"{'phase':<8}  {'median msg/s':>12} {'mean µs/msg':>12} {'median µs/msg':>14} "
        f"{'min µs/msg':>11}"
    )
    print(header)
    print("-" * len(header))
    for phase, samples in (
        ("publish", throughput.publish_ns),
        ("consume", throughput.consume_ns),
        ("total", throughput.total_ns),
    ):
        summary = summarize(samples)
        rate = 1_000_000 / summary.median_us
        print(
            f"{phase:<8}  {rate:>12,.0f} {summary.mean_us:>12.3f} {summary.median_us:>14.3f} "
            f"{summary.min_us:>11.3f}"
        )
    print("µs per handled message; msg/s = 1 / median; one publish puts 2 messages on the queue")


def print_round_trips(round_trips: Sequence[RoundTrip]) -> None:
    print('2. Flow-test round trip "given a command, expect an event"')
    width = max(len(workload.name) for workload in round_trips)
    header = table_header(width) + f" {'per repeat':>10}"
    print(header)
    print("-" * len(header))
    ours = next((w for w in round_trips if w.library == "ecopy"), None)
    for workload in round_trips:
        summary = summarize(workload.samples_ns)
        ratio = None
        if ours is not None:
            ratio = summary.median_us / summarize(ours.samples_ns).median_us
        print(f"{table_row(workload.name, width, summary, ratio)} {workload.operations:>10}")
    print("µs per round trip; mean/median/min over the per-round-trip averages of the repeats")
    print("x ecopy: median / ecopy's median; per repeat: round trips in one timed repeat")


def print_key_ratios(round_trips: Sequence[RoundTrip]) -> None:
    print()
    print("Key ratios, ecopy / faststream, flow-test round trip (below 1: ecopy is faster):")
    ours = next((w for w in round_trips if w.library == "ecopy"), None)
    others = [w for w in round_trips if w.library == "faststream"]
    if ours is None or not others:
        print("  n/a (ecopy or faststream was not measured)")
        return
    width = max(len(w.variant) for w in others)
    for other in others:
        label = f"ecopy vs faststream {other.variant:<{width}}"
        print(ratio_line(label, summarize(ours.samples_ns), summarize(other.samples_ns)))


def print_environment(events: int, calls: int, repeats: int) -> None:
    print(python_description())
    print(f"  {'ecopy':<13} {version_of('ecopy')}  ({imported_from('ecopy')})")
    for name in ("faststream", "fast-depends", "pydantic", "aiokafka", "aio-pika"):
        print(f"  {name:<13} {version_of(name)}")
    print(
        f"{repeats} repeats, gc enabled; throughput: {events} events per repeat (warm-up "
        f"{warmup_calls(events)}); round trips per repeat: ecopy {calls}, faststream "
        f"{KAFKA} {faststream_calls(calls, KAFKA_SHARE)}, "
        f"{RABBIT} {faststream_calls(calls, RABBIT_SHARE)} (warm-up: a tenth, at least 100)"
    )
    print(flush=True)


def profile_throughput(events: int) -> int:
    """cProfile one publish + consume round of the throughput workload, after a warm-up."""
    throughput = build_ecopy_throughput(events)
    throughput.check()
    throughput.warm_up()
    profiler = cProfile.Profile()
    profiler.enable()
    throughput.round(events)
    profiler.disable()
    print(f"cProfile of one throughput round: {events} events, {events * HANDLERS} messages")
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(PROFILE_LINES)
    stats.sort_stats("cumulative").print_stats(PROFILE_LINES)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help=f"events published per timed throughput repeat (default {DEFAULT_EVENTS}; "
        f"{QUICK_EVENTS} with --quick)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print a cProfile of one throughput round of --events events instead of timing",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(
        argv,
        description="ecopy's in-memory asynchronous throughput, and its flow-test round trip "
        "vs faststream's test brokers.",
        calls=DEFAULT_CALLS,
        repeats=DEFAULT_REPEATS,
        quick_calls=QUICK_CALLS,
        quick_repeats=QUICK_REPEATS,
        unit="ecopy flow-test round trips",
        extra_arguments=add_arguments,
    )
    events = (
        args.events if args.events is not None else (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    )
    if events < 1:
        print("--events must be positive", file=sys.stderr)
        return 2
    if args.profile:
        return profile_throughput(events)
    print_environment(events, args.calls, args.repeats)

    try:
        workloads, unavailable = build_all(libraries(events, args.calls), lambda w: w.check())
        measure_all(workloads, args.repeats)
    finally:
        close_faststream()

    print()
    throughput = [w for w in workloads if isinstance(w, Throughput)]
    round_trips = [w for w in workloads if isinstance(w, RoundTrip)]
    for workload in throughput:
        print_throughput(workload)
        print()
    if round_trips:
        print_round_trips(round_trips)
    print_key_ratios(round_trips)
    return report_unavailable(unavailable)


if __name__ == "__main__":
    sys.exit(main())
