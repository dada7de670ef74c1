"""The contract every ``EventStore`` adapter passes (DESIGN §2: one abstract suite per port).

Subclass ``EventStoreContract`` in a ``test_*.py`` module and override the ``store`` fixture
to return a fresh, empty store, and ``snapshot_store`` to return the snapshot store kept with
it. The payloads are plain dataclasses (``EVENT_TYPES``) so that a store that serializes them
can register them first; the snapshots are ``Wallet``s (``STATE_TYPES`` of the snapshot
contract).

A store whose transactions run concurrently overrides ``session_of`` and
``waits_for_its_turn`` too, so that the late-commit test can tell when an append waits for an
open transaction.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ecopy import ConcurrencyError, EventStore, NewEvent, StoredEvent
from ecopy.messaging.collector import unit_of_work
from tests.contracts.snapshot_store_contract import Wallet

DEADLINE = 10.0


class Rollback(Exception):
    """Fails a unit of work in the contract tests."""


@dataclass(frozen=True)
class AccountOpened:
    account_id: str
    owner: str


@dataclass(frozen=True)
class MoneyDeposited:
    account_id: str
    amount: int


@dataclass(frozen=True)
class MoneyWithdrawn:
    account_id: str
    amount: int


EVENT_TYPES = (AccountOpened, MoneyDeposited, MoneyWithdrawn)

ACCOUNTS = "bank.account"
CARDS = "bank.card"


def opened(account_id: str = "a-1") -> NewEvent:
    return NewEvent(AccountOpened(account_id, "alice"))


def deposited(amount: int, account_id: str = "a-1") -> NewEvent:
    return NewEvent(MoneyDeposited(account_id, amount))


def identities(events: list[StoredEvent]) -> list[tuple[str, str, int, int]]:
    return [(e.stream, e.aggregate_id, e.version, e.position) for e in events]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {DEADLINE}s for {what}")
        time.sleep(0.01)


def run_in_threads(work: Callable[[int], None], count: int) -> None:
    """``work(0)`` ... ``work(count - 1)`` in threads of their own; the first failure is
    raised here."""
    failures: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "a thread did not finish in time"
    if failures:
        raise failures[0]


class Worker(threading.Thread):
    """Runs ``work`` in a unit of work of its own; remembers the unit's server session (see
    ``session_of``), the result and the error."""

    def __init__(
        self,
        unit_of_work: Callable[[], Any],
        session_of: Callable[[Any], Any],
        work: Callable[[], list[StoredEvent]],
    ) -> None:
        super().__init__(daemon=True)
        self.unit_of_work, self.session_of, self.work = unit_of_work, session_of, work
        self.session: Any = None
        self.stored: list[StoredEvent] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.unit_of_work() as connection:
                self.session = self.session_of(connection)
                self.stored = self.work()
        except BaseException as error:
            self.error = error

    def result(self) -> list[StoredEvent]:
        self.join(DEADLINE)
        assert not self.is_alive(), "the worker did not finish in time"
        if self.error is not None:
            raise self.error
        return self.stored


class EventStoreContract:
    @pytest.fixture
    def store(self) -> EventStore:
        raise NotImplementedError("override the store fixture with a fresh, empty EventStore")

    @pytest.fixture
    def snapshot_store(self):
        raise NotImplementedError(
            "override the snapshot_store fixture with the SnapshotStore kept with the store"
        )

    @pytest.fixture
    def unit_of_work(self):
        """A unit of work of the store's kind: in memory by default; a database transaction
        for a database store (override)."""
        return unit_of_work

    @pytest.fixture
    def session_of(self) -> Callable[[Any], Any]:
        """``session_of(connection)``: what identifies the unit of work whose ``unit_of_work()``
        yielded ``connection``, for ``waits_for_its_turn``; nothing in memory."""
        return lambda connection: None

    @pytest.fixture
    def waits_for_its_turn(self) -> Callable[[Any], bool]:
        """``waits_for_its_turn(session)``: whether that unit of work now waits for another
        one that appended to end (``session`` is ``None`` until it began). In memory an
        append never waits."""
        return lambda session: False

    @pytest.fixture
    def readers_wait_for_writers(self) -> bool:
        """Whether a read waits until an open unit of work that appended has ended (SQLite:
        one transaction at a time). Then the late-commit test reads in a thread."""
        return False

    # -- append and load ----------------------------------------------------------------

    def test_it_implements_the_event_store_port(self, store):
        assert isinstance(store, EventStore)

    def test_an_unknown_aggregate_has_no_events(self, store):
        assert store.load(ACCOUNTS, "nobody") == []

    def test_appended_events_load_back_in_order_numbered_from_one(self, store):
        stored = store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(10), deposited(20)])
        loaded = store.load(ACCOUNTS, "a-1")

        payloads = [
            AccountOpened("a-1", "alice"),
            MoneyDeposited("a-1", 10),
            MoneyDeposited("a-1", 20),
        ]
        assert [e.payload for e in loaded] == payloads
        assert [e.version for e in loaded] == [1, 2, 3]
        assert [e.version for e in stored] == [1, 2, 3]
        assert [e.payload for e in stored] == payloads
        assert {(e.stream, e.aggregate_id) for e in loaded} == {(ACCOUNTS, "a-1")}

    def test_a_later_append_continues_the_numbering(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(10)])

        stored = store.append(ACCOUNTS, "a-1", 2, [deposited(5)])

        assert [e.version for e in stored] == [3]
        assert [e.version for e in store.load(ACCOUNTS, "a-1")] == [1, 2, 3]

    def test_appending_no_events_stores_nothing(self, store):
        assert store.append(ACCOUNTS, "a-1", 0, []) == []

        assert store.load(ACCOUNTS, "a-1") == []
        assert store.read_all() == []
        assert store.aggregate_ids(ACCOUNTS) == []

    def test_aggregates_and_streams_do_not_share_events(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])
        store.append(ACCOUNTS, "a-2", 0, [opened("a-2"), deposited(7, "a-2")])
        store.append(CARDS, "a-1", 0, [deposited(99)])

        assert [e.payload for e in store.load(ACCOUNTS, "a-1")] == [AccountOpened("a-1", "alice")]
        assert [e.version for e in store.load(ACCOUNTS, "a-2")] == [1, 2]
        assert [e.payload for e in store.load(CARDS, "a-1")] == [MoneyDeposited("a-1", 99)]

    def test_loading_from_a_version_skips_the_earlier_events(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(1), deposited(2), deposited(3)])

        assert [e.version for e in store.load(ACCOUNTS, "a-1", from_version=3)] == [3, 4]
        assert [e.payload for e in store.load(ACCOUNTS, "a-1", from_version=4)] == [
            MoneyDeposited("a-1", 3)
        ]
        assert store.load(ACCOUNTS, "a-1", from_version=5) == []

    def test_metadata_travels_with_each_event(self, store):
        metadata = {
            "aggregate.id": "a-1",
            "aggregate.version": 1,
            "correlation_id": "c-1",
            "tenant": "acme",
            "nested": {"list": [1, 2], "flag": True},
        }
        store.append(
            ACCOUNTS, "a-1", 0, [NewEvent(AccountOpened("a-1", "alice"), metadata), deposited(1)]
        )

        first, second = store.load(ACCOUNTS, "a-1")

        assert dict(first.metadata) == metadata
        assert dict(second.metadata) == {}
        assert dict(store.read_all()[0].metadata) == metadata

    # -- optimistic concurrency ------------------------------------------------------------

    def test_appending_to_a_new_aggregate_with_a_nonzero_expected_version_fails(self, store):
        with pytest.raises(ConcurrencyError):
            store.append(ACCOUNTS, "a-1", 1, [opened()])

        assert store.load(ACCOUNTS, "a-1") == []
        assert store.aggregate_ids(ACCOUNTS) == []

    def test_an_append_based_on_a_stale_version_fails_and_stores_nothing(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(10)])

        with pytest.raises(ConcurrencyError):
            store.append(ACCOUNTS, "a-1", 1, [deposited(20), deposited(30)])
        with pytest.raises(ConcurrencyError):
            store.append(ACCOUNTS, "a-1", 0, [opened()])

        assert [e.version for e in store.load(ACCOUNTS, "a-1")] == [1, 2]
        assert len(store.read_all()) == 2

    def test_an_append_ahead_of_the_stream_fails(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened()])

        with pytest.raises(ConcurrencyError):
            store.append(ACCOUNTS, "a-1", 5, [deposited(1)])

        assert len(store.load(ACCOUNTS, "a-1")) == 1

    def test_concurrent_appends_with_the_same_expected_version_let_exactly_one_win(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened()])
        writers = 8
        start = threading.Barrier(writers)
        outcomes: list[str] = []
        lock = threading.Lock()

        def write(amount: int) -> None:
            start.wait()
            try:
                store.append(ACCOUNTS, "a-1", 1, [deposited(amount), deposited(amount)])
                outcome = f"won {amount}"
            except ConcurrencyError:
                outcome = "conflict"
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        winners = [o for o in outcomes if o.startswith("won")]
        assert len(winners) == 1
        assert outcomes.count("conflict") == writers - 1
        amount = int(winners[0].split()[1])
        events = store.load(ACCOUNTS, "a-1")
        assert [e.version for e in events] == [1, 2, 3]
        assert [e.payload for e in events[1:]] == [MoneyDeposited("a-1", amount)] * 2

    def test_concurrent_first_appends_of_one_aggregate_let_exactly_one_win(self, store):
        writers = 6
        start = threading.Barrier(writers)
        wins: list[int] = []
        conflicts: list[int] = []

        def write(n: int) -> None:
            start.wait()
            try:
                store.append(ACCOUNTS, "a-new", 0, [NewEvent(AccountOpened("a-new", f"o{n}"))])
                wins.append(n)
            except ConcurrencyError:
                conflicts.append(n)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(wins) == 1
        assert len(conflicts) == writers - 1
        assert [e.payload.owner for e in store.load(ACCOUNTS, "a-new")] == [f"o{wins[0]}"]
        assert store.aggregate_ids(ACCOUNTS) == ["a-new"]

    # -- streams and aggregates --------------------------------------------------------------

    def test_aggregate_ids_lists_each_aggregate_of_a_stream_once_in_order_of_first_event(
        self, store
    ):
        store.append(ACCOUNTS, "a-2", 0, [opened("a-2")])
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])
        store.append(ACCOUNTS, "a-2", 1, [deposited(1, "a-2")])
        store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])

        assert store.aggregate_ids(ACCOUNTS) == ["a-2", "a-1"]
        assert store.aggregate_ids(CARDS) == ["c-1"]
        assert store.aggregate_ids("unknown.stream") == []

    def test_streams_lists_every_stream_with_events(self, store):
        assert store.streams() == []

        store.append(ACCOUNTS, "a-1", 0, [opened()])
        store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])
        store.append(ACCOUNTS, "a-2", 0, [opened("a-2")])

        assert sorted(store.streams()) == sorted([ACCOUNTS, CARDS])

    # -- reading everything --------------------------------------------------------------

    def test_read_all_returns_every_stream_in_append_order_with_increasing_positions(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
        store.append(CARDS, "c-1", 0, [deposited(2, "c-1")])
        store.append(ACCOUNTS, "a-2", 0, [opened("a-2")])
        store.append(ACCOUNTS, "a-1", 2, [deposited(3, "a-1")])

        events = store.read_all()

        assert [(e.stream, e.aggregate_id, e.version) for e in events] == [
            (ACCOUNTS, "a-1", 1),
            (ACCOUNTS, "a-1", 2),
            (CARDS, "c-1", 1),
            (ACCOUNTS, "a-2", 1),
            (ACCOUNTS, "a-1", 3),
        ]
        positions = [e.position for e in events]
        assert all(p > 0 for p in positions)
        assert all(a < b for a, b in itertools.pairwise(positions))

    def test_appended_events_report_the_positions_read_all_returns(self, store):
        first = store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(1)])
        second = store.append(CARDS, "c-1", 0, [deposited(2, "c-1")])

        assert [e.position for e in [*first, *second]] == [e.position for e in store.read_all()]

    def test_read_all_pages_after_a_position_with_a_limit(self, store):
        for n in range(7):
            store.append(ACCOUNTS, f"a-{n}", 0, [opened(f"a-{n}")])
        everything = store.read_all()

        pages: list[list[str]] = []
        position = 0
        while page := store.read_all(after_position=position, limit=3):
            pages.append([e.aggregate_id for e in page])
            position = page[-1].position

        assert pages == [["a-0", "a-1", "a-2"], ["a-3", "a-4", "a-5"], ["a-6"]]
        assert store.read_all(after_position=everything[-1].position) == []
        assert [e.aggregate_id for e in store.read_all(after_position=everything[2].position)] == [
            "a-3",
            "a-4",
            "a-5",
            "a-6",
        ]
        assert len(store.read_all(limit=2)) == 2

    def test_a_failed_append_leaves_read_all_untouched(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened()])
        before = [(e.position, e.version) for e in store.read_all()]

        with pytest.raises(ConcurrencyError):
            store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(1)])
        store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])

        after = store.read_all()
        assert [(e.position, e.version) for e in after[:1]] == before
        assert [(e.stream, e.version) for e in after] == [(ACCOUNTS, 1), (CARDS, 1)]
        assert after[1].position > after[0].position

    # -- units of work ----------------------------------------------------------------

    def test_an_append_in_a_unit_of_work_that_fails_leaves_no_event(self, store, unit_of_work):
        store.append(CARDS, "c-1", 0, [opened("c-1")])
        with pytest.raises(Rollback), unit_of_work():
            store.append(ACCOUNTS, "a-1", 0, [opened(), deposited(5)])
            raise Rollback

        assert store.load(ACCOUNTS, "a-1") == []
        assert [e.stream for e in store.read_all()] == [CARDS]
        assert "a-1" not in store.aggregate_ids(ACCOUNTS)
        (again,) = store.append(ACCOUNTS, "a-1", 0, [opened()])  # version 0 is free again
        assert again.version == 1

    def test_an_append_in_a_unit_of_work_that_succeeds_stays(self, store, unit_of_work):
        with unit_of_work():
            store.append(ACCOUNTS, "a-1", 0, [opened()])

        assert [e.version for e in store.load(ACCOUNTS, "a-1")] == [1]

    # -- reading some streams, the head, deleting a stream -------------------------------

    def test_read_all_of_some_streams_keeps_the_global_order_after_a_position_with_a_limit(
        self, store
    ):
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])
        store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])
        store.append("bank.loan", "l-1", 0, [deposited(2, "l-1")])
        store.append(ACCOUNTS, "a-2", 0, [opened("a-2")])
        store.append(CARDS, "c-1", 1, [deposited(3, "c-1")])
        store.append(ACCOUNTS, "a-1", 1, [deposited(4, "a-1")])
        everything = store.read_all()

        some = store.read_all(streams=[ACCOUNTS, CARDS])
        accounts = store.read_all(streams=[ACCOUNTS])

        assert identities(some) == identities([e for e in everything if e.stream != "bank.loan"])
        assert identities(accounts) == identities([e for e in everything if e.stream == ACCOUNTS])
        assert [e.aggregate_id for e in store.read_all(limit=2, streams=[CARDS, ACCOUNTS])] == [
            "a-1",
            "c-1",
        ]
        after = some[1].position
        assert identities(store.read_all(after_position=after, limit=2, streams=[ACCOUNTS])) == (
            identities(accounts[1:3])
        )
        assert store.read_all(after_position=some[-1].position, streams=[ACCOUNTS, CARDS]) == []
        assert store.read_all(streams=["unknown.stream"]) == []
        assert store.read_all(streams=[]) == []

    def test_last_position_is_the_highest_position_of_every_stream_or_of_some(self, store):
        assert store.last_position() == 0
        assert store.last_position(streams=[ACCOUNTS]) == 0

        (account,) = store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])
        (card,) = store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])

        assert store.last_position() == card.position
        assert store.last_position(streams=[ACCOUNTS]) == account.position
        assert store.last_position(streams=[CARDS, ACCOUNTS]) == card.position
        assert store.last_position(streams=["unknown.stream"]) == 0
        assert store.last_position(streams=[]) == 0

    def test_count_after_counts_the_events_above_a_position_of_every_stream_or_of_some(self, store):
        assert store.count_after(0) == 0
        (first, _) = store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
        store.append(CARDS, "c-1", 0, [deposited(2, "c-1")])

        assert store.count_after(0) == 3
        assert store.count_after(first.position) == 2
        assert store.count_after(first.position, streams=[ACCOUNTS]) == 1
        assert store.count_after(0, streams=[CARDS, ACCOUNTS]) == 3
        assert store.count_after(0, streams=[]) == 0

    def test_a_failed_append_does_not_move_the_last_position(self, store, unit_of_work):
        (account,) = store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])
        with pytest.raises(Rollback), unit_of_work():
            store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])
            raise Rollback

        assert store.last_position() == account.position
        assert store.last_position(streams=[CARDS]) == 0

    def test_delete_stream_deletes_every_event_of_that_stream_only(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
        store.append(CARDS, "c-1", 0, [deposited(2, "c-1")])
        store.append(ACCOUNTS, "a-2", 0, [opened("a-2")])
        cards = identities(store.read_all(streams=[CARDS]))

        assert store.delete_stream(ACCOUNTS) == 3

        assert identities(store.read_all()) == cards
        assert store.load(ACCOUNTS, "a-1") == []
        assert store.aggregate_ids(ACCOUNTS) == []
        assert store.streams() == [CARDS]
        assert store.last_position(streams=[ACCOUNTS]) == 0
        assert store.delete_stream(ACCOUNTS) == 0
        assert store.delete_stream("unknown.stream") == 0

    def test_a_deleted_stream_starts_again_from_version_one(self, store):
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
        store.delete_stream(ACCOUNTS)

        with pytest.raises(ConcurrencyError):
            store.append(ACCOUNTS, "a-1", 2, [deposited(2, "a-1")])
        (again,) = store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])

        assert again.version == 1
        assert [e.payload for e in store.load(ACCOUNTS, "a-1")] == [AccountOpened("a-1", "alice")]

    def test_positions_are_never_given_again_after_the_last_events_were_deleted(self, store):
        store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])
        deleted = store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
        highest = deleted[-1].position

        store.delete_stream(ACCOUNTS)
        assert store.last_position() < highest
        (card,) = store.append(CARDS, "c-1", 1, [deposited(2, "c-1")])
        (account,) = store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])

        assert highest < card.position < account.position
        assert [e.position for e in store.read_all(after_position=highest)] == [
            card.position,
            account.position,
        ]

    def test_delete_stream_deletes_its_snapshots(self, store, snapshot_store):
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
        snapshot_store.save(ACCOUNTS, "a-1", 2, Wallet("a-1", 1, [1], 2))
        snapshot_store.save(CARDS, "c-1", 1, Wallet("c-1", 5, [5], 1))

        store.delete_stream(ACCOUNTS)

        assert snapshot_store.load(ACCOUNTS, "a-1") is None
        kept = snapshot_store.load(CARDS, "c-1")
        assert kept is not None
        assert kept.version == 1

    def test_a_stream_deleted_in_a_unit_of_work_that_fails_is_back_as_it_was(
        self, store, snapshot_store, unit_of_work
    ):
        store.append(ACCOUNTS, "a-2", 0, [opened("a-2")])
        store.append(CARDS, "c-1", 0, [deposited(1, "c-1")])
        store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
        snapshot_store.save(ACCOUNTS, "a-1", 2, Wallet("a-1", 1, [1], 2))
        before = identities(store.read_all())

        with pytest.raises(Rollback), unit_of_work():
            assert store.delete_stream(ACCOUNTS) == 3
            store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])
            raise Rollback

        assert identities(store.read_all()) == before
        assert store.aggregate_ids(ACCOUNTS) == ["a-2", "a-1"]
        assert [e.version for e in store.load(ACCOUNTS, "a-1")] == [1, 2]
        snapshot = snapshot_store.load(ACCOUNTS, "a-1")
        assert snapshot is not None
        assert snapshot.version == 2
        (next_event,) = store.append(ACCOUNTS, "a-1", 2, [deposited(2, "a-1")])
        assert next_event.position > before[-1][3]

    # -- no event is ever skipped ---------------------------------------------------------

    def test_a_late_commit_never_appears_below_a_position_already_read(
        self, store, unit_of_work, session_of, waits_for_its_turn, readers_wait_for_writers
    ):
        """A appends in a unit of work and stays open; C appends after it in another one;
        reader B reads, A commits, B reads on after its last position. Had C taken a
        position and committed while A was open, B would have read C's position and then
        missed A's lower one for good."""
        (first,) = store.append(ACCOUNTS, "a-0", 0, [opened("a-0")])
        appended, release = threading.Event(), threading.Event()

        def late() -> list[StoredEvent]:
            stored = store.append(CARDS, "c-late", 0, [deposited(1, "c-late")])
            appended.set()
            assert release.wait(DEADLINE), "the test did not release the late commit"
            return stored

        a = Worker(unit_of_work, session_of, late)
        a.start()
        assert appended.wait(DEADLINE), f"the late append did not happen: {a.error}"
        c = Worker(
            unit_of_work,
            session_of,
            lambda: store.append(ACCOUNTS, "a-1", 0, [opened("a-1")]),
        )
        c.start()
        # Either C committed (a store that lets it take a position now), or it waits for
        # its turn behind A; only then does B read.
        wait_until(
            lambda: not c.is_alive() or waits_for_its_turn(c.session),
            "the second append to commit or to wait for its turn",
        )
        c_waits = c.is_alive()

        if readers_wait_for_writers:  # B's read waits for A: in a thread, and A goes on
            reader = Worker(contextlib.nullcontext, lambda _: None, lambda: store.read_all())
            reader.start()
            release.set()
            read = reader.result()
        else:
            read = store.read_all()
            release.set()
        (late_event,) = a.result()
        (later_event,) = c.result()
        if c_waits and not readers_wait_for_writers:
            assert later_event.position not in [e.position for e in read]
        read += store.read_all(after_position=read[-1].position)

        everything = store.read_all()
        assert identities(read) == identities(everything)
        assert [e.aggregate_id for e in everything] == ["a-0", "c-late", "a-1"]
        assert first.position < late_event.position < later_event.position

    def test_a_reader_following_many_concurrent_writers_sees_every_event_once_in_order(self, store):
        writers, appends = 8, 50
        writing = threading.Event()
        writing.set()
        seen: list[StoredEvent] = []
        failures: list[BaseException] = []

        def write(n: int) -> None:
            for version in range(appends):
                store.append(ACCOUNTS, f"a-{n}", version, [deposited(version, f"a-{n}")])

        def follow() -> None:
            last = 0
            try:
                while True:
                    finished = not writing.is_set()  # looked at before reading: no event after
                    batch = store.read_all(after_position=last, limit=25)
                    seen.extend(batch)
                    if batch:
                        last = batch[-1].position
                    elif finished:
                        return
                    else:
                        time.sleep(0.002)  # a projection's poll interval
            except BaseException as error:
                failures.append(error)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        run_in_threads(write, writers)
        writing.clear()
        reader.join(DEADLINE)
        assert not reader.is_alive(), "the reader did not catch up in time"
        assert failures == []

        everything = store.read_all(limit=writers * appends + 1)
        assert len(everything) == writers * appends
        assert identities(seen) == identities(everything)
        assert all(a.position < b.position for a, b in itertools.pairwise(seen))
        for n in range(writers):
            mine = [e.version for e in seen if e.aggregate_id == f"a-{n}"]
            assert mine == list(range(1, appends + 1))
