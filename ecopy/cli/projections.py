"""``ecopy projection``: the lifecycle of the application's projections.

    ecopy --app shop.app:system projection list [--json]
    ecopy --app shop.app:system projection status NAME [--json]
    ecopy --app shop.app:system projection init NAME | --all
    ecopy --app shop.app:system projection backfill NAME
    ecopy --app shop.app:system projection rebuild NAME
    ecopy --app shop.app:system projection reset NAME
    ecopy --app shop.app:system projection delete NAME [--yes]

Every command goes through the application's ``ProjectionManager`` (``app.projections``). An
unknown NAME is a usage error (exit status 2) listing the known projections; a handler or hook
that fails is exit status 1, with its message and the notes ecopy added to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import click
from rich.console import Console, RenderableType
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from ecopy.cli.app_loading import ApplicationReference, pass_application
from ecopy.cli.console import console_for
from ecopy.errors import EcopyError
from ecopy.projecting import ProjectionManager, ProjectionNotFound, ProjectionStatus

_NONE = "—"


@click.group("projection")
def projection_group() -> None:
    """Show, initialize, catch up, rebuild, reset and delete projections.

    `list` and `status NAME` show where each projection is: its position (the last event
    handled), the head of its streams and its lag. `init` creates a projection's position and
    runs its initialization hook without catching up; `backfill` catches up from the position;
    `rebuild` runs the reset hooks and handles every event again, in one transaction; `reset`
    sets the position back to 0; `delete` drops the read model and forgets the projection.
    """


@projection_group.command("list")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list, one object per projection, with every field of its status.",
)
@pass_application
def list_command(application: ApplicationReference, as_json: bool) -> None:
    """List the projections: mode, status, position, head, lag and partitions of each."""
    manager = application.load().projections
    with _failures("Reading the projections"):
        statuses = manager.list()
    if as_json:
        click.echo(json.dumps([asdict(status) for status in statuses], indent=2))
        return
    if not statuses:
        click.echo("No projections: the application declares none.")
        return
    _print([projections_table(statuses)])


@projection_group.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the status as a JSON object.")
@pass_application
def status_command(application: ApplicationReference, name: str, as_json: bool) -> None:
    """Show one projection's mode, status, position, head, lag and partitions.

    Position is the global position of the last event it handled, head the highest committed
    position of its streams, lag how many of their events it has not handled yet.
    """
    manager = _manager(application, name)
    with _failures(f"Reading projection {name}"):
        status = manager.status(name)
    if as_json:
        click.echo(json.dumps(asdict(status), indent=2))
        return
    _print(projection_details(status))


@projection_group.command("init")
@click.argument("name", required=False)
@click.option("--all", "init_all", is_flag=True, help="Initialize every projection.")
@pass_application
def init_command(application: ApplicationReference, name: str | None, init_all: bool) -> None:
    """Initialize a projection, or all of them with --all.

    Creates its position at 0 and runs its initialization hook (creating its tables); one
    initialized already is left as it is. It does not catch up: its next trigger, or
    `ecopy projection backfill NAME`, does.
    """
    if name is not None and init_all:
        raise click.UsageError("Give a projection NAME or --all, not both.")
    if name is None and not init_all:
        raise click.UsageError("Give the NAME of the projection to initialize, or --all.")
    if name is not None:
        manager = _manager(application, name)
        names = [name]
    else:
        manager = application.load().projections
        names = manager.names()
        if not names:
            click.echo("No projections to initialize: the application declares none.")
            return
    for each in names:
        with _failures(f"Initializing projection {each}"):
            created = manager.init(each)
        click.echo(f"{each}: {'initialized' if created else 'already initialized'}")


@projection_group.command("backfill")
@click.argument("name")
@pass_application
def backfill_command(application: ApplicationReference, name: str) -> None:
    """Catch a projection up from its position, live.

    Each batch commits on its own: after a failure, the batches before the failing one are
    kept, and running backfill again continues from there. A projection never initialized is
    initialized first.
    """
    manager = _manager(application, name)
    count = _catch_up(
        name,
        "Backfill",
        "Backfilling",
        lambda progress: manager.backfill(name, progress=progress),
        lambda handled: (
            f"The batches before the failing one were kept ({_events(handled)} handled); run "
            f"`ecopy projection backfill {name}` again to continue from there."
        ),
    )
    click.echo(f"Backfilled projection {name}: {_events(count)} handled.")


@projection_group.command("rebuild")
@click.argument("name")
@pass_application
def rebuild_command(application: ApplicationReference, name: str) -> None:
    """Rebuild a projection: its reset hooks, then every event again from position 0.

    Not live (emitting handlers emit nothing), and in one transaction: if a handler fails,
    nothing is kept, and the read model, state and position stay as they were.
    """
    manager = _manager(application, name)
    count = _catch_up(
        name,
        "Rebuild",
        "Rebuilding",
        lambda progress: manager.rebuild(name, progress=progress),
        lambda _: (
            "Nothing was kept: its read model, state and position are as they were before "
            "the rebuild."
        ),
    )
    click.echo(f"Rebuilt projection {name}: {_events(count)} handled.")


@projection_group.command("reset")
@click.argument("name")
@pass_application
def reset_command(application: ApplicationReference, name: str) -> None:
    """Reset a projection: run its reset hooks, set its position to 0 and its state to its
    initial value. Its next trigger, or backfill, handles every event again."""
    manager = _manager(application, name)
    with _failures(f"Resetting projection {name}"):
        manager.reset(name)
    click.echo(
        f"Reset projection {name}: its reset hooks ran, its position is 0 and its state is "
        f"reset. Run `ecopy projection backfill {name}` to handle its events again."
    )


@projection_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting.")
@pass_application
def delete_command(application: ApplicationReference, name: str, yes: bool) -> None:
    """Delete a projection: run its delete hooks (which drop its read model) and remove its
    position and state, after asking unless --yes is given. Its next trigger starts it
    afresh."""
    manager = _manager(application, name)
    if not yes:
        click.confirm(
            f"Delete projection {name}? Its delete hooks drop its read model, and its position "
            f"and state are removed.",
            abort=True,
        )
    with _failures(f"Deleting projection {name}"):
        manager.delete(name)
    click.echo(
        f"Deleted projection {name}: its delete hooks ran and its position and state are "
        f"removed; its next trigger starts it afresh."
    )


# -- rendering --------------------------------------------------------------------------


def projections_table(statuses: list[ProjectionStatus]) -> Table:
    """One row per projection; numbers right-aligned, "—" where a value does not apply (a
    streaming projection has no position, a global one no partitions)."""
    table = Table()
    table.add_column("Projection")
    table.add_column("Mode")
    table.add_column("Status")
    for header in ("Position", "Head", "Lag", "Partitions"):
        table.add_column(header, justify="right")
    for status in statuses:
        table.add_row(*(Text(cell) for cell in _cells(status)))
    return table


def projection_details(status: ProjectionStatus) -> list[RenderableType]:
    """The fields of one projection's status, one per line."""
    _, mode, state, position, head, lag, partitions = _cells(status)
    fields = {
        "Mode": mode,
        "Partitioned": "yes" if status.partitioned else "no",
        "Status": state,
        "Position": position,
        "Head": head,
        "Lag": lag,
        "Partitions": partitions,
    }
    width = max(map(len, fields)) + 2
    return [
        Text(f"Projection {status.name}", style="bold"),
        *(Text.assemble((f"{key:<{width}}", "bold"), value) for key, value in fields.items()),
    ]


