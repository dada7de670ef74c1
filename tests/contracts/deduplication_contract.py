"""The contract every ``DeduplicationStore`` adapter passes (DESIGN §2: one abstract suite per
port). Records expire on their own (DESIGN §4).

Subclass ``DeduplicationContract`` in a ``test_*.py`` module and override the ``store`` fixture
to return a fresh, empty store.
"""

from __future__ import annotations

import pytest

from ecopy import DeduplicationStore
from ecopy.messaging.collector import unit_of_work

NOW = 1_772_366_400.0  # 2026-03-01 12:00 UTC
HOUR = 3600.0


class Rollback(Exception):
    """Fails a unit of work in the contract tests."""


class DeduplicationContract:
    @pytest.fixture
    def store(self) -> DeduplicationStore:
        raise NotImplementedError("override the store fixture with a fresh, empty store")

    @pytest.fixture
    def unit_of_work(self):
        """A unit of work of the store's kind: in memory by default; a database transaction
        for a database store (override)."""
        return unit_of_work

    def test_it_implements_the_deduplication_store_port(self, store):
        assert isinstance(store, DeduplicationStore)

    def test_the_first_claim_of_a_key_wins_and_the_next_one_is_refused(self, store):
        assert store.claim("notify_customer", "m-1", NOW, NOW + HOUR) is True
        assert store.claim("notify_customer", "m-1", NOW + 1, NOW + HOUR) is False
        assert store.claim("notify_customer", "m-2", NOW + 1, NOW + HOUR) is True

    def test_keys_are_scoped_per_handler(self, store):
        assert store.claim("notify_customer", "m-1", NOW, NOW + HOUR) is True
        assert store.claim("bill_customer", "m-1", NOW, NOW + HOUR) is True
        assert store.claim("bill_customer", "m-1", NOW, NOW + HOUR) is False
        assert store.claim("notify_customer", "m-1", NOW, NOW + HOUR) is False

    def test_a_key_is_refused_until_it_expires(self, store):
        store.claim("notify_customer", "m-1", NOW, NOW + HOUR)

        assert store.claim("notify_customer", "m-1", NOW + HOUR - 1, NOW + 2 * HOUR) is False
        assert store.claim("notify_customer", "m-1", NOW + HOUR + 1, NOW + 2 * HOUR) is True

    def test_an_expired_key_claimed_again_is_refused_for_its_new_lifetime(self, store):
        store.claim("notify_customer", "m-1", NOW, NOW + 60)
        later = NOW + 120

        assert store.claim("notify_customer", "m-1", later, later + HOUR) is True
        assert store.claim("notify_customer", "m-1", later + 1, later + HOUR) is False

    def test_each_key_keeps_its_own_expiry(self, store):
        store.claim("notify_customer", "short", NOW, NOW + 60)
        store.claim("notify_customer", "long", NOW, NOW + HOUR)
        later = NOW + 120

        assert store.claim("notify_customer", "short", later, later + 60) is True
        assert store.claim("notify_customer", "long", later, later + 60) is False

    def test_a_released_key_can_be_claimed_again(self, store):
        store.claim("notify_customer", "m-1", NOW, NOW + HOUR)
        store.release("notify_customer", "m-1")

        assert store.claim("notify_customer", "m-1", NOW + 1, NOW + HOUR) is True

    def test_releasing_an_unknown_key_is_harmless(self, store):
        store.release("notify_customer", "never-seen")

        assert store.claim("notify_customer", "never-seen", NOW, NOW + HOUR) is True

    def test_keys_are_compared_exactly(self, store):
        store.claim("notify_customer", "Order-1", NOW, NOW + HOUR)

        assert store.claim("notify_customer", "order-1", NOW, NOW + HOUR) is True
        assert store.claim("notify_customer", "Order-1 ", NOW, NOW + HOUR) is True

    # -- units of work ----------------------------------------------------------------

    def test_a_claim_in_a_unit_of_work_that_fails_is_undone(self, store, unit_of_work):
        with pytest.raises(Rollback), unit_of_work():
            assert store.claim("mailer", "m-1", NOW, NOW + HOUR)
            raise Rollback

        assert store.claim("mailer", "m-1", NOW, NOW + HOUR)  # handled again, not skipped
