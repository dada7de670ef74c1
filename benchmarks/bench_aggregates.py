"""Per-operation cost of event-sourced aggregates: ecopy vs eventsourcing, in one run.

Run from the repository root with the benchmark venv (see benchmarks/README.md)::

    .venv-bench/bin/python benchmarks/bench_aggregates.py            # full run
    .venv-bench/bin/python benchmarks/bench_aggregates.py --quick    # smoke run

Both libraries model the same bank account and use their in-memory persistence:

* **create + save**: open a new account (one "opened" event) and save it.
* **load + command + save**: load an account that already has ``PRIOR_EVENTS`` events, deposit
  once (one new event) and save it. The rows marked *snapshots every 5* measure the same
  workload with snapshots enabled in both libraries.

ecopy goes through its command bus, as its users do: ``app.command_bus.send(OpenAccount(...))``
and ``app.command_bus.send(Deposit(...))``. eventsourcing uses an idiomatic ``Application``
subclass whose methods create or get an ``Aggregate`` with ``@event`` methods and call
``app.save(...)``, with the default in-memory POPO persistence.

Method: see ``timing.py``. In addition, every timed repeat runs against a fresh application.
Its accounts are created, and for the load workload given their prior events, before the
clock starts. A ``gc.collect()`` follows that preparation. The run therefore never measures
a store that has grown with the previous repeats. After every repeat the script checks the
number of stored events and the state of the first and last account it touched. Before timing,
it checks that the libraries end in the same state (balance, version, snapshot).
"""

import gc
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Annotated, Any
from uuid import UUID

from timing import (
    Library,
    build_all,
    expect,
    imported_from,
    measure,
    parse_args,
    python_description,
    ratio_line,
    report_unavailable,
    summarize,
    table_header,
    table_row,
    version_of,
    warmup_calls,
)

CREATE = "create + save"
LOAD = "load + command + save"
PRIOR_EVENTS = 10
"""Events an account has before the timed load + command + save: opened, then deposits."""
AMOUNT = 10
SNAPSHOT_EVERY = 5
SNAPSHOTS = f"snapshots every {SNAPSHOT_EVERY}"
DEFAULT_CALLS = 2_000
DEFAULT_REPEATS = 7
QUICK_CALLS = 200
QUICK_REPEATS = 3
POPO_ENV = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
"""eventsourcing's default persistence, set explicitly so that the environment cannot change it."""


# --------------------------------------------------------------------------------------------
# ecopy messages (eventsourcing derives its events from the decorated methods)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenAccount:
    account_id: str


@dataclass(frozen=True)
class Deposit:
    account_id: str
    amount: int


@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@dataclass(frozen=True)
class MoneyDeposited:
    account_id: str
    amount: int


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountState:
    balance: int
    version: int
    snapshot_version: int | None
    """Version of the account's latest snapshot; ``None`` when there is none."""


@dataclass
class Trial:
    """One timed repeat: a fresh application, prepared for ``n`` operations."""

    run: Callable[[], int]
    """Performs the ``n`` operations and returns their elapsed nanoseconds."""
    state: Callable[[int], AccountState]
    """The stored state of the ``i``-th account the operations touched."""
    events_stored: Callable[[], int]
    """Events in the application's store, the prepared ones included."""


@dataclass
class Workload:
    library: str
    kind: str
    prepare: Callable[[int], Trial]
    variant: str = ""
    """Non-default configuration of the same workload, shown in the name."""
    checked: AccountState | None = None
    """The state after the one operation performed before timing."""
    samples_ns: list[float] = field(default_factory=list)
    """Per-operation nanoseconds, one entry per timed repeat."""

    @property
    def name(self) -> str:
        name = f"{self.library} {self.kind}"
        return f"{name} ({self.variant})" if self.variant else name

    def execute(self, n: int) -> int:
        trial = self.prepare(n)
        gc.collect()
        elapsed = trial.run()
        verify(self, trial, n)
        return elapsed

    def check_once(self) -> None:
        trial = self.prepare(1)
        trial.run()
        verify(self, trial, 1)
        self.checked = trial.state(0)


