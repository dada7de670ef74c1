"""State-stored aggregates and sagas as JSON documents, with optimistic locking.

One row per aggregate in ``ecopy_documents``: the collection (the class's type name), the
identifier, the version and the document. The version column does the locking: a new
aggregate is inserted only if no row exists, a change is written only where the version is
still the one that was loaded; anything else is a ``ConcurrencyError`` that stores nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ecopy.messaging.naming import type_name
from ecopy.modelling.event_store import stale_version_error
from ecopy.modelling.identifier import identifier_key
from ecopy.modelling.repository import Loaded, Repository
from ecopy_dbal.codec import Codec, StoredDataError
from ecopy_dbal.database import Database
from ecopy_dbal.schema import Key, LongText, Timestamp, metadata

documents = sa.Table(
    "ecopy_documents",
    metadata,
    sa.Column("collection", Key, primary_key=True),
    sa.Column("document_id", Key, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("document", LongText, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

#: MySQL's error number for a duplicate key.
_ER_DUP_ENTRY = 1062


class DbalRepository(Repository):
    """Every state-stored aggregate and saga class, in the table ``ecopy_documents``.

    Statements join the transaction in progress (the command's or the asynchronous
    handler's), so a handler that fails leaves the stored document as it was.
    """

    def __init__(self, database: Database, codec: Codec) -> None:
        self._database = database
        self._codec = codec

    def can_handle(self, aggregate_class: type[Any]) -> bool:
        return True

    def find(self, aggregate_class: type[Any], identifier: Mapping[str, Any]) -> Loaded | None:
        where = self._where(aggregate_class, identifier_key(identifier))
        row = self._database.run(
            lambda connection: connection.execute(
                sa.select(documents.c.version, documents.c.document).where(where)
            ).first()
        )
        if row is None:
            return None
        try:
            document = self._codec.decode_document(aggregate_class, row.document)
        except StoredDataError as error:
            raise StoredDataError(
                f"{aggregate_class.__qualname__} {identifier_key(identifier)!r} in "
                f"ecopy_documents cannot be read: {error}; migrate the stored documents to the "
                f"class's new shape, or give the fields added since they were stored a default "
                f"value"
            ) from error
        return Loaded(document, row.version)

    def save(
        self,
        aggregate_class: type[Any],
        identifier: Mapping[str, Any],
        aggregate: Any,
        expected_version: int,
    ) -> int:
        key = identifier_key(identifier)
        values = {
            "version": expected_version + 1,
            "document": self._codec.encode_document(aggregate_class, aggregate),
            "updated_at": time.time(),
        }

        def write(connection: Connection) -> None:
            if expected_version == 0:
                written = self._insert(connection, type_name(aggregate_class), key, values)
            else:
                written = connection.execute(
                    documents.update()
                    .where(self._where(aggregate_class, key))
                    .where(documents.c.version == expected_version)
                    .values(values)
                ).rowcount
            if not written:
                current = connection.execute(
                    sa.select(documents.c.version).where(self._where(aggregate_class, key))
                ).scalar()
                raise stale_version_error(
                    aggregate_class.__qualname__, key, current or 0, expected_version
                )

        self._database.run(write)
        return expected_version + 1

    def _insert(
        self, connection: Connection, collection: str, key: str, values: dict[str, Any]
    ) -> int:
        """Insert a new document; 0 when one with this key exists already.

        A failed statement aborts a whole PostgreSQL transaction, which would break a handler
        that catches the ``ConcurrencyError`` and carries on (say, "create unless it exists").
        ``ON CONFLICT DO NOTHING`` reports the conflict without an error and waits for a
        concurrent insert of the same key to commit or roll back, so it needs no savepoint.
        MySQL has no such clause that reports the conflict (with the found-rows flag SQLAlchemy
        sets, an ``ON DUPLICATE KEY`` no-op counts as one row), but an error there undoes only
        its statement, so the plain insert is safe.
        """
        row = {"collection": collection, "document_id": key, **values}
        if self._database.dialect == "postgresql":
            statement: sa.Executable = (
                postgresql.insert(documents).values(row).on_conflict_do_nothing()
            )
        elif self._database.dialect == "sqlite":
            statement = sqlite.insert(documents).values(row).on_conflict_do_nothing()
        else:
            try:
                connection.execute(documents.insert().values(row))
            except sa.exc.IntegrityError as error:
                if error.orig is not None and error.orig.args[:1] == (_ER_DUP_ENTRY,):
                    return 0
                raise
            return 1
        # An INSERT's rowcount is kept only when asked for.
        return connection.execute(statement, execution_options={"preserve_rowcount": True}).rowcount

    @staticmethod
    def _where(aggregate_class: type[Any], key: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            documents.c.collection == type_name(aggregate_class),
            documents.c.document_id == key,
        )
