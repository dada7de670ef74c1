"""Deduplication: a handler skips a message whose key it has already handled.

Keys are scoped per handler (``tracking_name``, by default the endpoint id), claimed before
the handler runs and released when it fails, and expire on their own after ``expire_after``
seconds. A store that joins the handler's transaction (``ecopy_dbal``) makes the claim commit
with the handler's work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from ecopy.errors import EcopyError
from ecopy.messaging.clock import Clock
from ecopy.messaging.collector import on_rollback
from ecopy.messaging.declaration import declare
from ecopy.messaging.endpoint import Invoker
from ecopy.messaging.message import Message

F = TypeVar("F")
KeyFunction = Callable[[Message], Any]
logger = logging.getLogger("ecopy.deduplication")

#: How long a deduplication key is remembered, unless configured otherwise (7 days).
DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600


def deduplicated(
    header: Any = None,
    /,
    *,
    key: KeyFunction | None = None,
    tracking_name: str | None = None,
) -> Any:
    """Skip messages already handled by this handler.

    ``@deduplicated`` uses the message id; ``@deduplicated("order_id")`` a header;
    ``@deduplicated(key=lambda message: message.payload.order_id)`` a computed key.
    """

    if key is not None and not callable(key):
        raise TypeError(
            f"@deduplicated(key=...) takes a function of the message, got {key!r}"
            + (
                f'; to deduplicate by a header, write @deduplicated("{key}")'
                if isinstance(key, str)
                else ""
            )
        )
    if key is not None and isinstance(header, str):
        raise TypeError(
            f"@deduplicated got both the header {header!r} and key=; give one: "
            f'@deduplicated("{header}") deduplicates by that header, @deduplicated(key=...) by '
            f"what the function returns"
        )

    def decorate(target: F, header_name: str | None = None) -> F:
        declare(target).modifiers["deduplicated"] = (header_name, key, tracking_name)
        return target

    if header is None or isinstance(header, str):
        return lambda target: decorate(target, header)
    return decorate(header)


class DeduplicationKeyError(EcopyError):
    pass


@runtime_checkable
class DeduplicationStore(Protocol):
    def claim(self, scope: str, key: str, now: float, expires_at: float) -> bool:
        """Record ``key`` as handled in ``scope`` until ``expires_at``, unless a record that
        has not expired by ``now`` exists. ``True`` means: go ahead and handle the message.

        Inside a transaction the claim commits or rolls back with it, and a concurrent claim
        of the same key waits for that outcome, so two duplicates never both run."""

    def release(self, scope: str, key: str) -> None:
        """Forget a claim whose handling failed, so that a redelivery is handled."""


class InMemoryDeduplicationStore(DeduplicationStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], float] = {}

    def claim(self, scope: str, key: str, now: float, expires_at: float) -> bool:
        with self._lock:
            known = self._keys.get((scope, key))
            if known is not None and known > now:
                return False
            self._keys[(scope, key)] = expires_at
            if len(self._keys) % 1024 == 0:
                self._purge(now)
        # Rolled back with a failed unit of work, as a claim in a database transaction is.
        on_rollback(lambda: self.release(scope, key))
        return True

    def release(self, scope: str, key: str) -> None:
        with self._lock:
            self._keys.pop((scope, key), None)

    def _purge(self, now: float) -> None:
        # Expired keys go away without any manual command.
        for entry, expiry in list(self._keys.items()):
            if expiry <= now:
                del self._keys[entry]

    def __len__(self) -> int:
        return len(self._keys)


def key_function(header: str | None, key: KeyFunction | None) -> KeyFunction:
    if key is not None:
        return key
    if header is not None:
        return lambda message: message._headers.get(header)
    return lambda message: message._headers.get("id")


def deduplicating(
    core: Invoker,
    *,
    scope: str,
    key: KeyFunction,
    store: DeduplicationStore,
    clock: Clock,
    expire_after: float,
) -> Invoker:
    def handle(message: Message) -> Any:
        try:
            value = key(message)
        except Exception as error:
            raise DeduplicationKeyError(
                f"the deduplication key function of {scope} raised {type(error).__name__}: "
                f"{error}, for message {message.id}; it must accept every message the handler "
                f"receives (return None to handle a message without deduplicating it)"
            ) from error
        if value is None:
            return core(message)
        text = str(value)
        now = clock.now()
        if not store.claim(scope, text, now, now + expire_after):
            logger.info("%s skipped duplicate %r (message %s)", scope, text, message.id)
            return None
        try:
            return core(message)
        except BaseException:
            try:
                store.release(scope, text)
            except Exception as release_error:
                # The handler's error is the one to see; a claim left behind expires.
                logger.error("%s could not release key %r: %s", scope, text, release_error)
            raise

    return handle