def expected_state(workload: Workload) -> AccountState:
    snapshot = None
    if workload.variant == SNAPSHOTS:
        snapshot = PRIOR_EVENTS // SNAPSHOT_EVERY * SNAPSHOT_EVERY
    if workload.kind == CREATE:
        return AccountState(balance=0, version=1, snapshot_version=snapshot)
    return AccountState(
        balance=PRIOR_EVENTS * AMOUNT, version=PRIOR_EVENTS + 1, snapshot_version=snapshot
    )


def verify(workload: Workload, trial: Trial, n: int) -> None:
    """Checks the outcome of ``n`` operations; raises when the workload did not do its work."""
    per_account = 1 if workload.kind == CREATE else PRIOR_EVENTS + 1
    stored = trial.events_stored()
    expect(
        stored == n * per_account,
        f"{workload.name}: {stored} events stored after {n} operations, expected {n * per_account}",
    )
    expected = expected_state(workload)
    for index in sorted({0, n - 1}):
        state = trial.state(index)
        expect(
            state == expected,
            f"{workload.name}: account #{index} ended as {state}, expected {expected}",
        )


def verify_equivalence(workloads: Sequence[Workload]) -> None:
    """The two libraries must end the same operation in the same state."""
    for workload in workloads:
        for other in workloads:
            if (other.kind, other.variant) != (workload.kind, workload.variant):
                continue
            expect(
                workload.checked == other.checked,
                f"{workload.name} ended as {workload.checked}, but {other.name} ended as "
                f"{other.checked}",
            )


def account_ids(n: int) -> list[str]:
    return [f"acc-{index}" for index in range(n)]


# --------------------------------------------------------------------------------------------
# ecopy
# --------------------------------------------------------------------------------------------


def ecopy_account(snapshot_every: int | None) -> type[Any]:
    """The account aggregate; ``snapshot_every`` as in ``@event_sourcing_aggregate``."""
    from ecopy import Identifier, command_handler, event_sourcing_aggregate, event_sourcing_handler

    class Account:
        account_id: Annotated[str, Identifier]

        def __init__(self) -> None:
            self.balance = 0

        @command_handler
        @staticmethod
        def open(command: OpenAccount) -> list[object]:
            return [AccountOpened(command.account_id)]

        @command_handler
        def deposit(self, command: Deposit) -> list[object]:
            return [MoneyDeposited(self.account_id, command.amount)]

        @event_sourcing_handler
        def on_opened(self, event: AccountOpened) -> None:
            self.account_id = event.account_id

        @event_sourcing_handler
        def on_deposited(self, event: MoneyDeposited) -> None:
            self.balance += event.amount

    if snapshot_every is None:
        return event_sourcing_aggregate(Account)
    return event_sourcing_aggregate(snapshot_every=snapshot_every)(Account)


def ecopy_workload(kind: str, snapshot_every: int | None = None) -> Workload:
    import ecopy
    from ecopy import InMemoryEventStore, InMemorySnapshotStore

    account_class = ecopy_account(snapshot_every)

    def prepare(n: int) -> Trial:
        # ecopy's defaults, passed in so that the checks can read them through their public API.
        events = InMemoryEventStore()
        snapshots = InMemorySnapshotStore()
        app = ecopy.bootstrap(classes=[account_class], services=[events, snapshots])
        ids = account_ids(n)
        results: list[object] = []
        if kind == LOAD:
            for account_id in ids:
                app.command_bus.send(OpenAccount(account_id))
            for _ in range(PRIOR_EVENTS - 1):
                for account_id in ids:
                    app.command_bus.send(Deposit(account_id, AMOUNT))

        def run_create() -> int:
            start = perf_counter_ns()
            for account_id in ids:
                results.append(app.command_bus.send(OpenAccount(account_id)))
            return perf_counter_ns() - start

        def run_load() -> int:
            start = perf_counter_ns()
            for account_id in ids:
                results.append(app.command_bus.send(Deposit(account_id, AMOUNT)))
            return perf_counter_ns() - start

        def state(index: int) -> AccountState:
            account_id = ids[index]
            expected_result = account_id if kind == CREATE else None
            expect(
                results[index] == expected_result,
                f"ecopy {kind}: send returned {results[index]!r}, expected {expected_result!r}",
            )
            account = app.aggregates.find(account_class, account_id)
            expect(account is not None, f"ecopy: account {account_id!r} not found")
            (stream,) = events.streams()
            stored = events.load(stream, account_id)
            snapshot = snapshots.load(stream, account_id)
            return AccountState(
                balance=account.balance,
                version=stored[-1].version if stored else 0,
                snapshot_version=None if snapshot is None else snapshot.version,
            )

        def events_stored() -> int:
            return len(events.read_all(0, limit=len(ids) * (PRIOR_EVENTS + 1) + 1))

        return Trial(run_create if kind == CREATE else run_load, state, events_stored)

    return Workload("ecopy", kind, prepare, SNAPSHOTS if snapshot_every else "")


