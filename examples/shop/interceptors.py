"""Cross-cutting behaviour: an audit log around the command bus and a validation step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from ecopy import CommandBus, Header, Marker, MethodInvocation, around, before
from examples.shop.domain import InvalidOrder, PlaceOrder
from examples.shop.services import Catalogue


class Validated(Marker):
    """Marks the handlers whose commands ``ValidateOrders`` checks first."""


@dataclass
class AuditEntry:
    user: str
    command: str
    message_id: str
    outcome: str = "in progress"

    def __str__(self) -> str:
        return f"[{self.message_id[:8]}] {self.user}: {self.command} -> {self.outcome}"


@dataclass
class AuditLog:
    """One entry per command, in the order they were sent: who sent what, and how it ended.

    Commands sent by handlers (a saga's, say) pass the command bus too, so they are audited
    with the headers they inherited."""

    entries: list[AuditEntry] = field(default_factory=list)

    @around(pointcut=CommandBus)
    def audit(
        self, invocation: MethodInvocation, user: Annotated[str, Header("user")] = "anonymous"
    ) -> Any:
        entry = AuditEntry(user, describe(invocation.payload), invocation.message.id)
        self.entries.append(entry)
        try:
            result = invocation.proceed()
        except Exception as error:
            entry.outcome = f"refused ({type(error).__name__})"
            raise
        entry.outcome = "ok"
        return result


class ValidateOrders:
    @before(pointcut=Validated)
    def check(self, command: PlaceOrder, catalogue: Catalogue) -> None:
        if command.product not in catalogue.prices:
            raise InvalidOrder(f"order {command.order_id}: we do not sell {command.product!r}")
        if command.quantity <= 0:
            raise InvalidOrder(f"order {command.order_id}: quantity must be positive")


def describe(payload: Any) -> str:
    return type(payload).__name__ if not isinstance(payload, (dict, str)) else repr(payload)
