"""The extension objects that enable the database module, and its registration.

``DbalConfiguration`` is the module: with it among the extensions, commands and asynchronous
handlers run in a database transaction, handlers may ask for the transaction's
``sqlalchemy.Connection`` or ``sqlalchemy.orm.Session``, and dead letters, deduplication
records, aggregates, sagas, snapshots, events and projection positions are kept in the database
(each can be turned off). ``DbalChannel(name)`` declares a database queue; ``DbalDeadLetter()``
keeps dead letters in the database when ``DbalConfiguration(dead_letters=False)`` turned that
off for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session

from ecopy.config.modules import ModuleContext
from ecopy.messaging.outage import describe
from ecopy_dbal import schema
from ecopy_dbal.codec import Codec
from ecopy_dbal.database import (
    IDLE_IN_TRANSACTION_TIMEOUT_S,
    LOCK_TIMEOUT_S,
    Database,
    create_database_engine,
)

logger = logging.getLogger("ecopy.dbal")

DEFAULT_URL = "sqlite:///ecopy.sqlite3"


@dataclass(frozen=True, kw_only=True)
class DbalConfiguration:
    """Enables the database module.

    >>> DbalConfiguration(url="postgresql+psycopg://postgres@127.0.0.1/shop")  # doctest: +SKIP

    ``url`` or ``engine`` names the database (default: ``sqlite:///ecopy.sqlite3``).
    ``auto_setup`` creates the missing tables at bootstrap (default: on for SQLite, off for
    servers, where ``ecopy db setup`` does it); either refuses tables an older ecopy made that
    need converting (docs/dbal.md, "Upgrading"). ``lock_timeout_s`` and
    ``idle_in_transaction_timeout_s`` bound how long a statement waits for a lock and how long
    a transaction may sit idle on PostgreSQL and MariaDB/MySQL (``None``: the server's own),
    for an engine built from ``url``. The other options choose what lives in the database
    instead of memory.
    """

    url: str | None = None
    engine: Engine | None = None
    auto_setup: bool | None = None
    lock_timeout_s: float | None = LOCK_TIMEOUT_S
    idle_in_transaction_timeout_s: float | None = IDLE_IN_TRANSACTION_TIMEOUT_S
    transactions: bool = True
    dead_letters: bool = True
    deduplication: bool = True
    documents: bool = True
    event_store: bool = True
    projections: bool = True

    def __post_init__(self) -> None:
        if self.url is not None and self.engine is not None:
            raise ValueError(
                "DbalConfiguration takes url= or engine=, not both: give url= for an engine "
                "ecopy builds (with its timeouts), or engine= for one you built yourself"
            )
        for name in ("lock_timeout_s", "idle_in_transaction_timeout_s"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            ):
                raise ValueError(
                    f"DbalConfiguration {name} must be a number of seconds > 0, or None for "
                    f"the server's own setting, got {value!r}"
                )

    def create_database(self) -> Database:
        engine = self.engine or create_database_engine(
            self.url or DEFAULT_URL,
            lock_timeout_s=self.lock_timeout_s,
            idle_in_transaction_timeout_s=self.idle_in_transaction_timeout_s,
        )
        database = Database(engine)
        auto_setup = self.auto_setup
        if auto_setup is None:
            auto_setup = engine.dialect.name == "sqlite"
        if auto_setup:
            schema.setup(engine)
        return database

    def register(self, context: ModuleContext) -> None:
        database = database_of(context)
        if database is None:
            return
        codec = codec_of(context)
        context.add_service(database)
        context.on_close(database.dispose)
        if self.transactions:
            context.use_transactions(database)
        else:
            database.handlers_in_transactions = False
        context.provide(Connection, database.connection, in_transaction=True)
        context.provide(Session, database.session, in_transaction=True)
        if self.dead_letters:
            _keep_dead_letters(context, database)
        if self.deduplication:
            from ecopy_dbal.deduplication import DbalDeduplicationStore

            context.use_deduplication_store(DbalDeduplicationStore(database))
        if self.documents:
            from ecopy_dbal.documents import DbalRepository

            context.add_repository(DbalRepository(database, codec))
        if self.event_store:
            from ecopy_dbal.event_store import DbalEventStore, DbalSnapshotStore

            context.use_event_store(DbalEventStore(database, codec))
            if self.documents:
                context.use_snapshot_store(DbalSnapshotStore(database, codec))
        if self.projections:
            from ecopy.projecting.state import ProjectionStateStore
            from ecopy_dbal.projection_state import DbalProjectionStateStore

            # mypy takes a Protocol for an abstract class; the port is the key, never built.
            context.use_port(
                ProjectionStateStore,  # type: ignore[type-abstract]
                DbalProjectionStateStore(database, codec),
            )


@dataclass(frozen=True)
class DbalDeadLetter:
    """Keep dead letters in the database table ``ecopy_dead_letters``."""

    def register(self, context: ModuleContext) -> None:
        database = database_of(context, needed_by="DbalDeadLetter()")
        if database is not None:
            _keep_dead_letters(context, database)


def _keep_dead_letters(context: ModuleContext, database: Database) -> None:
    from ecopy_dbal.dead_letter import DbalDeadLetterStore

    context.use_dead_letter_store(
        context.shared(DbalDeadLetterStore, lambda: DbalDeadLetterStore(database))
    )


def database_of(context: ModuleContext, *, needed_by: str | None = None) -> Database | None:
    """The application's one ``Database``, created from its ``DbalConfiguration``; ``None``
    (with the problem reported once) when it cannot be created."""
    configuration = context.extension(DbalConfiguration)
    if configuration is None:
        context.problems.append(
            f"{needed_by} needs the database module: add DbalConfiguration(url=...) to the "
            f"extensions"
        )
        return None
    database: Database | None = context.shared(
        Database, lambda: _create_database(context, configuration)
    )
    return database


def _create_database(context: ModuleContext, configuration: DbalConfiguration) -> Database | None:
    try:
        database = configuration.create_database()
    except schema.OutdatedSchema as error:
        context.problems.append(f"DbalConfiguration: {error}")
        return None
    except Exception as error:
        context.problems.append(f"DbalConfiguration: {cannot_use(configuration.url, error)}")
        return None
    if not _sets_up(configuration, database):
        context.add_check(lambda: _missing_tables(database))
    return database


def _sets_up(configuration: DbalConfiguration, database: Database) -> bool:
    auto_setup = configuration.auto_setup
    return database.engine.dialect.name == "sqlite" if auto_setup is None else auto_setup


#: False while ``ecopy db setup|drop`` loads the application whose tables it is about to
#: create: the application must load without them.
_check_tables: ContextVar[bool] = ContextVar("ecopy_dbal_check_tables", default=True)


@contextmanager
def tables_not_checked() -> Iterator[None]:
    """Bootstrap without checking that the ecopy tables exist (``ecopy db setup``)."""
    token = _check_tables.set(False)
    try:
        yield
    finally:
        _check_tables.reset(token)


def _missing_tables(database: Database) -> list[str]:
    """Checked once at bootstrap: tables missing on a server give one problem that says how
    to create them, instead of a raw SQL error at the first message. An unreachable server is
    not a configuration problem (the application starts, and rides out the outage)."""
    if not _check_tables.get():
        return []
    try:
        missing = schema.missing_tables(database.engine)
    except Exception as error:
        if not Database.is_transient(error):
            raise
        logger.warning(
            "could not check the ecopy tables at start-up, the database is unreachable (%s)",
            type(error).__name__,
        )
        return []
    if not missing:
        return []
    url = database.engine.url.render_as_string(hide_password=True)
    return [
        f"DbalConfiguration: the database {url} has no ecopy tables "
        f"{', '.join(missing)}; create them with `ecopy --app <module:attribute> db setup` "
        f"(once per database, at deploy), or let the application create them at start-up "
        f"with DbalConfiguration(auto_setup=True)"
    ]


#: The driver each URL scheme needs, and the extra of ecopy that installs it.
_DRIVERS = {
    "psycopg": "ecopy-messaging[postgres]",
    "psycopg2": "ecopy-messaging[postgres]",
    "pymysql": "ecopy-messaging[mysql]",
}


def cannot_use(url: str | None, error: Exception) -> str:
    """Why a database URL cannot be used, with the fix: a dialect SQLAlchemy does not know
    (``postgres://``), a driver that is not installed, or anything else."""
    shown = repr(url) if url else "the default URL"
    if isinstance(error, NoSuchModuleError):
        scheme = (url or "").split(":", 1)[0]
        if scheme.startswith("postgres") and not scheme.startswith("postgresql"):
            return (
                f"the URL {shown} starts with {scheme}://, which SQLAlchemy does not know; "
                f"write postgresql+psycopg://user:password@host/database (with "
                f"ecopy-messaging[postgres] installed)"
            )
        return (
            f"the URL {shown} names a database SQLAlchemy does not know ({error}); use "
            f"sqlite:///path, postgresql+psycopg://... or mysql+pymysql://..."
        )
    if isinstance(error, ModuleNotFoundError):
        missing = (error.name or "").split(".")[0]
        extra = _DRIVERS.get(missing)
        if extra is not None:
            return (
                f"the URL {shown} needs the driver {missing}, which is not installed; "
                f"install {extra}"
            )
        if missing == "MySQLdb":
            return (
                f"the URL {shown} uses the MySQLdb driver, which is not installed; write "
                f"mysql+pymysql://... and install ecopy-messaging[mysql]"
            )
        return (
            f"the URL {shown} needs the driver {missing}, which is not installed; ecopy runs "
            f"on synchronous drivers: postgresql+psycopg://... with ecopy-messaging[postgres], "
            f"or mysql+pymysql://... with ecopy-messaging[mysql]"
        )
    if isinstance(error, ArgumentError):
        return (
            f"the URL {shown} cannot be used ({error}); write it as dialect+driver://user:"
            f"password@host/database: sqlite:///path, postgresql+psycopg://... or "
            f"mysql+pymysql://..."
        )
    return (
        f"the database cannot be used ({describe(error)}); check the URL and that the server "
        f"is running"
    )


def codec_of(context: ModuleContext) -> Codec:
    return context.shared(Codec, lambda: Codec(context.names, context.conversion))
