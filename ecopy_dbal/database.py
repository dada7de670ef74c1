"""One database: the engine, the transaction of the current context, and retries.

Every store of this package works through :meth:`Database.transaction`: inside a transaction
(a command, an asynchronous handler, a CLI command) it joins it; outside it runs in a short
transaction of its own. A lost connection outside a transaction is retried with back-off;
inside one, the error rolls the whole unit of work back and its caller decides (a consumer
retries the message, a command caller sees the error).
"""

from __future__ import annotations

import logging
import socket
import time
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
from ecopy.messaging.outage import describe
from ecopy.messaging.transaction import TransactionManager
from ecopy_dbal.sqlite import serialize_writers, sqlite_connect_args

T = TypeVar("T")
logger = logging.getLogger("ecopy.dbal")


class NoTransactionInProgress(EcopyError):
    """A handler asked for the transaction's connection or session outside a transaction."""


# MySQL/MariaDB error codes worth another attempt: can't connect, server gone away, lost
# connection, lock wait timeout, deadlock, connection killed, disconnected for inactivity,
# server shutting down, query interrupted (a killed session).
_MYSQL_TRANSIENT = frozenset({2002, 2003, 2006, 2013, 1205, 1213, 1927, 4031, 1053, 1317})


def is_connection_error(error: BaseException) -> bool:
    """Errors after which the same work may succeed on a new connection: a lost or refused
    connection, a deadlock or serialization failure, a lock wait that timed out, a busy SQLite
    file. Anything else (a missing table, a bad column) fails at once."""
    if not isinstance(error, exc.DBAPIError):
        return False
    original = error.orig
    if error.connection_invalidated:
        return True
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):  # psycopg
        return sqlstate.startswith("08") or sqlstate in _POSTGRES_TRANSIENT
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


# PostgreSQL states worth another attempt, besides class 08 (connection exceptions):
# serialization failure, deadlock, lock not available (lock_timeout), the session or server
# shutting down (admin_shutdown, crash_shutdown, cannot_connect_now), and the session ended
# by idle_in_transaction_session_timeout.
_POSTGRES_TRANSIENT = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "25P03"})

#: A connection unused for longer than this is checked (one round trip) before it is handed
#: out; one used more recently is trusted.
IDLE_CHECK_AFTER_S = 1.0
#: How long a statement may wait for a row or table lock before failing (and being retried).
LOCK_TIMEOUT_S = 30.0
#: How long a transaction may sit idle before the server ends it and releases its locks; the
#: guard against a client that went away mid-transaction (a network partition, a frozen VM).
IDLE_IN_TRANSACTION_TIMEOUT_S = 300.0
# TCP keepalive: a peer that stopped answering is noticed after 10 + 3 * 5 = 25 s.
_KEEPALIVE_IDLE_S, _KEEPALIVE_INTERVAL_S, _KEEPALIVE_COUNT = 10, 5, 3


def create_database_engine(
    url: str,
    *,
    lock_timeout_s: float | None = LOCK_TIMEOUT_S,
    idle_in_transaction_timeout_s: float | None = IDLE_IN_TRANSACTION_TIMEOUT_S,
) -> Engine:
    """An engine with the settings ecopy relies on, per dialect.

    On PostgreSQL and MariaDB/MySQL: TCP keepalives, a lock timeout and an idle-in-transaction
    timeout (``None`` leaves the server's own), so that a client cut off mid-transaction
    cannot hold locks (say, the event store's append lock) for as long as it stays away; and
    instead of a round trip before every transaction (``pool_pre_ping``), a connection is
    checked only when it has been idle for more than a second.
    """
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        options: dict[str, Any] = {"connect_args": sqlite_connect_args()}
        if parsed.database in (None, "", ":memory:"):
            # One shared connection: an in-memory database exists once per connection.
            options["poolclass"] = StaticPool
        engine = sa.create_engine(parsed, **options)
        serialize_writers(engine, parsed.database)
        return engine
    if backend in ("mysql", "mariadb"):
        # READ COMMITTED: no gap locks, so concurrent queue consumers do not deadlock.
        engine = sa.create_engine(parsed, isolation_level="READ COMMITTED")
        _mysql_session(engine, lock_timeout_s, idle_in_transaction_timeout_s)
    elif backend == "postgresql":
        engine = sa.create_engine(
            parsed,
            connect_args=_postgres_connect_args(
                parsed, lock_timeout_s, idle_in_transaction_timeout_s
            ),
        )
    else:
        return sa.create_engine(parsed, pool_pre_ping=True)
    check_idle_connections(engine)
    return engine


