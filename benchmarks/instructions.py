"""Instructions per operation of ecopy's in-memory hot paths, counted by valgrind's callgrind.

Timings on a shared machine move by tens of percent from one run to the next; instruction
counts do not (the same program, input and environment give the same count). This script runs
a small workload under ``valgrind --tool=callgrind`` at two sizes and divides the difference
by the difference in operations, so start-up and imports cancel out:

    python benchmarks/instructions.py                                  # this checkout
    PYTHONPATH=/path/to/other/checkout python benchmarks/instructions.py   # another version

Workloads: ``command`` (``command_bus.send`` of a command whose handler publishes an event to
two synchronous handlers), ``publish`` (an event with two ``@asynchronous`` handlers on a
``QueueChannel``: two messages serialized) and ``consume`` (``app.run`` of those messages:
per message taken, deserialized and handled).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import ecopy
from ecopy import (
    EventBus,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    event_handler,
)

SIZES = (3000, 6000)


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


class Orders:
    @command_handler
    def place(self, command: PlaceOrder, events: EventBus) -> str:
        events.publish(OrderPlaced(command.order_id))
        return command.order_id

    @event_handler
    def first(self, event: OrderPlaced) -> None:
        pass

    @event_handler
    def second(self, event: OrderPlaced) -> None:
        pass


class Notifications:
    def __init__(self) -> None:
        self.handled = 0

    @asynchronous("orders")
    @event_handler(endpoint_id="first")
    def first(self, event: OrderPlaced) -> None:
        self.handled += 1

    @asynchronous("orders")
    @event_handler(endpoint_id="second")
    def second(self, event: OrderPlaced) -> None:
        self.handled += 1


def workload(name: str, n: int) -> None:
    """What one measured process does: ``n`` operations of ``name`` (plus their set-up)."""
    if name == "command":
        app = ecopy.bootstrap(classes=[Orders], services=[Orders()])
        for _ in range(n):
            app.command_bus.send(PlaceOrder("o-1"))
        return
    notifications = Notifications()
    app = ecopy.bootstrap(
        classes=[Notifications],
        services=[notifications],
        config=ServiceConfiguration(extensions=[QueueChannel("orders")]),
    )
    # "consume" publishes n/2 events (n messages) and consumes them; "publish" publishes as
    # many and consumes none, so consume = the first minus the second.
    for i in range(n // 2):
        app.event_bus.publish(OrderPlaced(f"o-{i}"))
    if name == "consume":
        assert app.run("orders", finish_when_no_messages=True) == n
        assert notifications.handled == n


def instructions(*arguments: str) -> int:
    with tempfile.TemporaryDirectory() as directory:
        completed = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={directory}/callgrind.out",
                sys.executable,
                __file__,
                *arguments,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict and set layouts each run
        )
    found = re.search(r"Collected : (\d+)", completed.stderr)
    assert found is not None, completed.stderr
    return int(found.group(1))


def per_operation(name: str) -> float:
    small, large = SIZES
    if name == "consume":
        consumed = [
            instructions("consume", str(n)) - instructions("publish", str(n)) for n in SIZES
        ]
        return (consumed[1] - consumed[0]) / (large - small)
    counts = [instructions(name, str(n)) for n in SIZES]
    operations = large - small if name == "command" else (large - small) // 2
    return (counts[1] - counts[0]) / operations


def main() -> None:
    if len(sys.argv) == 3:  # inside valgrind
        workload(sys.argv[1], int(sys.argv[2]))
        return
    print(f"ecopy from {os.path.dirname(ecopy.__file__)}")
    print(f"command: {per_operation('command'):,.0f} instructions per command (+ event)")
    print(f"publish: {per_operation('publish'):,.0f} instructions per event (2 messages sent)")
    print(f"consume: {per_operation('consume'):,.0f} instructions per message consumed")


if __name__ == "__main__":
    main()
