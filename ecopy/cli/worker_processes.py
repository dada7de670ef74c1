"""``ecopy run CONSUMER... --processes N``: N worker processes under a supervising parent.

Each worker process loads the application and runs every consumer given, each in ``--threads``
loops (``ConsumerThreads``), until its limits are reached or it is stopped.

**Start method: spawn.** Each worker is a fresh interpreter that imports and bootstraps the
application itself; it inherits only the environment, the working directory and ``sys.path``.
The parent loads the application once too, to check the names and channels given (a usage
error must come before any worker starts), and closes it before the workers start. Forking
was ruled out. Forking after that load would give every worker copies of the parent's
database engine and its pooled connections (two processes talking over one socket), and of the
locks and background threads of its channels (a database queue's claim renewal): the threads
do not exist in the child, and a lock one of them held stays held for ever. Forking before the
load would leave the parent unable to check the command line. A fresh interpreter also starts
with its own memory figures, so ``--memory-limit-mb`` measures the worker alone. Spawning costs
an interpreter start and an application load per worker, at start and at each restart, never
per message. (forkserver would save part of that on Linux only.)

**Supervision.**

* SIGTERM and SIGINT to the parent are passed on to every worker as SIGTERM; each worker
  finishes the message in hand in each of its loops and exits, and the command ends with
  status 0.
* A worker that dies otherwise — killed (SIGKILL, the kernel's OOM killer), crashed, or unable
  to load the application — is logged and replaced after a back-off (0.5 s, doubling up to
  30 s; back to 0.5 s once a worker has lived 30 s), unless the command is stopping. What it
  held is not lost: a database queue delivers its claimed messages again after their
  visibility timeout.
* A worker whose consumer was stopped by an error stops the command: the other workers finish
  their message in hand, and the command exits with status 1. So does a worker that dies
  while the command is stopping.
* A worker that reached its limits ends and is not replaced; SIGTERM sent to one worker only
  stops that worker. The command ends when every worker has ended.
* Each worker watches its parent: if the parent dies, the worker stops after the messages in
  hand instead of running on unsupervised.

Each worker reports the messages it handled, per consumer, through a pipe of its own, as JSON.
A worker that dies cannot report: what it handled is missing from the totals (a warning says
so).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ecopy.cli.app_loading import AppLoadingError, load_system
from ecopy.cli.consumer_threads import ConsumerThreads, RunLimits, RunOutcome
from ecopy.cli.stderr_logging import WORKER_LOG_FORMAT, logging_to_stderr
from ecopy.cli.stopping import StopSignals, stop_signals

logger = logging.getLogger("ecopy.cli.supervisor")
worker_logger = logging.getLogger("ecopy.cli.worker")

FIRST_RESTART_S = 0.5
"""How long a dead worker's replacement waits; doubled at each death in a row."""
LONGEST_RESTART_S = 30.0
"""The longest wait before a replacement; a worker that lived this long resets the back-off."""


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker process runs; the spawn start method sends it to the worker."""

    app: str
    consumers: tuple[str, ...]
    threads: int
    limits: RunLimits
    log_level: int


# -- the worker process -----------------------------------------------------------------------


def work(spec: WorkerSpec, report: Connection) -> None:
    """The body of a worker process: load the application, run the consumers, report."""
    with stop_signals() as stop, logging_to_stderr(spec.log_level, WORKER_LOG_FORMAT):
        _watch_parent(stop)
        try:
            system = load_system(spec.app)
        except AppLoadingError as error:
            _send(report, {"cannot_start": error.message})
            sys.exit(1)
        try:
            runner = ConsumerThreads(
                system, spec.consumers, threads=spec.threads, limits=spec.limits
            )
            if stop.stop_on_signal(runner):
                outcome = RunOutcome({name: 0 for name in spec.consumers})
            else:
                worker_logger.info(
                    "running %s in %d thread%s",
                    ", ".join(spec.consumers),
                    spec.threads,
                    "" if spec.threads == 1 else "s",
                )
                outcome = runner.run()
        finally:
            system.close()
        worker_logger.info("stopped after handling %s", _counts(outcome.handled))
    _send(report, {"handled": outcome.handled, "errors": outcome.errors})
    if outcome.errors:
        sys.exit(1)


def _send(report: Connection, content: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
        report.send_bytes(json.dumps(content).encode())


def _counts(handled: dict[str, int]) -> str:
    return ", ".join(
        f"{count} message{'' if count == 1 else 's'} of {name}" for name, count in handled.items()
    )


def _watch_parent(stop: StopSignals) -> None:
    """Stop after the messages in hand if the supervising process dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        worker_logger.warning(
            "the supervising process (pid %s) is gone; stopping after the messages in hand",
            parent.pid,
        )
        stop.request()

    threading.Thread(target=watch, name="ecopy-parent-watch", daemon=True).start()


# -- the supervising parent -------------------------------------------------------------------


@dataclass
class _Worker:
    """One of the N worker places: the process filling it, and its restarts."""

    number: int
    process: BaseProcess | None = None
    report: Connection | None = None
    started_at: float = 0.0
    deaths_in_a_row: int = 0
    restart_at: float | None = None
    ended: bool = False

    @property
    def name(self) -> str:
        return f"worker-{self.number}"


