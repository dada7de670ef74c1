"""Does appending to the event store slow down as a stream grows? (PostgreSQL)

    .venv-bench/bin/python benchmarks/append_growth.py [--rounds 6] [--commands 200]

Each command creates a new event-sourced aggregate with 10 events, all in one stream; the
script prints the mean time per command for each round of ``--commands`` commands, and the
statements that took the most time in it. The time per command must stay flat: the version
check of an append reads one index entry, whatever the size of the stream. It uses its own
database, ``ecopy_append_growth`` (dropped first and at the end), on ``$ECOPY_POSTGRES_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa

import ecopy
from ecopy import (
    Identifier,
    ServiceConfiguration,
    command_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
)
from ecopy_dbal import Database, DbalConfiguration

SERVER = os.environ.get("ECOPY_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATABASE = "ecopy_append_growth"


@dataclass(frozen=True)
class Open:
    account_id: str


@dataclass(frozen=True)
class Opened:
    account_id: str


@dataclass(frozen=True)
class Deposited:
    account_id: str
    amount: int


@event_sourcing_aggregate
class Account:
    account_id: Annotated[str, Identifier]

    @command_handler
    @staticmethod
    def open(command: Open) -> list[object]:
        return [Opened(command.account_id), *(Deposited(command.account_id, n) for n in range(9))]

    @event_sourcing_handler
    def opened(self, event: Opened) -> None:
        self.account_id = event.account_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--commands", type=int, default=200)
    args = parser.parse_args()
    admin = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    url = sa.make_url(SERVER).set(database=DATABASE).render_as_string(hide_password=False)
    try:
        run(url, args.rounds, args.commands)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.dispose()


def run(url: str, rounds: int, commands: int) -> None:
    extensions = [DbalConfiguration(url=url, auto_setup=True)]
    with ecopy.bootstrap(
        classes=[Account], config=ServiceConfiguration(extensions=extensions)
    ) as app:
        spent: dict[str, float] = defaultdict(float)
        engine = app.require_service(Database).engine

        @sa.event.listens_for(engine, "before_cursor_execute")
        def started(connection: Any, *_: Any) -> None:
            connection.info["started"] = time.perf_counter()

        @sa.event.listens_for(engine, "after_cursor_execute")
        def ended(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
            spent[" ".join(statement.split())[:70]] += (
                time.perf_counter() - connection.info["started"]
            )

        index = 0
        for round_number in range(1, rounds + 1):
            spent.clear()
            start = time.perf_counter()
            for _ in range(commands):
                app.command_bus.send(Open(f"acc-{index:07d}"))
                index += 1
            per_command = (time.perf_counter() - start) / commands * 1000
            print(f"round {round_number} ({index * 10} events): {per_command:.2f} ms/command")
            for statement, seconds in sorted(spent.items(), key=lambda kv: -kv[1])[:2]:
                print(f"    {seconds / commands * 1000:.3f} ms  {statement}")


if __name__ == "__main__":
    main()
