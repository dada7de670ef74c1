"""Asynchronous projections (issue 11): ``@asynchronous("ch")`` on the class; each command
that stores its events sends a trigger once it succeeded, and the channel's consumer catches
the projection up, with the consumer's retries and dead letters (endpoint id = the
projection's name). In memory (flow tests) and on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from typing import Annotated

import pytest

from ecopy import (
    ConfigurationError,
    ErrorHandlerConfiguration,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    bootstrap,
    event_handler,
)
from ecopy.projecting import ProjectionState, projection
from ecopy.testing import bootstrap_flow_testing
from ecopy_dbal import DbalChannel, DbalConfiguration
from tests.projecting.app import Account, AccountOpened, Deposit, MoneyDeposited, OpenAccount


@asynchronous("projections")
@projection("sums", from_streams=[Account])
class Sums:
    def __init__(self) -> None:
        self.fail_on_amount: int | None = None

    @event_handler
    def opened(
        self, event: AccountOpened, sums: Annotated[dict[str, int], ProjectionState]
    ) -> dict:
        return {**sums, event.account_id: 0}

    @event_handler
    def deposited(
        self, event: MoneyDeposited, sums: Annotated[dict[str, int], ProjectionState]
    ) -> dict:
        if event.amount == self.fail_on_amount:
            raise ValueError(f"cannot add {event.amount}")
        return {**sums, event.account_id: sums[event.account_id] + event.amount}


def test_the_command_sends_a_trigger_and_the_consumer_catches_up():
    flow = bootstrap_flow_testing(
        classes=[Account, Sums],
        services=[Sums()],
        enable_asynchronous_processing=[QueueChannel("projections")],
    )
    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 5))

    assert flow.get_projection_state("sums") == {}
    assert flow.projections.status("sums").mode == "asynchronous"

    flow.run("projections")

    assert flow.get_projection_state("sums") == {"a-1": 5}
    assert flow.projections.status("sums").lag == 0


def test_without_asynchronous_processing_a_flow_test_projects_at_once():
    flow = bootstrap_flow_testing(classes=[Account, Sums], services=[Sums()])

    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 5))

    assert flow.get_projection_state("sums") == {"a-1": 5}


@pytest.fixture
def bank(database_url):
    sums = Sums()
    app = bootstrap(
        classes=[Account, Sums],
        services=[sums],
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(url=database_url),
                DbalChannel("projections"),
                ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 1)),
            ]
        ),
    )
    yield app, sums
    app.close()


def test_a_failing_catch_up_takes_the_consumers_retries_and_dead_letters_then_replays(bank):
    app, sums = bank
    app.command_bus.send(OpenAccount("a-1"))
    sums.fail_on_amount = 13
    app.command_bus.send(Deposit("a-1", 13))  # the command is not failed by the projection

    app.run("projections", finish_when_no_messages=True)

    # Both triggers caught up from the start, in one batch that failed whole: nothing kept.
    assert app.projections.state("sums") == {}
    letters = app.dead_letter.list()
    assert [(x.endpoint_id, x.exception_message) for x in letters] == [
        ("sums", "cannot add 13"),
        ("sums", "cannot add 13"),
    ]

    sums.fail_on_amount = None
    app.dead_letter.replay_all()
    app.run("projections", finish_when_no_messages=True)

    assert app.projections.state("sums") == {"a-1": 13}
    assert app.projections.status("sums").lag == 0


@asynchronous("projections")
@projection("both", from_all=True, polling=True)
class Both:
    @event_handler
    def seen(self, event: AccountOpened) -> None: ...


def test_asynchronous_and_polling_together_is_a_configuration_problem():
    with pytest.raises(ConfigurationError) as raised:
        bootstrap(
            classes=[Both],
            services=[Both()],
            config=ServiceConfiguration(extensions=[QueueChannel("projections")]),
        )

    assert raised.value.problems == (
        "projection 'both' (Both) is both @asynchronous and polling=True: choose one (a "
        "trigger after each command, or a consumer that polls)",
    )
