"""A small application for the graceful-stop test: its consumer handles messages slowly.

``python -m tests.asynchronous.slow_app RELEASE_FILE`` queues two messages and runs the
``work`` consumer with no limit. The handler prints ``started N``, then holds the message
until ``RELEASE_FILE`` exists (bounded), then prints ``finished N``. When the run returns, the
process prints ``stopped after N`` and exits.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ecopy
from ecopy import QueueChannel, ServiceConfiguration, asynchronous, command_handler

HOLD_AT_MOST_SECONDS = 20


@dataclass(frozen=True)
class Work:
    number: int
    release_file: str


class SlowWorker:
    @asynchronous("work")
    @command_handler
    def work(self, command: Work) -> None:
        print(f"started {command.number}", flush=True)
        deadline = time.monotonic() + HOLD_AT_MOST_SECONDS
        while not Path(command.release_file).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        print(f"finished {command.number}", flush=True)


def main(release_file: str) -> None:
    app = ecopy.bootstrap(
        classes=[SlowWorker],
        config=ServiceConfiguration(extensions=[QueueChannel("work")]),
    )
    app.command_bus.send(Work(1, release_file))
    app.command_bus.send(Work(2, release_file))
    handled = app.run("work")
    print(f"stopped after {handled}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
