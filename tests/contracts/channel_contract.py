"""The contract every pollable channel adapter passes (DESIGN §2: one abstract suite per port).

Subclass ``ChannelContract`` in a ``test_*.py`` module and override ``make_channel``: a fixture
returning a factory ``make_channel(name)`` that builds a fresh, empty pollable channel on the
contract's ``clock`` (a ``ControlledClock``) and ``serializer``. Besides ``send`` and
``receive``, a channel offers ``send_serialized(body, ...)`` (raw bytes, as another process or
a broker would deliver them) and ``return_message(message)`` (put a message back at the head).

Its ``channel_status()`` counts the messages waiting (due and delayed, not expired) and due.

Delivery headers are honoured: ``ecopy.deliver_at`` (not before), ``ecopy.expires_at`` (dropped
after, with a WARNING log naming the channel), ``ecopy.priority`` (higher first, FIFO within).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from ecopy import ControlledClock, Message
from ecopy.messaging.channel import PollableChannel, UndeliverableMessage
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.delivery import DELIVER_AT, EXPIRES_AT
from ecopy.messaging.delivery import QUEUE_PRIORITY as PRIORITY
from ecopy.messaging.naming import TypeRegistry
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.status import ChannelStatus, StatusReportingChannel

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ParcelShipped:
    parcel_id: str
    weight_grams: int
    tags: tuple[str, ...] = ()


class CustomerRegistered(BaseModel):
    customer_id: str
    email: str
    vip: bool = False


PAYLOAD_TYPES = (ParcelShipped, CustomerRegistered)


def parcel(parcel_id: str, **headers: object) -> Message:
    return Message(ParcelShipped(parcel_id, 100), headers)


def received_ids(channel: PollableChannel) -> list[str]:
    """The parcel ids of every message due now, in the order the channel gives them."""
    ids = []
    while (message := channel.receive()) is not None:
        ids.append(message.payload.parcel_id)
    return ids


class ChannelContract:
    @pytest.fixture
    def clock(self) -> ControlledClock:
        return ControlledClock(START)

    @pytest.fixture
    def serializer(self) -> MessageSerializer:
        names = TypeRegistry()
        names.register_all(PAYLOAD_TYPES)
        return MessageSerializer(names, PayloadConversion())

    @pytest.fixture
    def make_channel(self, clock, serializer):
        raise NotImplementedError(
            "override make_channel with a factory: name -> a fresh pollable channel built with "
            "the clock and serializer fixtures"
        )

    @pytest.fixture
    def channel(self, make_channel) -> PollableChannel:
        return make_channel("parcels")

    # -- order --------------------------------------------------------------------------

    def test_it_is_a_pollable_channel_with_its_name(self, channel):
        assert isinstance(channel, PollableChannel)
        assert channel.name == "parcels"

    def test_an_empty_channel_gives_nothing(self, channel):
        assert channel.receive() is None

    def test_messages_come_out_first_in_first_out(self, channel):
        for parcel_id in ("p-1", "p-2", "p-3"):
            channel.send(parcel(parcel_id))

        assert received_ids(channel) == ["p-1", "p-2", "p-3"]
        assert channel.receive() is None

    def test_channels_with_different_names_do_not_share_messages(self, make_channel):
        parcels, others = make_channel("parcels"), make_channel("others")
        parcels.send(parcel("p-1"))

        assert others.receive() is None
        assert received_ids(parcels) == ["p-1"]

    def test_higher_priority_comes_first_and_fifo_holds_within_a_priority(self, channel):
        channel.send(parcel("low-1"))
        channel.send(parcel("high-1", **{PRIORITY: 5}))
        channel.send(parcel("low-2"))
        channel.send(parcel("top", **{PRIORITY: 9}))
        channel.send(parcel("high-2", **{PRIORITY: 5}))

        assert received_ids(channel) == ["top", "high-1", "high-2", "low-1", "low-2"]

    def test_a_returned_message_is_received_again_before_the_others(self, channel):
        for parcel_id in ("p-1", "p-2", "p-3"):
            channel.send(parcel(parcel_id))
        first = channel.receive()

        channel.return_message(first)

        again = channel.receive()
        assert again.id == first.id
        assert again.payload == first.payload
        assert received_ids(channel) == ["p-2", "p-3"]

    def test_a_returned_message_keeps_its_priority(self, channel):
        channel.send(parcel("top", **{PRIORITY: 9}))
        channel.send(parcel("also-top", **{PRIORITY: 9}))
        channel.send(parcel("low"))
        first = channel.receive()

        channel.return_message(first)

        assert received_ids(channel) == ["top", "also-top", "low"]

    def test_a_returned_message_keeps_its_time_to_live(self, channel, clock):
        channel.send(parcel("short-lived", **{EXPIRES_AT: clock.now() + 60}))
        channel.return_message(channel.receive())

        clock.advance(timedelta(seconds=61))

        assert channel.receive() is None

    # -- time ---------------------------------------------------------------------------

    def test_a_delayed_message_is_not_received_before_it_is_due(self, channel, clock):
        due = clock.now() + 30
        channel.send(parcel("later", **{DELIVER_AT: due}))
        channel.send(parcel("now"))

        assert received_ids(channel) == ["now"]
        clock.advance(timedelta(seconds=29))
        assert channel.receive() is None

        clock.advance(timedelta(seconds=1))
        assert received_ids(channel) == ["later"]

    def test_a_delivery_moment_in_the_past_is_due_at_once(self, channel, clock):
        channel.send(parcel("overdue", **{DELIVER_AT: clock.now() - 3600}))

        assert received_ids(channel) == ["overdue"]

    def test_due_delayed_messages_keep_their_priority(self, channel, clock):
        channel.send(parcel("delayed-low", **{DELIVER_AT: clock.now() + 10}))
        channel.send(parcel("delayed-high", **{DELIVER_AT: clock.now() + 10, PRIORITY: 3}))

        clock.advance(timedelta(seconds=10))

        assert received_ids(channel) == ["delayed-high", "delayed-low"]

    def test_an_expired_message_is_dropped_and_logged(self, channel, clock, caplog):
        channel.send(parcel("stale", **{EXPIRES_AT: clock.now() + 60}))
        channel.send(parcel("fresh", **{EXPIRES_AT: clock.now() + 600}))
        clock.advance(timedelta(seconds=61))

        with caplog.at_level(logging.WARNING):
            assert received_ids(channel) == ["fresh"]

        assert any(
            "expired" in record.getMessage() and "parcels" in record.getMessage()
            for record in caplog.records
            if record.levelno >= logging.WARNING
        )
        assert channel.receive() is None

    def test_a_message_within_its_time_to_live_is_delivered(self, channel, clock):
        channel.send(parcel("fresh", **{EXPIRES_AT: clock.now() + 60}))
        clock.advance(timedelta(seconds=59))

        assert received_ids(channel) == ["fresh"]

    # -- status (ecopy status) ------------------------------------------------------------

    def test_it_reports_its_status(self, channel):
        assert isinstance(channel, StatusReportingChannel)
        assert channel.channel_status() == ChannelStatus("parcels", waiting=0, due=0, in_flight=0)

    def test_waiting_counts_due_and_delayed_messages_and_due_only_the_deliverable(
        self, channel, clock
    ):
        channel.send(parcel("now-1"))
        channel.send(parcel("now-2"))
        channel.send(parcel("later", **{DELIVER_AT: clock.now() + 30}))

        status = channel.channel_status()
        assert (status.waiting, status.due) == (3, 2)

        clock.advance(timedelta(seconds=30))
        status = channel.channel_status()
        assert (status.waiting, status.due) == (3, 3)

    def test_an_expired_message_is_neither_waiting_nor_due(self, channel, clock):
        channel.send(parcel("stale", **{EXPIRES_AT: clock.now() + 60}))
        channel.send(
            parcel("stale-later", **{DELIVER_AT: clock.now() + 10, EXPIRES_AT: clock.now() + 60})
        )
        channel.send(parcel("fresh", **{EXPIRES_AT: clock.now() + 600}))

        clock.advance(timedelta(seconds=61))

        status = channel.channel_status()
        assert (status.waiting, status.due) == (1, 1)

    def test_a_received_message_is_no_longer_waiting(self, channel, clock):
        channel.send(parcel("p-1"))
        channel.send(parcel("p-2", **{DELIVER_AT: clock.now() + 30}))

        channel.receive()

        status = channel.channel_status()
        assert (status.waiting, status.due) == (1, 0)

    def test_the_status_is_the_channels_own(self, make_channel):
        parcels, others = make_channel("parcels"), make_channel("others")
        parcels.send(parcel("p-1"))

        assert others.channel_status().waiting == 0
        assert parcels.channel_status().waiting == 1

    # -- serialization ------------------------------------------------------------------

    @pytest.mark.parametrize(
        "payload",
        [
            ParcelShipped("p-1", 250, ("fragile", "express")),
            CustomerRegistered(customer_id="c-1", email="ann@example.com", vip=True),
            {"order_id": "o-1", "lines": [{"sku": "A", "quantity": 2}], "paid": None},
        ],
        ids=["dataclass", "pydantic", "dict"],
    )
    def test_payload_and_headers_survive_the_trip(self, channel, payload):
        sent = Message(payload, {"tenant": "acme", "attempt": 2, "tags": ["a", "b"]})

        channel.send(sent)
        received = channel.receive()

        assert type(received.payload) is type(payload)
        assert received.payload == payload
        assert received.headers == sent.headers

    def test_a_received_message_is_a_copy_not_the_sent_object(self, channel):
        payload = {"order_id": "o-1", "lines": []}
        channel.send(Message(payload))
        payload["lines"].append("changed after sending")

        assert channel.receive().payload == {"order_id": "o-1", "lines": []}

    @pytest.mark.parametrize(
        "body",
        [
            "{not json",
            '{"type": "nobody.knows.This", "payload": {}, "headers": {"id": "m-1"}}',
            json.dumps(
                {
                    "type": f"{ParcelShipped.__module__}.{ParcelShipped.__qualname__}",
                    "payload": {"parcel_id": "p-1"},
                    "headers": {"id": "m-2"},
                }
            ),
            '["an", "array"]',
        ],
        ids=["malformed-json", "unknown-type", "payload-not-fitting", "not-an-envelope"],
    )
    def test_undeliverable_bytes_raise_and_are_removed(self, channel, body):
        channel.send_serialized(body)
        channel.send(parcel("good"))

        with pytest.raises(UndeliverableMessage) as raised:
            channel.receive()

        assert raised.value.channel == "parcels"
        assert raised.value.body == body
        assert raised.value.reason
        assert received_ids(channel) == ["good"]
