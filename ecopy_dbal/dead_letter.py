"""Dead letters in the table ``ecopy_dead_letters``.

Each row is the transport-neutral message as the consumer stored it (the JSON envelope: type
name, payload, headers), the channel and endpoint it failed in, and why it failed. The type
name is copied into its own column for readers of the table; it is NULL for a body that was
never a readable message. Entries are listed oldest first: by failure time, then in the order
they were added.
"""

from __future__ import annotations

import sqlalchemy as sa

from ecopy.messaging.dead_letter import DeadLetterEntry, DeadLetterStore
from ecopy_dbal.database import Database
from ecopy_dbal.schema import Key, LongText, Timestamp, metadata

dead_letters = sa.Table(
    "ecopy_dead_letters",
    metadata,
    # The insertion order, for a stable listing of entries that failed at the same moment.
    # SQLite autoincrements only an INTEGER PRIMARY KEY.
    sa.Column(
        "sequence",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("id", Key, nullable=False, unique=True),
    sa.Column("channel", Key, nullable=False),
    sa.Column("endpoint_id", Key, nullable=True),
    sa.Column("message_id", Key, nullable=True),
    sa.Column("message_type", Key, nullable=True),
    sa.Column("body", LongText, nullable=False),
    sa.Column("exception_type", sa.Text, nullable=False),
    sa.Column("exception_message", LongText, nullable=False),
    sa.Column("traceback", LongText, nullable=False),
    sa.Column("failed_at", Timestamp, nullable=False),
    sa.Index("ix_ecopy_dead_letters_failed_at", "failed_at"),
)

_ENTRY_COLUMNS = (
    dead_letters.c.id,
    dead_letters.c.channel,
    dead_letters.c.endpoint_id,
    dead_letters.c.message_id,
    dead_letters.c.body,
    dead_letters.c.exception_type,
    dead_letters.c.exception_message,
    dead_letters.c.traceback,
    dead_letters.c.failed_at,
)


class DbalDeadLetterStore(DeadLetterStore):
    """Dead letters in the database; every call joins the transaction in progress, so a
    replay's send and delete commit together."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, entry: DeadLetterEntry) -> None:
        """Store ``entry``, whatever the failed message held: values too long for their column
        are cut, characters a column cannot hold are escaped (the body keeps everything else),
        so the insert of a dead letter never fails on its content."""
        message_type = entry.type_name
        if not isinstance(message_type, str):
            message_type = None  # an unreadable body, or a "type" that is not a name
        text = _Text(nul_allowed=self._database.dialect != "postgresql")
        row = {
            "id": text.key(entry.id),
            "channel": text.key(entry.channel),
            "endpoint_id": text.key(entry.endpoint_id),
            "message_id": text.key(entry.message_id),
            # A copy for readers of the table, cut to the column; the body keeps the whole name.
            "message_type": text.key(message_type),
            "body": text.long(entry.body),
            "exception_type": text.long(entry.exception_type),
            "exception_message": text.long(entry.exception_message),
            "traceback": text.long(entry.traceback),
            "failed_at": entry.failed_at,
        }
        self._database.run(lambda connection: connection.execute(dead_letters.insert(), row))

    def list(self, limit: int = 50, offset: int = 0) -> list[DeadLetterEntry]:
        query = (
            sa.select(*_ENTRY_COLUMNS)
            .order_by(dead_letters.c.failed_at, dead_letters.c.sequence)
            .limit(limit)
            .offset(offset)
        )
        rows = self._database.run(lambda connection: connection.execute(query).mappings().all())
        return [_entry(row) for row in rows]

    def get(self, entry_id: str) -> DeadLetterEntry | None:
        query = sa.select(*_ENTRY_COLUMNS).where(dead_letters.c.id == entry_id)
        row = self._database.run(lambda connection: connection.execute(query).mappings().first())
        return None if row is None else _entry(row)

    def count(self) -> int:
        query = sa.select(sa.func.count()).select_from(dead_letters)
        return self._database.run(lambda connection: int(connection.execute(query).scalar_one()))

    def count_by_channel(self) -> dict[str, int]:
        query = sa.select(dead_letters.c.channel, sa.func.count()).group_by(dead_letters.c.channel)
        rows = self._database.run(lambda connection: connection.execute(query).all())
        return {channel: int(count) for channel, count in rows}

    def delete(self, entry_id: str) -> bool:
        statement = dead_letters.delete().where(dead_letters.c.id == entry_id)
        deleted = self._database.run(lambda connection: connection.execute(statement).rowcount)
        return deleted > 0

    def delete_all(self) -> int:
        statement = dead_letters.delete()
        return self._database.run(lambda connection: connection.execute(statement).rowcount)


class _Text:
    """Text as the dead-letter columns can hold it."""

    KEY_LENGTH = 255

    def __init__(self, *, nul_allowed: bool) -> None:
        self.nul_allowed = nul_allowed

    def long(self, value: object) -> str:
        text = value if isinstance(value, str) else str(value)
        if not text.isascii():
            # Lone surrogates (from a JSON "\ud800") cannot be encoded: kept as escapes.
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if not self.nul_allowed and "\x00" in text:
            text = text.replace("\x00", "\\u0000")  # PostgreSQL text cannot hold NUL
        return text

    def key(self, value: object) -> str | None:
        if value is None:
            return None
        return self.long(value)[: self.KEY_LENGTH]


def _entry(row: sa.RowMapping) -> DeadLetterEntry:
    return DeadLetterEntry(**{column.name: row[column.name] for column in _ENTRY_COLUMNS})
