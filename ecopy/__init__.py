"""ecopy: message-driven business software for Python.

The layers, from the bottom up: ``ecopy.messaging`` (messages, channels, endpoints,
interceptors, conversion) ← ``ecopy.modelling`` (buses, routing, handlers) ←
``ecopy.config`` (scanning, bootstrap) ← ``ecopy.testing`` and ``ecopy.cli``.
"""

from ecopy.config.asynchronous import CombinedMessageChannel
from ecopy.config.bootstrap import bootstrap
from ecopy.config.configuration import ServiceConfiguration, service_context
from ecopy.config.system import MessagingSystem
from ecopy.errors import (
    AggregateDefinitionError,
    AggregateNotFound,
    BlockingCallInEventLoop,
    ConcurrencyError,
    ConfigurationError,
    ConfigurationWarning,
    EcopyError,
    IdentifierNotFound,
    MessageConversionError,
    MissingHeader,
    NoHandlerFound,
    NonRetryableError,
)
from ecopy.messaging.channel import QueueChannel
from ecopy.messaging.clock import Clock, ControlledClock, SystemClock
from ecopy.messaging.consumer import PollingMetadata
from ecopy.messaging.dead_letter import (
    DeadLetter,
    DeadLetterEntry,
    DeadLetterStore,
    InMemoryDeadLetterStore,
)
from ecopy.messaging.declaration import Marker, marker
from ecopy.messaging.deduplication import (
    DeduplicationStore,
    InMemoryDeduplicationStore,
    deduplicated,
)
from ecopy.messaging.delivery import asynchronous, delayed, time_to_live
from ecopy.messaging.endpoint import EndpointInfo
from ecopy.messaging.interceptor import MethodInvocation, after, around, before, presend
from ecopy.messaging.message import DELIVERY_DELAY, PRIORITY, TIME_TO_LIVE, Message
from ecopy.messaging.naming import named_event
from ecopy.messaging.parameter import Header, Headers, Reference
from ecopy.messaging.retry import (
    ErrorHandlerConfiguration,
    InstantRetryConfiguration,
    RetryTemplate,
)
from ecopy.messaging.scheduling import scheduled
from ecopy.messaging.status import ChannelStatus
from ecopy.messaging.transaction import TransactionManager, without_transaction
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
from ecopy.modelling.buses import (
    AsyncCommandBus,
    AsyncEventBus,
    AsyncQueryBus,
    CommandBus,
    EventBus,
    QueryBus,
)
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
from ecopy.projecting.engine import ProjectionError, ProjectionNotFound

__all__ = [
    "DELIVERY_DELAY",
    "PRIORITY",
    "TIME_TO_LIVE",
    "AggregateDefinitionError",
    "AggregateNotFound",
    "AggregateVersion",
    "AsyncCommandBus",
    "AsyncEventBus",
    "AsyncQueryBus",
    "BlockingCallInEventLoop",
    "ChannelStatus",
    "Clock",
    "CombinedMessageChannel",
    "CommandBus",
    "ConcurrencyError",
    "ConfigurationError",
    "ConfigurationWarning",
    "ControlledClock",
    "DeadLetter",
    "DeadLetterEntry",
    "DeadLetterStore",
    "DeduplicationStore",
    "EcopyError",
    "EndpointInfo",
    "ErrorHandlerConfiguration",
    "EventBus",
    "EventStore",
    "Header",
    "Headers",
    "Identifier",
    "IdentifierNotFound",
    "InMemoryDeadLetterStore",
    "InMemoryDeduplicationStore",
    "InMemoryEventStore",
    "InMemoryRepository",
    "InMemorySnapshotStore",
    "InstantRetryConfiguration",
    "Loaded",
    "Marker",
    "Message",
    "MessageConversionError",
    "MessagingSystem",
    "MethodInvocation",
    "MissingHeader",
    "NewEvent",
    "NoHandlerFound",
    "NonRetryableError",
    "PollingMetadata",
    "ProjectionError",
    "ProjectionNotFound",
    "QueryBus",
    "QueueChannel",
    "Reference",
    "Repository",
    "RetryTemplate",
    "ServiceConfiguration",
    "SnapshotStore",
    "StoredEvent",
    "SystemClock",
    "TargetIdentifier",
    "TargetVersion",
    "TransactionManager",
    "WithEvents",
    "after",
    "aggregate",
    "around",
    "asynchronous",
    "before",
    "bootstrap",
    "command_handler",
    "deduplicated",
    "delayed",
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
    "scheduled",
    "service_context",
    "time_to_live",
    "without_transaction",
]
