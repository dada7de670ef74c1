"""The scheduling module: ``@scheduled`` methods become consumers that call them when due
and send what they return to a channel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ecopy.config.handlers import bound
from ecopy.config.modules import ModuleContext
from ecopy.config.scanning import DeclaredMember
from ecopy.messaging.binding import compile_call, parameters_of
from ecopy.messaging.channel import MessageChannel
from ecopy.messaging.consumer import Consumer, PollingMetadata
from ecopy.messaging.message import Message
from ecopy.messaging.scheduling import ScheduledConsumer


class SchedulingModule:
    """Registered by bootstrap for every application."""

    def register(self, context: ModuleContext) -> None:
        scheduled = [m for m in context.members if "scheduled" in m.declarations.modifiers]
        if scheduled:
            context.add_consumers(lambda: _consumers(context, scheduled))


def _consumers(context: ModuleContext, scheduled: list[DeclaredMember]) -> dict[str, Consumer]:
    polling = {m.endpoint_id: m for m in context.extensions_of(PollingMetadata)}
    consumers: dict[str, Consumer] = {}
    for member in scheduled:
        request_channel, endpoint_id, cron, fixed_rate_ms = member.declarations.modifiers[
            "scheduled"
        ]
        produce = _scheduled_call(context, member)
        channel = context.channels.get(request_channel)
        if channel is None:
            context.problems.append(
                f"scheduled {member.name} sends to channel {request_channel!r}, which does "
                f"not exist; "
                + (
                    context.near_channel(request_channel)
                    or f"declare an @internal_handler({request_channel!r}) or a channel"
                )
            )
            continue
        consumers[endpoint_id] = ScheduledConsumer(
            endpoint_id,
            produce,
            _sender_to(channel),
            context.clock,
            cron=cron,
            fixed_rate_ms=fixed_rate_ms,
            metadata=polling.get(endpoint_id),
        )
    return consumers


def _scheduled_call(context: ModuleContext, member: DeclaredMember) -> Callable[[], Any]:
    """A scheduled method with its parameters bound like a handler's (services, buses)."""
    target = bound(context, member)
    parameters = parameters_of(member.function, skip_first=member.binding in ("instance", "class"))
    resolvers, _, problems = context.binder.bind(
        parameters, handler=f"scheduled {member.name}", payload="none"
    )
    context.problems.extend(problems)
    call = compile_call(target, resolvers) if target is not None else None
    tick = Message(None)
    return lambda: call(tick) if call is not None else None


def _sender_to(channel: MessageChannel) -> Callable[[Any], None]:
    def send(payload: Any) -> None:
        channel.send(Message(payload))

    return send
