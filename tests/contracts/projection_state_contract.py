"""The contract every ``ProjectionStateStore`` adapter passes (contracts/projections.md,
"Position storage port").

Subclass ``ProjectionStateContract`` in a ``test_*.py`` module and override the ``store``
fixture to return a fresh, empty store. A database store also overrides ``unit_of_work`` (its
transaction), ``waits_for_a_lock`` (whether a thread is blocked on a lock another transaction
holds) and, where a reader waits for a writer (SQLite: one transaction at a time),
``readers_wait_for_writers``.

Concurrency is proven without timing: a test holds a row in one thread, polls (with a deadline)
until a second thread is seen waiting for it, then lets the first finish and checks the order.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from pydantic import BaseModel

from ecopy.errors import EcopyError
from ecopy.messaging.collector import unit_of_work
from ecopy.projecting import ProjectionRecord, ProjectionStateStore

#: How long a test waits for a thread to reach a lock before it fails (a hung test, not a
#: measurement: the assertions never depend on how long anything took).
DEADLINE_S = 30.0


class Rollback(Exception):
    """Fails a unit of work in the contract tests."""


@dataclass
class Totals:
    count: int
    by_currency: dict[str, int]


class Summary(BaseModel):
    accounts: list[str]
    open: bool


class Worker(threading.Thread):
    """A thread whose result or exception the test collects with ``finish()``."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._work = work
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._work()
        except BaseException as error:
            self.error = error

    def finish(self) -> Any:
        self.join(DEADLINE_S)
        assert not self.is_alive(), "the worker thread never finished"
        if self.error is not None:
            raise self.error
        return self.result


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {DEADLINE_S} s")
        time.sleep(0.005)


