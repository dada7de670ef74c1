"""An application whose messages wait in channels, for ``ecopy list`` and ``ecopy graph``:
``--app tests.cli.outbox_app:system``.

``Register`` goes through the combined channel ``outbox`` (``db``, then ``rabbit``) to an
aggregate whose factory and action both take it; ``AccountOpened`` goes through ``emails``
to a welcome mail and is also counted synchronously; ``GetAccount`` is answered in the
caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ecopy import (
    CombinedMessageChannel,
    Identifier,
    MessagingSystem,
    QueueChannel,
    ServiceConfiguration,
    aggregate,
    asynchronous,
    bootstrap,
    command_handler,
    event_handler,
    named_event,
    query_handler,
)


@dataclass(frozen=True)
class Register:
    account_id: str


@named_event("account.opened")
@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@aggregate
@dataclass
class Account:
    account_id: Annotated[str, Identifier]
    registrations: int = 1

    @asynchronous("outbox")
    @command_handler
    @classmethod
    def open(cls, command: Register) -> Account:
        return cls(command.account_id)

    @asynchronous("outbox")
    @command_handler
    def register_again(self, command: Register) -> None:
        self.registrations += 1


class Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.opened = 0

    @asynchronous("emails")
    @event_handler(endpoint_id="welcome")
    def welcome(self, event: AccountOpened) -> None:
        self.sent.append(event.account_id)

    @event_handler(endpoint_id="count_openings")
    def count(self, event: AccountOpened) -> None:
        self.opened += 1

    @query_handler("account.mails", endpoint_id="mails_sent")
    def mails(self) -> list[str]:
        return self.sent


def create_system() -> MessagingSystem:
    return bootstrap(
        classes=[Account, Mailer],
        services=[Mailer()],
        config=ServiceConfiguration(
            service_name="accounts",
            extensions=[
                QueueChannel("db"),
                QueueChannel("rabbit"),
                QueueChannel("emails"),
                CombinedMessageChannel("outbox", ["db", "rabbit"]),
            ],
        ),
    )


system = create_system()
