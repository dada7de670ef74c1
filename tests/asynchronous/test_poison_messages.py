"""A message that can never be handled goes to the dead letters with the reason, whatever the
error handling says, and the consumer goes on (DESIGN §1.6, §3.5): never a crashed consumer,
never a lost message, never a retry without end."""

from __future__ import annotations

import pytest

import ecopy
from ecopy import (
    ErrorHandlerConfiguration,
    NonRetryableError,
    QueueChannel,
    RetryTemplate,
    ServiceConfiguration,
    asynchronous,
    command_handler,
)
from tests.poison import CASES, CHANNEL, Job, Jobs, assert_settled_as_dead_letter

ERROR_HANDLING = {
    "no error handling": [],
    "retries": [ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 3))],
    "failed messages dropped": [ErrorHandlerConfiguration(dead_letter_channel=None)],
}


def jobs_app(jobs: Jobs, *extensions: object) -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[Jobs],
        services=[jobs],
        config=ServiceConfiguration(extensions=[QueueChannel(CHANNEL), *extensions]),
    )


@pytest.mark.parametrize("handling", ERROR_HANDLING.values(), ids=ERROR_HANDLING.keys())
@pytest.mark.parametrize(("body", "reason"), CASES)
def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(body, reason, handling):
    jobs = Jobs()
    app = jobs_app(jobs, *handling)

    assert_settled_as_dead_letter(app, jobs, body, reason)


class Refunds:
    def __init__(self) -> None:
        self.attempts = 0

    @asynchronous(CHANNEL)
    @command_handler(endpoint_id="refund")
    def refund(self, job: Job) -> None:
        self.attempts += 1
        raise UnknownOrder(f"order {job.number} does not exist")


class UnknownOrder(NonRetryableError):
    pass


@pytest.mark.parametrize("handling", ERROR_HANDLING.values(), ids=ERROR_HANDLING.keys())
def test_a_non_retryable_error_skips_the_retries_and_is_dead_lettered(handling):
    refunds = Refunds()
    app = ecopy.bootstrap(
        classes=[Refunds],
        services=[refunds],
        config=ServiceConfiguration(extensions=[QueueChannel(CHANNEL), *handling]),
    )
    app.command_bus.send(Job(7))

    assert app.run(CHANNEL, finish_when_no_messages=True) == 1

    assert refunds.attempts == 1
    [dead] = app.dead_letter.list()
    assert dead.exception_type == "UnknownOrder"
    assert dead.exception_message == "order 7 does not exist"
