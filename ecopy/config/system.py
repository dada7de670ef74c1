"""``MessagingSystem``: the running application that bootstrap returns."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from ecopy.config.configuration import ServiceConfiguration
from ecopy.errors import EcopyError
from ecopy.messaging.binding import ServiceLocator
from ecopy.messaging.channel import MessageChannel
from ecopy.messaging.clock import Clock
from ecopy.messaging.consumer import Consumer, ConsumerLimits, PollingConsumer
from ecopy.messaging.dead_letter import DeadLetter
from ecopy.messaging.endpoint import Endpoint, EndpointInfo
from ecopy.messaging.naming import TypeRegistry
from ecopy.messaging.status import ChannelStatus, channel_statuses
from ecopy.modelling.aggregate_handling import AggregateStore
from ecopy.modelling.buses import (
    AsyncCommandBus,
    AsyncEventBus,
    AsyncQueryBus,
    CommandBus,
    EventBus,
    QueryBus,
)
from ecopy.projecting.manager import ProjectionManager

T = TypeVar("T")
logger = logging.getLogger("ecopy")


@dataclass(frozen=True)
class ConsumerInfo:
    name: str
    channel: str
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class EndpointChannels:
    """How messages reach an endpoint's handler, as the built application wires it.

    ``channels`` are the channels a message goes through before a consumer runs the handler,
    in order (each hop of a ``CombinedMessageChannel``; the consumer of the last one runs
    it); empty when the handler runs in the caller. ``chosen_by`` names the endpoint whose
    handler chooses to run this one, which the buses never route to by itself: an
    aggregate's factory, run by the action for the same message when the aggregate does not
    exist yet.

    >>> [(e.endpoint_id, e.channels) for e in app.endpoint_channels()]  # doctest: +SKIP
    [('charge_card', ('db', 'rabbit')), ('get_order', ())]
    """

    endpoint_id: str
    channels: tuple[str, ...] = ()
    chosen_by: str | None = None

    @property
    def asynchronous(self) -> bool:
        return bool(self.channels)


class MessagingSystem:
    """A bootstrapped application: buses, endpoints, channels and consumers.

    Everything an application needs lives here; two systems in one process share nothing.
    """

    def __init__(
        self,
        *,
        config: ServiceConfiguration,
        command_bus: CommandBus,
        event_bus: EventBus,
        query_bus: QueryBus,
        endpoints: tuple[Endpoint, ...],
        channels: Mapping[str, MessageChannel],
        consumers: Mapping[str, Consumer],
        names: TypeRegistry,
        aggregates: AggregateStore,
        dead_letter: DeadLetter,
        clock: Clock,
        services: ServiceLocator | None = None,
        closers: Sequence[Callable[[], None]] = (),
        endpoint_channels: Mapping[str, tuple[str, ...]] | None = None,
        chosen_by: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.command_bus = command_bus
        self.event_bus = event_bus
        self.query_bus = query_bus
        self._endpoints = endpoints
        self._channels = dict(channels)
        self._consumers = dict(consumers)
        self.names = names
        self.aggregates = aggregates
        self.dead_letter = dead_letter
        self.clock = clock
        self._services = services
        self._closers = list(closers)
        self._endpoint_channels = tuple(
            EndpointChannels(
                endpoint.info.endpoint_id,
                tuple((endpoint_channels or {}).get(endpoint.info.endpoint_id, ())),
                (chosen_by or {}).get(endpoint.info.endpoint_id),
            )
            for endpoint in endpoints
        )
        self.async_command_bus = AsyncCommandBus(command_bus)
        self.async_event_bus = AsyncEventBus(event_bus)
        self.async_query_bus = AsyncQueryBus(query_bus)

    @property
    def service_name(self) -> str:
        return self.config.service_name

    @property
    def projections(self) -> ProjectionManager:
        """The lifecycle of the application's projections: status, init, trigger, backfill,
        rebuild, reset, delete."""
        return self.require_service(ProjectionManager)

    def service(self, kind: type[T]) -> T | None:
        """The service of type ``kind`` the application was built with (given to bootstrap or
        added by a module, such as ``ecopy_dbal``'s ``Database``), or ``None``.

        >>> app.service(Database)  # doctest: +SKIP
        """
        if self._services is None:
            return None
        found, instance = self._services.find_by_type(kind)
        return instance if found else None

    def require_service(self, kind: type[T]) -> T:
        """Like ``service``, but raises ``EcopyError`` when the application has no ``kind``."""
        instance = self.service(kind)
        if instance is None:
            raise EcopyError(
                f"the application has no service of type {kind.__qualname__}: pass one to "
                f"bootstrap(services=[...]), or add the extension that provides it (a "
                f"Database comes with DbalConfiguration)"
            )
        return instance

    def close(self) -> None:
        """Release what the application holds: database engines and their pools, background
        threads of its channels. Idempotent; ``with ecopy.bootstrap(...) as app:`` closes on
        leaving the block."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                closer()
            except Exception:
                logger.exception("closing the application: %r failed", closer)

    def __enter__(self) -> MessagingSystem:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def endpoints(self) -> list[EndpointInfo]:
        """Every endpoint of the application, in registration order."""
        return [endpoint.info for endpoint in self._endpoints]

    def endpoint_channels(self) -> list[EndpointChannels]:
        """For every endpoint, in registration order, the channels its messages go through
        before a consumer handles them (none: it runs in the caller), and the endpoint that
        chooses it, if the buses do not route to it by itself; what ``ecopy list`` and
        ``ecopy graph`` show."""
        return list(self._endpoint_channels)

    def channel(self, name: str) -> MessageChannel:
        try:
            return self._channels[name]
        except KeyError:
            known = ", ".join(sorted(self._channels)) or "none"
            raise EcopyError(f"Unknown channel {name!r}; known channels: {known}") from None

    def channel_status(self, *names: str) -> list[ChannelStatus]:
        """How many messages the named pollable channels (all of them, by default) hold:
        waiting, due, in flight and dead-lettered; what ``ecopy status`` shows. An unknown
        name raises ``UnknownChannel`` listing the known ones.

        >>> [(s.channel, s.due) for s in app.channel_status("orders")]  # doctest: +SKIP
        [('orders', 3)]
        """
        return channel_statuses(self._channels, self.dead_letter.store, names)

    def list_consumers(self) -> list[ConsumerInfo]:
        """The consumers that ``run`` can start, by name."""
        result = []
        for name, consumer in self._consumers.items():
            if isinstance(consumer, PollingConsumer):
                channel = consumer.channel.name
                served = (
                    tuple(consumer.handlers)
                    + tuple(consumer.forwards)
                    + (
                        tuple(
                            e.info.endpoint_id
                            for e in self._endpoints
                            if e.info.kind == "internal" and e.info.input_channel == channel
                        )
                    )
                )
            else:
                channel, served = "", (name,)
            result.append(ConsumerInfo(name=name, channel=channel, endpoints=served))
        return result

    def _consumer(self, name: str) -> Consumer:
        consumer = self._consumers.get(name)
        if consumer is None:
            known = ", ".join(sorted(self._consumers)) or "none"
            raise EcopyError(f"Unknown consumer {name!r}; known consumers: {known}")
        return consumer

    def run(
        self,
        name: str,
        *,
        handled_message_limit: int | None = None,
        execution_time_limit_ms: int | None = None,
        memory_limit_mb: int | None = None,
        stop_on_error: bool = False,
        finish_when_no_messages: bool = False,
    ) -> int:
        """Run the consumer ``name`` until a limit is reached; returns messages handled.

        SIGTERM and SIGINT stop the consumer after the message in hand.
        """
        limits = self._limits(
            name,
            handled_message_limit=handled_message_limit,
            execution_time_limit_ms=execution_time_limit_ms,
            memory_limit_mb=memory_limit_mb,
            stop_on_error=stop_on_error,
            finish_when_no_messages=finish_when_no_messages,
        )
        consumer = self._consumer(name)
        with _graceful_stop(consumer):
            return consumer.run(limits)

    def _limits(
        self,
        name: str,
        *,
        handled_message_limit: int | None = None,
        execution_time_limit_ms: int | None = None,
        memory_limit_mb: int | None = None,
        stop_on_error: bool = False,
        finish_when_no_messages: bool = False,
    ) -> ConsumerLimits:
        """The limits of a run of consumer ``name``: those given, else its ``PollingMetadata``."""
        consumer = self._consumer(name)
        metadata = getattr(consumer, "metadata", None)

        def pick(given: Any, name: str) -> Any:
            if given is not None or metadata is None:
                return given
            return getattr(metadata, name)

        return ConsumerLimits(
            handled_message_limit=pick(handled_message_limit, "handled_message_limit"),
            execution_time_limit_ms=pick(execution_time_limit_ms, "execution_time_limit_ms"),
            memory_limit_mb=pick(memory_limit_mb, "memory_limit_mb"),
            stop_on_error=stop_on_error or bool(metadata and metadata.stop_on_error),
            finish_when_no_messages=finish_when_no_messages
            or bool(metadata and metadata.finish_when_no_messages),
            poll_interval_ms=metadata.poll_interval_ms if metadata else 100,
        )


@contextmanager
def _graceful_stop(consumer: Consumer) -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        consumer.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
