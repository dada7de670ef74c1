"""Deduplication records in the table ``ecopy_deduplication``, claimed in the handler's
transaction.

A claim inserts the key, or takes over a record that has expired, and waits for a concurrent
claim of the same key to commit or roll back: two duplicates never both run, and a handler
that fails leaves no record (its transaction rolls the claim back).
Expired records are purged now and then by the claims themselves (DESIGN §4).
"""

from __future__ import annotations

import hashlib
import logging
import threading

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ecopy.messaging.deduplication import DeduplicationStore
from ecopy_dbal.database import Database
from ecopy_dbal.schema import Key, Timestamp, metadata

logger = logging.getLogger("ecopy.dbal.deduplication")

deduplication = sa.Table(
    "ecopy_deduplication",
    metadata,
    sa.Column("scope", Key, primary_key=True),
    sa.Column("key", Key, primary_key=True),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index("ix_ecopy_deduplication_expires_at", "expires_at"),
)

#: MySQL's error number for a duplicate key.
_ER_DUP_ENTRY = 1062
_KEY_LENGTH = 255
_KEPT_PREFIX = 180


def _stored_key(text: str) -> str:
    """``text``, or for one longer than the column, its start and a SHA-256 of the whole:
    computed keys may be long, and a claim must not fail on a column limit."""
    if len(text) <= _KEY_LENGTH:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{text[:_KEPT_PREFIX]}…sha256:{digest}"


class DbalDeduplicationStore(DeduplicationStore):
    """Deduplication keys in the database; claims join the transaction in progress.

    Every ``purge_every`` claims, up to ``purge_limit`` expired records are deleted.
    """

    def __init__(
        self, database: Database, *, purge_every: int = 1000, purge_limit: int = 1000
    ) -> None:
        self._database = database
        self._purge_every = purge_every
        self._purge_limit = purge_limit
        self._lock = threading.Lock()
        self._claims = 0

    def claim(self, scope: str, key: str, now: float, expires_at: float) -> bool:
        scope, key = _stored_key(scope), _stored_key(key)
        if self._database.dialect in ("mysql", "mariadb"):
            claimed = self._database.run(
                lambda connection: _claim_on_mysql(connection, scope, key, now, expires_at)
            )
        else:
            claimed = self._database.run(
                lambda connection: _upsert_unless_alive(connection, scope, key, now, expires_at)
            )
        if self._purge_is_due():
            self._purge(now)
        return claimed

    def release(self, scope: str, key: str) -> None:
        scope, key = _stored_key(scope), _stored_key(key)
        delete = deduplication.delete().where(
            deduplication.c.scope == scope, deduplication.c.key == key
        )
        try:
            self._database.run(lambda connection: connection.execute(delete))
        except sa.exc.DBAPIError as error:
            if not self._database.in_transaction:
                raise
            # Release runs while the handler's error propagates. If the database refused the
            # delete (a PostgreSQL transaction that the handler's own SQL error aborted), the
            # transaction rolls back and takes the claim with it; raising here would hide the
            # handler's error behind ours.
            logger.debug("release of %s %r left to the rollback: %s", scope, key, error)

    def _purge_is_due(self) -> bool:
        with self._lock:
            self._claims += 1
            return self._claims % self._purge_every == 0

    def _purge(self, now: float) -> None:
        """Delete up to ``purge_limit`` expired records, never waiting for a row another
        transaction holds (it may be a claim taking over that expired record)."""
        if self._database.dialect == "sqlite":
            # One writer: the transaction in progress (or a new one) is the only way in.
            self._database.run(
                lambda connection: _delete_expired(connection, now, self._purge_limit)
            )
            return
        try:
            # A transaction of its own: the handler's transaction should not hold these locks,
            # nor fail because housekeeping did. SKIP LOCKED also skips the row the handler's
            # own claim may have just taken over, which this connection would wait for forever.
            with self._database.engine.begin() as connection:
                purged = _delete_expired(connection, now, self._purge_limit)
        except sa.exc.DBAPIError as error:
            logger.warning("purging expired deduplication records failed: %s", error)
            return
        logger.debug("purged %d expired deduplication records", purged)


def _upsert_unless_alive(
    connection: Connection, scope: str, key: str, now: float, expires_at: float
) -> bool:
    """PostgreSQL and SQLite: insert, or overwrite a record that has expired by ``now``; one
    row changed means claimed."""
    row = {"scope": scope, "key": key, "expires_at": expires_at}
    index = [deduplication.c.scope, deduplication.c.key]
    expired = deduplication.c.expires_at <= now
    statement: sa.Executable
    if connection.dialect.name == "postgresql":
        pg_insert = postgresql.insert(deduplication).values(row)
        statement = pg_insert.on_conflict_do_update(
            index_elements=index, set_={"expires_at": pg_insert.excluded.expires_at}, where=expired
        )
    else:
        lite_insert = sqlite.insert(deduplication).values(row)
        statement = lite_insert.on_conflict_do_update(
            index_elements=index,
            set_={"expires_at": lite_insert.excluded.expires_at},
            where=expired,
        )
    # An INSERT's rowcount is kept only when asked for.
    claimed = connection.execute(statement, execution_options={"preserve_rowcount": True})
    return claimed.rowcount == 1


def _claim_on_mysql(
    connection: Connection, scope: str, key: str, now: float, expires_at: float
) -> bool:
    """MySQL/MariaDB: take over an expired record, else insert.

    ``INSERT ... ON DUPLICATE KEY UPDATE`` cannot tell a claim from a refusal here: with the
    found-rows flag SQLAlchemy sets, both a new row and an unchanged one count as 1. The
    update comes first because it locks an existing record exclusively at once; a failed
    insert takes a shared lock, and two claimers upgrading shared locks deadlock. Under READ
    COMMITTED the update waits for a concurrent claim of the record and then re-reads it; the
    insert waits for a concurrent insert of the key and fails only if that one commits.
    """
    where = sa.and_(
        deduplication.c.scope == scope,
        deduplication.c.key == key,
        deduplication.c.expires_at <= now,
    )
    taken_over = connection.execute(
        deduplication.update().where(where).values(expires_at=expires_at)
    ).rowcount
    if taken_over:
        return True
    try:
        connection.execute(
            deduplication.insert().values(scope=scope, key=key, expires_at=expires_at)
        )
    except sa.exc.IntegrityError as error:
        if error.orig is None or error.orig.args[:1] != (_ER_DUP_ENTRY,):
            raise
        # A live record: a duplicate. The error undid only the insert, not the transaction.
        return False
    return True


def _delete_expired(connection: Connection, now: float, limit: int) -> int:
    expired = connection.execute(
        sa.select(deduplication.c.scope, deduplication.c.key)
        .where(deduplication.c.expires_at <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if expired:
        # One primary key at a time: a multi-row condition may be scanned, and a scan would
        # wait for the locked rows the select skipped.
        connection.execute(
            deduplication.delete().where(
                deduplication.c.scope == sa.bindparam("expired_scope"),
                deduplication.c.key == sa.bindparam("expired_key"),
            ),
            [{"expired_scope": row.scope, "expired_key": row.key} for row in expired],
        )
    return len(expired)
