"""``ecopy.web.fastapi``: a FastAPI app runs an ecopy application — bootstrapped on startup,
closed on shutdown — gets its buses and services as dependencies, copies chosen HTTP headers
into the messages, and answers ecopy's errors as 404, 409 and 422 with structured fields."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

import ecopy
from ecopy import ConfigurationError, EcopyError, MessagingSystem, ServiceConfiguration
from ecopy.web.fastapi import Commands, Messaging, copy_headers, install, lifespan, service
from ecopy_dbal import Database, DbalConfiguration
from tests.web.app import Journal, Ticket, create_api


class Factory:
    """Builds the application as a service's ``create_app`` does, and remembers it."""

    def __init__(self, **bootstrap_options: Any) -> None:
        self.options = bootstrap_options
        self.built: list[MessagingSystem] = []
        self.journal = Journal()

    def __call__(self) -> MessagingSystem:
        options = {"classes": [Ticket, Journal], "services": [self.journal], **self.options}
        system = ecopy.bootstrap(**options)
        self.built.append(system)
        return system


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def client(factory: Factory) -> Iterator[TestClient]:
    with TestClient(create_api(factory)) as client:
        yield client


def open_ticket(
    client: TestClient, ticket_id: str = "t-1", headers: dict[str, str] | None = None
) -> None:
    response = client.post(
        "/tickets", json={"ticket_id": ticket_id, "title": "Concert", "seats": 2}, headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"ticket_id": ticket_id}


# -- lifespan -------------------------------------------------------------------------------


def test_the_application_is_built_on_startup_and_closed_on_shutdown(tmp_path):
    factory = Factory(
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=f"sqlite:///{tmp_path / 'tickets.sqlite3'}")]
        )
    )
    api = create_api(factory)
    disposed: list[sa.Engine] = []
    assert factory.built == []  # nothing happens at import or at install

    with TestClient(api) as client:
        (system,) = factory.built
        assert api.state.ecopy is system
        engine = system.require_service(Database).engine
        sa.event.listen(engine, "engine_disposed", disposed.append)
        open_ticket(client)
        assert disposed == []

    assert disposed == [engine]  # app.close() ran: the engine and its pool are released
    assert api.state.ecopy is None


def test_install_keeps_the_apps_own_lifespan_inside_ecopys():
    events: list[str] = []

    @asynccontextmanager
    async def own_lifespan(api: FastAPI):
        events.append(f"own startup sees ecopy: {api.state.ecopy is not None}")
        yield
        events.append(f"own shutdown sees ecopy: {api.state.ecopy is not None}")

    api = FastAPI(lifespan=own_lifespan)
    install(api, Factory())
    with TestClient(api):
        pass

    assert events == ["own startup sees ecopy: True", "own shutdown sees ecopy: True"]


def test_lifespan_alone_runs_the_application(factory: Factory):
    api = FastAPI(lifespan=lifespan(factory))

    @api.get("/name")
    async def name(app: Messaging) -> str:
        return app.service_name

    with TestClient(api) as client:
        assert client.get("/name").json() == "ecopy"
    assert len(factory.built) == 1


def test_a_factory_that_returns_something_else_fails_the_startup():
    api = FastAPI()
    install(api, lambda: "not an application")  # type: ignore[arg-type, return-value]

    with pytest.raises(EcopyError, match="returned str, not a MessagingSystem"), TestClient(api):
        pass


def test_without_the_lifespan_a_dependency_says_how_to_run_it(factory: Factory):
    client = TestClient(create_api(factory))  # not entered: the lifespan does not run

    with pytest.raises(EcopyError, match=r"with TestClient\(api\) as client"):
        client.get("/service-name")
    assert factory.built == []


def test_install_twice_is_refused(factory: Factory):
    api = create_api(factory)

    with pytest.raises(EcopyError, match="installed on this FastAPI app already"):
        install(api, factory)


# -- dependencies ---------------------------------------------------------------------------


def test_the_awaitable_buses_reach_the_handlers(client: TestClient, factory: Factory):
    response = client.post("/journal/async")

    assert response.status_code == 200
    assert [kind for kind, _ in factory.journal.seen] == ["event", "query", "command"]
    assert response.json() == factory.journal.headers_of("command")[0]["id"]


def test_the_synchronous_buses_serve_plain_def_endpoints(client: TestClient, factory: Factory):
    response = client.post("/journal/sync")

    assert response.status_code == 200
    assert [kind for kind, _ in factory.journal.seen] == ["event", "query", "command"]


def test_the_application_and_its_services_are_dependencies(client: TestClient, factory: Factory):
    client.post("/journal/sync")

    assert client.get("/service-name").json() == "ecopy"
    assert client.get("/journal/size").json() == len(factory.journal.seen) == 3


