"""The ``ecopy`` command line.

    ecopy --app shop.app:system list
    ECOPY_APP=shop.app:create_system ecopy graph --format mermaid
    ecopy --app shop.app:system run orders --finish-when-no-messages
    ecopy --app shop.app:system run orders emails --processes 2 --threads 4
    ecopy --app shop.app:system dead-letter list
    ecopy --app shop.app:system projection status balances

The application is loaded only by the commands that need it, so ``--help`` always works.
Exit status: 0 on success, 2 for usage errors (an unknown consumer, projection or dead letter
is one: the error lists the known names), 1 when the application cannot be loaded or a command
fails.

Each command group lives in its own module (``running``, ``dead_letters``, ``status``,
``projections``; ``run`` has its threads in ``consumer_threads`` and its worker processes in
``worker_processes``) and is added to :func:`cli` here. Adapter packages add theirs
(``ecopy db``) through the ``ecopy.cli`` entry point group, so the core never imports them.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import click

from ecopy.cli.app_loading import APP_ENVVAR, APP_FORMAT, ApplicationReference, pass_application
from ecopy.cli.dead_letters import dead_letter_group
from ecopy.cli.graph import render_mermaid, render_text, routing_graph
from ecopy.cli.listing import print_listing
from ecopy.cli.projections import projection_group
from ecopy.cli.running import run_command
from ecopy.cli.status import status_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--app",
    "app",
    metavar=APP_FORMAT.upper(),
    envvar=APP_ENVVAR,
    show_envvar=True,
    help="The application: a MessagingSystem or a zero-argument factory returning one.",
)
@click.version_option(package_name="ecopy", prog_name="ecopy")
@click.pass_context
def cli(context: click.Context, app: str | None) -> None:
    """Inspect and run an ecopy application."""
    context.obj = ApplicationReference(app)


@cli.command("list")
@pass_application
def list_command(application: ApplicationReference) -> None:
    """List the endpoints (handlers), where each is handled, and the consumers of the
    application."""
    print_listing(application.load())


@cli.command("graph")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "mermaid"]),
    default="text",
    show_default=True,
    help="An indented text tree, or a Mermaid flowchart to paste into docs.",
)
@pass_application
def graph_command(application: ApplicationReference, output_format: str) -> None:
    """Show the routing graph: buses → routes → endpoints → channels; an asynchronous
    endpoint is reached through its channels and their consumers."""
    graph = routing_graph(application.load())
    click.echo(render_mermaid(graph) if output_format == "mermaid" else render_text(graph))


cli.add_command(run_command)
cli.add_command(dead_letter_group)
cli.add_command(status_command)
cli.add_command(projection_group)


def _add_adapter_commands() -> None:
    for entry_point in entry_points(group="ecopy.cli"):
        try:
            command = entry_point.load()
        except ImportError as error:
            # An adapter whose optional dependencies are missing must not break the others.
            logging.getLogger("ecopy.cli").debug("ecopy.cli %s: %s", entry_point.name, error)
            continue
        cli.add_command(command, entry_point.name)


_add_adapter_commands()


def main() -> None:
    """Entry point of the ``ecopy`` script."""
    cli(prog_name="ecopy")


if __name__ == "__main__":
    main()
