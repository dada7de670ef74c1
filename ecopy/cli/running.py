"""``ecopy run CONSUMER``: run one consumer of the application until a limit is reached.

    ecopy --app shop.app:system run orders
    ecopy --app shop.app:system run orders --finish-when-no-messages --handled-message-limit 100

Limits not given on the command line come from the consumer's ``PollingMetadata``. SIGTERM and
Ctrl-C stop the consumer after the message in hand; received while the application is still
loading, they stop it before it takes any message (exit status 0). While it runs, log records
of level INFO and above go to stderr, so the warnings and errors of failing handlers are seen.
"""

from __future__ import annotations

import difflib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ecopy.cli.app_loading import ApplicationReference, pass_application
from ecopy.config.system import MessagingSystem
from ecopy.messaging.consumer import Consumer, ConsumerLimitError

logger = logging.getLogger("ecopy.cli")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@click.command("run")
@click.argument("consumer")
@click.option(
    "--handled-message-limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop after handling N messages (failed ones count).",
)
@click.option(
    "--execution-time-limit-ms",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop after running N milliseconds.",
)
@click.option(
    "--memory-limit-mb",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop once the process has used N megabytes of memory.",
)
@click.option("--stop-on-error", is_flag=True, help="Stop after the first message that fails.")
@click.option(
    "--finish-when-no-messages",
    is_flag=True,
    help="Stop as soon as the channel has no message due, instead of waiting for more.",
)
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors.")
@pass_application
def run_command(
    application: ApplicationReference,
    consumer: str,
    handled_message_limit: int | None,
    execution_time_limit_ms: int | None,
    memory_limit_mb: int | None,
    stop_on_error: bool,
    finish_when_no_messages: bool,
    quiet: bool,
) -> None:
    """Run the consumer CONSUMER until a limit is reached, then print how many messages it
    handled.

    `ecopy list` shows the consumers. Without limits the consumer runs until stopped: SIGTERM
    or Ctrl-C stop it after the message in hand. Log records (INFO and above, or only
    warnings and errors with --quiet) go to stderr unless the application configures logging
    itself.
    """
    with stop_signals() as stop:
        system = application.load()
        check_consumer(system, consumer)
        if stop.consumer(system._consumer(consumer)):
            click.echo(f"Consumer {consumer} stopped before handling any message.")
            return
        handled = _run(
            system,
            consumer,
            quiet=quiet,
            handled_message_limit=handled_message_limit,
            execution_time_limit_ms=execution_time_limit_ms,
            memory_limit_mb=memory_limit_mb,
            stop_on_error=stop_on_error,
            finish_when_no_messages=finish_when_no_messages,
        )
    noun = "message" if handled == 1 else "messages"
    click.echo(f"Consumer {consumer} stopped after handling {handled} {noun}.")


def _run(system: MessagingSystem, consumer: str, *, quiet: bool, **limits: Any) -> int:
    with logging_to_stderr(logging.WARNING if quiet else logging.INFO):
        logger.info("consumer %s running; SIGTERM or Ctrl-C stops it", consumer)
        try:
            return system.run(consumer, **limits)
        except ConsumerLimitError as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:
            # A consumer without error handling stops on a failed message; the traceback goes
            # to the log, the one-line reason to the user.
            logger.error("consumer %s stopped by an error", consumer, exc_info=True)
            raise click.ClickException(
                f"Consumer {consumer!r} stopped: {type(error).__name__}: {error}"
            ) from None


class _StopSignals:
    """SIGTERM and SIGINT received before the consumer runs: while the application loads,
    they are remembered instead of killing the process, and the consumer then does not
    start. Once it runs, ``MessagingSystem.run`` handles them itself."""

    def __init__(self) -> None:
        self.received = False
        self._consumer: Consumer | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = True
        if self._consumer is not None:
            self._consumer.stop()

    def consumer(self, consumer: Consumer) -> bool:
        """From now on a signal stops ``consumer``; whether one came already."""
        self._consumer = consumer
        return self.received


@contextmanager
def stop_signals() -> Iterator[_StopSignals]:
    stop = _StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_consumer(system: MessagingSystem, name: str) -> None:
    """A usage error (exit status 2) with the known consumer names unless ``name`` is one."""
    known = [info.name for info in system.list_consumers()]
    if name in known:
        return
    if not known:
        raise click.UsageError(
            f"Unknown consumer {name!r}: the application has no consumers. A consumer polls a "
            f"channel such as QueueChannel('orders') for the handlers marked "
            f"@asynchronous('orders')."
        )
    close = difflib.get_close_matches(name, known, n=1)
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    raise click.UsageError(
        f"Unknown consumer {name!r}.{suggestion} Known consumers: {', '.join(known)} "
        f"(`ecopy list` shows what each one handles)."
    )


@contextmanager
def logging_to_stderr(level: int) -> Iterator[None]:
    """Send log records of ``level`` and above to stderr while the block runs.

    Nothing changes when the application already logs to the terminal itself (for instance it
    called ``logging.basicConfig``), so no line is printed twice.
    """
    root = logging.getLogger()
    if any(_writes_to_terminal(handler) for handler in root.handlers):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(level)
    previous_level = root.level
    root.addHandler(handler)
    if root.level > level:  # NOTSET (0) on the root logger already lets everything through
        root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    terminal = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    return isinstance(handler, logging.StreamHandler) and any(
        handler.stream is stream for stream in terminal
    )