def _cells(status: ProjectionStatus) -> tuple[str, str, str, str, str, str, str]:
    return (
        status.name,
        status.mode,
        status.status,
        _number(status.position),
        _number(status.head),
        _number(status.lag),
        str(status.partitions) if status.partitioned else _NONE,
    )


def _number(value: int | None) -> str:
    return _NONE if value is None else str(value)


def _events(count: int) -> str:
    return f"{count} event" + ("" if count == 1 else "s")


def _print(renderables: list[RenderableType]) -> None:
    console = console_for(renderables)
    for renderable in renderables:
        console.print(renderable, soft_wrap=isinstance(renderable, Text))


# -- names, progress and failures -------------------------------------------------------


def _manager(application: ApplicationReference, name: str) -> ProjectionManager:
    """The application's projections, once ``name`` is known to be one of them: an unknown
    name is a usage error listing the known ones."""
    manager = application.load().projections
    known = manager.names()
    if name not in known:
        if not known:
            raise click.UsageError(
                f"Unknown projection {name!r}: the application declares no projection."
            )
        raise click.UsageError(
            f"Unknown projection {name!r}; known projections: {', '.join(known)}."
        )
    return manager


def _catch_up(
    name: str,
    action: str,
    doing: str,
    run: Callable[[Callable[[int], None]], int],
    kept: Callable[[int], str],
) -> int:
    """Run a backfill or rebuild with a progress display; a failure is exit status 1 saying
    what failed (with the notes ecopy added: projection, handler, event, position) and what
    was ``kept`` of the events handled before it."""
    handled = 0

    def count(total: int) -> None:
        nonlocal handled
        handled = total

    try:
        with _progress(f"{doing} projection {name}", count) as progress:
            return run(progress)
    except Exception as error:
        notes: list[str] = getattr(error, "__notes__", [])
        if isinstance(error, EcopyError) and not notes:
            # Refused before any handler ran, e.g. the backfill of a streaming projection.
            raise click.ClickException(str(error)) from None
        message = f"{action} of projection {name} failed: {type(error).__name__}: {error}"
        raise click.ClickException("\n".join([message, *notes, kept(handled)])) from None


@contextmanager
def _progress(description: str, count: Callable[[int], None]) -> Iterator[Callable[[int], None]]:
    """A progress callback passing the events handled so far to ``count`` and, when stderr
    is a terminal, showing them next to a spinner there (erased when done, so stdout and
    piped output carry only the result)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield count
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
    ) as progress:
        task = progress.add_task(f"{description}: {_events(0)} handled", total=None)

        def show(total: int) -> None:
            count(total)
            progress.update(task, description=f"{description}: {_events(total)} handled")
            progress.refresh()

        yield show


@contextmanager
def _failures(action: str) -> Iterator[None]:
    """A failing hook, or a store that cannot be reached, is exit status 1 with the error's
    message and notes instead of a traceback."""
    try:
        yield
    except ProjectionNotFound as error:
        raise click.UsageError(str(error)) from None
    except EcopyError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:
        raise click.ClickException(
            "\n".join(
                [
                    f"{action} failed: {type(error).__name__}: {error}",
                    *getattr(error, "__notes__", ()),
                ]
            )
        ) from None
