"""Real services for adapter tests: where they are, and what a test does when one is down.

A test that needs a server skips with the reason on a developer machine; under ``CI=true`` a
missing server fails the test instead, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "ECOPY_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("ECOPY_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

#: Parameters of the ``database_url`` fixture (tests/conftest.py): every database, the
#: servers only, SQLite only; pass one with ``@pytest.mark.parametrize("database_url", ...,
#: indirect=True)``.
ON_SQLITE = [pytest.param("sqlite", id="sqlite")]
ON_SERVERS = [
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]
DATABASES = [*ON_SQLITE, *ON_SERVERS]


def unavailable(service: str, reason: str) -> None:
    """Skip, or fail under CI=true."""
    message = f"{service} is not reachable ({reason}); start it (see .ci/run) to run this test"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


class ServerDatabase:
    """A database of its own on a shared server, for one test session: parallel runs (and
    other projects using the server's ``test`` database) never see each other's rows."""

    def __init__(self, service: str, base_url: str) -> None:
        self.service = service
        self.base_url = sa.make_url(base_url)
        self.name = f"ecopy_{uuid.uuid4().hex[:12]}"
        self.url: str | None = None
        self.error: str | None = None

    def create(self) -> str:
        if self.url is not None:
            return self.url
        if self.error is not None:
            unavailable(self.service, self.error)
        try:
            engine = sa.create_engine(self.base_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {self.name}")
            engine.dispose()
        except Exception as error:
            self.error = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            unavailable(self.service, self.error)
        self.url = self.base_url.set(database=self.name).render_as_string(hide_password=False)
        return self.url

    def drop(self) -> None:
        if self.url is None:
            return
        engine = sa.create_engine(self.base_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            else:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}")
        engine.dispose()
