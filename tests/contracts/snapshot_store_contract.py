"""The contract every ``SnapshotStore`` adapter passes.

Subclass ``SnapshotStoreContract`` in a ``test_*.py`` module and override the ``store``
fixture to return a fresh, empty snapshot store. States are plain dataclasses
(``STATE_TYPES``) so a serializing store can register them first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ecopy import SnapshotStore
from ecopy.messaging.collector import unit_of_work


@dataclass
class Wallet:
    wallet_id: str
    balance: int = 0
    history: list[int] = field(default_factory=list)
    version: int = 0


STATE_TYPES = (Wallet,)

WALLETS = "bank.wallet"
PURSES = "bank.purse"


class SnapshotStoreContract:
    @pytest.fixture
    def store(self) -> SnapshotStore:
        raise NotImplementedError("override the store fixture with a fresh SnapshotStore")

    @pytest.fixture
    def unit_of_work(self):
        """A unit of work of the store's kind: in memory by default; a database transaction
        for a database store (override)."""
        return unit_of_work

    def test_it_implements_the_snapshot_store_port(self, store):
        assert isinstance(store, SnapshotStore)

    def test_there_is_no_snapshot_before_one_is_saved(self, store):
        assert store.load(WALLETS, "w-1") is None

    def test_a_saved_snapshot_loads_with_its_version_and_state(self, store):
        store.save(WALLETS, "w-1", 3, Wallet("w-1", 30, [10, 10, 10], 3))

        snapshot = store.load(WALLETS, "w-1")

        assert snapshot is not None
        assert snapshot.version == 3
        assert snapshot.state == Wallet("w-1", 30, [10, 10, 10], 3)
        assert type(snapshot.state) is Wallet

    def test_a_newer_snapshot_replaces_the_previous_one(self, store):
        store.save(WALLETS, "w-1", 3, Wallet("w-1", 30))
        store.save(WALLETS, "w-1", 6, Wallet("w-1", 60))

        snapshot = store.load(WALLETS, "w-1")

        assert snapshot is not None
        assert (snapshot.version, snapshot.state.balance) == (6, 60)

    def test_snapshots_are_kept_per_stream_and_aggregate(self, store):
        store.save(WALLETS, "w-1", 3, Wallet("w-1", 1))
        store.save(WALLETS, "w-2", 4, Wallet("w-2", 2))
        store.save(PURSES, "w-1", 5, Wallet("w-1", 3))

        found = {
            key: store.load(*key) for key in [(WALLETS, "w-1"), (WALLETS, "w-2"), (PURSES, "w-1")]
        }

        assert {key: (s.version, s.state.balance) for key, s in found.items() if s} == {
            (WALLETS, "w-1"): (3, 1),
            (WALLETS, "w-2"): (4, 2),
            (PURSES, "w-1"): (5, 3),
        }
        assert store.load(PURSES, "w-2") is None

    def test_changing_the_state_after_saving_does_not_change_the_snapshot(self, store):
        wallet = Wallet("w-1", 10, [10])
        store.save(WALLETS, "w-1", 1, wallet)

        wallet.balance = 999
        wallet.history.append(989)

        snapshot = store.load(WALLETS, "w-1")
        assert snapshot is not None
        assert snapshot.state == Wallet("w-1", 10, [10])

    def test_changing_a_loaded_state_does_not_change_the_snapshot(self, store):
        store.save(WALLETS, "w-1", 1, Wallet("w-1", 10, [10]))
        first = store.load(WALLETS, "w-1")
        assert first is not None

        first.state.balance = 999
        first.state.history.clear()

        again = store.load(WALLETS, "w-1")
        assert again is not None
        assert again.state == Wallet("w-1", 10, [10])

    # -- units of work ----------------------------------------------------------------

    def test_a_snapshot_saved_in_a_unit_of_work_that_fails_is_undone(self, store, unit_of_work):
        store.save(WALLETS, "w-1", 3, Wallet("w-1", 30))
        with pytest.raises(Rollback), unit_of_work():
            store.save(WALLETS, "w-1", 6, Wallet("w-1", 60))
            store.save(PURSES, "p-1", 2, Wallet("p-1", 5))
            raise Rollback

        assert store.load(WALLETS, "w-1").version == 3
        assert store.load(PURSES, "p-1") is None


class Rollback(Exception):
    """Fails a unit of work in the contract tests."""
