"""Dead letters: messages that failed for good, kept with the reason, ready to replay.

The store keeps the transport-neutral message (the JSON envelope: type name, payload, headers)
with the channel and endpoint it failed in. Replay sends it back to that channel, addressed to
that endpoint only, re-serialized for the channel.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from pydantic_core import from_json

from ecopy.errors import EcopyError
from ecopy.messaging.channel import MessageChannel
from ecopy.messaging.delivery import DELIVER_AT, EXPIRES_AT, RETRY_COUNT
from ecopy.messaging.message import DELIVERY_OPTIONS, Message
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import TransactionManager

DEAD_LETTER_CHANNEL: Final = "ecopy.dead_letter"
EXCEPTION_TYPE: Final = "ecopy.exception.type"
EXCEPTION_MESSAGE: Final = "ecopy.exception.message"
EXCEPTION_TRACEBACK: Final = "ecopy.exception.traceback"


# A replayed message starts afresh: no retries counted, no delay, no expiry, no failure.
_NOT_REPLAYED = frozenset(
    {RETRY_COUNT, DELIVER_AT, EXPIRES_AT, EXCEPTION_TYPE, EXCEPTION_MESSAGE, EXCEPTION_TRACEBACK}
    | DELIVERY_OPTIONS
)
logger = logging.getLogger("ecopy.dead_letter")


@dataclass(frozen=True)
class DeadLetterEntry:
    """One failed message."""

    id: str
    channel: str
    endpoint_id: str | None
    message_id: str | None
    body: str
    exception_type: str
    exception_message: str
    traceback: str
    failed_at: float

    @property
    def envelope(self) -> dict[str, Any] | None:
        """The decoded envelope, or ``None`` when the body was never a readable message."""
        try:
            decoded = from_json(self.body)
        except ValueError:  # malformed, or nested deeper than pydantic's limit
            return None
        return decoded if isinstance(decoded, dict) else None

    @property
    def type_name(self) -> str | None:
        envelope = self.envelope
        return None if envelope is None else envelope.get("type")

    @property
    def payload(self) -> Any:
        envelope = self.envelope
        return self.body if envelope is None else envelope.get("payload")

    @property
    def headers(self) -> dict[str, Any]:
        envelope = self.envelope
        headers = envelope.get("headers") if envelope else None
        return dict(headers) if isinstance(headers, dict) else {}


@runtime_checkable
class DeadLetterStore(Protocol):
    def add(self, entry: DeadLetterEntry) -> None: ...

    def list(self, limit: int = 50, offset: int = 0) -> list[DeadLetterEntry]: ...

    def get(self, entry_id: str) -> DeadLetterEntry | None: ...

    def count(self) -> int: ...

    def count_by_channel(self) -> dict[str, int]:
        """How many entries failed on each channel (channels without entries left out).

        Stores count with one query; this fallback, for a store written before the method
        existed, pages through ``list``."""
        counts: dict[str, int] = {}
        offset = 0
        while entries := self.list(limit=500, offset=offset):
            for entry in entries:
                counts[entry.channel] = counts.get(entry.channel, 0) + 1
            offset += len(entries)
        return counts

    def delete(self, entry_id: str) -> bool: ...

    def delete_all(self) -> int: ...


class InMemoryDeadLetterStore(DeadLetterStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, DeadLetterEntry] = {}

    def add(self, entry: DeadLetterEntry) -> None:
        with self._lock:
            self._entries[entry.id] = entry

    def list(self, limit: int = 50, offset: int = 0) -> list[DeadLetterEntry]:
        with self._lock:
            return list(self._entries.values())[offset : offset + limit]

    def get(self, entry_id: str) -> DeadLetterEntry | None:
        with self._lock:
            return self._entries.get(entry_id)

    def count(self) -> int:
        with self._lock:
            return len(self._entries)

    def count_by_channel(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(entry.channel for entry in self._entries.values()))

    def delete(self, entry_id: str) -> bool:
        with self._lock:
            return self._entries.pop(entry_id, None) is not None

    def delete_all(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count


def new_entry(
    *,
    channel: str,
    endpoint_id: str | None,
    message_id: str | None,
    body: str,
    error: BaseException | str,
    traceback: str,
    failed_at: float,
) -> DeadLetterEntry:
    return DeadLetterEntry(
        id=str(uuid.uuid4()),
        channel=channel,
        endpoint_id=endpoint_id,
        message_id=message_id,
        body=body,
        exception_type=type(error).__qualname__
        if isinstance(error, BaseException)
        else "UndeliverableMessage",
        exception_message=str(error),
        traceback=traceback,
        failed_at=failed_at,
    )


class DeadLetterNotFound(EcopyError):
    pass


class UnreplayableDeadLetter(EcopyError):
    """The stored body is not a readable message (it was undeliverable in the first place)."""


class DeadLetter:
    """The dead-letter gateway: ``app.dead_letter``."""

    def __init__(
        self,
        store: DeadLetterStore,
        serializer: MessageSerializer,
        channel: Callable[[str], MessageChannel],
        transactions: TransactionManager | None = None,
    ) -> None:
        self.store = store
        self._serializer = serializer
        self._channel = channel
        self._transaction: Callable[[], AbstractContextManager[object]] = (
            transactions.transaction if transactions is not None else nullcontext
        )

    def list(self, limit: int = 50, offset: int = 0) -> list[DeadLetterEntry]:
        return self.store.list(limit=limit, offset=offset)

    def show(self, entry_id: str) -> DeadLetterEntry:
        entry = self.store.get(entry_id)
        if entry is None:
            raise DeadLetterNotFound(
                f"No dead letter {entry_id!r}; `ecopy dead-letter list` shows the stored ones"
            )
        return entry

    def count(self) -> int:
        return self.store.count()

    def replay(self, entry_id: str) -> None:
        """Send the message back to the channel it failed on, for the same handler only."""
        entry = self.show(entry_id)
        try:
            message = self._serializer.deserialize(entry.body)
        except EcopyError as error:
            raise UnreplayableDeadLetter(
                f"dead letter {entry_id} cannot be replayed: its body is not a readable message "
                f"({error}); inspect it with `ecopy dead-letter show {entry_id}` and delete it"
            ) from error
        headers = {key: value for key, value in message.headers.items() if key not in _NOT_REPLAYED}
        try:
            channel = self._channel(entry.channel)
        except EcopyError:
            raise UnreplayableDeadLetter(
                f"dead letter {entry_id} cannot be replayed: it failed on channel "
                f"{entry.channel!r}, which this application does not have; declare that channel "
                f"again to replay it, or delete it with `ecopy dead-letter delete {entry_id}`"
            ) from None
        # Sent and deleted together: a database channel gets it back exactly once.
        with self._transaction():
            channel.send(Message(message.payload, headers))
            self.store.delete(entry_id)

    def replay_all(
        self, on_failure: Callable[[DeadLetterEntry, EcopyError], None] | None = None
    ) -> int:
        """Replay every dead letter that can be; returns how many were. One that cannot be (an
        unreadable body, a channel this application no longer has) stays, is logged, and is
        passed to ``on_failure`` with the reason; the others are replayed all the same."""
        replayed, skipped = 0, 0
        while True:
            entries = self.store.list(limit=100, offset=skipped)
            if not entries:
                return replayed
            for entry in entries:
                try:
                    self.replay(entry.id)
                except EcopyError as error:
                    logger.warning("dead letter %s not replayed: %s", entry.id, error)
                    skipped += 1
                    if on_failure is not None:
                        on_failure(entry, error)
                else:
                    replayed += 1

    def delete(self, entry_id: str) -> None:
        if not self.store.delete(entry_id):
            raise DeadLetterNotFound(f"No dead letter {entry_id!r} to delete")

    def delete_all(self) -> int:
        return self.store.delete_all()
