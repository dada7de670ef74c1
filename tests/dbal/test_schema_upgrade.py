"""Times are real timestamp columns (issue 10): tables an earlier ecopy made, with times as
epoch numbers, are refused with a pointer to the migration note, and the note's SQL converts
them keeping every time, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import ConfigurationError, ControlledClock, ServiceConfiguration
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.naming import TypeRegistry
from ecopy.messaging.serialization import MessageSerializer
from ecopy_dbal import Database, DbalConfiguration, DbalDeadLetterStore, schema
from ecopy_dbal.channel import DbalQueue, messages
from ecopy_dbal.dead_letter import dead_letters
from tests.cli.invoking import invoke_ecopy
from tests.contracts.channel_contract import PAYLOAD_TYPES, START
from tests.contracts.dead_letter_contract import FAILED_AT, entry

NOTE = Path(__file__).resolve().parents[2] / "docs" / "dbal.md"
FAILED_AT_MS = FAILED_AT + 0.25  # 2026-03-01 12:00:00.250 UTC


#: Tables that came after times became timestamp columns: no earlier ecopy made them.
NEWER_TABLES = {"ecopy_projections"}


def old_metadata() -> sa.MetaData:
    """ecopy's tables as earlier versions made them: every time a double (epoch seconds)."""
    old = sa.MetaData()
    for table in schema.all_tables():
        if table.name in NEWER_TABLES:
            continue
        copy = table.to_metadata(old)
        for column in copy.columns:
            if isinstance(column.type, schema.Timestamp):
                column.type = sa.Double()
    return old


def reset(engine: sa.Engine) -> None:
    schema.drop(engine)


@pytest.fixture(autouse=True)
def no_old_tables_left(database_url):
    """The next test's clean database must not find the old tables this one made."""
    yield
    engine = sa.create_engine(database_url)
    schema.drop(engine)
    engine.dispose()


# -- detection -------------------------------------------------------------------------------


def test_db_setup_refuses_tables_with_numeric_times_and_creates_nothing(database_url):
    engine = sa.create_engine(database_url)
    reset(engine)
    with engine.begin() as connection:  # made by hand, as an earlier ecopy did
        connection.exec_driver_sql(
            "CREATE TABLE ecopy_snapshots (stream VARCHAR(200) NOT NULL, aggregate_id "
            "VARCHAR(200) NOT NULL, version BIGINT NOT NULL, state_type VARCHAR(200) NOT NULL, "
            "state TEXT NOT NULL, saved_at DOUBLE PRECISION NOT NULL, "
            "PRIMARY KEY (stream, aggregate_id))"
        )

    result = invoke_ecopy("db", "setup", "--url", database_url)

    assert result.exit_code == 1
    assert "ecopy_snapshots.saved_at" in result.output
    assert "store times as numbers" in result.output
    assert "docs/dbal.md#upgrading-times-stored-as-timestamps" in result.output
    assert "ecopy_messages" not in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_bootstrap_that_sets_up_the_tables_reports_the_old_ones_as_a_configuration_problem(
    database_url,
):
    engine = sa.create_engine(database_url)
    reset(engine)
    old_metadata().create_all(engine)
    engine.dispose()

    with pytest.raises(ConfigurationError) as raised:
        ecopy.bootstrap(
            config=ServiceConfiguration(
                extensions=[DbalConfiguration(url=database_url, auto_setup=True)]
            )
        )

    problem = str(raised.value)
    assert "ecopy_messages.deliver_at" in problem and "ecopy_events.recorded_at" in problem
    assert "docs/dbal.md#upgrading-times-stored-as-timestamps" in problem


def test_current_tables_pass_the_check(database):
    assert schema.outdated_columns(database.engine) == []


# -- the columns are timestamps an operator reads ----------------------------------------------


def serializer() -> MessageSerializer:
    names = TypeRegistry()
    names.register_all(PAYLOAD_TYPES)
    return MessageSerializer(names, PayloadConversion())


def test_times_are_stored_as_timestamps_with_milliseconds(database):
    clock = ControlledClock(START)
    queue = DbalQueue("parcels", database, serializer(), clock)
    queue.send_serialized("{}", deliver_at=clock.now() + 0.25, expires_at=clock.now() + 3600.001)
    DbalDeadLetterStore(database).add(entry(1))

    with database.engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT deliver_at, expires_at, created_at FROM ecopy_messages")
        ).one()
        failed_at = connection.execute(sa.text("SELECT failed_at FROM ecopy_dead_letters")).scalar()

    assert [shown(value) for value in stored] == [
        "2026-03-01 12:00:00.250000",
        "2026-03-01 13:00:00.001000",
        "2026-03-01 12:00:00.000000",
    ]
    assert shown(failed_at) == "2026-03-01 12:00:01.000000"


def shown(value: datetime | str) -> str:
    """A timestamp as the driver returns it, in UTC without a zone: text on SQLite."""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


# -- the migration note's SQL ------------------------------------------------------------------


def upgrade_script(dialect: str) -> list[str]:
    """The statements of the note's ```sql block for ``dialect``."""
    name = {"postgresql": "postgresql", "sqlite": "sqlite"}.get(dialect, "mariadb")
    text = NOTE.read_text(encoding="utf-8")
    (block,) = re.findall(rf"^```sql {name}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return [statement.strip() for statement in block.split(";") if statement.strip()]


def test_the_notes_sql_converts_old_tables_keeping_the_times(database_url):
    engine = sa.create_engine(database_url)
    reset(engine)
    old = old_metadata()
    old.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            old.tables["ecopy_messages"].insert(),
            [
                {
                    "queue": "parcels",
                    "body": "{}",
                    "priority": 0,
                    "created_at": FAILED_AT,
                    "deliver_at": None,
                    "claimed_until": None,
                },
                {
                    "queue": "parcels",
                    "body": "{}",
                    "priority": 0,
                    "created_at": FAILED_AT,
                    "deliver_at": FAILED_AT_MS,
                    "claimed_until": FAILED_AT + 30,
                },
            ],
        )
        connection.execute(
            old.tables["ecopy_dead_letters"].insert(),
            {**vars(entry(1)), "failed_at": FAILED_AT_MS, "message_type": "json"},
        )
    assert schema.outdated_columns(engine)

    run_as_an_operator(engine, upgrade_script(engine.dialect.name))

    assert schema.outdated_columns(engine) == []
    assert schema.setup(engine)
    database = Database(engine)
    (failed,) = DbalDeadLetterStore(database).list()
    assert failed.failed_at == FAILED_AT_MS
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                messages.c.deliver_at, messages.c.claimed_until, messages.c.created_at
            ).order_by(messages.c.id)
        ).all()
        assert connection.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar()
    assert [tuple(row) for row in rows] == [
        (None, None, FAILED_AT),
        (FAILED_AT_MS, FAILED_AT + 30, FAILED_AT),
    ]
    engine.dispose()


def run_as_an_operator(engine: sa.Engine, statements: list[str]) -> None:
    """Run ``statements`` one by one as a SQL console does: autocommit, except inside the
    script's own BEGIN ... COMMIT."""
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        if engine.dialect.name == "sqlite":
            driver.isolation_level = None  # type: ignore[union-attr]
        elif engine.dialect.name == "postgresql":
            driver.autocommit = True  # type: ignore[union-attr]
        else:
            driver.autocommit(True)  # type: ignore[union-attr]
        cursor = raw.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()
    finally:
        raw.close()
