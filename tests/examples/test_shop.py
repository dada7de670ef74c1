"""The Quick start demo (``python -m examples.shop``) does what it tells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ecopy import MessageConversionError, NoHandlerFound
from examples.shop.demo import Shop, create_shop, main
from examples.shop.domain import (
    InvalidOrder,
    OrderCancelled,
    OrderPlaced,
    PlaceOrder,
    StockRunningLow,
)

ROOT = Path(__file__).resolve().parents[2]


Story = tuple[Shop, list[str]]


@pytest.fixture(scope="module")
def story() -> Story:
    lines: list[str] = []
    shop = main(out=lines.append)
    return shop, lines


def test_orders_of_two_tenants_with_the_same_id_are_kept_apart(story: Story) -> None:
    shop, _ = story
    acme, globex = shop.book.orders["acme", "o-1"], shop.book.orders["globex", "o-1"]
    assert (acme.product, acme.placed_by, acme.status) == ("book", "alice", "cancelled")
    assert (globex.product, globex.placed_by, globex.status) == ("pen", "bob", "placed")


def test_events_carry_the_commands_headers_and_correlation(story: Story) -> None:
    shop, _ = story
    events = shop.journal.messages
    assert [type(m.payload) for m in events] == [
        OrderPlaced,
        StockRunningLow,
        OrderPlaced,
        OrderCancelled,
    ]
    placed, low = events[0], events[1]
    assert placed.user_headers() == {"tenant": "acme", "user": "alice"}
    assert low.user_headers() == {"tenant": "acme", "user": "alice"}
    assert low.parent_id == placed.id  # caused by the event, not by the command
    assert low.correlation_id == placed.correlation_id == placed.parent_id
    assert events[2].user_headers() == {"tenant": "globex", "user": "bob"}
    assert events[2].correlation_id != placed.correlation_id
    assert not any(key.startswith("ecopy.") for m in events for key in m.headers)


def test_stock_is_reserved_and_released(story: Story) -> None:
    shop, lines = story
    assert shop.warehouse.stock == {"book": 3, "pen": 9}
    assert "   answer: 1" in lines  # the stock.level query after two books were reserved


def test_the_audit_log_sees_every_command_including_refused_ones(story: Story) -> None:
    shop, _ = story
    outcomes = [(entry.user, entry.outcome) for entry in shop.audit.entries]
    assert outcomes == [
        ("alice", "ok"),
        ("bob", "ok"),
        ("alice", "ok"),
        ("carol", "refused (InvalidOrder)"),
        ("alice", "refused (MessageConversionError)"),
        ("anonymous", "refused (NoHandlerFound)"),
    ]


def test_bad_input_is_refused_with_clear_errors(story: Story) -> None:
    shop, lines = story
    invalid, unconvertible, unknown = shop.errors
    assert isinstance(invalid, InvalidOrder)
    assert isinstance(unconvertible, MessageConversionError)
    assert unconvertible.expected == "CancelOrder"
    assert "reason" in unconvertible.problems[0]
    assert isinstance(unknown, NoHandlerFound)
    assert unknown.close_matches == ("order.cancel",)
    assert ("carol", "o-2") not in shop.book.orders
    assert any("Did you mean: 'order.cancel'?" in line for line in lines)


def test_notifications_follow_named_event_patterns(story: Story) -> None:
    shop, _ = story
    assert shop.mailbox.sent == [
        "to warehouse: only 1 x book left",
        "to alice@acme: order o-1 is placed, total 25.00",
        "to bob@globex: order o-1 is placed, total 1.99",
        "to alice@acme: order o-1 is cancelled (changed my mind)",
    ]


def test_each_run_is_an_independent_application() -> None:
    first, second = create_shop(), create_shop()
    first.app.command_bus.send(
        PlaceOrder("o-9", "pen", 1),
        headers={"tenant": "t", "user": "u"},
    )
    assert ("t", "o-9") in first.book.orders
    assert second.book.orders == {}


def test_python_dash_m_runs_the_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1. alice@acme places order o-1" in done.stdout
    assert "Stock now: 3 x book, 9 x pen" in done.stdout
    assert done.stderr == ""


def test_invoices_are_printed_asynchronously_after_a_retry_and_a_dead_letter_replay(
    story: Story,
) -> None:
    shop, lines = story
    text = "\n".join(lines)
    assert "4 deliveries: each invoice failed, was retried once, failed again" in text
    assert "dead letter for print_invoice: OSError: printer out of paper" in text
    assert "replayed 2, handled 2, dead letters left 0" in text
    assert shop.printer.printed == [
        "invoice for acme order o-1: 25.00",
        "invoice for globex order o-1: 1.99",
    ]
    assert shop.app.dead_letter.count() == 0