def build_ecopy() -> list[Workload]:
    return [
        ecopy_workload(CREATE),
        ecopy_workload(LOAD),
        ecopy_workload(LOAD, snapshot_every=SNAPSHOT_EVERY),
    ]


# --------------------------------------------------------------------------------------------
# eventsourcing (Application + Aggregate with @event methods, in-memory POPO persistence)
# --------------------------------------------------------------------------------------------


def build_eventsourcing() -> list[Workload]:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Account(Aggregate):
        @event("Opened")
        def __init__(self, account_id: str) -> None:
            self.account_id = account_id
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int) -> None:
            self.balance += amount

    class Bank(Application[UUID]):
        def open_account(self, account_id: str) -> UUID:
            account = Account(account_id)
            self.save(account)
            return account.id

        def deposit(self, aggregate_id: UUID, amount: int) -> None:
            account: Account = self.repository.get(aggregate_id)
            account.deposit(amount)
            self.save(account)

    class SnapshottingBank(Bank):
        snapshotting_intervals = {Account: SNAPSHOT_EVERY}

    def workload(kind: str, bank_class: type[Bank], variant: str = "") -> Workload:
        def prepare(n: int) -> Trial:
            app = bank_class(env=POPO_ENV)
            expect(
                type(app.factory).__name__ == "POPOFactory",
                f"eventsourcing uses {type(app.factory).__name__}, expected POPOFactory",
            )
            ids = account_ids(n)
            aggregate_ids: list[UUID] = []
            if kind == LOAD:
                # One save of all the prior events; stores the same events as separate saves.
                for account_id in ids:
                    account = Account(account_id)
                    for _ in range(PRIOR_EVENTS - 1):
                        account.deposit(AMOUNT)
                    app.save(account)
                    aggregate_ids.append(account.id)

            def run_create() -> int:
                start = perf_counter_ns()
                for account_id in ids:
                    aggregate_ids.append(app.open_account(account_id))
                return perf_counter_ns() - start

            def run_load() -> int:
                start = perf_counter_ns()
                for aggregate_id in aggregate_ids:
                    app.deposit(aggregate_id, AMOUNT)
                return perf_counter_ns() - start

            def state(index: int) -> AccountState:
                account: Account = app.repository.get(aggregate_ids[index])
                expect(
                    account.account_id == ids[index],
                    f"eventsourcing: account #{index} is {account.account_id!r}",
                )
                snapshot_version = None
                if app.snapshots is not None:
                    found = list(app.snapshots.get(aggregate_ids[index], desc=True, limit=1))
                    snapshot_version = found[0].originator_version if found else None
                return AccountState(account.balance, account.version, snapshot_version)

            def events_stored() -> int:
                return app.recorder.max_notification_id() or 0

            return Trial(run_create if kind == CREATE else run_load, state, events_stored)

        return Workload("eventsourcing", kind, prepare, variant)

    return [
        workload(CREATE, Bank),
        workload(LOAD, Bank),
        workload(LOAD, SnapshottingBank, SNAPSHOTS),
    ]


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------

LIBRARIES: list[Library[Workload]] = [
    ("ecopy", build_ecopy, "is it written yet? `pip install -e .` or run with PYTHONPATH=."),
    ("eventsourcing", build_eventsourcing, "install benchmarks/requirements.txt"),
]


def find(workloads: Sequence[Workload], library: str, kind: str, variant: str) -> Workload | None:
    for workload in workloads:
        if (workload.library, workload.kind, workload.variant) == (library, kind, variant):
            return workload
    return None


