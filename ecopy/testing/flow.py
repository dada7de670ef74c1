"""Flow testing: the real messaging system, with the messages it carries recorded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ecopy.config.bootstrap import SystemBuilder
from ecopy.config.configuration import ServiceConfiguration
from ecopy.config.system import MessagingSystem
from ecopy.errors import AggregateNotFound
from ecopy.messaging.clock import Clock, ControlledClock
from ecopy.messaging.dead_letter import DeadLetter
from ecopy.messaging.interceptor import before
from ecopy.messaging.message import Message
from ecopy.modelling.buses import CommandBus, EventBus, QueryBus
from ecopy.modelling.identifier import as_identifier
from ecopy.projecting.manager import ProjectionManager

# Innermost of the bus interceptors: records the message as it is finally dispatched.
_RECORDING_PRECEDENCE = 2**31


class MessageRecorder:
    """Records what goes through the command and event buses."""

    def __init__(self) -> None:
        self.commands: list[Message] = []
        self.events: list[Message] = []
        self.queries: list[Message] = []

    @before(pointcut=CommandBus, precedence=_RECORDING_PRECEDENCE)
    def record_command(self, message: Message) -> None:
        self.commands.append(message)

    @before(pointcut=EventBus, precedence=_RECORDING_PRECEDENCE)
    def record_event(self, message: Message) -> None:
        self.events.append(message)

    @before(pointcut=QueryBus, precedence=_RECORDING_PRECEDENCE)
    def record_query(self, message: Message) -> None:
        self.queries.append(message)

    def discard(self) -> None:
        self.commands.clear()
        self.events.clear()
        self.queries.clear()


class FlowTestSupport:
    """Drive an application through its buses and observe what happened.

    Methods that send return the support object, so calls chain::

        flow.send_command(PlaceOrder("o-1")).publish_event(PaymentReceived("o-1"))
    """

    def __init__(self, system: MessagingSystem, recorder: MessageRecorder) -> None:
        self.system = system
        self._recorder = recorder

    @property
    def command_bus(self) -> CommandBus:
        return self.system.command_bus

    @property
    def event_bus(self) -> EventBus:
        return self.system.event_bus

    @property
    def query_bus(self) -> QueryBus:
        return self.system.query_bus

    # -- acting -----------------------------------------------------------------------

    def send_command(
        self, command: Any, headers: Mapping[str, Any] | None = None
    ) -> FlowTestSupport:
        self.system.command_bus.send(command, headers)
        return self

    def send_command_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> FlowTestSupport:
        self.system.command_bus.send_with_routing(routing_key, payload, headers)
        return self

    def publish_event(
        self, event: Any, headers: Mapping[str, Any] | None = None
    ) -> FlowTestSupport:
        self.system.event_bus.publish(event, headers)
        return self

    def publish_event_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> FlowTestSupport:
        self.system.event_bus.publish_with_routing(routing_key, payload, headers)
        return self

    def send_query(self, query: Any, headers: Mapping[str, Any] | None = None) -> Any:
        return self.system.query_bus.send(query, headers)

    def send_query_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> Any:
        return self.system.query_bus.send_with_routing(routing_key, payload, headers)

    @property
    def dead_letter(self) -> DeadLetter:
        return self.system.dead_letter

    @property
    def clock(self) -> Clock:
        return self.system.clock

    def advance_time(self, duration: timedelta | float) -> FlowTestSupport:
        """Move the test clock forward (a ``timedelta`` or seconds)."""
        self._controlled().advance(duration)
        return self

    def change_time_to(self, moment: datetime | float) -> FlowTestSupport:
        """Set the test clock to a moment."""
        self._controlled().change_to(moment)
        return self

    def _controlled(self) -> ControlledClock:
        clock = self.system.clock
        if not isinstance(clock, ControlledClock):
            raise TypeError(
                f"the application runs on {type(clock).__qualname__}, not a ControlledClock, "
                f"so this flow test cannot move its time; remove the "
                f"{type(clock).__qualname__} from services= (flow tests get a ControlledClock), "
                f"or give a ControlledClock there"
            )
        return clock

    def run(self, name: str, *, handled_message_limit: int | None = None) -> FlowTestSupport:
        """Process the messages of the consumer ``name`` that are due by the test clock, then
        return. A handler failure propagates unless error handling takes the message."""
        self.system.run(
            name, handled_message_limit=handled_message_limit, finish_when_no_messages=True
        )
        return self

    # -- observing --------------------------------------------------------------------

    def get_recorded_events(self) -> list[Any]:
        """Payloads of the events published since the last discard."""
        return [m.payload for m in self._recorder.events]

    def get_recorded_event_headers(self) -> list[dict[str, Any]]:
        return [dict(m.headers) for m in self._recorder.events]

    def get_recorded_event_messages(self) -> list[Message]:
        return list(self._recorder.events)

    def get_recorded_commands(self) -> list[Any]:
        """Payloads of the commands sent since the last discard."""
        return [m.payload for m in self._recorder.commands]

    def get_recorded_command_headers(self) -> list[dict[str, Any]]:
        return [dict(m.headers) for m in self._recorder.commands]

    def get_recorded_queries(self) -> list[Any]:
        return [m.payload for m in self._recorder.queries]

    def discard_recorded_messages(self) -> FlowTestSupport:
        self._recorder.discard()
        return self

    # -- aggregates and sagas -----------------------------------------------------------

    def get_aggregate(self, aggregate_class: type[Any], identifier: Any) -> Any:
        """The current state of an aggregate; raises ``AggregateNotFound`` when missing."""
        found = self.system.aggregates.find(aggregate_class, identifier)
        if found is None:
            raise AggregateNotFound.in_test(aggregate_class.__qualname__, identifier)
        return found

    def get_saga(self, saga_class: type[Any], identifier: Any) -> Any:
        """The current state of a saga; raises ``AggregateNotFound`` when missing."""
        return self.get_aggregate(saga_class, identifier)

    def with_events_for(
        self, aggregate_class: type[Any], identifier: Any, events: list[Any]
    ) -> FlowTestSupport:
        """Give an event-sourced aggregate a history. The events are stored, not published,
        and not recorded."""
        store = self.system.aggregates
        definition = store.definition(aggregate_class)
        if not definition.event_sourced:
            raise TypeError(
                f"{definition.name} is not event-sourced; use with_state_for(instance) instead"
            )
        key = as_identifier(definition.identifiers, identifier, aggregate=definition.name)
        loaded = store.load(definition, key)
        instance = loaded.aggregate if loaded else definition.blank()
        for event in events:
            definition.apply(instance, event)
        version = loaded.version if loaded else 0
        store.save_events(definition, key, instance, version, list(events), publish=False)
        return self

    def with_state_for(self, aggregate: Any) -> FlowTestSupport:
        """Store a state-stored aggregate or saga instance as it is (nothing is published)."""
        store = self.system.aggregates
        definition = store.definition(type(aggregate))
        identifier = definition.identifier_of(aggregate)
        if identifier is None:
            missing = [
                name for name in definition.identifiers if getattr(aggregate, name, None) is None
            ]
            raise ValueError(
                f"with_state_for got a {definition.name} whose identifier "
                f"{', '.join(missing)} is not set (None); set it before storing the state"
            )
        release = getattr(aggregate, "release_recorded_events", None)
        if callable(release):
            release()  # given state is history: what it recorded is never published
        loaded = store.load(definition, identifier)
        version = loaded.version if loaded else 0
        definition.set_version(aggregate, version + 1)
        store.repository(definition.cls).save(definition.cls, identifier, aggregate, version)
        return self

    # -- projections ------------------------------------------------------------------------

    @property
    def projections(self) -> ProjectionManager:
        return self.system.projections

    def trigger_projection(self, name: str) -> FlowTestSupport:
        """Catch the projection up with the stored events now."""
        self.system.projections.trigger(name)
        return self

    def initialize_projection(self, name: str) -> FlowTestSupport:
        self.system.projections.init(name)
        return self

    def backfill_projection(self, name: str) -> FlowTestSupport:
        self.system.projections.backfill(name)
        return self

    def rebuild_projection(self, name: str) -> FlowTestSupport:
        self.system.projections.rebuild(name)
        return self

    def reset_projection(self, name: str) -> FlowTestSupport:
        self.system.projections.reset(name)
        return self

    def delete_projection(self, name: str) -> FlowTestSupport:
        self.system.projections.delete(name)
        return self

    def get_projection_state(self, name: str, partition: str = "") -> Any:
        return self.system.projections.state(name, partition)


def bootstrap_flow_testing(
    *,
    classes: Iterable[Any] = (),
    scan: Iterable[str] = (),
    services: Iterable[object] | Mapping[str, object] = (),
    config: ServiceConfiguration | None = None,
    enable_asynchronous_processing: Iterable[Any] | bool | None = None,
    start_time: datetime | float | None = None,
) -> FlowTestSupport:
    """Bootstrap the application for a flow test: the real routing, interceptors and
    conversion, with every command, event and query recorded, on a controllable clock.

    Without ``enable_asynchronous_processing``, ``@asynchronous`` handlers run at once in the
    caller. With it (channel declarations such as ``[QueueChannel("orders")]``, or ``True``
    to use the channels of ``config``), their messages wait in the channels, serialized as in
    production, until ``flow.run("orders")``.

    >>> flow = bootstrap_flow_testing(classes=[OrderService])  # doctest: +SKIP
    >>> flow.send_command(PlaceOrder("o-1")).get_recorded_events()  # doctest: +SKIP
    [OrderPlaced(order_id='o-1')]
    """
    recorder = MessageRecorder()
    clock = ControlledClock(start_time)
    config = config or ServiceConfiguration()
    if enable_asynchronous_processing not in (None, False, True):
        config = replace(
            config,
            extensions=[*config.extensions, *enable_asynchronous_processing],  # type: ignore[misc]
        )
    all_services: Any
    if isinstance(services, Mapping):
        given = list(services.values())
        all_services = {**services, "ecopy.flow_recorder": recorder}
    else:
        given = list(services)
        all_services = [*services, recorder]
    if not any(isinstance(service, Clock) for service in given):
        if isinstance(all_services, dict):
            all_services["ecopy.clock"] = clock
        else:
            all_services.append(clock)
    builder = SystemBuilder(
        config,
        all_services,
        asynchronous_inline=enable_asynchronous_processing in (None, False),
    )
    system = builder.build([*classes, MessageRecorder], scan)
    return FlowTestSupport(system, recorder)


__all__ = ["FlowTestSupport", "bootstrap_flow_testing"]
