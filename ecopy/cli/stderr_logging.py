"""Log records to stderr while ``ecopy run`` runs, so the warnings and errors of failing
handlers are seen."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
"""With ``--processes``: each line says which process wrote it (``MainProcess``, the
supervisor, or ``worker-N``)."""


@contextmanager
def logging_to_stderr(level: int, log_format: str = LOG_FORMAT) -> Iterator[None]:
    """Send log records of ``level`` and above to stderr while the block runs.

    Nothing changes when the application already logs to the terminal itself (for instance it
    called ``logging.basicConfig``), so no line is printed twice.
    """
    root = logging.getLogger()
    if any(_writes_to_terminal(handler) for handler in root.handlers):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format))
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
