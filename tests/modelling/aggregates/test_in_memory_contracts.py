"""The in-memory stores pass the same contract suites as every real adapter (DESIGN §2)."""

import pytest

from ecopy import InMemoryEventStore, InMemoryRepository, InMemorySnapshotStore
from tests.contracts.event_store_contract import EventStoreContract
from tests.contracts.repository_contract import RepositoryContract
from tests.contracts.snapshot_store_contract import SnapshotStoreContract


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryEventStore()


class TestInMemoryRepository(RepositoryContract):
    @pytest.fixture
    def repository(self):
        return InMemoryRepository()


class TestInMemorySnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def store(self):
        return InMemorySnapshotStore()
