"""``ecopy list``: the application's endpoints and consumers as rich tables."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ecopy.cli.console import console_for
from ecopy.config.system import ConsumerInfo, MessagingSystem
from ecopy.messaging.endpoint import EndpointInfo

_NONE = "—"


def endpoints_section(endpoints: Iterable[EndpointInfo]) -> list[RenderableType]:
    """A heading and one row per endpoint, or a sentence saying there are none."""
    rows = list(endpoints)
    if not rows:
        return [Text("No endpoints: the application declares no handlers.")]
    table = Table()
    for header in ("Endpoint id", "Kind", "Routes", "Handler", "Input channel", "Output channel"):
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
        )
    return [_heading(f"Endpoints ({len(rows)})"), table]


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
        *endpoints_section(system.endpoints()),
        Text(),
        *consumers_section(system.list_consumers()),
    ]
    console = console or console_for(renderables)
    for renderable in renderables:
        console.print(renderable)
