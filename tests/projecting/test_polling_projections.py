"""Polling projections (issue 11): the consumer named after the projection catches it up at
each poll, not the command; a failing batch is rolled back, logged, and tried again at the
next poll. In memory (flow tests) and on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import logging
from typing import Annotated

import pytest

from ecopy import PollingMetadata, ServiceConfiguration, bootstrap, event_handler
from ecopy.projecting import ProjectionState, projection
from ecopy.testing import bootstrap_flow_testing
from ecopy_dbal import DbalConfiguration
from tests.projecting.app import Account, AccountOpened, Deposit, MoneyDeposited, OpenAccount


@projection("ledger", from_streams=[Account], polling=True, batch_size=2)
class Ledger:
    def __init__(self) -> None:
        self.fail_on_amount: int | None = None

    @event_handler
    def opened(self, event: AccountOpened, lines: Annotated[list[str], ProjectionState]) -> list:
        return [*lines, f"opened {event.account_id}"]

    @event_handler
    def deposited(
        self, event: MoneyDeposited, lines: Annotated[list[str], ProjectionState]
    ) -> list:
        if event.amount == self.fail_on_amount:
            raise ValueError(f"cannot post {event.amount}")
        return [*lines, f"{event.account_id} +{event.amount}"]


def test_a_polling_projection_waits_for_its_consumer():
    ledger = Ledger()
    flow = bootstrap_flow_testing(classes=[Account, Ledger], services=[ledger])
    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 5))
    flow.send_command(Deposit("a-1", 7))

    assert flow.get_projection_state("ledger") == []
    assert flow.projections.status("ledger").lag == 3

    flow.run("ledger")

    assert flow.get_projection_state("ledger") == ["opened a-1", "a-1 +5", "a-1 +7"]
    status = flow.projections.status("ledger")
    assert (status.mode, status.position, status.lag) == ("polling", 3, 0)
    assert [c.name for c in flow.system.list_consumers()] == ["ledger"]


@pytest.fixture
def ledger_app(database_url):
    ledger = Ledger()
    app = bootstrap(
        classes=[Account, Ledger],
        services=[ledger],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=database_url), PollingMetadata("ledger")]
        ),
    )
    yield app, ledger
    app.close()


def test_a_failing_batch_is_rolled_back_logged_and_tried_again_at_the_next_poll(ledger_app, caplog):
    app, ledger = ledger_app
    app.command_bus.send(OpenAccount("a-1"))
    app.command_bus.send(Deposit("a-1", 5))
    app.command_bus.send(Deposit("a-1", 13))
    ledger.fail_on_amount = 13

    with caplog.at_level(logging.ERROR, logger="ecopy.projecting"):
        app.run("ledger", finish_when_no_messages=True, handled_message_limit=2)

    assert app.projections.state("ledger") == ["opened a-1", "a-1 +5"]  # the first batch
    assert app.projections.status("ledger").lag == 1  # the failed batch: one event left
    assert (
        "projection ledger: a batch failed and was rolled back; the next poll tries it again"
        in caplog.messages
    )

    ledger.fail_on_amount = None
    app.run("ledger", finish_when_no_messages=True)

    assert app.projections.state("ledger") == ["opened a-1", "a-1 +5", "a-1 +13"]
    assert app.projections.status("ledger").lag == 0
