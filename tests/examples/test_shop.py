"""The Quick start demo (``python -m examples.shop``) does what it tells, on SQLite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ecopy import AggregateNotFound, MessageConversionError, NoHandlerFound
from ecopy.cli.main import cli
from examples.shop.demo import Shop, create_shop, main
from examples.shop.domain import (
    GetOrder,
    InvalidOrder,
    NotEnoughStock,
    OrderPlaced,
    PlaceOrder,
    ReceiveStock,
    ReserveStock,
    StockReserved,
    StockRunningLow,
)

ROOT = Path(__file__).resolve().parents[2]
ALICE = {"tenant": "acme", "user": "alice"}

Story = tuple[Shop, list[str]]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The demo, run on a SQLite file kept until the tests of this module are done."""
    lines: list[str] = []
    shop = main(out=lines.append, directory=tmp_path_factory.mktemp("shop"))
    yield shop, lines
    shop.database.dispose()


@pytest.fixture
def shop() -> Iterator[Shop]:
    """A fresh shop on an in-memory SQLite database, with books and pens in stock."""
    shop = create_shop()
    for product, quantity in (("book", 3), ("pen", 10)):
        shop.app.command_bus.send(ReceiveStock(product, quantity))
    yield shop
    shop.database.dispose()


def select(shop: Shop, sql: str) -> list[Any]:
    with shop.database.transaction() as connection:
        return list(connection.execute(sa.text(sql)).all())


def documents(shop: Shop) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    """``(class name, id) -> (version, JSON document)`` of every aggregate and saga."""
    rows = select(shop, "SELECT collection, document_id, version, document FROM ecopy_documents")
    return {
        (collection.rsplit(".", 1)[-1], document_id): (version, json.loads(document))
        for collection, document_id, version, document in rows
    }


def test_orders_are_state_stored_aggregates_kept_as_documents(story: Story) -> None:
    shop, _ = story
    o1, o2 = (shop.app.query_bus.send(GetOrder(order_id)) for order_id in ("o-1", "o-2"))
    assert (o1.tenant, o1.placed_by, o1.status, o1.total_cents) == (
        "acme",
        "alice",
        "shipped",
        2500,
    )
    assert (o2.tenant, o2.placed_by, o2.status) == ("globex", "bob", "cancelled")
    stored = documents(shop)
    assert stored["Order", "o-1"][0] == 3  # placed, paid, shipped
    assert stored["Order", "o-1"][1]["status"] == "shipped"
    assert stored["Order", "o-2"][0] == 2  # placed, cancelled


def test_the_saga_follows_each_order_and_is_stored(story: Story) -> None:
    shop, _ = story
    stored = documents(shop)
    assert stored["OrderFulfilment", "o-1"][1]["status"] == "paid, shipping requested"
    assert stored["OrderFulfilment", "o-2"][1]["status"] == "cancelled, stock released"
    assert {kind for kind, _ in stored} == {"Order", "OrderFulfilment"}


def test_stock_is_event_sourced(story: Story) -> None:
    shop, _ = story
    events = select(
        shop, "SELECT aggregate_id, version, event_type FROM ecopy_events ORDER BY position"
    )
    streams: dict[str, list[str]] = {}
    for product, version, event_type in events:
        streams.setdefault(product, []).append(event_type)
        assert version == len(streams[product])
    assert streams == {
        "book": ["stock.received", "stock.reserved", "stock.low"],
        "pen": ["stock.received", "stock.reserved", "stock.released"],
    }
    level = shop.app.query_bus.send_with_routing
    assert (
        level("stock.level", {"product": "book"}),
        level("stock.level", {"product": "pen"}),
    ) == (
        1,
        10,
    )


def test_messages_carry_the_headers_and_correlation_of_the_first_command(story: Story) -> None:
    shop, _ = story
    by_payload = {type(m.payload): m for m in shop.journal.messages if m.user_headers() == ALICE}
    place = next(m for m in shop.journal.messages if m.payload == PlaceOrder("o-1", "book", 2))
    placed, reserve = by_payload[OrderPlaced], by_payload[ReserveStock]
    reserved, low = by_payload[StockReserved], by_payload[StockRunningLow]
    assert placed.parent_id == place.id
    assert reserve.parent_id == placed.id  # sent by the saga while handling OrderPlaced
    assert reserved.parent_id == low.parent_id == reserve.id
    assert {m.correlation_id for m in (placed, reserve, reserved, low)} == {place.id}
    for message in (placed, reserve, reserved, low):
        assert not any(key.startswith("ecopy.") for key in message.headers)


