"""The in-memory channel and stores pass the same contract suites as every real adapter
(DESIGN §2), so the test doubles used by flow tests cannot drift from production."""

import pytest

from ecopy import InMemoryDeadLetterStore, InMemoryDeduplicationStore, QueueChannel
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
