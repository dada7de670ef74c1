"""The scheduling module: ``@scheduled`` methods become consumers that call them when due
and send what they return to a channel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ecopy.config.handlers import member_call
from ecopy.config.modules import ModuleContext
from ecopy.config.scanning import DeclaredMember
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
        produce = member_call(context, member, f"scheduled {member.name}")
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


def _sender_to(channel: MessageChannel) -> Callable[[Any], None]:
    def send(payload: Any) -> None:
        channel.send(Message(payload))

    return send
