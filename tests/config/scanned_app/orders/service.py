from ecopy import EventBus, command_handler, query_handler
from tests.config.scanned_app.messages import OrderPlaced, PlaceOrder


class OrderService:
    def __init__(self) -> None:
        self.placed: list[str] = []

    @command_handler
    def place(self, command: PlaceOrder, events: EventBus) -> None:
        self.placed.append(command.order_id)
        events.publish(OrderPlaced(command.order_id))

    @query_handler("scanned.placed_orders")
    def placed_orders(self) -> list[str]:
        return list(self.placed)


class NotAHandler:
    """Has no ecopy declarations: scanning ignores it."""
