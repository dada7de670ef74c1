"""The shop's messages. Commands and queries are requests; events are facts."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from ecopy import named_event

# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiveStock:
    product: str
    quantity: int


@dataclass(frozen=True)
class PlaceOrder:
    """Routed by its class: ``command_bus.send(PlaceOrder(...))``."""

    order_id: str
    product: str
    quantity: int


@dataclass(frozen=True)
class PayOrder:
    order_id: str
    amount_cents: int


class CancelOrder(BaseModel):
    """Routed by the key ``"order.cancel"``; arrives as a dict (or JSON) and is validated."""

    order_id: str
    reason: str = Field(min_length=3)


@dataclass(frozen=True)
class ReserveStock:
    """Sent by the fulfilment saga when an order is placed."""

    product: str
    quantity: int
    order_id: str


@dataclass(frozen=True)
class ReleaseStock:
    """Sent by the fulfilment saga when an order is cancelled."""

    product: str
    quantity: int
    order_id: str


@dataclass(frozen=True)
class ShipOrder:
    """Sent by the fulfilment saga when an order is paid."""

    order_id: str


# -- events -----------------------------------------------------------------------------


@named_event("order.placed")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    product: str
    quantity: int
    total_cents: int


@named_event("payment.received")
@dataclass(frozen=True)
class PaymentReceived:
    order_id: str
    amount_cents: int


@named_event("order.shipped")
@dataclass(frozen=True)
class OrderShipped:
    order_id: str


@named_event("order.cancelled")
@dataclass(frozen=True)
class OrderCancelled:
    order_id: str
    reason: str


@named_event("stock.received")
@dataclass(frozen=True)
class StockReceived:
    product: str
    quantity: int


@named_event("stock.reserved")
@dataclass(frozen=True)
class StockReserved:
    product: str
    quantity: int
    order_id: str


@named_event("stock.released")
@dataclass(frozen=True)
class StockReleased:
    product: str
    quantity: int
    order_id: str


@named_event("stock.low")
@dataclass(frozen=True)
class StockRunningLow:
    product: str
    left: int


# -- queries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GetOrder:
    order_id: str


class OrderView(BaseModel):
    """What ``GetOrder`` answers."""

    order_id: str
    tenant: str
    placed_by: str
    product: str
    quantity: int
    total_cents: int
    status: str


# -- refusals ---------------------------------------------------------------------------


class InvalidOrder(ValueError):
    """A command the shop refuses: raised by the validation interceptor and by ``Order``."""


class NotEnoughStock(ValueError):
    """Raised by ``Stock`` when an order wants more than is left."""
