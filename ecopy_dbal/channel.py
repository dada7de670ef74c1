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
* While a message is being handled its claim is renewed in the background, every third of the
  visibility timeout: a slow handler keeps its message. An acknowledgement that finds the row
  claimed by another consumer (this claim expired after all: the database could not be
  reached to renew it) raises ``ClaimLost``, which rolls the handler's transaction back; the
  consumer that holds the message now handles it, so its effects are committed once.
* A consumer that dies between claim and acknowledgement leaves the row claimed: it is
  delivered again once ``claimed_until`` has passed. Nothing is lost; at worst a message is
  delivered again after the visibility timeout.
* Every time in the table is the database server's clock (with the system clock; a test
  clock's own time in flow tests): consumers whose clocks disagree still agree on claims.

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
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ecopy.config.modules import ModuleContext
from ecopy.errors import EcopyError
from ecopy.messaging.channel import ClaimLost, FinalFailureStrategy, UndeliverableMessage
from ecopy.messaging.clock import Clock, SystemClock
from ecopy.messaging.delivery import ENDPOINT_ID, NO_OPTIONS, addressed, delivery_of
from ecopy.messaging.message import DELIVERY_DELAY, PRIORITY, TIME_TO_LIVE, Message
from ecopy.messaging.outage import describe
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.status import ChannelStatus
from ecopy_dbal.configuration import database_of
from ecopy_dbal.database import Database
from ecopy_dbal.schema import (
    Key,
    LongText,
    Timestamp,
    database_now,
    database_now_plus,
    driver_timestamp,
    epoch_of,
    metadata,
)

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
            raise ValueError(
                f"DbalChannel needs a channel name (the one handlers give @asynchronous), got "
                f"{self.name!r}"
            )
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
            context.channel_unavailable(self.name)
            return
        queue = DbalQueue(
            self.name,
            database,
            context.serializer,
            context.clock,
            visibility_timeout_s=float(self.visibility_timeout_s),
            prefetch=self.prefetch,
            final_failure_strategy=self.final_failure_strategy,
        )
        context.add_channel(self.name, queue)
        context.on_close(queue.close)


@dataclass(slots=True, eq=False)
class _Claimed:
    """A row this queue object claimed: prefetched, or handed out as a message."""

    row_id: int
    token: str
    body: str
    expires_at: float | None
    claimed_at: float  # the queue's time (the database's, or the test clock's) at the claim
    local_at: float  # this process's reading of its own clock at the claim
    consumer: int = 0  # the thread it was handed out to
    acknowledged: bool = False


@dataclass(slots=True)
class _Pending:
    """Row changes that wait for the next claim (or the end of the consumer run)."""

    deletes: list[_Claimed] = field(default_factory=list)
    releases: list[_Claimed] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.deletes or self.releases)

    def put_back(self, other: _Pending) -> None:
        """Keep ``other``'s changes, which could not be applied, ahead of these."""
        self.deletes[:0] = other.deletes
        self.releases[:0] = other.releases


