"""The payments shop of ``tests/cli/async_app.py`` as one test sees it."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import Result

from ecopy import MessagingSystem
from tests.cli.async_app import Notifications, OrderPlaced, Payments
from tests.cli.invoking import invoke_ecopy

ASYNC_APP = "tests.cli.async_app:system"


@dataclass
class PaymentsShop:
    """A fresh system installed as ``tests.cli.async_app:system``: every ``ecopy`` command of
    the test loads this same instance, so they share its in-memory queue and dead letters."""

    system: MessagingSystem
    payments: Payments
    notifications: Notifications

    def place_orders(self, *order_ids: str, amount: int = 30) -> None:
        for order_id in order_ids:
            self.system.event_bus.publish(OrderPlaced(order_id, amount))

    def decline(self, *order_ids: str) -> None:
        self.payments.declined.update(order_ids)

    def accept_all_cards(self) -> None:
        self.payments.declined.clear()

    def ecopy(self, *args: str, input: str | None = None) -> Result:
        """``ecopy --app tests.cli.async_app:system ARGS``."""
        return invoke_ecopy("--app", ASYNC_APP, *args, input=input)

    def run_orders(self) -> Result:
        result = self.ecopy("run", "orders", "--finish-when-no-messages")
        assert result.exit_code == 0, result.output
        return result

    def dead_letters(self, *options: str) -> list[dict[str, str]]:
        """The rows of ``ecopy dead-letter list OPTIONS``, by column header."""
        result = self.ecopy("dead-letter", "list", *options)
        assert result.exit_code == 0, result.output
        return table_rows(result.stdout)


def table_rows(output: str) -> list[dict[str, str]]:
    """The rows of the rich table in ``output``, each a dict from column header to cell."""
    lines = output.splitlines()
    (header,) = [line for line in lines if line.startswith("┃")]
    names = _cells(header, "┃")
    return [
        dict(zip(names, _cells(line, "│"), strict=True)) for line in lines if line.startswith("│")
    ]


def _cells(line: str, separator: str) -> list[str]:
    return [cell.strip() for cell in line.strip(separator).split(separator)]
