"""The rule for tests that need a server: skip on a developer machine, fail under CI=true."""

from __future__ import annotations

import pytest

from tests.services import ServerDatabase, unavailable


def test_a_missing_service_skips_on_a_developer_machine(monkeypatch):
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not reachable"):
        unavailable("PostgreSQL", "connection refused")


def test_a_missing_service_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI=true: MariaDB is not reachable"):
        unavailable("MariaDB", "connection refused")


def test_an_unreachable_server_database_says_which_and_why(monkeypatch):
    monkeypatch.setenv("CI", "true")
    server = ServerDatabase("PostgreSQL", "postgresql+psycopg://postgres@127.0.0.1:1/test")

    with pytest.raises(
        pytest.fail.Exception, match=r"PostgreSQL is not reachable .*OperationalError"
    ):
        server.create()
