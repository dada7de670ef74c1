"""The in-memory channel and stores pass the same contract suites as every real adapter
(DESIGN §2), so the test doubles used by flow tests cannot drift from production."""

import pytest

from ecopy import (
    DeadLetterEntry,
    DeadLetterStore,
    InMemoryDeadLetterStore,
    InMemoryDeduplicationStore,
    QueueChannel,
)
from tests.contracts.channel_contract import ChannelContract
from tests.contracts.dead_letter_contract import DeadLetterContract
from tests.contracts.deduplication_contract import DeduplicationContract


class TestInMemoryQueue(ChannelContract):
    @pytest.fixture
    def make_channel(self, clock, serializer):
        return lambda name: QueueChannel(name).build(serializer, clock)


class TestInMemoryDeadLetterStore(DeadLetterContract):
    @pytest.fixture
    def store(self):
        return InMemoryDeadLetterStore()


class TestInMemoryDeduplicationStore(DeduplicationContract):
    @pytest.fixture
    def store(self):
        return InMemoryDeduplicationStore()


class OlderDeadLetterStore(DeadLetterStore):
    """A store written before ``count_by_channel`` existed: the port's fallback counts."""

    def __init__(self) -> None:
        self._entries = InMemoryDeadLetterStore()

    def add(self, entry: DeadLetterEntry) -> None:
        self._entries.add(entry)

    def list(self, limit: int = 50, offset: int = 0) -> list[DeadLetterEntry]:
        return self._entries.list(limit, offset)

    def get(self, entry_id: str) -> DeadLetterEntry | None:
        return self._entries.get(entry_id)

    def count(self) -> int:
        return self._entries.count()

    def delete(self, entry_id: str) -> bool:
        return self._entries.delete(entry_id)

    def delete_all(self) -> int:
        return self._entries.delete_all()


class TestDeadLetterStoreWithoutItsOwnCountByChannel(DeadLetterContract):
    @pytest.fixture
    def store(self):
        return OlderDeadLetterStore()
