"""The database queue: a pollable channel kept in the table ``ecopy_messages``.

``DbalChannel("orders")`` among the extensions declares it. A message sent while a transaction
is in progress (a command, an asynchronous handler) commits or rolls back with it, so a
``DbalChannel`` used as an asynchronous channel *is* the outbox; put it first in a
``CombinedMessageChannel`` to relay its messages to a broker after they committed.

How a message travels:

* ``send`` inserts a row. ``receive`` *claims* the next due rows (higher priority first, then
  first in, first out) by stamping them with ``claimed_until = now + visibility_timeout_s``
  and a claim token, and hands them out one at a time. On PostgreSQL and MariaDB/MySQL the
  claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` then ``UPDATE`` in one short transaction; on
  SQLite every transaction is ``BEGIN IMMEDIATE`` (one writer), which makes the two atomic.
  Either way no row is claimed by two consumers at once.
* ``acknowledge`` deletes the row; inside the handler's transaction, so the message is gone
  exactly when the handler's effects commit. ``return_message`` makes it visible again.
* A consumer that dies between claim and acknowledgement leaves the row claimed: it is
  delivered again once ``claimed_until`` has passed. Nothing is lost; at worst a message is
  delivered again after the visibility timeout.

Prefetch: one claim takes up to ``prefetch`` rows, which cuts the round trips of a busy
consumer (the outbox relay). A prefetched row waits in the consumer while the ones before it
are handled, so it is handed out only while at least half of its visibility timeout is left;
older ones are released for any consumer to take. A message sent with a higher priority while
rows are prefetched comes after them: use ``prefetch=1`` where strict priority matters.

Acknowledgements made outside a transaction (a consumer without database transactions, a
``@without_transaction`` handler) are deferred and deleted in one statement with the next
claim, or when the consumer run ends (``release_unhandled``). If the process dies first, those
messages are delivered again after the visibility timeout, never lost.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from ecopy.config.modules import ModuleContext
from ecopy.errors import EcopyError
from ecopy.messaging.channel import FinalFailureStrategy, UndeliverableMessage
from ecopy.messaging.clock import Clock
from ecopy.messaging.delivery import ENDPOINT_ID, delivery_of
from ecopy.messaging.message import Message
from ecopy.messaging.serialization import MessageSerializer
from ecopy_dbal.configuration import database_of
from ecopy_dbal.database import Database, is_connection_error
from ecopy_dbal.schema import Key, LongText, Timestamp, metadata

logger = logging.getLogger("ecopy.dbal.channel")

DEFAULT_PREFETCH = 10
_STRATEGIES = ("stop", "resend", "release", "ignore")

messages = sa.Table(
    "ecopy_messages",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("queue", Key, nullable=False),
    sa.Column("body", LongText, nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("deliver_at", Timestamp, nullable=True),  # null: due at once
    sa.Column("expires_at", Timestamp, nullable=True),  # null: never expires
    sa.Column("claimed_until", Timestamp, nullable=True),  # null: visible
    # Which claim holds the row: a consumer only settles or releases rows of its own claims,
    # never a row another consumer claimed after its own claim expired.
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
)
# The claim walks this index in delivery order and stops after `prefetch` visible rows.
sa.Index(
    "ix_ecopy_messages_delivery_order",
    messages.c.queue,
    messages.c.priority.desc(),
    messages.c.id,
)


@dataclass(frozen=True)
class DbalChannel:
    """Declares a queue kept in the database (needs ``DbalConfiguration``).

    >>> ServiceConfiguration(extensions=[  # doctest: +SKIP
    ...     DbalConfiguration(url="postgresql+psycopg://app@db/shop"),
    ...     DbalChannel("orders", visibility_timeout_s=60),
    ... ])

    ``visibility_timeout_s``: how long a claimed message stays invisible to other consumers;
    make it longer than the slowest handling, since a message not acknowledged by then is
    delivered again. ``prefetch``: how many messages one claim takes (``1`` for strict
    priority order). ``final_failure_strategy``: as for ``QueueChannel``.
    """

    name: str
    _: KW_ONLY
    visibility_timeout_s: float = 30.0
    prefetch: int = DEFAULT_PREFETCH
    final_failure_strategy: FinalFailureStrategy = "stop"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"DbalChannel needs a channel name, got {self.name!r}")
        timeout = self.visibility_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(
                f"DbalChannel({self.name!r}) visibility_timeout_s must be a number of seconds "
                f"> 0, got {timeout!r}"
            )
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int):
            raise ValueError(
                f"DbalChannel({self.name!r}) prefetch must be an int >= 1, got {self.prefetch!r}"
            )
        if self.prefetch < 1:
            raise ValueError(
                f"DbalChannel({self.name!r}) prefetch must be >= 1 (1 claims one message at a "
                f"time), got {self.prefetch!r}"
            )
        if self.final_failure_strategy not in _STRATEGIES:
            raise ValueError(
                f"DbalChannel({self.name!r}) final_failure_strategy must be 'stop', 'resend', "
                f"'release' or 'ignore', got {self.final_failure_strategy!r}"
            )

    def register(self, context: ModuleContext) -> None:
        database = database_of(context, needed_by=f"DbalChannel({self.name!r})")
        if database is None:
            return
        context.add_channel(
            self.name,
            DbalQueue(
                self.name,
                database,
                context.serializer,
                context.clock,
                visibility_timeout_s=float(self.visibility_timeout_s),
                prefetch=self.prefetch,
                final_failure_strategy=self.final_failure_strategy,
            ),
        )


@dataclass(slots=True, eq=False)
class _Claimed:
    """A row this queue object claimed: prefetched, or handed out as a message."""

    row_id: int
    token: str
    claimed_until: float
    body: str
    expires_at: float | None
    consumer: int = 0  # the thread it was handed out to
    acknowledged: bool = False


@dataclass(slots=True)
class _Pending:
    """Row changes that wait for the next claim (or the end of the consumer run)."""

    deletes: list[_Claimed] = field(default_factory=list)
    releases: list[_Claimed] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.deletes or self.releases)


class DbalQueue:
    """A pollable channel on the table ``ecopy_messages``; see the module documentation.

    Built by ``DbalChannel``; one object may serve several consumer threads of a process.
    """

    def __init__(
        self,
        name: str,
        database: Database,
        serializer: MessageSerializer,
        clock: Clock,
        *,
        visibility_timeout_s: float = 30.0,
        prefetch: int = DEFAULT_PREFETCH,
        final_failure_strategy: FinalFailureStrategy = "stop",
    ) -> None:
        self.name = name
        self.final_failure_strategy: FinalFailureStrategy = final_failure_strategy
        self.visibility_timeout_s = visibility_timeout_s
        self.prefetch = prefetch
        self._database = database
        self._serializer = serializer
        self._clock = clock
        self._lock = threading.Lock()
        self._prefetched: deque[_Claimed] = deque()
        # Handed-out messages by (message id, endpoint id): one event goes to each of its
        # asynchronous handlers as a copy with the same message id, and a retry re-sends a
        # copy with the same id before the original is acknowledged.
        self._handed_out: dict[tuple[str, Any], _Claimed] = {}
        self._pending = _Pending()

    # -- sending ------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Queue ``message``; inside a transaction it commits or rolls back with it."""
        due, expires_at, priority = delivery_of(message)
        self.send_serialized(
            self._serializer.serialize(message),
            deliver_at=due,
            expires_at=expires_at,
            priority=priority,
        )

    def send_serialized(
        self,
        body: str,
        *,
        deliver_at: float | None = None,
        expires_at: float | None = None,
        priority: int = 0,
    ) -> None:
        """Queue a serialized message envelope (bytes from elsewhere, or a replay)."""
        row = {
            "queue": self.name,
            "body": body,
            "priority": priority,
            "deliver_at": None if deliver_at is None else float(deliver_at),
            "expires_at": None if expires_at is None else float(expires_at),
            "created_at": self._clock.now(),
        }
        self._database.run(lambda connection: connection.execute(messages.insert(), row))

    # -- receiving ----------------------------------------------------------------------

    def receive(self) -> Message | None:
        """The next due message, claimed for ``visibility_timeout_s``, or ``None``.

        Raises ``UndeliverableMessage`` for a row that is not a readable message; its
        ``acknowledge`` deletes the row (the consumer does it with the dead letter).
        """
        consumer = threading.get_ident()
        with self._lock:
            self._forget_acknowledged(consumer)
            claimed = self._next_prefetched()
            if claimed is None:
                try:
                    self._claim()
                except exc.DBAPIError as error:
                    if not is_connection_error(error):
                        raise
                    # The database is still away after the retries: the consumer goes on
                    # polling (and waiting) instead of ending its run.
                    logger.error("channel %s: cannot claim messages: %s", self.name, error)
                    return None
                claimed = self._next_prefetched()
            if claimed is None:
                return None
            claimed.consumer = consumer
        try:
            message = self._serializer.deserialize(claimed.body)
        except Exception as error:
            reason = (
                str(error) if isinstance(error, EcopyError) else f"{type(error).__name__}: {error}"
            )
            raise UndeliverableMessage(
                self.name, claimed.body, reason, acknowledge=lambda: self._delete_now(claimed)
            ) from error
        with self._lock:
            self._handed_out[_key(message)] = claimed
        return message

    def _next_prefetched(self) -> _Claimed | None:
        """The next prefetched row that may still be handed out (the lock is held)."""
        now = self._clock.now()
        while self._prefetched:
            claimed = self._prefetched.popleft()
            if claimed.claimed_until - now < self.visibility_timeout_s / 2:
                # Waited too long here: the handler would risk outliving the claim. Give this
                # row and the rest back, and claim afresh.
                self._pending.releases.append(claimed)
                self._pending.releases.extend(self._prefetched)
                self._prefetched.clear()
                return None
            if claimed.expires_at is not None and claimed.expires_at <= now:
                self._log_expired(claimed.row_id, claimed.body)
                self._pending.deletes.append(claimed)
                continue
            return claimed
        return None

    def _claim(self) -> None:
        """Claim up to ``prefetch`` due rows, applying the pending deletes and releases in
        the same transaction (the lock is held)."""
        pending = self._pending

        def claim(connection: Connection) -> tuple[list[_Claimed], list[_Claimed]]:
            # Read the clock at each attempt: a claim retried after a lost connection still
            # gets its whole visibility timeout.
            now = self._clock.now()
            until = now + self.visibility_timeout_s
            token = uuid.uuid4().hex
            query = (
                sa.select(messages.c.id, messages.c.body, messages.c.expires_at)
                .where(
                    messages.c.queue == self.name,
                    sa.or_(messages.c.claimed_until.is_(None), messages.c.claimed_until <= now),
                    sa.or_(messages.c.deliver_at.is_(None), messages.c.deliver_at <= now),
                )
                .order_by(messages.c.priority.desc(), messages.c.id)
                .limit(self.prefetch)
                .with_for_update(skip_locked=True)
            )
            _apply(connection, pending)
            dropped: list[_Claimed] = []
            while True:
                rows = [
                    _Claimed(row.id, token, until, row.body, row.expires_at)
                    for row in connection.execute(query)
                ]
                expired = [
                    row for row in rows if row.expires_at is not None and row.expires_at <= now
                ]
                live = [row for row in rows if row.expires_at is None or row.expires_at > now]
                if expired:
                    connection.execute(
                        messages.delete().where(messages.c.id.in_([row.row_id for row in expired]))
                    )
                    dropped.extend(expired)
                if live:
                    connection.execute(
                        messages.update()
                        .where(messages.c.id.in_([row.row_id for row in live]))
                        .values(claimed_until=until, claim_token=token)
                    )
                # A batch of expired rows only: look again, later messages may be due.
                if live or not rows:
                    return live, dropped

        live, dropped = self._database.run(claim)
        self._pending = _Pending()
        for claimed in dropped:
            self._log_expired(claimed.row_id, claimed.body)
        self._prefetched.extend(live)

    def _log_expired(self, row_id: int, body: str) -> None:
        logger.warning(
            "channel %s dropped an expired message (row %d; its time to live has passed): %.200s",
            self.name,
            row_id,
            body,
        )

    # -- settling -----------------------------------------------------------------------

    def acknowledge(self, message: Message) -> None:
        """Remove a received message for good. Inside a transaction (the handler's) the row
        is deleted with it; outside one the deletion is deferred to the next claim."""
        with self._lock:
            claimed = self._handed_out.get(_key(message))
            if claimed is None:
                logger.debug(
                    "channel %s: acknowledge of message %s, which it did not hand out",
                    self.name,
                    message.id,
                )
                return
            claimed.acknowledged = True
            if not self._database.in_transaction:
                self._pending.deletes.append(claimed)
                return
        # Kept among the handed-out messages until the next receive: if this transaction rolls
        # back and the consumer acknowledges again (after a retry), the row is still known.
        deleted = self._database.run(lambda connection: _delete(connection, [claimed]))
        if not deleted:
            logger.warning(
                "channel %s: message %s was acknowledged, but this consumer no longer held it: "
                "its claim had expired (visibility timeout %.1f s) and another consumer may "
                "handle it again; set DbalChannel(%r, visibility_timeout_s=...) above the "
                "longest handling time",
                self.name,
                message.id,
                self.visibility_timeout_s,
                self.name,
            )

    def return_message(self, message: Message) -> None:
        """Make a received message visible again at once, ahead of the later ones."""
        with self._lock:
            claimed = self._handed_out.pop(_key(message), None)
            if claimed is None:
                logger.debug(
                    "channel %s: message %s returned but not handed out here; sending it again",
                    self.name,
                    message.id,
                )
            else:
                # The prefetched rows come after the returned one: give them back too, so the
                # next claim takes them in the right order.
                releases = [claimed, *self._prefetched]
                self._prefetched.clear()
                if self._database.in_transaction:
                    # Released again with the next claim in case this transaction rolls back;
                    # harmless if it commits (the claim token no longer matches).
                    self._pending.releases.extend(releases)
        if claimed is None:
            self.send(message)
            return
        self._database.run(lambda connection: _release(connection, releases))

    def release_unhandled(self) -> None:
        """At the end of a consumer run: apply the deferred acknowledgements and give back the
        prefetched rows and the messages this thread received but did not settle."""
        consumer = threading.get_ident()
        with self._lock:
            pending = self._pending
            pending.releases.extend(self._prefetched)
            self._prefetched.clear()
            deferred = {id(claimed) for claimed in pending.deletes}
            mine = [
                key for key, claimed in self._handed_out.items() if claimed.consumer == consumer
            ]
            for key in mine:
                claimed = self._handed_out.pop(key)
                # Not settled, or acknowledged in a transaction that committed (the row is
                # gone) or rolled back (the row is still ours): releasing is right each time.
                if id(claimed) not in deferred:
                    pending.releases.append(claimed)
            self._pending = _Pending()
            if not pending:
                return
            try:
                self._database.run(lambda connection: _apply(connection, pending))
            except Exception as error:
                # Kept for the next claim of this queue object, if there is one.
                self._pending.deletes[:0] = pending.deletes
                self._pending.releases[:0] = pending.releases
                logger.warning(
                    "channel %s could not give back %d claimed messages (%s); they will be "
                    "delivered again when their visibility timeout (%.1f s) has passed",
                    self.name,
                    len(pending.deletes) + len(pending.releases),
                    error,
                    self.visibility_timeout_s,
                )

    def _forget_acknowledged(self, consumer: int) -> None:
        """This thread's acknowledged messages are settled once it asks for the next one."""
        settled = [
            key
            for key, claimed in self._handed_out.items()
            if claimed.acknowledged and claimed.consumer == consumer
        ]
        for key in settled:
            del self._handed_out[key]

    def _delete_now(self, claimed: _Claimed) -> None:
        self._database.run(lambda connection: _delete(connection, [claimed]))

    def __repr__(self) -> str:
        return (
            f"DbalQueue({self.name!r}, visibility_timeout_s={self.visibility_timeout_s}, "
            f"prefetch={self.prefetch})"
        )


def _key(message: Message) -> tuple[str, Any]:
    return message.id, message.header(ENDPOINT_ID)


def _of_their_claims(rows: Iterable[_Claimed]) -> sa.ColumnElement[bool]:
    """Those rows, as long as they are still held by the claim that took them."""
    by_token: dict[str, list[int]] = {}
    for claimed in rows:
        by_token.setdefault(claimed.token, []).append(claimed.row_id)
    return sa.or_(
        *(
            sa.and_(messages.c.claim_token == token, messages.c.id.in_(ids))
            for token, ids in by_token.items()
        )
    )


def _delete(connection: Connection, rows: list[_Claimed]) -> int:
    if not rows:
        return 0
    return connection.execute(messages.delete().where(_of_their_claims(rows))).rowcount


def _release(connection: Connection, rows: list[_Claimed]) -> None:
    if rows:
        connection.execute(
            messages.update()
            .where(_of_their_claims(rows))
            .values(claimed_until=None, claim_token=None)
        )


def _apply(connection: Connection, pending: _Pending) -> None:
    _delete(connection, pending.deletes)
    _release(connection, pending.releases)
