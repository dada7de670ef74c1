"""The shop's handlers. Plain classes: ecopy builds each one once, passing its constructor the
services given to ``bootstrap`` (matched by type)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from ecopy import (
    EventBus,
    Header,
    Message,
    asynchronous,
    command_handler,
    event_handler,
    priority,
    query_handler,
)
from examples.shop.domain import (
    CancelOrder,
    GetOrder,
    OrderCancelled,
    OrderPlaced,
    OrderView,
    PlaceOrder,
    StockRunningLow,
)
from examples.shop.interceptors import Validated
from examples.shop.state import Catalogue, InvoicePrinter, Mailbox, OrderBook, Warehouse

Tenant = Annotated[str, Header("tenant")]
User = Annotated[str, Header("user")]

LOW_STOCK = 2


# -- handlers ---------------------------------------------------------------------------


class OrderService:
    def __init__(self, book: OrderBook, catalogue: Catalogue) -> None:
        self.book = book
        self.catalogue = catalogue

    @Validated()
    @command_handler
    def place(self, command: PlaceOrder, events: EventBus, tenant: Tenant, user: User) -> str:
        total = self.catalogue.prices[command.product] * command.quantity
        self.book.orders[tenant, command.order_id] = OrderView(
            order_id=command.order_id,
            tenant=tenant,
            product=command.product,
            quantity=command.quantity,
            total_cents=total,
            status="placed",
            placed_by=user,
        )
        # The event inherits this command's headers (tenant, user) and correlation id.
        events.publish(OrderPlaced(command.order_id, command.product, command.quantity, total))
        return command.order_id

    @command_handler("order.cancel")
    def cancel(self, command: CancelOrder, events: EventBus, tenant: Tenant) -> None:
        order = self.book.orders[tenant, command.order_id]
        order.status = "cancelled"
        cancelled = OrderCancelled(order.order_id, order.product, order.quantity, command.reason)
        events.publish(cancelled)

    @query_handler
    def get(self, query: GetOrder, tenant: Tenant) -> OrderView:
        return self.book.orders[tenant, query.order_id]


class Inventory:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    @event_handler  # by class
    def reserve(self, event: OrderPlaced, events: EventBus) -> None:
        left = self.warehouse.stock[event.product] - event.quantity
        self.warehouse.stock[event.product] = left
        if left <= LOW_STOCK:
            events.publish(StockRunningLow(event.product, left))

    @event_handler
    def release(self, event: OrderCancelled) -> None:
        self.warehouse.stock[event.product] += event.quantity

    @query_handler("stock.level")  # by routing key; the payload stays a dict
    def level(self, query: dict[str, str]) -> int:
        return self.warehouse.stock[query["product"]]


class Notifications:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    @event_handler(listen_to="order.*")  # by name: order.placed, order.cancelled, ...
    def tell_customer(self, event: object, user: User, tenant: Tenant) -> None:
        match event:
            case OrderPlaced(order_id=order_id, total_cents=total):
                text = f"order {order_id} is placed, total {total / 100:.2f}"
            case OrderCancelled(order_id=order_id, reason=reason):
                text = f"order {order_id} is cancelled ({reason})"
            case _:
                text = f"news about your order: {event!r}"
        self.mailbox.sent.append(f"to {user}@{tenant}: {text}")

    @event_handler(listen_to="stock.*")
    def tell_warehouse(self, event: StockRunningLow) -> None:
        self.mailbox.sent.append(f"to warehouse: only {event.left} x {event.product} left")


class Invoicing:
    """Invoices are printed later, by the consumer of the ``invoices`` queue: a slow or broken
    printer never slows down or fails placing an order."""

    def __init__(self, printer: InvoicePrinter) -> None:
        self.printer = printer

    @asynchronous("invoices")
    @event_handler(endpoint_id="print_invoice")
    def print_invoice(self, event: OrderPlaced, tenant: Tenant) -> None:
        self.printer.print_invoice(
            f"invoice for {tenant} order {event.order_id}: {event.total_cents / 100:.2f}"
        )


@dataclass
class EventJournal:
    """Every event, as the message it travelled in: the demo prints it."""

    messages: list[Message] = field(default_factory=list)

    @priority(100)  # before any other handler, so the journal keeps publication order
    @event_handler(listen_to="*")
    def record(self, message: Message) -> None:
        self.messages.append(message)
