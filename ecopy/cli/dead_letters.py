"""``ecopy dead-letter``: inspect, replay and delete the messages that failed for good.

    ecopy --app shop.app:system dead-letter list [--limit 50] [--offset 0]
    ecopy --app shop.app:system dead-letter show ID
    ecopy --app shop.app:system dead-letter replay ID
    ecopy --app shop.app:system dead-letter replay-all
    ecopy --app shop.app:system dead-letter delete ID
    ecopy --app shop.app:system dead-letter delete --all [--yes]

Every command goes through the application's ``DeadLetter`` gateway (``app.dead_letter``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from ecopy.cli.app_loading import ApplicationReference, pass_application
from ecopy.cli.console import console_for
from ecopy.config.system import MessagingSystem
from ecopy.errors import EcopyError
from ecopy.messaging.dead_letter import (
    EXCEPTION_MESSAGE,
    EXCEPTION_TRACEBACK,
    EXCEPTION_TYPE,
    DeadLetter,
    DeadLetterEntry,
    DeadLetterNotFound,
)

DEFAULT_LIMIT = 50
MESSAGE_WIDTH = 60
"""Characters of the exception message shown in the list; ``show`` prints all of it."""

_NONE = "—"
# Shown in their own fields by `show`, so not repeated among the headers.
_EXCEPTION_HEADERS = frozenset({EXCEPTION_TYPE, EXCEPTION_MESSAGE, EXCEPTION_TRACEBACK})


@click.group("dead-letter")
def dead_letter_group() -> None:
    """Inspect, replay and delete dead letters: messages that failed for good.

    Replaying sends a message back to the channel it failed on, addressed only to the endpoint
    it failed in; run that channel's consumer (`ecopy run`) to handle it again. Delete one
    dead letter with `delete ID`, or all of them with `delete --all`.
    """


@dead_letter_group.command("list")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Show at most this many dead letters.",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Skip this many dead letters first.",
)
@pass_application
def list_command(application: ApplicationReference, limit: int, offset: int) -> None:
    """List the dead letters: when, where and why each message failed.

    Oldest first, in pages of --limit; exception messages are cut to their first line.
    """
    gateway = application.load().dead_letter
    with _gateway_errors():
        total = gateway.count()
        entries = gateway.list(limit=limit, offset=offset) if total else []
    if not total:
        click.echo("No dead letters.")
        return
    if not entries:
        click.echo(f"No dead letters at offset {offset}: there are {total}.")
        return
    last = offset + len(entries)
    if offset == 0 and last >= total:
        heading = f"Dead letters ({total})"
    else:
        heading = f"Dead letters {offset + 1} to {last} of {total}"
    renderables: list[RenderableType] = [Text(heading, style="bold"), dead_letters_table(entries)]
    if last < total:
        limit_option = f" --limit {limit}" if limit != DEFAULT_LIMIT else ""
        renderables.append(Text(f"Next page: ecopy dead-letter list{limit_option} --offset {last}"))
    _print(renderables)


@dead_letter_group.command("show")
@click.argument("entry_id", metavar="ID")
@pass_application
def show_command(application: ApplicationReference, entry_id: str) -> None:
    """Show one dead letter in full: message, headers, exception and traceback."""
    gateway = application.load().dead_letter
    with _gateway_errors(gateway):
        entry = gateway.show(entry_id)
    _print(dead_letter_details(entry))


@dead_letter_group.command("replay")
@click.argument("entry_id", metavar="ID")
@pass_application
def replay_command(application: ApplicationReference, entry_id: str) -> None:
    """Replay one dead letter to the endpoint it failed in.

    The message goes back to the channel it failed on, addressed to that endpoint only, and
    leaves the dead letters; run the channel's consumer to handle it.
    """
    system = application.load()
    with _gateway_errors(system.dead_letter):
        entry = system.dead_letter.show(entry_id)
        system.dead_letter.replay(entry_id)
    endpoint = f" for endpoint {entry.endpoint_id}" if entry.endpoint_id else ""
    click.echo(f"Replayed dead letter {entry.id} to channel {entry.channel}{endpoint}.")
    consumer = _consumer_of(system, entry.channel)
    if consumer is not None:
        click.echo(f"Run `ecopy run {consumer}` to handle it.")


@dead_letter_group.command("replay-all")
@pass_application
def replay_all_command(application: ApplicationReference) -> None:
    """Replay every dead letter, each to the endpoint it failed in.

    Those that cannot be replayed (an unreadable message, a channel the application no longer
    has) stay, and are listed with the reason; the exit status is then 1.
    """
    gateway = application.load().dead_letter
    failed: list[tuple[DeadLetterEntry, EcopyError]] = []
    with _gateway_errors():
        replayed = gateway.replay_all(on_failure=lambda entry, error: failed.append((entry, error)))
    if not replayed and not failed:
        click.echo("No dead letters to replay.")
        return
    if replayed:
        click.echo(
            f"Replayed {_count(replayed)}. Run their consumers (`ecopy list` shows them) to "
            f"handle them."
        )
    if failed:
        for entry, error in failed:
            click.echo(f"Not replayed: {entry.id}: {error}", err=True)
        raise click.ClickException(
            f"{_count(len(failed))} of {len(failed) + replayed} could not be replayed and "
            f"{'stays' if len(failed) == 1 else 'stay'} in the dead letters: see each one with "
            f"`ecopy dead-letter show ID`, and delete those that can never be handled"
        )


@dead_letter_group.command("delete")
@click.argument("entry_id", metavar="[ID]", required=False)
@click.option("--all", "delete_all", is_flag=True, help="Delete every dead letter.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting them all.")
@pass_application
def delete_command(
    application: ApplicationReference, entry_id: str | None, delete_all: bool, yes: bool
) -> None:
    """Delete one dead letter, or all of them with --all.

    `delete ID` deletes one; `delete --all` deletes every dead letter, after asking unless
    --yes is given. A deleted message is gone: it can no longer be replayed.
    """
    if entry_id is not None and delete_all:
        raise click.UsageError("Give a dead letter ID or --all, not both.")
    if entry_id is None and not delete_all:
        raise click.UsageError("Give the ID of the dead letter to delete, or --all.")
    gateway = application.load().dead_letter
    with _gateway_errors(gateway):
        if entry_id is not None:
            gateway.delete(entry_id)
            click.echo(f"Deleted dead letter {entry_id}.")
            return
        total = gateway.count()
        if not total:
            click.echo("No dead letters to delete.")
            return
        if not yes:
            which = "the only dead letter" if total == 1 else f"all {total} dead letters"
            click.confirm(f"Delete {which}? A deleted one cannot be replayed.", abort=True)
        deleted = gateway.delete_all()
    click.echo(f"Deleted {_count(deleted)}.")


# -- rendering --------------------------------------------------------------------------


def dead_letters_table(entries: Iterable[DeadLetterEntry]) -> Table:
    """One row per dead letter; the exception message is cut to its first line and
    :data:`MESSAGE_WIDTH` characters."""
    table = Table()
    for header in ("Id", "Failed at", "Channel", "Endpoint", "Message id", "Exception", "Message"):
        table.add_column(header)
    for entry in entries:
        # Text cells: an exception message such as "[1, 2] expected" is not rich markup.
        table.add_row(
            Text(entry.id),
            Text(failed_at(entry.failed_at)),
            Text(entry.channel),
            Text(entry.endpoint_id or _NONE),
            Text(entry.message_id or _NONE),
            Text(entry.exception_type),
            Text(shorten(entry.exception_message, MESSAGE_WIDTH)),
        )
    return table


def dead_letter_details(entry: DeadLetterEntry) -> list[RenderableType]:
    """The fields of one dead letter, then its payload, headers and traceback."""
    type_name = entry.type_name or f"{_NONE} (the stored body is not a readable message)"
    fields = {
        "Failed at": failed_at(entry.failed_at, precise=True),
        "Channel": entry.channel,
        "Endpoint": entry.endpoint_id or _NONE,
        "Message id": entry.message_id or _NONE,
        "Type": type_name,
        "Exception": f"{entry.exception_type}: {entry.exception_message}",
    }
    width = max(map(len, fields)) + 2
    headers = {k: v for k, v in entry.headers.items() if k not in _EXCEPTION_HEADERS}
    payload = entry.body if entry.envelope is None else _json(entry.payload)
    return [
        Text(f"Dead letter {entry.id}", style="bold"),
        *(Text.assemble((f"{name:<{width}}", "bold"), value) for name, value in fields.items()),
        *_section("Payload", payload),
        *_section("Headers", _json(headers) if headers else "(none)"),
        *_section("Traceback", entry.traceback.rstrip() or "(none recorded)"),
    ]


def failed_at(timestamp: float, *, precise: bool = False) -> str:
    """``2025-03-01T12:00:05Z`` (UTC); ``precise`` adds milliseconds.

    >>> failed_at(0.25, precise=True)
    '1970-01-01T00:00:00.250Z'
    """
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds" if precise else "seconds")[:-6] + "Z"


def shorten(text: str, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters with an ellipsis.

    >>> shorten("card declined\\nretry later", 40)
    'card declined …'
    >>> shorten("a" * 10, 5)
    'aaaa…'
    """
    lines = text.strip().splitlines() or [""]
    first = lines[0]
    if len(first) > width:
        return first[: width - 1] + "…"
    return first + " …" if len(lines) > 1 else first