def test_a_missing_service_names_what_to_provide():
    api = FastAPI()
    install(api, lambda: ecopy.bootstrap(classes=[Ticket]))  # built without the Journal

    @api.get("/journal")
    async def journal(journal: Annotated[Journal, service(Journal)]) -> int:
        return len(journal.seen)

    with TestClient(api) as client, pytest.raises(EcopyError, match="no service of type Journal"):
        client.get("/journal")


# -- headers --------------------------------------------------------------------------------


def test_chosen_http_headers_reach_every_handler(client: TestClient, factory: Factory):
    headers = {"X-Tenant": "acme", "X-Correlation-Id": "req-42", "X-Other": "not copied"}

    client.post("/journal/async", headers=headers)
    client.post("/journal/sync", headers=headers)

    assert len(factory.journal.seen) == 6
    for kind, seen in factory.journal.seen:
        assert (kind, seen["tenant"], seen["correlation_id"]) == (kind, "acme", "req-42")
        assert "x-other" not in seen and "X-Other" not in seen
    # Headers given to send explicitly are kept alongside.
    assert factory.journal.headers_of("event")[0]["by"] == "endpoint"


def test_copied_headers_propagate_to_what_the_handlers_publish(
    client: TestClient, factory: Factory
):
    open_ticket(client, "t-9", headers={"X-Tenant": "globex"})

    (opened,) = factory.journal.headers_of("opened")  # published by the aggregate
    assert opened["tenant"] == "globex"
    (system,) = factory.built
    assert system.aggregates.find(Ticket, "t-9").tenant == "globex"


def test_a_request_without_the_headers_sends_messages_without_them(
    client: TestClient, factory: Factory
):
    client.post("/journal/async")

    for _, seen in factory.journal.seen:
        assert "tenant" not in seen
        assert seen["correlation_id"] == seen["id"]  # a new correlation, as for any message


def test_a_list_of_header_names_keeps_the_names_lowercased(factory: Factory):
    api = FastAPI()
    install(api, factory, headers=["X-Tenant"])

    @api.post("/note")
    async def note(commands: Commands) -> None:
        await commands.send_with_routing("journal.note")

    with TestClient(api) as client:
        client.post("/note", headers={"x-TENANT": "acme"})

    assert factory.journal.headers_of("command")[0]["x-tenant"] == "acme"


def test_headers_that_identify_a_message_cannot_be_copied_into():
    with pytest.raises(ConfigurationError) as refused:
        copy_headers(FastAPI(), {"X-Request-Id": "id", "X-Time": "timestamp", "X-A": "ecopy.x"})

    assert len(refused.value.problems) == 3
    assert "'X-Request-Id' cannot be copied into the message header 'id'" in str(refused.value)
    with pytest.raises(ConfigurationError, match="is one string"):
        copy_headers(FastAPI(), "X-Tenant")


# -- errors ---------------------------------------------------------------------------------


def test_an_action_on_a_missing_aggregate_is_404(client: TestClient):
    response = client.put("/tickets/t-404/title", params={"title": "Opera"})

    assert response.status_code == 404
    assert response.json() == {
        "detail": "Ticket 't-404' was not found",
        "aggregate": "Ticket",
        "identifier": "t-404",
    }


def test_a_change_based_on_a_stale_version_is_409_with_the_versions(client: TestClient):
    open_ticket(client)
    assert client.put("/tickets/t-1/title", params={"title": "A", "seen_version": 1}).json() == {
        "version": 2
    }

    response = client.put("/tickets/t-1/title", params={"title": "B", "seen_version": 1})

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Ticket 't-1' is at version 2, but the change was based on version 1; "
        "reload it and try again",
        "aggregate": "Ticket",
        "identifier": "t-1",
        "expected_version": 1,
        "actual_version": 2,
    }


def test_creating_what_exists_already_is_409(client: TestClient):
    open_ticket(client)

    response = client.post("/tickets", json={"ticket_id": "t-1", "title": "Again"})

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Ticket 't-1' exists already",
        "aggregate": "Ticket",
        "identifier": "t-1",
        "expected_version": 0,
        "actual_version": 1,
    }


def test_a_payload_that_does_not_convert_is_422_with_the_field_errors(client: TestClient):
    response = client.post("/tickets", json={"ticket_id": "t-1", "seats": "many"})

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"type": "missing", "loc": ["payload", "title"], "msg": "Field required"},
            {
                "type": "int_parsing",
                "loc": ["payload", "seats"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
            },
        ]
    }


def test_a_header_that_does_not_convert_is_422_located_at_the_header(client: TestClient):
    response = client.get("/tickets/t-1/seats", headers={"X-Quota": "lots"})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["header", "quota"]
    assert error["type"] == "int_parsing"
    assert client.get("/tickets/t-1/seats", headers={"X-Quota": "3"}).json() == 3


def test_other_errors_are_left_to_fastapi(client: TestClient):
    # A missing header a handler requires is not one of the mapped errors: FastAPI's default
    # handling applies (the test client re-raises it).
    with pytest.raises(ecopy.MissingHeader):
        client.get("/tickets/t-1/seats")
