"""``Order``: a state-stored aggregate. Its current state is one JSON document in
``ecopy_documents``, loaded before each command and saved after it with the next version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ecopy import (
    AggregateVersion,
    Header,
    Identifier,
    WithEvents,
    aggregate,
    command_handler,
    query_handler,
)
from examples.shop.domain import (
    CancelOrder,
    GetOrder,
    InvalidOrder,
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    OrderView,
    PaymentReceived,
    PayOrder,
    PlaceOrder,
    ShipOrder,
)
from examples.shop.interceptors import Validated
from examples.shop.services import Catalogue

Tenant = Annotated[str, Header("tenant")]
User = Annotated[str, Header("user")]


@aggregate
@dataclass
class Order(WithEvents):
    order_id: Annotated[str, Identifier]
    tenant: str
    placed_by: str
    product: str
    quantity: int
    total_cents: int
    status: str = "placed"
    version: Annotated[int, AggregateVersion] = 0

    @Validated()
    @command_handler
    @classmethod
    def place(cls, command: PlaceOrder, catalogue: Catalogue, tenant: Tenant, user: User) -> Order:
        total = catalogue.prices[command.product] * command.quantity
        order = cls(command.order_id, tenant, user, command.product, command.quantity, total)
        # Published once the order is saved; the event inherits the command's headers.
        order.record_that(OrderPlaced(order.order_id, order.product, order.quantity, total))
        return order

    @command_handler
    def pay(self, command: PayOrder) -> None:
        if self.status != "placed" or command.amount_cents != self.total_cents:
            raise InvalidOrder(
                f"order {self.order_id} is {self.status} and costs {self.total_cents} cents: "
                f"a payment of {command.amount_cents} cents is refused"
            )
        self.status = "paid"
        self.record_that(PaymentReceived(self.order_id, command.amount_cents))

    @command_handler
    def ship(self, command: ShipOrder) -> None:
        self.status = "shipped"
        self.record_that(OrderShipped(self.order_id))

    @command_handler("order.cancel")
    def cancel(self, command: CancelOrder) -> None:
        if self.status != "placed":
            raise InvalidOrder(f"order {self.order_id} is {self.status}: too late to cancel")
        self.status = "cancelled"
        self.record_that(OrderCancelled(self.order_id, command.reason))

    @query_handler
    def view(self, query: GetOrder) -> OrderView:
        return OrderView(
            order_id=self.order_id,
            tenant=self.tenant,
            placed_by=self.placed_by,
            product=self.product,
            quantity=self.quantity,
            total_cents=self.total_cents,
            status=self.status,
        )
