"""``ecopy list``: the application's endpoints and consumers as rich tables."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ecopy.cli.console import console_for
from ecopy.config.system import ConsumerInfo, EndpointChannels, MessagingSystem
from ecopy.messaging.endpoint import EndpointInfo

_NONE = "—"
_HOP = " → "
CHOSEN_NOTE = (
    "An endpoint chosen by another is never routed to by itself: the other endpoint's "
    "handler runs it instead (an aggregate's factory, when the aggregate does not exist yet)."
)


def endpoints_section(
    endpoints: Iterable[EndpointInfo], channels: Iterable[EndpointChannels] = ()
) -> list[RenderableType]:
    """A heading and one row per endpoint, or a sentence saying there are none.

    The last column, "Handled", comes from ``channels`` (``app.endpoint_channels()``): the
    channels an asynchronous endpoint's messages go through, every hop in order, or "in
    caller"; an endpoint chosen by another says which.
    """
    rows = list(endpoints)
    if not rows:
        return [Text("No endpoints: the application declares no handlers.")]
    handling = {entry.endpoint_id: entry for entry in channels}
    table = Table()
    for header in (
        "Endpoint id",
        "Kind",
        "Routes",
        "Handler",
        "Input channel",
        "Output channel",
        "Handled",
    ):
        table.add_column(header)
    for info in rows:
        # Text cells: names such as "order.[ab]*" must not be read as rich markup.
        table.add_row(
            Text(info.endpoint_id),
            Text(info.kind),
            Text("\n".join(info.routes) or _NONE),
            Text(info.handler),
            Text(info.input_channel or _NONE),
            Text(info.output_channel or _NONE),
            Text(handled_cell(handling.get(info.endpoint_id))),
        )
    section: list[RenderableType] = [_heading(f"Endpoints ({len(rows)})"), table]
    if any(entry.chosen_by for entry in handling.values()):
        section.append(Text(CHOSEN_NOTE))
    return section


def handled_cell(entry: EndpointChannels | None) -> str:
    """Where an endpoint's handler runs: "in caller", or in a consumer, reached via the
    channels a message goes through ("via db → rabbit"); then, on a line of its own, the
    endpoint that chooses it."""
    if entry is None:
        return _NONE
    where = f"via {_HOP.join(entry.channels)}" if entry.channels else "in caller"
    return where if entry.chosen_by is None else f"{where}\nchosen by {entry.chosen_by}"


def consumers_section(consumers: Iterable[ConsumerInfo]) -> list[RenderableType]:
    """A heading and one row per consumer (what ``ecopy run`` starts), or a sentence saying
    there are none."""
    rows = list(consumers)
    if not rows:
        return [
            Text("No consumers: no endpoint listens on a pollable channel such as a QueueChannel.")
        ]
    table = Table()
    for header in ("Name", "Channel", "Endpoints"):
        table.add_column(header)
    for consumer in rows:
        table.add_row(
            Text(consumer.name),
            Text(consumer.channel),
            Text("\n".join(consumer.endpoints) or _NONE),
        )
    return [_heading(f"Consumers ({len(rows)})"), table]


def _heading(text: str) -> Text:
    # Printed above the table rather than as its title, which rich pads with spaces.
    return Text(text, style="bold")


def print_listing(system: MessagingSystem, console: Console | None = None) -> None:
    """Print the endpoints section, a blank line, then the consumers section."""
    renderables = [
        *endpoints_section(system.endpoints(), system.endpoint_channels()),
        Text(),
        *consumers_section(system.list_consumers()),
    ]
    console = console or console_for(renderables)
    for renderable in renderables:
        console.print(renderable)
