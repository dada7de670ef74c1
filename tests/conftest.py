"""Database fixtures, for the database adapter's tests and the fault suite: a test that asks
for ``database_url`` runs on SQLite (a file), PostgreSQL and MariaDB, each a clean database
(ecopy's tables exist and are empty)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ecopy_dbal import schema
from ecopy_dbal.database import Database, create_database_engine
from tests.services import DATABASES, MYSQL_URL, POSTGRES_URL, ServerDatabase


@pytest.fixture(scope="session")
def server_databases():
    servers = {
        "postgres": ServerDatabase("PostgreSQL", POSTGRES_URL),
        "mysql": ServerDatabase("MariaDB", MYSQL_URL),
    }
    yield servers
    for server in servers.values():
        server.drop()


def clean(url: str) -> None:
    """ecopy's tables exist and are empty; tables the tests made are dropped."""
    engine = sa.create_engine(url)
    try:
        schema.setup(engine)  # a test may have dropped them (ecopy db drop)
        ours = {table.name for table in schema.all_tables()}
        with engine.begin() as connection:
            for table in reversed(schema.all_tables()):
                connection.execute(table.delete())
            for name in sa.inspect(connection).get_table_names():
                if name not in ours:
                    connection.exec_driver_sql(f"DROP TABLE {name}")
    finally:
        engine.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path, server_databases) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ecopy.sqlite3'}"
    url = server_databases[request.param].create()
    clean(url)
    return url


@pytest.fixture
def database(database_url):
    database = Database(create_database_engine(database_url))
    schema.setup(database.engine)
    yield database
    database.dispose()
