"""The ``DeadLetter`` gateway (DESIGN §3.5): list, show, count, replay, replay_all, delete and
delete_all. A replayed message reaches only the handler it failed in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ecopy import (
    EcopyError,
    ErrorHandlerConfiguration,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    event_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


class Fulfilment:
    """Two asynchronous handlers of one event: packing works, invoicing may be broken."""

    def __init__(self) -> None:
        self.packed: list[str] = []
        self.invoiced: list[str] = []
        self.invoicing_broken = True

    @asynchronous("orders")
    @event_handler(endpoint_id="pack_order")
    def pack(self, event: OrderPlaced) -> None:
        self.packed.append(event.order_id)

    @asynchronous("orders")
    @event_handler(endpoint_id="invoice_order")
    def invoice(self, event: OrderPlaced) -> None:
        if self.invoicing_broken:
            raise ConnectionError(f"invoicing is down for {event.order_id}")
        self.invoiced.append(event.order_id)


def failed_orders(fulfilment: Fulfilment, *order_ids: str, retry: RetryTemplate | None = None):
    """A flow whose invoicing failed for good for each of ``order_ids``."""
    flow = bootstrap_flow_testing(
        classes=[Fulfilment],
        services=[fulfilment],
        config=ServiceConfiguration(extensions=[ErrorHandlerConfiguration("errorChannel", retry)]),
        enable_asynchronous_processing=[QueueChannel("orders")],
    )
    for order_id in order_ids:
        flow.publish_event(OrderPlaced(order_id))
    flow.run("orders")
    return flow


def test_count_and_list_show_the_failed_messages():
    flow = failed_orders(Fulfilment(), "o-1", "o-2", "o-3")

    assert flow.dead_letter.count() == 3
    entries = flow.dead_letter.list()
    assert [entry.payload["order_id"] for entry in entries] == ["o-1", "o-2", "o-3"]
    assert {entry.endpoint_id for entry in entries} == {"invoice_order"}
    assert {entry.channel for entry in entries} == {"orders"}


def test_list_pages_with_limit_and_offset():
    flow = failed_orders(Fulfilment(), "o-1", "o-2", "o-3", "o-4", "o-5")

    def page(**paging: int) -> list[str]:
        return [e.payload["order_id"] for e in flow.dead_letter.list(**paging)]

    assert page(limit=2) == ["o-1", "o-2"]
    assert page(limit=2, offset=2) == ["o-3", "o-4"]
    assert page(limit=2, offset=4) == ["o-5"]
    assert page(limit=2, offset=5) == []


def test_show_gives_one_entry_with_the_reason():
    flow = failed_orders(Fulfilment(), "o-1")
    [listed] = flow.dead_letter.list()

    entry = flow.dead_letter.show(listed.id)

    assert entry == listed
    assert entry.exception_type == "ConnectionError"
    assert entry.exception_message == "invoicing is down for o-1"
    assert entry.type_name is not None and entry.type_name.endswith("OrderPlaced")


def test_show_of_an_unknown_entry_says_how_to_find_the_known_ones():
    flow = failed_orders(Fulfilment())

    with pytest.raises(EcopyError, match=r"'nope'.*dead-letter list"):
        flow.dead_letter.show("nope")


def test_replay_reaches_only_the_handler_that_failed():
    fulfilment = Fulfilment()
    flow = failed_orders(fulfilment, "o-1")
    assert fulfilment.packed == ["o-1"]
    [entry] = flow.dead_letter.list()
    fulfilment.invoicing_broken = False

    flow.dead_letter.replay(entry.id)
    flow.run("orders")

    assert fulfilment.invoiced == ["o-1"]
    assert fulfilment.packed == ["o-1"]
    assert flow.dead_letter.count() == 0


def test_a_replayed_message_keeps_its_id_and_user_headers():
    fulfilment = Fulfilment()
    flow = bootstrap_flow_testing(
        classes=[Fulfilment],
        services=[fulfilment],
        config=ServiceConfiguration(extensions=[ErrorHandlerConfiguration("errorChannel", None)]),
        enable_asynchronous_processing=[QueueChannel("orders")],
    )
    flow.publish_event(OrderPlaced("o-1"), headers={"tenant": "acme"}).run("orders")
    [published] = flow.get_recorded_event_messages()
    [entry] = flow.dead_letter.list()

    flow.dead_letter.replay(entry.id)
    replayed = flow.system.channel("orders").receive()

    assert replayed.id == published.id
    assert replayed.headers["tenant"] == "acme"
    assert replayed.headers["ecopy.endpoint_id"] == "invoice_order"
    assert "ecopy.exception.type" not in replayed.headers


def test_a_replayed_message_gets_a_fresh_set_of_retries():
    fulfilment = Fulfilment()
    flow = failed_orders(fulfilment, "o-1", retry=RetryTemplate.fixed(1000, 1))
    flow.advance_time(1).run("orders")
    [entry] = flow.dead_letter.list()

    flow.dead_letter.replay(entry.id)
    flow.run("orders")

    assert flow.dead_letter.count() == 0  # waiting for its first retry again
    flow.advance_time(1).run("orders")
    assert flow.dead_letter.count() == 1
    assert fulfilment.packed == ["o-1"]


def test_a_message_that_fails_again_after_replay_is_a_dead_letter_again():
    fulfilment = Fulfilment()
    flow = failed_orders(fulfilment, "o-1")
    [first] = flow.dead_letter.list()

    flow.dead_letter.replay(first.id)
    flow.run("orders")

    [again] = flow.dead_letter.list()
    assert again.id != first.id
    assert again.message_id == first.message_id
    assert again.endpoint_id == "invoice_order"


def test_replay_all_replays_every_entry():
    fulfilment = Fulfilment()
    flow = failed_orders(fulfilment, "o-1", "o-2", "o-3")
    fulfilment.invoicing_broken = False

    assert flow.dead_letter.replay_all() == 3
    flow.run("orders")

    assert fulfilment.invoiced == ["o-1", "o-2", "o-3"]
    assert fulfilment.packed == ["o-1", "o-2", "o-3"]
    assert flow.dead_letter.count() == 0


def test_replay_all_of_more_entries_than_one_page():
    fulfilment = Fulfilment()
    order_ids = [f"o-{number}" for number in range(150)]
    flow = failed_orders(fulfilment, *order_ids)
    fulfilment.invoicing_broken = False

    assert flow.dead_letter.replay_all() == 150
    flow.run("orders")

    assert fulfilment.invoiced == order_ids


def test_delete_removes_one_entry_for_good():
    fulfilment = Fulfilment()
    flow = failed_orders(fulfilment, "o-1", "o-2")
    first, second = flow.dead_letter.list()

    flow.dead_letter.delete(first.id)

    assert flow.dead_letter.list() == [second]
    with pytest.raises(EcopyError, match=first.id):
        flow.dead_letter.show(first.id)
    with pytest.raises(EcopyError, match=first.id):
        flow.dead_letter.delete(first.id)
    fulfilment.invoicing_broken = False
    assert flow.dead_letter.replay_all() == 1
    flow.run("orders")
    assert fulfilment.invoiced == ["o-2"]


def test_delete_all_empties_the_dead_letters_and_counts_them():
    flow = failed_orders(Fulfilment(), "o-1", "o-2", "o-3")

    assert flow.dead_letter.delete_all() == 3

    assert flow.dead_letter.count() == 0
    assert flow.dead_letter.list() == []
    assert flow.dead_letter.replay_all() == 0


def test_an_unreadable_dead_letter_cannot_be_replayed_but_can_be_shown_and_deleted():
    flow = failed_orders(Fulfilment())
    flow.system.channel("orders").send_serialized("{broken")
    flow.run("orders")
    [entry] = flow.dead_letter.list()

    with pytest.raises(EcopyError, match="cannot be replayed"):
        flow.dead_letter.replay(entry.id)

    assert flow.dead_letter.show(entry.id).body == "{broken"
    flow.dead_letter.delete(entry.id)
    assert flow.dead_letter.count() == 0


def test_replay_all_leaves_unreadable_entries_for_show_and_delete():
    fulfilment = Fulfilment()
    flow = failed_orders(fulfilment, "o-1")
    flow.system.channel("orders").send_serialized("{broken")
    flow.run("orders")
    fulfilment.invoicing_broken = False

    assert flow.dead_letter.replay_all() == 1
    flow.run("orders")

    assert fulfilment.invoiced == ["o-1"]
    [left] = flow.dead_letter.list()
    assert left.body == "{broken"
