"""Poison rows in a database queue (issue: they crashed the consumer, then the next one): each
becomes a dead letter in ``ecopy_dead_letters`` with the reason and its body as it was, the
consumer goes on, and the row leaves the queue — on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import ErrorHandlerConfiguration, RetryTemplate, ServiceConfiguration
from ecopy_dbal import Database, DbalChannel, DbalConfiguration
from ecopy_dbal.channel import messages
from tests.poison import CASES, CHANNEL, Jobs, assert_settled_as_dead_letter, envelope, text

ERROR_HANDLING = {
    "no error handling": [],
    "retries": [ErrorHandlerConfiguration("errorChannel", RetryTemplate.fixed(0, 3))],
}


@pytest.fixture
def jobs_app(database_url):
    apps: list[ecopy.MessagingSystem] = []

    def make(jobs: Jobs, *extensions: object) -> ecopy.MessagingSystem:
        app = ecopy.bootstrap(
            classes=[Jobs],
            services=[jobs],
            config=ServiceConfiguration(
                extensions=[
                    DbalConfiguration(url=database_url, auto_setup=True),
                    DbalChannel(CHANNEL),
                    *extensions,
                ]
            ),
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.service(Database).dispose()


def rows_left(app: ecopy.MessagingSystem) -> int:
    with app.service(Database).engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()


@pytest.mark.parametrize("handling", ERROR_HANDLING.values(), ids=ERROR_HANDLING.keys())
@pytest.mark.parametrize(("body", "reason"), CASES)
def test_a_poison_row_becomes_a_dead_letter_and_the_consumer_goes_on(
    jobs_app, body, reason, handling
):
    jobs = Jobs()
    app = jobs_app(jobs, *handling)

    assert_settled_as_dead_letter(app, jobs, body, reason)
    assert rows_left(app) == 0


def raw_row(app: ecopy.MessagingSystem, body: object) -> None:
    """A row as another program could write it, bypassing ecopy."""
    with app.service(Database).engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO ecopy_messages (queue, body, priority, created_at) "
                "VALUES (:queue, :body, 0, 0)"
            ),
            {"queue": CHANNEL, "body": body},
        )


NUL = ("\x00\x01 binary junk", "\x00\x01 binary junk")
NOT_UTF8 = (b"\xff\xfe not utf-8", "\ufffd\ufffd not utf-8")
NUMBER = (12345, "12345")


# PostgreSQL's text columns hold neither NUL nor bytes that are not UTF-8, and MariaDB checks
# that text is UTF-8 when it is written: those rows cannot exist there.
@pytest.mark.parametrize(
    ("database_url", "row"),
    [
        pytest.param("sqlite", NUL, id="sqlite-nul-characters"),
        pytest.param("sqlite", NOT_UTF8, id="sqlite-invalid-utf8"),
        pytest.param("sqlite", NUMBER, id="sqlite-a-number"),
        pytest.param("mysql", NUL, id="mysql-nul-characters", marks=pytest.mark.mysql),
        pytest.param("mysql", NUMBER, id="mysql-a-number", marks=pytest.mark.mysql),
    ],
    indirect=["database_url"],
)
def test_whatever_a_row_holds_it_becomes_a_dead_letter(jobs_app, row):
    body, kept = row
    jobs = Jobs()
    app = jobs_app(jobs)
    raw_row(app, body)
    app.channel(CHANNEL).send_serialized(text(envelope(2)))

    assert app.run(CHANNEL, finish_when_no_messages=True) == 2

    [dead] = app.dead_letter.list()
    assert dead.body == kept
    assert [number for number, _ in jobs.done] == [2]
    assert rows_left(app) == 0
