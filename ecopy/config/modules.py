"""Modules: how every capability plugs into bootstrap.

An object with a ``register(context)`` method is a module. Bootstrap registers the core's own
modules (aggregates and sagas, asynchronous processing, scheduling), then every module among
the extension objects, in the order given. Through the :class:`ModuleContext` a module takes
the extension objects it understands, adds channels, stores, transactions and injectable
values, and hooks into the later steps of the build: how the handlers of a class are called,
what becomes of a compiled endpoint, which consumers exist, and which checks report problems.
The build then runs in one fixed sequence (see ``docs/modules.md``)::

    @dataclass(frozen=True)
    class MyConfiguration:
        def register(self, context: ModuleContext) -> None:
            context.use_dead_letter_store(MyDeadLetterStore())
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ecopy.config.container import Container
from ecopy.messaging.binding import ArgumentBinder
from ecopy.messaging.channel import MessageChannel, PollableChannel
from ecopy.messaging.clock import Clock
from ecopy.messaging.consumer import Consumer
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.dead_letter import DeadLetterStore
from ecopy.messaging.deduplication import DeduplicationStore
from ecopy.messaging.endpoint import Endpoint, Invoker
from ecopy.messaging.naming import TypeRegistry
from ecopy.messaging.serialization import MessageSerializer
from ecopy.messaging.transaction import NoTransactions, TransactionManager
from ecopy.modelling.event_store import EventStore, SnapshotStore
from ecopy.modelling.repository import Repository

if TYPE_CHECKING:
    from ecopy.config.handlers import EndpointPlan, HandlerDefinition, HandlerOwner
    from ecopy.config.scanning import DeclaredMember

T = TypeVar("T")

#: Given a class whose methods handle messages, the owner that calls them (an aggregate or a
#: saga loaded by identifier, say), or ``None`` when the module does not own that class.
OwnerResolver = Callable[[type[Any]], "HandlerOwner | None"]
#: Turns a compiled endpoint plan into the endpoint the buses call, or ``None`` to leave it
#: to the next stage (asynchronous processing sends it to a channel).
EndpointStage = Callable[["EndpointPlan"], "Endpoint | None"]
#: Changes an endpoint plan before the endpoint stages (wraps its core, adds interceptors).
EndpointDecorator = Callable[["EndpointPlan"], None]
#: Called with every handler definition before compiling; returns the definitions to compile.
DefinitionsHook = Callable[[list["HandlerDefinition"]], list["HandlerDefinition"]]
#: Called once every endpoint is compiled; returns consumers by name.
ConsumerFactory = Callable[[], Mapping[str, Consumer]]
#: Called last; returns the configuration problems it finds.
Check = Callable[[], Iterable[str]]


@runtime_checkable
class Module(Protocol):
    def register(self, context: ModuleContext) -> None: ...


class ModuleContext:
    """What a module may see and change while the application is being built."""

    def __init__(
        self,
        *,
        extensions: tuple[Any, ...],
        targets: tuple[Any, ...],
        members: tuple[DeclaredMember, ...],
        container: Container,
        binder: ArgumentBinder,
        clock: Clock,
        names: TypeRegistry,
        conversion: PayloadConversion,
        serializer: MessageSerializer,
        problems: list[str],
        asynchronous_inline: bool = False,
    ) -> None:
        self.extensions = extensions
        self.targets = targets
        """The classes and functions given to bootstrap or found by scanning."""
        self.members = members
        """Their declared members: handlers, interceptors, scheduled methods."""
        self.container = container
        self.binder = binder
        self.clock = clock
        self.names = names
        self.conversion = conversion
        self.serializer = serializer
        self.problems = problems
        self.asynchronous_inline = asynchronous_inline
        """Flow tests that do not enable asynchronous processing run ``@asynchronous``
        handlers in the caller."""
        self.channels: dict[str, MessageChannel] = {}
        self.unavailable_channels: set[str] = set()
        self.repositories: list[Repository] = []
        self.dead_letter_store: DeadLetterStore | None = None
        self.deduplication_store: DeduplicationStore | None = None
        self.event_store: EventStore | None = None
        self.snapshot_store: SnapshotStore | None = None
        self.transactions: TransactionManager | None = None
        self.providers: dict[type[Any], Callable[[], Any]] = {}
        self.transactional_parameters: set[type[Any]] = set()
        self.closers: list[Callable[[], None]] = []
        self.ports: dict[type[Any], Any] = {}
        self.added_services: list[object] = []
        self.owner_resolvers: list[OwnerResolver] = []
        self.definition_hooks: list[DefinitionsHook] = []
        self.endpoint_decorators: list[EndpointDecorator] = []
        self.endpoint_stages: list[EndpointStage] = []
        self.consumer_factories: list[ConsumerFactory] = []
        self.asynchronous_endpoints: list[tuple[Endpoint, tuple[str, ...]]] = []
        self.checks: list[Check] = []
        self.ready_hooks: list[Callable[[], None]] = []
        self.endpoints: list[Endpoint] = []
        """Every compiled endpoint, once compiled."""
        self.handling: dict[str, Invoker] = {}
        """The chain that handles a message for each endpoint id, where it is handled: in the
        caller, or in the consumer for an asynchronous endpoint."""
        self.consumers: dict[str, Consumer] = {}
        """Every consumer, once the consumer factories ran (for checks)."""
        self.without_transaction: set[str] = set()
        """Endpoint ids whose handlers opted out of transactions (``@without_transaction``)."""
        self.endpoint_channels: dict[str, tuple[str, ...]] = {}
        """The channels each endpoint handled by a consumer goes through, in order, by endpoint
        id (the last one's consumer runs it); an endpoint not here runs in the caller. What
        ``app.endpoint_channels()`` and ``ecopy list``/``graph`` show."""
        self.chosen_by: dict[str, str] = {}
        """Endpoint ids the buses never route to, each with the id of the endpoint whose
        handler chooses to run it (an aggregate's factory, chosen by its action)."""
        self._claimed: set[int] = set()
        self._shared: dict[Any, Any] = {}

    # -- extension objects --------------------------------------------------------------

    def extension(self, kind: type[T]) -> T | None:
        """The first extension object of ``kind``, wherever it is in the list."""
        found = self.extensions_of(kind)
        return found[0] if found else None

    def extensions_of(self, kind: type[T]) -> list[T]:
        """Every extension object of ``kind``, in order. Taking them tells bootstrap they are
        understood: an extension object no module takes is reported as a problem."""
        found = [e for e in self.extensions if isinstance(e, kind)]
        self._claimed.update(id(e) for e in found)
        return found

    def unclaimed_extensions(self) -> list[Any]:
        return [
            e for e in self.extensions if id(e) not in self._claimed and not isinstance(e, Module)
        ]

    def shared(self, key: Any, create: Callable[[], T]) -> T:
        """One value per application for ``key``, created on first use: lets several
        extension objects of one module share, say, one database."""
        if key not in self._shared:
            self._shared[key] = create()
        value: T = self._shared[key]
        return value

    # -- channels, services and stores ---------------------------------------------------

    def add_channel(self, name: str, channel: MessageChannel | PollableChannel) -> None:
        if name in self.channels:
            self.problems.append(
                f"channel {name!r} is declared twice among the extensions; keep one "
                f"declaration of it"
            )
        self.channels[name] = channel

    def channel_unavailable(self, name: str) -> None:
        """``name`` is declared, but its module could not build it (and reported why): it is
        not reported again as an undeclared channel wherever it is used."""
        self.unavailable_channels.add(name)

    def near_channel(self, name: str) -> str | None:
        """ "did you mean 'x'?" for a declared channel whose name is close to ``name``."""
        from difflib import get_close_matches

        near = get_close_matches(name, list(self.channels), n=1, cutoff=0.6)
        return f"did you mean {near[0]!r}?" if near else None

    def unknown_channel(self, name: str) -> str:
        """How to fix a use of channel ``name``, which is not declared: a near name if there
        is one, else how to declare it, in the kind of channel the application already uses
        (never an in-memory queue in an application that has another kind)."""
        near = self.near_channel(name)
        if near:
            return near
        kinds = []
        for extension in self.extensions:
            declared = getattr(extension, "name", None)
            if isinstance(declared, str) and declared in self.channels:
                kind = type(extension).__name__
                if kind not in kinds:
                    kinds.append(kind)
        others = [kind for kind in kinds if kind != "QueueChannel"]
        if others:
            return f"declare it like the application's other channels: {others[0]}({name!r})"
        if kinds:
            return f"declare it: add QueueChannel({name!r}) to the extensions"
        return (
            f"declare it among the extensions: DbalChannel({name!r}) for a database queue "
            f"(with DbalConfiguration), or QueueChannel({name!r}) in memory (tests)"
        )

    @property
    def queues(self) -> dict[str, PollableChannel]:
        """The channels consumers poll."""
        return {n: c for n, c in self.channels.items() if isinstance(c, PollableChannel)}

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

    def use_port(self, port: type[T], implementation: T) -> None:
        """Provide ``implementation`` of a port that another module defines (the projection
        state store, say); that module asks for it with :meth:`port`."""
        self.ports[port] = implementation

    def port(self, port: type[T]) -> T | None:
        """The implementation of ``port`` the application uses: a service given to bootstrap
        first, else the one a module provided (``use_port``), else ``None`` (the caller's
        in-memory default). Meaningful once every module registered (in ``on_ready``)."""
        added = {id(service) for service in self.added_services}
        for service in self.container.implementations(port):
            if id(service) not in added:
                found: T = service
                return found
        provided: T | None = self.ports.get(port)
        return provided

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

    # -- hooks into the later steps ------------------------------------------------------

    def on_ready(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once every module is registered and the stores are chosen (services
        given to bootstrap first, then modules, then in memory): ``dead_letter_store``,
        ``deduplication_store``, ``event_store``, ``snapshot_store``, ``repositories`` and
        ``transactions`` then hold what the application uses."""
        self.ready_hooks.append(hook)

    def own_handlers(self, resolver: OwnerResolver) -> None:
        """Call the handlers of the classes ``resolver`` owns through the owner it returns
        (aggregates and sagas: load by identifier, call, save) instead of on a service."""
        self.owner_resolvers.append(resolver)

    def on_definitions(self, hook: DefinitionsHook) -> None:
        """See, and adjust, every handler definition before the endpoints are compiled."""
        self.definition_hooks.append(hook)

    def decorate_endpoints(self, decorator: EndpointDecorator) -> None:
        """Change every endpoint plan (its core invoker, its interceptors) before the endpoint
        stages build it: every endpoint, synchronous or not, passes through each decorator."""
        self.endpoint_decorators.append(decorator)

    def add_endpoint_stage(self, stage: EndpointStage) -> None:
        """Decide what becomes of each compiled endpoint plan; the first stage that returns an
        endpoint wins, and a plan no stage takes is called in the caller."""
        self.endpoint_stages.append(stage)

    def add_asynchronous_endpoint(self, endpoint: Endpoint, channels: tuple[str, ...]) -> None:
        """An endpoint handled by the consumers of ``channels`` (a projection's trigger, say)
        for messages addressed to its endpoint id, with the same transactions, retries and
        dead letters as an ``@asynchronous`` handler. Add it before the consumers are built."""
        self.asynchronous_endpoints.append((endpoint, channels))

    def add_consumers(self, factory: ConsumerFactory) -> None:
        """Contribute consumers, built once every endpoint is compiled."""
        self.consumer_factories.append(factory)

    def add_check(self, check: Check) -> None:
        """Report configuration problems once everything is built; they are raised together
        with every other problem in one ``ConfigurationError``."""
        self.checks.append(check)

    # -- what modules read after registration ---------------------------------------------

    @property
    def transactions_if_any(self) -> TransactionManager | None:
        manager = self.transactions
        return None if manager is None or isinstance(manager, NoTransactions) else manager

    def channel_named(self, name: str) -> MessageChannel:
        from ecopy.errors import ConfigurationError

        channel = self.channels.get(name)
        if channel is None:
            raise ConfigurationError([f"channel {name!r} does not exist"])
        return channel
