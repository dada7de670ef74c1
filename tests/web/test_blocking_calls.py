"""A synchronous bus called from inside a running asyncio event loop blocks it (DESIGN §1.7):
it warns with ``BlockingCallInEventLoop``, pointing at the call and naming the fix. The
awaitable facades, handlers that ecopy dispatches (on a worker thread or on its own loop) and
plain ``def`` FastAPI endpoints do not warn."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

import ecopy
from ecopy import (
    BlockingCallInEventLoop,
    CommandBus,
    EventBus,
    QueueChannel,
    ServiceConfiguration,
    asynchronous,
    command_handler,
    event_handler,
    query_handler,
)
from tests.web.app import Journal, Ticket, create_api


@dataclass(frozen=True)
class Ping:
    text: str


@dataclass(frozen=True)
class Pinged:
    text: str


@dataclass(frozen=True)
class AskPings:
    pass


class Pings:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @command_handler
    def ping(self, command: Ping, events: EventBus) -> str:
        events.publish(Pinged(command.text))  # a nested call: not the caller's to fix
        return command.text

    @event_handler
    def pinged(self, event: Pinged) -> None:
        self.seen.append(event.text)

    @query_handler
    def count(self, query: AskPings) -> int:
        return len(self.seen)

    @command_handler("ping.async")
    async def ping_async(self, text: str, commands: CommandBus) -> str:
        # An async handler, awaited by ecopy on its own loop, using a synchronous bus.
        await asyncio.sleep(0)
        return str(commands.send(Ping(text)))


class Relay:
    @asynchronous("pings")
    @event_handler(endpoint_id="relay")
    async def relay(self, event: Pinged, commands: CommandBus) -> None:
        # Awaited on the consumer's loop; the synchronous bus is what it has to send with.
        if event.text == "queued":
            commands.send(Ping("relayed"))


@pytest.fixture
def app() -> Iterator[ecopy.MessagingSystem]:
    with ecopy.bootstrap(classes=[Pings], services=[Pings()]) as app:
        yield app


@contextmanager
def blocking_call_warnings() -> Iterator[list[str]]:
    """The bus methods that warned in the block, each time one did."""
    warned: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield warned
    warned += [
        str(w.message).split(" ")[0] for w in caught if w.category is BlockingCallInEventLoop
    ]


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda app: app.command_bus.send(Ping("a")), "CommandBus.send"),
        (
            lambda app: app.command_bus.send_with_routing("ping.async", "a"),
            "CommandBus.send_with_routing",
        ),
        (lambda app: app.query_bus.send(AskPings()), "QueryBus.send"),
        (
            lambda app: app.query_bus.send_with_routing(f"{__name__}.AskPings", {}),
            "QueryBus.send_with_routing",
        ),
        (lambda app: app.event_bus.publish(Pinged("a")), "EventBus.publish"),
        (
            lambda app: app.event_bus.publish_with_routing(f"{__name__}.Pinged", {"text": "a"}),
            "EventBus.publish_with_routing",
        ),
    ],
)
def test_a_synchronous_bus_called_in_a_running_loop_warns(app, call, named):
    async def endpoint() -> None:
        call(app)

    with blocking_call_warnings() as warned:
        call(app)  # outside a loop: fine
    assert warned == []

    # ping.async, an async handler, then refuses to run there (tested elsewhere): after the
    # warning.
    with pytest.warns(BlockingCallInEventLoop) as caught, suppress(ecopy.EcopyError):
        asyncio.run(endpoint())

    (warning,) = caught
    assert str(warning.message).startswith(f"{named} was called from inside a running asyncio")
    assert warning.filename == __file__  # the caller's line, not ecopy's


def test_the_warning_names_the_awaitable_bus_to_use_instead(app):
    async def endpoint() -> None:
        app.query_bus.send(AskPings())

    with pytest.warns(BlockingCallInEventLoop, match=r"await app\.async_query_bus\.send\(\.\.\.\)"):
        asyncio.run(endpoint())


def test_of_calls_in_a_loop_only_the_synchronous_one_warns_not_the_awaitable_buses(app):
    async def endpoint() -> int:
        await app.async_command_bus.send(Ping("a"))
        await app.async_command_bus.send_with_routing("ping.async", "b")
        await app.async_event_bus.publish(Pinged("c"))
        app.query_bus.send(AskPings())  # the blocking one
        return int(await app.async_query_bus.send(AskPings()))

    with blocking_call_warnings() as warned:
        assert asyncio.run(endpoint()) == 3

    # Not the handlers' own calls either (Ping publishes an event; ping.async, awaited on
    # ecopy's loop in the worker thread, sends a command).
    assert warned == ["QueryBus.send"]


def test_handlers_awaited_on_the_consumers_loop_do_not_warn():
    pings = Pings()
    with ecopy.bootstrap(
        classes=[Pings, Relay],
        services=[pings],
        config=ServiceConfiguration(extensions=[QueueChannel("pings")]),
    ) as app:

        async def blocking() -> None:
            app.event_bus.publish(Pinged("blocking"))

        with blocking_call_warnings() as warned:
            app.event_bus.publish(Pinged("queued"))
            assert app.run("pings", finish_when_no_messages=True) == 2  # "queued", "relayed"
            asyncio.run(blocking())

    assert pings.seen == ["queued", "relayed", "blocking"]
    assert warned == ["EventBus.publish"]  # the relay's CommandBus.send did not warn


def test_in_fastapi_only_a_synchronous_bus_in_an_async_def_endpoint_warns():
    with TestClient(create_api(lambda: ecopy.bootstrap(classes=[Ticket, Journal]))) as client:
        with blocking_call_warnings() as warned:
            for path in ("/journal/async", "/journal/sync"):
                assert client.post(path, headers={"X-Tenant": "acme"}).status_code == 200
        assert warned == []

        with pytest.warns(BlockingCallInEventLoop) as caught:
            assert client.post("/journal/blocking").status_code == 200

    (warning,) = caught
    assert "CommandBus.send_with_routing" in str(warning.message)
    assert warning.filename.endswith("tests/web/app.py")  # past ecopy's request-scoped bus


def test_the_warning_is_a_runtime_warning_exported_by_ecopy():
    assert issubclass(BlockingCallInEventLoop, RuntimeWarning)
    assert "BlockingCallInEventLoop" in ecopy.__all__
