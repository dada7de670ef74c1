"""One database: the engine, the transaction of the current context, and retries.

Every store of this package works through :meth:`Database.transaction`: inside a transaction
(a command, an asynchronous handler, a CLI command) it joins it; outside it runs in a short
transaction of its own. A lost connection outside a transaction is retried with back-off;
inside one, the error rolls the whole unit of work back and its caller decides (a consumer
retries the message, a command caller sees the error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import sqlalchemy as sa
import tenacity
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from ecopy.errors import EcopyError
from ecopy.messaging.transaction import TransactionManager

T = TypeVar("T")
logger = logging.getLogger("ecopy.dbal")


class NoTransactionInProgress(EcopyError):
    """A handler asked for the transaction's connection or session outside a transaction."""


# MySQL/MariaDB error codes worth another attempt: can't connect, server gone away, lost
# connection, lock wait timeout, deadlock, connection killed, disconnected for inactivity.
_MYSQL_TRANSIENT = frozenset({2002, 2003, 2006, 2013, 1205, 1213, 1927, 4031})


def is_connection_error(error: BaseException) -> bool:
    """Errors after which the same work may succeed on a new connection: a lost or refused
    connection, a deadlock or serialization failure, a busy SQLite file. Anything else (a
    missing table, a bad column) fails at once."""
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):  # psycopg: connection exceptions, deadlock, serialization
        return sqlstate.startswith("08") or sqlstate in ("40001", "40P01", "57P01")
    arguments = getattr(original, "args", ())
    if arguments and isinstance(arguments[0], int):  # PyMySQL
        return arguments[0] in _MYSQL_TRANSIENT
    text = str(original).lower()
    if "database is locked" in text or "database is busy" in text:  # SQLite
        return True
    # A connection that failed before any statement (refused, reset) has no code.
    return isinstance(error, exc.OperationalError) and (
        "connect" in text or "closed" in text or "terminat" in text
    )


def create_database_engine(url: str) -> Engine:
    """An engine with the settings ecopy relies on, per dialect."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if in_memory:
            # One shared connection: an in-memory database exists once per connection.
            options["poolclass"] = StaticPool
        engine = sa.create_engine(parsed, **options)
        _serialize_sqlite_writers(engine, wal=not in_memory)
        return engine
    if backend in ("mysql", "mariadb"):
        # READ COMMITTED: no gap locks, so concurrent queue consumers do not deadlock.
        return sa.create_engine(parsed, pool_pre_ping=True, isolation_level="READ COMMITTED")
    return sa.create_engine(parsed, pool_pre_ping=True)


def _serialize_sqlite_writers(engine: Engine, *, wal: bool) -> None:
    """SQLite has one writer: every transaction starts with BEGIN IMMEDIATE, so two
    transactions never both read and then fail to upgrade to write."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class _Unit:
    """The state of one outermost transaction."""

    __slots__ = ("connection", "session")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.session: Session | None = None


class Database(TransactionManager):
    """The engine and the transaction in progress in the current context (thread or task).

    >>> database = Database(create_database_engine("sqlite://"))
    >>> with database.transaction() as connection:
    ...     connection.exec_driver_sql("select 1").scalar()
    1
    """

    def __init__(self, engine: Engine, *, retry_attempts: int = 8, retry_max_wait: float = 2.0):
        self.engine = engine
        self.dialect = engine.dialect.name
        self._unit: ContextVar[_Unit | None] = ContextVar(f"ecopy_dbal_{id(self)}", default=None)
        self._retrying_attempts = retry_attempts
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_connection_error),
            wait=tenacity.wait_exponential(multiplier=0.05, max=retry_max_wait),
            stop=tenacity.stop_after_attempt(retry_attempts),
            before_sleep=self._log_retry,
            reraise=True,
        )

    @property
    def in_transaction(self) -> bool:
        return self._unit.get() is not None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Begin a transaction, or join the one in progress; yields its connection. Any
        exception rolls the outermost transaction back. Beginning is retried with back-off
        when the database cannot be reached."""
        unit = self._unit.get()
        if unit is not None:
            yield unit.connection
            return
        with self._outermost(self._retried(self._begin)) as connection:
            yield connection

    @contextmanager
    def _outermost(self, connection: Connection) -> Iterator[Connection]:
        unit = _Unit(connection)
        token = self._unit.set(unit)
        try:
            yield connection
            if unit.session is not None:
                unit.session.flush()
            connection.commit()
        except BaseException:
            self._rollback(connection)
            raise
        finally:
            self._unit.reset(token)
            if unit.session is not None:
                unit.session.close()
            connection.close()

    def _begin(self) -> Connection:
        connection = self.engine.connect()
        try:
            connection.begin()
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    def _rollback(connection: Connection) -> None:
        try:
            connection.rollback()
        except exc.DBAPIError as error:
            # The connection is gone; the server has rolled the transaction back already.
            logger.warning("rollback failed on a lost connection: %s", error)

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work`` in the current transaction, or in a short one of its own that is retried
        with back-off when the connection is lost."""
        unit = self._unit.get()
        if unit is not None:
            return work(unit.connection)

        def attempt() -> T:
            # Not self.transaction(): its own retries would multiply with these.
            with self._outermost(self._begin()) as connection:
                return work(connection)

        return self._retried(attempt)

    def _retried(self, call: Callable[[], T]) -> T:
        """``call()``, retried with back-off only after a transient error (the fast path
        builds no retry state)."""
        try:
            return call()
        except exc.DBAPIError as error:
            if not is_connection_error(error):
                raise
            logger.warning("database %s: %s; retrying", self._shown(), error)
        retrying = self._retrying.copy(
            stop=tenacity.stop_after_attempt(max(self._retrying_attempts - 1, 1))
        )
        return retrying(call)

    def connection(self) -> Connection:
        """The connection of the transaction in progress (what handlers get injected)."""
        unit = self._unit.get()
        if unit is None:
            raise NoTransactionInProgress(
                "a handler asked for sqlalchemy.Connection, but no transaction is in progress: "
                "the connection is injected into command handlers and asynchronous handlers, "
                "which run in a transaction; remove @without_transaction from the handler, or "
                "open one with `with database.transaction():`"
            )
        return unit.connection

    def session(self) -> Session:
        """An ORM session bound to the transaction in progress; flushed before it commits.
        ``session.commit()`` inside a handler does not end the framework's transaction."""
        unit = self._unit.get()
        if unit is None:
            raise NoTransactionInProgress(
                "a handler asked for sqlalchemy.orm.Session, but no transaction is in progress: "
                "the session is injected into command handlers and asynchronous handlers, "
                "which run in a transaction; remove @without_transaction from the handler"
            )
        if unit.session is None:
            unit.session = Session(
                bind=unit.connection, join_transaction_mode="rollback_only", autoflush=True
            )
        return unit.session

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        logger.warning(
            "database %s: %s; retrying (attempt %d)",
            self._shown(),
            error,
            state.attempt_number + 1,
        )

    def _shown(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"
