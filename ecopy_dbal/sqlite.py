"""SQLite, the embedded default: one writer at a time, handed over promptly and in turn.

SQLite lets one transaction write at a time. Every transaction ecopy begins is ``BEGIN
IMMEDIATE`` (it takes the write lock at once), so two transactions never both read and then
fail to upgrade to write. Left to itself, SQLite hands that lock out unfairly: a waiter polls
with sleeps of up to 100 ms, so a process that commits and begins again at once keeps the lock
while the others starve (seen: 2,990 / 10 / 0 messages for three consumers on one file).

So, before ``BEGIN IMMEDIATE``, a transaction takes a **writer gate**: an exclusive ``flock``
on a lock file next to the database (``<file>-ecopy-lock``), one open file per connection. A
waiter blocks in the kernel and wakes the moment the gate is released, which happens after the
``COMMIT`` or ``ROLLBACK`` (and when a process dies): threads and processes of this machine
take turns. An in-memory database (one connection shared by the threads of a process) has a
lock of its own instead.

A thread that already holds the gate and begins a second transaction on another connection to
the same file would wait for itself forever; that is refused at once with an explanation.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import IO, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from ecopy.errors import EcopyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("ecopy.dbal")

BUSY_TIMEOUT_MS = 30_000
"""How long a transaction waits for a writer that does not take the gate (another program)."""

# Which thread holds a gate on which database, in this process: a second connection of the
# same thread must not wait for it.
_holders: dict[str, int] = {}
_holders_lock = threading.Lock()


class WriterGateError(EcopyError):
    """A transaction would wait for a write lock that its own thread holds."""


class _Gate:
    """The writer gate of one connection."""

    def __init__(self, key: str, lock_path: str | None, shared: threading.Lock | None) -> None:
        self._key = key
        self._lock_path = lock_path
        self._shared = shared
        self._file: IO[bytes] | None = None
        self._held = False

    def acquire(self) -> None:
        me = threading.get_ident()
        with _holders_lock:
            if _holders.get(self._key) == me:
                raise WriterGateError(
                    f"this thread already has a transaction open on SQLite database "
                    f"{self._key!r} through another connection, and SQLite has one writer: the "
                    f"second transaction would wait for the first forever. Do the work inside "
                    f"the transaction in progress (database.transaction() joins it) instead of "
                    f"opening another connection"
                )
        if self._shared is not None:
            self._shared.acquire()
        elif self._lock_path is not None and fcntl is not None:
            if self._file is None:
                self._file = open(self._lock_path, "a+b")  # noqa: SIM115 - kept per connection
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        with _holders_lock:
            _holders[self._key] = me
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        with _holders_lock:
            _holders.pop(self._key, None)
        if self._shared is not None:
            self._shared.release()
        elif self._file is not None and fcntl is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        if self._file is not None:
            self._file.close()
            self._file = None


class GatedConnection(sqlite3.Connection):
    """A SQLite connection that gives its writer gate back after ``COMMIT`` or ``ROLLBACK``."""

    ecopy_gate: _Gate | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if self.ecopy_gate is not None:
                self.ecopy_gate.release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if self.ecopy_gate is not None:
                self.ecopy_gate.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.ecopy_gate is not None:
                self.ecopy_gate.close()


def sqlite_connect_args() -> dict[str, Any]:
    return {
        "check_same_thread": False,
        "timeout": BUSY_TIMEOUT_MS / 1000,
        "factory": GatedConnection,
    }


def serialize_writers(engine: Engine, database: str | None) -> None:
    """One writer at a time on ``engine``'s database, in turn (see the module docs).
    ``database`` is the file, or ``None``/``":memory:"`` for an in-memory database."""
    in_memory = database in (None, "", ":memory:")
    lock_path: str | None = None
    shared: threading.Lock | None = None
    if in_memory or database is None:
        key, shared = f"memory:{id(engine)}", threading.Lock()
    else:
        key = os.path.abspath(database)
        lock_path = _lock_file(key)
        if lock_path is None:
            shared = threading.Lock()

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        if isinstance(dbapi_connection, GatedConnection):
            dbapi_connection.ecopy_gate = _Gate(key, lock_path, shared)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        gate = getattr(connection.connection.dbapi_connection, "ecopy_gate", None)
        if gate is not None:
            gate.acquire()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if gate is not None:
                gate.release()
            raise


def _lock_file(database: str) -> str | None:
    """The gate's lock file next to ``database``, or ``None`` where none can be made (a
    read-only directory, a platform without ``flock``): SQLite's own locking then applies."""
    if not hasattr(fcntl, "flock"):
        return None
    path = f"{database}-ecopy-lock"
    try:
        with open(path, "a+b"):
            pass
    except OSError as error:
        logger.debug("no writer gate for %s: %s", database, error)
        return None
    return path
