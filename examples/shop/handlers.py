"""The shop's other handlers. Plain classes: ecopy builds each one once, passing its
constructor the services given to ``bootstrap`` (matched by type).

Notifications and invoices go out through the outbox: the channel ``outbox`` is a queue in the
database table ``ecopy_messages``, so their messages commit together with the command that
caused them, or not at all, and the consumer of ``outbox`` handles them later."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from ecopy import CommandBus, Header, Message, asynchronous, before, event_handler, priority
from examples.shop.domain import (
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    StockRunningLow,
)
from examples.shop.services import InvoicePrinter, Mailbox

Tenant = Annotated[str, Header("tenant")]
User = Annotated[str, Header("user")]


class Notifications:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    @asynchronous("outbox")
    @event_handler(listen_to="order.*")  # by name: order.placed, order.shipped, ...
    def tell_customer(self, event: object, user: User, tenant: Tenant) -> None:
        match event:
            case OrderPlaced(order_id=order_id, total_cents=total):
                text = f"order {order_id} is placed, total {total / 100:.2f}"
            case OrderShipped(order_id=order_id):
                text = f"order {order_id} is on its way"
            case OrderCancelled(order_id=order_id, reason=reason):
                text = f"order {order_id} is cancelled ({reason})"
            case _:
                text = f"news about your order: {event!r}"
        self.mailbox.sent.append(f"to {user}@{tenant}: {text}")

    @asynchronous("outbox")
    @event_handler
    def tell_warehouse(self, event: StockRunningLow) -> None:
        self.mailbox.sent.append(f"to warehouse: only {event.left} x {event.product} left")


class Invoicing:
    """A slow or broken printer never slows down or fails placing an order."""

    def __init__(self, printer: InvoicePrinter) -> None:
        self.printer = printer

    @asynchronous("outbox")
    @event_handler(endpoint_id="print_invoice")
    def print_invoice(self, event: OrderPlaced, tenant: Tenant) -> None:
        self.printer.print_invoice(
            f"invoice for {tenant} order {event.order_id}: {event.total_cents / 100:.2f}"
        )


@dataclass
class MessageJournal:
    """Every command and event, as the message it travelled in: the demo prints them."""

    messages: list[Message] = field(default_factory=list)

    @before(pointcut=CommandBus)
    def command(self, message: Message) -> None:
        self.messages.append(message)

    @priority(100)  # before any other handler, so the journal keeps publication order
    @event_handler(listen_to="*")
    def event(self, message: Message) -> None:
        self.messages.append(message)