def ordered(workloads: Sequence[Workload]) -> list[Workload]:
    """Grouped by workload and variant, ecopy first within each group."""
    groups = list(dict.fromkeys((w.kind, w.variant) for w in workloads))
    return sorted(workloads, key=lambda w: (groups.index((w.kind, w.variant)), w.library))


def print_checked(workloads: Sequence[Workload]) -> None:
    print("Checked before timing (one operation each; the same state in both libraries):")
    width = max(len(workload.name) for workload in workloads)
    for workload in ordered(workloads):
        state = workload.checked
        assert state is not None
        snapshot = state.snapshot_version
        print(
            f"  {workload.name:<{width}}  balance {state.balance:>3}  version {state.version:>2}"
            f"  {'no snapshot' if snapshot is None else f'snapshot at version {snapshot}'}"
        )


def print_table(workloads: Sequence[Workload]) -> None:
    width = max(len(workload.name) for workload in workloads)
    header = table_header(width)
    print(header)
    print("-" * len(header))
    for workload in ordered(workloads):
        reference = find(workloads, "ecopy", workload.kind, workload.variant)
        summary = summarize(workload.samples_ns)
        ratio = None
        if reference is not None:
            ratio = summary.median_us / summarize(reference.samples_ns).median_us
        print(table_row(workload.name, width, summary, ratio))
    print("µs per operation; mean/median/min over the per-operation averages of the repeats")
    print("x ecopy: median / median of ecopy's same workload with the same configuration")


def print_key_ratios(workloads: Sequence[Workload]) -> None:
    print()
    print("Key ratios, ecopy / eventsourcing (below 1: ecopy is faster):")
    pairs = [
        (ours, theirs)
        for ours in ordered(workloads)
        if ours.library == "ecopy"
        and (theirs := find(workloads, "eventsourcing", ours.kind, ours.variant)) is not None
    ]
    if not pairs:
        print("  n/a (ecopy or eventsourcing was not measured)")
    width = max((len(ours.name) for ours, _ in pairs), default=0)
    for ours, theirs in pairs:
        label = f"{ours.name:<{width}} vs eventsourcing"
        line = ratio_line(label, summarize(ours.samples_ns), summarize(theirs.samples_ns))
        by_median = summarize(ours.samples_ns).median_us / summarize(theirs.samples_ns).median_us
        print(f"{line}  (1/{1 / by_median:.1f})")
    print()
    print(f"Effect of snapshots, {SNAPSHOTS} / none, on {LOAD} (below 1: snapshots help):")
    for library in ("ecopy", "eventsourcing"):
        with_snapshots = find(workloads, library, LOAD, SNAPSHOTS)
        without = find(workloads, library, LOAD, "")
        if with_snapshots is None or without is None:
            continue
        print(
            ratio_line(
                f"{library:<13}",
                summarize(with_snapshots.samples_ns),
                summarize(without.samples_ns),
            )
        )


def print_environment(calls: int, repeats: int, warmup: int) -> None:
    print(python_description())
    for name in ("ecopy", "eventsourcing"):
        print(f"  {name:<13} {version_of(name)}  ({imported_from(name)})")
    print(
        f"{repeats} repeats x {calls} operations per workload (warm-up {warmup}), gc enabled; "
        f"load workloads start from {PRIOR_EVENTS} prior events per account"
    )
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(
        argv,
        description="Per-operation cost of event-sourced aggregates, ecopy vs eventsourcing.",
        calls=DEFAULT_CALLS,
        repeats=DEFAULT_REPEATS,
        quick_calls=QUICK_CALLS,
        quick_repeats=QUICK_REPEATS,
        unit="operations",
    )
    warmup = warmup_calls(args.calls)
    print_environment(args.calls, args.repeats, warmup)

    workloads, unavailable = build_all(LIBRARIES, Workload.check_once)
    verify_equivalence(workloads)
    if workloads:
        print_checked(workloads)
    measure(workloads, args.calls, args.repeats, warmup)

    print()
    if workloads:
        print_table(workloads)
    print_key_ratios(workloads)
    return report_unavailable(unavailable)


if __name__ == "__main__":
    sys.exit(main())
