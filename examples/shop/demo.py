"""The Quick start demo: bootstrap the shop on SQLite, send it commands and queries, run its
outbox consumer, and tell what happened and what the database holds at each step."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from ecopy import (
    ErrorHandlerConfiguration,
    Message,
    MessagingSystem,
    RetryTemplate,
    ServiceConfiguration,
    bootstrap,
)
from ecopy_dbal import Database, DbalChannel, DbalConfiguration
from examples.shop.domain import GetOrder, PayOrder, PlaceOrder, ReceiveStock
from examples.shop.handlers import MessageJournal
from examples.shop.interceptors import AuditEntry, AuditLog
from examples.shop.services import Catalogue, InvoicePrinter, Mailbox

Output = Callable[[str], Any]
T = TypeVar("T")

#: The ecopy tables the demo watches, in the order it reports them.
TABLES = ("ecopy_documents", "ecopy_events", "ecopy_messages", "ecopy_dead_letters")
IN_MEMORY = "sqlite://"


@dataclass
class Shop:
    """The running application and what the demo looks at: services of the application, found
    by their type."""

    app: MessagingSystem
    errors: list[Exception] = field(default_factory=list)

    @property
    def database(self) -> Database:
        return self._service(Database)

    @property
    def mailbox(self) -> Mailbox:
        return self._service(Mailbox)

    @property
    def printer(self) -> InvoicePrinter:
        return self._service(InvoicePrinter)

    @property
    def audit(self) -> AuditLog:
        return self._service(AuditLog)

    @property
    def journal(self) -> MessageJournal:
        return self._service(MessageJournal)

    def rows(self) -> dict[str, int]:
        """How many rows each ecopy table holds."""
        with self.database.transaction() as connection:
            return {
                table: connection.execute(
                    sa.select(sa.func.count()).select_from(sa.table(table))
                ).scalar_one()
                for table in TABLES
            }

    def _service(self, kind: type[T]) -> T:
        found = self.app.service(kind)
        assert found is not None, f"the shop is built with a {kind.__name__}"
        return found


def create_shop(url: str = IN_MEMORY) -> Shop:
    """Bootstrap the shop on the database at ``url`` (SQLite creates its tables itself)."""
    app = bootstrap(
        scan=["examples.shop"],
        services=[
            Catalogue({"book": 1250, "pen": 199}),
            *(Mailbox(), InvoicePrinter(), AuditLog(), MessageJournal()),
        ],
        config=ServiceConfiguration(
            service_name="shop",
            extensions=[
                # Aggregates, sagas, events and dead letters in the database; every command
                # runs in one transaction.
                DbalConfiguration(url=url),
                # The outbox: a queue in ecopy_messages, written in the command's transaction.
                DbalChannel("outbox"),
                # A failed message is retried once at once, then kept as a dead letter.
                ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 1)),
            ],
        ),
    )
    return Shop(app)


def create_app(url: str = IN_MEMORY) -> MessagingSystem:
    """The application alone, for ``ecopy --app examples.shop.demo:create_app list``; on an
    in-memory SQLite database unless given another URL."""
    return create_shop(url).app


def main(out: Output = print, directory: str | Path | None = None) -> Shop:
    """Run the demo on a SQLite file in ``directory``, printing the story to ``out``; returns
    the shop for inspection. Without a directory, the file lives in a temporary directory that
    is deleted at the end."""
    story_log = _StoryLog(out)
    ecopy_log = logging.getLogger("ecopy")
    ecopy_log.addHandler(story_log)
    try:
        if directory is not None:
            return _tell(out, Path(directory) / "shop.sqlite3")
        with tempfile.TemporaryDirectory(prefix="ecopy-shop-", ignore_cleanup_errors=True) as tmp:
            shop = _tell(out, Path(tmp) / "shop.sqlite3")
            shop.database.dispose()  # close the file before it is deleted
            return shop
    finally:
        ecopy_log.removeHandler(story_log)


class _StoryLog(logging.Handler):
    """Puts what ecopy logs (retries, dead letters) into the story, message ids shortened."""

    def __init__(self, out: Output) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        text = _LONG_ID.sub(r"\1", record.getMessage())
        self.out(f"   [ecopy log] {text}")


_LONG_ID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _tell(out: Output, path: Path) -> Shop:
    shop = create_shop(f"sqlite:///{path}")
    app, database = shop.app, shop.database
    tables = sorted(sa.inspect(database.engine).get_table_names())
    out(f"ecopy shop demo: application {app.service_name!r}, {len(app.endpoints())} endpoints")
    out(f"on the SQLite file {path}, where ecopy created its tables:")
    for line in textwrap.wrap(", ".join(tables), width=90):
        out(f"   {line}")
    out("Each command runs in one transaction. Under it: the messages it caused, each under its")
    out("parent (refused ones as the audit log saw them), then the rows it added or removed.")
    out("")

    notes: list[str] = []  # what an action has to add to its step

    def step(title: str, action: Callable[[], Any], *, bad_input: bool = False) -> Any:
        out(title)
        before, seen = shop.rows(), len(shop.journal.messages)
        result: Any = None
        error: Exception | None = None
        try:
            result = action()
        except Exception as refused:  # the demo shows bad input on purpose
            error = refused
            shop.errors.append(refused)
        if not bad_input:
            _print_causes(out, shop.journal.messages[seen:], shop.audit.entries, result)
        if error is not None:
            out(f"   refused: {type(error).__name__}: {str(error).splitlines()[0]}")
        for note in notes:
            out(f"   {note}")
        notes.clear()
        if not bad_input:
            out(f"   rows: {_changes(before, shop.rows())}")
        out("")
        return result

    def send(command: object, tenant: str, user: str) -> Any:
        return app.command_bus.send(command, headers={"tenant": tenant, "user": user})

    def receive_stock() -> None:
        send(ReceiveStock("book", 3), "shop", "sam")
        send(ReceiveStock("pen", 10), "shop", "sam")

    def order_together() -> None:
        before = shop.rows()
        with database.transaction():  # the commands sent inside join this transaction
            send(PlaceOrder("o-3", "pen", 1), "acme", "carol")
            written = _changes(before, shop.rows())
            notes.append(f"o-3 had written {written}; the rollback undid it all")
            send(PlaceOrder("o-4", "book", 5), "acme", "carol")

    step(
        "1. the warehouse receives 3 x book and 10 x pen (Stock: an event-sourced aggregate)",
        receive_stock,
    )
    step(
        "2. alice@acme places order o-1: 2 x book (Order: a state-stored aggregate; the saga\n"
        "   OrderFulfilment starts and reserves the stock; 3 messages go to the outbox)",
        lambda: send(PlaceOrder("o-1", "book", 2), "acme", "alice"),
    )
    step(
        "3. bob@globex places order o-2: 1 x pen",
        lambda: send(PlaceOrder("o-2", "pen", 1), "globex", "bob"),
    )
    step(
        "4. alice@acme pays order o-1 (the saga has it shipped)",
        lambda: send(PayOrder("o-1", 2500), "acme", "alice"),
    )
    step(
        "5. bob@globex cancels o-2: routing key 'order.cancel', a dict payload (the saga\n"
        "   releases the stock)",
        lambda: app.command_bus.send_with_routing(
            "order.cancel",
            {"order_id": "o-2", "reason": "changed my mind"},
            headers={"tenant": "globex", "user": "bob"},
        ),
    )
    step(
        "6. carol@acme orders o-3 (1 x pen) and o-4 (5 x book) in one transaction: all or nothing",
        order_together,
    )
    order = app.query_bus.send(GetOrder("o-1"))
    books = app.query_bus.send_with_routing("stock.level", {"product": "book"})
    out("Queries, answered by the aggregates and by a projection:")
    out(
        f"   GetOrder('o-1'): {order.status}, {order.quantity} x {order.product}, "
        f"{order.total_cents / 100:.2f}, placed by {order.placed_by}@{order.tenant}"
    )
    out(f"   'stock.level' of book: {books} (the Stock's events replayed)")
    levels = app.query_bus.send_with_routing("stock.levels", {})
    shown = ", ".join(f"{p} {a} available, {r} reserved" for p, (a, r) in levels.items())
    out(
        f"   'stock.levels': {shown} (the projection stock_levels: its table, kept in each "
        f"command's transaction)"
    )
    status = app.projections.status("stock_levels")
    out(f"   projection stock_levels: at position {status.position} of {status.head}")
    out("What the database holds (plain SQL):")
    for line in _stored_state(database):
        out(f"   {line}")
    out("")

    shop.printer.has_paper = False
    out("7. the printer is out of paper; run the consumer 'outbox' (asynchronous handlers)")
    before = shop.rows()
    handled = app.run("outbox", finish_when_no_messages=True)
    out(f"   {handled} deliveries: each invoice failed, was retried once, failed again")
    for letter in app.dead_letter.list():
        out(
            f"   dead letter for {letter.endpoint_id}: {letter.exception_type}: "
            f"{letter.exception_message} (order {letter.payload['order_id']}, "
            f"tenant {letter.headers.get('tenant')})"
        )
    for sent in shop.mailbox.sent:
        out(f"   mail sent {sent}")
    out(f"   rows: {_changes(before, shop.rows())}")
    out("")
    shop.printer.has_paper = True
    out("8. paper refilled: replay the dead letters (app.dead_letter) and run the consumer again")
    before = shop.rows()
    replayed = app.dead_letter.replay_all()
    out(f"   replayed {replayed}; rows: {_changes(before, shop.rows())}")
    before = shop.rows()
    handled = app.run("outbox", finish_when_no_messages=True)
    for invoice in shop.printer.printed:
        out(f"   printed {invoice}")
    out(f"   {handled} deliveries; rows: {_changes(before, shop.rows())}")
    out("")

    out("What happens on bad input (nothing is stored):")
    step(
        "9. carol@acme orders 0 pens (the @before validation refuses it)",
        lambda: send(PlaceOrder("o-5", "pen", 0), "acme", "carol"),
        bad_input=True,
    )
    step(
        "10. alice@acme cancels o-1 with a one-letter reason (pydantic refuses the payload)",
        lambda: app.command_bus.send_with_routing(
            "order.cancel", {"order_id": "o-1", "reason": "x"}, headers={"user": "alice"}
        ),
        bad_input=True,
    )
    step(
        "11. someone mistypes the routing key 'order.cancle'",
        lambda: app.command_bus.send_with_routing("order.cancle", {"order_id": "o-1"}),
        bad_input=True,
    )

    refused = sum(entry.outcome != "ok" for entry in shop.audit.entries)
    out(
        f"The audit log (an @around interceptor on the command bus) recorded "
        f"{len(shop.audit.entries)} commands, {refused} of them refused."
    )
    return shop


def _print_causes(
    out: Output, messages: list[Message], audit: list[AuditEntry], answer: Any
) -> None:
    """Each message under the one that caused it, with its id (shortened); refused commands
    say so, and the first command shows its answer."""
    outcomes = {entry.message_id: entry.outcome for entry in audit}
    ids = {message.id for message in messages}
    children: dict[str | None, list[Message]] = {}
    for message in messages:
        parent = message.parent_id if message.parent_id in ids else None
        children.setdefault(parent, []).append(message)

    def show(message: Message, depth: int) -> Iterator[str]:
        outcome = outcomes.get(message.id, "ok")
        refused = "" if outcome == "ok" else f"  {outcome}"
        yield f"   {'  ' * depth}[{message.id[:8]}] {message.payload!r}{refused}"
        for child in children.get(message.id, []):
            yield from show(child, depth + 1)

    for index, root in enumerate(children.get(None, [])):
        lines = list(show(root, 0))
        if index == 0 and answer is not None:
            lines[0] += f" -> {answer!r}"
        for line in lines:
            out(line)


def _changes(before: dict[str, int], after: dict[str, int]) -> str:
    changes = [f"{t} {after[t] - before[t]:+d}" for t in TABLES if after[t] != before[t]]
    return ", ".join(changes) if changes else "no change"


def _stored_state(database: Database) -> Iterator[str]:
    """What the ecopy tables hold, read with plain SQL: the aggregates and sagas in
    ecopy_documents, the event streams in ecopy_events, the queues in ecopy_messages."""
    tables = sa.MetaData()
    documents, events, messages = (
        sa.Table(name, tables, autoload_with=database.engine)
        for name in ("ecopy_documents", "ecopy_events", "ecopy_messages")
    )
    with database.transaction() as connection:
        rows = connection.execute(
            sa.select(
                documents.c.collection,
                documents.c.document_id,
                documents.c.version,
                documents.c.document,
            )
        ).all()
        for kind, document_id, version, document in sorted(
            (row.collection.rsplit(".", 1)[-1], row.document_id, row.version, row.document)
            for row in rows
        ):
            status = json.loads(document)["status"]
            yield f"ecopy_documents: {kind} {document_id}, version {version}: {status}"
        streams: dict[tuple[str, str], list[str]] = {}
        for row in connection.execute(
            sa.select(events.c.stream, events.c.aggregate_id, events.c.event_type).order_by(
                events.c.stream, events.c.aggregate_id, events.c.version
            )
        ):
            streams.setdefault((row.stream, row.aggregate_id), []).append(row.event_type)
        for (stream, aggregate_id), types in streams.items():
            kind = stream.rsplit(".", 1)[-1]
            yield f"ecopy_events: {kind} {aggregate_id}: {', '.join(types)}"
        waiting = connection.execute(
            sa.select(messages.c.queue, sa.func.count()).group_by(messages.c.queue)
        ).all()
        for queue, count in waiting:
            yield f"ecopy_messages: {count} messages waiting in the queue {queue!r}"
