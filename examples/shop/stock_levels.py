"""``StockLevels``: a projection, the read model of the stock. It keeps one row per product in
its own table, written from the stored events of ``Stock`` in the transaction of the command
that stored them, and answers the query ``stock.levels`` from that table: no events are
replayed to answer it."""

from __future__ import annotations

import sqlalchemy as sa

from ecopy import event_handler, query_handler
from ecopy.projecting import (
    projection,
    projection_delete,
    projection_initialization,
    projection_reset,
)
from examples.shop.domain import StockReceived, StockReleased, StockReserved
from examples.shop.stock import Stock

TABLE = "shop_stock_levels"


@projection("stock_levels", from_streams=[Stock])
class StockLevels:
    @projection_initialization
    def create(self, connection: sa.Connection) -> None:
        connection.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (product VARCHAR(100) PRIMARY KEY, "
            f"available INTEGER NOT NULL, reserved INTEGER NOT NULL)"
        )

    @projection_reset
    def wipe(self, connection: sa.Connection) -> None:
        connection.exec_driver_sql(f"DELETE FROM {TABLE}")

    @projection_delete
    def drop(self, connection: sa.Connection) -> None:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")

    @event_handler
    def received(self, event: StockReceived, connection: sa.Connection) -> None:
        updated = connection.execute(
            sa.text(f"UPDATE {TABLE} SET available = available + :q WHERE product = :p"),
            {"q": event.quantity, "p": event.product},
        )
        if updated.rowcount == 0:
            connection.execute(
                sa.text(f"INSERT INTO {TABLE} VALUES (:p, :q, 0)"),
                {"p": event.product, "q": event.quantity},
            )

    @event_handler
    def reserved(self, event: StockReserved, connection: sa.Connection) -> None:
        self._move(connection, event.product, -event.quantity)

    @event_handler
    def released(self, event: StockReleased, connection: sa.Connection) -> None:
        self._move(connection, event.product, event.quantity)

    @staticmethod
    def _move(connection: sa.Connection, product: str, quantity: int) -> None:
        connection.execute(
            sa.text(
                f"UPDATE {TABLE} SET available = available + :q, reserved = reserved - :q "
                f"WHERE product = :p"
            ),
            {"q": quantity, "p": product},
        )

    @query_handler("stock.levels")
    def levels(self, query: object, connection: sa.Connection) -> dict[str, tuple[int, int]]:
        """Every product: (available, reserved)."""
        rows = connection.execute(
            sa.text(f"SELECT product, available, reserved FROM {TABLE} ORDER BY product")
        )
        return {product: (available, reserved) for product, available, reserved in rows}
