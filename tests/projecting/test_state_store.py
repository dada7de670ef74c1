"""The in-memory projection state store passes the contract every adapter passes, and keeps a
row locked by a unit of work until the outermost unit ends, whatever becomes of nested ones."""

from __future__ import annotations

import threading

import pytest

from ecopy.messaging.collector import unit_of_work
from ecopy.projecting import InMemoryProjectionStateStore, ProjectionRecord
from tests.contracts.projection_state_contract import (
    DEADLINE_S,
    ProjectionStateContract,
    Rollback,
    Worker,
    until,
    waits_in,
)


class TestInMemoryProjectionStateStore(ProjectionStateContract):
    @pytest.fixture
    def store(self):
        return InMemoryProjectionStateStore()


def test_a_nested_unit_that_fails_leaves_the_row_locked_until_the_outer_unit_ends():
    store = InMemoryProjectionStateStore()
    store.initialize("balances")
    nested_failed, go_on = threading.Event(), threading.Event()

    def outer() -> None:
        with unit_of_work():
            try:
                with unit_of_work():
                    store.claim("balances")
                    raise Rollback
            except Rollback:
                pass  # the outer unit goes on, as a handler catching a nested failure
            nested_failed.set()
            assert go_on.wait(DEADLINE_S)
            store.save(ProjectionRecord("balances", position=1))

    def other() -> ProjectionRecord | None:
        return store.claim("balances")  # outside a unit: waits for the holder, keeps nothing

    holder = Worker(outer)
    holder.start()
    assert nested_failed.wait(DEADLINE_S)
    waiter = Worker(other)
    waiter.start()
    until(lambda: waits_in(waiter, "ecopy/projecting/state.py", "_take"), "the other claim waiting")

    go_on.set()
    holder.finish()

    assert waiter.finish() == ProjectionRecord("balances", position=1)


def test_outside_a_unit_of_work_each_call_commits_and_holds_nothing():
    store = InMemoryProjectionStateStore()
    store.initialize("balances")
    assert store.claim("balances") == ProjectionRecord("balances")

    # Another thread is not kept waiting by a claim made outside any unit of work.
    other = Worker(lambda: store.claim("balances"))
    other.start()
    assert other.finish() == ProjectionRecord("balances")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"status": "paused"}, "status 'paused' is not one of 'ready', 'rebuilding'"),
        ({"position": -1}, "position must be 0 or more"),
        ({"position": "7"}, "position must be an int"),
    ],
)
def test_a_record_refuses_a_status_or_position_the_port_does_not_know(options, problem):
    with pytest.raises((ValueError, TypeError), match=problem):
        ProjectionRecord("balances", **options)