def test_outbox_messages_commit_with_the_command(shop: Shop) -> None:
    before = shop.rows()
    shop.app.command_bus.send(PlaceOrder("o-1", "book", 2), headers=ALICE)
    after = shop.rows()
    # An invoice and a notification for OrderPlaced, a notification for StockRunningLow.
    assert after["ecopy_messages"] - before["ecopy_messages"] == 3
    assert after["ecopy_documents"] - before["ecopy_documents"] == 2  # the order, the saga
    assert after["ecopy_events"] - before["ecopy_events"] == 2  # reserved, running low


def test_a_failing_transaction_leaves_no_row_and_no_message(shop: Shop) -> None:
    before = shop.rows()
    with pytest.raises(NotEnoughStock), shop.database.transaction():
        shop.app.command_bus.send(PlaceOrder("o-1", "pen", 1), headers=ALICE)
        assert shop.rows()["ecopy_messages"] == before["ecopy_messages"] + 2
        shop.app.command_bus.send(PlaceOrder("o-2", "book", 5), headers=ALICE)
    assert shop.rows() == before
    with pytest.raises(AggregateNotFound):
        shop.app.query_bus.send(GetOrder("o-1"))
    assert shop.app.query_bus.send_with_routing("stock.level", {"product": "pen"}) == 10
    assert shop.app.run("outbox", finish_when_no_messages=True) == 0
    assert shop.mailbox.sent == []


def test_carols_orders_were_rolled_back_in_the_story(story: Story) -> None:
    shop, _ = story
    for order_id in ("o-3", "o-4"):
        with pytest.raises(AggregateNotFound):
            shop.app.query_bus.send(GetOrder(order_id))
    assert not any("carol" in sent for sent in shop.mailbox.sent)
    assert isinstance(shop.errors[0], NotEnoughStock)


def test_invoices_are_retried_dead_lettered_in_the_database_and_replayed(shop: Shop) -> None:
    shop.app.command_bus.send(PlaceOrder("o-1", "pen", 2), headers=ALICE)
    shop.printer.has_paper = False
    # 2 messages (invoice, notification); the invoice is retried once, then dead-lettered.
    assert shop.app.run("outbox", finish_when_no_messages=True) == 3
    assert shop.mailbox.sent == ["to alice@acme: order o-1 is placed, total 3.98"]
    assert shop.rows()["ecopy_messages"] == 0
    [(endpoint, exception)] = select(
        shop, "SELECT endpoint_id, exception_message FROM ecopy_dead_letters"
    )
    assert (endpoint, exception) == ("print_invoice", "printer out of paper")

    shop.printer.has_paper = True
    assert shop.app.dead_letter.replay_all() == 1
    assert (shop.rows()["ecopy_dead_letters"], shop.rows()["ecopy_messages"]) == (0, 1)
    assert shop.app.run("outbox", finish_when_no_messages=True) == 1
    assert shop.printer.printed == ["invoice for acme order o-1: 3.98"]
    assert shop.rows()["ecopy_messages"] == 0


def test_the_story_prints_invoices_after_the_replay_and_sends_the_mail(story: Story) -> None:
    shop, _ = story
    assert shop.printer.printed == [
        "invoice for acme order o-1: 25.00",
        "invoice for globex order o-2: 1.99",
    ]
    assert shop.app.dead_letter.count() == 0
    assert shop.rows()["ecopy_messages"] == 0
    assert sorted(shop.mailbox.sent) == [
        "to alice@acme: order o-1 is on its way",
        "to alice@acme: order o-1 is placed, total 25.00",
        "to bob@globex: order o-2 is cancelled (changed my mind)",
        "to bob@globex: order o-2 is placed, total 1.99",
        "to warehouse: only 1 x book left",
    ]


