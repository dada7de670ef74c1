"""``ecopy run CONSUMER...``: run consumers of the application until their limits are reached.

    ecopy --app shop.app:system run orders
    ecopy --app shop.app:system run orders --finish-when-no-messages --handled-message-limit 100
    ecopy --app shop.app:system run orders emails --threads 4
    ecopy --app shop.app:system run orders --processes 2

Limits not given on the command line come from each consumer's ``PollingMetadata``, and apply
to each consumer loop. Several consumers, or ``--threads N``, run as loops in threads of this
process (``consumer_threads``); ``--processes N`` runs N worker processes, each loading the
application and running every consumer given, under this process as supervisor
(``worker_processes``). SIGTERM and Ctrl-C stop every loop after the message in hand; received
while the application is still loading, they stop it before it takes any message (exit status
0). While it runs, log records of level INFO and above go to stderr, so the warnings and
errors of failing handlers are seen.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from typing import Any

import click

from ecopy.cli.app_loading import ApplicationReference, pass_application
from ecopy.cli.consumer_threads import ConsumerThreads, RunLimits, RunOutcome
from ecopy.cli.stderr_logging import WORKER_LOG_FORMAT, logging_to_stderr
from ecopy.cli.stopping import StopSignals, stop_signals
from ecopy.cli.worker_processes import Supervisor, WorkerSpec
from ecopy.config.system import MessagingSystem
from ecopy.messaging.channel import InMemoryQueue
from ecopy.messaging.consumer import ConsumerLimitError, PollingConsumer

logger = logging.getLogger("ecopy.cli")


@click.command("run")
@click.argument("consumers", metavar="CONSUMER...", nargs=-1, required=True)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Run N worker processes, each loading the application and running every CONSUMER "
    "(for CPU-bound handlers; the channels must be database or broker channels). A worker that "
    "dies is replaced.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Run each CONSUMER in N threads in each process (for I/O-bound handlers).",
)
@click.option(
    "--handled-message-limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="Each consumer loop stops after handling N messages (failed ones count).",
)
@click.option(
    "--execution-time-limit-ms",
    type=click.IntRange(min=1),
    metavar="N",
    help="Each consumer loop stops after running N milliseconds.",
)
@click.option(
    "--memory-limit-mb",
    type=click.IntRange(min=1),
    metavar="N",
    help="Each consumer loop stops once its process has used N megabytes of memory.",
)
@click.option(
    "--stop-on-error",
    is_flag=True,
    help="Each consumer loop stops after the first message that fails.",
)
@click.option(
    "--finish-when-no-messages",
    is_flag=True,
    help="Each consumer loop stops as soon as its channel has no message due, instead of "
    "waiting for more.",
)
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors.")
@pass_application
def run_command(
    application: ApplicationReference,
    /,
    consumers: tuple[str, ...],
    processes: int,
    threads: int,
    quiet: bool,
    **limits: Any,
) -> None:
    """Run the consumers CONSUMER... until their limits are reached, then print how many
    messages each handled.

    `ecopy list` shows the consumers. Without limits they run until stopped: SIGTERM or Ctrl-C
    stop every consumer loop after the message in hand. The limits apply to each consumer loop
    (each thread of each worker process). Log records (INFO and above, or only warnings and
    errors with --quiet) go to stderr unless the application configures logging itself.
    """
    run_limits = RunLimits(**limits)
    level = logging.WARNING if quiet else logging.INFO
    with stop_signals() as stop:
        system = application.load()
        check_consumers(system, consumers)
        check_copies(system, consumers, processes=processes, threads=threads)
        outcome: RunOutcome | None
        if processes > 1:
            system.close()  # the workers load the application themselves (worker_processes)
            spec = WorkerSpec(application.reference or "", consumers, threads, run_limits, level)
            outcome = _supervise(Supervisor(spec, processes), stop, spec, processes)
        elif len(consumers) == 1 and threads == 1:
            outcome = _run_here(system, consumers[0], stop, level, run_limits)
        else:
            runner = ConsumerThreads(system, consumers, threads=threads, limits=run_limits)
            outcome = _run_in_threads(runner, stop, consumers, threads, level)
    if outcome is None:
        for consumer in consumers:
            click.echo(f"Consumer {consumer} stopped before handling any message.")
        return
    for consumer, handled in outcome.handled.items():
        noun = "message" if handled == 1 else "messages"
        click.echo(f"Consumer {consumer} stopped after handling {handled} {noun}.")
    if outcome.errors:
        raise click.ClickException("\n".join(outcome.errors))


def _run_here(
    system: MessagingSystem, consumer: str, stop: StopSignals, level: int, limits: RunLimits
) -> RunOutcome | None:
    """One consumer in this thread: ``app.run``, with its signal handling; ``None`` when a
    signal came while the application was loading."""
    if stop.stop_on_signal(system._consumer(consumer)):
        return None
    with logging_to_stderr(level):
        logger.info("consumer %s running; SIGTERM or Ctrl-C stops it", consumer)
        try:
            handled = system.run(consumer, **vars(limits))
        except ConsumerLimitError as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:
            # A consumer without error handling stops on a failed message; the traceback goes
            # to the log, the one-line reason to the user.
            logger.error("consumer %s stopped by an error", consumer, exc_info=True)
            raise click.ClickException(
                f"Consumer {consumer!r} stopped: {type(error).__name__}: {error}"
            ) from None
    return RunOutcome({consumer: handled})


def _run_in_threads(
    runner: ConsumerThreads,
    stop: StopSignals,
    consumers: Sequence[str],
    threads: int,
    level: int,
) -> RunOutcome | None:
    if stop.stop_on_signal(runner):
        return None
    with logging_to_stderr(level):
        logger.info(
            "consumers %s running in %s; SIGTERM or Ctrl-C stops them",
            ", ".join(consumers),
            _threads(threads, "each"),
        )
        return runner.run()


def _supervise(
    supervisor: Supervisor, stop: StopSignals, spec: WorkerSpec, processes: int
) -> RunOutcome | None:
    if stop.stop_on_signal(supervisor):
        return None
    with logging_to_stderr(spec.log_level, WORKER_LOG_FORMAT):
        logger.info(
            "%d worker processes running %s in %s; SIGTERM or Ctrl-C stops them after the "
            "messages in hand",
            processes,
            ", ".join(spec.consumers),
            _threads(spec.threads, "each"),
        )
        outcome = supervisor.run()
        if outcome.unreported:
            logger.warning(
                "the totals below leave out what %d worker process%s that died had handled",
                outcome.unreported,
                "" if outcome.unreported == 1 else "es",
            )
    return outcome


def _threads(count: int, suffix: str) -> str:
    return f"{count} thread{'' if count == 1 else 's'} {suffix}"


def check_consumers(system: MessagingSystem, names: Sequence[str]) -> None:
    """A usage error (exit status 2) naming the known consumers unless every one of ``names``
    is one, and given once."""
    known = [info.name for info in system.list_consumers()]
    unknown = [name for name in names if name not in known]
    if unknown and not known:
        raise click.UsageError(
            f"Unknown consumer {unknown[0]!r}: the application has no consumers. A consumer "
            f"polls a channel such as QueueChannel('orders') for the handlers marked "
            f"@asynchronous('orders')."
        )
    if unknown:
        what = "consumer" if len(unknown) == 1 else "consumers"
        suggestions = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                for_name = f" for {name!r}" if len(unknown) > 1 else ""
                suggestions.append(f" Did you mean {close[0]!r}{for_name}?")
        raise click.UsageError(
            f"Unknown {what} {', '.join(repr(name) for name in unknown)}."
            f"{''.join(suggestions)} Known consumers: {', '.join(known)} "
            f"(`ecopy list` shows what each one handles)."
        )
    for position, name in enumerate(names):
        if name in names[:position]:
            raise click.UsageError(
                f"Consumer {name!r} is given twice; to run it in several loops, give it once "
                f"with --threads N (or --processes N)."
            )


def check_copies(
    system: MessagingSystem, names: Sequence[str], *, processes: int, threads: int
) -> None:
    """A usage error unless every one of ``names`` can run in ``processes`` processes of
    ``threads`` loops each."""
    if processes == 1 and threads == 1:
        return
    for name in names:
        consumer = system._consumer(name)
        if not isinstance(consumer, PollingConsumer):
            raise click.UsageError(
                f"Consumer {name!r} is not a channel consumer (a @scheduled method, say): each "
                f"copy would run it on its own schedule. Run it without --processes and "
                f"--threads, in a command of its own: ecopy run {name}"
            )
        channel = consumer.channel
        if processes > 1 and isinstance(channel, InMemoryQueue):
            raise click.UsageError(
                f"Consumer {name!r} reads the in-memory channel {channel.name!r}, so each of "
                f"the {processes} worker processes would have a queue of its own, holding only "
                f"what that process sent. Declare the channel as a database channel "
                f"(DbalChannel({channel.name!r})) or a broker channel to share it between "
                f"processes, or run the consumer in threads of one process (--threads N)."
            )