def _section(title: str, body: str) -> list[RenderableType]:
    return [Text(), Text(title, style="bold"), Text(body)]


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _count(number: int) -> str:
    return f"{number} dead letter" + ("" if number == 1 else "s")


def _consumer_of(system: MessagingSystem, channel: str) -> str | None:
    return next((info.name for info in system.list_consumers() if info.channel == channel), None)


def _print(renderables: list[RenderableType]) -> None:
    console = console_for(renderables)
    for renderable in renderables:
        console.print(renderable, soft_wrap=isinstance(renderable, Text))


KNOWN_SHOWN = 10
"""How many dead letter ids an unknown-id error lists."""


@contextmanager
def _gateway_errors(gateway: DeadLetter | None = None) -> Iterator[None]:
    """An unknown id is a usage error (exit status 2) listing the known ids; an unreadable
    message is one clean line and exit status 1."""
    try:
        yield
    except DeadLetterNotFound as error:
        known = [entry.id for entry in gateway.list(limit=KNOWN_SHOWN)] if gateway else []
        total = gateway.count() if gateway else 0
        listed = ", ".join(known) if known else "none"
        more = f" and {total - len(known)} more" if total > len(known) else ""
        raise click.UsageError(f"{error}. Known dead letters: {listed}{more}.") from None
    except EcopyError as error:
        raise click.ClickException(str(error)) from None
