"""Several consumer loops in one process: ``ecopy run orders emails --threads 4``.

Each consumer named runs in ``threads`` loops, each loop in a thread of its own. A loop is a
consumer object of its own: the consumer itself for the first, a replica
(``PollingConsumer.replica``) for each other, since one consumer object cannot run in two
threads at a time. The replicas share the channel, which hands every message to one loop: the
database queue claims rows (``SELECT ... FOR UPDATE SKIP LOCKED``, or SQLite's single writer),
the in-memory queue takes messages under a lock.

The limits apply to each loop: with ``--threads 4 --handled-message-limit 100`` each of the four
loops handles at most 100 messages. A consumer stopped by an error (no error handling, and the
``stop`` final-failure strategy) stops the others too, after the message each has in hand, so
that the command ends and says so instead of running on without it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ecopy.config.system import MessagingSystem
from ecopy.messaging.consumer import Consumer, ConsumerLimitError, ConsumerLimits, PollingConsumer

logger = logging.getLogger("ecopy.cli")


@dataclass(frozen=True, kw_only=True)
class RunLimits:
    """The limits given on the command line; the rest come from each consumer's
    ``PollingMetadata``. They apply to each consumer loop."""

    handled_message_limit: int | None = None
    execution_time_limit_ms: int | None = None
    memory_limit_mb: int | None = None
    stop_on_error: bool = False
    finish_when_no_messages: bool = False

    def of(self, system: MessagingSystem, consumer: str) -> ConsumerLimits:
        return system._limits(consumer, **asdict(self))


@dataclass
class RunOutcome:
    """How a run ended: messages handled by each consumer (in the order given), one line for
    each loop stopped by an error, and how many worker processes died without reporting what
    they handled (``--processes``)."""

    handled: dict[str, int]
    errors: list[str] = field(default_factory=list)
    unreported: int = 0


class ConsumerThreads:
    """Runs each of ``consumers`` in ``threads`` loops until every loop has stopped.

    ``stop()`` stops every loop after the message in hand; it only sets flags, so a signal
    handler may call it. With a single loop, it runs in the calling thread.
    """

    def __init__(
        self,
        system: MessagingSystem,
        consumers: Sequence[str],
        *,
        threads: int,
        limits: RunLimits,
    ) -> None:
        self._loops: list[tuple[str, Consumer, ConsumerLimits]] = []
        for name in consumers:
            consumer = system._consumer(name)
            consumer_limits = limits.of(system, name)
            for copy in range(threads):
                loop = consumer if copy == 0 else _replica(consumer)
                self._loops.append((name, loop, consumer_limits))
        self._outcome = RunOutcome({name: 0 for name in consumers})
        self._lock = threading.Lock()

    def stop(self) -> None:
        for _, consumer, _ in self._loops:
            consumer.stop()

    def run(self) -> RunOutcome:
        if len(self._loops) == 1:
            self._run_loop(*self._loops[0])
            return self._outcome
        threads = [
            threading.Thread(
                target=self._run_loop,
                args=loop,
                name=f"ecopy-{loop[0]}-{number}",
            )
            for number, loop in enumerate(self._loops, start=1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self._outcome

    def _run_loop(self, name: str, consumer: Consumer, limits: ConsumerLimits) -> None:
        try:
            handled = consumer.run(limits)
        except ConsumerLimitError as error:
            self._failed(str(error))
        except Exception as error:
            # The traceback goes to the log, the one-line reason to the user.
            logger.error("consumer %s stopped by an error", name, exc_info=True)
            self._failed(f"Consumer {name!r} stopped: {type(error).__name__}: {error}")
        else:
            with self._lock:
                self._outcome.handled[name] += handled

    def _failed(self, reason: str) -> None:
        with self._lock:
            self._outcome.errors.append(reason)
        if len(self._loops) > 1:
            logger.warning("stopping the other consumer loops after the message in hand")
            self.stop()


def _replica(consumer: Consumer) -> Consumer:
    if not isinstance(consumer, PollingConsumer):
        # ``ecopy run`` refuses this before it gets here (see ``check_copies``).
        raise TypeError(
            f"consumer {consumer.name!r} is not a channel consumer (a @scheduled method, say), "
            f"so it cannot run in several threads: each copy would run it on its own schedule"
        )
    return consumer.replica()