class _Statements:
    """The queue's statements, built once: SQLAlchemy then compiles each of them once.

    With the system clock every time is the database's (``now`` is the server's clock, a
    delay is added to it), so consumers whose clocks disagree still agree on when a claim
    expires; with a test clock, times are the test clock's, passed as parameters."""

    def __init__(
        self,
        queue: str,
        prefetch: int,
        now: sa.ColumnElement[float] | None,
        dialect: sa.Dialect,
    ) -> None:
        self.database_time = now is not None
        # SQLite keeps whatever another program wrote, even bytes that are not UTF-8 in a text
        # column: the body is read as bytes there, so such a row becomes a dead letter instead
        # of an error for the whole claim.
        body: sa.ColumnElement[Any] = (
            sa.cast(messages.c.body, sa.LargeBinary()).label("body")
            if dialect.name == "sqlite"
            else messages.c.body
        )
        owned = sa.and_(
            messages.c.claim_token == sa.bindparam("token"),
            messages.c.id.in_(sa.bindparam("ids", expanding=True)),
        )
        if now is None:
            now = sa.bindparam("now", type_=Timestamp())
            until: sa.ColumnElement[float] = sa.bindparam("until", type_=Timestamp())
            due_at: sa.ColumnElement[Any] = sa.bindparam("deliver_at", type_=Timestamp())
            dies_at: sa.ColumnElement[Any] = sa.bindparam("expires_at", type_=Timestamp())
        else:
            later = partial(database_now_plus, dialect.name)
            until = later(sa.bindparam("timeout", type_=sa.Double()))
            due_at = later(sa.bindparam("delay", type_=sa.Double()))
            dies_at = later(sa.bindparam("ttl", type_=sa.Double()))
        self.insert = messages.insert().values(
            queue=queue,
            body=sa.bindparam("body"),
            priority=sa.bindparam("priority"),
            deliver_at=due_at,
            expires_at=dies_at,
            created_at=now,
        )
        self.dialect = dialect
        # The queue name as the driver takes it (bytes on MySQL: see schema.Key).
        self.queue = Key().process_bind_param(queue, dialect)
        self.prefetch = prefetch
        self.due = _DriverStatement(
            sa.select(messages.c.id, body, messages.c.expires_at, now.label("now"))
            .where(
                messages.c.queue == sa.bindparam("queue"),
                sa.or_(messages.c.claimed_until.is_(None), messages.c.claimed_until <= now),
                sa.or_(messages.c.deliver_at.is_(None), messages.c.deliver_at <= now),
            )
            .order_by(messages.c.priority.desc(), messages.c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
            .with_for_update(skip_locked=True),
            dialect,
        )
        self._until = until
        self._claims: dict[int, _DriverStatement] = {}
        self.drop = messages.delete().where(messages.c.id.in_(sa.bindparam("ids", expanding=True)))
        self.delete_owned = messages.delete().where(owned)
        self.acknowledge = _DriverStatement(
            messages.delete().where(
                messages.c.id == sa.bindparam("row_id", type_=sa.BigInteger()),
                messages.c.claim_token == sa.bindparam("token", type_=sa.String()),
            ),
            dialect,
        )
        self.release_owned = (
            messages.update().where(owned).values(claimed_until=None, claim_token=None)
        )
        self.renew_owned = messages.update().where(owned).values(claimed_until=until)
        self.status = _status_query(queue, now)

    def claim(self, count: int) -> _DriverStatement:
        """The ``UPDATE`` that claims ``count`` rows: ``id_0`` ... by ``token``."""
        statement = self._claims.get(count)
        if statement is None:
            ids = [sa.bindparam(f"id_{n}", type_=sa.BigInteger()) for n in range(count)]
            statement = self._claims[count] = _DriverStatement(
                messages.update()
                .where(messages.c.id.in_(ids))
                .values(
                    claimed_until=self._until,
                    claim_token=sa.bindparam("token", type_=sa.String()),
                ),
                self.dialect,
            )
        return statement


def _status_query(queue: str, now: sa.ColumnElement[Any]) -> sa.Select[int, int, int]:
    """One pass over the queue's rows counting waiting, due and in-flight messages."""
    visible = sa.or_(messages.c.claimed_until.is_(None), messages.c.claimed_until <= now)
    alive = sa.or_(messages.c.expires_at.is_(None), messages.c.expires_at > now)
    delivered = sa.or_(messages.c.deliver_at.is_(None), messages.c.deliver_at <= now)

    def count(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.count(sa.case((sa.and_(*conditions), 1)))

    return sa.select(
        count(visible, alive).label("waiting"),
        count(visible, alive, delivered).label("due"),
        count(sa.not_(visible)).label("in_flight"),
    ).where(messages.c.queue == queue)


class _DriverStatement:
    """A statement compiled once for the dialect and run with ``exec_driver_sql``: for the
    statement run once per message, SQLAlchemy's work per execution (cache lookup, parameter
    and result processing: about 60 µs on PostgreSQL, half the statement's time) is not
    repeated. Only for parameters the driver takes as they are (ints, plain strings)."""

    def __init__(self, statement: sa.Delete | sa.Update | sa.Select[Any], dialect: sa.Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ()) if compiled.positional else None
        # Values the statement carries itself (an OFFSET the dialect adds, say).
        self.defaults = {
            name: value for name, value in compiled.params.items() if value is not None
        }

    def __call__(self, connection: Connection, parameters: dict[str, Any]) -> sa.CursorResult[Any]:
        if self.defaults:
            parameters = {**self.defaults, **parameters}
        if self.names is None:
            return connection.exec_driver_sql(self.sql, parameters)
        return connection.exec_driver_sql(self.sql, tuple(parameters[n] for n in self.names))


class DbalQueue:
    """A pollable channel on the table ``ecopy_messages``; see the module documentation.

    Built by ``DbalChannel``; one object may serve several consumer threads of a process. Its
    lock guards only what it keeps in memory: no database call is made while it is held, so a
    thread waiting for the database (SQLite's single writer, say) never blocks the others.
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
        self.is_transient = database.is_transient
        self._database = database
        self._serializer = serializer
        self._clock = clock
        database_time = isinstance(clock, SystemClock)
        self._sql = _Statements(
            name,
            prefetch,
            database_now(database.dialect) if database_time else None,
            database.engine.dialect,
        )
        # Ages of claims are measured on this process's monotonic clock (or the test clock).
        self._local: Callable[[], float] = time.monotonic if database_time else clock.now
        self._lock = threading.Lock()
        self._prefetched: deque[_Claimed] = deque()
        # Handed-out messages by (message id, endpoint id): one event goes to each of its
        # asynchronous handlers as a copy with the same message id, and a retry re-sends a
        # copy with the same id before the original is acknowledged.
        self._handed_out: dict[tuple[str, Any], _Claimed] = {}
        self._pending = _Pending()
        # Claims of messages being handled are renewed in the background (real time only: a
        # test clock moves when the test says so).
        self._renews = database_time
        self._renewing = False
        self._closed = threading.Event()

    # -- sending ------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Queue ``message``; inside a transaction it commits or rolls back with it."""
        own = message._headers
        if DELIVERY_DELAY in own or TIME_TO_LIVE in own or PRIORITY in own:  # sent straight here
            message = addressed(message, {}, NO_OPTIONS, self._clock.now())
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
        row: dict[str, Any] = {"body": body, "priority": priority}
        if self._sql.database_time:
            # The sender's clock says how long to wait; the database's says from when.
            now = self._clock.now()
            row["delay"] = None if deliver_at is None else float(deliver_at) - now
            row["ttl"] = None if expires_at is None else float(expires_at) - now
        else:
            row["now"] = self._clock.now()
            row["deliver_at"] = None if deliver_at is None else float(deliver_at)
            row["expires_at"] = None if expires_at is None else float(expires_at)
        self._database.run(lambda connection: connection.execute(self._sql.insert, row))

    # -- receiving ----------------------------------------------------------------------

    def receive(self) -> Message | None:
        """The next due message, claimed for ``visibility_timeout_s``, or ``None``.

        Raises ``UndeliverableMessage`` for a row that is not a readable message; its
        ``acknowledge`` deletes the row (the consumer does it with the dead letter). Raises
        the database's error when it cannot be reached (the consumer pauses and tries again).
        """
        consumer = threading.get_ident()
        with self._lock:
            self._forget_acknowledged(consumer)
            claimed = self._next_prefetched()
            if claimed is None:
                pending, self._pending = self._pending, _Pending()
        if claimed is None:
            try:
                claims = self._claim(pending)
            except BaseException:
                with self._lock:
                    self._pending.put_back(pending)
                raise
            with self._lock:
                self._prefetched.extend(claims)
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
            if self._renews and not self._renewing:
                self._renewing = True
                threading.Thread(
                    target=self._renew_claims, name=f"ecopy-claims-{self.name}", daemon=True
                ).start()
        return message

    def _next_prefetched(self) -> _Claimed | None:
        """The next prefetched row that may still be handed out (the lock is held)."""
        local = self._local()
        while self._prefetched:
            claimed = self._prefetched.popleft()
            age = local - claimed.local_at
            if age >= self.visibility_timeout_s / 2:
                # Waited too long here: the handler would risk outliving the claim. Give this
                # row and the rest back, and claim afresh.
                self._pending.releases.append(claimed)
                self._pending.releases.extend(self._prefetched)
                self._prefetched.clear()
                return None
            if claimed.expires_at is not None and claimed.expires_at <= claimed.claimed_at + age:
                self._log_expired(claimed.row_id, claimed.body)
                self._pending.deletes.append(claimed)
                continue
            return claimed
        return None

    def _claim(self, pending: _Pending) -> list[_Claimed]:
        """Claim up to ``prefetch`` due rows, applying ``pending`` in the same transaction."""
        sql = self._sql

        def claim(connection: Connection) -> tuple[list[_Claimed], list[_Claimed]]:
            # A new token at each attempt: one retried after a lost connection claims afresh.
            token = uuid.uuid4().hex
            parameters = self._time_parameters()
            _apply(connection, sql, pending)
            dropped: list[_Claimed] = []
            due = {"queue": sql.queue, "limit": sql.prefetch, **parameters}
            while True:
                rows = sql.due(connection, due).all()
                if not rows:
                    return [], dropped
                local = self._local()
                now = _epoch(rows[0].now)
                claims = [
                    _Claimed(row.id, token, _text(row.body), epoch_of(row.expires_at), now, local)
                    for row in rows
                ]
                expired = [c for c in claims if c.expires_at is not None and c.expires_at <= now]
                live = [c for c in claims if c.expires_at is None or c.expires_at > now]
                if expired:
                    connection.execute(sql.drop, {"ids": [c.row_id for c in expired]})
                    dropped.extend(expired)
                if live:
                    claimed = {f"id_{n}": c.row_id for n, c in enumerate(live)}
                    sql.claim(len(live))(connection, {"token": token, **claimed, **parameters})
                    return live, dropped
                # A batch of expired rows only: look again, later messages may be due.

        live, dropped = self._database.run(claim)
        for claimed in dropped:
            self._log_expired(claimed.row_id, claimed.body)
        return live

    def _time_parameters(self) -> dict[str, Any]:
        """The time parameters of the claim: the visibility timeout (the database adds it to
        its clock), or with a test clock its times as the driver takes them."""
        if self._sql.database_time:
            return {"timeout": self.visibility_timeout_s}
        now, dialect = self._clock.now(), self._database.dialect
        return {
            "now": driver_timestamp(now, dialect),
            "until": driver_timestamp(now + self.visibility_timeout_s, dialect),
        }

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
        is deleted with it, and ``ClaimLost`` is raised — rolling the transaction back — if
        another consumer took the message after this one's claim expired. Outside one the
        deletion is deferred to the next claim."""
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
        acknowledge = self._sql.acknowledge
        parameters = {"row_id": claimed.row_id, "token": claimed.token}
        if not self._database.run(lambda connection: acknowledge(connection, parameters).rowcount):
            raise ClaimLost(
                self.name,
                message.id,
                f"its claim (visibility timeout {self.visibility_timeout_s:.1f} s) expired "
                f"before the handling finished, and another consumer took it; this handling is "
                f"rolled back and that consumer handles the message. If handlers take longer "
                f"than the timeout, or the database was unreachable for that long, give the "
                f"channel a longer one: DbalChannel({self.name!r}, visibility_timeout_s=...)",
            )

    def return_message(self, message: Message) -> None:
        """Make a received message visible again at once, ahead of the later ones."""
        with self._lock:
            claimed = self._handed_out.pop(_key(message), None)
            if claimed is not None:
                # The prefetched rows come after the returned one: give them back too, so the
                # next claim takes them in the right order.
                releases = [claimed, *self._prefetched]
                self._prefetched.clear()
                if self._database.in_transaction:
                    # Released again with the next claim in case this transaction rolls back;
                    # harmless if it commits (the claim token no longer matches).
                    self._pending.releases.extend(releases)
        if claimed is None:
            logger.debug(
                "channel %s: message %s returned but not handed out here; sending it again",
                self.name,
                message.id,
            )
            self.send(message)
            return
        try:
            self._database.run(lambda connection: _release(connection, self._sql, releases))
        except Exception:
            if not self._database.in_transaction:
                with self._lock:  # released with the next claim, when the database is back
                    self._pending.releases.extend(releases)
            raise

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
            self._database.run(lambda connection: _apply(connection, self._sql, pending))
        except Exception as error:
            with self._lock:  # kept for the next claim of this queue object, if there is one
                self._pending.put_back(pending)
            logger.warning(
                "channel %s could not give back %d claimed messages (%s); they will be "
                "delivered again when their visibility timeout (%.1f s) has passed",
                self.name,
                len(pending.deletes) + len(pending.releases),
                describe(error),
                self.visibility_timeout_s,
            )

    def _renew_claims(self) -> None:
        """Extend the claims of the messages being handled every third of the visibility
        timeout, so a slow handler keeps its message; ends when none is left."""
        interval = self.visibility_timeout_s / 3
        while not self._closed.wait(interval):
            with self._lock:
                held = [c for c in self._handed_out.values() if not c.acknowledged]
                if not held:
                    self._renewing = False
                    return
            try:
                self._database.run(
                    partial(_renew, sql=self._sql, rows=held, now=self._time_parameters())
                )
            except Exception as error:
                # Tried again at the next turn; a claim that expires meanwhile is rolled back
                # at its acknowledgement if another consumer took the message.
                logger.warning(
                    "channel %s could not renew the claims of %d messages being handled: %s",
                    self.name,
                    len(held),
                    describe(error),
                )
        with self._lock:
            self._renewing = False

    # -- status -------------------------------------------------------------------------

    def channel_status(self) -> ChannelStatus:
        """The messages waiting, due and in flight now (see ``ecopy.messaging.status``), by
        the database's clock, in one query. In flight counts the rows claimed by any consumer
        (prefetched ones included) whose claim has not expired."""
        parameters = {} if self._sql.database_time else {"now": self._clock.now()}
        row = self._database.run(
            lambda connection: connection.execute(self._sql.status, parameters).one()
        )
        return ChannelStatus(
            self.name, waiting=int(row.waiting), due=int(row.due), in_flight=int(row.in_flight)
        )

    def close(self) -> None:
        """Stop renewing claims (the application is closing)."""
        self._closed.set()

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
        self._database.run(lambda connection: _delete(connection, self._sql, [claimed]))

    def __repr__(self) -> str:
        return (
            f"DbalQueue({self.name!r}, visibility_timeout_s={self.visibility_timeout_s}, "
            f"prefetch={self.prefetch})"
        )


def _epoch(value: Any) -> float:
    seconds = epoch_of(value)
    if seconds is None:
        raise ValueError("the database returned no current time")
    return seconds


def _text(body: str | bytes) -> str:
    return body if isinstance(body, str) else body.decode("utf-8", "replace")


def _key(message: Message) -> tuple[str, Any]:
    return message.id, message.header(ENDPOINT_ID)


def _by_token(rows: Iterable[_Claimed]) -> dict[str, list[int]]:
    by_token: dict[str, list[int]] = {}
    for claimed in rows:
        by_token.setdefault(claimed.token, []).append(claimed.row_id)
    return by_token


def _delete(connection: Connection, sql: _Statements, rows: list[_Claimed]) -> int:
    """Delete those rows still held by the claims that took them; returns how many."""
    return sum(
        connection.execute(sql.delete_owned, {"token": token, "ids": ids}).rowcount
        for token, ids in _by_token(rows).items()
    )


def _release(connection: Connection, sql: _Statements, rows: list[_Claimed]) -> None:
    for token, ids in _by_token(rows).items():
        connection.execute(sql.release_owned, {"token": token, "ids": ids})


def _renew(
    connection: Connection, *, sql: _Statements, rows: list[_Claimed], now: dict[str, Any]
) -> None:
    for token, ids in _by_token(rows).items():
        connection.execute(sql.renew_owned, {"token": token, "ids": ids, **now})


def _apply(connection: Connection, sql: _Statements, pending: _Pending) -> None:
    _delete(connection, sql, pending.deletes)
    _release(connection, sql, pending.releases)
