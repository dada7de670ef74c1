"""The bank of ``tests/projecting/app.py`` for ``ecopy projection``.

Two projections over the accounts: ``totals`` (synchronous: it catches up in every command)
and ``audit`` (``manual_kick_off``, in batches of 2: it waits for ``init``, then ``backfill``).

In memory, every command of a test must see the same system: ``system`` is that one instance,
which a test replaces with a fresh one (``create_system``). ``create_sqlite_bank`` keeps
everything in the SQLite file named by ``BANK_DATABASE_URL``, so that separate ``ecopy``
processes see the same projections, with ``balances`` keeping its read model in a table.
"""

from __future__ import annotations

import os
from typing import Annotated

from ecopy import MessagingSystem, ServiceConfiguration, StoredEvent, bootstrap, event_handler
from ecopy.projecting import ProjectionState, projection
from ecopy_dbal import DbalConfiguration
from tests.projecting.app import Account, Balances, TotalsProjection

DATABASE_URL_VARIABLE = "BANK_DATABASE_URL"


@projection("audit", from_all=True, manual_kick_off=True, batch_size=2)
class Audit:
    """Counts the events by type; fails on the event at ``fail_at_position``."""

    def __init__(self) -> None:
        self.fail_at_position: int | None = None

    @event_handler("*")
    def seen(
        self,
        event: object,
        counts: Annotated[dict[str, int], ProjectionState],
        stored: StoredEvent,
    ) -> dict[str, int]:
        if stored.position == self.fail_at_position:
            raise RuntimeError(f"audit refused the event at {stored.position}")
        name = type(event).__name__
        return {**counts, name: counts.get(name, 0) + 1}


def create_system(totals: TotalsProjection, audit: Audit) -> MessagingSystem:
    return bootstrap(classes=[Account, TotalsProjection, Audit], services=[totals, audit])


system = create_system(TotalsProjection(), Audit())


def create_sqlite_bank() -> MessagingSystem:
    """The bank on the SQLite file named by ``BANK_DATABASE_URL``."""
    return bootstrap(
        classes=[Account, Balances, Audit],
        services=[Balances(), Audit()],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=os.environ[DATABASE_URL_VARIABLE])]
        ),
    )
