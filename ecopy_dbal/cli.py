"""``ecopy db``: create and remove the tables ecopy keeps in the database.

    ecopy --app shop.app:system db setup
    ecopy db setup --url postgresql+psycopg://postgres@127.0.0.1/shop
    ecopy --app shop.app:system db drop --yes

Both are idempotent. The database is the application's (its ``DbalConfiguration``), or the one
``--url`` names. The ``ecopy`` command finds this group through the ``ecopy.cli`` entry point.
"""

from __future__ import annotations

import click
from sqlalchemy.engine import Engine

from ecopy.cli.app_loading import ApplicationReference
from ecopy.messaging.outage import describe
from ecopy_dbal import schema
from ecopy_dbal.configuration import cannot_use, tables_not_checked
from ecopy_dbal.database import Database, create_database_engine


@click.group("db")
def db_group() -> None:
    """Create (`setup`) or remove (`drop`) every table ecopy needs in the database."""


_url_option = click.option(
    "--url",
    metavar="URL",
    help="A SQLAlchemy database URL; without it, the database of the --app application.",
)


@db_group.command("setup")
@_url_option
@click.pass_obj
def setup_command(application: ApplicationReference, url: str | None) -> None:
    """Create the tables that do not exist yet (safe to run again).

    Tables made by an older ecopy that store times as numbers are refused, with a pointer to
    the migration note (docs/dbal.md, "Upgrading"); nothing is created then.
    """
    engine = _engine(application, url)
    try:
        names = schema.setup(engine)
    except schema.OutdatedSchema as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:
        raise _unreachable(engine, error, "created") from None
    click.echo(f"ecopy tables ready in {_shown(engine)}: {', '.join(names)}")


@db_group.command("drop")
@_url_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def drop_command(application: ApplicationReference, url: str | None, yes: bool) -> None:
    """Drop every ecopy table, with the messages, events and documents in them."""
    engine = _engine(application, url)
    if not yes:
        click.confirm(
            f"Drop every ecopy table in {_shown(engine)}, with all their rows?", abort=True
        )
    try:
        names = schema.drop(engine)
    except Exception as error:
        raise _unreachable(engine, error, "dropped") from None
    click.echo(f"ecopy tables dropped from {_shown(engine)}: {', '.join(names)}")


def _engine(application: ApplicationReference, url: str | None) -> Engine:
    if url is not None:
        try:
            return create_database_engine(url)
        except Exception as error:
            raise click.ClickException(cannot_use(url, error)) from None
    with tables_not_checked():  # they are what this command creates
        system = application.load()
    database = system.service(Database)
    if database is None:
        raise click.ClickException(
            f"application {application.reference} has no database: add "
            f"DbalConfiguration(url=...) to its extensions, or pass --url"
        )
    return database.engine


def _unreachable(engine: Engine, error: Exception, done: str) -> click.ClickException:
    """The database refused the work (it is down, or the user may not create tables): one
    line with the driver's reason instead of a traceback."""
    return click.ClickException(
        f"the ecopy tables could not be {done} in {_shown(engine)}: {describe(error)}; check "
        f"that the database server is running and reachable, and that its user may create "
        f"and drop tables"
    )


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
