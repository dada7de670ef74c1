"""Projection positions in the database (contracts/projections.md, "Position storage port"):
the store passes the contract on SQLite, PostgreSQL and MariaDB with real concurrent
transactions, its rows are readable in SQL, and ``DbalConfiguration`` provides it unless told
not to."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

import ecopy
from ecopy import ServiceConfiguration
from ecopy.config.modules import ModuleContext
from ecopy.messaging.conversion import PayloadConversion
from ecopy.messaging.naming import TypeRegistry
from ecopy.projecting import InMemoryProjectionStateStore, ProjectionRecord, ProjectionStateStore
from ecopy_dbal import Database, DbalConfiguration, DbalProjectionStateStore, schema
from ecopy_dbal.codec import Codec
from ecopy_dbal.projection_state import projections
from tests.contracts.projection_state_contract import ProjectionStateContract, waits_in

#: Sessions of the test's database blocked on a lock another transaction holds.
_LOCK_WAITS = {
    "postgresql": (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ),
    "mysql": (
        "SELECT count(*) FROM information_schema.innodb_trx t "
        "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
        "WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()"
    ),
}


def store_of(database) -> DbalProjectionStateStore:
    return DbalProjectionStateStore(database, Codec(TypeRegistry(), PayloadConversion()))


class TestDbalProjectionStateStore(ProjectionStateContract):
    @pytest.fixture
    def store(self, database):
        return store_of(database)

    @pytest.fixture
    def unit_of_work(self, database):
        return database.transaction

    @pytest.fixture
    def waits_for_a_lock(self, database):
        if database.dialect == "sqlite":
            # Every transaction takes SQLite's one write lock at BEGIN: the waiter is at the
            # writer gate (ecopy_dbal/sqlite.py) until the holder commits or rolls back.
            return lambda thread: waits_in(thread, "ecopy_dbal/sqlite.py", "acquire")
        dialect = "mysql" if database.dialect == "mariadb" else database.dialect
        query = _LOCK_WAITS[dialect]
        # InnoDB refreshes its information_schema tables only when they were not read for
        # 0.1 s: read more often and they never change.
        spacing_s = 0.15 if dialect == "mysql" else 0.0
        last_read = [0.0]

        def waiting(_thread) -> bool:
            time.sleep(max(0.0, last_read[0] + spacing_s - time.monotonic()))
            try:
                with database.engine.connect() as connection:
                    return bool(connection.exec_driver_sql(query).scalar())
            finally:
                last_read[0] = time.monotonic()

        return waiting

    @pytest.fixture
    def readers_wait_for_writers(self, database):
        return database.dialect == "sqlite"


def rows(database) -> list[dict[str, object]]:
    with database.engine.connect() as connection:
        found = connection.execute(
            sa.select(projections).order_by(projections.c.projection, projections.c.partition_key)
        )
        return [dict(row._mapping) for row in found]


def test_the_table_is_keyed_by_projection_and_partition_and_set_up_with_the_others(database):
    table = sa.inspect(database.engine)

    assert "ecopy_projections" in {t.name for t in schema.all_tables()}
    assert table.get_pk_constraint("ecopy_projections")["constrained_columns"] == [
        "projection",
        "partition_key",
    ]
    assert {c["name"] for c in table.get_columns("ecopy_projections")} == {
        "projection",
        "partition_key",
        "position",
        "state",
        "status",
        "checkpoint",
        "updated_at",
    }


def test_a_row_is_readable_in_sql_state_and_checkpoint_as_json_text(database):
    store = store_of(database)
    store.initialize("balances", "a-1")
    store.save(
        ProjectionRecord(
            "balances",
            "a-1",
            position=17,
            state={"total": 250, "currencies": ["EUR"]},
            checkpoint={"transaction": 9},
        )
    )
    store.initialize("ledger")

    found = rows(database)

    assert [(r["projection"], r["partition_key"], r["position"], r["status"]) for r in found] == [
        ("balances", "a-1", 17, "ready"),
        ("ledger", "", 0, "ready"),
    ]
    assert json.loads(found[0]["state"]) == {"total": 250, "currencies": ["EUR"]}
    assert json.loads(found[0]["checkpoint"]) == {"transaction": 9}
    assert (found[1]["state"], found[1]["checkpoint"]) == (None, None)
    assert all(isinstance(r["updated_at"], float) for r in found)


def test_a_name_longer_than_the_key_column_is_refused_and_nothing_is_written(database):
    store = store_of(database)
    too_long = "p" * 256

    with pytest.raises(
        ValueError, match="256 characters long; ecopy_projections keeps at most 255"
    ):
        store.initialize(too_long)
    with pytest.raises(ValueError, match="partition key"):
        store.save(ProjectionRecord("balances", "k" * 256))

    assert rows(database) == []
    assert store.initialize("p" * 255) is True


def test_text_in_the_state_column_that_is_not_json_names_the_row_and_the_fix(database):
    store = store_of(database)
    store.initialize("balances")
    with database.engine.begin() as connection:
        connection.execute(projections.update().values(state="{not json"))

    with pytest.raises(ecopy.EcopyError, match=r"'balances'.*not JSON.*projection rebuild"):
        store.get("balances")


# -- the module: DbalConfiguration provides the port ---------------------------------------


@dataclass
class FindsTheStore:
    """Stands for the projections module: asks for the port once every module registered."""

    found: list[object] = field(default_factory=list)

    def register(self, context: ModuleContext) -> None:
        context.on_ready(lambda: self.found.append(context.port(ProjectionStateStore)))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_database_module_provides_the_store_unless_turned_off_or_given(database_url):
    finder = FindsTheStore()
    given = InMemoryProjectionStateStore()

    for options, services in [({}, []), ({"projections": False}, []), ({}, [given])]:
        configuration = DbalConfiguration(url=database_url, **options)
        app = ecopy.bootstrap(
            services=services, config=ServiceConfiguration(extensions=[configuration, finder])
        )
        app.close()

    provided, turned_off, replaced = finder.found
    assert isinstance(provided, DbalProjectionStateStore)
    assert turned_off is None
    assert replaced is given


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_provided_store_works_in_the_application_database(database_url):
    finder = FindsTheStore()
    app = ecopy.bootstrap(
        config=ServiceConfiguration(extensions=[DbalConfiguration(url=database_url), finder])
    )
    try:
        store = finder.found[0]
        store.save(ProjectionRecord("balances", position=3, state={"total": 3}))
        database = app.service(Database)
        with database.transaction() as connection:
            position = connection.execute(sa.select(projections.c.position)).scalar()
    finally:
        app.close()

    assert position == 3
