"""Polling consumers: take messages from a pollable channel and hand them to an endpoint."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecopy.messaging.channel import PollableChannel
from ecopy.messaging.message import Message

logger = logging.getLogger("ecopy.consumer")


@dataclass(frozen=True, kw_only=True)
class ConsumerLimits:
    """When a consumer run stops. ``None`` means no limit."""

    handled_message_limit: int | None = None
    execution_time_limit_ms: int | None = None
    memory_limit_mb: int | None = None
    finish_when_no_messages: bool = False
    stop_on_error: bool = False
    poll_interval_ms: int = 100


def _memory_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PollingConsumer:
    """Runs an endpoint over a pollable channel until a limit is reached."""

    def __init__(
        self,
        name: str,
        channel: PollableChannel,
        handle: Callable[[Message], Any],
        *,
        requeue: Callable[[Message], None] | None = None,
    ) -> None:
        self.name = name
        self.channel = channel
        self.handle = handle
        self._requeue = requeue or channel.send
        self._stopping = False

    def stop(self) -> None:
        """Ask the running loop to stop after the message in hand."""
        self._stopping = True

    def run(self, limits: ConsumerLimits) -> int:
        """Process messages; returns how many were handled.

        Without error handling configured, a failing message is put back on its channel and
        the error is raised: the consumer stops rather than lose or skip the message.
        """
        self._stopping = False
        handled = 0
        started = time.monotonic()
        while not self._stopping:
            if limits.handled_message_limit is not None and handled >= limits.handled_message_limit:
                break
            if limits.execution_time_limit_ms is not None and (
                (time.monotonic() - started) * 1000 >= limits.execution_time_limit_ms
            ):
                break
            if limits.memory_limit_mb is not None and _memory_mb() >= limits.memory_limit_mb:
                logger.warning(
                    "consumer %s stops: memory limit %s MB reached",
                    self.name,
                    limits.memory_limit_mb,
                )
                break
            message = self.channel.receive()
            if message is None:
                if limits.finish_when_no_messages:
                    break
                time.sleep(limits.poll_interval_ms / 1000)
                continue
            try:
                self.handle(message)
            except Exception:
                logger.exception(
                    "consumer %s: message %s failed; it stays on the channel", self.name, message.id
                )
                self._requeue(message)
                raise
            handled += 1
        return handled
