"""The services the handlers are given (matched by type): stand-ins for the world outside the
database — a price list, a mail server and a printer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Catalogue:
    """Prices in cents, by product."""

    prices: dict[str, int] = field(default_factory=dict)


@dataclass
class Mailbox:
    """The notifications the shop sent."""

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