def waits_in(thread: threading.Thread, path: str, function: str) -> bool:
    """Whether ``thread`` is, right now, inside ``function`` of the module ``path``."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == function and code.co_filename.replace("\\", "/").endswith(path):
            return True
        frame = frame.f_back
    return False


def released(event: threading.Event) -> None:
    """Wait for the test to let a holding thread go on."""
    assert event.wait(DEADLINE_S), "the test never let the holding thread go on"


class ProjectionStateContract:
    @pytest.fixture
    def store(self) -> ProjectionStateStore:
        raise NotImplementedError("override the store fixture with a fresh, empty store")

    @pytest.fixture
    def unit_of_work(self):
        """A unit of work of the store's kind: in memory by default; a database transaction
        for a database store (override)."""
        return unit_of_work

    @pytest.fixture
    def waits_for_a_lock(self) -> Callable[[threading.Thread], bool]:
        """Whether a thread is blocked on a row another unit holds (in memory: it is taking
        the row's lock)."""
        return lambda thread: waits_in(thread, "ecopy/projecting/state.py", "_take")

    @pytest.fixture
    def readers_wait_for_writers(self) -> bool:
        return False

    # -- the basics -------------------------------------------------------------------

    def test_it_implements_the_projection_state_store_port(self, store):
        assert isinstance(store, ProjectionStateStore)

    def test_an_empty_store_has_no_rows(self, store):
        assert store.get("balances") is None
        assert store.claim("balances") is None
        assert store.claim("balances", "a-1") is None
        assert store.partitions("balances") == []
        assert store.projections() == []
        assert store.delete("balances") == 0

    def test_initialize_creates_the_row_at_position_zero_once(self, store):
        assert store.initialize("balances") is True
        assert store.initialize("balances") is False

        assert store.get("balances") == ProjectionRecord("balances")
        assert store.get("balances") == ProjectionRecord(
            "balances", "", position=0, state=None, status="ready", checkpoint=None
        )

    def test_initialize_leaves_an_existing_row_as_it_is(self, store):
        store.initialize("balances")
        store.save(ProjectionRecord("balances", position=12, state={"total": 3}))

        assert store.initialize("balances") is False
        expected = ProjectionRecord("balances", position=12, state={"total": 3})
        assert store.get("balances") == expected

    def test_a_partition_is_a_row_of_its_own(self, store):
        assert store.initialize("balances", "a-1") is True
        assert store.initialize("balances", "a-2") is True
        assert store.initialize("balances", "a-1") is False

        store.save(ProjectionRecord("balances", "a-2", position=9))

        assert store.get("balances") is None
        assert store.get("balances", "a-1") == ProjectionRecord("balances", "a-1")
        assert store.get("balances", "a-2") == ProjectionRecord("balances", "a-2", position=9)

    def test_names_and_keys_are_compared_exactly(self, store):
        store.save(ProjectionRecord("Balances", position=1))
        store.save(ProjectionRecord("balances", position=2))
        store.save(ProjectionRecord("balances", "A-1", position=3))
        store.save(ProjectionRecord("balances", "a-1", position=4))
        store.save(ProjectionRecord("balances", "a-1 ", position=5))

        positions = [
            store.get("Balances").position,
            store.get("balances").position,
            store.get("balances", "A-1").position,
            store.get("balances", "a-1").position,
            store.get("balances", "a-1 ").position,
        ]
        assert positions == [1, 2, 3, 4, 5]

    def test_save_then_get_returns_what_was_saved(self, store):
        store.initialize("balances")
        saved = ProjectionRecord(
            "balances", position=1_234_567_890_123, state={"total": 10}, checkpoint=[4, "x"]
        )

        store.save(saved)

        assert store.get("balances") == saved
        assert store.claim("balances") == saved

    def test_save_creates_a_row_that_was_not_initialized(self, store):
        store.save(ProjectionRecord("balances", "a-1", position=4))

        assert store.get("balances", "a-1") == ProjectionRecord("balances", "a-1", position=4)
        assert store.initialize("balances", "a-1") is False

    def test_claim_returns_the_row(self, store):
        store.initialize("balances", "a-1")
        store.save(ProjectionRecord("balances", "a-1", position=3, state={"n": 1}))

        assert store.claim("balances", "a-1") == ProjectionRecord(
            "balances", "a-1", position=3, state={"n": 1}
        )

    def test_claim_of_a_missing_row_returns_none_and_creates_nothing(self, store, unit_of_work):
        with unit_of_work():
            assert store.claim("balances") is None

        assert store.get("balances") is None
        assert store.projections() == []

    # -- state, checkpoint, status ----------------------------------------------------

    @pytest.mark.parametrize(
        "state",
        [
            {"total": 100},
            {
                "by_day": {"2026-03-01": [1, 2.5, None, True, "x"], "2026-03-02": []},
                "names": ["Åsa", "李", "emoji 🙂"],
                "nested": {"a": {"b": {"c": [{"d": -1}]}}},
                "big": 9_007_199_254_740_993,
            },
            [1, "two", {"three": 3}],
            "just text",
            42,
            {},
        ],
        ids=["dict", "nested", "list", "string", "number", "empty"],
    )
    def test_the_state_comes_back_equal(self, store, state):
        store.save(ProjectionRecord("balances", state=state))

        assert store.get("balances").state == state
        assert store.claim("balances").state == state

    def test_a_dataclass_or_pydantic_state_comes_back_as_the_json_of_its_fields(self, store):
        store.save(ProjectionRecord("totals", state=Totals(2, {"EUR": 5})))
        store.save(ProjectionRecord("summary", state=Summary(accounts=["a-1"], open=True)))

        assert store.get("totals").state == {"count": 2, "by_currency": {"EUR": 5}}
        assert store.get("summary").state == {"accounts": ["a-1"], "open": True}

    def test_a_state_that_has_no_json_form_is_refused_and_nothing_is_written(self, store):
        store.save(ProjectionRecord("balances", position=1, state={"ok": True}))

        with pytest.raises(EcopyError, match="balances"):
            store.save(ProjectionRecord("balances", position=2, state={"lock": threading.Lock()}))

        assert store.get("balances") == ProjectionRecord("balances", position=1, state={"ok": True})

    def test_changing_a_returned_state_does_not_change_the_store(self, store):
        state = {"accounts": ["a-1"]}
        store.save(ProjectionRecord("balances", state=state))
        state["accounts"].append("saved? no")

        found = store.get("balances")
        found.state["accounts"].append("changed after reading")

        assert store.get("balances").state == {"accounts": ["a-1"]}
        assert store.claim("balances").state == {"accounts": ["a-1"]}

    @pytest.mark.parametrize(
        "checkpoint",
        [None, {"transaction": 1234, "position": 56}, [3, 4], "opaque-cursor", 7],
        ids=["none", "dict", "list", "string", "number"],
    )
    def test_the_checkpoint_comes_back_equal(self, store, checkpoint):
        store.save(ProjectionRecord("balances", position=5, checkpoint=checkpoint))

        assert store.get("balances").checkpoint == checkpoint
        assert store.claim("balances").checkpoint == checkpoint

    def test_the_status_is_kept(self, store):
        store.initialize("balances")
        store.save(ProjectionRecord("balances", status="rebuilding"))

        assert store.get("balances").status == "rebuilding"

        store.save(ProjectionRecord("balances", position=8, status="ready"))
        assert store.get("balances").status == "ready"

    # -- delete, partitions, projections -----------------------------------------------

    def test_delete_removes_every_row_of_the_projection_and_counts_them(self, store):
        store.initialize("balances")
        store.initialize("balances", "a-1")
        store.initialize("balances", "a-2")
        store.initialize("ledger")
        store.initialize("ledger", "a-1")

        assert store.delete("balances") == 3

        assert store.get("balances") is None
        assert store.get("balances", "a-1") is None
        assert store.partitions("balances") == []
        assert store.projections() == ["ledger"]
        assert store.get("ledger", "a-1") == ProjectionRecord("ledger", "a-1")
        assert store.delete("balances") == 0

    def test_a_deleted_projection_can_be_initialized_afresh(self, store):
        store.save(ProjectionRecord("balances", position=40, state={"total": 1}))
        store.delete("balances")

        assert store.initialize("balances") is True
        assert store.get("balances") == ProjectionRecord("balances")

    def test_partitions_lists_the_keys_other_than_the_global_row_sorted(self, store):
        store.initialize("balances")
        for key in ["b-2", "a-10", "B-1", "a-2", "a-1"]:
            store.initialize("balances", key)
        store.initialize("ledger", "z-9")

        assert store.partitions("balances") == ["B-1", "a-1", "a-10", "a-2", "b-2"]
        assert store.partitions("ledger") == ["z-9"]
        assert store.partitions("unknown") == []

    def test_projections_lists_each_name_once_sorted(self, store):
        store.initialize("ledger", "a-1")
        store.initialize("ledger", "a-2")
        store.initialize("balances")
        store.initialize("Audit")

        assert store.projections() == ["Audit", "balances", "ledger"]

    # -- units of work and transactions ------------------------------------------------

    def test_a_failed_unit_of_work_leaves_the_rows_as_they_were(self, store, unit_of_work):
        store.save(ProjectionRecord("balances", position=5, state={"total": 50}))
        store.save(ProjectionRecord("ledger", "a-1", position=2))
        before = [store.get("balances"), store.get("ledger", "a-1")]

        with pytest.raises(Rollback), unit_of_work():
            claimed = store.claim("balances")
            store.save(replace(claimed, position=9, state={"total": 90}, status="rebuilding"))
            assert store.initialize("audit") is True
            store.save(ProjectionRecord("audit", position=1))
            assert store.delete("ledger") == 1
            assert store.get("balances").position == 9  # the unit sees its own writes
            raise Rollback

        assert [store.get("balances"), store.get("ledger", "a-1")] == before
        assert store.get("audit") is None
        assert store.projections() == ["balances", "ledger"]
        assert store.partitions("ledger") == ["a-1"]

    def test_a_unit_of_work_that_succeeds_keeps_its_writes(self, store, unit_of_work):
        with unit_of_work():
            assert store.initialize("balances") is True
            record = store.claim("balances")
            store.save(replace(record, position=3, state={"total": 30}))

        expected = ProjectionRecord("balances", position=3, state={"total": 30})
        assert store.get("balances") == expected

    def test_initialize_in_a_failed_unit_of_work_creates_nothing(self, store, unit_of_work):
        with pytest.raises(Rollback), unit_of_work():
            assert store.initialize("balances") is True
            raise Rollback

        assert store.get("balances") is None
        assert store.initialize("balances") is True

    def test_a_claimed_row_keeps_a_second_claimer_waiting_until_the_first_unit_ends(
        self, store, unit_of_work, waits_for_a_lock
    ):
        store.initialize("balances")
        claimed, go_on = threading.Event(), threading.Event()
        seen: list[tuple[str, int]] = []

        def first() -> None:
            with unit_of_work():
                record = store.claim("balances")
                seen.append(("first", record.position))
                claimed.set()
                released(go_on)
                store.save(replace(record, position=record.position + 1))

        def second() -> None:
            with unit_of_work():
                record = store.claim("balances")
                seen.append(("second", record.position))
                store.save(replace(record, position=record.position + 1))

        holder = Worker(first)
        holder.start()
        assert claimed.wait(DEADLINE_S)
        waiter = Worker(second)
        waiter.start()
        until(lambda: waits_for_a_lock(waiter), "the second claimer waiting for the row")
        assert seen == [("first", 0)]

        go_on.set()
        holder.finish()
        waiter.finish()

        # The second claim returned the first unit's committed row: no update was lost.
        assert seen == [("first", 0), ("second", 1)]
        assert store.get("balances").position == 2

    def test_a_claim_waiting_on_a_unit_that_fails_gets_the_row_as_it_was(
        self, store, unit_of_work, waits_for_a_lock
    ):
        store.save(ProjectionRecord("balances", position=4, state={"total": 4}))
        saved, go_on = threading.Event(), threading.Event()

        def failing() -> None:
            with unit_of_work():
                record = store.claim("balances")
                store.save(replace(record, position=99, state={"total": 99}))
                saved.set()
                released(go_on)
                raise Rollback

        def second() -> ProjectionRecord:
            with unit_of_work():
                return store.claim("balances")

        holder = Worker(failing)
        holder.start()
        assert saved.wait(DEADLINE_S)
        waiter = Worker(second)
        waiter.start()
        until(lambda: waits_for_a_lock(waiter), "the second claimer waiting for the row")

        go_on.set()
        with pytest.raises(Rollback):
            holder.finish()
        assert waiter.finish() == ProjectionRecord("balances", position=4, state={"total": 4})

    @pytest.mark.parametrize("first_commits", [True, False], ids=["commits", "rolls-back"])
    def test_concurrent_initializes_make_one_row_and_one_of_them_says_so(
        self, store, unit_of_work, waits_for_a_lock, first_commits
    ):
        inserted, go_on = threading.Event(), threading.Event()

        def first() -> bool:
            with unit_of_work():
                created = store.initialize("balances")
                inserted.set()
                released(go_on)
                if not first_commits:
                    raise Rollback
                return created

        def second() -> bool:
            with unit_of_work():
                return store.initialize("balances")

        holder = Worker(first)
        holder.start()
        assert inserted.wait(DEADLINE_S)
        waiter = Worker(second)
        waiter.start()
        until(lambda: waits_for_a_lock(waiter), "the second initialize waiting for the first")

        go_on.set()
        if first_commits:
            assert (holder.finish(), waiter.finish()) == (True, False)
        else:
            with pytest.raises(Rollback):
                holder.finish()
            assert waiter.finish() is True  # the row the first made is gone: the second makes it
        assert store.get("balances") == ProjectionRecord("balances")
        assert store.projections() == ["balances"]

    def test_many_racing_initializes_create_exactly_one_row(self, store, unit_of_work):
        racers = 6
        start = threading.Barrier(racers, timeout=DEADLINE_S)

        def race() -> bool:
            start.wait()
            with unit_of_work():
                return store.initialize("balances", "a-1")

        workers = [Worker(race) for _ in range(racers)]
        for worker in workers:
            worker.start()
        created = [worker.finish() for worker in workers]

        assert created.count(True) == 1
        assert store.partitions("balances") == ["a-1"]

    def test_get_returns_the_committed_row_while_another_unit_writes_it(
        self, store, unit_of_work, readers_wait_for_writers
    ):
        if readers_wait_for_writers:
            pytest.skip("a reader of this store waits for the writer (one transaction at a time)")
        store.save(ProjectionRecord("balances", position=1, state={"total": 1}))
        saved, go_on = threading.Event(), threading.Event()

        def writer() -> None:
            with unit_of_work():
                record = store.claim("balances")
                store.save(replace(record, position=2, state={"total": 2}))
                store.save(ProjectionRecord("balances", "a-1", position=2))
                saved.set()
                released(go_on)

        holder = Worker(writer)
        holder.start()
        assert saved.wait(DEADLINE_S)
        try:
            during = store.get("balances")
            partitions_during = store.partitions("balances")
        finally:
            go_on.set()
            holder.finish()

        assert during == ProjectionRecord("balances", position=1, state={"total": 1})
        assert partitions_during == []
        assert store.get("balances") == ProjectionRecord("balances", position=2, state={"total": 2})
        assert store.partitions("balances") == ["a-1"]
