"""The contract every ``EventStore`` adapter passes (DESIGN §2: one abstract suite per port).

Subclass ``EventStoreContract`` in a ``test_*.py`` module and override the ``store`` fixture
to return a fresh, empty store. The payloads are plain dataclasses (``EVENT_TYPES``) so that
a store that serializes them can register them first.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import pytest

from ecopy import ConcurrencyError, EventStore, NewEvent
from ecopy.messaging.collector import unit_of_work


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


class EventStoreContract:
    @pytest.fixture
    def store(self) -> EventStore:
        raise NotImplementedError("override the store fixture with a fresh, empty EventStore")

    @pytest.fixture
    def unit_of_work(self):
        """A unit of work of the store's kind: in memory by default; a database transaction
        for a database store (override)."""
        return unit_of_work

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
