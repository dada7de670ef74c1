"""``Database``: transient errors are retried a bounded number of times; others fail at once."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event, exc

import ecopy
from ecopy import ServiceConfiguration, asynchronous, command_handler
from ecopy_dbal import DbalChannel, DbalConfiguration
from ecopy_dbal.database import Database, create_database_engine
from tests.services import ON_SERVERS


@pytest.fixture
def unreachable():
    engine = create_database_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    attempts = []
    event.listen(engine, "do_connect", lambda *args: attempts.append(1))
    yield Database(engine, retry_attempts=3, retry_max_wait=0.001), attempts
    engine.dispose()


def test_a_store_call_outside_a_transaction_tries_as_often_as_configured(unreachable, caplog):
    database, attempts = unreachable

    with caplog.at_level(logging.WARNING, "ecopy.dbal"), pytest.raises(exc.OperationalError):
        database.run(lambda connection: connection.exec_driver_sql("select 1"))

    assert len(attempts) == 3
    assert "retrying" in caplog.text and "127.0.0.1:1/nowhere" in caplog.text


def test_beginning_a_transaction_tries_as_often_as_configured(unreachable):
    database, attempts = unreachable

    with pytest.raises(exc.OperationalError), database.transaction():
        pass

    assert len(attempts) == 3


def test_an_error_that_another_attempt_cannot_fix_is_not_retried(tmp_path, caplog):
    database = Database(create_database_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}"))

    with caplog.at_level(logging.WARNING, "ecopy.dbal"), pytest.raises(exc.OperationalError):
        database.run(lambda connection: connection.exec_driver_sql("select * from missing"))

    assert "retrying" not in caplog.text
    database.dispose()


class Mailer:
    @asynchronous("orders")
    @command_handler("mail", endpoint_id="mail")
    def mail(self) -> None: ...


def test_a_consumer_keeps_polling_through_an_outage_longer_than_the_retries(caplog):

    engine = create_database_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    attempts = []
    event.listen(engine, "do_connect", lambda *args: attempts.append(1))
    app = ecopy.bootstrap(
        classes=[Mailer],
        services=[Mailer()],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(engine=engine, auto_setup=False), DbalChannel("orders")]
        ),
    )
    queue = app.channel("orders")
    queue._database._retrying_attempts = 1  # keep the test fast: give up on the first error

    with caplog.at_level(logging.WARNING):
        # An unreachable database is not an empty queue: the consumer does not finish early.
        handled = app.run("orders", finish_when_no_messages=True, execution_time_limit_ms=1500)

    assert handled == 0
    assert len(attempts) >= 3
    outage = [r.getMessage() for r in caplog.records if r.name == "ecopy.consumer"]
    assert outage[0].startswith("consumer orders: OperationalError: ")
    assert outage[0].endswith("for as long as it takes")
    assert len(outage) == 1, "one line when the outage starts, not one per attempt"
    assert all("\n" not in r.getMessage() for r in caplog.records)
    engine.dispose()


SESSION_SETTINGS = {
    "postgresql": "SELECT current_setting('lock_timeout'), "
    "current_setting('idle_in_transaction_session_timeout')",
    "mysql": "SELECT @@innodb_lock_wait_timeout, @@idle_transaction_timeout",
}


@pytest.mark.parametrize("database_url", ON_SERVERS, indirect=True)
def test_a_server_session_bounds_lock_waits_and_idle_transactions(database_url):
    app = ecopy.bootstrap(
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(
                    url=database_url, lock_timeout_s=7, idle_in_transaction_timeout_s=90
                )
            ]
        )
    )
    database = app.service(Database)

    with database.transaction() as connection:
        settings = connection.exec_driver_sql(SESSION_SETTINGS[database.dialect]).one()

    assert [str(value) for value in settings] in (["7s", "90s"], ["7", "90"])
    database.dispose()


@pytest.mark.parametrize("option", ["lock_timeout_s", "idle_in_transaction_timeout_s"])
@pytest.mark.parametrize("value", [0, -1, "30", True])
def test_timeouts_must_be_positive_seconds(option, value):
    with pytest.raises(ValueError, match=f"DbalConfiguration {option} must be a number of seconds"):
        DbalConfiguration(**{option: value})


def test_closing_the_application_disposes_of_its_engine_and_stops_its_queues(database_url):
    with ecopy.bootstrap(
        classes=[Mailer],
        services=[Mailer()],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=database_url), DbalChannel("orders")]
        ),
    ) as app:
        database = app.require_service(Database)
        queue = app.channel("orders")
        app.command_bus.send_with_routing("mail")
        assert database.engine.pool.checkedin() >= 1

    assert database.engine.pool.checkedin() == 0
    assert queue._closed.is_set()
