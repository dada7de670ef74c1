"""The contract every ``DeadLetterStore`` adapter passes (DESIGN §2: one abstract suite per port).

Subclass ``DeadLetterContract`` in a ``test_*.py`` module and override the ``store`` fixture to
return a fresh, empty store. Entries are listed oldest first.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ecopy import DeadLetterEntry, DeadLetterStore

FAILED_AT = 1_772_366_400.0  # 2026-03-01 12:00 UTC


def entry(number: int, *, endpoint_id: str | None = "notify_customer") -> DeadLetterEntry:
    body = json.dumps(
        {
            "type": "json",
            "payload": {"order_id": f"o-{number}"},
            "headers": {"id": f"m-{number}", "ecopy.endpoint_id": endpoint_id},
        }
    )
    return DeadLetterEntry(
        id=f"dl-{number}",
        channel="notifications",
        endpoint_id=endpoint_id,
        message_id=f"m-{number}",
        body=body,
        exception_type="ConnectionError",
        exception_message=f"mail server down ({number})",
        traceback='Traceback (most recent call last):\n  File "notify.py", line 3\n',
        failed_at=FAILED_AT + number,
    )


class DeadLetterContract:
    @pytest.fixture
    def store(self) -> DeadLetterStore:
        raise NotImplementedError("override the store fixture with a fresh, empty store")

    def test_it_implements_the_dead_letter_store_port(self, store):
        assert isinstance(store, DeadLetterStore)

    def test_an_empty_store_has_nothing(self, store):
        assert store.count() == 0
        assert store.list() == []
        assert store.get("dl-1") is None

    def test_an_added_entry_comes_back_whole(self, store):
        added = entry(1)

        store.add(added)

        assert store.get("dl-1") == added
        assert store.count() == 1
        assert store.list() == [added]

    def test_an_entry_keeps_the_reason_and_the_readable_message(self, store):
        store.add(entry(1))

        found = store.get("dl-1")

        assert (found.exception_type, found.exception_message) == (
            "ConnectionError",
            "mail server down (1)",
        )
        assert found.traceback.startswith("Traceback")
        assert found.payload == {"order_id": "o-1"}
        assert found.headers["id"] == "m-1"

    def test_an_entry_without_a_message_id_or_endpoint_is_kept(self, store):
        unreadable = DeadLetterEntry(
            id="dl-raw",
            channel="notifications",
            endpoint_id=None,
            message_id=None,
            body="{not json",
            exception_type="Error",
            exception_message="malformed JSON in message",
            traceback="",
            failed_at=FAILED_AT,
        )

        store.add(unreadable)

        assert store.get("dl-raw") == unreadable
        assert store.get("dl-raw").payload == "{not json"

    def test_entries_are_listed_oldest_first(self, store):
        for number in (1, 2, 3):
            store.add(entry(number))

        assert [e.id for e in store.list()] == ["dl-1", "dl-2", "dl-3"]

    def test_list_pages_with_limit_and_offset(self, store):
        for number in range(1, 6):
            store.add(entry(number))

        assert [e.id for e in store.list(limit=2)] == ["dl-1", "dl-2"]
        assert [e.id for e in store.list(limit=2, offset=2)] == ["dl-3", "dl-4"]
        assert [e.id for e in store.list(limit=2, offset=4)] == ["dl-5"]
        assert store.list(limit=2, offset=5) == []
        assert store.count() == 5

    def test_delete_removes_one_entry_and_says_whether_it_existed(self, store):
        store.add(entry(1))
        store.add(entry(2))

        assert store.delete("dl-1") is True
        assert store.delete("dl-1") is False

        assert store.get("dl-1") is None
        assert [e.id for e in store.list()] == ["dl-2"]
        assert store.count() == 1

    def test_delete_all_empties_the_store_and_counts_what_it_removed(self, store):
        for number in (1, 2, 3):
            store.add(entry(number))

        assert store.delete_all() == 3

        assert store.count() == 0
        assert store.list() == []
        assert store.delete_all() == 0

    def test_entries_are_counted_by_the_channel_they_failed_on(self, store):
        assert store.count_by_channel() == {}
        for number in (1, 2, 3):
            store.add(entry(number))
        store.add(replace(entry(4), channel="payments"))

        assert store.count_by_channel() == {"notifications": 3, "payments": 1}

        store.delete("dl-4")
        assert store.count_by_channel() == {"notifications": 3}
