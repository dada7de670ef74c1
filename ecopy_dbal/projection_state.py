"""Projection rows in the database: the ``ProjectionStateStore`` on ``ecopy_projections``.

One row per projection and partition (``""`` for a global projection): the position of the
last event handled, the state and the checkpoint as JSON text, the status, and when the row was
last written. Every statement joins the transaction in progress, so a batch that fails leaves
position and state as they were, and the row lock ``claim`` takes lasts until that transaction
ends.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.naming import TypeRegistry
from ecopy.projecting.state import ProjectionRecord, ProjectionStateStore, json_text
from ecopy_dbal.codec import Codec, StoredDataError
from ecopy_dbal.database import Database
from ecopy_dbal.schema import Key, LongText, Timestamp, database_now, metadata

projections = sa.Table(
    "ecopy_projections",
    metadata,
    sa.Column("projection", Key, primary_key=True),
    sa.Column("partition_key", Key, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("state", LongText, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("checkpoint", LongText, nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
)

#: The longest projection name or partition key a ``Key`` column holds.
MAX_KEY_LENGTH = 255


class DbalProjectionStateStore(ProjectionStateStore):
    """Projection rows in the table ``ecopy_projections``, primary key ``(projection,
    partition_key)``.

    ``state`` and ``checkpoint`` are stored as JSON text (``NULL`` for ``None``) and read back
    as JSON values: a dataclass or pydantic model state comes back as the object of its fields,
    for the projection engine to convert to its state type.

    * ``initialize`` is ``INSERT ... ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite) or ``INSERT
      IGNORE`` (MariaDB/MySQL): concurrent calls make one row, and a second caller waits for the
      creating transaction to end.
    * ``claim`` is ``SELECT ... FOR UPDATE``. On SQLite every ecopy transaction holds the
      database's write lock from its ``BEGIN IMMEDIATE`` (``ecopy_dbal.sqlite``), which already
      keeps any other transaction out until it ends.
    * ``get`` reads without a lock; outside a transaction each call runs in a short one of its
      own (a ``claim`` there locks the row only for that moment).

    >>> store = DbalProjectionStateStore(database)  # doctest: +SKIP
    >>> with database.transaction():  # doctest: +SKIP
    ...     store.initialize("balances")
    ...     record = store.claim("balances")
    ...     store.save(dataclasses.replace(record, position=42, state={"total": 7}))
    """

    def __init__(self, database: Database, codec: Codec | None = None) -> None:
        self._database = database
        # State is plain JSON: no application type is involved, so any codec reads it.
        self._codec = codec or Codec(TypeRegistry(), PayloadConversion())
        self._dialect = database.dialect

    def initialize(self, projection: str, partition: str = "") -> bool:
        row = {
            "projection": _key(projection, "projection name"),
            "partition_key": _key(partition, f"partition key of projection {projection!r}"),
            "position": 0,
            "state": None,
            "status": "ready",
            "checkpoint": None,
            "updated_at": database_now(self._dialect),
        }
        statement: sa.Executable
        if self._dialect == "postgresql":
            statement = postgresql.insert(projections).values(row).on_conflict_do_nothing()
        elif self._dialect == "sqlite":
            statement = sqlite.insert(projections).values(row).on_conflict_do_nothing()
        else:
            # IGNORE also turns bad data into warnings; the keys were checked above, and the
            # other values are constants.
            statement = mysql.insert(projections).values(row).prefix_with("IGNORE")

        def insert(connection: Connection) -> bool:
            # An INSERT's rowcount is kept only when asked for.
            result = connection.execute(statement, execution_options={"preserve_rowcount": True})
            return result.rowcount == 1

        return self._database.run(insert)

    def claim(self, projection: str, partition: str = "") -> ProjectionRecord | None:
        statement = self._select(projection, partition).with_for_update()
        return self._read(statement, projection, partition)

    def get(self, projection: str, partition: str = "") -> ProjectionRecord | None:
        return self._read(self._select(projection, partition), projection, partition)

    def save(self, record: ProjectionRecord) -> None:
        where = f"projection {record.projection!r}"
        if record.partition:
            where += f" partition {record.partition!r}"
        row = {
            "projection": _key(record.projection, "projection name"),
            "partition_key": _key(record.partition, f"partition key of {where}"),
            "position": record.position,
            "state": _json(record.state, f"state of {where}"),
            "status": record.status,
            "checkpoint": _json(record.checkpoint, f"checkpoint of {where}"),
            "updated_at": database_now(self._dialect),
        }
        statement = _upsert(self._dialect, row)
        self._database.run(lambda connection: connection.execute(statement))

    def delete(self, projection: str) -> int:
        statement = projections.delete().where(projections.c.projection == projection)
        deleted: int = self._database.run(lambda connection: connection.execute(statement).rowcount)
        return deleted

    def partitions(self, projection: str) -> list[str]:
        statement = sa.select(projections.c.partition_key).where(
            projections.c.projection == projection, projections.c.partition_key != ""
        )
        keys = self._database.run(lambda connection: connection.execute(statement).scalars().all())
        # Sorted here: collations differ between databases (and ignore case on some).
        return sorted(keys)

    def projections(self) -> list[str]:
        statement = sa.select(projections.c.projection).distinct()
        names = self._database.run(lambda connection: connection.execute(statement).scalars().all())
        return sorted(names)

    def _select(self, projection: str, partition: str) -> sa.Select[Any]:
        return sa.select(
            projections.c.position,
            projections.c.state,
            projections.c.status,
            projections.c.checkpoint,
        ).where(
            projections.c.projection == projection,
            projections.c.partition_key == partition,
        )

    def _read(
        self, statement: sa.Select[Any], projection: str, partition: str
    ) -> ProjectionRecord | None:
        row = self._database.run(lambda connection: connection.execute(statement).first())
        if row is None:
            return None
        try:
            state = None if row.state is None else self._codec.decode_json(row.state)
            checkpoint = None if row.checkpoint is None else self._codec.decode_json(row.checkpoint)
        except ValueError as error:
            raise StoredDataError(
                f"the row of projection {projection!r} partition {partition!r} in "
                f"ecopy_projections holds text that is not JSON ({error}); fix the row, or "
                f"rebuild the projection (ecopy projection rebuild {projection})"
            ) from error
        return ProjectionRecord(
            projection=projection,
            partition=partition,
            position=int(row.position),
            state=state,
            status=row.status,
            checkpoint=checkpoint,
        )


def _key(value: str, what: str) -> str:
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(
            f"the {what} is {len(value)} characters long; ecopy_projections keeps at most "
            f"{MAX_KEY_LENGTH}: use a shorter one"
        )
    return value


def _json(value: Any, what: str) -> str | None:
    return None if value is None else json_text(value, what)


def _upsert(dialect: str, row: dict[str, Any]) -> sa.Executable:
    """Insert ``row``, or replace the values of the row with the same key."""
    keys = ("projection", "partition_key")
    if dialect == "postgresql":
        insert = postgresql.insert(projections).values(row)
        return insert.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: insert.excluded[name] for name in row if name not in keys},
        )
    if dialect == "sqlite":
        sqlite_insert = sqlite.insert(projections).values(row)
        return sqlite_insert.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: sqlite_insert.excluded[name] for name in row if name not in keys},
        )
    statement = mysql.insert(projections).values(row)
    return statement.on_duplicate_key_update(
        {name: statement.inserted[name] for name in row if name not in keys}
    )
