"""``ecopy status``: how many messages each channel holds.

    ecopy --app shop.app:system status
    ecopy --app shop.app:system status orders payments
    ecopy --app shop.app:system status --json

Per pollable channel: the messages waiting (due now, or delayed), due, in flight (claimed by
a consumer) and dead-lettered; ``ecopy.messaging.status`` defines each count. A channel that
cannot count its messages is listed as "not reported".
"""

from __future__ import annotations

import json

import click
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from ecopy.cli.app_loading import ApplicationReference, pass_application
from ecopy.cli.console import console_for
from ecopy.errors import EcopyError
from ecopy.messaging.outage import describe
from ecopy.messaging.status import ChannelStatus, UnknownChannel

NOT_REPORTED = "not reported"
_COUNTS = ("waiting", "due", "in_flight", "dead_lettered")


@click.command("status")
@click.argument("channels", metavar="[CHANNEL]...", nargs=-1)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list, one object per channel; a count not reported is null.",
)
@pass_application
def status_command(
    application: ApplicationReference, channels: tuple[str, ...], as_json: bool
) -> None:
    """Show, per channel, the messages waiting, due, in flight and dead-lettered.

    Waiting: stored and not claimed (due now, or delayed). Due: a consumer would take it now.
    In flight: claimed by a consumer whose claim has not expired. Dead-lettered: failed for good
    on that channel (`ecopy dead-letter list`). Without CHANNEL, every channel that holds
    messages is shown.
    """
    system = application.load()
    try:
        statuses = system.channel_status(*channels)
    except UnknownChannel as error:
        raise click.UsageError(str(error)) from None
    except EcopyError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # the database or broker could not be reached, say
        raise click.ClickException(
            f"the channels could not be counted: {describe(error)}; check that the database "
            f"or broker of the application is reachable"
        ) from None
    if as_json:
        click.echo(json.dumps([status.as_dict() for status in statuses], indent=2))
        return
    if not statuses:
        click.echo("No channels: the application declares no channel that holds messages.")
        return
    renderables: list[RenderableType] = [status_table(statuses)]
    if any(not status.declared for status in statuses):
        renderables.append(
            Text(
                "* not declared by this application: only the dead letters that failed on it "
                "are known (`ecopy dead-letter list`)."
            )
        )
    console = console_for(renderables)
    for renderable in renderables:
        console.print(renderable)


def status_table(statuses: list[ChannelStatus]) -> Table:
    """One row per channel; counts right-aligned, "not reported" where a channel cannot tell."""
    table = Table()
    table.add_column("Channel")
    for header in ("Waiting", "Due", "In flight", "Dead-lettered"):
        table.add_column(header, justify="right")
    for status in statuses:
        name = status.channel if status.declared else f"{status.channel} *"
        counts = [getattr(status, field) for field in _COUNTS]
        table.add_row(
            Text(name),
            *(Text(NOT_REPORTED if count is None else str(count)) for count in counts),
        )
    return table
