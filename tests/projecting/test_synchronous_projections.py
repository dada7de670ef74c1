"""Synchronous, global projections over the event store (issue 11, first slice): they catch
up in the command's transaction, keep their state and position together, and never apply a
batch by half. The same scenarios run in memory (flow tests) and on SQLite, PostgreSQL and
MariaDB."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

import pytest
import sqlalchemy as sa

from ecopy import (
    ConfigurationError,
    EcopyError,
    Header,
    Identifier,
    ServiceConfiguration,
    aggregate,
    bootstrap,
    command_handler,
    event_handler,
)
from ecopy.projecting import ProjectionNotFound, ProjectionState, ProjectionStatus, projection
from ecopy.testing import bootstrap_flow_testing
from ecopy_dbal import Database, DbalConfiguration
from tests.projecting.app import (
    Account,
    AccountOpened,
    Balances,
    Deposit,
    MoneyDeposited,
    OpenAccount,
    Totals,
    TotalsProjection,
)


@pytest.fixture
def totals():
    return TotalsProjection()


@pytest.fixture
def flow(totals):
    return bootstrap_flow_testing(classes=[Account, TotalsProjection], services=[totals])


# -- in memory ---------------------------------------------------------------------------------


def test_a_synchronous_projection_is_up_to_date_when_the_command_returns(flow, totals):
    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 30))
    flow.send_command(OpenAccount("a-2")).send_command(Deposit("a-2", 12))

    assert flow.get_projection_state("totals") == Totals(accounts=2, deposited=42)
    assert totals.journal == [
        "init",
        "flush",
        "deposit 30 at 2",
        "flush",
        "flush",
        "deposit 12 at 4",
        "flush",
    ]


def test_its_status_tells_position_head_and_lag(flow):
    assert flow.projections.status("totals") == ProjectionStatus(
        "totals", "synchronous", False, "uninitialized", None, 0, 0, 0
    )

    flow.send_command(OpenAccount("a-1"))

    assert flow.projections.status("totals") == ProjectionStatus(
        "totals", "synchronous", False, "ready", 1, 1, 0, 0
    )
    assert [s.name for s in flow.projections.list()] == ["totals"]


def test_a_failing_projection_handler_fails_the_command_and_keeps_nothing(flow, totals):
    flow.send_command(OpenAccount("a-1"))
    totals.fail_on_amount = 13

    with pytest.raises(ValueError, match="cannot project 13") as raised:
        flow.send_command(Deposit("a-1", 13))

    assert (
        "ecopy: raised by projection 'totals', handler "
        "tests.projecting.app.TotalsProjection.deposited, on event "
        "tests.projecting.app.MoneyDeposited at position 2 (stream 'tests.projecting.app.Account', "
        "aggregate 'a-1'); the batch was rolled back and the position did not move"
    ) in raised.value.__notes__
    assert flow.get_projection_state("totals") == Totals(accounts=1, deposited=0)
    assert flow.projections.status("totals").position == 1
    assert flow.projections.status("totals").head == 1  # the event was not stored either


def test_rebuild_handles_every_event_again_after_the_reset_hook(flow, totals):
    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 5))
    totals.journal.clear()

    flow.rebuild_projection("totals")

    assert flow.get_projection_state("totals") == Totals(accounts=1, deposited=5)
    assert totals.journal == ["reset", "deposit 5 at 2", "flush"]
    assert flow.projections.status("totals").status == "ready"


def test_a_failed_rebuild_leaves_the_state_and_position_as_they_were(flow, totals):
    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 13))
    totals.fail_on_amount = 13

    with pytest.raises(ValueError):
        flow.rebuild_projection("totals")

    assert flow.get_projection_state("totals") == Totals(accounts=1, deposited=13)
    assert flow.projections.status("totals").position == 2
    assert flow.projections.status("totals").status == "ready"


def test_reset_and_delete_run_their_hooks_and_the_next_trigger_starts_afresh(flow, totals):
    flow.send_command(OpenAccount("a-1"))

    flow.reset_projection("totals")
    assert flow.get_projection_state("totals") == Totals()
    assert flow.projections.status("totals").position == 0

    flow.delete_projection("totals")
    assert flow.projections.status("totals").status == "uninitialized"

    flow.trigger_projection("totals")
    assert flow.get_projection_state("totals") == Totals(accounts=1)
    assert totals.journal == ["init", "flush", "reset", "delete", "init", "flush"]


def test_given_history_is_projected(flow):
    flow.with_events_for(Account, "a-9", [AccountOpened("a-9"), MoneyDeposited("a-9", 7)])

    assert flow.get_projection_state("totals") == Totals(accounts=1, deposited=7)


def test_an_unknown_projection_names_the_known_ones(flow):
    with pytest.raises(ProjectionNotFound) as raised:
        flow.projections.status("totalz")

    assert str(raised.value) == "no projection named 'totalz'; known projections: totals"


@projection("late", from_all=True, manual_kick_off=True, batch_size=2)
class LateStarter:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @event_handler("*")
    def any_event(self, event: object, state: Annotated[dict[str, int], ProjectionState]) -> dict:
        name = type(event).__name__
        self.seen.append(name)
        return {**state, name: state.get(name, 0) + 1}


def test_a_manual_kick_off_projection_waits_for_init_then_backfills_everything_in_batches():
    late = LateStarter()
    flow = bootstrap_flow_testing(classes=[Account, LateStarter], services=[late])
    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 1))
    flow.send_command(Deposit("a-1", 2))
    assert late.seen == []
    assert flow.projections.status("late").status == "uninitialized"

    assert flow.projections.init("late") is True
    assert flow.projections.init("late") is False
    assert flow.projections.backfill("late") == 3

    assert flow.get_projection_state("late") == {"AccountOpened": 1, "MoneyDeposited": 2}


# -- on the databases ------------------------------------------------------------------------


@pytest.fixture
def bank(database_url):
    totals = TotalsProjection()
    app = bootstrap(
        classes=[Account, TotalsProjection, Balances],
        services=[totals, Balances()],
        config=ServiceConfiguration(extensions=[DbalConfiguration(url=database_url)]),
    )
    yield app, totals
    app.projections.delete("balances")
    app.close()


def test_on_a_database_the_read_model_commits_with_the_command(bank):
    app, totals = bank
    app.command_bus.send(OpenAccount("a-1"))
    app.command_bus.send(Deposit("a-1", 30))
    totals.fail_on_amount = 13

    with pytest.raises(ValueError):
        app.command_bus.send(Deposit("a-1", 13))

    assert app.query_bus.send_with_routing("balance.get", {"account_id": "a-1"}) == 30
    assert app.projections.state("totals") == Totals(accounts=1, deposited=30)
    # positions are global: on a server shared by the session they do not start at 1
    head = app.projections.status("totals").head
    assert app.projections.status("balances").position == head
    assert app.projections.status("totals").position == head
    with app.require_service(Database).transaction() as connection:
        rows = connection.execute(
            sa.text("SELECT projection, position, state FROM ecopy_projections ORDER BY projection")
        ).all()
    names = [name.decode() if isinstance(name, bytes) else name for name, _, _ in rows]
    assert names == ["balances", "totals"]  # MariaDB gives the exact-compare keys as bytes
    assert [position for _, position, _ in rows] == [head, head]
    assert json.loads(rows[1][2]) == {"accounts": 1, "deposited": 30}


def test_on_a_database_a_rebuild_recreates_the_table_contents(bank):
    app, _ = bank
    app.command_bus.send(OpenAccount("a-1"))
    app.command_bus.send(Deposit("a-1", 4))

    assert app.projections.rebuild("balances") == 2

    assert app.query_bus.send_with_routing("balance.get", {"account_id": "a-1"}) == 4


# -- declarations that cannot work ------------------------------------------------------------


@aggregate
@dataclass
class Ledger:
    ledger_id: Annotated[str, Identifier]

    @command_handler
    def touch(self, command: OpenAccount) -> None: ...


@projection("both", from_streams=["x"], from_all=True, batch_size=0)
class TwoSources:
    @event_handler
    def seen(self, event: AccountOpened) -> None: ...


@projection("state-stored", from_streams=[Ledger])
class FromStateStored:
    pass


@projection("mixed", from_all=True)
class MixedStates:
    @event_handler
    def one(self, event: AccountOpened, state: Annotated[Totals, ProjectionState]) -> None: ...

    @event_handler
    def two(self, event: MoneyDeposited, state: Annotated[dict, ProjectionState]) -> None: ...


@projection("both", from_all=True)
class SameName:
    @event_handler
    def seen(self, event: AccountOpened) -> None: ...


def test_declarations_that_cannot_work_are_reported_at_bootstrap():
    with pytest.raises(ConfigurationError) as raised:
        bootstrap(
            classes=[Ledger, TwoSources, FromStateStored, MixedStates, SameName],
            services=[TwoSources(), FromStateStored(), MixedStates(), SameName()],
        )

    assert raised.value.problems == (
        "projection name 'both' is used by TwoSources and SameName; give each projection its "
        "own name",
        "projection 'both' (TwoSources) must read from_streams=[...] or from_all=True "
        "(exactly one of them)",
        "projection 'both' (TwoSources): batch_size must be at least 1, got 0",
        "projection 'state-stored' (FromStateStored) has no @event_handler: give it one for "
        "each event it projects",
        "projection 'state-stored' (FromStateStored) reads from 'Ledger', which is not an "
        "@event_sourcing_aggregate; name event-sourced aggregate classes or stream names",
        "projection 'mixed' (MixedStates): its handlers declare different ProjectionState "
        "types (Totals, dict); they share one state: declare the same type in each",
    )


@projection("headers", from_streams=[Account])
class HeaderWatcher:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, str, int, str]] = []

    @event_handler
    def opened(
        self,
        event: AccountOpened,
        live: Annotated[bool, Header("ecopy.projection.live")],
        name: Annotated[str, Header("ecopy.projection.name")],
        position: Annotated[int, Header("ecopy.event.position")],
        aggregate_type: Annotated[str, Header("aggregate.type")],
    ) -> None:
        self.seen.append((live, name, position, aggregate_type))


def test_handlers_see_the_events_metadata_and_whether_the_projection_is_live():
    watcher = HeaderWatcher()
    flow = bootstrap_flow_testing(classes=[Account, HeaderWatcher], services=[watcher])
    flow.send_command(OpenAccount("a-1"))

    flow.rebuild_projection("headers")

    account = "tests.projecting.app.Account"
    assert watcher.seen == [(True, "headers", 1, account), (False, "headers", 1, account)]


def test_a_stored_event_that_no_longer_converts_stops_the_batch_and_says_where(tmp_path):
    url = f"sqlite:///{tmp_path / 'bank.sqlite3'}"
    config = ServiceConfiguration(extensions=[DbalConfiguration(url=url)])
    with bootstrap(classes=[Account], config=config) as writer:
        writer.command_bus.send(OpenAccount("a-1"))
        writer.command_bus.send(Deposit("a-1", 5))
        with writer.require_service(Database).transaction() as connection:
            connection.execute(  # the stored deposit lost its amount: an older class, say
                sa.text("UPDATE ecopy_events SET payload = :p WHERE version = 2"),
                {"p": '{"account_id": "a-1"}'},
            )
    totals = TotalsProjection()
    with bootstrap(classes=[Account, TotalsProjection], services=[totals], config=config) as app:
        with pytest.raises(EcopyError) as raised:
            app.projections.trigger("totals")

        assert (
            "ecopy: projection 'totals' could not read the stored events after position 0; its "
            "position did not move. Make the event's class accept what was stored (a default "
            "value for a field added since), or give a renamed class its old name with "
            "@named_event, then trigger it again"
        ) in raised.value.__notes__
        assert "(position 2) cannot be read" in str(raised.value)
        assert app.projections.status("totals").status == "uninitialized"  # rolled back
