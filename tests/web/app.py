"""A small ticketing service behind FastAPI, as a user of ``ecopy.web.fastapi`` writes one:
an aggregate with optimistic locking, a service that records the headers its handlers see,
and endpoints for each dependency the integration provides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Request

from ecopy import (
    AggregateVersion,
    Header,
    Headers,
    Identifier,
    MessagingSystem,
    TargetVersion,
    WithEvents,
    aggregate,
    command_handler,
    event_handler,
    query_handler,
)
from ecopy.web.fastapi import (
    Commands,
    Events,
    Messaging,
    Queries,
    SyncCommands,
    SyncEvents,
    SyncQueries,
    install,
    service,
)


@dataclass(frozen=True)
class OpenTicket:
    ticket_id: str
    title: str
    seats: int = 1


@dataclass(frozen=True)
class RenameTicket:
    ticket_id: str
    title: str
    seen_version: Annotated[int | None, TargetVersion] = None


@dataclass(frozen=True)
class TicketOpened:
    ticket_id: str


@dataclass(frozen=True)
class SeatsLeft:
    ticket_id: str


@aggregate
@dataclass
class Ticket(WithEvents):
    ticket_id: Annotated[str, Identifier]
    title: str
    seats: int
    tenant: str | None = None
    version: Annotated[int, AggregateVersion] = 0

    @command_handler("ticket.open")
    @classmethod
    def open(
        cls, command: OpenTicket, tenant: Annotated[str | None, Header("tenant")] = None
    ) -> Ticket:
        ticket = cls(command.ticket_id, command.title, command.seats, tenant)
        ticket.record_that(TicketOpened(command.ticket_id))
        return ticket

    @command_handler
    def rename(self, command: RenameTicket) -> int:
        self.title = command.title
        return self.version + 1


class Journal:
    """What the handlers saw: the headers of each message, by handler."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @command_handler("journal.note")
    def note(self, headers: Annotated[dict[str, Any], Headers]) -> str:
        self.seen.append(("command", headers))
        return str(headers["id"])

    @query_handler("journal.ask")
    def ask(self, headers: Annotated[dict[str, Any], Headers]) -> str:
        self.seen.append(("query", headers))
        return "answer"

    @event_handler(listen_to="journal.happened")
    def happened(self, headers: Annotated[dict[str, Any], Headers]) -> None:
        self.seen.append(("event", headers))

    @event_handler
    def opened(self, event: TicketOpened, headers: Annotated[dict[str, Any], Headers]) -> None:
        self.seen.append(("opened", headers))

    @query_handler
    def seats_left(self, query: SeatsLeft, quota: Annotated[int, Header("quota")]) -> int:
        return quota

    def headers_of(self, kind: str) -> list[dict[str, Any]]:
        return [headers for seen_kind, headers in self.seen if seen_kind == kind]


COPIED = {"X-Tenant": "tenant", "X-Correlation-Id": "correlation_id", "X-Quota": "quota"}


def create_api(factory: Callable[[], MessagingSystem]) -> FastAPI:
    api = FastAPI()
    install(api, factory, headers=COPIED)

    @api.post("/tickets", status_code=201)
    async def open_ticket(request: Request, commands: Commands) -> dict[str, Any]:
        # The body goes to ecopy as it came: ecopy's conversion validates it (422 if wrong).
        return {"ticket_id": await commands.send_with_routing("ticket.open", await request.json())}

    @api.put("/tickets/{ticket_id}/title")
    async def rename_ticket(
        ticket_id: str, title: str, commands: Commands, seen_version: int | None = None
    ) -> dict[str, Any]:
        version = await commands.send(RenameTicket(ticket_id, title, seen_version))
        return {"version": version}

    @api.get("/tickets/{ticket_id}/seats")
    async def seats_left(ticket_id: str, queries: Queries) -> int:
        answer: int = await queries.send(SeatsLeft(ticket_id))
        return answer

    @api.post("/journal/async")
    async def note_async(commands: Commands, queries: Queries, events: Events) -> str:
        await events.publish_with_routing("journal.happened", headers={"by": "endpoint"})
        await queries.send_with_routing("journal.ask")
        return str(await commands.send_with_routing("journal.note"))

    @api.post("/journal/sync")
    def note_sync(commands: SyncCommands, queries: SyncQueries, events: SyncEvents) -> str:
        # A plain def endpoint: FastAPI runs it in its thread pool, where the synchronous
        # buses block nothing.
        events.publish_with_routing("journal.happened")
        queries.send_with_routing("journal.ask")
        return str(commands.send_with_routing("journal.note"))

    @api.post("/journal/blocking")
    async def note_blocking(commands: SyncCommands) -> str:
        # The mistake the warning is for: a synchronous bus in an async def endpoint.
        return str(commands.send_with_routing("journal.note"))

    @api.get("/journal/size")
    async def journal_size(journal: Annotated[Journal, service(Journal)]) -> int:
        return len(journal.seen)

    @api.get("/service-name")
    async def service_name(app: Messaging) -> str:
        return app.service_name

    return api
