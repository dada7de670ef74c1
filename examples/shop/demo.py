"""The Quick start demo: bootstrap the shop, send it commands and queries, tell the story."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import Any

from ecopy import (
    EcopyError,
    ErrorHandlerConfiguration,
    Message,
    MessagingSystem,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    bootstrap,
)
from examples.shop.domain import GetOrder, PlaceOrder
from examples.shop.handlers import EventJournal
from examples.shop.interceptors import AuditLog
from examples.shop.state import Catalogue, InvoicePrinter, Mailbox, OrderBook, Warehouse

Output = Callable[[str], Any]


@dataclass
class Shop:
    """The running application and the state the demo looks at."""

    app: MessagingSystem
    book: OrderBook = field(default_factory=OrderBook)
    warehouse: Warehouse = field(default_factory=Warehouse)
    mailbox: Mailbox = field(default_factory=Mailbox)
    audit: AuditLog = field(default_factory=AuditLog)
    journal: EventJournal = field(default_factory=EventJournal)
    printer: InvoicePrinter = field(default_factory=InvoicePrinter)
    errors: list[EcopyError | Exception] = field(default_factory=list)


def create_shop() -> Shop:
    """Bootstrap the shop on the embedded default: everything in memory."""
    book, warehouse, mailbox = OrderBook(), Warehouse({"book": 3, "pen": 10}), Mailbox()
    audit, journal, printer = AuditLog(), EventJournal(), InvoicePrinter()
    app = bootstrap(
        scan=["examples.shop"],
        services=[
            Catalogue({"book": 1250, "pen": 199}),
            *(book, warehouse, mailbox, audit, journal, printer),
        ],
        config=ServiceConfiguration(
            service_name="shop",
            extensions=[
                QueueChannel("invoices"),
                # A failed invoice is retried once at once, then kept as a dead letter.
                ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 1)),
            ],
        ),
    )
    return Shop(app, book, warehouse, mailbox, audit, journal, printer)


def create_app() -> MessagingSystem:
    """The application alone, for ``ecopy --app examples.shop.demo:create_app list``."""
    return create_shop().app


class _StoryLog(logging.Handler):
    """Puts what ecopy logs (retries, dead letters) into the story."""

    def __init__(self, out: Output) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out(f"   [ecopy log] {record.getMessage()}")


def main(out: Output = print) -> Shop:
    """Run the demo, printing the story to ``out``; returns the shop for inspection."""
    story_log = _StoryLog(out)
    ecopy_log = logging.getLogger("ecopy")
    ecopy_log.addHandler(story_log)
    try:
        return _tell(out)
    finally:
        ecopy_log.removeHandler(story_log)


def _tell(out: Output) -> Shop:
    shop = create_shop()
    app = shop.app
    out(f"ecopy shop demo: application {app.service_name!r}, {len(app.endpoints())} endpoints")
    out("")

    def step(title: str, action: Callable[[], Any]) -> Any:
        out(title)
        seen, audited = len(shop.journal.messages), len(shop.audit.entries)
        result: Any = None
        error: Exception | None = None
        try:
            result = action()
        except Exception as refused:  # the demo shows bad input on purpose
            error = refused
            shop.errors.append(refused)
        for entry in shop.audit.entries[audited:]:
            out(f"   the command travelled as message {entry.message_id[:8]}")
        if error is None:
            out(f"   answer: {result!r}")
        else:
            out(f"   refused: {type(error).__name__}: {str(error).splitlines()[0]}")
        _print_events(out, shop.journal.messages[seen:])
        out("")
        return result

    acme_alice = {"tenant": "acme", "user": "alice"}
    step(
        "1. alice@acme places order o-1: 2 x book",
        lambda: app.command_bus.send(PlaceOrder("o-1", "book", 2), headers=acme_alice),
    )
    step(
        "2. bob@globex places his own order o-1: 1 x pen (same id, other tenant)",
        lambda: app.command_bus.send(
            PlaceOrder("o-1", "pen", 1), headers={"tenant": "globex", "user": "bob"}
        ),
    )
    step(
        "3. alice@acme asks for her order o-1 (query by class)",
        lambda: app.query_bus.send(GetOrder("o-1"), headers=acme_alice),
    )
    step(
        "4. how many books are left? (query by routing key 'stock.level')",
        lambda: app.query_bus.send_with_routing("stock.level", {"product": "book"}),
    )
    step(
        "5. alice@acme cancels o-1 with a JSON payload (command by routing key 'order.cancel')",
        lambda: app.command_bus.send_with_routing(
            "order.cancel", '{"order_id": "o-1", "reason": "changed my mind"}', headers=acme_alice
        ),
    )
    out("Asynchronous work: invoices are printed by the consumer of the 'invoices' queue.")
    out("")
    shop.printer.has_paper = False
    invoices = app.channel("invoices")
    queued = len(invoices) if isinstance(invoices, Sized) else "some"
    out(f"9. the printer is out of paper; run the 'invoices' consumer ({queued} queued)")
    handled = app.run("invoices", finish_when_no_messages=True)
    out(f"   {handled} deliveries: each invoice failed, was retried once, failed again")
    for letter in app.dead_letter.list():
        out(
            f"   dead letter for {letter.endpoint_id}: {letter.exception_type}: "
            f"{letter.exception_message} (order {letter.payload['order_id']})"
        )
    out("")
    shop.printer.has_paper = True
    out("10. paper refilled: replay the dead letters and run the consumer again")
    replayed = app.dead_letter.replay_all()
    handled = app.run("invoices", finish_when_no_messages=True)
    out(f"   replayed {replayed}, handled {handled}, dead letters left {app.dead_letter.count()}")
    for invoice in shop.printer.printed:
        out(f"   printed: {invoice}")
    out("")
    out("What happens on bad input:")
    out("")
    step(
        "11. carol@acme orders 0 pens (the @before validation refuses it)",
        lambda: app.command_bus.send(
            PlaceOrder("o-2", "pen", 0), headers={"tenant": "acme", "user": "carol"}
        ),
    )
    step(
        "12. alice@acme cancels with a one-letter reason (pydantic refuses the payload)",
        lambda: app.command_bus.send_with_routing(
            "order.cancel", {"order_id": "o-1", "reason": "x"}, headers=acme_alice
        ),
    )
    step(
        "13. someone mistypes the routing key 'order.cancle'",
        lambda: app.command_bus.send_with_routing("order.cancle", {"order_id": "o-1"}),
    )

    out("The audit log (an @around interceptor on the command bus) wrote:")
    for entry in shop.audit.entries:
        out(f"   {entry}")
    out("")
    out("Notifications (event handlers listening to 'order.*' and 'stock.*'):")
    for sent in shop.mailbox.sent:
        out(f"   {sent}")
    out("")
    stock = ", ".join(f"{units} x {product}" for product, units in shop.warehouse.stock.items())
    out(f"Stock now: {stock}")
    return shop


def _print_events(out: Output, messages: list[Message]) -> None:
    """Each event with its id, parent and correlation ids (shortened) and user headers."""
    names = {m.id: _name_of(m.payload) for m in messages}
    for message in messages:
        parent = message.parent_id or "-"
        parent_name = names.get(parent, "the command")
        headers = ", ".join(f"{k}={v}" for k, v in message.user_headers().items())
        out(f"   event {_name_of(message.payload)}: {message.payload!r}")
        out(
            f"      id {message.id[:8]}, parent {parent[:8]} ({parent_name}), "
            f"correlation {message.correlation_id[:8]}, headers: {headers}"
        )


def _name_of(payload: object) -> str:
    return type(payload).__name__
