"""``OrderFulfilment``: a saga. It follows each order from its events, remembers where the
order stands (a JSON document in ``ecopy_documents``, like a state-stored aggregate) and sends
the commands that move it on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ecopy import AggregateVersion, CommandBus, Identifier, event_handler, saga
from examples.shop.domain import (
    OrderCancelled,
    OrderPlaced,
    PaymentReceived,
    ReleaseStock,
    ReserveStock,
    ShipOrder,
)


@saga
@dataclass
class OrderFulfilment:
    order_id: Annotated[str, Identifier]
    product: str
    quantity: int
    status: str = "stock reserved, awaiting payment"
    version: Annotated[int, AggregateVersion] = 0

    @event_handler
    @classmethod
    def start(cls, event: OrderPlaced, commands: CommandBus) -> OrderFulfilment:
        commands.send(ReserveStock(event.product, event.quantity, event.order_id))
        return cls(event.order_id, event.product, event.quantity)

    @event_handler
    def when_paid(self, event: PaymentReceived, commands: CommandBus) -> None:
        commands.send(ShipOrder(self.order_id))
        self.status = "paid, shipping requested"

    @event_handler
    def when_cancelled(self, event: OrderCancelled, commands: CommandBus) -> None:
        commands.send(ReleaseStock(self.product, self.quantity, self.order_id))
        self.status = "cancelled, stock released"
