"""The installed ``ecopy`` script."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from ecopy.cli.main import main


def ecopy_command() -> list[str]:
    """The ``ecopy`` script installed next to the interpreter, or ``python -m`` as a fallback."""
    script = Path(sys.executable).with_name("ecopy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ecopy.cli.main"]


def test_the_console_script_points_at_main() -> None:
    (script,) = entry_points(group="console_scripts", name="ecopy")

    assert script.load() is main


def test_the_ecopy_command_runs(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*ecopy_command(), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "Usage: ecopy [OPTIONS] COMMAND" in completed.stdout
    assert "graph" in completed.stdout
    assert "list" in completed.stdout
