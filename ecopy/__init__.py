"""ecopy: message-driven business software for Python.

The layers, from the bottom up: ``ecopy.messaging`` (messages, channels, endpoints,
interceptors, conversion) ← ``ecopy.modelling`` (buses, routing, handlers) ←
``ecopy.config`` (scanning, bootstrap) ← ``ecopy.testing`` and ``ecopy.cli``.
"""

from ecopy.config.bootstrap import bootstrap
from ecopy.config.configuration import ServiceConfiguration, service_context
from ecopy.config.system import MessagingSystem
from ecopy.errors import (
    AggregateDefinitionError,
    AggregateNotFound,
    ConcurrencyError,
    ConfigurationError,
    EcopyError,
    IdentifierNotFound,
    MessageConversionError,
    MissingHeader,
    NoHandlerFound,
)
from ecopy.messaging.channel import QueueChannel
from ecopy.messaging.declaration import marker
from ecopy.messaging.endpoint import EndpointInfo
from ecopy.messaging.interceptor import MethodInvocation, after, around, before, presend
from ecopy.messaging.message import Message
from ecopy.messaging.naming import named_event
from ecopy.messaging.parameter import Header, Headers, Reference
from ecopy.modelling.aggregate import (
    AggregateVersion,
    Identifier,
    TargetIdentifier,
    TargetVersion,
    WithEvents,
    aggregate,
    event_sourcing_aggregate,
    event_sourcing_handler,
    saga,
)
from ecopy.modelling.buses import CommandBus, EventBus, QueryBus
from ecopy.modelling.event_store import (
    EventStore,
    InMemoryEventStore,
    InMemorySnapshotStore,
    NewEvent,
    SnapshotStore,
    StoredEvent,
)
from ecopy.modelling.handlers import (
    command_handler,
    event_handler,
    internal_handler,
    priority,
    query_handler,
)
from ecopy.modelling.repository import InMemoryRepository, Loaded, Repository

__all__ = [
    "AggregateDefinitionError",
    "AggregateNotFound",
    "AggregateVersion",
    "CommandBus",
    "ConcurrencyError",
    "ConfigurationError",
    "EcopyError",
    "EndpointInfo",
    "EventBus",
    "EventStore",
    "Header",
    "Headers",
    "Identifier",
    "IdentifierNotFound",
    "InMemoryEventStore",
    "InMemoryRepository",
    "InMemorySnapshotStore",
    "Loaded",
    "Message",
    "MessageConversionError",
    "MessagingSystem",
    "MethodInvocation",
    "MissingHeader",
    "NewEvent",
    "NoHandlerFound",
    "QueryBus",
    "QueueChannel",
    "Reference",
    "Repository",
    "ServiceConfiguration",
    "SnapshotStore",
    "StoredEvent",
    "TargetIdentifier",
    "TargetVersion",
    "WithEvents",
    "after",
    "aggregate",
    "around",
    "before",
    "bootstrap",
    "command_handler",
    "event_handler",
    "event_sourcing_aggregate",
    "event_sourcing_handler",
    "internal_handler",
    "marker",
    "named_event",
    "presend",
    "priority",
    "query_handler",
    "saga",
    "service_context",
]
