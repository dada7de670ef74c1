"""Timing and reporting helpers shared by the benchmark scripts in this directory.

The scripts import this module as ``timing``. That works because Python puts the directory
of the script it runs (``benchmarks/``) first on ``sys.path``.

Method, the same for every script: each workload is warmed up, then timed ``repeats`` times
for ``calls`` operations with ``time.perf_counter_ns``. The repeats are interleaved
round-robin across workloads, so machine noise spreads evenly over the libraries. ``gc`` stays
enabled. A ``gc.collect()`` runs between timed repeats, never inside one.
"""

import argparse
import gc
import importlib.metadata
import importlib.util
import platform
import statistics
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

TABLE_COLUMNS = ("mean µs", "median µs", "min µs", "x ecopy")
W = TypeVar("W")
Library = tuple[str, Callable[[], list[W]], str]
"""(library name, builder of its workloads, hint printed when it is not importable)"""


class Timed(Protocol):
    """A workload that ``measure`` can time."""

    samples_ns: list[float]
    """Per-operation nanoseconds, one entry per timed repeat."""

    def execute(self, n: int) -> int:
        """Runs ``n`` operations and returns the elapsed nanoseconds of the operations only."""
        ...


@dataclass(frozen=True)
class Summary:
    """Mean, median and minimum of the per-operation averages of the timed repeats, in µs."""

    mean_us: float
    median_us: float
    min_us: float


def summarize(samples_ns: Sequence[float]) -> Summary:
    samples_us = [sample / 1000 for sample in samples_ns]
    return Summary(statistics.fmean(samples_us), statistics.median(samples_us), min(samples_us))


def expect(condition: bool, message: str) -> None:
    """An assertion that ``python -O`` cannot remove."""
    if not condition:
        raise AssertionError(message)


@dataclass
class Unavailable:
    library: str
    reason: str
    failed: bool
    """True when the library imported but its workloads could not be built or checked."""


def build_all(
    libraries: Sequence[Library[W]], check: Callable[[W], None]
) -> tuple[list[W], list[Unavailable]]:
    """Builds every library's workloads and runs ``check`` once on each, before any timing.

    A library that cannot be imported is skipped with a message. One that imports but fails to
    build or check is reported with its traceback, and the caller should exit non-zero.
    """
    workloads: list[W] = []
    unavailable: list[Unavailable] = []
    for library, build, hint in libraries:
        try:
            built = build()
            for workload in built:
                check(workload)
        except ImportError as exc:
            reason = f"not importable ({exc}); {hint}"
            unavailable.append(Unavailable(library, reason, failed=False))
            print(f"SKIPPED {library}: {reason}", file=sys.stderr)
            continue
        except Exception:
            unavailable.append(Unavailable(library, "failed to build or check", failed=True))
            print(f"FAILED {library}: workloads could not be built or checked:", file=sys.stderr)
            traceback.print_exc()
            continue
        workloads.extend(built)
    return workloads, unavailable


def warmup_calls(calls: int) -> int:
    return max(100, calls // 10)


def measure(workloads: Sequence[Timed], calls: int, repeats: int, warmup: int) -> None:
    """Warms every workload up, then times the repeats round-robin across workloads."""
    for workload in workloads:
        workload.execute(warmup)
    for repeat in range(repeats):
        for workload in workloads:
            gc.collect()
            elapsed = workload.execute(calls)
            workload.samples_ns.append(elapsed / calls)
        sys.stdout.flush()
        print(f"  repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)


def table_header(width: int) -> str:
    mean, median, minimum, ratio = TABLE_COLUMNS
    return f"{'workload':<{width}}  {mean:>9} {median:>10} {minimum:>9} {ratio:>8}"


def table_row(name: str, width: int, summary: Summary, ratio: float | None) -> str:
    shown = "n/a" if ratio is None else f"{ratio:.2f}"
    return (
        f"{name:<{width}}  {summary.mean_us:>9.3f} {summary.median_us:>10.3f} "
        f"{summary.min_us:>9.3f} {shown:>8}"
    )


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed (as a distribution)"


def imported_from(module: str) -> str:
    """Where ``import module`` resolves, without importing it (ecopy is often run from a tree)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return "not importable"
    return spec.origin


def python_description() -> str:
    implementation = platform.python_implementation()
    return f"Python {platform.python_version()} ({implementation}), {sys.platform}"


def parse_args(
    argv: list[str] | None,
    *,
    description: str,
    calls: int,
    repeats: int,
    quick_calls: int,
    quick_repeats: int,
    unit: str = "calls",
    extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """``--calls``, ``--repeats`` and ``--quick``, with the script's defaults filled in.

    ``extra_arguments``, when given, adds a script's own options to the parser; the script
    fills in and validates their values itself.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help=f"{unit} per timed repeat (default {calls}; {quick_calls} with --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed repeats (default {repeats}; {quick_repeats} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run in a few seconds; numbers are indicative only",
    )
    if extra_arguments is not None:
        extra_arguments(parser)
    args = parser.parse_args(argv)
    if args.calls is None:
        args.calls = quick_calls if args.quick else calls
    if args.repeats is None:
        args.repeats = quick_repeats if args.quick else repeats
    if args.calls < 1 or args.repeats < 1:
        parser.error("--calls and --repeats must be positive")
    return args


def ratio_line(label: str, ours: Summary, theirs: Summary) -> str:
    """``ours / theirs`` by median and by min, with the median as a fraction (1/N)."""
    by_median = ours.median_us / theirs.median_us
    by_min = ours.min_us / theirs.min_us
    return f"  {label}  {by_median:6.3f} median  {by_min:6.3f} min  (1/{1 / by_median:.1f})"


def report_unavailable(unavailable: Sequence[Unavailable]) -> int:
    """Print why libraries were skipped; the exit status: 2 if one failed to build, else 0.

    A missed target is a result, not an error; a library that failed to build is an error."""
    for missing in unavailable:
        print(f"{missing.library}: {missing.reason}")
    return 2 if any(missing.failed for missing in unavailable) else 0
