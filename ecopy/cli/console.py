"""The rich console the commands print their tables to."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, RenderableType
from rich.measure import Measurement


def console_for(renderables: Sequence[RenderableType]) -> Console:
    """A console that, when output is piped, is wide enough to keep every row on one line,
    so ``ecopy ... | grep`` finds whole rows and ids are never cut."""
    console = Console()
    if console.is_terminal or not renderables:
        return console
    wide = Console(width=10_000)
    needed = max(Measurement.get(wide, wide.options, r).maximum for r in renderables)
    return Console(width=max(console.width, needed))