def check_idle_connections(engine: Engine, idle_s: float = IDLE_CHECK_AFTER_S) -> None:
    """Check a pooled connection before handing it out when it was idle for ``idle_s`` or more:
    a server restarted meanwhile is noticed before a transaction begins on a dead connection,
    and a busy consumer does not pay a round trip per transaction for it."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["ecopy_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("ecopy_idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return  # just connected, or in use a moment ago
        try:
            alive = engine.dialect._do_ping_w_event(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"idle connection check failed: {error}") from error
        if not alive:
            raise exc.DisconnectionError("idle connection check failed")


def _postgres_connect_args(
    url: sa.URL, lock_timeout_s: float | None, idle_s: float | None
) -> dict[str, Any]:
    settings = [
        f"-c tcp_keepalives_idle={_KEEPALIVE_IDLE_S}",
        f"-c tcp_keepalives_interval={_KEEPALIVE_INTERVAL_S}",
        f"-c tcp_keepalives_count={_KEEPALIVE_COUNT}",
    ]
    if lock_timeout_s is not None:
        settings.append(f"-c lock_timeout={round(lock_timeout_s * 1000)}")
    if idle_s is not None:
        settings.append(f"-c idle_in_transaction_session_timeout={round(idle_s * 1000)}")
    given = url.query.get("options")
    if isinstance(given, str) and given:
        settings.insert(0, given)  # the URL's own settings come first; ours fill the rest
    return {
        "keepalives": 1,
        "keepalives_idle": _KEEPALIVE_IDLE_S,
        "keepalives_interval": _KEEPALIVE_INTERVAL_S,
        "keepalives_count": _KEEPALIVE_COUNT,
        "options": " ".join(settings),
    }


def _mysql_session(engine: Engine, lock_timeout_s: float | None, idle_s: float | None) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        _keep_alive(getattr(dbapi_connection, "_sock", None))
        settings = []
        if lock_timeout_s is not None:
            settings.append(f"innodb_lock_wait_timeout = {max(1, round(lock_timeout_s))}")
        if idle_s is not None and "mariadb" in dbapi_connection.get_server_info().lower():
            settings.append(f"idle_transaction_timeout = {max(1, round(idle_s))}")
        if settings:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION " + ", ".join(settings))
            cursor.close()


def _keep_alive(sock: socket.socket | None) -> None:
    """TCP keepalive on a driver's socket (PyMySQL has no option for it)."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", _KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", _KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", _KEEPALIVE_COUNT),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


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
        #: Whether handlers run in this database's transactions (``DbalConfiguration(
        #: transactions=False)`` turns it off); it chooses the advice of
        #: ``NoTransactionInProgress``.
        self.handlers_in_transactions = True
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

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """Whether ``error`` is the database's going away (a lost connection, a deadlock, a
        lock wait that timed out): the same work may succeed when tried again. Consumers use
        it to tell an outage from a message that fails."""
        return is_connection_error(error)

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
            logger.warning("database %s: %s; retrying", self._shown(), describe(error))
        retrying = self._retrying.copy(
            stop=tenacity.stop_after_attempt(max(self._retrying_attempts - 1, 1))
        )
        return retrying(call)

    def connection(self) -> Connection:
        """The connection of the transaction in progress (what handlers get injected)."""
        unit = self._unit.get()
        if unit is None:
            raise NoTransactionInProgress(self._outside_transaction("sqlalchemy.Connection"))
        return unit.connection

    def session(self) -> Session:
        """An ORM session bound to the transaction in progress; flushed before it commits.
        ``session.commit()`` inside a handler does not end the framework's transaction."""
        unit = self._unit.get()
        if unit is None:
            raise NoTransactionInProgress(self._outside_transaction("sqlalchemy.orm.Session"))
        if unit.session is None:
            unit.session = Session(
                bind=unit.connection, join_transaction_mode="rollback_only", autoflush=True
            )
        return unit.session

    def _outside_transaction(self, asked_for: str) -> str:
        if self.handlers_in_transactions:
            cause = (
                "the handler is marked @without_transaction; remove that mark, or open a "
                "transaction in the handler"
            )
        else:
            cause = (
                "the application turned transactions off with DbalConfiguration("
                "transactions=False); turn them back on, or open a transaction in the handler"
            )
        use = (
            "`with database.transaction() as connection:`"
            if asked_for.endswith("Connection")
            else "`database.session()` inside `with database.transaction():`"
        )
        return (
            f"a handler asked for {asked_for}, but no transaction is in progress: {cause}: "
            f"give it a parameter `database: ecopy_dbal.Database` and use {use}"
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        # The first failure was logged as a warning; the attempts after it only in debug.
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        logger.debug(
            "database %s: %s; retrying (attempt %d)",
            self._shown(),
            describe(error) if error is not None else "",
            state.attempt_number + 2,
        )

    def _shown(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"
