from dataclasses import dataclass

from ecopy import named_event


@dataclass
class PlaceOrder:
    order_id: str


@named_event("scanned.order_placed")
@dataclass
class OrderPlaced:
    order_id: str
