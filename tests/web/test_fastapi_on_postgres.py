"""The FastAPI integration on PostgreSQL, as a service runs in production: the application
factory configures ``DbalConfiguration``, aggregates are rows of ``ecopy_documents``, the
database's own conflict detection answers 409, and shutdown disposes of the engine."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import ecopy
from ecopy import MessagingSystem, ServiceConfiguration
from ecopy_dbal import Database, DbalConfiguration
from tests.web.app import Journal, Ticket, create_api

ON_POSTGRES = [pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_a_ticket_service_on_postgresql(database_url: str) -> None:
    built: list[MessagingSystem] = []

    def create_app() -> MessagingSystem:
        app = ecopy.bootstrap(
            classes=[Ticket, Journal],
            config=ServiceConfiguration(extensions=[DbalConfiguration(url=database_url)]),
        )
        built.append(app)
        return app

    disposed: list[sa.Engine] = []
    with TestClient(create_api(create_app)) as client:
        engine = built[0].require_service(Database).engine
        assert engine.dialect.name == "postgresql"
        sa.event.listen(engine, "engine_disposed", disposed.append)

        opened = client.post(
            "/tickets",
            json={"ticket_id": "t-1", "title": "Concert", "seats": 2},
            headers={"X-Tenant": "acme"},
        )
        renamed = client.put("/tickets/t-1/title", params={"title": "Opera", "seen_version": 1})
        stale = client.put("/tickets/t-1/title", params={"title": "Ballet", "seen_version": 1})
        again = client.post("/tickets", json={"ticket_id": "t-1", "title": "Again"})
        missing = client.put("/tickets/t-2/title", params={"title": "Opera"})
        invalid = client.post("/tickets", json={"ticket_id": "t-3", "title": "x", "seats": []})

        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT document_id, version, document FROM ecopy_documents")
            ).all()

    assert (opened.status_code, renamed.json()) == (201, {"version": 2})
    assert (
        stale.status_code,
        stale.json()["expected_version"],
        stale.json()["actual_version"],
    ) == (
        409,
        1,
        2,
    )
    # The second factory call is refused by the database (its insert finds the row).
    assert again.status_code == 409
    assert again.json() == {
        "detail": "Ticket 't-1' exists already",
        "aggregate": "Ticket",
        "identifier": "t-1",
        "expected_version": 0,
        "actual_version": 2,
    }
    assert (missing.status_code, missing.json()["identifier"]) == (404, "t-2")
    assert invalid.status_code == 422
    assert [error["loc"] for error in invalid.json()["detail"]] == [["payload", "seats"]]

    ((document_id, version, document),) = rows
    stored = json.loads(document) if isinstance(document, str) else document
    assert (document_id, version, stored["title"], stored["tenant"]) == ("t-1", 2, "Opera", "acme")
    assert disposed == [engine]
