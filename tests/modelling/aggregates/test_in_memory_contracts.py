"""The in-memory stores pass the same contract suites as every real adapter (DESIGN §2)."""

import pytest

from ecopy import InMemoryEventStore, InMemoryRepository, InMemorySnapshotStore
from ecopy.messaging.collector import unit_of_work
from tests.contracts.event_store_contract import (
    ACCOUNTS,
    EventStoreContract,
    Rollback,
    deposited,
    opened,
)
from tests.contracts.repository_contract import RepositoryContract
from tests.contracts.snapshot_store_contract import SnapshotStoreContract


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def snapshot_store(self):
        return InMemorySnapshotStore()

    @pytest.fixture
    def store(self, snapshot_store):
        return InMemoryEventStore(snapshot_store)

    def test_positions_a_reader_saw_before_the_append_was_undone_are_never_given_again(self, store):
        """In memory an append is visible at once, before its unit of work ends: a reader
        that saw it and remembered its position must not skip the event appended next."""
        with pytest.raises(Rollback), unit_of_work():
            store.append(ACCOUNTS, "a-1", 0, [opened("a-1"), deposited(1, "a-1")])
            seen = store.read_all()[-1].position
            raise Rollback

        (account,) = store.append(ACCOUNTS, "a-1", 0, [opened("a-1")])

        assert store.read_all(after_position=seen) == [account]


class TestInMemoryRepository(RepositoryContract):
    @pytest.fixture
    def repository(self):
        return InMemoryRepository()


class TestInMemorySnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def store(self):
        return InMemorySnapshotStore()
