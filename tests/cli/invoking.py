"""Running ``ecopy`` in-process for the CLI tests."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import CliRunner, Result

from ecopy.cli.main import cli

SAMPLE_APP = "tests.cli.sample_app:system"

Invoke = Callable[..., Result]


def invoke_ecopy(
    *args: str, env: dict[str, str | None] | None = None, input: str | None = None
) -> Result:
    """Run ``ecopy ARGS``, with ``input`` as what the user types; ``ECOPY_APP`` is unset
    unless ``env`` sets it, so the developer's shell cannot leak into a test."""
    environment: dict[str, str | None] = {"ECOPY_APP": None, **(env or {})}
    return CliRunner().invoke(cli, list(args), env=environment, prog_name="ecopy", input=input)
