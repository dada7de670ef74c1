"""SIGTERM stops a consumer after the message in hand (DESIGN §3.6), in a real process."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 15


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's output lines, read in a thread so the test can wait with a deadline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for(lines: queue.Queue[str | None], expected: str) -> list[str]:
    seen: list[str] = []
    while True:
        line = lines.get(timeout=DEADLINE_SECONDS)
        if line is None:
            pytest.fail(f"the consumer exited before printing {expected!r}; it printed {seen}")
        seen.append(line)
        if line == expected:
            return seen


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")
def test_sigterm_lets_the_consumer_finish_the_message_in_hand_then_exit(tmp_path):
    release = tmp_path / "release"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.asynchronous.slow_app", str(release)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        lines = lines_of(process)
        wait_for(lines, "started 1")

        process.send_signal(signal.SIGTERM)
        release.touch()  # the handler finishes only after the signal arrived

        rest = wait_for(lines, "stopped after 1")
        assert process.wait(timeout=DEADLINE_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read() if process.stderr else ""

    assert rest == ["finished 1", "stopped after 1"], stderr
    assert "started 2" not in rest
