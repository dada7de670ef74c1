"""Modules: how adapter packages plug into bootstrap without the core importing them.

An extension object with a ``register(context)`` method is a module. Bootstrap calls it once
with a :class:`ModuleContext`, through which it adds channels, replaces the in-memory stores,
provides transactions and makes values injectable into handlers by annotation::

    @dataclass(frozen=True)
    class MyConfiguration:
        def register(self, context: ModuleContext) -> None:
            context.use_dead_letter_store(MyDeadLetterStore())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from ecopy.config.container import Container
from ecopy.messaging.channel import MessageChannel, PollableChannel
from ecopy.messaging.clock import Clock
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.dead_letter import DeadLetterStore
from ecopy.messaging.deduplication import DeduplicationStore
from ecopy.messaging.naming import TypeRegistry
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import TransactionManager
from ecopy.modelling.event_store import EventStore, SnapshotStore
from ecopy.modelling.repository import Repository

T = TypeVar("T")


@runtime_checkable
class Module(Protocol):
    def register(self, context: ModuleContext) -> None: ...


class ModuleContext:
    """What a module may see and change while the application is being built."""

    def __init__(
        self,
        *,
        extensions: tuple[Any, ...],
        container: Container,
        clock: Clock,
        names: TypeRegistry,
        conversion: PayloadConversion,
        serializer: MessageSerializer,
        problems: list[str],
    ) -> None:
        self.extensions = extensions
        self.container = container
        self.clock = clock
        self.names = names
        self.conversion = conversion
        self.serializer = serializer
        self.problems = problems
        self.channels: dict[str, MessageChannel] = {}
        self.repositories: list[Repository] = []
        self.dead_letter_store: DeadLetterStore | None = None
        self.deduplication_store: DeduplicationStore | None = None
        self.event_store: EventStore | None = None
        self.snapshot_store: SnapshotStore | None = None
        self.transactions: TransactionManager | None = None
        self.providers: dict[type[Any], Callable[[], Any]] = {}
        self.transactional_parameters: set[type[Any]] = set()
        self.closers: list[Callable[[], None]] = []
        self.added_services: list[object] = []
        self._shared: dict[Any, Any] = {}

    def extension(self, kind: type[T]) -> T | None:
        """The first extension object of ``kind``, wherever it is in the list."""
        for extension in self.extensions:
            if isinstance(extension, kind):
                return extension
        return None

    def shared(self, key: Any, create: Callable[[], T]) -> T:
        """One value per application for ``key``, created on first use: lets several
        extension objects of one module share, say, one database."""
        if key not in self._shared:
            self._shared[key] = create()
        value: T = self._shared[key]
        return value

    def add_channel(self, name: str, channel: MessageChannel | PollableChannel) -> None:
        if name in self.channels:
            self.problems.append(f"channel {name!r} is declared twice")
        self.channels[name] = channel

    def add_service(self, instance: object) -> None:
        """Make ``instance`` injectable into handlers (by type) and findable with
        ``app.service(type)``. It does not take the place of a store or of the transactions:
        only services given to bootstrap do."""
        self.container.add(instance)
        self.added_services.append(instance)

    def add_repository(self, repository: Repository) -> None:
        """A repository for state-stored aggregates and sagas; services registered with
        bootstrap still come first."""
        self.repositories.append(repository)

    def use_dead_letter_store(self, store: DeadLetterStore) -> None:
        self.dead_letter_store = store

    def use_deduplication_store(self, store: DeduplicationStore) -> None:
        self.deduplication_store = store

    def use_event_store(self, store: EventStore) -> None:
        self.event_store = store

    def use_snapshot_store(self, store: SnapshotStore) -> None:
        self.snapshot_store = store

    def use_transactions(self, manager: TransactionManager) -> None:
        self.transactions = manager

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call ``closer`` when the application is closed (``app.close()``), or when bootstrap
        fails: dispose of engines and pools, stop background threads. Closers run in the
        reverse order of registration."""
        self.closers.append(closer)

    def provide(
        self, annotation: type[Any], provider: Callable[[], Any], *, in_transaction: bool = False
    ) -> None:
        """Handlers with a parameter annotated ``annotation`` get ``provider()`` at each
        call (e.g. the connection of the current transaction). With ``in_transaction=True``
        the value only exists inside a transaction: a query handler or a synchronous event
        handler that asks for it runs in one (it joins the one in progress, if any)."""
        self.providers[annotation] = provider
        if in_transaction:
            self.transactional_parameters.add(annotation)
