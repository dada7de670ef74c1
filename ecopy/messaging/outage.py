"""Riding out an outage: how long a consumer pauses while its database or broker is away, and
the few log lines that say so.

A consumer never stops because what it depends on went away. It pauses with a growing,
jittered back-off (tenacity's exponential wait, from 0.1 s up to 5 s) and tries
again, for as long as the outage lasts. The log gets one line when the trouble starts, one
every 30 seconds while it lasts, and one when it is over, instead of a traceback per attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import tenacity

from ecopy.messaging.retry import wait_seconds

logger = logging.getLogger("ecopy.consumer")

FIRST_PAUSE_S = 0.1
LONGEST_PAUSE_S = 5.0
REPORT_EVERY_S = 30.0

#: Tells whether an error is the infrastructure's (a lost connection, a deadlock, a broker
#: that went away) rather than the message's: the same work may succeed when tried again.
TransientErrors = Callable[[BaseException], bool]


def never(_error: BaseException) -> bool:
    return False


def caused_by(error: BaseException, transient: TransientErrors) -> bool:
    """Whether ``error``, or an error it was raised from or while handling, is transient
    (a handler may wrap the database's error in one of its own)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if transient(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe(error: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters: drivers' messages run to
    several lines of context that a log line per attempt does not need."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text if len(text) <= 200 else text[:199] + "…"


class Outage:
    """The back-off of one consumer while something it needs keeps failing."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.since: float | None = None
        self.attempts = 0
        self._reported_at = 0.0
        self._wait = tenacity.wait_exponential(
            multiplier=FIRST_PAUSE_S, max=LONGEST_PAUSE_S
        ) + tenacity.wait_random(0, FIRST_PAUSE_S)

    def failed(self, error: BaseException, what: str = "") -> float:
        """Note a failure; returns how long to pause before trying again."""
        now = time.monotonic()
        self.attempts += 1
        pause = min(wait_seconds(self._wait, self.attempts), LONGEST_PAUSE_S)
        context = f"{what}: " if what else ""
        if self.since is None:
            self.since = self._reported_at = now
            logger.warning(
                "consumer %s: %s%s; trying again in %.1f s, for as long as it takes",
                self.consumer,
                context,
                describe(error),
                pause,
            )
        elif now - self._reported_at >= REPORT_EVERY_S:
            self._reported_at = now
            logger.warning(
                "consumer %s: still failing after %.0f s (%d attempts): %s%s",
                self.consumer,
                now - self.since,
                self.attempts,
                context,
                describe(error),
            )
        return pause

    def recovered(self) -> None:
        if self.since is None:
            return
        logger.warning(
            "consumer %s: working again after %.1f s (%d failed attempts)",
            self.consumer,
            time.monotonic() - self.since,
            self.attempts,
        )
        self.since = None
        self.attempts = 0
