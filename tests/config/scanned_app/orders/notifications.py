from ecopy import event_handler
from tests.config.scanned_app.messages import OrderPlaced
from tests.config.scanned_app.orders.service import OrderService  # imported, not defined here

__all__ = ["OrderService", "Outbox", "notify"]


class Outbox:
    """A plain service: no declarations, so scanning does not pick it up."""

    def __init__(self) -> None:
        self.sent: list[str] = []


@event_handler(listen_to="scanned.*")
def notify(event: OrderPlaced, outbox: Outbox) -> None:
    outbox.sent.append(f"notified {event.order_id}")
