"""The contract every ``DeduplicationStore`` adapter passes (DESIGN §2: one abstract suite per
port). Records expire on their own (DESIGN §4).

Subclass ``DeduplicationContract`` in a ``test_*.py`` module and override the ``store`` fixture
to return a fresh, empty store.
"""

from __future__ import annotations

import pytest

from ecopy import DeduplicationStore

NOW = 1_772_366_400.0  # 2026-03-01 12:00 UTC
HOUR = 3600.0


class DeduplicationContract:
    @pytest.fixture
    def store(self) -> DeduplicationStore:
        raise NotImplementedError("override the store fixture with a fresh, empty store")

    def test_it_implements_the_deduplication_store_port(self, store):
        assert isinstance(store, DeduplicationStore)

    def test_an_unknown_key_is_not_handled(self, store):
        assert store.is_handled("notify_customer", "m-1", NOW) is False

    def test_a_marked_key_is_handled(self, store):
        store.mark_handled("notify_customer", "m-1", NOW + HOUR)

        assert store.is_handled("notify_customer", "m-1", NOW) is True
        assert store.is_handled("notify_customer", "m-2", NOW) is False

    def test_keys_are_scoped(self, store):
        store.mark_handled("notify_customer", "m-1", NOW + HOUR)

        assert store.is_handled("bill_customer", "m-1", NOW) is False

        store.mark_handled("bill_customer", "m-1", NOW + HOUR)
        assert store.is_handled("bill_customer", "m-1", NOW) is True
        assert store.is_handled("notify_customer", "m-1", NOW) is True

    def test_a_key_is_handled_until_it_expires(self, store):
        store.mark_handled("notify_customer", "m-1", NOW + HOUR)

        assert store.is_handled("notify_customer", "m-1", NOW + HOUR - 1) is True
        assert store.is_handled("notify_customer", "m-1", NOW + HOUR + 1) is False

    def test_expiry_is_per_key(self, store):
        store.mark_handled("notify_customer", "short", NOW + 60)
        store.mark_handled("notify_customer", "long", NOW + HOUR)

        later = NOW + 120
        assert store.is_handled("notify_customer", "short", later) is False
        assert store.is_handled("notify_customer", "long", later) is True

    def test_an_expired_key_can_be_marked_again(self, store):
        store.mark_handled("notify_customer", "m-1", NOW + 60)
        later = NOW + 120
        assert store.is_handled("notify_customer", "m-1", later) is False

        store.mark_handled("notify_customer", "m-1", later + HOUR)

        assert store.is_handled("notify_customer", "m-1", later) is True

    def test_marking_again_moves_the_expiry(self, store):
        store.mark_handled("notify_customer", "m-1", NOW + 60)

        store.mark_handled("notify_customer", "m-1", NOW + HOUR)

        assert store.is_handled("notify_customer", "m-1", NOW + 120) is True

    def test_keys_are_compared_exactly(self, store):
        store.mark_handled("notify_customer", "Order-1", NOW + HOUR)

        assert store.is_handled("notify_customer", "order-1", NOW) is False
        assert store.is_handled("notify_customer", "Order-1 ", NOW) is False
