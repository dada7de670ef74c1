"""A shop whose card payments are handled asynchronously, for ``ecopy run`` and
``ecopy dead-letter``: ``--app tests.cli.async_app:system``.

Each placed order goes through the ``orders`` queue to two handlers, ``charge_card`` and
``notify_customer``. The card provider declines the orders listed in ``Payments.declined``;
without retries, a declined charge goes straight to the dead-letter store.

The dead-letter store lives in memory, inside the system, so every command of a test must see
the same system: ``system`` is that one instance (a test replaces it with a fresh one), and
``create_system_with_pending_orders`` starts with orders already waiting, for a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecopy import (
    ErrorHandlerConfiguration,
    MessagingSystem,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    bootstrap,
    event_handler,
    named_event,
)


@named_event("order.placed")
@dataclass
class OrderPlaced:
    order_id: str
    amount: int


class CardDeclined(Exception):
    pass


@dataclass
class Payments:
    declined: set[str] = field(default_factory=set)
    charged: list[str] = field(default_factory=list)
    charge_attempts: list[str] = field(default_factory=list)

    @asynchronous("orders")
    @event_handler(endpoint_id="charge_card")
    def charge(self, event: OrderPlaced) -> None:
        self.charge_attempts.append(event.order_id)
        if event.order_id in self.declined:
            raise CardDeclined(f"card declined for order {event.order_id} ({event.amount} EUR)")
        self.charged.append(event.order_id)


@dataclass
class Notifications:
    notified: list[str] = field(default_factory=list)

    @asynchronous("orders")
    @event_handler(endpoint_id="notify_customer")
    def notify(self, event: OrderPlaced) -> None:
        self.notified.append(event.order_id)


def create_system(
    payments: Payments | None = None, notifications: Notifications | None = None
) -> MessagingSystem:
    """The app factory: ``--app tests.cli.async_app:create_system``."""
    return bootstrap(
        classes=[Payments, Notifications],
        services=[payments or Payments(), notifications or Notifications()],
        config=ServiceConfiguration(
            service_name="payments",
            extensions=[
                QueueChannel("orders"),
                # No retries: a failed message is dead-lettered at once.
                ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 0)),
            ],
        ),
    )


def create_system_with_pending_orders() -> MessagingSystem:
    """Three orders placed (six messages queued); the card of ``o-2`` is declined."""
    app = create_system(Payments(declined={"o-2"}))
    for order_id in ("o-1", "o-2", "o-3"):
        app.event_bus.publish(OrderPlaced(order_id, 30))
    return app


system = create_system()


def create_system_slowly() -> MessagingSystem:
    """Orders pending, built by a factory that takes its time (as one that connects to a
    database and scans packages does): it says ``loading`` on stderr, then waits for the file
    named by ``SLOW_LOADING_RELEASE`` (at most 20 s)."""
    import os
    import sys
    import time
    from pathlib import Path

    print("loading", file=sys.stderr, flush=True)
    release = Path(os.environ["SLOW_LOADING_RELEASE"])
    deadline = time.monotonic() + 20
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return create_system_with_pending_orders()
