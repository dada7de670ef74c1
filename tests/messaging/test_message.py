"""Message: standard headers, user headers, immutability (DESIGN §3.1)."""

import time
import uuid

import pytest

from ecopy import Message


def test_a_new_message_gets_a_uuid_id_and_its_correlation_id_defaults_to_it():
    message = Message({"order_id": "o-1"})

    assert isinstance(message.id, str)
    assert str(uuid.UUID(message.id)) == message.id
    assert message.headers["id"] == message.id
    assert message.correlation_id == message.id
    assert message.headers["correlation_id"] == message.id
    assert message.parent_id is None


def test_every_message_gets_its_own_id():
    ids = {Message("x").id for _ in range(1000)}

    assert len(ids) == 1000


def test_timestamp_is_float_seconds_of_now():
    before = time.time()
    message = Message("x")
    after = time.time()

    assert isinstance(message.headers["timestamp"], float)
    assert before <= message.timestamp <= after


def test_given_standard_headers_are_kept():
    message = Message("x", {"id": "m-1", "correlation_id": "c-1", "parent_id": "p-1"})

    assert message.id == "m-1"
    assert message.correlation_id == "c-1"
    assert message.parent_id == "p-1"


def test_correlation_id_defaults_to_a_given_id():
    assert Message("x", {"id": "m-1"}).correlation_id == "m-1"


def test_user_headers_travel_with_the_standard_ones():
    message = Message({"a": 1}, {"tenant": "acme", "ecopy.internal": 1, "aggregate.id": "a-1"})

    assert message.payload == {"a": 1}
    assert message.headers["tenant"] == "acme"
    assert message.header("tenant") == "acme"
    assert message.header("missing", "default") == "default"
    assert message.user_headers() == {"tenant": "acme"}


def test_attributes_cannot_be_assigned():
    message = Message("x")

    with pytest.raises(AttributeError):
        message.payload = "y"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        message.anything = 1  # type: ignore[attr-defined]
    assert message.payload == "x"


def test_changing_the_headers_seen_from_outside_does_not_change_the_message():
    given = {"tenant": "acme"}
    message = Message("x", given)

    given["tenant"] = "other"
    message.headers["tenant"] = "other"  # type: ignore[index]

    assert message.headers["tenant"] == "acme"


def test_with_payload_and_with_headers_make_new_messages():
    message = Message("x", {"tenant": "acme"})

    changed = message.with_payload("y").with_headers({"user": "u-1"})

    assert message.payload == "x"
    assert "user" not in message.headers
    assert changed.payload == "y"
    assert changed.id == message.id
    assert changed.headers["tenant"] == "acme"
    assert changed.headers["user"] == "u-1"
