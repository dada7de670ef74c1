"""A small shop used by the CLI tests: ``ecopy --app tests.cli.sample_app:system ...``.

Commands by class and by routing key, a query by routing key, events by class and by the
pattern ``order.*``, a direct ``output_channel`` to an internal handler, and a queue channel
with its consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecopy import (
    MessagingSystem,
    QueueChannel,
    ServiceConfiguration,
    bootstrap,
    command_handler,
    event_handler,
    internal_handler,
    named_event,
    query_handler,
)


@dataclass
class PlaceOrder:
    order_id: str


@named_event("order.placed")
@dataclass
class OrderPlaced:
    order_id: str


@dataclass
class ShipOrder:
    order_id: str


class OrderService:
    def __init__(self) -> None:
        self.orders: dict[str, str] = {}
        self.audit: list[str] = []

    @command_handler(endpoint_id="place_order", output_channel="shipping")
    def place(self, command: PlaceOrder) -> ShipOrder:
        self.orders[command.order_id] = "placed"
        return ShipOrder(command.order_id)

    @command_handler("order.cancel", endpoint_id="cancel_order")
    def cancel(self, payload: dict[str, str]) -> None:
        self.orders[payload["order_id"]] = "cancelled"

    @query_handler("order.get", endpoint_id="get_order")
    def get(self, payload: dict[str, str]) -> str | None:
        return self.orders.get(payload["order_id"])

    @internal_handler("shipping", endpoint_id="ship_order")
    def ship(self, command: ShipOrder) -> None:
        self.orders[command.order_id] = "shipped"


class Notifications:
    def __init__(self) -> None:
        self.sent: list[str] = []

    @event_handler(endpoint_id="notify_customer", output_channel="audit")
    def notify(self, event: OrderPlaced) -> str:
        self.sent.append(event.order_id)
        return f"customer notified of {event.order_id}"

    @event_handler(listen_to="order.*", endpoint_id="order_statistics")
    def count(self) -> None:
        pass

    @internal_handler("audit", endpoint_id="audit_log")
    def record(self, line: str) -> None:
        self.sent.append(line)


def create_system() -> MessagingSystem:
    """The app factory: ``--app tests.cli.sample_app:create_system``."""
    return bootstrap(
        classes=[OrderService, Notifications],
        services=[OrderService(), Notifications()],
        config=ServiceConfiguration(service_name="shop", extensions=[QueueChannel("shipping")]),
    )


system = create_system()
