"""``ecopy projection list|status|init|backfill|rebuild|reset|delete``: the lifecycle of the
projections from the command line, on the bank of ``tests/cli/bank_app.py`` — in memory
in-process, and on SQLite across separate ``ecopy`` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result

from ecopy import MessagingSystem
from tests.cli import bank_app
from tests.cli.bank_app import Audit
from tests.cli.invoking import SAMPLE_APP, invoke_ecopy
from tests.cli.payments_shop import table_rows
from tests.projecting.app import Deposit, OpenAccount, Totals, TotalsProjection

BANK_APP = "tests.cli.bank_app:system"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Bank:
    """A fresh bank installed as ``tests.cli.bank_app:system``, with one account a-1 that
    received 5 and 13: three events, handled by ``totals``; ``audit`` waits for ``init``."""

    system: MessagingSystem
    totals: TotalsProjection
    audit: Audit

    def ecopy(self, *args: str, input: str | None = None, **env: str) -> Result:
        """``ecopy --app tests.cli.bank_app:system projection ARGS``."""
        return invoke_ecopy("--app", BANK_APP, "projection", *args, input=input, env=env)


@pytest.fixture
def bank(monkeypatch: pytest.MonkeyPatch) -> Bank:
    totals, audit = TotalsProjection(), Audit()
    system = bank_app.create_system(totals, audit)
    monkeypatch.setattr(bank_app, "system", system)
    system.command_bus.send(OpenAccount("a-1"))
    system.command_bus.send(Deposit("a-1", 5))
    system.command_bus.send(Deposit("a-1", 13))
    totals.journal.clear()
    return Bank(system, totals, audit)


# -- list and status -------------------------------------------------------------------------


def test_list_shows_a_row_per_projection(bank: Bank) -> None:
    result = bank.ecopy("list")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "┏━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━┳━━━━━┳━━━━━━━━━━━━┓\n"
        "┃ Projection ┃ Mode        ┃ Status        ┃ Position ┃ Head ┃ Lag ┃ Partitions ┃\n"
        "┡━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━╇━━━━━╇━━━━━━━━━━━━┩\n"
        "│ audit      │ synchronous │ uninitialized │        — │    3 │   3 │          — │\n"
        "│ totals     │ synchronous │ ready         │        3 │    3 │   0 │          — │\n"
        "└────────────┴─────────────┴───────────────┴──────────┴──────┴─────┴────────────┘\n"
    )


def test_list_json_gives_every_status_field_to_scripts(bank: Bank) -> None:
    result = bank.ecopy("list", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "name": "audit",
            "mode": "synchronous",
            "partitioned": False,
            "status": "uninitialized",
            "position": None,
            "head": 3,
            "lag": 3,
            "partitions": 0,
        },
        {
            "name": "totals",
            "mode": "synchronous",
            "partitioned": False,
            "status": "ready",
            "position": 3,
            "head": 3,
            "lag": 0,
            "partitions": 0,
        },
    ]


def test_an_application_without_projections_says_so() -> None:
    table = invoke_ecopy("--app", SAMPLE_APP, "projection", "list")
    as_json = invoke_ecopy("--app", SAMPLE_APP, "projection", "list", "--json")
    init_all = invoke_ecopy("--app", SAMPLE_APP, "projection", "init", "--all")

    assert (table.exit_code, table.stdout) == (
        0,
        "No projections: the application declares none.\n",
    )
    assert (as_json.exit_code, json.loads(as_json.stdout)) == (0, [])
    assert (init_all.exit_code, init_all.stdout) == (
        0,
        "No projections to initialize: the application declares none.\n",
    )


def test_status_shows_one_projection(bank: Bank) -> None:
    result = bank.ecopy("status", "audit")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Projection audit\n"
        "Mode         synchronous\n"
        "Partitioned  no\n"
        "Status       uninitialized\n"
        "Position     —\n"
        "Head         3\n"
        "Lag          3\n"
        "Partitions   —\n"
    )


def test_status_json(bank: Bank) -> None:
    result = bank.ecopy("status", "totals", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": "totals",
        "mode": "synchronous",
        "partitioned": False,
        "status": "ready",
        "position": 3,
        "head": 3,
        "lag": 0,
        "partitions": 0,
    }


# -- init ------------------------------------------------------------------------------------


def test_init_creates_the_position_without_catching_up(bank: Bank) -> None:
    first = bank.ecopy("init", "audit")
    second = bank.ecopy("init", "audit")

    assert (first.exit_code, first.stdout) == (0, "audit: initialized\n")
    assert (second.exit_code, second.stdout) == (0, "audit: already initialized\n")
    status = bank.system.projections.status("audit")
    assert (status.status, status.position, status.lag) == ("ready", 0, 3)


def test_init_all_initializes_each_projection(bank: Bank) -> None:
    result = bank.ecopy("init", "--all")

    assert result.exit_code == 0, result.output
    assert result.stdout == "audit: initialized\ntotals: already initialized\n"
    assert bank.system.projections.status("audit").status == "ready"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "Error: Give the NAME of the projection to initialize, or --all.\n"),
        (("audit", "--all"), "Error: Give a projection NAME or --all, not both.\n"),
    ],
)
def test_init_takes_a_name_or_all(bank: Bank, arguments: tuple[str, ...], message: str) -> None:
    result = bank.ecopy("init", *arguments)

    assert result.exit_code == 2
    assert result.stderr.endswith(message)
    assert bank.system.projections.status("audit").status == "uninitialized"


# -- backfill and rebuild --------------------------------------------------------------------


def test_backfill_catches_up_and_tells_how_many_events_it_handled(bank: Bank) -> None:
    bank.ecopy("init", "audit")

    result = bank.ecopy("backfill", "audit")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Backfilled projection audit: 3 events handled.\n"
    assert result.stderr == ""  # no progress display when stderr is not a terminal
    assert bank.system.projections.state("audit") == {"AccountOpened": 1, "MoneyDeposited": 2}
    assert bank.system.projections.status("audit").lag == 0


def test_backfill_shows_its_progress_on_a_terminal(bank: Bank) -> None:
    result = bank.ecopy("backfill", "audit", TTY_COMPATIBLE="1")

    assert result.exit_code == 0, result.output
    # audit reads 2 events a batch: one line per batch, next to a spinner, erased at the end
    assert "Backfilling projection audit: 0 events handled" in result.stderr
    assert "Backfilling projection audit: 2 events handled" in result.stderr
    assert "Backfilling projection audit: 3 events handled" in result.stderr
    assert "Backfilled projection audit: 3 events handled." in result.stdout


def test_a_failing_backfill_keeps_the_batches_before_the_failing_one(bank: Bank) -> None:
    bank.audit.fail_at_position = 3

    result = bank.ecopy("backfill", "audit")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: Backfill of projection audit failed: RuntimeError: audit refused the event at 3\n"
        "ecopy: raised by projection 'audit', handler tests.cli.bank_app.Audit.seen, on event "
        "tests.projecting.app.MoneyDeposited at position 3 (stream "
        "'tests.projecting.app.Account', aggregate 'a-1'); the batch was rolled back and the "
        "position did not move\n"
        "The batches before the failing one were kept (2 events handled); run "
        "`ecopy projection backfill audit` again to continue from there.\n"
    )
    assert bank.system.projections.status("audit").position == 2

    bank.audit.fail_at_position = None
    again = bank.ecopy("backfill", "audit")
    assert again.stdout == "Backfilled projection audit: 1 event handled.\n"


def test_rebuild_handles_every_event_again_after_the_reset_hook(bank: Bank) -> None:
    result = bank.ecopy("rebuild", "totals")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Rebuilt projection totals: 3 events handled.\n"
    assert bank.totals.journal == ["reset", "deposit 5 at 2", "deposit 13 at 3", "flush"]
    assert bank.system.projections.state("totals") == Totals(accounts=1, deposited=18)


def test_a_failing_rebuild_keeps_nothing(bank: Bank) -> None:
    bank.totals.fail_on_amount = 13

    result = bank.ecopy("rebuild", "totals")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Rebuild of projection totals failed: ValueError: cannot project 13\n"
        "ecopy: raised by projection 'totals', handler "
        "tests.projecting.app.TotalsProjection.deposited, on event "
        "tests.projecting.app.MoneyDeposited at position 3 (stream "
        "'tests.projecting.app.Account', aggregate 'a-1'); the batch was rolled back and the "
        "position did not move\n"
        "Nothing was kept: its read model, state and position are as they were before the "
        "rebuild.\n"
    )
    status = bank.system.projections.status("totals")
    assert (status.status, status.position) == ("ready", 3)
    assert bank.system.projections.state("totals") == Totals(accounts=1, deposited=18)


# -- reset and delete ------------------------------------------------------------------------


def test_reset_runs_the_reset_hooks_and_sets_the_position_back_to_0(bank: Bank) -> None:
    result = bank.ecopy("reset", "totals")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Reset projection totals: its reset hooks ran, its position is 0 and its state is "
        "reset. Run `ecopy projection backfill totals` to handle its events again.\n"
    )
    assert bank.totals.journal == ["reset"]
    assert bank.system.projections.status("totals").position == 0
    assert bank.system.projections.state("totals") == Totals()


def test_delete_asks_first_and_does_nothing_when_refused(bank: Bank) -> None:
    result = bank.ecopy("delete", "totals", input="n\n")

    assert result.exit_code == 1
    assert result.stdout == (
        "Delete projection totals? Its delete hooks drop its read model, and its position and "
        "state are removed. [y/N]: n\n"
    )
    assert result.stderr == "Aborted!\n"
    assert bank.totals.journal == []
    assert bank.system.projections.status("totals").status == "ready"


DELETED = (
    "Deleted projection totals: its delete hooks ran and its position and state are removed; "
    "its next trigger starts it afresh.\n"
)


def test_delete_confirmed_drops_the_projection(bank: Bank) -> None:
    result = bank.ecopy("delete", "totals", input="y\n")

    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("state are removed. [y/N]: y\n" + DELETED)
    assert bank.totals.journal == ["delete"]
    assert bank.system.projections.status("totals").status == "uninitialized"


def test_delete_yes_does_not_ask(bank: Bank) -> None:
    result = bank.ecopy("delete", "totals", "--yes")

    assert result.exit_code == 0, result.output
    assert result.stdout == DELETED
    assert bank.system.projections.status("totals").status == "uninitialized"


# -- unknown names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("status", "--json"),
        ("init",),
        ("backfill",),
        ("rebuild",),
        ("reset",),
        ("delete", "--yes"),
    ],
)
def test_an_unknown_name_is_a_usage_error_listing_the_known_ones(
    bank: Bank, command: tuple[str, ...]
) -> None:
    result = bank.ecopy(*command, "totalz")

    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: Unknown projection 'totalz'; known projections: audit, totals.\n"
    )
    assert bank.totals.journal == []


def test_an_unknown_name_in_an_application_without_projections() -> None:
    result = invoke_ecopy("--app", SAMPLE_APP, "projection", "status", "totals")

    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: Unknown projection 'totals': the application declares no projection.\n"
    )


# -- on SQLite, across processes -------------------------------------------------------------


def ecopy_process(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``ecopy --app tests.cli.bank_app:create_sqlite_bank projection ARGS`` in a process of
    its own, on the SQLite file at ``url``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ecopy.cli.main",
            "--app",
            "tests.cli.bank_app:create_sqlite_bank",
            "projection",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**_environment(), bank_app.DATABASE_URL_VARIABLE: url},
        timeout=120,
        check=False,
    )


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("ECOPY_APP", "TTY_COMPATIBLE")}


def test_on_sqlite_the_position_survives_between_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'bank.sqlite3'}"
    monkeypatch.setenv(bank_app.DATABASE_URL_VARIABLE, url)
    with bank_app.create_sqlite_bank() as app:
        app.command_bus.send(OpenAccount("a-1"))
        app.command_bus.send(Deposit("a-1", 5))
        app.command_bus.send(Deposit("a-1", 13))

    initialized = ecopy_process(url, "init", "audit")
    backfilled = ecopy_process(url, "backfill", "audit")
    status = ecopy_process(url, "status", "audit", "--json")
    listed = ecopy_process(url, "list")

    assert (initialized.returncode, initialized.stdout) == (0, "audit: initialized\n")
    assert (backfilled.returncode, backfilled.stdout) == (
        0,
        "Backfilled projection audit: 3 events handled.\n",
    )
    assert json.loads(status.stdout) == {
        "name": "audit",
        "mode": "synchronous",
        "partitioned": False,
        "status": "ready",
        "position": 3,
        "head": 3,
        "lag": 0,
        "partitions": 0,
    }
    assert table_rows(listed.stdout) == [
        {
            "Projection": "audit",
            "Mode": "synchronous",
            "Status": "ready",
            "Position": "3",
            "Head": "3",
            "Lag": "0",
            "Partitions": "—",
        },
        {
            "Projection": "balances",
            "Mode": "synchronous",
            "Status": "ready",
            "Position": "3",
            "Head": "3",
            "Lag": "0",
            "Partitions": "—",
        },
    ]


def test_on_sqlite_delete_drops_the_read_model_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'bank.sqlite3'}"
    monkeypatch.setenv(bank_app.DATABASE_URL_VARIABLE, url)
    with bank_app.create_sqlite_bank() as app:
        app.command_bus.send(OpenAccount("a-1"))

    deleted = ecopy_process(url, "delete", "balances", "--yes")

    assert deleted.returncode == 0, deleted.stderr
    with bank_app.create_sqlite_bank() as app:
        assert app.projections.status("balances").status == "uninitialized"
        with pytest.raises(Exception, match="no such table: bank_balances"):
            app.query_bus.send_with_routing("balance.get", {"account_id": "a-1"})
