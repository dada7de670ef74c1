"""ecopy: message-driven business software for Python.

The layers, from the bottom up: ``ecopy.messaging`` (messages, channels, endpoints,
interceptors, conversion) ← ``ecopy.modelling`` (buses, routing, handlers) ←
``ecopy.config`` (scanning, bootstrap) ← ``ecopy.testing`` and ``ecopy.cli``.
"""

from ecopy.config.bootstrap import bootstrap
from ecopy.config.configuration import ServiceConfiguration, service_context
from ecopy.config.system import MessagingSystem
from ecopy.errors import (
    ConfigurationError,
    EcopyError,
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
from ecopy.modelling.buses import CommandBus, EventBus, QueryBus
from ecopy.modelling.handlers import (
    command_handler,
    event_handler,
    internal_handler,
    priority,
    query_handler,
)

__all__ = [
    "CommandBus",
    "ConfigurationError",
    "EcopyError",
    "EndpointInfo",
    "EventBus",
    "Header",
    "Headers",
    "Message",
    "MessageConversionError",
    "MessagingSystem",
    "MethodInvocation",
    "MissingHeader",
    "NoHandlerFound",
    "QueryBus",
    "QueueChannel",
    "Reference",
    "ServiceConfiguration",
    "after",
    "around",
    "before",
    "bootstrap",
    "command_handler",
    "event_handler",
    "internal_handler",
    "marker",
    "named_event",
    "presend",
    "priority",
    "query_handler",
    "service_context",
]
