"""The shop's messages. Commands and queries are requests; events are facts."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from ecopy import named_event

# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceOrder:
    """Routed by its class: ``command_bus.send(PlaceOrder(...))``."""

    order_id: str
    product: str
    quantity: int


class CancelOrder(BaseModel):
    """Routed by the key ``"order.cancel"``; arrives as a dict (or JSON) and is validated."""

    order_id: str
    reason: str = Field(min_length=3)


# -- events -----------------------------------------------------------------------------


@named_event("order.placed")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    product: str
    quantity: int
    total_cents: int


@named_event("order.cancelled")
@dataclass(frozen=True)
class OrderCancelled:
    order_id: str
    product: str
    quantity: int
    reason: str


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
    product: str
    quantity: int
    total_cents: int
    status: str
    placed_by: str


class InvalidOrder(ValueError):
    """A command the shop refuses; raised by the validation interceptor."""
