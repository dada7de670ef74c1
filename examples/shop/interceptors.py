"""Cross-cutting behaviour: an audit log around the command bus and a validation step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from ecopy import CommandBus, Header, Marker, MethodInvocation, around, before
from examples.shop.domain import InvalidOrder, PlaceOrder
from examples.shop.state import Catalogue


class Validated(Marker):
    """Marks the handlers whose commands ``ValidateOrders`` checks first."""


@dataclass(frozen=True)
class AuditEntry:
    user: str
    command: str
    message_id: str
    outcome: str

    def __str__(self) -> str:
        return f"[{self.message_id[:8]}] {self.user}: {self.command} -> {self.outcome}"


@dataclass
class AuditLog:
    """One entry per command: who sent what, and how it ended."""

    entries: list[AuditEntry] = field(default_factory=list)

    @around(pointcut=CommandBus)
    def audit(
        self, invocation: MethodInvocation, user: Annotated[str, Header("user")] = "anonymous"
    ) -> Any:
        what = describe(invocation.payload)
        message_id = invocation.message.id
        try:
            result = invocation.proceed()
        except Exception as error:
            refused = f"refused ({type(error).__name__})"
            self.entries.append(AuditEntry(user, what, message_id, refused))
            raise
        self.entries.append(AuditEntry(user, what, message_id, "ok"))
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
