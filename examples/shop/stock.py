"""``Stock``: an event-sourced aggregate, one per product. It stores no state, only its events
(rows of ``ecopy_events``); each command replays them to learn what is left."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ecopy import (
    AggregateVersion,
    Identifier,
    command_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
    query_handler,
)
from examples.shop.domain import (
    NotEnoughStock,
    ReceiveStock,
    ReleaseStock,
    ReserveStock,
    StockReceived,
    StockReleased,
    StockReserved,
    StockRunningLow,
)

LOW_STOCK = 2


@event_sourcing_aggregate
@dataclass
class Stock:
    product: Annotated[str, Identifier]
    available: int = 0
    version: Annotated[int, AggregateVersion] = 0

    # Command handlers decide: they check the rules and return the new events.

    @command_handler
    @staticmethod
    def receive(command: ReceiveStock) -> list[object]:
        return [StockReceived(command.product, command.quantity)]

    @command_handler
    def reserve(self, command: ReserveStock) -> list[object]:
        if command.quantity > self.available:
            raise NotEnoughStock(
                f"order {command.order_id} wants {command.quantity} x {self.product}, "
                f"only {self.available} left"
            )
        events: list[object] = [StockReserved(self.product, command.quantity, command.order_id)]
        left = self.available - command.quantity
        if left <= LOW_STOCK:
            events.append(StockRunningLow(self.product, left))
        return events

    @command_handler
    def release(self, command: ReleaseStock) -> list[object]:
        return [StockReleased(self.product, command.quantity, command.order_id)]

    @query_handler("stock.level")  # by routing key; the product is read from a dict payload
    def level(self) -> int:
        return self.available

    # Event-sourcing handlers evolve the state, one event at a time: they replay history.

    @event_sourcing_handler
    def received(self, event: StockReceived) -> None:
        self.product = event.product
        self.available += event.quantity

    @event_sourcing_handler
    def reserved(self, event: StockReserved) -> None:
        self.available -= event.quantity

    @event_sourcing_handler
    def released(self, event: StockReleased) -> None:
        self.available += event.quantity
