"""The event store and the snapshot store on SQL tables.

Each event is a row of ``ecopy_events``, numbered per aggregate (``version``: unique per stream
and aggregate, which is the optimistic lock) and across the store (``position``: the order in
which projections read). Positions are handed out in commit order, so a reader that remembers
the last position it read never skips an event that a concurrent transaction committed late
(DESIGN §4; docs/event-store-positions.md explains how on each database). Each aggregate has at
most one snapshot, a row of ``ecopy_snapshots`` that the next snapshot replaces.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from ecopy.errors import EcopyError
from ecopy.messaging.naming import type_name
from ecopy.modelling.event_store import (
    EventStore,
    NewEvent,
    Snapshot,
    SnapshotStore,
    StoredEvent,
    stale_version_error,
)
from ecopy_dbal.codec import Codec, StoredDataError
from ecopy_dbal.database import Database
from ecopy_dbal.schema import Key, LongText, Timestamp, metadata, unsupported_dialect

events_table = sa.Table(
    "ecopy_events",
    metadata,
    # INTEGER PRIMARY KEY is SQLite's autoincrementing rowid; BIGINT would not be.
    sa.Column(
        "position",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("stream", Key, nullable=False),
    sa.Column("aggregate_id", Key, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("event_type", Key, nullable=False),
    sa.Column("payload", LongText, nullable=False),
    sa.Column("metadata", LongText, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.UniqueConstraint("stream", "aggregate_id", "version", name="uq_ecopy_events_version"),
    # read_all(streams=...) and last_position(streams=...): a range of positions per stream,
    # in order. (Added to existing tables by `ecopy db setup`: docs/dbal.md#upgrading-new-indexes.)
    sa.Index("ix_ecopy_events_stream_position", "stream", "position"),
    # AUTOINCREMENT: SQLite never hands out a position again, even after the newest rows were
    # deleted by hand; a reader that remembered it would skip the new event.
    sqlite_autoincrement=True,
)

#: One row that every append on PostgreSQL and MariaDB locks until its transaction ends, so
#: positions are taken in commit order (see ``DbalEventStore``).
position_lock_table = sa.Table(
    "ecopy_event_position_lock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
)

snapshots_table = sa.Table(
    "ecopy_snapshots",
    metadata,
    sa.Column("stream", Key, primary_key=True),
    sa.Column("aggregate_id", Key, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("state_type", Key, nullable=False),
    sa.Column("state", LongText, nullable=False),
    sa.Column("saved_at", Timestamp, nullable=False),
)

_EVENT_COLUMNS = (
    events_table.c.position,
    events_table.c.stream,
    events_table.c.aggregate_id,
    events_table.c.version,
    events_table.c.event_type,
    events_table.c.payload,
    events_table.c["metadata"],
)


class DbalEventStore(EventStore):
    """Events in the table ``ecopy_events``.

    Every method joins the transaction in progress (a command's), or runs in a short
    transaction of its own. An append takes the next positions only once no other
    transaction that appended is still open, and holds that turn until it commits or rolls
    back: on SQLite the database's single writer guarantees it, on PostgreSQL and MariaDB the
    lock on the row of ``ecopy_event_position_lock``. Positions therefore grow in commit
    order, and ``read_all(after_position=last)`` never misses an event committed later with
    a lower position. The cost: appends of different aggregates wait for one another from
    the append to the end of their transaction.
    """

    def __init__(self, database: Database, codec: Codec) -> None:
        self._database = database
        self._codec = codec
        self._position_lock = _position_lock_statement(database.dialect)

    def append(
        self, stream: str, aggregate_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> list[StoredEvent]:
        """Append after ``expected_version`` (0 for a new aggregate), atomically; a stale
        version raises ``ConcurrencyError`` and stores nothing."""
        # Encoded before the transaction begins, so that it does not hold the lock meanwhile.
        rows = [
            self._row(stream, aggregate_id, expected_version + offset, event)
            for offset, event in enumerate(events, start=1)
        ]

        def write(connection: Connection) -> list[int]:
            if rows and self._position_lock is not None:
                connection.execute(self._position_lock)
            # Read after taking the lock: a concurrent append to this aggregate has committed
            # by now (READ COMMITTED sees it), so the check is the real one.
            current = self._current_version(connection, stream, aggregate_id)
            if current != expected_version:
                raise stale_version_error(stream, aggregate_id, current, expected_version)
            if not rows:
                return []
            recorded_at = time.time()
            try:
                connection.execute(
                    sa.insert(events_table), [{**row, "recorded_at": recorded_at} for row in rows]
                )
            except exc.IntegrityError as error:
                # A version taken by a transaction the check could not see (only possible
                # under an isolation level above READ COMMITTED). The transaction is lost on
                # PostgreSQL, which is fine: the command fails and rolls back. No savepoint
                # for this rare case, so that the common case stays two statements shorter.
                raise stale_version_error(
                    stream, aggregate_id, expected_version + 1, expected_version
                ) from error
            return list(
                connection.execute(
                    sa.select(events_table.c.position)
                    .where(*_of(stream, aggregate_id), events_table.c.version > expected_version)
                    .order_by(events_table.c.version)
                ).scalars()
            )

        positions = self._database.run(write)
        return [
            StoredEvent(
                stream=stream,
                aggregate_id=aggregate_id,
                version=expected_version + offset,
                position=position,
                payload=event.payload,
                metadata=dict(event.metadata),
            )
            for offset, (event, position) in enumerate(zip(events, positions, strict=True), 1)
        ]

    def load(self, stream: str, aggregate_id: str, from_version: int = 1) -> list[StoredEvent]:
        """The aggregate's events with version ≥ ``from_version``, in order."""
        return self._read(
            sa.select(*_EVENT_COLUMNS)
            .where(*_of(stream, aggregate_id), events_table.c.version >= from_version)
            .order_by(events_table.c.version)
        )

    def aggregate_ids(self, stream: str) -> list[str]:
        """The aggregates that have events in ``stream``, in order of their first event."""
        query = (
            sa.select(events_table.c.aggregate_id)
            .where(events_table.c.stream == stream, events_table.c.version == 1)
            .order_by(events_table.c.position)
        )
        return self._database.run(lambda connection: list(connection.execute(query).scalars()))

    def streams(self) -> list[str]:
        """Every stream with events, in order of its first event."""
        query = (
            sa.select(events_table.c.stream)
            .group_by(events_table.c.stream)
            .order_by(sa.func.min(events_table.c.position))
        )
        return self._database.run(lambda connection: list(connection.execute(query).scalars()))

    def read_all(
        self, after_position: int = 0, limit: int = 1000, streams: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with a position above ``after_position``, in position order,
        of every stream or only of ``streams``. Read in batches and remember the last position
        read: no event committed later can have a position at or below it."""
        query = (
            sa.select(*_EVENT_COLUMNS)
            .where(events_table.c.position > after_position, *_in(streams))
            .order_by(events_table.c.position)
            .limit(limit)
        )
        return self._read(query)

    def last_position(self, streams: Sequence[str] | None = None) -> int:
        """The highest position of a committed event (of ``streams``), 0 when there is none."""
        query = sa.select(sa.func.max(events_table.c.position)).where(*_in(streams))
        return self._database.run(lambda connection: int(connection.execute(query).scalar() or 0))

    def count_after(self, after_position: int, streams: Sequence[str] | None = None) -> int:
        """How many committed events (of ``streams``) have a position above
        ``after_position``: counted, not read, so an event that no longer converts does not
        stop the count (a projection's lag)."""
        query = (
            sa.select(sa.func.count())
            .select_from(events_table)
            .where(events_table.c.position > after_position, *_in(streams))
        )
        return self._database.run(lambda connection: int(connection.execute(query).scalar() or 0))

    def delete_stream(self, stream: str) -> int:
        """Delete every event of ``stream`` and the snapshots of its aggregates (a re-created
        aggregate must not start from the snapshot of a deleted one); returns the number of
        events deleted. Joins the transaction in progress.

        Positions are never given again: SQLite's ``AUTOINCREMENT``, PostgreSQL's sequence and
        InnoDB's counter (kept across restarts since MariaDB 10.2.4 and MySQL 8.0) only grow.
        """

        def delete(connection: Connection) -> int:
            # The appends' turn: an append waiting for it then checks its version against the
            # emptied stream, instead of continuing a history that is being deleted.
            if self._position_lock is not None:
                connection.execute(self._position_lock)
            deleted = connection.execute(
                sa.delete(events_table).where(events_table.c.stream == stream)
            ).rowcount
            connection.execute(sa.delete(snapshots_table).where(snapshots_table.c.stream == stream))
            return int(deleted)

        return self._database.run(delete)

    def _row(
        self,
        stream: str,
        aggregate_id: str,
        version: int,
        event: NewEvent,
    ) -> dict[str, Any]:
        event_type, payload = self._codec.encode_payload(event.payload)
        return {
            "stream": stream,
            "aggregate_id": aggregate_id,
            "version": version,
            "event_type": event_type,
            "payload": payload,
            "metadata": self._codec.encode_json(event.metadata),
        }

    @staticmethod
    def _current_version(connection: Connection, stream: str, aggregate_id: str) -> int:
        # ORDER BY ... LIMIT 1 rather than max(): the plan then always walks the
        # (stream, aggregate_id, version) index backwards to one row. With max(), a plan made
        # while the table was small (psycopg prepares a statement after a few runs, and
        # PostgreSQL may keep its generic plan) could scan every event of the stream instead,
        # so each append grew slower as the stream grew.
        latest = connection.execute(
            sa.select(events_table.c.version)
            .where(*_of(stream, aggregate_id))
            .order_by(events_table.c.version.desc())
            .limit(1)
        ).scalar()
        return int(latest or 0)

    def _read(self, query: sa.Select[Any]) -> list[StoredEvent]:
        rows = self._database.run(lambda connection: connection.execute(query).all())
        # Decoded after the transaction has ended: it need not wait for pydantic.
        return [self._stored(row) for row in rows]

    def _stored(self, row: Row[Any]) -> StoredEvent:
        try:
            payload = self._codec.decode_payload(row.event_type, row.payload)
        except StoredDataError as error:
            raise StoredDataError(
                f"event {row.version} of {row.stream} {row.aggregate_id!r} (position "
                f"{row.position}) cannot be read: {error}"
            ) from error
        return StoredEvent(
            stream=row.stream,
            aggregate_id=row.aggregate_id,
            version=row.version,
            position=row.position,
            payload=payload,
            metadata=self._codec.decode_json(row.metadata),
        )


class DbalSnapshotStore(SnapshotStore):
    """The latest snapshot of each event-sourced aggregate, in the table ``ecopy_snapshots``.

    The state is stored as JSON with its class's type name, and read back only as a class the
    application knows.
    """

    def __init__(self, database: Database, codec: Codec) -> None:
        self._database = database
        self._codec = codec

    def save(self, stream: str, aggregate_id: str, version: int, state: Any) -> None:
        """Store ``state`` as the snapshot at ``version``, replacing the previous one."""
        cls = type(state)
        row = {
            "stream": stream,
            "aggregate_id": aggregate_id,
            "version": version,
            "state_type": self._known_name(cls, stream, aggregate_id),
            "state": self._codec.encode_document(cls, state),
            "saved_at": time.time(),
        }
        statement = _upsert(self._database.dialect, snapshots_table, row)
        self._database.run(lambda connection: connection.execute(statement))

    def load(self, stream: str, aggregate_id: str) -> Snapshot | None:
        """The latest snapshot, or ``None``."""
        query = sa.select(
            snapshots_table.c.version, snapshots_table.c.state_type, snapshots_table.c.state
        ).where(snapshots_table.c.stream == stream, snapshots_table.c.aggregate_id == aggregate_id)
        row = self._database.run(lambda connection: connection.execute(query).first())
        if row is None:
            return None
        cls = self._codec.names.resolve(row.state_type)
        if cls is None:
            raise StoredDataError(
                f"the snapshot of {stream} {aggregate_id!r} holds a {row.state_type!r}, a class "
                f"this application does not know: pass the aggregate class to bootstrap (or scan "
                f"its module), or delete the row from ecopy_snapshots; the aggregate is then "
                f"rebuilt from its events"
            )
        try:
            state = self._codec.decode_document(cls, row.state)
        except StoredDataError as error:
            raise StoredDataError(
                f"the snapshot of {stream} {aggregate_id!r} cannot be read: {error}; delete the "
                f"row from ecopy_snapshots: the aggregate is then rebuilt from its events"
            ) from error
        return Snapshot(row.version, state)

    def _known_name(self, cls: type[Any], stream: str, aggregate_id: str) -> str:
        """The name the state is stored under; the class is registered so that this
        application can read it back."""
        name = type_name(cls)
        known = self._codec.names.resolve(name)
        if known is None:
            self._codec.names.register(cls)
        elif known is not cls:
            raise StoredDataError(
                f"the snapshot of {stream} {aggregate_id!r} cannot be stored: its class "
                f"{cls.__module__}.{cls.__qualname__} has the name {name!r} of another class, "
                f"{known.__module__}.{known.__qualname__}; give one of them another name with "
                f"@named_event"
            )
        return name


def _of(stream: str, aggregate_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (events_table.c.stream == stream, events_table.c.aggregate_id == aggregate_id)


def _in(streams: Sequence[str] | None) -> tuple[sa.ColumnElement[bool], ...]:
    """The condition that keeps the events of ``streams``: none for ``None`` (every stream)."""
    if streams is None:
        return ()
    return (events_table.c.stream.in_(list(streams)),)


def _position_lock_statement(dialect: str) -> sa.Executable | None:
    """The statement that locks the row of ``ecopy_event_position_lock`` until the end of the
    transaction, creating the row when it is missing (a new or emptied table); ``None`` where
    no lock is needed.

    SQLite has a single writer: the transaction that inserted an event holds the database's
    write lock until it ends, so no other transaction can take a position before it commits.
    """
    if dialect == "sqlite":
        return None
    if dialect == "postgresql":
        # ON CONFLICT DO UPDATE locks the existing row even when WHERE false updates nothing
        # (no dead row version per append), and waits for a concurrent insert of it.
        return (
            postgresql.insert(position_lock_table)
            .values(id=1)
            .on_conflict_do_update(
                index_elements=[position_lock_table.c.id], set_={"id": 1}, where=sa.false()
            )
        )
    if dialect in ("mysql", "mariadb"):
        # The duplicate key makes InnoDB take an exclusive lock on the row, changed or not.
        return mysql.insert(position_lock_table).values(id=1).on_duplicate_key_update(id=1)
    raise EcopyError(
        f"{unsupported_dialect(dialect, 'the ecopy event store')}, or keep the database and "
        f"use DbalConfiguration(event_store=False) with an EventStore of your own in services="
    )


def _upsert(dialect: str, table: sa.Table, row: dict[str, Any]) -> sa.Executable:
    """Insert ``row``, or replace the values of the row with the same primary key."""
    keys = [column.name for column in table.primary_key.columns]
    if dialect == "postgresql":
        insert = postgresql.insert(table).values(row)
        return insert.on_conflict_do_update(
            index_elements=keys,
            set_={name: insert.excluded[name] for name in row if name not in keys},
        )
    if dialect == "sqlite":
        sqlite_insert = sqlite.insert(table).values(row)
        return sqlite_insert.on_conflict_do_update(
            index_elements=keys,
            set_={name: sqlite_insert.excluded[name] for name in row if name not in keys},
        )
    statement = mysql.insert(table).values(row)
    return statement.on_duplicate_key_update(
        {name: statement.inserted[name] for name in row if name not in keys}
    )
