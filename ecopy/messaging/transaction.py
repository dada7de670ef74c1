"""Transactions: one unit of work around a command, an asynchronous handler or a CLI command.

The core defines the port; an adapter (``ecopy_dbal``) implements it. Bootstrap wraps the
command bus, every asynchronous endpoint (with the acknowledgement of its message) and the
dead-letter commands in ``TransactionManager.transaction()``. A transaction begun while another
is in progress joins it, so nested calls commit or roll back together; any exception that
leaves the outermost one rolls everything back.

A handler opts out with ``@without_transaction``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TypeVar, runtime_checkable

from ecopy.messaging.declaration import declare
from ecopy.messaging.endpoint import Invoker
from ecopy.messaging.message import Message

F = TypeVar("F")


@runtime_checkable
class TransactionManager(Protocol):
    def transaction(self) -> AbstractContextManager[Any]:
        """Begin a transaction, or join the one in progress in this context."""


class NoTransactions(TransactionManager):
    """The default when no adapter provides transactions: nothing to begin or commit."""

    def transaction(self) -> AbstractContextManager[Any]:
        return nullcontext()


def without_transaction(target: F) -> F:
    """Run this handler outside the database transaction the framework would open for it.

    Use it for a handler that calls slow external systems and writes nothing that must commit
    with its message; each store call then commits on its own.
    """
    declare(target).modifiers["without_transaction"] = True
    return target


def transactional(
    invoker: Invoker,
    manager: TransactionManager,
    applies: Callable[[Message], bool] | None = None,
) -> Invoker:
    """``invoker`` inside ``manager.transaction()``; when ``applies`` is given, only for the
    messages it accepts."""
    begin = manager.transaction

    def run(message: Message) -> Any:
        if applies is not None and not applies(message):
            return invoker(message)
        with begin():
            return invoker(message)

    return run
