"""Applications that ``--app`` points at in tests/errors: each fails in its own way."""

from __future__ import annotations

from ecopy import MessagingSystem, ServiceConfiguration, bootstrap
from ecopy_dbal import DbalChannel, DbalConfiguration

#: Nothing listens on port 1: every connection is refused at once.
UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/shop"


def unreachable() -> MessagingSystem:
    """An application whose database server is down (it starts, and rides out the outage)."""
    return bootstrap(
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=UNREACHABLE_URL), DbalChannel("orders")]
        )
    )