def test_bad_input_is_refused_with_clear_errors(story: Story) -> None:
    shop, lines = story
    _, invalid, unconvertible, unknown = shop.errors
    assert isinstance(invalid, InvalidOrder)
    assert isinstance(unconvertible, MessageConversionError)
    assert unconvertible.expected == "CancelOrder"
    assert "reason" in unconvertible.problems[0]
    assert isinstance(unknown, NoHandlerFound)
    assert unknown.close_matches == ("order.cancel",)
    with pytest.raises(AggregateNotFound):
        shop.app.query_bus.send(GetOrder("o-5"))
    assert any("Did you mean: 'order.cancel'?" in line for line in lines)


def test_the_audit_log_sees_every_command_including_those_sent_by_the_saga(story: Story) -> None:
    shop, _ = story
    entries = [(entry.user, entry.command, entry.outcome) for entry in shop.audit.entries]
    assert entries[2:4] == [("alice", "PlaceOrder", "ok"), ("alice", "ReserveStock", "ok")]
    assert [entry for entry in entries if entry[2] != "ok"] == [
        ("carol", "PlaceOrder", "refused (NotEnoughStock)"),
        ("carol", "ReserveStock", "refused (NotEnoughStock)"),
        ("carol", "PlaceOrder", "refused (InvalidOrder)"),
        ("alice", "{'order_id': 'o-1', 'reason': 'x'}", "refused (MessageConversionError)"),
        ("anonymous", "{'order_id': 'o-1'}", "refused (NoHandlerFound)"),
    ]


def test_each_shop_is_an_independent_application(shop: Shop) -> None:
    other = create_shop()
    shop.app.command_bus.send(PlaceOrder("o-9", "pen", 1), headers=ALICE)
    with pytest.raises(AggregateNotFound):
        other.app.query_bus.send(GetOrder("o-9"))
    assert set(other.rows().values()) == {0}
    other.database.dispose()


def test_the_cli_lists_the_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["--app", "examples.shop.demo:create_app", "list"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "Order.place" in result.output and "OrderFulfilment.start" in result.output
    assert "outbox" in result.output
    assert list(tmp_path.iterdir()) == []  # an in-memory database: no file


def database_files() -> list[Path]:
    return sorted([*ROOT.glob("*.sqlite3*"), *ROOT.glob("examples/**/*.sqlite3*")])


def test_python_dash_m_runs_the_demo_and_leaves_no_file() -> None:
    before = database_files()
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "alice@acme places order o-1" in done.stdout
    assert "printed invoice for acme order o-1: 25.00" in done.stdout
    database = re.search(r"SQLite file (\S+),", done.stdout)
    assert database is not None
    assert not Path(database.group(1)).parent.exists()  # the temporary directory is gone
    assert database_files() == before


def test_a_projection_keeps_the_stock_read_model_in_its_own_table(story: Story) -> None:
    shop, lines = story
    rows = select(shop, "SELECT product, available, reserved FROM shop_stock_levels")
    levels = shop.app.query_bus.send_with_routing("stock.levels", {})

    assert sorted(rows) == [("book", 1, 2), ("pen", 10, 0)]
    assert levels == {"book": (1, 2), "pen": (10, 0)}
    for product, (available, _) in levels.items():
        assert shop.app.query_bus.send_with_routing("stock.level", {"product": product}) == (
            available
        )
    status = shop.app.projections.status("stock_levels")
    assert (status.status, status.position, status.lag) == ("ready", status.head, 0)
    assert (
        "   'stock.levels': book 1 available, 2 reserved, pen 10 available, 0 reserved (the "
        "projection stock_levels: its table, kept in each command's transaction)"
    ) in lines


def test_rebuilding_the_stock_projection_gives_the_same_table(story: Story) -> None:
    shop, _ = story
    before = sorted(select(shop, "SELECT product, available, reserved FROM shop_stock_levels"))

    assert shop.app.projections.rebuild("stock_levels") == 5  # stock.low: no handler, skipped

    assert sorted(select(shop, "SELECT product, available, reserved FROM shop_stock_levels")) == (
        before
    )