class Supervisor:
    """Starts ``processes`` workers running ``spec``, passes the stop signals on to them and
    replaces those that die; ``run`` returns once every worker has ended."""

    def __init__(self, spec: WorkerSpec, processes: int) -> None:
        self._spec = spec
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(number) for number in range(1, processes + 1)]
        self._outcome = RunOutcome({name: 0 for name in spec.consumers})
        self._stop_requests = 0
        self._stops_passed_on = 0
        # While ``run`` runs, a stop request writes a byte to this pipe, which wakes the
        # supervision loop at once: (read end, write end).
        self._wake_up: tuple[int, int] | None = None

    def stop(self) -> None:
        """Stop every worker after its messages in hand; safe in a signal handler."""
        self._stop_requests += 1
        wake_up = self._wake_up
        if wake_up is not None:
            with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending
                os.write(wake_up[1], b"\0")

    @property
    def stopping(self) -> bool:
        return self._stop_requests > 0

    def run(self) -> RunOutcome:
        wake_up = os.pipe()
        for end in wake_up:
            os.set_blocking(end, False)
        self._wake_up = wake_up
        try:
            for worker in self._workers:
                if self.stopping:  # a signal came before all had started
                    worker.ended = True
                else:
                    self._start(worker)
            while True:
                for worker in self._workers:
                    self._look_after(worker)
                if all(worker.ended for worker in self._workers):
                    return self._outcome
                self._pass_stop_on()
                self._wait(wake_up[0])
        except BaseException:
            self._abandon()
            raise
        finally:
            self._wake_up = None
            for end in wake_up:
                os.close(end)

    def _look_after(self, worker: _Worker) -> None:
        if worker.process is not None and worker.process.exitcode is not None:
            self._ended(worker)
        if worker.restart_at is None:
            return
        if self.stopping:
            worker.restart_at = None
            worker.ended = True
        elif worker.restart_at <= time.monotonic():
            self._start(worker)

    def _start(self, worker: _Worker) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(target=work, args=(self._spec, writer), name=worker.name)
        with _deaf_to_ctrl_c():
            process.start()
        writer.close()  # the worker holds its own end
        worker.process, worker.report = process, reader
        worker.started_at, worker.restart_at = time.monotonic(), None
        logger.info("%s started (pid %s)", worker.name, process.pid)

    def _pass_stop_on(self) -> None:
        if self._stops_passed_on == self._stop_requests:
            return
        self._stops_passed_on = self._stop_requests
        for worker in self._workers:
            if worker.process is not None and worker.process.pid is not None:
                # One that has just ended is seen at the next turn of the loop.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)

    def _wait(self, wake_up: int) -> None:
        handles: list[Any] = [wake_up]
        handles.extend(w.process.sentinel for w in self._workers if w.process is not None)
        restarts = [w.restart_at for w in self._workers if w.restart_at is not None]
        timeout = max(0.0, min(restarts) - time.monotonic()) if restarts else None
        multiprocessing.connection.wait(handles, timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_up, 512):
                pass

    def _ended(self, worker: _Worker) -> None:
        process, reader = worker.process, worker.report
        assert process is not None and reader is not None
        process.join()
        code, pid = process.exitcode, process.pid
        report = _read_report(reader)
        reader.close()
        process.close()
        worker.process = worker.report = None
        if report is not None and "handled" in report:
            for name, handled in report["handled"].items():
                self._outcome.handled[name] += handled
            worker.ended = True
            if report["errors"]:
                self._outcome.errors.extend(report["errors"])
                if not self.stopping:
                    logger.error(
                        "%s stopped by an error; the other workers stop after the message in hand",
                        worker.name,
                    )
                    self.stop()
            return
        if report is None:
            if self.stopping and code in (-signal.SIGTERM, -signal.SIGINT):
                # Stopped before ``work`` caught the signal: before it took any message.
                worker.ended = True
                return
            self._outcome.unreported += 1
        what = f"could not start: {report['cannot_start']}" if report else _death(code)
        if self.stopping:
            self._outcome.errors.append(f"{worker.name} {what} while the workers were stopping")
            worker.ended = True
            return
        lived = time.monotonic() - worker.started_at
        worker.deaths_in_a_row = 1 if lived >= LONGEST_RESTART_S else worker.deaths_in_a_row + 1
        delay = min(FIRST_RESTART_S * 2 ** (worker.deaths_in_a_row - 1), LONGEST_RESTART_S)
        worker.restart_at = time.monotonic() + delay
        logger.error(
            "%s (pid %s) %s; the messages it held are delivered again once their channel's "
            "visibility timeout has passed; a new %s starts in %.1f s",
            worker.name,
            pid,
            what,
            worker.name,
            delay,
        )

    def _abandon(self) -> None:
        """The supervisor itself failed: stop the workers, and wait for them."""
        for worker in self._workers:
            if worker.process is not None and worker.process.exitcode is None:
                worker.process.terminate()  # SIGTERM: after the message in hand
        for worker in self._workers:
            if worker.process is not None:
                worker.process.join()


@contextlib.contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """A worker process started in the block ignores SIGINT until ``work`` listens to it.

    Ctrl-C in a terminal reaches the whole process group, and would kill a worker still
    importing with a ``KeyboardInterrupt`` traceback; the supervisor passes the stop on as
    SIGTERM anyway. (A SIGINT to the supervisor in these few milliseconds is lost.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _read_report(reader: Connection) -> dict[str, Any] | None:
    try:
        if not reader.poll():
            return None
        report: dict[str, Any] = json.loads(reader.recv_bytes())
        return report
    except (EOFError, OSError, ValueError):
        return None


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code:
        return f"exited with status {code} (see its traceback above)"
    return "exited without reporting"
