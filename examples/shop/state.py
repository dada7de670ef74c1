"""The shop's state: in-memory stand-ins for what would be database tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from examples.shop.domain import OrderView


@dataclass
class Catalogue:
    """Prices in cents, by product."""

    prices: dict[str, int] = field(default_factory=dict)


@dataclass
class OrderBook:
    """Orders by (tenant, order id): two tenants may use the same order id."""

    orders: dict[tuple[str, str], OrderView] = field(default_factory=dict)


@dataclass
class Warehouse:
    """Units in stock, by product."""

    stock: dict[str, int] = field(default_factory=dict)


@dataclass
class Mailbox:
    """Notifications the shop sent."""

    sent: list[str] = field(default_factory=list)


@dataclass
class InvoicePrinter:
    """A printer that runs out of paper: the asynchronous part of the demo fails on it."""

    has_paper: bool = True
    printed: list[str] = field(default_factory=list)

    def print_invoice(self, text: str) -> None:
        if not self.has_paper:
            raise OSError("printer out of paper")
        self.printed.append(text)
