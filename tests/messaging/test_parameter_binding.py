"""Parameter binding (DESIGN §3.2): headers, all headers, buses, services by type and by name,
and the message itself."""

from dataclasses import dataclass
from typing import Annotated

import pytest

from ecopy import (
    CommandBus,
    EventBus,
    Header,
    Headers,
    Message,
    MessageConversionError,
    MissingHeader,
    QueryBus,
    Reference,
    command_handler,
    query_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class PlaceOrder:
    order_id: str


class Mailer:
    def __init__(self, sender: str) -> None:
        self.sender = sender


def test_a_header_is_bound_by_name():
    class Orders:
        @query_handler("tenant")
        def tenant(self, query: PlaceOrder, tenant: Annotated[str, Header("tenant")]) -> str:
            return f"{query.order_id}@{tenant}"

    flow = bootstrap_flow_testing(classes=[Orders])

    answer = flow.send_query_with_routing("tenant", {"order_id": "o-1"}, headers={"tenant": "a"})

    assert answer == "o-1@a"


def test_a_header_value_is_converted_to_the_annotation():
    class Pages:
        @query_handler("page")
        def page(self, number: Annotated[int, Header("page")]) -> int:
            return number + 1

    flow = bootstrap_flow_testing(classes=[Pages])

    assert flow.send_query_with_routing("page", headers={"page": "41"}) == 42


def test_a_missing_header_names_the_handler_and_the_header():
    ran = []

    class Orders:
        @command_handler
        def place(self, command: PlaceOrder, tenant: Annotated[str, Header("tenant")]) -> None:
            ran.append(tenant)

    flow = bootstrap_flow_testing(classes=[Orders])

    with pytest.raises(MissingHeader) as raised:
        flow.send_command(PlaceOrder("o-1"))

    assert raised.value.header == "tenant"
    assert "Orders.place" in raised.value.handler
    assert "'tenant'" in str(raised.value)
    assert "Orders.place" in str(raised.value)
    assert ran == []


def test_a_missing_header_takes_the_default():
    class Orders:
        @query_handler("tenant")
        def tenant(self, tenant: Annotated[str, Header("tenant")] = "default") -> str:
            return tenant

    flow = bootstrap_flow_testing(classes=[Orders])

    assert flow.send_query_with_routing("tenant") == "default"
    assert flow.send_query_with_routing("tenant", headers={"tenant": "acme"}) == "acme"


def test_a_missing_optional_header_is_none():
    class Orders:
        @query_handler("tenant")
        def tenant(self, tenant: Annotated[str | None, Header("tenant")]) -> str | None:
            return tenant

    flow = bootstrap_flow_testing(classes=[Orders])

    assert flow.send_query_with_routing("tenant") is None


def test_a_present_optional_header_is_passed():
    class Orders:
        @query_handler("tenant")
        def tenant(self, tenant: Annotated[str | None, Header("tenant")]) -> str | None:
            return tenant

    flow = bootstrap_flow_testing(classes=[Orders])

    assert flow.send_query_with_routing("tenant", headers={"tenant": "acme"}) == "acme"


def test_all_headers_as_a_dict():
    class Orders:
        @query_handler("headers")
        def headers(self, headers: Annotated[dict, Headers]) -> dict:
            return headers

    flow = bootstrap_flow_testing(classes=[Orders])

    headers = flow.send_query_with_routing("headers", headers={"tenant": "acme"})

    assert headers["tenant"] == "acme"
    assert {"id", "correlation_id", "timestamp"} <= set(headers)


def test_buses_are_injected_by_type():
    class Orders:
        @query_handler("buses")
        def buses(self, commands: CommandBus, events: EventBus, queries: QueryBus) -> tuple:
            return commands, events, queries

    flow = bootstrap_flow_testing(classes=[Orders])

    assert flow.send_query_with_routing("buses") == (
        flow.command_bus,
        flow.event_bus,
        flow.query_bus,
    )


def test_a_service_is_injected_by_type_and_by_name():
    class Orders:
        @query_handler("mailers")
        def mailers(
            self,
            by_type: Mailer,
            by_name: Annotated[Mailer, Reference("backup_mailer")],
        ) -> tuple[str, str]:
            return by_type.sender, by_name.sender

    flow = bootstrap_flow_testing(
        classes=[Orders],
        services={"mailer": Mailer("shop@example.com"), "backup_mailer": Mailer("backup")},
    )

    assert flow.send_query_with_routing("mailers") == ("shop@example.com", "backup")


def test_the_message_itself_is_injected():
    class Orders:
        @query_handler
        def get(self, query: PlaceOrder, message: Message) -> tuple:
            return query, message.payload, message.headers["tenant"], message.id

    flow = bootstrap_flow_testing(classes=[Orders])

    query, payload, tenant, message_id = flow.send_query(PlaceOrder("o-1"), {"tenant": "acme"})

    assert query == payload == PlaceOrder("o-1")
    assert tenant == "acme"
    assert isinstance(message_id, str)


def test_a_handler_routed_by_key_may_take_only_services():
    class Orders:
        @query_handler("sender")
        def sender(self, mailer: Mailer) -> str:
            return mailer.sender

    flow = bootstrap_flow_testing(classes=[Orders], services=[Mailer("shop@example.com")])

    assert flow.send_query_with_routing("sender", {"ignored": True}) == "shop@example.com"


def test_a_header_that_cannot_be_converted_is_reported_as_a_header():
    ran = []

    class Pages:
        @query_handler("page")
        def page(self, number: Annotated[int, Header("page")]) -> int:
            ran.append(number)
            return number

    flow = bootstrap_flow_testing(classes=[Pages])

    with pytest.raises(MessageConversionError) as raised:
        flow.send_query_with_routing("page", headers={"page": "abc"})

    text = str(raised.value)
    assert ran == []
    assert "Pages.page" in text
    assert "'page'" in text and "int" in text
    assert "payload" not in text
